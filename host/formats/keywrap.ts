// Key release (SPEC §10): the broker's wrap of a data key to one loader, and a TEST/REFERENCE unwrap. Trust status: wrapKey runs on the key broker's own machine (it holds the data key); unwrapKey is for tests only — in production only the loader unwraps. The untrusted host only relays WrappedKey bytes.
import { sha256 } from "@noble/hashes/sha2.js";
import { ascii, concat } from "./bytes.ts";
import { VeilFormatError } from "./errors.ts";
import { publicKeyOf, setupBaseR, setupBaseS } from "./hpke.ts";
import { KIND } from "./constants.ts";
import { buildReportBody, decodeReportBody, encodeReportBody } from "./report.ts";
import { WRAPPED_KEY_AAD_SIZE, decodeWrappedKey, encodeWrappedKey } from "./wrapped-key.ts";
import { Writer } from "./wire.ts";

const LABEL = ascii("veil key release v1\0");
const S = "wrapped_key";

/** info = "veil key release v1" ‖ 0x00 ‖ key_id ‖ SHA-256(report). */
export const keyReleaseInfo = (keyId: Uint8Array, reportBytes: Uint8Array): Uint8Array => concat(LABEL, keyId, sha256(reportBytes));

const aadFor = (keyId: Uint8Array, reportNonce: Uint8Array): Uint8Array =>
  new Writer(S).magic(KIND.WRAPPED_KEY).fixed(keyId, 16, "key_id").fixed(reportNonce, 32, "report_nonce").finish();

export interface WrapKeyOptions {
  /** The ReportBody bytes the broker verified (§4.2 is the broker's job before calling this). */
  report: Uint8Array;
  keyId: Uint8Array;
  dataKey: Uint8Array;
  /** Tests only. */
  ephemeralPrivateKey?: Uint8Array;
}

/** Broker: wraps a 32-byte data key to the loader that emitted `report`. */
export function wrapKey(opts: WrapKeyOptions): Uint8Array {
  const rb = decodeReportBody(opts.report);
  if (opts.keyId.length !== 16) throw new VeilFormatError("BAD_LENGTH", S, "key_id", `${opts.keyId.length} bytes, not 16`, "wrap");
  if (opts.dataKey.length !== 32) throw new VeilFormatError("BAD_LENGTH", S, "ct", `data key is ${opts.dataKey.length} bytes, not 32`, "wrap");
  const aad = aadFor(opts.keyId, rb.nonce);
  const { enc, ctx } = setupBaseS(rb.hpkePublicKey, keyReleaseInfo(opts.keyId, opts.report), {
    ephemeralPrivateKey: opts.ephemeralPrivateKey,
  });
  const ct = ctx.seal(aad, opts.dataKey);
  ctx.dispose();
  return encodeWrappedKey({ keyId: opts.keyId, reportNonce: rb.nonce, enc, ct });
}

/**
 * TEST/REFERENCE: unwraps as the loader does — rebuilds the report from its own key, its trust
 * configuration hash and the wrapped key's report_nonce, so any mismatch fails to open.
 */
export function unwrapKey(wrapped: Uint8Array, loader: { privateKey: Uint8Array; trustConfigHash: Uint8Array }): { keyId: Uint8Array; dataKey: Uint8Array } {
  const wk = decodeWrappedKey(wrapped);
  const report = encodeReportBody(buildReportBody(publicKeyOf(loader.privateKey), loader.trustConfigHash, wk.reportNonce));
  const fail = (): never => {
    throw new VeilFormatError("KEY_UNWRAP", S, "ct", "failed to open", "unwrap");
  };
  let ctx;
  try {
    ctx = setupBaseR(wk.enc, loader.privateKey, keyReleaseInfo(wk.keyId, report));
  } catch {
    return fail();
  }
  const dataKey = ctx.open(wrapped.subarray(0, WRAPPED_KEY_AAD_SIZE), wk.ct);
  ctx.dispose();
  if (!dataKey) return fail();
  return { keyId: wk.keyId, dataKey };
}

