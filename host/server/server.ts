// The confidential inference service, untrusted side (README.md): a fastify HTTP API over a pool
// of trusted workers. It parses only framing — the route, the query, the body's length and the
// request's first byte (its key_id, for routing) — never holds a key and never sees a plaintext
// byte: request and response bodies are HPKE ciphertext it forwards to and from the workers
// unchanged; the rest is public (evidence, manifests, signatures). Logs (pino) and metrics
// (prom-client) carry public facts only: route, program, worker, status, code, duration, sizes.
import { readFileSync } from "node:fs";
import { PassThrough } from "node:stream";
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { pino, type DestinationStream, type Logger } from "pino";
import type { Broker } from "../broker/index.ts";
import { LIMITS, decodeTrustConfig, toHex, trustConfigHash } from "../formats/index.ts";
import { isWorkerError, type Hello, type WorkerClient } from "../worker/client.ts";
import { ServerError } from "./errors.ts";
import { keyBrokerOf, type BrokerLike } from "./keybroker.ts";
import { createMetrics, outcomeOf, type Metrics } from "./metrics.ts";
import { loadModels, type Program } from "./models.ts";
import { WorkerPool, type WorkerSpawnOptions } from "./pool.ts";

export interface ServerOptions {
  /** A models directory (program directories as `veil seal` writes them), or programs already read. */
  models: string | Program[];
  /** The trust configuration (SPEC §3) every worker's loader is initialised with: bytes or a file. */
  trust: Uint8Array | string;
  /**
   * The key broker: a URL (remote, BrokerClient), an embedded broker (createBroker; development
   * only: it holds the data keys in this process), a KeyBroker, or a function that makes one from
   * the first worker's hello.
   */
  broker: BrokerLike | ((hello: Hello) => BrokerLike | Promise<BrokerLike>);
  /** Worker processes; default 2. */
  workers?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  /** Requests waiting per worker beyond those in flight (503 + Retry-After beyond); default 32. */
  queue?: number;
  /** Requests sent to one worker at a time (it runs them one by one; the rest wait in its pipe); default 4. */
  inFlight?: number;
  /** Per-request deadline, arrival to last byte (504 after); default 30 s. */
  deadlineMs?: number;
  /** Largest request body; default REQUEST_MAX (16 MiB). */
  bodyLimit?: number;
  /** Bound on the shutdown drain; default deadlineMs + 5 s. */
  drainTimeoutMs?: number;
  /** pino level; default "info". */
  logLevel?: string;
  /** A pino logger to use instead of one on stdout. */
  logger?: Logger;
  /** Where a new pino logger writes (default stdout). */
  logStream?: DestinationStream;
  /** How workers are started: attester (platformKeyFile / tsm), wasm, ONNX Runtime options. */
  worker?: WorkerSpawnOptions;
  /** Shortcut for worker.platformKeyFile (software attester, development only). */
  platformKeyFile?: string;
  /** Called with each worker client as it is spawned (tests tap the channel here). */
  onWorker?: (id: string, client: WorkerClient) => void;
  restartDelayMs?: { min: number; max: number };
  startTimeoutMs?: number;
}

export interface VeilServer {
  url: string;
  host: string;
  port: number;
  pool: WorkerPool;
  /** The embedded broker, when one was given (its audit log, head hash …). */
  broker?: Broker;
  metrics: Metrics;
  log: Logger;
  app: FastifyInstance;
  /** Graceful shutdown: stop accepting (readyz and new requests 503), finish in-flight, close the workers. */
  close(): Promise<void>;
}

interface Ctx {
  route: string;
  program?: string;
  worker?: string;
  code?: string;
  reqBytes: number;
  resBytes: number;
  truncated: boolean;
  t0: bigint;
}

const ROUTES = {
  attestation: "/v1/attestation",
  programs: "/v1/programs",
  infer: "/v1/programs/:name/infer",
  stream: "/v1/programs/:name/stream",
  /** SPEC §8.5.1: body an EncapsulatedRequest carrying a SessionOpen, routed by its key_id like infer. */
  session: "/v1/programs/:name/session",
} as const;

const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;
const WORKER_ID = /^[A-Za-z0-9._:-]{1,64}$/;

function parseNonce(v: unknown): Uint8Array {
  if (typeof v !== "string" || !B64URL_32.test(v)) throw ServerError.of("SERVER_BAD_REQUEST", "nonce must be 32 bytes of unpadded base64url (43 characters)");
  const b = Buffer.from(v, "base64url");
  if (b.length !== 32 || b.toString("base64url") !== v) throw ServerError.of("SERVER_BAD_REQUEST", "nonce is not canonical base64url of 32 bytes");
  return new Uint8Array(b);
}

const isEmbeddedBroker = (b: unknown): b is Broker => typeof (b as Broker)?.issueNonce === "function";

/** Starts the pool (every worker attested, keyed and loaded) and the HTTP API; resolves once it listens. */
export async function startServer(o: ServerOptions): Promise<VeilServer> {
  const log: Logger = o.logger ?? pino({ name: "veil-server", level: o.logLevel ?? "info" }, o.logStream ?? pino.destination(1));
  const metrics = createMetrics();
  const trust = typeof o.trust === "string" ? new Uint8Array(readFileSync(o.trust)) : o.trust;
  try {
    decodeTrustConfig(trust);
  } catch (e) {
    throw new Error(`the trust configuration is not valid (SPEC §3): ${(e as Error).message}`);
  }
  const programs = typeof o.models === "string" ? await loadModels(o.models) : o.models;
  const deadlineMs = o.deadlineMs ?? 30_000;
  const embedded = typeof o.broker !== "function" && isEmbeddedBroker(o.broker) ? o.broker : undefined;
  const brokerOpt = o.broker;
  const pool = new WorkerPool({
    size: o.workers ?? 2,
    programs,
    trustConfig: trust,
    broker: typeof brokerOpt === "function" ? async (hello) => keyBrokerOf(await brokerOpt(hello)) : keyBrokerOf(brokerOpt),
    queueSize: o.queue ?? 32,
    inFlight: o.inFlight ?? 4,
    worker: { ...o.worker, platformKeyFile: o.platformKeyFile ?? o.worker?.platformKeyFile },
    log,
    metrics,
    onWorker: o.onWorker,
    restartDelayMs: o.restartDelayMs,
    startTimeoutMs: o.startTimeoutMs,
  });
  log.info(
    { workers: pool.slots.length, programs: programs.map((p) => p.name), trustConfigHash: toHex(trustConfigHash(trust)), queue: o.queue ?? 32, deadlineMs },
    "starting workers",
  );
  await pool.start();

  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: o.bodyLimit ?? LIMITS.REQUEST_MAX,
    trustProxy: false,
    return503OnClosing: true,
  }) as unknown as FastifyInstance;

  const ctxs = new WeakMap<FastifyRequest, Ctx>();
  const ctxOf = (req: FastifyRequest): Ctx => {
    let c = ctxs.get(req);
    if (!c) {
      c = { route: req.routeOptions?.url ?? "(none)", reqBytes: 0, resBytes: 0, truncated: false, t0: process.hrtime.bigint() };
      ctxs.set(req, c);
    }
    return c;
  };
  let draining = false;
  /** /v1 responses not yet fully sent: the shutdown drain waits for them too. */
  const open = new Set<FastifyRequest>();

  // Bodies are opaque bytes whatever their declared type: ciphertext is never parsed as JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));

  app.addHook("onRequest", async (req, reply) => {
    const c = ctxOf(req);
    c.route = req.routeOptions?.url ?? "(none)";
    if (c.route.startsWith("/v1/")) {
      open.add(req);
      reply.raw.once("close", () => open.delete(req));
    }
    if (draining && c.route.startsWith("/v1/")) throw ServerError.of("SERVER_SHUTTING_DOWN", "the server is shutting down", 5);
  });
  app.addHook("onSend", async (_req, reply) => {
    reply.header("cache-control", "no-store");
  });
  app.addHook("onResponse", async (req, reply) => {
    const c = ctxOf(req);
    const seconds = Number(process.hrtime.bigint() - c.t0) / 1e9;
    const status = reply.statusCode;
    if (c.route.startsWith("/v1/")) {
      metrics.latency.observe({ route: c.route }, seconds);
      metrics.requests.inc({ route: c.route, outcome: outcomeOf(status, c.truncated), code: c.code ?? (status < 400 ? "OK" : `HTTP_${status}`) });
    }
    if (c.route === "/metrics" || c.route === "/healthz" || c.route === "/readyz") return;
    log.info(
      {
        route: c.route,
        program: c.program,
        worker: c.worker,
        status,
        code: c.code,
        ms: Math.round(seconds * 1000 * 10) / 10,
        reqBytes: c.reqBytes,
        resBytes: c.resBytes,
        truncated: c.truncated || undefined,
      },
      "request",
    );
  });

  const sendError = (req: FastifyRequest, reply: FastifyReply, e: ServerError) => {
    const c = ctxOf(req);
    c.code = e.code;
    if (e.retryAfter !== undefined) reply.header("retry-after", String(e.retryAfter));
    const body = JSON.stringify(e.body());
    c.resBytes = Buffer.byteLength(body);
    return reply.status(e.status).type("application/json").send(body);
  };

  app.setErrorHandler((err: FastifyError | ServerError, req, reply) => {
    if (err instanceof ServerError) return sendError(req, reply, err);
    const fe = err as FastifyError;
    if (fe.code === "FST_ERR_CTP_BODY_TOO_LARGE") return sendError(req, reply, ServerError.of("SERVER_BODY_TOO_LARGE", `request body over the ${o.bodyLimit ?? LIMITS.REQUEST_MAX}-byte limit`));
    if (typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) return sendError(req, reply, ServerError.of("SERVER_BAD_REQUEST", "malformed request"));
    log.error({ route: ctxOf(req).route, err: { type: fe.name, code: fe.code } }, "unexpected error");
    return sendError(req, reply, ServerError.of("SERVER_INTERNAL", "internal error"));
  });
  app.setNotFoundHandler((req, reply) => sendError(req, reply, ServerError.of("SERVER_NOT_FOUND", "no such route")));

  app.get("/healthz", async () => ({ ok: true }));
  app.get("/readyz", async (_req, reply) => {
    const ready = !draining && pool.allReady;
    return reply.status(ready ? 200 : 503).send({ ready, draining, workers: pool.describe() });
  });
  app.get("/metrics", async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  app.get(ROUTES.attestation, async (req, reply) => {
    const nonce = parseNonce((req.query as { nonce?: unknown }).nonce);
    const ready = pool.slots.filter((s) => s.ready);
    const results = await Promise.all(
      ready.map(async (s) => {
        try {
          const ev = await raceTimeout(pool.evidence(s, nonce), deadlineMs, `worker ${s.id}: no evidence within ${deadlineMs} ms`);
          return { id: s.id, evidence: Buffer.from(ev).toString("base64url"), programs: [...s.handles.keys()] };
        } catch (e) {
          log.warn({ route: ROUTES.attestation, worker: s.id, reason: (e as Error).message.slice(0, 200) }, "no evidence from worker");
          return undefined;
        }
      }),
    );
    const workers = results.filter((w) => w !== undefined);
    if (workers.length === 0) throw ServerError.of("SERVER_NOT_READY", "no worker is attested and loaded yet", 2);
    const body = JSON.stringify({ workers });
    ctxOf(req).resBytes = Buffer.byteLength(body);
    return reply.type("application/json").send(body);
  });

  app.get(ROUTES.programs, async (req, reply) => {
    const body = JSON.stringify({
      programs: programs.map((p) => ({
        name: p.name,
        version: p.manifest.version.toString(),
        digest: p.digestHex,
        manifest: Buffer.from(p.manifestBytes).toString("base64url"),
        signatures: Buffer.from(p.signatures).toString("base64url"),
        workers: pool.slots.filter((s) => s.ready && s.handles.has(p.name)).map((s) => s.id),
      })),
    });
    ctxOf(req).resBytes = Buffer.byteLength(body);
    return reply.type("application/json").send(body);
  });

  /** Common to infer and stream: the program, the worker, the body; a deadline signal (also aborted if the client goes away). */
  const prepare = (req: FastifyRequest, reply: FastifyReply) => {
    const c = ctxOf(req);
    const name = (req.params as { name: string }).name;
    const q = req.query as { worker?: unknown };
    const body = req.body instanceof Buffer ? req.body : Buffer.alloc(0);
    c.program = name.slice(0, 64);
    c.reqBytes = body.length;
    let workerId: string | undefined;
    if (q.worker !== undefined) {
      if (typeof q.worker !== "string" || !WORKER_ID.test(q.worker)) throw ServerError.of("SERVER_BAD_REQUEST", "worker must be a worker id such as w0");
      workerId = q.worker;
    }
    if (body.length === 0) throw ServerError.of("SERVER_BAD_REQUEST", "the body must be an EncapsulatedRequest (SPEC §8.1)");
    const slot = pool.route(name, workerId, body[0]);
    c.worker = slot.id;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(ServerError.of("SERVER_DEADLINE", `no answer within the ${deadlineMs} ms deadline`, 1)), Math.max(0, deadlineMs - Number((process.hrtime.bigint() - c.t0) / 1_000_000n)));
    const gone = () => {
      if (!reply.raw.writableFinished) ac.abort(ServerError.of("SERVER_INTERNAL", "the client went away"));
    };
    reply.raw.once("close", gone);
    const done = () => {
      clearTimeout(timer);
      reply.raw.off("close", gone);
    };
    return { c, name, body, slot, signal: ac.signal, done };
  };

  /** A route that forwards one sealed body to the worker and sends its one sealed answer back. */
  const oneShot = (route: string, call: (client: WorkerClient, program: number, body: Uint8Array) => Promise<Uint8Array>) =>
    app.post(route, async (req, reply) => {
      const { c, name, body, slot, signal, done } = prepare(req, reply);
      try {
        const res = await raceAbort(pool.submit(slot, signal, (client, handles) => call(client, handles.get(name)!, body)), signal);
        c.resBytes = res.length;
        metrics.sealedBytesOut.inc({ route }, res.length);
        return reply.type("application/octet-stream").send(Buffer.from(res.buffer, res.byteOffset, res.length));
      } finally {
        done();
      }
    });
  oneShot(ROUTES.infer, (client, program, body) => client.infer(program, body));
  // SPEC §8.5.1. Session requests (§8.5.2) go to infer and stream unchanged: their first byte is the key_id too.
  oneShot(ROUTES.session, (client, program, body) => client.sessionOpen(program, body));

  app.post(ROUTES.stream, async (req, reply) => {
    const { c, name, body, slot, signal, done } = prepare(req, reply);
    const out = new PassThrough();
    out.on("error", () => undefined); // a client that went away: the abort below stops the pump
    let started = false;
    try {
      await pool.submit(slot, signal, async (client, handles) => {
        const s = await client.inferBegin(handles.get(name)!, body); // a refusal here is a JSON error: nothing was sent yet
        started = true;
        void reply.type("application/octet-stream").send(out);
        let finished = false;
        try {
          while (!signal.aborted) {
            let piece: Uint8Array;
            try {
              piece = await client.inferNext(s);
            } catch (e) {
              if (isWorkerError(e, "STREAM_DONE")) {
                finished = true;
                break;
              }
              throw e;
            }
            c.resBytes += piece.length;
            metrics.sealedBytesOut.inc({ route: ROUTES.stream }, piece.length);
            if (!out.write(piece)) await drained(out, signal);
          }
        } finally {
          if (!finished && !client.closed) await client.inferCancel(s).catch(() => undefined);
        }
        if (!finished) throw signal.reason instanceof ServerError ? signal.reason : ServerError.of("SERVER_DEADLINE", "aborted");
      });
      out.end();
    } catch (e) {
      if (!started) throw e;
      // After the headers: end the body without the final record; the client's opener sees the cut (SPEC §8.4).
      c.truncated = true;
      c.code = e instanceof ServerError ? e.code : "SERVER_INTERNAL";
      log.warn({ route: ROUTES.stream, program: c.program, worker: c.worker, code: c.code }, "stream ended early");
      out.end();
    } finally {
      done();
    }
    return reply;
  });

  await app.listen({ port: o.port ?? 0, host: o.host ?? "127.0.0.1" });
  const addr = app.server.address();
  if (!addr || typeof addr === "string") throw new Error("server: no TCP address");
  const urlHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  const url = `http://${urlHost}:${addr.port}`;
  log.info({ url, workers: pool.describe().map((w) => ({ id: w.id, pid: w.pid, keyId: w.keyId })) }, "veil server listening");

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      draining = true;
      log.info({ inFlight: pool.slots.reduce((n, s) => n + s.active + s.queue.length, 0) }, "shutting down: finishing accepted requests");
      const drainMs = o.drainTimeoutMs ?? deadlineMs + 5000;
      const end = Date.now() + drainMs;
      let drainedAll = await pool.drain(drainMs);
      // Then the answers themselves: every accepted response sent to its last byte.
      while (open.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      drainedAll = drainedAll && open.size === 0;
      if (!drainedAll) log.warn({ open: open.size }, "shutdown drain timed out; closing with requests unfinished");
      await app.close();
      await pool.close();
      log.info({}, "veil server stopped");
    })());

  return { url, host: addr.address, port: addr.port, pool, broker: embedded, metrics, log, app, close };
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

function raceTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p.finally(() => clearTimeout(t)), new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(what)), ms)))]);
}

function drained(out: PassThrough, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => {
      out.off("drain", finish);
      out.off("close", finish);
      signal.removeEventListener("abort", finish);
      resolve();
    };
    out.once("drain", finish);
    out.once("close", finish);
    signal.addEventListener("abort", finish, { once: true });
  });
}
