// Typed broker errors and their HTTP statuses (host/broker/README.md "Errors"). Messages carry
// only public facts; never a data key, the broker key, or a plaintext.
import { ATTEST_ERROR_CODES, type AttestErrorCode } from "../attest/errors.ts";

export const BROKER_ERROR_CODES = [
  /** The request is not well formed (key id, base64url, body shape). */
  "BAD_REQUEST",
  /** The nonce was never issued by this broker (or was evicted, or is from before a restart). */
  "NONCE_UNKNOWN",
  /** The nonce was issued but its lifetime has passed. */
  "NONCE_EXPIRED",
  /** The nonce was already used for a release attempt (nonces are single use, whatever the outcome). */
  "NONCE_REUSED",
  /** No data key with this key id. */
  "KEY_UNKNOWN",
  /** addKey: a key with this id exists (pass replace: true to replace it). */
  "KEY_EXISTS",
  /** The key store file does not parse or a stored key fails to open. */
  "STORE_CORRUPT",
  /** The broker key does not open this store. */
  "WRONG_BROKER_KEY",
  /** The audit log's hash chain is broken; the broker will not append to it. */
  "AUDIT_BROKEN",
  /** The broker was closed. */
  "BROKER_CLOSED",
  /** Client side: the broker could not be reached or did not answer in time. */
  "BROKER_UNAVAILABLE",
  /** Client side: the broker answered with something that is not this protocol. */
  "BAD_RESPONSE",
  /** Request body over the server's limit. */
  "BODY_TOO_LARGE",
  /** No such route. */
  "NOT_FOUND",
  /** Anything unexpected (details go to the broker's log, not to the client). */
  "INTERNAL",
] as const;

export type BrokerErrorCode = (typeof BROKER_ERROR_CODES)[number] | AttestErrorCode;

const STATUS: Partial<Record<BrokerErrorCode, number>> = {
  BAD_REQUEST: 400,
  MALFORMED: 400,
  POLICY_INVALID: 500,
  KEY_UNKNOWN: 404,
  NOT_FOUND: 404,
  BODY_TOO_LARGE: 413,
  BROKER_CLOSED: 503,
  BROKER_UNAVAILABLE: 503,
  INTERNAL: 500,
  STORE_CORRUPT: 500,
  WRONG_BROKER_KEY: 500,
  AUDIT_BROKEN: 500,
  KEY_EXISTS: 409,
};

/** HTTP status for a code: refusals of evidence or nonce are 403. */
export const httpStatusOf = (code: BrokerErrorCode): number => STATUS[code] ?? 403;

export const isKnownCode = (s: unknown): s is BrokerErrorCode =>
  typeof s === "string" && ((BROKER_ERROR_CODES as readonly string[]).includes(s) || (ATTEST_ERROR_CODES as readonly string[]).includes(s));

export class BrokerError extends Error {
  override readonly name = "BrokerError";
  constructor(
    readonly code: BrokerErrorCode,
    message: string,
    options?: { cause?: unknown },
    /** HTTP status, when the error came over HTTP. */
    readonly status?: number,
  ) {
    super(`${code}: ${message}`, options);
  }

  /** The message without the "CODE: " prefix. */
  get detail(): string {
    return this.message.slice(this.code.length + 2);
  }
}

export const isBrokerError = (e: unknown, code?: BrokerErrorCode): e is BrokerError =>
  e instanceof BrokerError && (code === undefined || e.code === code);
