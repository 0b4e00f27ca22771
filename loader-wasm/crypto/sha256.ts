// Trusted: SHA-256 (FIPS 180-4) underlies HMAC-SHA-256 and HKDF, which derive the loader's
// session keys, and hashes measured code; a flaw here breaks all of them.
// Constant time: no branch or memory index depends on message bytes, only on lengths.
import { wipe } from "./ct";

// Context layout: H0..H7 (32 bytes) | pending partial block (64) | bytes hashed (u64).
export const SHA256_CTX_SIZE: usize = 104;

// FIPS 180-4 §4.2.2: first 32 bits of the fractional parts of the cube roots of the first 64 primes.
const K = memory.data<u32>([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
], 16);
// FIPS 180-4 §5.3.3: initial hash value H(0).
const IV = memory.data<u32>([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
], 16);
const ONE_SHOT = memory.data(<i32>SHA256_CTX_SIZE, 16);
const WK = memory.data(64, 16); // Wt + Kt for the next 16 rounds

// FIPS 180-4 §4.1.2 (4.2)-(4.7). Σ0 = ROTR2^ROTR13^ROTR22 and Σ1 = ROTR6^ROTR11^ROTR25 are
// factored to need one temporary; σ0, σ1 run four lanes at a time (wasm has no vector rotate).
@inline function S0(x: u32): u32 { return rotr(x ^ rotr(x ^ rotr(x, 9), 11), 2); }
@inline function S1(x: u32): u32 { return rotr(x ^ rotr(x ^ rotr(x, 14), 5), 6); }
@inline function ch(x: u32, y: u32, z: u32): u32 { return z ^ (x & (y ^ z)); }
@inline function maj(x: u32, y: u32, z: u32): u32 { return (x & y) | (z & (x | y)); }
@inline function rotv(x: v128, n: i32): v128 { return v128.or(i32x4.shr_u(x, n), i32x4.shl(x, 32 - n)); }
@inline function s0(x: v128): v128 { return v128.xor(v128.xor(rotv(x, 7), rotv(x, 18)), i32x4.shr_u(x, 3)); }
@inline function s1(x: v128): v128 { return v128.xor(v128.xor(rotv(x, 17), rotv(x, 19)), i32x4.shr_u(x, 10)); }

// Four message words; FIPS 180-4 §3.1: words are big-endian.
@inline function be(p: usize, o: usize): v128 {
  const v = v128.load(p + o);
  return i8x16.shuffle(v, v, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
}

// §6.2.2 step 1, Wt = σ1(Wt-2) + Wt-7 + σ0(Wt-15) + Wt-16 for four t at once, from the
// previous sixteen words x0|x1|x2|x3. σ1 needs Wt-2, so lanes 2-3 wait for lanes 0-1.
@inline function step(x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const z = i32x4.splat(0);
  let w = i32x4.add(x0, s0(i8x16.shuffle(x0, x1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)));
  w = i32x4.add(w, i8x16.shuffle(x2, x3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19));
  w = i32x4.add(w, i8x16.shuffle(s1(x3), z, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23));
  return i32x4.add(w, i8x16.shuffle(z, s1(w), 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23));
}

// FIPS 180-4 §6.2.2 over `blocks` whole blocks at p. The working variables stay in locals;
// the schedule runs in SIMD lanes, interleaved with the rounds, and leaves Wt + Kt in WK.
function compress(st: usize, p: usize, blocks: usize): void {
  let a = load<u32>(st, 0), b = load<u32>(st, 4), c = load<u32>(st, 8), d = load<u32>(st, 12);
  let e = load<u32>(st, 16), f = load<u32>(st, 20), g = load<u32>(st, 24), h = load<u32>(st, 28);
  for (; blocks; blocks--, p += 64) {
    let x0 = be(p, 0), x1 = be(p, 16), x2 = be(p, 32), x3 = be(p, 48);
    v128.store(WK, i32x4.add(x0, v128.load(K, 0)), 0); v128.store(WK, i32x4.add(x1, v128.load(K, 16)), 16);
    v128.store(WK, i32x4.add(x2, v128.load(K, 32)), 32); v128.store(WK, i32x4.add(x3, v128.load(K, 48)), 48);
    // Each pass runs 16 rounds and schedules the next 16 words; the last pass schedules
    // against the zero padding of K, and those words go unused.
    for (let k = K + 64; k <= K + 256; k += 64) {
      // §6.2.2 step 3: T1 = h + Σ1(e) + Ch(e,f,g) + Kt + Wt; d += T1; h = T1 + Σ0(a) + Maj(a,b,c).
      h = h + load<u32>(WK, 0) + ch(e, f, g) + S1(e); d += h; h += S0(a) + maj(a, b, c);
      g = g + load<u32>(WK, 4) + ch(d, e, f) + S1(d); c += g; g += S0(h) + maj(h, a, b);
      f = f + load<u32>(WK, 8) + ch(c, d, e) + S1(c); b += f; f += S0(g) + maj(g, h, a);
      e = e + load<u32>(WK, 12) + ch(b, c, d) + S1(b); a += e; e += S0(f) + maj(f, g, h);
      x0 = step(x0, x1, x2, x3); v128.store(WK, i32x4.add(x0, v128.load(k, 0)), 0);
      d = d + load<u32>(WK, 16) + ch(a, b, c) + S1(a); h += d; d += S0(e) + maj(e, f, g);
      c = c + load<u32>(WK, 20) + ch(h, a, b) + S1(h); g += c; c += S0(d) + maj(d, e, f);
      b = b + load<u32>(WK, 24) + ch(g, h, a) + S1(g); f += b; b += S0(c) + maj(c, d, e);
      a = a + load<u32>(WK, 28) + ch(f, g, h) + S1(f); e += a; a += S0(b) + maj(b, c, d);
      x1 = step(x1, x2, x3, x0); v128.store(WK, i32x4.add(x1, v128.load(k, 16)), 16);
      h = h + load<u32>(WK, 32) + ch(e, f, g) + S1(e); d += h; h += S0(a) + maj(a, b, c);
      g = g + load<u32>(WK, 36) + ch(d, e, f) + S1(d); c += g; g += S0(h) + maj(h, a, b);
      f = f + load<u32>(WK, 40) + ch(c, d, e) + S1(c); b += f; f += S0(g) + maj(g, h, a);
      e = e + load<u32>(WK, 44) + ch(b, c, d) + S1(b); a += e; e += S0(f) + maj(f, g, h);
      x2 = step(x2, x3, x0, x1); v128.store(WK, i32x4.add(x2, v128.load(k, 32)), 32);
      d = d + load<u32>(WK, 48) + ch(a, b, c) + S1(a); h += d; d += S0(e) + maj(e, f, g);
      c = c + load<u32>(WK, 52) + ch(h, a, b) + S1(h); g += c; c += S0(d) + maj(d, e, f);
      b = b + load<u32>(WK, 56) + ch(g, h, a) + S1(g); f += b; b += S0(c) + maj(c, d, e);
      a = a + load<u32>(WK, 60) + ch(f, g, h) + S1(f); e += a; a += S0(b) + maj(b, c, d);
      x3 = step(x3, x0, x1, x2); v128.store(WK, i32x4.add(x3, v128.load(k, 48)), 48);
    }
    // §6.2.2 step 4: H(i) = working variables + H(i-1).
    a += load<u32>(st, 0); b += load<u32>(st, 4); c += load<u32>(st, 8); d += load<u32>(st, 12);
    e += load<u32>(st, 16); f += load<u32>(st, 20); g += load<u32>(st, 24); h += load<u32>(st, 28);
    store<u32>(st, a, 0); store<u32>(st, b, 4); store<u32>(st, c, 8); store<u32>(st, d, 12);
    store<u32>(st, e, 16); store<u32>(st, f, 20); store<u32>(st, g, 24); store<u32>(st, h, 28);
  }
  wipe(WK, 64);
}

export function sha256Init(ctx: usize): void {
  memory.copy(ctx, IV, 32);
  memory.fill(ctx + 32, 0, SHA256_CTX_SIZE - 32);
}

// Branches and copy sizes depend only on lengths (public), never on message bytes.
export function sha256Update(ctx: usize, p: usize, len: usize): void {
  const n = load<u64>(ctx, 96), fill = <usize>n & 63, buf = ctx + 32;
  store<u64>(ctx, n + len, 96);
  if (fill) {
    const take = min<usize>(64 - fill, len);
    memory.copy(buf + fill, p, take);
    if (fill + take < 64) return;
    compress(ctx, buf, 1);
    p += take; len -= take;
  }
  // Whole blocks, 64 KiB per call: one long call would stay in the engine's baseline tier.
  for (let b = len / 64; b; ) { const k = min<usize>(b, 1024); compress(ctx, p, k); p += k * 64; b -= k; }
  memory.copy(buf, p, len & 63);
}

// Writes the 32-byte digest to `out`, then wipes the context.
export function sha256Final(ctx: usize, out: usize): void {
  const n = load<u64>(ctx, 96), buf = ctx + 32;
  let fill = <usize>n & 63;
  // §5.1.1: append bit 1, zeros, then the message length in bits as a 64-bit big-endian integer.
  store<u8>(buf + fill++, 0x80);
  if (fill > 56) { memory.fill(buf + fill, 0, 64 - fill); compress(ctx, buf, 1); fill = 0; }
  memory.fill(buf + fill, 0, 56 - fill);
  store<u64>(buf, bswap(n << 3), 56);
  compress(ctx, buf, 1);
  for (let i: usize = 0; i < 32; i += 4) store<u32>(out + i, bswap(load<u32>(ctx + i)));
  wipe(ctx, SHA256_CTX_SIZE);
}

// One-shot; `out` may alias the input.
export function sha256(p: usize, len: usize, out: usize): void {
  sha256Init(ONE_SHOT);
  sha256Update(ONE_SHOT, p, len);
  sha256Final(ONE_SHOT, out);
}
