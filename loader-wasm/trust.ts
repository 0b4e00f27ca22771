// Trusted: the loader's identity and its trust decision. It holds the loader's HPKE private
// key, the reviewer keys it accepts, and the one function that decides whether a program
// is signed by enough reviewers (SPEC §6.1).
import { sha256 } from "./crypto/sha256";
import { x25519Base } from "./crypto/x25519";
import { ed25519Verify, ed25519PublicKeyOk } from "./crypto/ed25519";
import * as wire from "./wire";
import { F_TRUST, F_SIGNATURES, BAD_VALUE, NOT_CANONICAL, BAD_KEY, BAD_LENGTH, TOO_LARGE, SIGNATURE_THRESHOLD, err } from "./errors";
import { entropy } from "./imports";

// SPEC §3: at most 32 reviewer keys.
const TRUST = memory.data(8 + 2 + 32 * 32, 16);
let trustLen: usize = 0;
let threshold: u32 = 0;
let reviewerCount: u32 = 0;
const TRUST_HASH = memory.data(32, 16);

export const SK = memory.data(32, 16); // the loader's X25519 private key; never leaves
export const PK = memory.data(32, 16);
export let keyId: u32 = 0;
export let initialized = false;

// SPEC §3 field ids.
const T_MAGIC = F_TRUST | 1, T_THRESHOLD = F_TRUST | 2, T_COUNT = F_TRUST | 3, T_KEYS = F_TRUST | 4;

// Parses and adopts a TrustConfig (SPEC §3), generates the key pair (SPEC §4). 0 or error.
export function initTrust(p: usize, len: usize): u32 {
  wire.begin(p, len);
  if (len > 8 + 2 + 32 * 32) wire.fail(TOO_LARGE, T_MAGIC); // SPEC §13
  wire.magic(wire.kind(0x54, 0x43), T_MAGIC); // "TC"
  const k = wire.u8r(T_THRESHOLD);
  const n = wire.u8r(T_COUNT);
  if (!wire.failed() && (n < 1 || n > 32)) wire.fail(BAD_LENGTH, T_COUNT); // SPEC §3: n in 1..32
  if (!wire.failed() && (k < 1 || k > n)) wire.fail(BAD_VALUE, T_THRESHOLD); // SPEC §3: 1 ≤ k ≤ n
  const keys = wire.bytesAt(<usize>n * 32, T_KEYS);
  wire.finish(F_TRUST);
  if (wire.failed()) return wire.errorCode();
  // Variable time: inputs are public.
  for (let i: u32 = 0; i < n; i++) {
    const key = keys + <usize>i * 32;
    // SPEC §3: strictly ascending, hence no duplicates.
    if (i > 0 && memcmp(key - 32, key, 32) >= 0) return err(NOT_CANONICAL, T_KEYS);
    // SPEC §3 / §2.3 rules 3–5: canonical, on the curve, not of small order.
    if (!ed25519PublicKeyOk(key)) return err(BAD_KEY, T_KEYS);
  }
  if (!entropy(SK, 32)) return 0xffffffff; // caller maps to ENTROPY_FAILED
  x25519Base(PK, SK); // SPEC §2.2: the scalar is 32 entropy bytes
  memory.copy(TRUST, p, len);
  trustLen = len;
  threshold = k;
  reviewerCount = n;
  sha256(TRUST, trustLen, TRUST_HASH);
  const h = memory.data(32, 16);
  sha256(PK, 32, h);
  keyId = <u32>load<u8>(h); // SPEC §4: first byte of SHA-256(hpke_public_key)
  initialized = true;
  return 0;
}

export const REPORT_LEN: usize = 105;

// SPEC §4: writes the 105-byte ReportBody for `nonce` (32 bytes) to `out`.
export function writeReport(out: usize, nonce: usize): void {
  wire.wbegin(out);
  wire.wmagic(wire.kind(0x52, 0x42)); // "RB"
  wire.w8(keyId);
  wire.wbytes(PK, 32);
  wire.wbytes(TRUST_HASH, 32);
  wire.wbytes(nonce, 32);
}

// Variable time: inputs are public.
function memcmp(a: usize, b: usize, n: usize): i32 {
  for (let i: usize = 0; i < n; i++) {
    const x = <i32>load<u8>(a + i), y = <i32>load<u8>(b + i);
    if (x != y) return x - y;
  }
  return 0;
}

function reviewerIndex(key: usize): i32 {
  for (let i: u32 = 0; i < reviewerCount; i++) {
    if (memcmp(TRUST + 10 + <usize>i * 32, key, 32) == 0) return <i32>i;
  }
  return -1;
}

const S_MAGIC = F_SIGNATURES | 1, S_COUNT = F_SIGNATURES | 2, S_ENTRY = F_SIGNATURES | 3;

// SPEC §6.1: THE trust decision. Counts distinct reviewer keys of the trust configuration
// with a valid signature over `signed` = "veil manifest signature v1\0" ‖ manifest. Returns
// 0 if at least `threshold` counted, SIGNATURE_THRESHOLD (or a parse error) otherwise.
// Variable time: inputs are public.
export function enoughSignatures(bundle: usize, bundleLen: usize, signed: usize, signedLen: usize): u32 {
  wire.begin(bundle, bundleLen);
  wire.magic(wire.kind(0x53, 0x47), S_MAGIC); // "SG"
  const n = wire.u8r(S_COUNT);
  if (!wire.failed() && (n < 1 || n > 32)) wire.fail(BAD_LENGTH, S_COUNT); // SPEC §6: 1..32
  const entries = wire.bytesAt(<usize>n * 96, S_ENTRY);
  wire.finish(F_SIGNATURES);
  if (wire.failed()) return wire.errorCode();
  let counted: u32 = 0; // bit i: reviewer i already counted (step 2: distinct keys)
  let valid: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const e = entries + <usize>i * 96;
    const r = reviewerIndex(e); // step 2: unknown keys count zero
    if (r < 0 || (counted & (1 << r)) != 0) continue;
    if (ed25519Verify(e, signed, signedLen, e + 32) == 0) {
      counted |= 1 << r;
      valid++;
    }
  }
  return valid >= threshold ? 0 : err(SIGNATURE_THRESHOLD, 0); // step 3
}

export function trustHash(): usize {
  return TRUST_HASH;
}
