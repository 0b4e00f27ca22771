// Typed errors of attestation (host/attest/README.md "Errors"). UNTRUSTED-side code: messages
// carry only public facts (hashes, lengths, field names), never key material.

/**
 * Why a verifier refused evidence (verifyEvidence) or an attester failed. Stable names; the key
 * broker returns them to its clients as-is.
 */
export const ATTEST_ERROR_CODES = [
  /** The evidence bytes (or the ReportBody or vendor quote inside) are not well formed. */
  "MALFORMED",
  /** Software platform: the platform key is not trusted, or the signature does not verify. */
  "EVIDENCE_SIGNATURE",
  /** Hardware quote: its REPORT_DATA is not the binding of this evidence. */
  "QUOTE_BINDING",
  /** Hardware quote: the verifier cannot check the vendor signature and chain, and was not told to accept that. */
  "QUOTE_UNVERIFIED",
  /** The loader measurement is not in the accepted set. */
  "MEASUREMENT_UNKNOWN",
  /** The trusted worker's code hash is not in the accepted set. */
  "WORKER_CODE_UNKNOWN",
  /** The report's trust_config_hash is not in the accepted set. */
  "TRUST_CONFIG_UNKNOWN",
  /** The report's nonce is not the verifier's nonce. */
  "NONCE_MISMATCH",
  /** The verifier's own policy is unusable (bad hex, unknown skip name, missing nonce). */
  "POLICY_INVALID",
  /** configfs-tsm: the provider is not one this code knows. */
  "TSM_PROVIDER",
  /** configfs-tsm: the report entry's generation moved between our write and our read (a concurrent writer). */
  "TSM_GENERATION",
  /** configfs-tsm: a file-system operation failed. */
  "TSM_IO",
] as const;

export type AttestErrorCode = (typeof ATTEST_ERROR_CODES)[number];

export class AttestError extends Error {
  override readonly name = "AttestError";
  constructor(
    readonly code: AttestErrorCode,
    message: string,
    /** The evidence field concerned (dotted path), when there is one. */
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
  }
}

export const isAttestError = (e: unknown, code?: AttestErrorCode): e is AttestError =>
  e instanceof AttestError && (code === undefined || e.code === code);
