// Trusted: Poly1305 (RFC 8439 §2.5) authenticates every AEAD ciphertext the loader opens;
// a flaw here lets forged weights or requests through.
import { wipe } from "./ct";

// Context: h as five u64 limbs of radix 2^32 (h4 holds bits 128 and up), r0..r3 and
// s1..s3 = 5/4·r1..r3 as u32, the pad s (16 bytes), a partial block and its fill count.
export const POLY1305_CTX_SIZE: usize = 104;
const H = 0, R = 40, S = 56, PAD = 68, BUF = 84, USED = 100;
const M32: u64 = 0xffffffff;

export function poly1305Init(ctx: usize, key: usize): void {
  wipe(ctx, POLY1305_CTX_SIZE);
  // RFC 8439 §2.5.1: clamp r (top 4 bits of r[3,7,11,15] and low 2 bits of r[4,8,12] clear).
  store<u32>(ctx, load<u32>(key) & 0x0fffffff, R);
  for (let i: usize = 1; i < 4; i++) {
    const r = load<u32>(key + (i << 2)) & 0x0ffffffc;
    store<u32>(ctx + (i << 2), r, R);
    // 2^128 = 5/4 mod p; exact because r1..r3 are multiples of 4.
    store<u32>(ctx + (i << 2), r + (r >> 2), S - 4);
  }
  memory.copy(ctx + PAD, key + 16, 16);
}

// Multiplier word i of ctx: r0..r3 for i = 0..3, then s1..s3.
@inline export function poly1305Mul(ctx: usize, i: usize): u64 {
  return <u64>load<u32>(ctx + (i << 2), R);
}

@inline export function poly1305Blocks(ctx: usize, p: usize, n: usize, hibit: u64 = 1): void {
  poly1305BlocksWith(ctx, p, n, hibit, poly1305Mul(ctx, 0), poly1305Mul(ctx, 1), poly1305Mul(ctx, 2),
    poly1305Mul(ctx, 3), poly1305Mul(ctx, 4), poly1305Mul(ctx, 5), poly1305Mul(ctx, 6));
}

// RFC 8439 §2.5: for each 16-byte block, h = (h + block + hibit·2^128) · r mod p, reduced only
// partially (h0 < 2^34, h1..h3 < 2^33, h4 < 4) so every sum of products stays below 2^64.
// Takes r and s from the caller: the stitched AEAD kernel loads them once per 256 bytes and
// absorbs one or two blocks between ChaCha20 double rounds.
@inline export function poly1305BlocksWith(ctx: usize, p: usize, n: usize, hibit: u64,
  r0: u64, r1: u64, r2: u64, r3: u64, s1: u64, s2: u64, s3: u64): void {
  let h0 = load<u64>(ctx, H), h1 = load<u64>(ctx, H + 8), h2 = load<u64>(ctx, H + 16);
  let h3 = load<u64>(ctx, H + 24), h4 = load<u64>(ctx, H + 32);
  const end = p + (n << 4);
  // Variable time: inputs are public.
  for (; p < end; p += 16) {
    h0 += <u64>load<u32>(p); h1 += <u64>load<u32>(p, 4);
    h2 += <u64>load<u32>(p, 8); h3 += <u64>load<u32>(p, 12); h4 += hibit;
    const d0 = h0 * r0 + h1 * s3 + h2 * s2 + h3 * s1;
    const d1 = h0 * r1 + h1 * r0 + h2 * s3 + h3 * s2 + h4 * s1;
    const d2 = h0 * r2 + h1 * r1 + h2 * r0 + h3 * s3 + h4 * s2;
    const d3 = h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s3;
    const d4 = h4 * r0 + (d3 >> 32);
    // Carries move in parallel (h1..h3 < 2^33); 2^130 = 5 mod p folds bits above 2^130 into h0.
    h0 = (d0 & M32) + (d4 >> 2) * 5; h1 = (d1 & M32) + (d0 >> 32);
    h2 = (d2 & M32) + (d1 >> 32); h3 = (d3 & M32) + (d2 >> 32); h4 = d4 & 3;
  }
  store<u64>(ctx, h0, H); store<u64>(ctx, h1, H + 8); store<u64>(ctx, h2, H + 16);
  store<u64>(ctx, h3, H + 24); store<u64>(ctx, h4, H + 32);
}

export function poly1305Update(ctx: usize, p: usize, len: usize): void {
  // Variable time: inputs are public.
  let used = <usize>load<u32>(ctx, USED);
  if (used != 0) {
    const take = min(16 - used, len);
    memory.copy(ctx + BUF + used, p, take);
    used += take; p += take; len -= take;
    if (used < 16) { store<u32>(ctx, <u32>used, USED); return; }
    poly1305Blocks(ctx, ctx + BUF, 1);
    used = 0;
  }
  poly1305Blocks(ctx, p, len >> 4);
  used = len & 15;
  memory.copy(ctx + BUF, p + (len & ~15), used);
  store<u32>(ctx, <u32>used, USED);
}

// Writes the 16-byte tag and wipes the context.
export function poly1305Final(ctx: usize, tag: usize): void {
  const used = <usize>load<u32>(ctx, USED);
  // Variable time: inputs are public.
  if (used != 0) {
    // RFC 8439 §2.5: the last short block gets a 0x01 byte and zero padding, and no 2^128.
    store<u8>(ctx + BUF + used, 1);
    memory.fill(ctx + BUF + used + 1, 0, 15 - used);
    poly1305Blocks(ctx, ctx + BUF, 1, 0);
  }
  let h0 = load<u64>(ctx, H), h1 = load<u64>(ctx, H + 8), h2 = load<u64>(ctx, H + 16);
  let h3 = load<u64>(ctx, H + 24), h4 = load<u64>(ctx, H + 32);
  // Full carry, fold above 2^130 once more, carry again: h0..h3 < 2^32, h4 <= 4, so h < 2p.
  h1 += h0 >> 32; h0 &= M32; h2 += h1 >> 32; h1 &= M32; h3 += h2 >> 32; h2 &= M32;
  h4 += h3 >> 32; h3 &= M32;
  h0 += (h4 >> 2) * 5; h4 &= 3;
  h1 += h0 >> 32; h0 &= M32; h2 += h1 >> 32; h1 &= M32; h3 += h2 >> 32; h2 &= M32;
  h4 += h3 >> 32; h3 &= M32;
  // RFC 8439 §2.5.1: a = h mod p, without branches: g = h + 5 - 2^130 is taken iff g >= 0.
  let g0 = h0 + 5, g1 = h1 + (g0 >> 32), g2 = h2 + (g1 >> 32), g3 = h3 + (g2 >> 32);
  const g4 = h4 + (g3 >> 32);
  const take = 0 - (g4 >> 2);
  h0 = (h0 & ~take) | (g0 & take); h1 = (h1 & ~take) | (g1 & take);
  h2 = (h2 & ~take) | (g2 & take); h3 = (h3 & ~take) | (g3 & take);
  // RFC 8439 §2.5.1: tag = (a + s) mod 2^128, little-endian.
  let c = (h0 & M32) + <u64>load<u32>(ctx, PAD);
  store<u32>(tag, <u32>c);
  c = (c >> 32) + (h1 & M32) + <u64>load<u32>(ctx, PAD + 4);
  store<u32>(tag, <u32>c, 4);
  c = (c >> 32) + (h2 & M32) + <u64>load<u32>(ctx, PAD + 8);
  store<u32>(tag, <u32>c, 8);
  c = (c >> 32) + (h3 & M32) + <u64>load<u32>(ctx, PAD + 12);
  store<u32>(tag, <u32>c, 12);
  wipe(ctx, POLY1305_CTX_SIZE);
}

// One-shot MAC; the context lives in static scratch and is wiped by poly1305Final.
const CTX = memory.data(<i32>POLY1305_CTX_SIZE, 16);
export function poly1305(key: usize, p: usize, len: usize, tag: usize): void {
  poly1305Init(CTX, key);
  poly1305Update(CTX, p, len);
  poly1305Final(CTX, tag);
}
