// Client of the key broker's HTTP API (host/broker/README.md "HTTP API"). UNTRUSTED side: it
// carries public nonces, public evidence and WrappedKey ciphertext. A broker that is down or
// slow is reported as one BROKER_UNAVAILABLE error: one overall deadline, at most one retry.
import { decodeWrappedKey, toHex } from "../formats/index.ts";
import { BrokerError, isKnownCode } from "./errors.ts";
import { fromBase64url, toBase64url } from "./b64.ts";

export interface BrokerClientOptions {
  /** Overall deadline of one call, all attempts included; default 5000 ms. */
  timeoutMs?: number;
  /** Wait before the single retry; default 200 ms. */
  retryDelayMs?: number;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

/** Network errors after which the request certainly never reached the broker (safe to retry even a release). */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"]);

const causeCode = (e: unknown): string => {
  let c: unknown = e;
  for (let i = 0; i < 4 && c; i++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === "string") return code;
    c = (c as { cause?: unknown }).cause;
  }
  return (e as Error)?.name === "TimeoutError" || (e as Error)?.name === "AbortError" ? "TIMEOUT" : "NETWORK_ERROR";
};

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

export class BrokerClient {
  readonly url: string;
  private readonly timeoutMs: number;
  private readonly retryDelayMs: number;
  private readonly fetch: typeof fetch;

  constructor(url: string, opts: BrokerClientOptions = {}) {
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new TypeError("broker url must be http(s)");
    this.url = u.href.replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.retryDelayMs = opts.retryDelayMs ?? 200;
    this.fetch = opts.fetch ?? fetch;
  }

  /**
   * One call: a first attempt and, after a network failure, at most one retry — for a release
   * only when the failure proves the request was never sent (its nonce is single use).
   */
  private async call(path: string, init: RequestInit, idempotent: boolean): Promise<unknown> {
    const deadline = AbortSignal.timeout(this.timeoutMs);
    const started = Date.now();
    let lastCode = "";
    for (let attempt = 1; attempt <= 2; attempt++) {
      let res: Response;
      try {
        res = await this.fetch(`${this.url}${path}`, { ...init, signal: deadline });
      } catch (e) {
        lastCode = deadline.aborted ? "TIMEOUT" : causeCode(e);
        const retry = attempt === 1 && !deadline.aborted && (idempotent || NOT_SENT.has(lastCode));
        if (retry) {
          await sleep(this.retryDelayMs, deadline);
          if (!deadline.aborted) continue;
          lastCode = "TIMEOUT";
        }
        throw new BrokerError(
          "BROKER_UNAVAILABLE",
          `key broker at ${this.url} is unreachable (${lastCode}) after ${attempt} attempt(s) in ${Date.now() - started} ms`,
          { cause: e },
        );
      }
      let body: unknown;
      try {
        body = await res.json();
      } catch (e) {
        if (deadline.aborted) throw new BrokerError("BROKER_UNAVAILABLE", `key broker at ${this.url} did not answer within ${this.timeoutMs} ms`, { cause: e });
        throw new BrokerError("BAD_RESPONSE", `key broker answered HTTP ${res.status} without a JSON body`, undefined, res.status);
      }
      if (!res.ok) {
        const b = body as { code?: unknown; message?: unknown } | null;
        const code = isKnownCode(b?.code) ? b.code : "BAD_RESPONSE";
        const msg = typeof b?.message === "string" ? b.message.slice(0, 500) : `HTTP ${res.status}`;
        throw new BrokerError(code, msg, undefined, res.status);
      }
      return body;
    }
    throw new Error("unreachable");
  }

  /** A fresh 32-byte nonce from the broker. */
  async nonce(): Promise<Uint8Array> {
    const body = (await this.call("/v1/nonce", { method: "GET" }, true)) as { nonce?: unknown };
    let n: Uint8Array;
    try {
      n = fromBase64url(body?.nonce, "nonce", 32);
    } catch {
      n = new Uint8Array(0);
    }
    if (n.length !== 32) throw new BrokerError("BAD_RESPONSE", "the broker's nonce is not 32 bytes of base64url");
    return n;
  }

  /** The WrappedKey (SPEC §10) for the loader the evidence names, or a BrokerError with the broker's code. */
  async release(keyId: Uint8Array | string, evidence: Uint8Array, nonce: Uint8Array): Promise<Uint8Array> {
    const id = typeof keyId === "string" ? keyId.toLowerCase() : toHex(keyId);
    if (!/^[0-9a-f]{32}$/.test(id)) throw new BrokerError("BAD_REQUEST", "a key id is 16 bytes (32 hex digits)");
    const body = (await this.call(
      `/v1/keys/${id}/release`,
      { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ evidence: toBase64url(evidence), nonce: toBase64url(nonce) }) },
      false,
    )) as { wrapped?: unknown };
    let wrapped: Uint8Array;
    try {
      wrapped = fromBase64url(body?.wrapped, "wrapped", 136);
      decodeWrappedKey(wrapped);
    } catch {
      throw new BrokerError("BAD_RESPONSE", "the broker's answer is not a WrappedKey");
    }
    return wrapped;
  }

  /** True when GET /healthz answers { ok: true }. */
  async healthy(): Promise<boolean> {
    try {
      const b = (await this.call("/healthz", { method: "GET" }, true)) as { ok?: unknown };
      return b?.ok === true;
    } catch {
      return false;
    }
  }
}
