// The key broker's HTTP service (host/broker/README.md "HTTP API"), on fastify. It parses requests
// strictly, calls the embedded broker, and answers JSON. Logs (pino) carry only public facts:
// method, route, key id, status, error code, timing — never bodies, evidence, or key material.
import Fastify, { LogController, type FastifyError, type FastifyInstance } from "fastify";
import { pino, type Logger } from "pino";
import { EVIDENCE_MAX } from "../attest/evidence.ts";
import type { Broker } from "./broker.ts";
import { fromBase64url, toBase64url } from "./b64.ts";
import { BrokerError, httpStatusOf, type BrokerErrorCode } from "./errors.ts";

export interface BrokerServerOptions {
  broker: Broker;
  /** Default 0 (an ephemeral port; read it from the result). */
  port?: number;
  /** Default 127.0.0.1: put a TLS-terminating proxy in front to expose it. */
  host?: string;
  /** Default: pino at "info" on stdout. */
  logger?: Logger;
  /** Largest request body in bytes; default 128 KiB (an Evidence at its maximum is ~88 KiB of base64url). */
  bodyLimit?: number;
}

export interface BrokerServer {
  url: string;
  host: string;
  port: number;
  /** The fastify instance (for tests and embedding). */
  app: FastifyInstance<any, any, any, any>;
  close(): Promise<void>;
}

const RELEASE_ROUTE = "/v1/keys/:keyId/release";

const errorBody = (code: BrokerErrorCode, message: string) => ({ code, message });

/** Starts the broker's HTTP service and resolves once it listens. */
export async function startBrokerServer(opts: BrokerServerOptions): Promise<BrokerServer> {
  const { broker } = opts;
  const host = opts.host ?? "127.0.0.1";
  const logger = opts.logger ?? pino({ name: "veil-broker", level: "info" });
  const app = Fastify({
    loggerInstance: logger,
    // Fastify's own request lines are off: the onResponse hook below logs a vetted set of fields.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit ?? 128 * 1024,
    trustProxy: false,
    return503OnClosing: true,
  });

  app.addHook("onSend", async (_req, reply) => {
    reply.header("cache-control", "no-store");
  });
  app.addHook("onResponse", async (req, reply) => {
    const params = req.params as { keyId?: string } | undefined;
    req.log.info(
      {
        method: req.method,
        route: req.routeOptions?.url ?? "(none)",
        keyId: typeof params?.keyId === "string" && /^[0-9a-fA-F]{32}$/.test(params.keyId) ? params.keyId.toLowerCase() : undefined,
        status: reply.statusCode,
        code: (reply as unknown as { veilCode?: string }).veilCode,
        ms: Math.round(reply.elapsedTime),
      },
      "request",
    );
  });

  app.setErrorHandler((err: FastifyError | BrokerError, req, reply) => {
    let code: BrokerErrorCode;
    let status: number;
    let message: string;
    if (err instanceof BrokerError) {
      code = err.code;
      status = httpStatusOf(code);
      message = status >= 500 && code === "INTERNAL" ? "internal error" : err.detail;
    } else if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      code = "BODY_TOO_LARGE";
      status = 413;
      message = "request body too large";
    } else if (typeof err.statusCode === "number" && err.statusCode >= 400 && err.statusCode < 500) {
      code = "BAD_REQUEST";
      status = err.statusCode;
      message = err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" ? "send application/json" : "malformed request";
    } else {
      code = "INTERNAL";
      status = 500;
      message = "internal error";
      reply.log.error({ err: { type: err.name, code: err.code, message: err.message } }, "unexpected error");
    }
    (reply as unknown as { veilCode?: string }).veilCode = code;
    // A release request fastify refused before our handler ran (not JSON, too large, wrong media
    // type) is a refusal too: audit it. BrokerErrors were audited where they were thrown.
    if (!(err instanceof BrokerError) && req.routeOptions?.url === RELEASE_ROUTE) {
      const keyId = (req.params as { keyId?: unknown } | undefined)?.keyId;
      try {
        broker.recordRefusal({ keyId: typeof keyId === "string" ? keyId : undefined }, new BrokerError(code, message));
      } catch (e) {
        reply.log.error({ err: { type: (e as Error).name, message: (e as Error).message } }, "cannot audit a refused request");
      }
    }
    return reply.status(status).send(errorBody(code, message));
  });

  app.setNotFoundHandler((_req, reply) => {
    (reply as unknown as { veilCode?: string }).veilCode = "NOT_FOUND";
    return reply.status(404).send(errorBody("NOT_FOUND", "no such route"));
  });

  app.get("/healthz", async () => ({ ok: true }));

  app.get("/v1/nonce", async () => ({ nonce: toBase64url(broker.issueNonce()) }));

  app.post(RELEASE_ROUTE, async (req) => {
    const { keyId } = req.params as { keyId: string };
    let evidence: Uint8Array;
    let nonce: Uint8Array | undefined;
    try {
      if (!/^[0-9a-fA-F]{32}$/.test(keyId)) throw new BrokerError("BAD_REQUEST", "the key id in the path must be 32 hex digits");
      const body = req.body as Record<string, unknown> | null | undefined;
      if (body === null || typeof body !== "object" || Array.isArray(body)) throw new BrokerError("BAD_REQUEST", "the body must be a JSON object { evidence, nonce }");
      const extra = Object.keys(body).filter((k) => k !== "evidence" && k !== "nonce");
      if (extra.length) throw new BrokerError("BAD_REQUEST", `unexpected field(s): ${extra.slice(0, 4).map((k) => JSON.stringify(k.slice(0, 32))).join(", ")}`);
      nonce = fromBase64url(body.nonce, "nonce", 32);
      if (nonce.length !== 32) throw new BrokerError("BAD_REQUEST", "nonce must be 32 bytes");
      evidence = fromBase64url(body.evidence, "evidence", EVIDENCE_MAX);
    } catch (e) {
      // Refused before the broker could parse it: still one audit line.
      if (e instanceof BrokerError) broker.recordRefusal({ keyId, nonce }, e);
      throw e;
    }
    const wrapped = await broker.release({ keyId, evidence, nonce });
    return { wrapped: toBase64url(wrapped) };
  });

  await app.listen({ port: opts.port ?? 0, host });
  const addr = app.server.address();
  if (!addr || typeof addr === "string") throw new Error("broker server: no TCP address");
  const urlHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${urlHost}:${addr.port}`,
    host: addr.address,
    port: addr.port,
    app,
    close: () => app.close(),
  };
}
