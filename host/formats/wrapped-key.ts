// WrappedKey (SPEC §10) encoder and strict decoder. UNTRUSTED host code: the structure holds only ciphertext and public values.
import { KIND } from "./constants.ts";
import { Reader, Writer, validated } from "./wire.ts";

export interface WrappedKey {
  keyId: Uint8Array;
  reportNonce: Uint8Array;
  enc: Uint8Array;
  /** Sealed 32-byte data key and 16-byte tag. */
  ct: Uint8Array;
}

export const WRAPPED_KEY_SIZE = 136;
/** §10: the AAD is the first 56 bytes (magic ‖ key_id ‖ report_nonce). */
export const WRAPPED_KEY_AAD_SIZE = 56;
const S = "wrapped_key";

export function decodeWrappedKey(bytes: Uint8Array): WrappedKey {
  const r: Reader = new Reader(bytes, S);
  r.magic(KIND.WRAPPED_KEY);
  const keyId = r.fixed("key_id", 16);
  const reportNonce = r.fixed("report_nonce", 32);
  const enc = r.fixed("enc", 32);
  const ct = r.fixed("ct", 48);
  r.end();
  return { keyId, reportNonce, enc, ct };
}

export function encodeWrappedKey(k: WrappedKey, opts: { validate?: boolean } = {}): Uint8Array {
  const out = new Writer(S)
    .magic(KIND.WRAPPED_KEY)
    .fixed(k.keyId, 16, "key_id")
    .fixed(k.reportNonce, 32, "report_nonce")
    .fixed(k.enc, 32, "enc")
    .fixed(k.ct, 48, "ct")
    .finish();
  return opts.validate === false ? out : validated(out, decodeWrappedKey);
}
