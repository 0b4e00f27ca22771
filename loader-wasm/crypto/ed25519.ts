// Trusted: strict Ed25519 verification (RFC 8032 §5.1.7, SPEC.md §2.3) decides which reviewer
// signatures the loader accepts; a wrong accept lets an unsigned model or manifest through.
//
// Every input here is public (key, message, signature), so all of it may run in variable
// time. Points use extended twisted Edwards coordinates (X:Y:Z:T), x = X/Z, y = Y/Z,
// xy = T/Z, on -x^2 + y^2 = 1 + d x^2 y^2 (RFC 8032 §5.1; a = -1 formulas of Hisil et al.).
import {
  FE, feAdd, feCopy, feFromBytes, feInvert, feMul, feMulSmall, feNeg, feSet, feSq, feSub,
  feToBytes, fePow22523,
} from "./field25519";
import { ctEqual } from "./ct";
import { SHA512_CTX_SIZE, sha512Final, sha512Init, sha512Update } from "./sha512";

// ed25519Verify result codes. Precedence when several apply: S, then A (encoding, small
// order), then R (encoding, small order), then the equation.
export const ED_OK: i32 = 0;
export const ED_BAD_S: i32 = 1; // S >= L
export const ED_BAD_A: i32 = 2; // A non-canonical or not on the curve
export const ED_BAD_R: i32 = 3; // R non-canonical or not on the curve
export const ED_SMALL_A: i32 = 4; // [8]A is the identity
export const ED_SMALL_R: i32 = 5; // [8]R is the identity
export const ED_MISMATCH: i32 = 6; // [S]B - [k]A != R

const PT: usize = 4 * FE; // extended point X, Y, Z, T; a cached point is Y-X, Y+X, 2dT, 2Z
// Constants as carried limbs: d = -121665/121666, 2d, sqrt(-1) = 2^((p-1)/4) (RFC 8032 §5.1).
const D = memory.data<i32>([56195235, 13857412, 51736253, 6949390, 114729, 24766616, 60832955,
  30306712, 48412415, 21499315, 0, 0], 16);
const D2 = memory.data<i32>([45281625, 27714825, 36363642, 13898781, 229458, 15978800, 54557047,
  27058993, 29715967, 9444199, 0, 0], 16);
const SQRTM1 = memory.data<i32>([34513072, 25610706, 9377949, 3500415, 12389472, 33281959,
  41962654, 31548777, 326685, 11406482, 0, 0], 16);
// The encoding of B (y = 4/5, x even), RFC 8032 §5.1.
const B_ENC = memory.data<u8>([0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
  0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
  0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66]);
// L = 2^252 + C (RFC 8032 §5.1), little-endian bytes, and C in 16-bit limbs.
const L_BYTES = memory.data<u8>([0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c,
  0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
const C16 = memory.data<i64>([54253, 23797, 25370, 22546, 40150, 41719, 63966, 5342]);

const W_B = 8; // wNAF width for B: odd multiples 1..127 of B, 64 cached points
const W_A = 5; // wNAF width for A: odd multiples 1..15 of -A, 8 cached points
const BTAB = memory.data(64 * <i32>PT, 16);
const ATAB = memory.data(8 * <i32>PT, 16);
let bReady = false;

const T = memory.data(12 * <i32>FE, 16); // field temporaries
const T0 = T, T1 = T + FE, T2 = T + 2 * FE, T3 = T + 3 * FE, T4 = T + 4 * FE, T5 = T + 5 * FE;
const T6 = T + 6 * FE, T7 = T + 7 * FE;
const STEP = T + 8 * FE; // cached 2P while a table of odd multiples of P is built
const PA = memory.data(<i32>PT, 16), PR = memory.data(<i32>PT, 16), ACC = memory.data(<i32>PT, 16);
const Q = memory.data(<i32>PT, 16); // scratch point
const ENC = memory.data(64, 16); // encodings
const SHA = memory.data(<i32>SHA512_CTX_SIZE, 16);
const HK = memory.data(64, 16); // SHA-512(R || A || M), then k mod L
const NS = memory.data(264), NK = memory.data(264); // wNAF digits of S and k
const SCAL = memory.data(40, 8); // scalar padded with zeros for window reads
const RED = memory.data(17 * 8, 8); // mod-L accumulator, 16-bit limbs

// Variable time: inputs are public.
// r = 2p (dbl-2008-hwcd, a = -1, with E, F, G, H negated: the products are unchanged);
// T3 only when an addition follows.
function dbl(r: usize, p: usize, wantT: bool): void {
  feSq(T0, p); // A = X^2
  feSq(T1, p + FE); // B = Y^2
  feSq(T2, p + 2 * FE); feAdd(T2, T2, T2); // C = 2 Z^2
  feAdd(T3, p, p + FE); feSq(T3, T3); // (X + Y)^2
  feAdd(T4, T0, T1); // H = A + B
  feSub(T3, T4, T3); // E = H - (X + Y)^2
  feSub(T5, T0, T1); // G = A - B
  feAdd(T2, T2, T5); // F = C + G
  feMul(r, T2, T3); // X3 = F E
  feMul(r + FE, T4, T5); // Y3 = H G
  feMul(r + 2 * FE, T2, T5); // Z3 = F G
  if (wantT) feMul(r + 3 * FE, T4, T3); // T3 = H E
}

// Variable time: inputs are public.
// r = p + q, or p - q when neg (add-2008-hwcd-3 with a cached q); T3 only when an addition
// follows.
function add(r: usize, p: usize, q: usize, neg: bool, wantT: bool): void {
  feSub(T0, p + FE, p); feAdd(T1, p + FE, p); // Y1 - X1, Y1 + X1
  feMul(T0, T0, neg ? q + FE : q); // A = (Y1 - X1)(Y2 -+ X2)
  feMul(T1, T1, neg ? q : q + FE); // B = (Y1 + X1)(Y2 +- X2)
  feMul(T2, p + 3 * FE, q + 2 * FE); // C = 2d T1 T2 (negated by neg)
  feMul(T3, p + 2 * FE, q + 3 * FE); // D = 2 Z1 Z2
  feSub(T4, T1, T0); feAdd(T5, T1, T0); // E = B - A, H = B + A
  if (neg) { feAdd(T6, T3, T2); feSub(T7, T3, T2); } else { feSub(T6, T3, T2); feAdd(T7, T3, T2); } // F, G
  feMul(r, T6, T4); // X3 = E F
  feMul(r + FE, T7, T5); // Y3 = G H
  feMul(r + 2 * FE, T6, T7); // Z3 = F G
  if (wantT) feMul(r + 3 * FE, T5, T4); // T3 = E H
}

// Variable time: inputs are public.
function toCached(c: usize, p: usize): void {
  feSub(c, p + FE, p); feAdd(c + FE, p + FE, p);
  feMul(c + 2 * FE, p + 3 * FE, D2);
  feAdd(c + 3 * FE, p + 2 * FE, p + 2 * FE);
}

// Variable time: inputs are public.
// Strict decoding (RFC 8032 §5.1.3): 0 on success, 1 for y >= p, no square root, or x = 0
// with the sign bit set.
function decode(p: usize, s: usize): i32 {
  // §5.1.3 step 1, strictly: y must be below p = 2^255 - 19.
  if ((load<u8>(s, 31) & 0x7f) == 0x7f && load<u8>(s) >= 0xed) {
    let i: usize = 1;
    while (i < 31 && load<u8>(s + i) == 0xff) i++;
    if (i == 31) return 1;
  }
  const y = p + FE, u = T4, v = T5, x = p;
  feFromBytes(y, s);
  feSet(p + 2 * FE, 1);
  // §5.1.3 step 2: u = y^2 - 1, v = d y^2 + 1, x = u v^3 (u v^7)^((p-5)/8).
  feSq(u, y); feMul(v, u, D);
  feSub(u, u, p + 2 * FE); feAdd(v, v, p + 2 * FE);
  feSq(T6, v); feMul(T6, T6, v); // v^3
  feSq(T7, T6); feMul(T7, T7, v); feMul(T7, T7, u); // u v^7
  fePow22523(x, T7);
  feMul(x, x, T6); feMul(x, x, u);
  // §5.1.3 step 3: v x^2 = u keeps x; v x^2 = -u takes x sqrt(-1); otherwise no root.
  feSq(T6, x); feMul(T6, T6, v);
  feToBytes(ENC, T6); feToBytes(ENC + 32, u);
  if (!ctEqual(ENC, ENC + 32, 32)) {
    feNeg(u, u); feToBytes(ENC + 32, u);
    if (!ctEqual(ENC, ENC + 32, 32)) return 1;
    feMul(x, x, SQRTM1);
  }
  // §5.1.3 step 4: x = 0 with the sign bit set is rejected; pick the root with x mod 2 = sign.
  feToBytes(ENC, x);
  const sign = load<u8>(s, 31) >> 7;
  let nz: u8 = 0;
  for (let i: usize = 0; i < 32; i++) nz |= load<u8>(ENC + i);
  if (nz == 0 && sign == 1) return 1;
  if ((load<u8>(ENC) & 1) != sign) { feNeg(x, x); feMulSmall(x, x, 1); }
  feMul(p + 3 * FE, x, y);
  return 0;
}

// Variable time: inputs are public.
// s = the encoding of p (RFC 8032 §5.1.2): canonical y, sign of x in bit 255.
function encode(s: usize, p: usize): void {
  feInvert(T0, p + 2 * FE);
  feMul(T1, p, T0); feMul(T2, p + FE, T0);
  feToBytes(s, T2); feToBytes(ENC + 32, T1);
  store<u8>(s, load<u8>(s, 31) | ((load<u8>(ENC, 32) & 1) << 7), 31);
}

// Variable time: inputs are public.
// 1 when [8]p is the identity (X = 0, Y = Z): p has order dividing 8 (SPEC.md §2.3 rule 5).
function smallOrder(p: usize): i32 {
  dbl(Q, p, false); dbl(Q, Q, false); dbl(Q, Q, false);
  feToBytes(ENC, Q);
  for (let i: usize = 0; i < 32; i++) if (load<u8>(ENC + i) != 0) return 0;
  feToBytes(ENC, Q + FE); feToBytes(ENC + 32, Q + 2 * FE);
  return ctEqual(ENC, ENC + 32, 32);
}

// Variable time: inputs are public.
// Width-w NAF of a 256-bit scalar below 2^253: odd digits in (-2^(w-1), 2^(w-1)), at least
// w - 1 zeros after each nonzero digit.
function wnaf(out: usize, s: usize, w: i32): void {
  memory.copy(SCAL, s, 32);
  store<u64>(SCAL, 0, 32);
  memory.fill(out, 0, 264);
  const mask = (1 << w) - 1;
  let carry = 0;
  for (let i = 0; i < 256; ) {
    const v = (<i32>(load<u32>(SCAL + (i >> 3)) >> (i & 7)) & mask) + carry;
    if ((v & 1) == 0) { i++; continue; }
    const d = v >= (1 << (w - 1)) ? v - (1 << w) : v;
    carry = d < 0 ? 1 : 0;
    store<i8>(out + i, <i8>d);
    i += w;
  }
}

// Variable time: inputs are public.
// out = the 64-byte little-endian h mod L, by Horner's rule 16 bits at a time: with r < L,
// 2^16 r + w = q 2^252 + low, q < 2^17, and 2^252 = -C (mod L) gives low - q C, which
// lies in (-L, 2^252); one addition of L when negative restores 0 <= r < L.
function reduceModL(out: usize, h: usize): void {
  memory.fill(RED, 0, 17 * 8);
  for (let j = 31; j >= 0; j--) {
    memory.copy(RED + 8, RED, 16 * 8);
    store<i64>(RED, <i64>load<u16>(h + (j << 1)));
    const q = (load<i64>(RED, 128) << 4) | (load<i64>(RED, 120) >> 12);
    store<i64>(RED, 0, 128);
    store<i64>(RED, load<i64>(RED, 120) & 0xfff, 120);
    for (let i: usize = 0; i < 8; i++) store<i64>(RED + 8 * i, load<i64>(RED + 8 * i) - q * load<i64>(C16 + 8 * i));
    if (carry16() < 0) {
      // r += L = C + 2^252
      for (let i: usize = 0; i < 8; i++) store<i64>(RED + 8 * i, load<i64>(RED + 8 * i) + load<i64>(C16 + 8 * i));
      store<i64>(RED, load<i64>(RED, 120) + 0x1000, 120);
      carry16();
    }
  }
  for (let i: usize = 0; i < 16; i++) store<u16>(out + 2 * i, <u16>load<i64>(RED + 8 * i));
}

// Variable time: inputs are public.
// Normalises RED to 16-bit limbs; returns the carry out of limb 15 (-1 when negative).
function carry16(): i64 {
  let c: i64 = 0;
  for (let i: usize = 0; i < 16; i++) {
    const v = load<i64>(RED + 8 * i) + c;
    store<i64>(RED + 8 * i, v & 0xffff);
    c = v >> 16;
  }
  return c;
}

// Variable time: inputs are public.
// BTAB[j] = cached (2j + 1)B, built once on first use.
function initB(): void {
  decode(ACC, B_ENC);
  dbl(Q, ACC, true);
  toCached(STEP, Q);
  for (let j: usize = 0; j < 64; j++) {
    toCached(BTAB + j * PT, ACC);
    add(ACC, ACC, STEP, false, true);
  }
  bReady = true;
}

// Variable time: inputs are public.
// RFC 8032 §5.1.7 with the strict policy of SPEC.md §2.3. pk: 32 bytes, sig: 64 bytes R || S.
export function ed25519Verify(pk: usize, msg: usize, msgLen: usize, sig: usize): i32 {
  // §5.1.7 step 1 / SPEC rule 2: S < L, compared as little-endian integers from the top.
  let i = 31;
  while (i >= 0 && load<u8>(sig + 32 + i) == load<u8>(L_BYTES + i)) i--;
  if (i < 0 || load<u8>(sig + 32 + i) > load<u8>(L_BYTES + i)) return ED_BAD_S;
  // SPEC rules 3-5 for A: canonical, on the curve, not of small order.
  if (decode(PA, pk) != 0) return ED_BAD_A;
  if (smallOrder(PA)) return ED_SMALL_A;
  // §5.1.7 step 2: k = SHA-512(R || A || M) mod L.
  sha512Init(SHA);
  sha512Update(SHA, sig, 32); sha512Update(SHA, pk, 32); sha512Update(SHA, msg, msgLen);
  sha512Final(SHA, HK);
  reduceModL(HK, HK);
  // §5.1.7 step 3, cofactorless: R' = [S]B + [k](-A) by interleaved wNAF (Straus).
  if (!bReady) initB();
  feNeg(PA, PA); feNeg(PA + 3 * FE, PA + 3 * FE); // -A = (-x, y)
  dbl(Q, PA, true);
  toCached(STEP, Q);
  feCopy(ACC, PA); feCopy(ACC + FE, PA + FE); feCopy(ACC + 2 * FE, PA + 2 * FE); feCopy(ACC + 3 * FE, PA + 3 * FE);
  for (let j: usize = 0; j < 8; j++) {
    toCached(ATAB + j * PT, ACC);
    if (j < 7) add(ACC, ACC, STEP, false, true);
  }
  wnaf(NS, sig + 32, W_B);
  wnaf(NK, HK, W_A);
  let top = 255;
  while (top >= 0 && load<i8>(NS + top) == 0 && load<i8>(NK + top) == 0) top--;
  feSet(ACC, 0); feSet(ACC + FE, 1); feSet(ACC + 2 * FE, 1); feSet(ACC + 3 * FE, 0);
  for (let j = top; j >= 0; j--) {
    const ds = <i32>load<i8>(NS + j), dk = <i32>load<i8>(NK + j);
    dbl(ACC, ACC, ds != 0 || dk != 0);
    if (ds != 0) add(ACC, ACC, BTAB + <usize>((ds < 0 ? -ds : ds) >> 1) * PT, ds < 0, dk != 0);
    if (dk != 0) add(ACC, ACC, ATAB + <usize>((dk < 0 ? -dk : dk) >> 1) * PT, dk < 0, false);
  }
  // Compare the canonical encoding of R' with the R bytes. When they match, R = R'.
  encode(ENC, ACC);
  if (ctEqual(ENC, sig, 32)) return smallOrder(ACC) ? ED_SMALL_R : ED_OK;
  // Mismatch: tell an undecodable or small-order R apart from a wrong equation.
  if (decode(PR, sig) != 0) return ED_BAD_R;
  if (smallOrder(PR)) return ED_SMALL_R;
  return ED_MISMATCH;
}

// Variable time: inputs are public.
// SPEC.md §2.3 rules 3-5 for a public key alone (trust configuration): canonical, on the
// curve, not of small order. The same checks as ed25519Verify's ED_BAD_A and ED_SMALL_A.
export function ed25519PublicKeyOk(pk: usize): bool {
  return decode(PA, pk) == 0 && !smallOrder(PA);
}
