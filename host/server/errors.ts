// Errors of the inference server (README.md, "API"): the JSON error body of the API contract and
// the HTTP status of each code. UNTRUSTED host code: messages carry public facts only (program
// and worker names, SPEC §12 codes and field labels, sizes, timings), never a byte of a body.
import { ERROR_CODES, type SpecErrorName } from "../formats/errors.ts";
import { WorkerError } from "../worker/client.ts";

/** The server's own codes (the contract's `SERVER_*`), with their HTTP status and retryability. */
export const SERVER_CODES = {
  /** A malformed query (nonce, worker id) or an empty request body. */
  SERVER_BAD_REQUEST: { status: 400, retryable: false },
  /** No route with this method and path. */
  SERVER_NOT_FOUND: { status: 404, retryable: false },
  /** No program with this name. */
  SERVER_UNKNOWN_PROGRAM: { status: 404, retryable: false },
  /** No worker with this id, or it does not hold the program. */
  SERVER_UNKNOWN_WORKER: { status: 404, retryable: false },
  /** Without `?worker=`, more than one worker with the request's key_id holds the program. */
  SERVER_AMBIGUOUS_WORKER: { status: 409, retryable: false },
  /** The body is over the server's limit. */
  SERVER_BODY_TOO_LARGE: { status: 413, retryable: false },
  /** The worker's queue is full (backpressure). */
  SERVER_QUEUE_FULL: { status: 503, retryable: true },
  /** The worker is restarting (its loader key changes: attest again), or exited under the request. */
  SERVER_WORKER_RESTARTING: { status: 503, retryable: true },
  /** The server is shutting down: it finishes what it accepted and takes nothing new. */
  SERVER_SHUTTING_DOWN: { status: 503, retryable: true },
  /** No worker is attested and loaded (attestation endpoint). */
  SERVER_NOT_READY: { status: 503, retryable: true },
  /** The per-request deadline passed (queued, running, or streaming). */
  SERVER_DEADLINE: { status: 504, retryable: true },
  /** Anything else: details in the server's log. */
  SERVER_INTERNAL: { status: 500, retryable: false },
} as const;

export type ServerCode = keyof typeof SERVER_CODES;

/** The contract's error body. */
export interface ErrorBody {
  code: string;
  number: number;
  field: string | null;
  message: string;
  retryable: boolean;
}

/** An error the server answers with: status, JSON body and, for 503/504, Retry-After (seconds). */
export class ServerError extends Error {
  override readonly name = "ServerError";
  constructor(
    readonly code: ServerCode | SpecErrorName,
    message: string,
    readonly status: number,
    readonly retryable: boolean,
    readonly number = 0,
    readonly field: string | null = null,
    readonly retryAfter?: number,
  ) {
    super(message);
  }

  static of(code: ServerCode, message: string, retryAfter?: number): ServerError {
    const c = SERVER_CODES[code];
    return new ServerError(code, message, c.status, c.retryable, 0, null, retryAfter ?? (c.status === 503 || c.status === 504 ? 1 : undefined));
  }

  body(): ErrorBody {
    return { code: this.code, number: this.number, field: this.field, message: this.message, retryable: this.retryable };
  }
}

/** SPEC §12 codes that are not about the request's input: the server's or the loader's state. */
const LOADER_INTERNAL = new Set<number>([ERROR_CODES.STATE, ERROR_CODES.NO_PROGRAM, ERROR_CODES.ACCELERATOR_FAILED, ERROR_CODES.ENTROPY_FAILED]);

/**
 * A failed worker call as the answer to a request: a loader refusal is 400 with its SPEC §12
 * name, number and field label (CAPACITY, the loader's stream table being full, is a retryable
 * 503; the loader's internal states are 500); a worker that exited under the request is a
 * retryable 503 SERVER_WORKER_RESTARTING; any other worker-level error is 500.
 */
export function fromWorkerError(e: unknown, worker: string, shuttingDown: boolean): ServerError {
  if (e instanceof ServerError) return e;
  if (e instanceof WorkerError) {
    if (e.kind === "loader") {
      const name = (e.codeName as SpecErrorName | undefined) ?? undefined;
      const code = name ?? "SERVER_INTERNAL";
      const msg = `worker ${worker}: ${e.message}`;
      if (e.code === ERROR_CODES.CAPACITY) return new ServerError(code, msg, 503, true, e.code, e.field ?? null, 1);
      if (LOADER_INTERNAL.has(e.code) || !name) return new ServerError(code, msg, 500, false, e.code, e.field ?? null);
      return new ServerError(code, msg, 400, false, e.code, e.field ?? null);
    }
    if (e.kind === "exited" || e.codeName === "SHUTTING_DOWN") {
      if (shuttingDown) return ServerError.of("SERVER_SHUTTING_DOWN", `worker ${worker} is shutting down`, 5);
      return ServerError.of("SERVER_WORKER_RESTARTING", `worker ${worker} exited before answering; it is restarting with a new loader key: attest again, then retry`, 2);
    }
    return ServerError.of("SERVER_INTERNAL", `worker ${worker}: ${e.codeName ?? "worker error"}`);
  }
  return ServerError.of("SERVER_INTERNAL", "internal error");
}
