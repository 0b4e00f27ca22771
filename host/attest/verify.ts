// verifyEvidence (host/attest/README.md §5): the one place a verifier — a client before sealing a
// request, the key broker before releasing a key — decides whether evidence names a loader it may
// trust, per SPEC §4.2. Runs on the verifier's own machine over public bytes.
import { x25519 } from "@noble/curves/ed25519.js";
import { VeilFormatError, decodeReportBody, equalBytes, toHex, verifyStrict, wipe, type ReportBody } from "../formats/index.ts";
import { PLATFORM_KIND, decodeEvidence, encodeEvidence, evidenceBinding, platformName, type Evidence } from "./evidence.ts";
import { AttestError } from "./errors.ts";
import { reportDataOf } from "./quote.ts";

/** Checks a policy may skip, by name. Skipping is never the default, and every skip is logged. */
export const SKIP_NAMES = ["platform", "measurement", "worker_code_hash", "trust_config_hash", "nonce"] as const;
export type SkipName = (typeof SKIP_NAMES)[number];
/** Recorded in `skipped` when a hardware quote was accepted without vendor verification (allowUnverifiedQuote). */
export const UNVERIFIED_QUOTE = "quote_vendor_verification";

export interface WarnLogger {
  warn(msg: string): void;
}

type HashLike = Uint8Array | string;

export interface VerifyPolicy {
  /** Ed25519 platform public keys (32 bytes or 64 hex digits) whose software evidence is trusted. */
  trustedPlatformKeys?: Iterable<HashLike>;
  /** Accepted loader measurements: SHA-256 of loader.wasm (32 bytes or 64 hex digits). */
  acceptedMeasurements: Iterable<HashLike>;
  /** Accepted trusted-worker code hashes. */
  acceptedWorkerCodeHashes: Iterable<HashLike>;
  /** Accepted SHA-256 hashes of TrustConfig bytes (SPEC §3). */
  acceptedTrustConfigHashes: Iterable<HashLike>;
  /** The 32-byte nonce this verifier chose for this attestation. Required unless "nonce" is skipped. */
  expectedNonce?: Uint8Array;
  /**
   * Accept SEV-SNP / TDX evidence whose REPORT_DATA carries the binding although the vendor
   * signature, certificate chain, TCB and launch measurement are NOT verified (README §4.4).
   * Logged as a warning on every use and recorded in `skipped`.
   */
  allowUnverifiedQuote?: boolean;
  /** Checks to skip, by name. Each is logged as a warning and recorded in `skipped`. */
  skip?: readonly SkipName[];
  /** Receives the warning lines; default console.warn. */
  logger?: WarnLogger;
}

export interface VerifiedLoader {
  /** The loader's X25519 HPKE public key: seal requests (§8) or wrap keys (§10) to it. */
  hpkePublicKey: Uint8Array;
  /** The report's key_id (§4). */
  keyId: number;
  /** The exact ReportBody bytes verified (what host/formats wrapKey takes as `report`). */
  report: Uint8Array;
  reportBody: ReportBody;
  /** Hex of the measured facts. */
  measurement: string;
  workerCodeHash: string;
  trustConfigHash: string;
  nonce: string;
  platform: "software" | "sev-snp" | "tdx";
  /** Hex of the software platform key that signed, for software evidence. */
  platformKey?: string;
  /** Every check that was NOT performed: named skips, and UNVERIFIED_QUOTE. Empty for a full verification. */
  skipped: string[];
  evidence: Evidence;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

function hexSet(name: string, items: Iterable<HashLike> | undefined, required: boolean): Set<string> {
  if (items === undefined || items === null) {
    if (required) throw new AttestError("POLICY_INVALID", `policy.${name} is required (an empty set accepts nothing)`);
    return new Set();
  }
  if (typeof items === "string" || typeof (items as Iterable<HashLike>)[Symbol.iterator] !== "function")
    throw new AttestError("POLICY_INVALID", `policy.${name} must be an iterable of 32-byte values`);
  const out = new Set<string>();
  for (const it of items) {
    if (it instanceof Uint8Array && it.length === 32) out.add(toHex(it));
    else if (typeof it === "string" && HEX64.test(it)) out.add(it.toLowerCase());
    else throw new AttestError("POLICY_INVALID", `policy.${name} holds an entry that is not 32 bytes or 64 hex digits`);
  }
  return out;
}

/** A policy checked and normalised once (the broker keeps one). */
export interface CompiledPolicy {
  readonly platformKeys: ReadonlySet<string>;
  readonly measurements: ReadonlySet<string>;
  readonly workerCodeHashes: ReadonlySet<string>;
  readonly trustConfigHashes: ReadonlySet<string>;
  readonly allowUnverifiedQuote: boolean;
  readonly skip: ReadonlySet<SkipName>;
  readonly logger: WarnLogger;
}

export function compilePolicy(policy: Omit<VerifyPolicy, "expectedNonce">): CompiledPolicy {
  if (policy === null || typeof policy !== "object") throw new AttestError("POLICY_INVALID", "policy must be an object");
  const skip = new Set<SkipName>();
  for (const s of policy.skip ?? []) {
    if (!(SKIP_NAMES as readonly string[]).includes(s)) throw new AttestError("POLICY_INVALID", `unknown skip "${String(s)}" (known: ${SKIP_NAMES.join(", ")})`);
    skip.add(s);
  }
  if (policy.allowUnverifiedQuote !== undefined && typeof policy.allowUnverifiedQuote !== "boolean")
    throw new AttestError("POLICY_INVALID", "policy.allowUnverifiedQuote must be a boolean");
  const logger = policy.logger ?? { warn: (m: string) => console.warn(m) };
  if (typeof logger.warn !== "function") throw new AttestError("POLICY_INVALID", "policy.logger must have a warn(msg) method");
  return {
    platformKeys: hexSet("trustedPlatformKeys", policy.trustedPlatformKeys, false),
    measurements: hexSet("acceptedMeasurements", policy.acceptedMeasurements, !skip.has("measurement")),
    workerCodeHashes: hexSet("acceptedWorkerCodeHashes", policy.acceptedWorkerCodeHashes, !skip.has("worker_code_hash")),
    trustConfigHashes: hexSet("acceptedTrustConfigHashes", policy.acceptedTrustConfigHashes, !skip.has("trust_config_hash")),
    allowUnverifiedQuote: policy.allowUnverifiedQuote === true,
    skip,
    logger,
  };
}

const isCompiled = (p: VerifyPolicy | CompiledPolicy): p is CompiledPolicy => (p as CompiledPolicy).measurements instanceof Set;

/**
 * An X25519 public key of small order gives an all-zero shared secret (RFC 7748 §6.1), so anything
 * sealed to it is readable by all. The loader never emits one; evidence carrying one is refused.
 */
function isLowOrderX25519(publicKey: Uint8Array): boolean {
  const scalar = x25519.utils.randomSecretKey();
  try {
    const shared = x25519.getSharedSecret(scalar, publicKey);
    const zero = shared.every((b) => b === 0);
    wipe(shared);
    return zero;
  } catch {
    return true;
  } finally {
    wipe(scalar);
  }
}

function decode(evidence: Uint8Array | Evidence): Evidence {
  try {
    // An object is re-encoded so that it passes the same strict rules as bytes on the wire.
    return evidence instanceof Uint8Array ? decodeEvidence(evidence) : decodeEvidence(encodeEvidence(evidence));
  } catch (e) {
    if (e instanceof VeilFormatError) throw new AttestError("MALFORMED", e.message, e.field, { cause: e });
    if (e instanceof TypeError) throw new AttestError("MALFORMED", `evidence: ${e.message}`, "evidence", { cause: e });
    throw e;
  }
}

/**
 * Verifies evidence per SPEC §4.2 and returns the loader key to seal or wrap to, or throws an
 * AttestError. Order: well-formedness (MALFORMED, includes the ReportBody key_id rule), platform
 * signature or quote binding (EVIDENCE_SIGNATURE, QUOTE_BINDING, QUOTE_UNVERIFIED), measurement
 * (MEASUREMENT_UNKNOWN), worker code (WORKER_CODE_UNKNOWN), trust configuration
 * (TRUST_CONFIG_UNKNOWN), freshness (NONCE_MISMATCH).
 *
 * `policy` may be a VerifyPolicy, or a CompiledPolicy plus `expectedNonce` in `nonce`.
 */
export function verifyEvidence(evidence: Uint8Array | Evidence, policy: VerifyPolicy): VerifiedLoader;
export function verifyEvidence(evidence: Uint8Array | Evidence, policy: CompiledPolicy, expectedNonce: Uint8Array | undefined): VerifiedLoader;
export function verifyEvidence(evidence: Uint8Array | Evidence, policy: VerifyPolicy | CompiledPolicy, nonceArg?: Uint8Array): VerifiedLoader {
  const p = isCompiled(policy) ? policy : compilePolicy(policy);
  const expectedNonce = isCompiled(policy) ? nonceArg : (policy as VerifyPolicy).expectedNonce;
  if (!p.skip.has("nonce") && !(expectedNonce instanceof Uint8Array && expectedNonce.length === 32))
    throw new AttestError("POLICY_INVALID", "expectedNonce must be the verifier's 32-byte nonce (or skip \"nonce\" explicitly)");

  const skipped: string[] = [];
  const skipping = (name: SkipName, consequence: string): boolean => {
    if (!p.skip.has(name)) return false;
    skipped.push(name);
    p.logger.warn(`veil attest: WARNING: SKIPPING the ${name} check by explicit policy: ${consequence}`);
    return true;
  };

  const ev = decode(evidence);
  const rb = decodeReportBody(ev.report);
  if (isLowOrderX25519(rb.hpkePublicKey))
    throw new AttestError("MALFORMED", "the report's hpke_public_key is an X25519 point of small order", "evidence.report.hpke_public_key");
  const measurement = toHex(ev.measurement);
  const workerCodeHash = toHex(ev.workerCodeHash);
  const trustConfigHash = toHex(rb.trustConfigHash);
  const pl = ev.platform;
  let platformKey: string | undefined;

  // 1. The platform vouches for the binding of report, measurement and worker code hash.
  if (!skipping("platform", "nothing ties this report to a platform; anyone could have written this evidence")) {
    const binding = evidenceBinding(ev.report, ev.measurement, ev.workerCodeHash);
    if (pl.kind === PLATFORM_KIND.SOFTWARE) {
      platformKey = toHex(pl.publicKey);
      if (!p.platformKeys.has(platformKey)) throw new AttestError("EVIDENCE_SIGNATURE", `software platform key ${platformKey} is not trusted`, "platform.public_key");
      if (!verifyStrict(pl.publicKey, binding, pl.signature))
        throw new AttestError("EVIDENCE_SIGNATURE", "the platform signature does not verify over the evidence binding", "platform.signature");
    } else {
      const reportData = reportDataOf(pl.kind, pl.outblob);
      if (!equalBytes(reportData, binding))
        throw new AttestError("QUOTE_BINDING", `the ${pl.provider} report's REPORT_DATA is not this evidence's binding`, "platform.outblob");
      if (!p.allowUnverifiedQuote)
        throw new AttestError(
          "QUOTE_UNVERIFIED",
          `${platformName(pl.kind)} evidence needs vendor verification (signature, certificate chain, TCB, launch measurement), which this verifier does not implement; set allowUnverifiedQuote only for development`,
          "platform.outblob",
        );
      skipped.push(UNVERIFIED_QUOTE);
      p.logger.warn(
        `veil attest: WARNING: accepting an UNVERIFIED ${pl.provider} quote (allowUnverifiedQuote): its vendor signature, ` +
          "certificate chain, TCB and launch measurement were NOT checked, so it proves nothing about the platform",
      );
    }
  }
  // 2. The loader is one we expect.
  if (!skipping("measurement", "any loader.wasm is accepted") && !p.measurements.has(measurement))
    throw new AttestError("MEASUREMENT_UNKNOWN", `loader measurement ${measurement} is not accepted`, "measurement");
  if (!skipping("worker_code_hash", "any trusted-worker code is accepted") && !p.workerCodeHashes.has(workerCodeHash))
    throw new AttestError("WORKER_CODE_UNKNOWN", `worker code hash ${workerCodeHash} is not accepted`, "worker_code_hash");
  // 3. It trusts the reviewers we expect.
  if (!skipping("trust_config_hash", "a loader trusting any reviewers is accepted") && !p.trustConfigHashes.has(trustConfigHash))
    throw new AttestError("TRUST_CONFIG_UNKNOWN", `trust configuration hash ${trustConfigHash} is not accepted`, "report.trust_config_hash");
  // 4. It is fresh: the report carries our nonce.
  if (!skipping("nonce", "the report may be a replay") && !equalBytes(rb.nonce, expectedNonce!))
    throw new AttestError("NONCE_MISMATCH", "the report's nonce is not the verifier's nonce", "report.nonce");

  return {
    hpkePublicKey: rb.hpkePublicKey,
    keyId: rb.keyId,
    report: Uint8Array.from(ev.report),
    reportBody: rb,
    measurement,
    workerCodeHash,
    trustConfigHash,
    nonce: toHex(rb.nonce),
    platform: platformName(pl.kind) as VerifiedLoader["platform"],
    platformKey,
    skipped,
    evidence: ev,
  };
}
