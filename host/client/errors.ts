// Typed errors of the client SDK (host/client/README.md "Errors"). Runs on the data owner's
// machine, but messages carry only public facts: SPEC §12 names, server codes, field labels,
// worker ids, hashes and HTTP statuses — never a prompt, a tensor or a completion.
import { ERROR_CODES, type SpecErrorName } from "../formats/index.ts";

/** Codes the client itself produces (besides SPEC §12 names and the server's SERVER_* codes). */
export const CLIENT_ERROR_CODES = [
  /** The caller's policy is unusable (missing platform key, bad hex, unknown skip name, bad trust config). */
  "POLICY_INVALID",
  /** No worker's evidence verified: `reasons` lists why each was refused. */
  "ATTESTATION_FAILED",
  /** The program exists but no verified worker holds it. */
  "NO_VERIFIED_WORKER",
  /** The server does not list a program of that name. */
  "UNKNOWN_PROGRAM",
  /** The server lists the program but its manifest failed the client's checks (`reasons`). */
  "PROGRAM_REJECTED",
  /** A tensor input for a generate program, or a prompt for a tensor program. */
  "WRONG_MODE",
  /** The request never got an answer: connection refused or reset, DNS, a cut body (retryable). */
  "NETWORK",
  /** The client's own deadline passed (retryable). */
  "TIMEOUT",
  /** The caller's AbortSignal fired. */
  "ABORTED",
  /** The server answered something the contract does not allow (bad JSON, wrong sizes, no body). */
  "BAD_RESPONSE",
] as const;

export type ClientOwnCode = (typeof CLIENT_ERROR_CODES)[number];
/** A SPEC §12 name (a loader refusal, or RESPONSE_AUTH/TRUNCATED/… found by the client), a server SERVER_* code, or a client code. */
export type ClientErrorCode = ClientOwnCode | SpecErrorName | `SERVER_${string}` | `HTTP_${number}`;

/** Why a worker or a program was excluded at connect (or at a re-attestation). */
export interface Rejection {
  kind: "worker" | "program";
  /** Worker id or program name (as the server named it, truncated to 64 characters). */
  id: string;
  /** AttestError code (MEASUREMENT_UNKNOWN, NONCE_MISMATCH, …), a SPEC §12 name, or a client code. */
  code: string;
  message: string;
  field?: string;
}

export interface ClientErrorInit {
  /** SPEC §12 number, 0 when the code is not a SPEC code. Derived from `code` when omitted. */
  number?: number;
  /** §12.1 label or field path, when there is one. */
  field?: string | null;
  /** HTTP status of the answer that carried the error. */
  status?: number;
  /** True when the same request may succeed if sent again (503, 504, network). */
  retryable?: boolean;
  /** The worker the request went to. */
  worker?: string;
  /** Milliseconds the server asked to wait (Retry-After). */
  retryAfterMs?: number;
  reasons?: readonly Rejection[];
  cause?: unknown;
}

const oneLine = (s: string): string => s.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();

export class ClientError extends Error {
  override readonly name = "ClientError";
  readonly code: ClientErrorCode;
  readonly number: number;
  readonly field: string | null;
  readonly status: number | undefined;
  readonly retryable: boolean;
  readonly worker: string | undefined;
  readonly retryAfterMs: number | undefined;
  readonly reasons: readonly Rejection[];

  constructor(code: ClientErrorCode, message: string, init: ClientErrorInit = {}) {
    const number = init.number ?? (ERROR_CODES as Record<string, number>)[code] ?? 0;
    const field = init.field ?? null;
    const text = `${code}${number ? ` (${number})` : ""}: ${oneLine(message)}${field ? ` [${field}]` : ""}`;
    super(text, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = code;
    this.number = number;
    this.field = field;
    this.status = init.status;
    this.retryable = init.retryable ?? false;
    this.worker = init.worker;
    this.retryAfterMs = init.retryAfterMs;
    this.reasons = init.reasons ?? [];
  }
}

export const isClientError = (e: unknown, code?: ClientErrorCode): e is ClientError =>
  e instanceof ClientError && (code === undefined || e.code === code);
