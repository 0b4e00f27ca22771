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
], 16);
// FIPS 180-4 §5.3.5: initial hash value H(0).
const IV = memory.data<u64>([
  0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
  0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
], 16);
const ONE_SHOT = memory.data(SHA512_CTX_SIZE, 16);

// FIPS 180-4 §4.1.3, (4.8)-(4.13).
@inline function S0(x: u64): u64 { return rotr(x, 28) ^ rotr(x, 34) ^ rotr(x, 39); }
@inline function S1(x: u64): u64 { return rotr(x, 14) ^ rotr(x, 18) ^ rotr(x, 41); }
@inline function s0(x: u64): u64 { return rotr(x, 1) ^ rotr(x, 8) ^ (x >> 7); }
@inline function s1(x: u64): u64 { return rotr(x, 19) ^ rotr(x, 61) ^ (x >> 6); }
@inline function ch(x: u64, y: u64, z: u64): u64 { return z ^ (x & (y ^ z)); }
@inline function maj(x: u64, y: u64, z: u64): u64 { return (x & y) | (z & (x | y)); }

// Two message words at once; FIPS 180-4 §3.1 words are big-endian.
@inline function be(p: usize, o: usize): v128 {
  const v = v128.load(p + o);
  return i8x16.shuffle(v, v, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
}

// FIPS 180-4 §6.4.2 over the whole blocks in [p, end). Working variables and the
// rolling 16-word schedule stay in locals.
function compress(st: usize, p: usize, end: usize): void {
  let a = load<u64>(st, 0), b = load<u64>(st, 8), c = load<u64>(st, 16), d = load<u64>(st, 24);
  let e = load<u64>(st, 32), f = load<u64>(st, 40), g = load<u64>(st, 48), h = load<u64>(st, 56);
  for (; p < end; p += 128) {
    let v = be(p, 0), w0 = i64x2.extract_lane(v, 0), w1 = i64x2.extract_lane(v, 1);
    v = be(p, 16); let w2 = i64x2.extract_lane(v, 0), w3 = i64x2.extract_lane(v, 1);
    v = be(p, 32); let w4 = i64x2.extract_lane(v, 0), w5 = i64x2.extract_lane(v, 1);
    v = be(p, 48); let w6 = i64x2.extract_lane(v, 0), w7 = i64x2.extract_lane(v, 1);
    v = be(p, 64); let w8 = i64x2.extract_lane(v, 0), w9 = i64x2.extract_lane(v, 1);
    v = be(p, 80); let w10 = i64x2.extract_lane(v, 0), w11 = i64x2.extract_lane(v, 1);
    v = be(p, 96); let w12 = i64x2.extract_lane(v, 0), w13 = i64x2.extract_lane(v, 1);
    v = be(p, 112); let w14 = i64x2.extract_lane(v, 0), w15 = i64x2.extract_lane(v, 1);
    for (let k = K; ; k += 128) {
      // §6.4.2 step 3: T1 = h + Σ1(e) + Ch(e,f,g) + Kt + Wt; d += T1; h = T1 + Σ0(a) + Maj(a,b,c).
      h += S1(e) + ch(e, f, g) + load<u64>(k, 0) + w0; d += h; h += S0(a) + maj(a, b, c);
      g += S1(d) + ch(d, e, f) + load<u64>(k, 8) + w1; c += g; g += S0(h) + maj(h, a, b);
      f += S1(c) + ch(c, d, e) + load<u64>(k, 16) + w2; b += f; f += S0(g) + maj(g, h, a);
      e += S1(b) + ch(b, c, d) + load<u64>(k, 24) + w3; a += e; e += S0(f) + maj(f, g, h);
      d += S1(a) + ch(a, b, c) + load<u64>(k, 32) + w4; h += d; d += S0(e) + maj(e, f, g);
      c += S1(h) + ch(h, a, b) + load<u64>(k, 40) + w5; g += c; c += S0(d) + maj(d, e, f);
      b += S1(g) + ch(g, h, a) + load<u64>(k, 48) + w6; f += b; b += S0(c) + maj(c, d, e);
      a += S1(f) + ch(f, g, h) + load<u64>(k, 56) + w7; e += a; a += S0(b) + maj(b, c, d);
      h += S1(e) + ch(e, f, g) + load<u64>(k, 64) + w8; d += h; h += S0(a) + maj(a, b, c);
      g += S1(d) + ch(d, e, f) + load<u64>(k, 72) + w9; c += g; g += S0(h) + maj(h, a, b);
      f += S1(c) + ch(c, d, e) + load<u64>(k, 80) + w10; b += f; f += S0(g) + maj(g, h, a);
      e += S1(b) + ch(b, c, d) + load<u64>(k, 88) + w11; a += e; e += S0(f) + maj(f, g, h);
      d += S1(a) + ch(a, b, c) + load<u64>(k, 96) + w12; h += d; d += S0(e) + maj(e, f, g);
      c += S1(h) + ch(h, a, b) + load<u64>(k, 104) + w13; g += c; c += S0(d) + maj(d, e, f);
      b += S1(g) + ch(g, h, a) + load<u64>(k, 112) + w14; f += b; b += S0(c) + maj(c, d, e);
      a += S1(f) + ch(f, g, h) + load<u64>(k, 120) + w15; e += a; a += S0(b) + maj(b, c, d);
      if (k == K + 512) break;
      // §6.4.2 step 1: Wt = σ1(Wt-2) + Wt-7 + σ0(Wt-15) + Wt-16, kept in a 16-word window.
      w0 += s1(w14) + w9 + s0(w1); w1 += s1(w15) + w10 + s0(w2);
      w2 += s1(w0) + w11 + s0(w3); w3 += s1(w1) + w12 + s0(w4);
      w4 += s1(w2) + w13 + s0(w5); w5 += s1(w3) + w14 + s0(w6);
      w6 += s1(w4) + w15 + s0(w7); w7 += s1(w5) + w0 + s0(w8);
      w8 += s1(w6) + w1 + s0(w9); w9 += s1(w7) + w2 + s0(w10);
      w10 += s1(w8) + w3 + s0(w11); w11 += s1(w9) + w4 + s0(w12);
      w12 += s1(w10) + w5 + s0(w13); w13 += s1(w11) + w6 + s0(w14);
      w14 += s1(w12) + w7 + s0(w15); w15 += s1(w13) + w8 + s0(w0);
    }
    // §6.4.2 step 4: H(i) = working variables + H(i-1).
    a += load<u64>(st, 0); b += load<u64>(st, 8); c += load<u64>(st, 16); d += load<u64>(st, 24);
    e += load<u64>(st, 32); f += load<u64>(st, 40); g += load<u64>(st, 48); h += load<u64>(st, 56);
    store<u64>(st, a, 0); store<u64>(st, b, 8); store<u64>(st, c, 16); store<u64>(st, d, 24);
    store<u64>(st, e, 32); store<u64>(st, f, 40); store<u64>(st, g, 48); store<u64>(st, h, 56);
  }
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
    const take = min(128 - fill, len);
    memory.copy(buf + fill, p, take);
    if (fill + take < 128) return;
    compress(ctx, buf, buf + 128);
    p += take;
    len -= take;
  }
  const whole = len & ~127;
  compress(ctx, p, p + whole);
  memory.copy(buf, p + whole, len - whole);
}

// Writes the 64-byte digest to `out`, then wipes the context.
export function sha512Final(ctx: usize, out: usize): void {
  const n = load<u64>(ctx, 192), buf = ctx + 64;
  let fill = <usize>n & 127;
  // §5.1.2: append bit 1, zeros, then the message length in bits as a 128-bit big-endian integer.
  store<u8>(buf + fill++, 0x80);
  if (fill > 112) {
    memory.fill(buf + fill, 0, 128 - fill);
    compress(ctx, buf, buf + 128);
    fill = 0;
  }
  memory.fill(buf + fill, 0, 112 - fill);
  store<u64>(buf, bswap(n >> 61), 112);
  store<u64>(buf, bswap(n << 3), 120);
  compress(ctx, buf, buf + 128);
  for (let i: usize = 0; i < 64; i += 8) store<u64>(out + i, bswap(load<u64>(ctx + i)));
  wipe(ctx, SHA512_CTX_SIZE);
}

// One-shot; `out` may alias the input.
export function sha512(p: usize, len: usize, out: usize): void {
  sha512Init(ONE_SHOT);
  sha512Update(ONE_SHOT, p, len);
  sha512Final(ONE_SHOT, out);
}
