// TrustConfig (SPEC §3) encoder and strict decoder. UNTRUSTED host code: reviewer public keys only.
import { sha256 } from "@noble/hashes/sha2.js";
import { compareBytes } from "./bytes.ts";
import { KIND, LIMITS } from "./constants.ts";
import { isAcceptableEd25519Key } from "./ed25519.ts";
import { Reader, Writer, validated } from "./wire.ts";

export interface TrustConfig {
  /** k: signatures needed, 1..reviewers.length. */
  threshold: number;
  /** Ed25519 public keys, strictly ascending bytewise (1..32 of them). */
  reviewers: Uint8Array[];
}

const S = "trust_config";

export function decodeTrustConfig(bytes: Uint8Array): TrustConfig {
  const r: Reader = new Reader(bytes, S);
  if (bytes.length > LIMITS.TRUST_CONFIG_MAX) r.fail("TOO_LARGE", "", `${bytes.length} bytes exceed TRUST_CONFIG_MAX ${LIMITS.TRUST_CONFIG_MAX}`);
  r.magic(KIND.TRUST_CONFIG);
  const threshold = r.u8("threshold");
  const count = r.ranged("count", "u8", 1, 32, "BAD_LENGTH");
  if (threshold < 1 || threshold > count) r.fail("BAD_VALUE", "threshold", `${threshold} is not in 1..${count} (count)`);
  const reviewers: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const key = r.fixed(`reviewer_key[${i}]`, 32);
    if (i > 0 && compareBytes(reviewers[i - 1], key) >= 0)
      r.fail("NOT_CANONICAL", `reviewer_key[${i}]`, "reviewer keys must be strictly ascending (no duplicates)");
    if (!isAcceptableEd25519Key(key))
      r.fail("BAD_KEY", `reviewer_key[${i}]`, "not a canonical Ed25519 point outside the small-order subgroup");
    reviewers.push(key);
  }
  r.end();
  return { threshold, reviewers };
}

/** Encodes; pass `sort: true` to order the keys canonically first. */
export function encodeTrustConfig(tc: TrustConfig, opts: { sort?: boolean; validate?: boolean } = {}): Uint8Array {
  const keys = opts.sort ? [...tc.reviewers].sort(compareBytes) : tc.reviewers;
  const w: Writer = new Writer(S).magic(KIND.TRUST_CONFIG).u8(tc.threshold, "threshold").u8(keys.length, "count");
  keys.forEach((k, i) => w.fixed(k, 32, `reviewer_key[${i}]`));
  const out = w.finish();
  return opts.validate === false ? out : validated(out, decodeTrustConfig);
}

/** SHA-256 of the TrustConfig bytes, as bound into every report (§4). */
export const trustConfigHash = (bytes: Uint8Array): Uint8Array => sha256(bytes);
