// The pool of trusted worker processes (README.md, "Pool", "Crash recovery", "Shutdown").
// UNTRUSTED host code. Each worker is a `WorkerClient.spawn()` child with its own loader: it is
// initialised with the trust configuration, gets each data key from the key broker (broker nonce
// → the worker's own evidence for it → release → unwrap-key inside the worker), and loads every
// program (manifest, signatures, graph, then the sealed weights streamed from disk). The pool
// then queues requests per worker, with a bound, and restarts a worker that exits.
//
// The pool only ever handles ciphertext, public reports and evidence, manifests, signatures and
// graphs; it parses nothing but the one framing byte it routes by (the request's key_id).
import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { dirname, resolve } from "node:path";
import type { Logger } from "pino";
import { decodeReportBody, toHex } from "../formats/index.ts";
import { WorkerClient, type Hello, type WorkerOptions } from "../worker/client.ts";
import { ServerError, fromWorkerError } from "./errors.ts";
import type { KeyBroker } from "./keybroker.ts";
import type { Metrics } from "./metrics.ts";
import type { Program } from "./models.ts";

export type SlotState = "starting" | "ready" | "restarting" | "stopped";

/** How each worker process is started. The attester options are passed through the environment (host/trusted/worker.ts). */
export interface WorkerSpawnOptions {
  wasmPath?: string;
  ort?: Record<string, unknown>;
  logLevel?: "quiet" | "error" | "warn" | "info" | "debug";
  nodeArgs?: string[];
  /** Base environment of the workers (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Software attester: the platform key file given to each worker (mode 0600). Development only. */
  platformKeyFile?: string;
  /** "software" (with platformKeyFile) or "tsm" (configfs-tsm inside a confidential guest). */
  attester?: "software" | "tsm";
  tsmRoot?: string;
  tsmPrivlevel?: number;
}

export interface PoolOptions {
  size: number;
  programs: Program[];
  trustConfig: Uint8Array;
  /**
   * The key broker, or a function that makes one from the first worker's hello (its measurement,
   * code hash and public attester facts): main.ts builds a development embedded broker that way.
   */
  broker: KeyBroker | ((hello: Hello) => KeyBroker | Promise<KeyBroker>);
  /** Requests waiting per worker beyond those in flight; more is 503 SERVER_QUEUE_FULL. */
  queueSize: number;
  /** Requests sent to one worker at a time (the worker runs them one by one; a few queued in its pipe keep it busy). */
  inFlight: number;
  worker: WorkerSpawnOptions;
  log: Logger;
  metrics: Metrics;
  /** Called with each worker client right after it is spawned (tests tap its channel here). */
  onWorker?: (id: string, client: WorkerClient) => void;
  /** Restart backoff after consecutive failures: min doubling up to max (ms); default 500..30000. */
  restartDelayMs?: { min: number; max: number };
  /** Bound on one worker's start (spawn, attestation, key release, program loading); default 120 s. */
  startTimeoutMs?: number;
}

type JobFn<T> = (client: WorkerClient, handles: ReadonlyMap<string, number>, signal: AbortSignal) => Promise<T>;

interface Job {
  run: (client: WorkerClient, handles: ReadonlyMap<string, number>) => void;
  fail: (e: ServerError) => void;
}

/** One worker process and what the pool knows about it. */
export class WorkerSlot {
  state: SlotState = "starting";
  client: WorkerClient | undefined;
  /** Bumped at every (re)start. */
  generation = 0;
  hello: Hello | undefined;
  /** The loader's ReportBody from init (public). */
  report: Uint8Array | undefined;
  /** The loader's key_id (SPEC §4), while ready. */
  keyId: number | undefined;
  /** Key ids this slot had before restarts (a request sealed to one gets KEY_ID). */
  readonly retiredKeyIds: number[] = [];
  readonly handles = new Map<string, number>();
  readonly queue: Job[] = [];
  active = 0;
  /** Why the last start failed, or why the worker exited (public facts). */
  lastError: string | undefined;
  readyAt = 0;
  failures = 0;
  restarts = 0;
  timer: NodeJS.Timeout | undefined;

  constructor(readonly id: string) {}

  get pid(): number | undefined {
    return this.client?.pid;
  }

  get ready(): boolean {
    return this.state === "ready";
  }
}

/** A worker that could not be brought up: the reason, with the worker id. */
export class WorkerStartError extends Error {
  override readonly name = "WorkerStartError";
  constructor(readonly worker: string, message: string, options?: { cause?: unknown }) {
    super(`worker ${worker}: ${message}`, options);
  }
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).slice(0, 500);

function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, rej) => {
      t = setTimeout(() => rej(new Error(what())), ms);
      t.unref();
    }),
  ]);
}

export class WorkerPool {
  readonly slots: WorkerSlot[];
  private closing = false;
  private readonly pending = new Set<Promise<unknown>>();
  private readonly keyIds: string[];
  private readonly restartMin: number;
  private readonly restartMax: number;
  private readonly startTimeoutMs: number;
  private brokerP: Promise<KeyBroker> | undefined;

  constructor(private readonly o: PoolOptions) {
    if (!Number.isInteger(o.size) || o.size < 1 || o.size > 64) throw new TypeError("workers must be 1..64");
    if (!Number.isInteger(o.queueSize) || o.queueSize < 0) throw new TypeError("queue size must be a whole number");
    if (!Number.isInteger(o.inFlight) || o.inFlight < 1) throw new TypeError("in-flight must be at least 1");
    this.slots = Array.from({ length: o.size }, (_, i) => new WorkerSlot(`w${i}`));
    this.keyIds = [...new Set(o.programs.map((p) => p.keyIdHex))];
    this.restartMin = o.restartDelayMs?.min ?? 500;
    this.restartMax = o.restartDelayMs?.max ?? 30_000;
    this.startTimeoutMs = o.startTimeoutMs ?? 120_000;
    for (const s of this.slots) {
      o.metrics.queueDepth.set({ worker: s.id }, 0);
      o.metrics.inFlight.set({ worker: s.id }, 0);
      o.metrics.workerReady.set({ worker: s.id }, 0);
      o.metrics.restarts.inc({ worker: s.id }, 0);
    }
  }

  get programs(): readonly Program[] {
    return this.o.programs;
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /** True when every worker is attested and has its programs loaded. */
  get allReady(): boolean {
    return !this.closing && this.slots.every((s) => s.ready);
  }

  slot(id: string): WorkerSlot | undefined {
    return this.slots.find((s) => s.id === id);
  }

  /** Brings every worker up (in parallel). Any failure stops them all and rejects with every reason. */
  async start(): Promise<void> {
    const results = await Promise.allSettled(this.slots.map((s) => this.bringUp(s, true)));
    const failed = results.flatMap((r) => (r.status === "rejected" ? [r.reason as Error] : []));
    if (failed.length > 0) {
      await this.close();
      const e = new Error(`the server cannot start: ${failed.map((f) => f.message).join("; ")}`, { cause: failed[0] });
      e.name = "ServerStartError";
      throw e;
    }
  }

  private spawnOptions(): WorkerOptions {
    const w = this.o.worker;
    const env: NodeJS.ProcessEnv = { ...(w.env ?? process.env) };
    delete env.VEIL_PLATFORM_KEY;
    delete env.VEIL_ATTESTER;
    delete env.VEIL_TSM_ROOT;
    delete env.VEIL_TSM_PRIVLEVEL;
    if (w.platformKeyFile) env.VEIL_PLATFORM_KEY = w.platformKeyFile;
    if (w.attester) env.VEIL_ATTESTER = w.attester;
    if (w.tsmRoot) env.VEIL_TSM_ROOT = w.tsmRoot;
    if (w.tsmPrivlevel !== undefined) env.VEIL_TSM_PRIVLEVEL = String(w.tsmPrivlevel);
    // The worker writes no file: no tsx compile cache (it would also run code from TMPDIR, outside
    // the code hash) and no ONNX Runtime telemetry (the worker sets this itself too).
    env.TSX_DISABLE_CACHE = "1";
    env.ORT_DISABLE_TELEMETRY = "1";
    // One ONNX Runtime thread pool per worker process: unless configured, the cores are shared out
    // (cores ÷ workers, at least 1) rather than each worker spinning a pool as wide as the machine.
    const ort = { ...w.ort };
    if (ort.intraOpNumThreads === undefined) ort.intraOpNumThreads = Math.max(1, Math.floor(availableParallelism() / this.slots.length));
    return { wasmPath: w.wasmPath, ort, logLevel: w.logLevel ?? "warn", nodeArgs: w.nodeArgs, env };
  }

  /** Spawns, attests, gets the keys and loads the programs of one worker; `ready` on success. */
  private async bringUp(slot: WorkerSlot, first: boolean): Promise<void> {
    const log = this.o.log;
    slot.state = "starting";
    slot.generation++;
    const t0 = Date.now();
    const client = WorkerClient.spawn({
      ...this.spawnOptions(),
      // The worker reads each program's weights.sealed itself, and only from these directories.
      weightsDirs: [...new Set(this.o.programs.map((p) => dirname(resolve(p.weightsPath))))],
      // The worker's own log lines are public facts (host/trusted/log.ts): relayed at debug, errors at warn.
      onLog: (entry) => {
        if (typeof entry === "object" && entry && entry.level === "error") log.warn({ worker: slot.id, workerEvent: String(entry.event).slice(0, 200) }, "worker error event");
        else log.debug({ worker: slot.id, workerEvent: typeof entry === "object" && entry ? String(entry.event).slice(0, 200) : "text" }, "worker log");
      },
    });
    slot.client = client;
    void client.exited.then((info) => this.onExit(slot, client, info));
    this.o.onWorker?.(slot.id, client);
    if (!first) {
      slot.restarts++;
      this.o.metrics.restarts.inc({ worker: slot.id });
    }
    try {
      await withTimeout(this.initialise(slot, client), this.startTimeoutMs, () => `start took over ${this.startTimeoutMs} ms`);
      if (this.closing) throw new Error("the server is shutting down");
    } catch (e) {
      if (slot.client === client) slot.client = undefined;
      client.kill();
      slot.handles.clear();
      slot.lastError = errText(e);
      throw e instanceof WorkerStartError ? e : new WorkerStartError(slot.id, errText(e), { cause: e });
    }
    slot.state = "ready";
    slot.readyAt = Date.now();
    slot.lastError = undefined;
    this.o.metrics.workerReady.set({ worker: slot.id }, 1);
    log.info(
      { worker: slot.id, pid: client.pid, keyId: slot.keyId, programs: slot.handles.size, ms: Date.now() - t0, restart: !first },
      first ? "worker ready" : "worker restarted and ready",
    );
  }

  private async brokerCall<T>(op: "nonce" | "release", f: () => Promise<T>): Promise<T> {
    try {
      const r = await f();
      this.o.metrics.brokerCalls.inc({ op, outcome: "ok" });
      return r;
    } catch (e) {
      this.o.metrics.brokerCalls.inc({ op, outcome: "error" });
      throw e;
    }
  }

  /** The key broker (made once, from the first hello, when a factory was given). */
  keyBroker(hello: Hello): Promise<KeyBroker> {
    const b = this.o.broker;
    this.brokerP ??= typeof b === "function" ? Promise.resolve().then(() => b(hello)) : Promise.resolve(b);
    return this.brokerP;
  }

  private async initialise(slot: WorkerSlot, client: WorkerClient): Promise<void> {
    const hello = await client.hello();
    const broker = await this.keyBroker(hello);
    const report = await client.init(this.o.trustConfig, new Uint8Array(randomBytes(32)));
    const keyId = decodeReportBody(report).keyId;
    // Key release: the broker's nonce, the worker's own evidence for it, the broker's verdict.
    for (const keyIdHex of this.keyIds) {
      let nonce: Uint8Array;
      try {
        nonce = await this.brokerCall("nonce", () => broker.nonce());
      } catch (e) {
        throw new WorkerStartError(slot.id, `no nonce from the key broker (${broker.where}): ${errText(e)}`, { cause: e });
      }
      const evidence = await client.evidence(nonce);
      let wrapped: Uint8Array;
      try {
        wrapped = await this.brokerCall("release", () => broker.release(keyIdHex, evidence, nonce));
      } catch (e) {
        throw new WorkerStartError(slot.id, `the key broker (${broker.where}) did not release data key ${keyIdHex}: ${errText(e)}`, { cause: e });
      }
      await client.unwrapKey(wrapped);
      this.o.log.info({ worker: slot.id, keyId: keyIdHex, loaderKeyId: keyId }, "data key released to the worker's loader");
    }
    for (const p of this.o.programs) {
      const h = await client.loadProgram(p.manifestBytes, p.signatures, p.graph);
      // The worker is on this machine: it reads the sealed file itself (one read per piece,
      // straight into the loader), which is several times faster than the channel.
      await client.loadWeightsFile(h, resolve(p.weightsPath));
      slot.handles.set(p.name, h);
    }
    slot.hello = hello;
    slot.report = report;
    slot.keyId = keyId;
  }

  private onExit(slot: WorkerSlot, client: WorkerClient, info: { code: number | null; signal: string | null; reason: string }): void {
    if (slot.client !== client) return; // replaced already, or killed by a failed start
    slot.client = undefined;
    if (slot.state === "starting") return; // the start's pending calls reject; bringUp handles it
    const wasReady = slot.state === "ready";
    if (slot.keyId !== undefined) slot.retiredKeyIds.push(slot.keyId);
    if (slot.retiredKeyIds.length > 16) slot.retiredKeyIds.shift();
    slot.keyId = undefined;
    slot.report = undefined;
    slot.handles.clear();
    slot.active = 0;
    this.o.metrics.workerReady.set({ worker: slot.id }, 0);
    this.o.metrics.inFlight.set({ worker: slot.id }, 0);
    this.failQueue(slot, this.closing ? ServerError.of("SERVER_SHUTTING_DOWN", `worker ${slot.id} is shutting down`, 5) : restarting(slot));
    if (this.closing || !wasReady) {
      slot.state = "stopped";
      return;
    }
    slot.state = "restarting";
    slot.lastError = `exited: ${info.reason}`;
    // A worker that dies soon after starting counts as a failed start: its restarts back off.
    slot.failures = Date.now() - slot.readyAt < 10_000 ? slot.failures + 1 : 0;
    this.o.log.warn({ worker: slot.id, code: info.code, signal: info.signal, reason: info.reason.slice(0, 200), failures: slot.failures }, "worker exited; restarting it");
    this.scheduleRestart(slot);
  }

  private scheduleRestart(slot: WorkerSlot): void {
    if (this.closing) return;
    const delay = slot.failures === 0 ? 0 : Math.min(this.restartMax, this.restartMin * 2 ** (slot.failures - 1));
    slot.state = "restarting";
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (this.closing) return;
      this.bringUp(slot, false).then(
        () => {
          slot.failures = 0;
        },
        (e: unknown) => {
          if (this.closing) {
            slot.state = "stopped";
            return;
          }
          slot.failures++;
          slot.state = "restarting";
          this.o.log.error(
            { worker: slot.id, failures: slot.failures, reason: errText(e), retryInMs: Math.min(this.restartMax, this.restartMin * 2 ** (slot.failures - 1)) },
            "worker restart failed",
          );
          this.scheduleRestart(slot);
        },
      );
    }, delay);
  }

  private failQueue(slot: WorkerSlot, e: ServerError): void {
    for (const job of slot.queue.splice(0)) job.fail(e);
    this.o.metrics.queueDepth.set({ worker: slot.id }, 0);
  }

  /**
   * The worker for a request to `program`: `workerId` when given, else the unique ready worker
   * whose loader key_id is `keyIdByte` (the EncapsulatedRequest's first byte, SPEC §8.1).
   */
  route(program: string, workerId: string | undefined, keyIdByte: number | undefined): WorkerSlot {
    if (this.closing) throw ServerError.of("SERVER_SHUTTING_DOWN", "the server is shutting down", 5);
    if (!this.o.programs.some((p) => p.name === program)) throw ServerError.of("SERVER_UNKNOWN_PROGRAM", `no program named ${JSON.stringify(program.slice(0, 64))}`);
    if (workerId !== undefined) {
      const s = this.slot(workerId);
      if (!s) throw ServerError.of("SERVER_UNKNOWN_WORKER", `no worker ${JSON.stringify(workerId.slice(0, 64))}`);
      if (!s.ready) throw restarting(s);
      if (!s.handles.has(program)) throw ServerError.of("SERVER_UNKNOWN_WORKER", `worker ${s.id} does not hold program ${program}`);
      return s;
    }
    if (keyIdByte === undefined) throw ServerError.of("SERVER_BAD_REQUEST", "empty request body");
    const hits = this.slots.filter((s) => s.ready && s.keyId === keyIdByte && s.handles.has(program));
    if (hits.length === 1) return hits[0];
    if (hits.length > 1)
      throw ServerError.of("SERVER_AMBIGUOUS_WORKER", `${hits.length} workers (${hits.map((s) => s.id).join(", ")}) have loader key id ${keyIdByte}; name one with ?worker=`);
    const former = this.slots.find((s) => s.retiredKeyIds.includes(keyIdByte));
    if (former && !former.ready) throw restarting(former);
    return this.noKey(keyIdByte, former !== undefined);
  }

  private noKey(keyIdByte: number, stale: boolean): never {
    throw new ServerError(
      "KEY_ID",
      stale
        ? `no worker has loader key id ${keyIdByte} any more (its worker restarted with a new key): attest again (GET /v1/attestation) and seal to a current key`
        : `no worker has loader key id ${keyIdByte}: attest (GET /v1/attestation) and seal to a worker's key`,
      400,
      false,
      48,
      "EncapsulatedRequest key_id",
    );
  }

  /**
   * Runs `fn` on the slot's worker, after the requests queued before it. Refuses at once when the
   * queue is full (SERVER_QUEUE_FULL), the worker is not ready, or the server is closing. When
   * `signal` aborts while the job waits, it leaves the queue with the signal's reason; once
   * running, `fn` gets the signal and decides. Worker failures become ServerErrors.
   */
  submit<T>(slot: WorkerSlot, signal: AbortSignal, fn: JobFn<T>): Promise<T> {
    if (this.closing) return Promise.reject(ServerError.of("SERVER_SHUTTING_DOWN", "the server is shutting down", 5));
    if (!slot.ready || !slot.client) return Promise.reject(restarting(slot));
    if (slot.queue.length > 0 || slot.active >= this.o.inFlight) {
      if (slot.queue.length >= this.o.queueSize)
        return Promise.reject(ServerError.of("SERVER_QUEUE_FULL", `worker ${slot.id}: ${slot.active} request(s) running and ${slot.queue.length} queued (the limit)`, 1));
    }
    const p = new Promise<T>((resolve, reject) => {
      let queued = true;
      const onAbort = () => {
        if (!queued) return;
        const i = slot.queue.indexOf(job);
        if (i >= 0) slot.queue.splice(i, 1);
        this.o.metrics.queueDepth.set({ worker: slot.id }, slot.queue.length);
        queued = false;
        reject(signal.reason instanceof ServerError ? signal.reason : ServerError.of("SERVER_DEADLINE", "aborted while queued"));
      };
      const job: Job = {
        fail: (e) => {
          if (!queued) return;
          queued = false;
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
        run: (client, handles) => {
          if (!queued) return;
          queued = false;
          signal.removeEventListener("abort", onAbort);
          const gen = slot.generation;
          slot.active++;
          this.o.metrics.inFlight.set({ worker: slot.id }, slot.active);
          let r: Promise<T>;
          try {
            r = fn(client, handles, signal);
          } catch (e) {
            r = Promise.reject(e);
          }
          r.then(resolve, (e: unknown) => reject(fromWorkerError(e, slot.id, this.closing))).finally(() => {
            if (slot.generation !== gen || slot.client !== client) return; // the worker was replaced meanwhile
            slot.active--;
            this.o.metrics.inFlight.set({ worker: slot.id }, slot.active);
            this.pump(slot);
          });
        },
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      slot.queue.push(job);
      this.o.metrics.queueDepth.set({ worker: slot.id }, slot.queue.length);
      this.pump(slot);
    });
    const tracked = p.catch(() => undefined);
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
    return p;
  }

  private pump(slot: WorkerSlot): void {
    while (slot.ready && slot.client && slot.active < this.o.inFlight && slot.queue.length > 0) {
      const job = slot.queue.shift()!;
      this.o.metrics.queueDepth.set({ worker: slot.id }, slot.queue.length);
      job.run(slot.client, slot.handles);
    }
  }

  /** Evidence from one ready worker for `nonce` (not queued: the worker answers it between requests). */
  async evidence(slot: WorkerSlot, nonce: Uint8Array): Promise<Uint8Array> {
    const client = slot.client;
    if (!slot.ready || !client) throw restarting(slot);
    try {
      return await client.evidence(nonce);
    } catch (e) {
      throw fromWorkerError(e, slot.id, this.closing);
    }
  }

  /** Public state of each worker, for /readyz and the logs. */
  describe(): { id: string; state: SlotState; pid: number | undefined; keyId: number | undefined; queued: number; inFlight: number; restarts: number; lastError?: string }[] {
    return this.slots.map((s) => ({
      id: s.id,
      state: s.state,
      pid: s.pid,
      keyId: s.keyId,
      queued: s.queue.length,
      inFlight: s.active,
      restarts: s.restarts,
      ...(s.lastError ? { lastError: s.lastError } : {}),
    }));
  }

  /** Stops taking requests; resolves once every accepted request has settled (or after `timeoutMs`). */
  async drain(timeoutMs: number): Promise<boolean> {
    this.closing = true;
    for (const s of this.slots) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = undefined;
    }
    const deadline = Date.now() + timeoutMs;
    while (this.pending.size > 0 && Date.now() < deadline) {
      await Promise.race([Promise.allSettled([...this.pending]), new Promise((r) => setTimeout(r, Math.max(1, deadline - Date.now())).unref())]);
    }
    return this.pending.size === 0;
  }

  /** Closes every worker (shutdown frame: the loader wipes its keys; killed after `timeoutMs`). */
  async close(timeoutMs = 5000): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.slots.map(async (s) => {
        if (s.timer) clearTimeout(s.timer);
        s.timer = undefined;
        const c = s.client;
        this.failQueue(s, ServerError.of("SERVER_SHUTTING_DOWN", "the server is shutting down", 5));
        s.state = "stopped";
        this.o.metrics.workerReady.set({ worker: s.id }, 0);
        if (c) {
          await c.close(timeoutMs);
          s.client = undefined;
        }
      }),
    );
  }

  /** Hex of the worker's report key, for logs. */
  static keyHex(slot: WorkerSlot): string | undefined {
    return slot.report ? toHex(decodeReportBody(slot.report).hpkePublicKey) : undefined;
  }
}

function restarting(slot: WorkerSlot): ServerError {
  return ServerError.of(
    "SERVER_WORKER_RESTARTING",
    `worker ${slot.id} is ${slot.state === "starting" ? "starting" : slot.state === "stopped" ? "stopped" : "restarting"}; its loader key changes: attest again, then retry${slot.lastError ? ` (last: ${slot.lastError.slice(0, 200)})` : ""}`,
    2,
  );
}
