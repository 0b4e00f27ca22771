// Test build only: exports for the curve primitives (owned by the curve work).
import { ed25519Verify } from "../crypto/ed25519";
import { x25519 as x25519Impl, x25519Base, x25519Keygen } from "../crypto/x25519";

export function x25519(out: usize, scalar: usize, point: usize): i32 {
  return x25519Impl(out, scalar, point);
}

export function x25519_base(out: usize, scalar: usize): void {
  x25519Base(out, scalar);
}

export function x25519_keygen(entropy: usize, skOut: usize, pkOut: usize): void {
  x25519Keygen(entropy, skOut, pkOut);
}

export function ed25519_verify(pk: usize, msg: usize, msgLen: usize, sig: usize): i32 {
  return ed25519Verify(pk, msg, msgLen, sig);
}
