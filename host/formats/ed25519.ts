// Strict Ed25519 verification and key checks of SPEC §2.3, on @noble/curves points. UNTRUSTED host code: public keys and signatures only (diagnostics; the loader decides trust).
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { concat } from "./bytes.ts";

const Point = ed25519.Point;
type EdPoint = InstanceType<typeof Point>;

/** L = 2^252 + 27742317777372353535851937790883648493. */
export const ED25519_L = (1n << 252n) + 27742317777372353535851937790883648493n;

const leToBig = (b: Uint8Array): bigint => {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
};

/**
 * Rules 3–5: canonical encoding (y < p, no x = 0 with the sign bit), on the curve, not of
 * small order. noble's non-ZIP-215 decoding enforces rule 3 and 4 exactly.
 */
function decodeStrict(b: Uint8Array): EdPoint | undefined {
  if (!(b instanceof Uint8Array) || b.length !== 32) return undefined;
  let p: EdPoint;
  try {
    p = Point.fromBytes(b, false);
  } catch {
    return undefined;
  }
  if (p.isSmallOrder()) return undefined;
  return p;
}

/** §3: a reviewer key must satisfy §2.3 rules 3–5. */
export const isAcceptableEd25519Key = (publicKey: Uint8Array): boolean => decodeStrict(publicKey) !== undefined;

/** §2.3: strict, cofactorless verification compared on the canonical encoding of R. */
export function verifyStrict(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!(signature instanceof Uint8Array) || signature.length !== 64) return false;
  const rBytes = signature.subarray(0, 32);
  const s = leToBig(signature.subarray(32));
  if (s >= ED25519_L) return false;
  const A = decodeStrict(publicKey);
  const R = decodeStrict(rBytes);
  if (!A || !R) return false;
  const k = leToBig(sha512(concat(rBytes, publicKey, message))) % ED25519_L;
  // [S]B − [k]A must encode to exactly the received R.
  const check = Point.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k));
  const enc = check.toBytes();
  for (let i = 0; i < 32; i++) if (enc[i] !== rBytes[i]) return false;
  return true;
}
