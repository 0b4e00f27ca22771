// Evidence (host/attest/README.md §1): the loader's ReportBody, the platform's measurement of the
// loader and of the trusted worker, and a platform signature or hardware quote over their binding.
// Strict, canonical encoder and decoder in the style of SPEC.md §1. UNTRUSTED host code: every
// field is public (a public key, hashes, a nonce, a signature or a vendor quote).
import { sha256, sha512 } from "@noble/hashes/sha2.js";
import { Reader, VeilFormatError, Writer, ascii, concat, decodeReportBody, validated, type ReportBody } from "../formats/index.ts";

/** §1.2-style kind of the Evidence structure: "veil" "EV" 0x0001. */
export const EVIDENCE_KIND = "EV";

/** platform_kind values. */
export const PLATFORM_KIND = {
  /** An Ed25519 platform key held by the host (development and tests only: see README §3). */
  SOFTWARE: 1,
  /** AMD SEV-SNP attestation report obtained through Linux configfs-tsm (provider "sev_guest"). */
  SEV_SNP_TSM: 2,
  /** Intel TDX quote obtained through Linux configfs-tsm (provider "tdx_guest"). */
  TDX_TSM: 3,
} as const;
export type PlatformKind = (typeof PLATFORM_KIND)[keyof typeof PLATFORM_KIND];

/** The configfs-tsm provider string each hardware kind requires. */
export const TSM_PROVIDER_FOR_KIND: Readonly<Record<2 | 3, string>> = { 2: "sev_guest", 3: "tdx_guest" };
export const platformName = (kind: PlatformKind): string =>
  kind === PLATFORM_KIND.SOFTWARE ? "software" : kind === PLATFORM_KIND.SEV_SNP_TSM ? "sev-snp" : "tdx";

export const REPORT_BODY_LEN = 105;
export const HASH_LEN = 32;
export const BINDING_LEN = 64;
/** Linux TSM_REPORT_OUTBLOB_MAX (include/linux/tsm.h): the kernel refuses larger outblob/auxblob reads with EFBIG. */
export const TSM_BLOB_MAX = 32 * 1024;
export const TSM_PROVIDER_MAX = 32;
/** The largest well-formed Evidence (a tsm payload with both blobs at their maximum). */
export const EVIDENCE_MAX = 8 + REPORT_BODY_LEN + 2 * HASH_LEN + 1 + (1 + TSM_PROVIDER_MAX) + 2 * (2 + TSM_BLOB_MAX);

export interface SoftwarePlatform {
  kind: typeof PLATFORM_KIND.SOFTWARE;
  /** Ed25519 platform public key (32 bytes). */
  publicKey: Uint8Array;
  /** Ed25519 signature over the binding (64 bytes). */
  signature: Uint8Array;
}

export interface TsmPlatform {
  kind: typeof PLATFORM_KIND.SEV_SNP_TSM | typeof PLATFORM_KIND.TDX_TSM;
  /** configfs-tsm `provider`, without the trailing newline: "sev_guest" or "tdx_guest". */
  provider: string;
  /** configfs-tsm `outblob`: the raw SEV-SNP attestation report or TDX quote. */
  outblob: Uint8Array;
  /** configfs-tsm `auxblob` (SEV-SNP certificate table), empty when absent. */
  auxblob: Uint8Array;
}

export type Platform = SoftwarePlatform | TsmPlatform;

export interface Evidence {
  /** The loader's ReportBody bytes (SPEC §4), exactly 105. */
  report: Uint8Array;
  /** SHA-256 of the exact loader.wasm bytes the worker instantiated. */
  measurement: Uint8Array;
  /** The trusted worker's code hash (host/trusted). */
  workerCodeHash: Uint8Array;
  platform: Platform;
}

const S = "evidence";
const LABEL = ascii("veil platform evidence v1\0");

/**
 * binding = SHA-512("veil platform evidence v1\0" ‖ SHA-256(report) ‖ measurement ‖ worker_code_hash):
 * the 64 bytes the platform signs (software) or places in REPORT_DATA (SEV-SNP, TDX).
 */
export function evidenceBinding(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Uint8Array {
  if (report.length !== REPORT_BODY_LEN) throw new VeilFormatError("BAD_LENGTH", S, "report", `${report.length} bytes, not ${REPORT_BODY_LEN}`, "bind");
  if (measurement.length !== HASH_LEN) throw new VeilFormatError("BAD_LENGTH", S, "measurement", `${measurement.length} bytes, not ${HASH_LEN}`, "bind");
  if (workerCodeHash.length !== HASH_LEN)
    throw new VeilFormatError("BAD_LENGTH", S, "worker_code_hash", `${workerCodeHash.length} bytes, not ${HASH_LEN}`, "bind");
  return sha512(concat(LABEL, sha256(report), measurement, workerCodeHash));
}

const providerProblem = (b: Uint8Array): string | undefined => {
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f;
    if (!ok) return `byte 0x${c.toString(16).padStart(2, "0")} at offset ${i} is not in a-z 0-9 _`;
  }
  return undefined;
};

/** Strict decoder: every rule of README §1.3. Throws VeilFormatError (structure "evidence") naming the field. */
export function decodeEvidence(bytes: Uint8Array): Evidence {
  const r = new Reader(bytes, S);
  if (bytes.length > EVIDENCE_MAX) r.fail("TOO_LARGE", "", `${bytes.length} bytes exceed EVIDENCE_MAX ${EVIDENCE_MAX}`);
  r.magic(EVIDENCE_KIND);
  const report = r.fixed("report", REPORT_BODY_LEN);
  try {
    decodeReportBody(report);
  } catch (e) {
    if (e instanceof VeilFormatError) r.fail(e.code, e.path ? `report.${e.path}` : "report", e.detail);
    throw e;
  }
  const measurement = r.fixed("measurement", HASH_LEN);
  const workerCodeHash = r.fixed("worker_code_hash", HASH_LEN);
  const kind = r.u8("platform_kind");
  let platform!: Platform;
  if (kind === PLATFORM_KIND.SOFTWARE) {
    const publicKey = r.fixed("platform.public_key", 32);
    const signature = r.fixed("platform.signature", 64);
    platform = { kind, publicKey, signature };
  } else if (kind === PLATFORM_KIND.SEV_SNP_TSM || kind === PLATFORM_KIND.TDX_TSM) {
    const pb = r.vec8("platform.provider", 1, TSM_PROVIDER_MAX);
    const bad = providerProblem(pb);
    if (bad) r.fail("BAD_VALUE", "platform.provider", bad);
    const provider = String.fromCharCode(...pb);
    if (provider !== TSM_PROVIDER_FOR_KIND[kind])
      r.fail("BAD_VALUE", "platform.provider", `"${provider}" is not "${TSM_PROVIDER_FOR_KIND[kind]}", the provider of platform_kind ${kind}`);
    const outblob = r.vec16("platform.outblob", 1, TSM_BLOB_MAX);
    const auxblob = r.vec16("platform.auxblob", 0, TSM_BLOB_MAX);
    platform = { kind, provider, outblob, auxblob };
  } else {
    r.fail("BAD_VALUE", "platform_kind", `${kind} is not 1 (software), 2 (sev-snp via configfs-tsm) or 3 (tdx via configfs-tsm)`);
  }
  r.end();
  return { report, measurement, workerCodeHash, platform };
}

/** Canonical encoder; its output is checked by the decoder, so it never emits what the decoder rejects. */
export function encodeEvidence(ev: Evidence): Uint8Array {
  const w = new Writer(S)
    .magic(EVIDENCE_KIND)
    .fixed(ev.report, REPORT_BODY_LEN, "report")
    .fixed(ev.measurement, HASH_LEN, "measurement")
    .fixed(ev.workerCodeHash, HASH_LEN, "worker_code_hash");
  const p = ev.platform;
  w.u8(p.kind, "platform_kind");
  if (p.kind === PLATFORM_KIND.SOFTWARE) {
    w.fixed(p.publicKey, 32, "platform.public_key").fixed(p.signature, 64, "platform.signature");
  } else if (p.kind === PLATFORM_KIND.SEV_SNP_TSM || p.kind === PLATFORM_KIND.TDX_TSM) {
    if (typeof p.provider !== "string") w.fail("BAD_VALUE", "platform.provider", "not a string");
    w.vec(ascii(p.provider), 1, TSM_PROVIDER_MAX, "platform.provider", 1)
      .vec(p.outblob, 1, TSM_BLOB_MAX, "platform.outblob", 2)
      .vec(p.auxblob, 0, TSM_BLOB_MAX, "platform.auxblob", 2);
  } else {
    w.fail("BAD_VALUE", "platform_kind", `${(p as { kind: unknown }).kind} is not a platform kind`);
  }
  return validated(w.finish(), decodeEvidence);
}

/** The ReportBody of decoded evidence (already validated by decodeEvidence). */
export const reportOf = (ev: Evidence): ReportBody => decodeReportBody(ev.report);
