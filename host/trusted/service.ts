// Trusted: serves the loader over framed connections (README.md, "Channel protocol"). It
// parses every frame the untrusted parent sends, runs one loader call at a time in arrival
// order, and replies with only what the loader exports (ciphertext, public report bodies,
// handles) or an error code with a short public message. Payloads are handed to the loader
// and never logged or kept.
import type { Readable, Writable } from "node:stream";
import type { OrtAccelerator } from "./accelerator-ort.ts";
import { AttestFailure, type WorkerEvidence } from "./attest.ts";
import { LoaderError, type LoaderInstance } from "./loader-instance.ts";
import type { Logger } from "./log.ts";
import { WeightsFileError, WeightsFileLoad } from "./weights-file.ts";
import {
  DEFAULT_MAX_FRAME,
  FrameDecoder,
  PayloadReader,
  ProtocolError,
  REQ_NAMES,
  Reply,
  Req,
  WorkerCode,
  encodeHello,
  errorPayload,
  writeFrame,
  u32,
  type HelloInfo,
} from "./protocol.ts";

const ACCELERATOR_FAILED = 64;
/** load-weights-file logs its progress at most once per this many bytes. */
const PROGRESS_MIN = 16 << 20;

export interface ServiceOptions {
  loader: LoaderInstance;
  accelerator: OrtAccelerator;
  hello: HelloInfo;
  /** The worker's evidence producer (attest.ts); without one, `evidence` is refused with NO_ATTESTER. */
  evidence?: WorkerEvidence;
  log: Logger;
  maxFrame?: number;
  /** Directories load-weights-file may read from (the operator's sealed-weights storage). */
  weightsDirs?: readonly string[];
  /** After a shutdown request was answered (or the last connection of a stdio worker ended). */
  onShutdown: (reason: string) => void;
  /** The loader failed in a way it never should (a trap): the worker must not go on. */
  onFatal: (reason: string) => void;
}

interface Connection {
  id: number;
  output: Writable;
  input: Readable;
  closed: boolean;
  queuedBytes: number;
  paused: boolean;
}

interface Job {
  conn: Connection;
  type: number;
  id: number;
  payload: Uint8Array;
  /** A frame refused at decoding: answered with this error when its turn comes. */
  refuse?: { code: number; message: string };
  /**
   * A request that runs in steps (load-weights-file): each turn runs one step and goes back
   * to the end of the queue, so other requests interleave; it is answered when a step
   * returns the result. `abort` releases what it holds if it is never resumed.
   */
  resume?: () => Uint8Array[] | undefined;
  abort?: () => void;
  /** Monotonic ns when its frame was complete (for the public "request done" timings). */
  arrived?: bigint;
}

const EMPTY = new Uint8Array(0);

export class WorkerService {
  private readonly queue: Job[] = [];
  private running = false;
  private stopping = false;
  private nextConn = 1;
  private readonly maxFrame: number;
  /** Programs loaded through this service, unloaded at shutdown so the loader wipes their keys. */
  private readonly programs = new Set<number>();

  constructor(private readonly o: ServiceOptions) {
    this.maxFrame = o.maxFrame ?? DEFAULT_MAX_FRAME;
  }

  get stopped(): boolean {
    return this.stopping;
  }

  /** Serves one duplex channel (stdin/stdout, or one Unix socket connection). */
  attach(input: Readable, output: Writable, onEnd?: () => void): void {
    const conn: Connection = { id: this.nextConn++, input, output, closed: false, queuedBytes: 0, paused: false };
    const decoder = new FrameDecoder(this.maxFrame);
    this.o.log.debug("connection open", { conn: conn.id });
    input.on("data", (chunk: Buffer) => {
      let events;
      try {
        events = decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      } catch {
        this.o.log.error("frame decoder failed", { conn: conn.id });
        return this.close(conn);
      }
      for (const ev of events) {
        // Framing errors take their place in the queue too, so every reply leaves in arrival order.
        if (ev.kind === "bad-length") {
          this.o.log.warn("malformed frame", { conn: conn.id, length: ev.length });
          this.enqueue({ conn, type: 0, id: 0, payload: EMPTY, refuse: { code: WorkerCode.BAD_FRAME, message: `frame length ${ev.length} is below 5` } });
        } else if (ev.kind === "too-large") {
          this.o.log.warn("frame too large", { conn: conn.id, id: ev.id, length: ev.length, max: this.maxFrame });
          this.enqueue({
            conn, type: ev.type, id: ev.id, payload: EMPTY,
            refuse: { code: WorkerCode.FRAME_TOO_LARGE, message: `frame of ${ev.length} bytes is over the ${this.maxFrame}-byte bound; skipped` },
          });
        } else {
          this.enqueue({ conn, type: ev.type, id: ev.id, payload: ev.payload, arrived: this.o.log.debugEnabled ? process.hrtime.bigint() : undefined });
        }
      }
    });
    let ended = false;
    // The parent finished sending: answer what it already sent, then let go.
    const end = () => {
      if (ended) return;
      ended = true;
      this.o.log.debug("connection input ended", { conn: conn.id });
      this.whenIdle(() => onEnd?.());
    };
    input.on("end", end);
    input.on("close", end);
    input.on("error", end);
    output.on("error", () => {
      conn.closed = true; // nobody to answer: drop the rest
      onEnd?.();
    });
  }

  private close(conn: Connection): void {
    conn.closed = true;
    conn.input.destroy();
  }

  private enqueue(job: Job): void {
    this.queue.push(job);
    job.conn.queuedBytes += job.payload.length;
    // Backpressure: stop reading while more than two maximal frames wait.
    if (!job.conn.paused && job.conn.queuedBytes > 2 * this.maxFrame) {
      job.conn.paused = true;
      job.conn.input.pause();
    }
    this.schedule(true);
  }

  private idle: (() => void)[] = [];

  /** Calls `f` once no request is queued or running. */
  private whenIdle(f: () => void): void {
    if (!this.running && this.queue.length === 0) f();
    else this.idle.push(f);
  }

  private schedule(now = false): void {
    if (!this.running && this.queue.length === 0) {
      for (const f of this.idle.splice(0)) f();
      return;
    }
    if (this.running) return;
    this.running = true;
    // A request that finds the worker idle runs at once (saves an event-loop turn per
    // round trip); queued ones run one per turn, so I/O interleaves with a backlog.
    if (now && this.queue.length === 1) this.runNext();
    else setImmediate(() => this.runNext());
  }

  private runNext(): void {
    const job = this.queue.shift()!;
    job.conn.queuedBytes -= job.payload.length;
    if (job.conn.paused && job.conn.queuedBytes <= this.maxFrame) {
      job.conn.paused = false;
      job.conn.input.resume();
    }
    try {
      this.execute(job);
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private reply(conn: Connection, type: number, id: number, payload: readonly Uint8Array[]): void {
    if (conn.closed || conn.output.destroyed || !conn.output.writable) return;
    writeFrame(conn.output, type, id, payload);
  }

  private execute(job: Job): void {
    if (job.refuse) {
      this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(job.refuse.code, job.refuse.message));
      return;
    }
    const op = REQ_NAMES[job.type] ?? `type 0x${job.type.toString(16)}`;
    if (this.stopping) {
      this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(WorkerCode.SHUTTING_DOWN, `${op}: the worker is shutting down`));
      return;
    }
    const t0 = this.o.log.debugEnabled ? process.hrtime.bigint() : 0n;
    this.o.accelerator.takeFailure(); // a reason left by an earlier call must not attach to this one
    try {
      const result = job.resume ? job.resume() : this.dispatch(job);
      if (result === undefined) {
        this.queue.push(job); // another step later; no reply yet
        job.conn.queuedBytes += job.payload.length;
        return;
      }
      job.abort = undefined;
      this.reply(job.conn, Reply.OK, job.id, result);
      if (this.o.log.debugEnabled) {
        // Public timings on the monotonic clock (µs), comparable with the parent's (bench:infer --trace).
        const end = process.hrtime.bigint();
        this.o.log.debug("request done", {
          op, id: job.id, ms: Number((end - t0) / 1_000_000n),
          arrivedUs: job.arrived === undefined ? undefined : Number(job.arrived / 1000n), startUs: Number(t0 / 1000n), repliedUs: Number(end / 1000n),
        });
      }
      if (job.type === Req.SHUTDOWN) {
        this.stopping = true;
        this.drainQueue();
        this.o.onShutdown("shutdown request");
      }
    } catch (e) {
      job.abort?.();
      if (e instanceof LoaderError) {
        let message = `${op}: loader error 0x${e.raw.toString(16).padStart(8, "0")}`;
        const why = this.o.accelerator.takeFailure();
        if (e.code === ACCELERATOR_FAILED && why) message += ` (accelerator: ${why})`;
        this.o.log.info("loader refused", { op, id: job.id, code: e.code, field: e.fieldId });
        this.reply(job.conn, Reply.LOADER_ERROR, job.id, errorPayload(e.raw, message));
      } else if (e instanceof ProtocolError) {
        this.o.log.warn("malformed request", { op, id: job.id, reason: e.message });
        this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(WorkerCode.BAD_FRAME, e.message));
      } else if (e instanceof Refusal) {
        this.o.log.warn("request refused", { op, id: job.id, code: e.code });
        this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(e.code, e.message));
      } else if (e instanceof WeightsFileError) {
        this.o.log.warn("weights file refused", { op, id: job.id });
        this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(WorkerCode.WEIGHTS_FILE, `${op}: ${e.message}`));
      } else if (e instanceof AttestFailure) {
        // Public facts only: configfs paths, errno codes, provider names.
        this.o.log.warn("attestation failed", { op, id: job.id, reason: e.message });
        this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(WorkerCode.ATTEST_FAILED, `${op}: ${e.message}`));
      } else if (e instanceof UnknownType) {
        this.o.log.warn("unknown request type", { id: job.id, type: job.type });
        this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(WorkerCode.UNKNOWN_TYPE, `unknown request type 0x${job.type.toString(16)}`));
      } else {
        // The loader never traps on any input (SPEC §11.4): if it did, its state is unknown,
        // so the worker answers and stops rather than serve from it again.
        const name = e instanceof Error ? e.name : typeof e;
        this.o.log.error("loader call failed unexpectedly", { op, id: job.id, error: name });
        this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(WorkerCode.INTERNAL, `${op}: internal failure (${name}); the worker stops`));
        this.stopping = true;
        this.drainQueue();
        this.o.onFatal(`${op}: ${name}`);
      }
    }
  }

  /** Answers every queued request with SHUTTING_DOWN. */
  private drainQueue(): void {
    for (const job of this.queue.splice(0)) {
      job.abort?.();
      const op = REQ_NAMES[job.type] ?? "request";
      const r = job.refuse ?? { code: WorkerCode.SHUTTING_DOWN, message: `${op}: the worker is shutting down` };
      this.reply(job.conn, Reply.WORKER_ERROR, job.id, errorPayload(r.code, r.message));
    }
  }

  /** Unloads every program so the loader wipes their keys, then drops the accelerator's state. */
  releaseAll(): void {
    for (const h of this.programs) {
      try {
        this.o.loader.unloadProgram(h);
      } catch {
        // already gone
      }
    }
    this.programs.clear();
    this.o.accelerator.close();
  }

  private dispatch(job: Job): Uint8Array[] | undefined {
    const L = this.o.loader;
    const op = REQ_NAMES[job.type];
    if (op === undefined) throw new UnknownType();
    const r = new PayloadReader(job.payload, op);
    switch (job.type) {
      case Req.HELLO:
        r.end();
        return encodeHello(this.o.hello);
      case Req.INIT: {
        const tc = r.vec32("trust_config");
        const nonce = r.vec32("nonce");
        r.end();
        return [L.init(tc, nonce)];
      }
      case Req.ATTEST: {
        const nonce = r.vec32("nonce");
        r.end();
        return [L.attest(nonce)];
      }
      case Req.UNWRAP_KEY: {
        const wrapped = r.vec32("wrapped");
        r.end();
        L.unwrapKey(wrapped);
        return [];
      }
      case Req.LOAD_PROGRAM: {
        const manifest = r.vec32("manifest");
        const signatures = r.vec32("signatures");
        const graph = r.vec32("graph");
        r.end();
        const h = L.loadProgram(manifest, signatures, graph);
        this.programs.add(h);
        return [u32(h)];
      }
      case Req.LOAD_WEIGHTS: {
        const h = r.u32("program");
        const piece = r.vec32("piece");
        r.end();
        L.loadWeights(h, piece);
        return [];
      }
      case Req.LOAD_WEIGHTS_FILE: {
        const h = r.u32("program");
        const path = r.utf8_16("path");
        r.end();
        const file = WeightsFileLoad.open(path, this.o.weightsDirs ?? []);
        job.abort = () => file.close();
        // Progress for a parent that shows it (public: sizes only), every 1/64 of the file.
        const every = Math.max(PROGRESS_MIN, Math.ceil(file.bytesTotal / 64));
        let reported = 0;
        const started = process.hrtime.bigint();
        let stepStart = started;
        job.resume = () => {
          stepStart = process.hrtime.bigint();
          const done = file.step(L, h);
          if (done || file.bytesRead - reported >= every) {
            reported = file.bytesRead;
            this.o.log.info("weights progress", { program: h, bytes: file.bytesRead, total: file.bytesTotal });
          }
          if (!done) return undefined;
          file.close();
          // Public timings: until the last piece, and the last piece (which builds the session).
          const end = process.hrtime.bigint();
          this.o.log.info("weights loaded", { program: h, bytes: file.bytesRead, streamMs: Number((stepStart - started) / 1_000_000n), lastPieceMs: Number((end - stepStart) / 1_000_000n) });
          return [];
        };
        return job.resume();
      }
      case Req.UNLOAD_PROGRAM: {
        const h = r.u32("program");
        r.end();
        L.unloadProgram(h);
        this.programs.delete(h);
        return [];
      }
      case Req.INFER: {
        const h = r.u32("program");
        const request = r.vec32("request");
        r.end();
        return [L.infer(h, request)];
      }
      case Req.INFER_BEGIN: {
        const h = r.u32("program");
        const request = r.vec32("request");
        r.end();
        return [u32(L.inferBegin(h, request))];
      }
      case Req.INFER_NEXT: {
        const s = r.u32("stream");
        r.end();
        return [L.inferNext(s)];
      }
      case Req.INFER_CANCEL: {
        const s = r.u32("stream");
        r.end();
        L.inferCancel(s);
        return [];
      }
      case Req.EVIDENCE: {
        const nonce = r.vec32("nonce");
        r.end();
        if (!this.o.evidence) throw new Refusal(WorkerCode.NO_ATTESTER, "evidence: this worker has no attester (start it with --platform-key FILE or --attester tsm)");
        // The loader's own report for the verifier's nonce, bound to this worker's measurement and code hash.
        const report = L.attest(nonce);
        try {
          return [this.o.evidence.evidence(report)];
        } catch (e) {
          if (e instanceof AttestFailure) throw e;
          // Not the loader: the worker keeps serving, but says only the error class.
          throw new Refusal(WorkerCode.ATTEST_FAILED, `evidence: the attester failed (${e instanceof Error ? e.name : typeof e})`);
        }
      }
      case Req.SESSION_OPEN: {
        const h = r.u32("program");
        const request = r.vec32("request");
        r.end();
        return [L.sessionOpen(h, request)];
      }
      case Req.SHUTDOWN:
        r.end();
        return [];
      default:
        throw new UnknownType();
    }
  }
}

class UnknownType extends Error {}

/** A request the worker refuses itself (WORKER_ERROR with this code). */
class Refusal extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}
