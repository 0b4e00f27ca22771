// ReportBody (SPEC §4) encoder and strict decoder. UNTRUSTED host code: public key, hashes and nonce only.
import { sha256 } from "@noble/hashes/sha2.js";
import { KIND } from "./constants.ts";
import { Reader, Writer, validated } from "./wire.ts";

export interface ReportBody {
  /** First byte of SHA-256(hpkePublicKey). */
  keyId: number;
  hpkePublicKey: Uint8Array;
  trustConfigHash: Uint8Array;
  nonce: Uint8Array;
}

export const REPORT_BODY_SIZE = 105;
const S = "report";

/** §4: key_id is the first byte of SHA-256(hpke_public_key). */
export const reportKeyId = (hpkePublicKey: Uint8Array): number => sha256(hpkePublicKey)[0];

export function decodeReportBody(bytes: Uint8Array): ReportBody {
  const r: Reader = new Reader(bytes, S);
  r.magic(KIND.REPORT);
  const keyId = r.u8("key_id");
  const hpkePublicKey = r.fixed("hpke_public_key", 32);
  const trustConfigHash = r.fixed("trust_config_hash", 32);
  const nonce = r.fixed("nonce", 32);
  r.end();
  const expected = reportKeyId(hpkePublicKey);
  if (keyId !== expected) r.fail("BAD_VALUE", "key_id", `${keyId} is not the first byte of SHA-256(hpke_public_key) (${expected})`);
  return { keyId, hpkePublicKey, trustConfigHash, nonce };
}

export function encodeReportBody(rb: ReportBody, opts: { validate?: boolean } = {}): Uint8Array {
  const out = new Writer(S)
    .magic(KIND.REPORT)
    .u8(rb.keyId, "key_id")
    .fixed(rb.hpkePublicKey, 32, "hpke_public_key")
    .fixed(rb.trustConfigHash, 32, "trust_config_hash")
    .fixed(rb.nonce, 32, "nonce")
    .finish();
  return opts.validate === false ? out : validated(out, decodeReportBody);
}

/** The report a loader with this key emits for `nonce` (what §10 rebuilds). */
export const buildReportBody = (hpkePublicKey: Uint8Array, trustConfigHash: Uint8Array, nonce: Uint8Array): ReportBody => ({
  keyId: reportKeyId(hpkePublicKey),
  hpkePublicKey,
  trustConfigHash,
  nonce,
});
