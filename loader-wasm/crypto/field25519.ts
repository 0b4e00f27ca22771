// Trusted: GF(2^255-19) arithmetic under X25519 key agreement and Ed25519 signature checks;
// an arithmetic slip here leaks secret scalars or accepts forged signatures.
//
// An element is 10 signed i32 limbs in radix 2^25.5 (26,25,26,25,... bits), padded to 48
// bytes so that add/sub/copy/swap are three v128 ops. wasm has no 64x64->128 multiply, so
// limbs stay small enough that every product and column sum fits an i64.
// Bounds, in "units" (one carried element: a mul/sq/fromBytes output, limbs below 2^26 or
// 2^25, plus 2^17 on limbs 1 and 5): mul/sq inputs of a and b units need a*b <= 16 (column
// sums then stay below 2^63) and a feMul g of at most 3 units; feAdd/feSub add units.

import { wipe } from "./ct";

export const FE: usize = 48;

const M26: i64 = 0x3ffffff;
const M25: i64 = 0x1ffffff;

// Carries the column sums h0..h9 into carried limbs and stores them. 2^255 = 19 mod p.
@inline function carryStore(h: usize, h0: i64, h1: i64, h2: i64, h3: i64, h4: i64,
  h5: i64, h6: i64, h7: i64, h8: i64, h9: i64): void {
  let c: i64;
  // Two interleaved chains (0..4 and 4..9) shorten the dependency path.
  c = h0 >> 26; h1 += c; h0 &= M26; c = h4 >> 26; h5 += c; h4 &= M26;
  c = h1 >> 25; h2 += c; h1 &= M25; c = h5 >> 25; h6 += c; h5 &= M25;
  c = h2 >> 26; h3 += c; h2 &= M26; c = h6 >> 26; h7 += c; h6 &= M26;
  c = h3 >> 25; h4 += c; h3 &= M25; c = h7 >> 25; h8 += c; h7 &= M25;
  c = h4 >> 26; h5 += c; h4 &= M26; c = h8 >> 26; h9 += c; h8 &= M26;
  c = h9 >> 25; h0 += c * 19; h9 &= M25;
  c = h0 >> 26; h1 += c; h0 &= M26;
  store<i32>(h, <i32>h0, 0); store<i32>(h, <i32>h1, 4); store<i32>(h, <i32>h2, 8);
  store<i32>(h, <i32>h3, 12); store<i32>(h, <i32>h4, 16); store<i32>(h, <i32>h5, 20);
  store<i32>(h, <i32>h6, 24); store<i32>(h, <i32>h7, 28); store<i32>(h, <i32>h8, 32);
  store<i32>(h, <i32>h9, 36);
}

// h = f * g, g at most 3 units. SIMD: an accumulator holds the column pair (k, k+1) and
// gathers F_i * G(k-i), where F_i = [f_i (x2 if i is odd), f_i] (a product of two odd
// limbs carries a factor 2, radix 2^25.5) and G(d) = [g_d, g_d+1] is an unaligned load.
// Columns past limb 9 wrap with a factor 19 (2^255 = 19 mod p): G(-1) = [19 g9, g0] is
// built (3 units of g9 times 19 still fits an i32); wholly wrapped pairs go to W, times 19.
const FS = memory.data(80, 16);
@inline function xm(a: v128, b: v128): v128 {
  return i64x2.extmul_low_i32x4_s(a, b);
}
@inline function x19(n: v128, w: v128): v128 {
  return i64x2.add(n, i64x2.add(i64x2.add(w, i64x2.shl(w, 1)), i64x2.shl(w, 4)));
}
export function feMul(h: usize, f: usize, g: usize): void {
  const fa = v128.load(f), fb = v128.load(f, 16), fc = v128.load(f, 32);
  const k = i32x4(1, 1, 2, 1);
  v128.store(FS, i32x4.mul(i32x4.shuffle(fa, fa, 0, 0, 1, 1), k));
  v128.store(FS, i32x4.mul(i32x4.shuffle(fa, fa, 2, 2, 3, 3), k), 16);
  v128.store(FS, i32x4.mul(i32x4.shuffle(fb, fb, 0, 0, 1, 1), k), 32);
  v128.store(FS, i32x4.mul(i32x4.shuffle(fb, fb, 2, 2, 3, 3), k), 48);
  v128.store(FS, i32x4.mul(i32x4.shuffle(fc, fc, 0, 0, 1, 1), k), 64);
  const F0 = v128.load(FS), F1 = v128.load(FS, 8), F2 = v128.load(FS, 16), F3 = v128.load(FS, 24);
  const F4 = v128.load(FS, 32), F5 = v128.load(FS, 40), F6 = v128.load(FS, 48);
  const F7 = v128.load(FS, 56), F8 = v128.load(FS, 64), F9 = v128.load(FS, 72);
  const G0 = v128.load(g), G1 = v128.load(g, 4), G2 = v128.load(g, 8), G3 = v128.load(g, 12);
  const G4 = v128.load(g, 16), G5 = v128.load(g, 20), G6 = v128.load(g, 24);
  const G7 = v128.load(g, 28), G8 = v128.load(g, 32);
  const Gm1 = i32x4.mul(i32x4.shuffle(v128.load(g, 32), G0, 1, 4, 0, 0), i32x4(19, 1, 0, 0));
  // G(d) for d <= -2 is G(d + 10), accumulated in W.
  const a0 = x19(i64x2.add(xm(F0, G0), xm(F1, Gm1)), i64x2.add(
    i64x2.add(i64x2.add(xm(F2, G8), xm(F3, G7)), i64x2.add(xm(F4, G6), xm(F5, G5))),
    i64x2.add(i64x2.add(xm(F6, G4), xm(F7, G3)), i64x2.add(xm(F8, G2), xm(F9, G1)))));
  const a2 = x19(i64x2.add(i64x2.add(xm(F0, G2), xm(F1, G1)), i64x2.add(xm(F2, G0), xm(F3, Gm1))),
    i64x2.add(i64x2.add(i64x2.add(xm(F4, G8), xm(F5, G7)), i64x2.add(xm(F6, G6), xm(F7, G5))),
      i64x2.add(xm(F8, G4), xm(F9, G3))));
  const a4 = x19(i64x2.add(i64x2.add(i64x2.add(xm(F0, G4), xm(F1, G3)), i64x2.add(xm(F2, G2), xm(F3, G1))),
    i64x2.add(xm(F4, G0), xm(F5, Gm1))),
    i64x2.add(i64x2.add(xm(F6, G8), xm(F7, G7)), i64x2.add(xm(F8, G6), xm(F9, G5))));
  const a6 = x19(i64x2.add(i64x2.add(i64x2.add(xm(F0, G6), xm(F1, G5)), i64x2.add(xm(F2, G4), xm(F3, G3))),
    i64x2.add(i64x2.add(xm(F4, G2), xm(F5, G1)), i64x2.add(xm(F6, G0), xm(F7, Gm1)))),
    i64x2.add(xm(F8, G8), xm(F9, G7)));
  const a8 = i64x2.add(i64x2.add(i64x2.add(i64x2.add(xm(F0, G8), xm(F1, G7)), i64x2.add(xm(F2, G6), xm(F3, G5))),
    i64x2.add(i64x2.add(xm(F4, G4), xm(F5, G3)), i64x2.add(xm(F6, G2), xm(F7, G1)))),
    i64x2.add(xm(F8, G0), xm(F9, Gm1)));
  carryStore(h, i64x2.extract_lane(a0, 0), i64x2.extract_lane(a0, 1), i64x2.extract_lane(a2, 0),
    i64x2.extract_lane(a2, 1), i64x2.extract_lane(a4, 0), i64x2.extract_lane(a4, 1),
    i64x2.extract_lane(a6, 0), i64x2.extract_lane(a6, 1), i64x2.extract_lane(a8, 0),
    i64x2.extract_lane(a8, 1));
}

// h = f^2: the symmetric products counted once and doubled (55 multiplies instead of 100).
export function feSq(h: usize, f: usize): void {
  const f0 = <i64>load<i32>(f, 0), f1 = <i64>load<i32>(f, 4), f2 = <i64>load<i32>(f, 8);
  const f3 = <i64>load<i32>(f, 12), f4 = <i64>load<i32>(f, 16), f5 = <i64>load<i32>(f, 20);
  const f6 = <i64>load<i32>(f, 24), f7 = <i64>load<i32>(f, 28), f8 = <i64>load<i32>(f, 32);
  const f9 = <i64>load<i32>(f, 36);
  const f0x2 = f0 << 1, f1x2 = f1 << 1, f2x2 = f2 << 1, f3x2 = f3 << 1, f4x2 = f4 << 1;
  const f5x2 = f5 << 1, f6x2 = f6 << 1, f7x2 = f7 << 1;
  const f5x38 = f5 * 38, f6x19 = f6 * 19, f7x38 = f7 * 38, f8x19 = f8 * 19, f9x38 = f9 * 38;
  const h0 = f0 * f0 + f1x2 * f9x38 + f2x2 * f8x19 + f3x2 * f7x38 + f4x2 * f6x19 + f5 * f5x38;
  const h1 = f0x2 * f1 + f2 * f9x38 + f3x2 * f8x19 + f4 * f7x38 + f5x2 * f6x19;
  const h2 = f0x2 * f2 + f1x2 * f1 + f3x2 * f9x38 + f4x2 * f8x19 + f5x2 * f7x38 + f6 * f6x19;
  const h3 = f0x2 * f3 + f1x2 * f2 + f4 * f9x38 + f5x2 * f8x19 + f6 * f7x38;
  const h4 = f0x2 * f4 + f1x2 * f3x2 + f2 * f2 + f5x2 * f9x38 + f6x2 * f8x19 + f7 * f7x38;
  const h5 = f0x2 * f5 + f1x2 * f4 + f2x2 * f3 + f6 * f9x38 + f7x2 * f8x19;
  const h6 = f0x2 * f6 + f1x2 * f5x2 + f2x2 * f4 + f3x2 * f3 + f7x2 * f9x38 + f8 * f8x19;
  const h7 = f0x2 * f7 + f1x2 * f6 + f2x2 * f5 + f3x2 * f4 + f8 * f9x38;
  const h8 = f0x2 * f8 + f1x2 * f7x2 + f2x2 * f6 + f3x2 * f5x2 + f4 * f4 + f9 * f9x38;
  const h9 = f0x2 * f9 + f1x2 * f8 + f2x2 * f7 + f3x2 * f6 + f4x2 * f5;
  carryStore(h, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9);
}

// h = f * n for a small constant n (< 2^16).
export function feMulSmall(h: usize, f: usize, n: i64): void {
  carryStore(h, <i64>load<i32>(f, 0) * n, <i64>load<i32>(f, 4) * n, <i64>load<i32>(f, 8) * n,
    <i64>load<i32>(f, 12) * n, <i64>load<i32>(f, 16) * n, <i64>load<i32>(f, 20) * n,
    <i64>load<i32>(f, 24) * n, <i64>load<i32>(f, 28) * n, <i64>load<i32>(f, 32) * n,
    <i64>load<i32>(f, 36) * n);
}

// Limb-wise, no carry: units add up.
@inline export function feAdd(h: usize, f: usize, g: usize): void {
  v128.store(h, i32x4.add(v128.load(f), v128.load(g)));
  v128.store(h, i32x4.add(v128.load(f, 16), v128.load(g, 16)), 16);
  v128.store(h, i32x4.add(v128.load(f, 32), v128.load(g, 32)), 32);
}

@inline export function feSub(h: usize, f: usize, g: usize): void {
  v128.store(h, i32x4.sub(v128.load(f), v128.load(g)));
  v128.store(h, i32x4.sub(v128.load(f, 16), v128.load(g, 16)), 16);
  v128.store(h, i32x4.sub(v128.load(f, 32), v128.load(g, 32)), 32);
}

@inline export function feCopy(h: usize, f: usize): void {
  v128.store(h, v128.load(f));
  v128.store(h, v128.load(f, 16), 16);
  v128.store(h, v128.load(f, 32), 32);
}

@inline export function feNeg(h: usize, f: usize): void {
  v128.store(h, i32x4.neg(v128.load(f)));
  v128.store(h, i32x4.neg(v128.load(f, 16)), 16);
  v128.store(h, i32x4.neg(v128.load(f, 32)), 32);
}

// h = n for a small n.
@inline export function feSet(h: usize, n: i32): void {
  v128.store(h, i32x4.replace_lane(i32x4.splat(0), 0, n));
  v128.store(h, i32x4.splat(0), 16);
  v128.store(h, i32x4.splat(0), 32);
}

// Constant time: swaps f and g when bit = 1, leaves them when bit = 0, without a branch.
export function feCswap(f: usize, g: usize, bit: i32): void {
  const m = i32x4.splat(-bit);
  for (let o: usize = 0; o < FE; o += 16) {
    const a = v128.load(f + o), b = v128.load(g + o);
    const x = v128.and(v128.xor(a, b), m);
    v128.store(f + o, v128.xor(a, x));
    v128.store(g + o, v128.xor(b, x));
  }
}

// h = f^(2^n), n >= 1.
export function feSqN(h: usize, f: usize, n: i32): void {
  feSq(h, f);
  for (let i = 1; i < n; i++) feSq(h, h);
}

// Exponentiation scratch, wiped after each use: T0, T1, T2, Z11.
const SCRATCH = memory.data(4 * 48, 16);
const T0 = SCRATCH, T1 = SCRATCH + 48, T2 = SCRATCH + 96, Z11 = SCRATCH + 144;

// out = z^(2^250 - 1), z11 = z^11 (the shared head of the p-2 and (p-5)/8 chains).
function pow250(out: usize, z11: usize, z: usize): void {
  feSq(T0, z); // z^2
  feSqN(T1, T0, 2); // z^8
  feMul(T1, z, T1); // z^9
  feMul(z11, T0, T1); // z^11
  feSq(T0, z11); // z^22
  feMul(T1, T1, T0); // z^(2^5-1)
  feSqN(T0, T1, 5); feMul(T1, T0, T1); // 2^10-1
  feSqN(T0, T1, 10); feMul(T0, T0, T1); // 2^20-1
  feSqN(T2, T0, 20); feMul(T0, T2, T0); // 2^40-1
  feSqN(T0, T0, 10); feMul(T1, T0, T1); // 2^50-1
  feSqN(T0, T1, 50); feMul(T0, T0, T1); // 2^100-1
  feSqN(T2, T0, 100); feMul(T0, T2, T0); // 2^200-1
  feSqN(T0, T0, 50); feMul(out, T0, T1); // 2^250-1
}

// Constant time (fixed chain): out = z^(p-2) = 1/z (Fermat), and 0 for z = 0.
export function feInvert(out: usize, z: usize): void {
  pow250(out, Z11, z);
  feSqN(out, out, 5); // 2^255 - 32
  feMul(out, out, Z11); // 2^255 - 21 = p - 2
  wipe(SCRATCH, 4 * 48);
}

// Constant time: out = z^((p-5)/8) = z^(2^252-3), the core of the square root (RFC 8032
// §5.1.3). out must not alias z.
export function fePow22523(out: usize, z: usize): void {
  pow250(out, Z11, z);
  feSqN(out, out, 2); // 2^252 - 4
  feMul(out, out, z); // 2^252 - 3
  wipe(SCRATCH, 4 * 48);
}

const TB = memory.data(48, 16);

// Constant time: s = the canonical 32-byte little-endian encoding of f (RFC 7748 §5,
// RFC 8032 §5.1.2), fully reduced mod p.
export function feToBytes(s: usize, f: usize): void {
  // The first pass leaves -2^43 < value < 2^256; the second folds 2^255 (= 19) once more,
  // leaving 0 <= value < 2^255 + 19 < 2p.
  feMulSmall(TB, f, 1);
  feMulSmall(TB, TB, 1);
  let h0 = <i64>load<i32>(TB, 0), h1 = <i64>load<i32>(TB, 4), h2 = <i64>load<i32>(TB, 8);
  let h3 = <i64>load<i32>(TB, 12), h4 = <i64>load<i32>(TB, 16), h5 = <i64>load<i32>(TB, 20);
  let h6 = <i64>load<i32>(TB, 24), h7 = <i64>load<i32>(TB, 28), h8 = <i64>load<i32>(TB, 32);
  let h9 = <i64>load<i32>(TB, 36);
  // q = 1 exactly when value + 19 >= 2^255, i.e. value >= p; then add 19 and drop 2^255.
  let q = (h0 + 19) >> 26;
  q = (h1 + q) >> 25; q = (h2 + q) >> 26; q = (h3 + q) >> 25; q = (h4 + q) >> 26;
  q = (h5 + q) >> 25; q = (h6 + q) >> 26; q = (h7 + q) >> 25; q = (h8 + q) >> 26;
  q = (h9 + q) >> 25;
  h0 += 19 * q;
  h1 += h0 >> 26; h0 &= M26; h2 += h1 >> 25; h1 &= M25; h3 += h2 >> 26; h2 &= M26;
  h4 += h3 >> 25; h3 &= M25; h5 += h4 >> 26; h4 &= M26; h6 += h5 >> 25; h5 &= M25;
  h7 += h6 >> 26; h6 &= M26; h8 += h7 >> 25; h7 &= M25; h9 += h8 >> 26; h8 &= M26;
  h9 &= M25;
  // Limb i starts at bit ceil(25.5 i): 0, 26, 51, 77, 102 | 128, 153, 179, 204, 230.
  store<u64>(s, h0 | (h1 << 26) | (h2 << 51));
  store<u64>(s, (h2 >> 13) | (h3 << 13) | (h4 << 38), 8);
  store<u64>(s, h5 | (h6 << 25) | (h7 << 51), 16);
  store<u64>(s, (h7 >> 13) | (h8 << 12) | (h9 << 38), 24);
  wipe(TB, 48);
}

// h = the 255-bit little-endian number at s; bit 255 is masked (RFC 7748 §5, RFC 8032
// §5.1.3 reads it as the sign of x). Not reduced: 2^255 - 19 .. 2^255 - 1 stay as they are.
export function feFromBytes(h: usize, s: usize): void {
  const w0 = load<i64>(s), w1 = load<i64>(s, 8), w2 = load<i64>(s, 16), w3 = load<i64>(s, 24);
  store<i32>(h, <i32>(w0 & M26), 0);
  store<i32>(h, <i32>((w0 >>> 26) & M25), 4);
  store<i32>(h, <i32>(((w0 >>> 51) | (w1 << 13)) & M26), 8);
  store<i32>(h, <i32>((w1 >>> 13) & M25), 12);
  store<i32>(h, <i32>((w1 >>> 38) & M26), 16);
  store<i32>(h, <i32>(w2 & M25), 20);
  store<i32>(h, <i32>((w2 >>> 25) & M26), 24);
  store<i32>(h, <i32>(((w2 >>> 51) | (w3 << 13)) & M25), 28);
  store<i32>(h, <i32>((w3 >>> 12) & M26), 32);
  store<i32>(h, <i32>((w3 >>> 38) & M25), 36);
}

// Wipes the field's own scratch (multiply operands); callers on secret data call it last.
export function feWipeScratch(): void {
  wipe(FS, 80);
}
