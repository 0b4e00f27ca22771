// Trusted: X25519 (RFC 7748) makes the loader's HPKE key pair and every request's shared
// secret; it runs on the loader's private key, so it must be constant time and leave no trace.
import { ctEqual, wipe } from "./ct";
import {
  FE, feAdd, feCopy, feCswap, feFromBytes, feInvert, feMul, feMulSmall, feSet, feSq, feSub, feToBytes,
  feWipeScratch,
} from "./field25519";

// Ladder state, all secret, wiped on every return: the clamped scalar, then field elements.
const STATE_SIZE: usize = 32 + 11 * FE;
const STATE = memory.data(<i32>STATE_SIZE, 16);
const K = STATE;
const X1 = STATE + 32, X2 = X1 + FE, Z2 = X2 + FE, X3 = Z2 + FE, Z3 = X3 + FE;
const A = Z3 + FE, B = A + FE, C = B + FE, D = C + FE, E = D + FE, F = E + FE;
const ZERO32 = memory.data(32, 16);

// Constant time: out = the u-coordinate of [clamp(scalar)](X1) (RFC 7748 §5), X1 preset.
function ladder(out: usize, scalar: usize): void {
  memory.copy(K, scalar, 32);
  store<u8>(K, load<u8>(K) & 248); // RFC 7748 §5: clear the three low bits,
  store<u8>(K + 31, (load<u8>(K + 31) & 127) | 64); // clear bit 255, set bit 254
  feSet(X2, 1); feSet(Z2, 0); feCopy(X3, X1); feSet(Z3, 1);
  let swap: i32 = 0;
  for (let t = 254; t >= 0; t--) {
    // The byte index depends only on the public loop counter t.
    const bit = (<i32>load<u8>(K + (t >> 3)) >> (t & 7)) & 1;
    swap ^= bit;
    feCswap(X2, X3, swap); feCswap(Z2, Z3, swap); // RFC 7748 §5: cswap with a mask
    swap = bit;
    feAdd(A, X2, Z2); feSq(C, A); // A, AA
    feSub(B, X2, Z2); feSq(D, B); // B, BB
    feSub(E, C, D); // E = AA - BB
    feAdd(F, X3, Z3); feMul(F, F, B); // CB
    feSub(B, X3, Z3); feMul(B, A, B); // DA
    feAdd(A, B, F); feSq(X3, A); // x3 = (DA + CB)^2
    feSub(A, B, F); feSq(A, A); feMul(Z3, A, X1); // z3 = x1 (DA - CB)^2
    feMul(X2, C, D); // x2 = AA BB
    feMulSmall(A, E, 121665); feAdd(A, A, C); feMul(Z2, A, E); // z2 = E (AA + a24 E)
  }
  feCswap(X2, X3, swap); feCswap(Z2, Z3, swap);
  feInvert(Z2, Z2);
  feMul(X2, X2, Z2);
  feToBytes(out, X2);
  wipe(STATE, STATE_SIZE);
  feWipeScratch();
}

// Constant time: out = X25519(scalar, point) (RFC 7748 §5). Returns 0, or 1 with out wiped
// when the shared secret is all zero (RFC 7748 §6.1 check: a small-order point).
export function x25519(out: usize, scalar: usize, point: usize): i32 {
  feFromBytes(X1, point); // RFC 7748 §5: mask bit 255; u >= p is reduced by the arithmetic
  ladder(out, scalar);
  const zero = ctEqual(out, ZERO32, 32);
  if (zero) wipe(out, 32); // the outcome is public: it is the return value
  return zero;
}

// Constant time: out = X25519(scalar, 9), the public key of scalar (RFC 7748 §6.1). Never
// zero: a clamped scalar is a nonzero multiple of 8 below 2^255 and 9 has prime order.
export function x25519Base(out: usize, scalar: usize): void {
  feSet(X1, 9);
  ladder(out, scalar);
}

// The secret key is the 32 entropy bytes (clamped when used); pk = X25519(sk, 9).
export function x25519Keygen(entropy32: usize, skOut: usize, pkOut: usize): void {
  memory.copy(skOut, entropy32, 32);
  x25519Base(pkOut, skOut);
}
