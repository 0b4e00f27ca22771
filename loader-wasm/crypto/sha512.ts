// Trusted: SHA-512 (FIPS 180-4) is the hash inside Ed25519 and HMAC-SHA-512, so every
// signature check and key derivation built on them is only as sound as this file.
// Constant time: no branch or memory index depends on message bytes, only on lengths.
import { wipe } from "./ct";

// Context layout: H0..H7 (64 bytes) | pending partial block (128) | bytes hashed (u64).
export const SHA512_CTX_SIZE: usize = 200;

// FIPS 180-4 §4.2.3: first 64 bits of the fractional parts of the cube roots of the first 80 primes.
const K = memory.data<u64>([
  0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
  0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
  0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
  0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
  0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
  0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
  0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
  0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
  0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
  0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
  0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
  0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
  0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
  0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
  0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
  0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
  0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
  0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
  0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
  0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
], 16);
// FIPS 180-4 §5.3.5: initial hash value H(0).
const IV = memory.data<u64>([
  0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
  0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
], 16);
const ONE_SHOT = memory.data(<i32>SHA512_CTX_SIZE, 16);
const WK = memory.data(128, 16); // Wt + Kt for the next 16 rounds

// FIPS 180-4 §4.1.3 (4.10)-(4.13). Σ0 = ROTR28^ROTR34^ROTR39 and Σ1 = ROTR14^ROTR18^ROTR41
// are factored to need one temporary; σ0, σ1 run two lanes at a time (wasm has no vector rotate).
@inline function S0(x: u64): u64 { return rotr(x ^ rotr(x ^ rotr(x, 5), 6), 28); }
@inline function S1(x: u64): u64 { return rotr(x ^ rotr(x ^ rotr(x, 23), 4), 14); }
@inline function ch(x: u64, y: u64, z: u64): u64 { return z ^ (x & (y ^ z)); }
@inline function maj(x: u64, y: u64, z: u64): u64 { return (x & y) | (z & (x | y)); }
@inline function rotv(x: v128, n: i32): v128 { return v128.or(i64x2.shr_u(x, n), i64x2.shl(x, 64 - n)); }
@inline function s0(x: v128): v128 { return v128.xor(v128.xor(rotv(x, 1), rotv(x, 8)), i64x2.shr_u(x, 7)); }
@inline function s1(x: v128): v128 { return v128.xor(v128.xor(rotv(x, 19), rotv(x, 61)), i64x2.shr_u(x, 6)); }

// Two message words; FIPS 180-4 §3.1: words are big-endian.
@inline function be(p: usize, o: usize): v128 {
  const v = v128.load(p + o);
  return i8x16.shuffle(v, v, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
}

// §6.4.2 step 1, Wt = σ1(Wt-2) + Wt-7 + σ0(Wt-15) + Wt-16 for two t at once, where x0..x7
// hold the previous sixteen words in order (only x0, x1, x4, x5, x7 are needed).
@inline function step(x0: v128, x1: v128, x4: v128, x5: v128, x7: v128): v128 {
  const w = i64x2.add(x0, s0(i8x16.shuffle(x0, x1, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)));
  return i64x2.add(i64x2.add(w, i8x16.shuffle(x4, x5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)), s1(x7));
}

// FIPS 180-4 §6.4.2 over `blocks` whole blocks at p. The working variables stay in locals;
// the schedule runs in SIMD lanes, interleaved with the rounds, and leaves Wt + Kt in WK.
function compress(st: usize, p: usize, blocks: usize): void {
  let a = load<u64>(st, 0), b = load<u64>(st, 8), c = load<u64>(st, 16), d = load<u64>(st, 24);
  let e = load<u64>(st, 32), f = load<u64>(st, 40), g = load<u64>(st, 48), h = load<u64>(st, 56);
  for (; blocks; blocks--, p += 128) {
    let x0 = be(p, 0), x1 = be(p, 16), x2 = be(p, 32), x3 = be(p, 48);
    let x4 = be(p, 64), x5 = be(p, 80), x6 = be(p, 96), x7 = be(p, 112);
    v128.store(WK, i64x2.add(x0, v128.load(K, 0)), 0); v128.store(WK, i64x2.add(x1, v128.load(K, 16)), 16);
    v128.store(WK, i64x2.add(x2, v128.load(K, 32)), 32); v128.store(WK, i64x2.add(x3, v128.load(K, 48)), 48);
    v128.store(WK, i64x2.add(x4, v128.load(K, 64)), 64); v128.store(WK, i64x2.add(x5, v128.load(K, 80)), 80);
    v128.store(WK, i64x2.add(x6, v128.load(K, 96)), 96); v128.store(WK, i64x2.add(x7, v128.load(K, 112)), 112);
    // Each pass runs 16 rounds and schedules the next 16 words; the last pass schedules
    // against the zero padding of K, and those words go unused.
    for (let k = K + 128; k <= K + 640; k += 128) {
      // §6.4.2 step 3: T1 = h + Σ1(e) + Ch(e,f,g) + Kt + Wt; d += T1; h = T1 + Σ0(a) + Maj(a,b,c).
      h = h + load<u64>(WK, 0) + ch(e, f, g) + S1(e); d += h; h += S0(a) + maj(a, b, c);
      g = g + load<u64>(WK, 8) + ch(d, e, f) + S1(d); c += g; g += S0(h) + maj(h, a, b);
      x0 = step(x0, x1, x4, x5, x7); v128.store(WK, i64x2.add(x0, v128.load(k, 0)), 0);
      f = f + load<u64>(WK, 16) + ch(c, d, e) + S1(c); b += f; f += S0(g) + maj(g, h, a);
      e = e + load<u64>(WK, 24) + ch(b, c, d) + S1(b); a += e; e += S0(f) + maj(f, g, h);
      x1 = step(x1, x2, x5, x6, x0); v128.store(WK, i64x2.add(x1, v128.load(k, 16)), 16);
      d = d + load<u64>(WK, 32) + ch(a, b, c) + S1(a); h += d; d += S0(e) + maj(e, f, g);
      c = c + load<u64>(WK, 40) + ch(h, a, b) + S1(h); g += c; c += S0(d) + maj(d, e, f);
      x2 = step(x2, x3, x6, x7, x1); v128.store(WK, i64x2.add(x2, v128.load(k, 32)), 32);
      b = b + load<u64>(WK, 48) + ch(g, h, a) + S1(g); f += b; b += S0(c) + maj(c, d, e);
      a = a + load<u64>(WK, 56) + ch(f, g, h) + S1(f); e += a; a += S0(b) + maj(b, c, d);
      x3 = step(x3, x4, x7, x0, x2); v128.store(WK, i64x2.add(x3, v128.load(k, 48)), 48);
      h = h + load<u64>(WK, 64) + ch(e, f, g) + S1(e); d += h; h += S0(a) + maj(a, b, c);
      g = g + load<u64>(WK, 72) + ch(d, e, f) + S1(d); c += g; g += S0(h) + maj(h, a, b);
      x4 = step(x4, x5, x0, x1, x3); v128.store(WK, i64x2.add(x4, v128.load(k, 64)), 64);
      f = f + load<u64>(WK, 80) + ch(c, d, e) + S1(c); b += f; f += S0(g) + maj(g, h, a);
      e = e + load<u64>(WK, 88) + ch(b, c, d) + S1(b); a += e; e += S0(f) + maj(f, g, h);
      x5 = step(x5, x6, x1, x2, x4); v128.store(WK, i64x2.add(x5, v128.load(k, 80)), 80);
      d = d + load<u64>(WK, 96) + ch(a, b, c) + S1(a); h += d; d += S0(e) + maj(e, f, g);
      c = c + load<u64>(WK, 104) + ch(h, a, b) + S1(h); g += c; c += S0(d) + maj(d, e, f);
      x6 = step(x6, x7, x2, x3, x5); v128.store(WK, i64x2.add(x6, v128.load(k, 96)), 96);
      b = b + load<u64>(WK, 112) + ch(g, h, a) + S1(g); f += b; b += S0(c) + maj(c, d, e);
      a = a + load<u64>(WK, 120) + ch(f, g, h) + S1(f); e += a; a += S0(b) + maj(b, c, d);
      x7 = step(x7, x0, x3, x4, x6); v128.store(WK, i64x2.add(x7, v128.load(k, 112)), 112);
    }
    // §6.4.2 step 4: H(i) = working variables + H(i-1).
    a += load<u64>(st, 0); b += load<u64>(st, 8); c += load<u64>(st, 16); d += load<u64>(st, 24);
    e += load<u64>(st, 32); f += load<u64>(st, 40); g += load<u64>(st, 48); h += load<u64>(st, 56);
    store<u64>(st, a, 0); store<u64>(st, b, 8); store<u64>(st, c, 16); store<u64>(st, d, 24);
    store<u64>(st, e, 32); store<u64>(st, f, 40); store<u64>(st, g, 48); store<u64>(st, h, 56);
  }
  wipe(WK, 128);
}

export function sha512Init(ctx: usize): void {
  memory.copy(ctx, IV, 64);
  memory.fill(ctx + 64, 0, SHA512_CTX_SIZE - 64);
}

// Branches and copy sizes depend only on lengths (public), never on message bytes.
export function sha512Update(ctx: usize, p: usize, len: usize): void {
  const n = load<u64>(ctx, 192), fill = <usize>n & 127, buf = ctx + 64;
  store<u64>(ctx, n + len, 192);
  if (fill) {
    const take = min<usize>(128 - fill, len);
    memory.copy(buf + fill, p, take);
    if (fill + take < 128) return;
    compress(ctx, buf, 1);
    p += take; len -= take;
  }
  // Whole blocks, 64 KiB per call: one long call would stay in the engine's baseline tier.
  for (let b = len / 128; b; ) { const k = min<usize>(b, 512); compress(ctx, p, k); p += k * 128; b -= k; }
  memory.copy(buf, p, len & 127);
}

// Writes the 64-byte digest to `out`, then wipes the context.
export function sha512Final(ctx: usize, out: usize): void {
  const n = load<u64>(ctx, 192), buf = ctx + 64;
  let fill = <usize>n & 127;
  // §5.1.2: append bit 1, zeros, then the message length in bits as a 128-bit big-endian integer.
  store<u8>(buf + fill++, 0x80);
  if (fill > 112) { memory.fill(buf + fill, 0, 128 - fill); compress(ctx, buf, 1); fill = 0; }
  memory.fill(buf + fill, 0, 112 - fill);
  store<u64>(buf, bswap(n >> 61), 112);
  store<u64>(buf, bswap(n << 3), 120);
  compress(ctx, buf, 1);
  for (let i: usize = 0; i < 64; i += 8) store<u64>(out + i, bswap(load<u64>(ctx + i)));
  wipe(ctx, SHA512_CTX_SIZE);
}

// One-shot; `out` may alias the input.
export function sha512(p: usize, len: usize, out: usize): void {
  sha512Init(ONE_SHOT);
  sha512Update(ONE_SHOT, p, len);
  sha512Final(ONE_SHOT, out);
}
