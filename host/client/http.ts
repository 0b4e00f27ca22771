// HTTP plumbing of the client SDK over the contract's API v1 (global fetch or a caller's):
// bounded body reads, strict base64url, the JSON error shape, Retry-After, and the mapping of
// transport failures onto ClientError. Carries only ciphertext and public JSON.
import { ClientError } from "./errors.ts";

export type FetchLike = typeof fetch;

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Strict, canonical, unpadded base64url (RFC 4648 §5) of at most `maxBytes` bytes; undefined otherwise. */
export function fromBase64url(s: unknown, maxBytes: number): Uint8Array | undefined {
  if (typeof s !== "string" || s.length > Math.ceil((maxBytes * 4) / 3) || !B64URL.test(s)) return undefined;
  const b = Buffer.from(s, "base64url");
  if (b.toString("base64url") !== s) return undefined;
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

export const toBase64url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString("base64url");

/** Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, in ms; undefined when absent or unparsable. */
export function parseRetryAfter(v: string | null, now = Date.now()): number | undefined {
  if (v === null) return undefined;
  const t = v.trim();
  if (/^\d{1,9}$/.test(t)) return Number(t) * 1000;
  const d = Date.parse(t);
  return Number.isFinite(d) ? Math.max(0, d - now) : undefined;
}

export interface CallContext {
  /** The caller's signal (ABORTED when it fires). */
  signal?: AbortSignal;
  /** The client's own deadline for this call (TIMEOUT when it passes). */
  timeoutMs?: number;
  worker?: string;
}

/** The signal to hand to fetch, and how to tell afterwards which of the two fired. */
export function callSignal(ctx: CallContext): { signal: AbortSignal | undefined; why(): "ABORTED" | "TIMEOUT" | undefined } {
  const timeout = ctx.timeoutMs !== undefined ? AbortSignal.timeout(ctx.timeoutMs) : undefined;
  const parts = [ctx.signal, timeout].filter((s): s is AbortSignal => s !== undefined);
  const signal = parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : AbortSignal.any(parts);
  return {
    signal,
    why: () => (ctx.signal?.aborted ? "ABORTED" : timeout?.aborted ? "TIMEOUT" : undefined),
  };
}

const causeCode = (e: unknown): string => {
  let c: unknown = e;
  for (let i = 0; i < 4 && c; i++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === "string") return code;
    c = (c as { cause?: unknown }).cause;
  }
  return (e as Error)?.name ?? "Error";
};

/** A transport failure (fetch threw, or the body broke off) as a ClientError. */
export function transportError(e: unknown, what: string, why: "ABORTED" | "TIMEOUT" | undefined, worker?: string): ClientError {
  if (e instanceof ClientError) return e;
  if (why === "ABORTED") return new ClientError("ABORTED", `${what}: cancelled by the caller`, { worker, cause: e });
  if (why === "TIMEOUT") return new ClientError("TIMEOUT", `${what}: no answer before the deadline`, { worker, retryable: true, cause: e });
  return new ClientError("NETWORK", `${what}: ${causeCode(e)}`, { worker, retryable: true, cause: e });
}

/**
 * The whole body, refusing more than `max` bytes (by Content-Length before reading, and while
 * reading), so that a hostile server cannot make the client buffer without bound.
 */
export async function readBounded(res: Response, max: number, what: string): Promise<Uint8Array> {
  const declared = res.headers.get("content-length");
  if (declared !== null && Number(declared) > max) {
    await res.body?.cancel().catch(() => undefined);
    throw new ClientError("BAD_RESPONSE", `${what}: ${declared} bytes is over the ${max}-byte limit`, { status: res.status });
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel().catch(() => undefined);
      throw new ClientError("BAD_RESPONSE", `${what}: more than ${max} bytes`, { status: res.status });
    }
    parts.push(value);
  }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export async function readJson(res: Response, max: number, what: string): Promise<unknown> {
  const bytes = await readBounded(res, max, what);
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new ClientError("BAD_RESPONSE", `${what}: the body is not JSON`, { status: res.status });
  }
}

const ERROR_BODY_MAX = 64 << 10;
const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n)}…` : s);
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

/**
 * A non-2xx answer as a ClientError with the server's code, number, field and retryable
 * (contract: `{code, number, field, message, retryable}`). Without a usable body the code is
 * HTTP_<status>, retryable for 503 and 504.
 */
export async function errorFromResponse(res: Response, what: string, worker?: string): Promise<ClientError> {
  const retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
  let body: Record<string, unknown> | undefined;
  try {
    const j = await readJson(res, ERROR_BODY_MAX, what);
    if (j && typeof j === "object" && !Array.isArray(j)) body = j as Record<string, unknown>;
  } catch {
    body = undefined;
  }
  const statusRetryable = res.status === 503 || res.status === 504;
  const code = typeof body?.code === "string" && CODE.test(body.code) ? body.code : `HTTP_${res.status}`;
  const number = typeof body?.number === "number" && Number.isInteger(body.number) && body.number >= 0 && body.number < 0x10000 ? body.number : 0;
  const field = typeof body?.field === "string" && body.field ? clip(body.field, 120) : null;
  const message = typeof body?.message === "string" && body.message ? clip(body.message, 300) : `HTTP ${res.status}`;
  const retryable = typeof body?.retryable === "boolean" ? body.retryable : statusRetryable;
  return new ClientError(code as ClientError["code"], `${what}: ${message}`, { number: number || undefined, field, status: res.status, retryable, worker, retryAfterMs });
}
