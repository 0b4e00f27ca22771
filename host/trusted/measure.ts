// Trusted: the accelerator's weights measurement (SPEC §9.1) — SHA-256 of the plaintext
// weights as they sit in the staging buffers — computed on a second thread
// (measure-thread.mjs) while the loader decrypts on this one. That thread also touches each
// staging page before the main thread writes it, so the page faults of a fresh multi-GiB
// buffer are paid on the other core too. It reads plaintext, so it lives here.
//
// Protocol, all through SharedArrayBuffers (the staging buffers are shared with the thread):
// - regions: one Int32 per REGION bytes of the weights stream, FREE → TOUCHING → READY. The
//   thread takes a FREE region (compare-exchange), writes a zero to each of its pages and marks
//   it READY. Before writing into a region the main thread needs it READY: it takes a FREE one
//   itself (then the thread skips it) or waits while the thread is touching it. So the two never
//   write the same bytes.
// - written (BigInt64): stream bytes the main thread has written, published after the write;
//   the thread hashes up to it. hashed: how far the thread has hashed.
// - state (Int32): 0 running, 1 done (digest holds the measurement), 2 cancelled.
// - bell (Int32, one per thread): bumped and notified on every publish, so the idle thread wakes.
import { Worker } from "node:worker_threads";
import { createHash } from "node:crypto";

export const REGION = 1 << 20;
/** How far ahead of the written data the thread touches pages (bounds memory committed early). */
const LOOKAHEAD = 64 << 20;
const R_FREE = 0, R_TOUCHING = 1, R_READY = 2;
const S_RUNNING = 0, S_DONE = 1, S_CANCELLED = 2;
/** A measurement that makes no progress for this long is a failure. */
const STALL_MS = 30_000;

export class MeasureError extends Error {}

/** One thread per accelerator, started at the first job. */
export class MeasureThread {
  private worker?: Worker;
  private failed?: string;
  private readonly bell = new Int32Array(new SharedArrayBuffer(4));

  /** A job over the staging buffers, in stream order; the thread starts on it at once. */
  job(buffers: SharedArrayBuffer[]): MeasureJob {
    const job = new MeasureJob(buffers, this.bell, () => this.failed);
    try {
      this.start().postMessage({ op: "job", control: job.control, digest: job.digestBuffer, regions: job.regionBuffer, buffers });
      this.ring();
    } catch (e) {
      // No thread: the job measures on this thread at the end (slower, same result).
      this.failed = `measurement thread unavailable (${e instanceof Error ? e.name : typeof e})`;
      job.local = true;
    }
    return job;
  }

  ring(): void {
    Atomics.add(this.bell, 0, 1);
    Atomics.notify(this.bell, 0);
  }

  private start(): Worker {
    if (this.failed) throw new MeasureError(this.failed);
    if (!this.worker) {
      const w = new Worker(new URL("./measure-thread.mjs", import.meta.url), {
        workerData: { bell: this.bell.buffer, region: REGION, lookahead: LOOKAHEAD },
        execArgv: [], // plain JavaScript: no TypeScript loader needed
      });
      w.unref();
      w.on("error", (e) => {
        this.failed = `measurement thread failed (${e.name})`;
      });
      w.on("exit", () => {
        this.failed ??= "measurement thread exited";
        this.worker = undefined;
      });
      this.worker = w;
    }
    return this.worker;
  }

  close(): void {
    this.worker?.postMessage({ op: "close" });
    this.ring();
    void this.worker?.terminate();
    this.worker = undefined;
  }
}

export class MeasureJob {
  readonly control = new SharedArrayBuffer(24);
  readonly digestBuffer = new SharedArrayBuffer(32);
  readonly regionBuffer: SharedArrayBuffer;
  private readonly state = new Int32Array(this.control, 0, 2);
  private readonly offsets = new BigInt64Array(this.control);
  private readonly regions: Int32Array;
  private readonly total: number;
  /** Measure on this thread at `result()` (no measurement thread). */
  local = false;

  constructor(private readonly buffers: SharedArrayBuffer[], private readonly bell: Int32Array, private readonly threadFailure: () => string | undefined) {
    this.total = buffers.reduce((a, b) => a + b.byteLength, 0);
    this.regionBuffer = new SharedArrayBuffer(4 * Math.ceil(this.total / REGION));
    this.regions = new Int32Array(this.regionBuffer);
  }

  /** Call before writing stream bytes [from, to): afterwards no other thread writes there. */
  claim(from: number, to: number): void {
    if (this.local) return;
    for (let r = Math.floor(from / REGION); r * REGION < to; r++) {
      let waited = 0;
      for (;;) {
        const v = Atomics.compareExchange(this.regions, r, R_FREE, R_READY);
        if (v !== R_TOUCHING) break; // FREE (now ours) or READY
        if (Atomics.wait(this.regions, r, R_TOUCHING, 100) === "timed-out" && (waited += 100) > STALL_MS) {
          throw new MeasureError("measurement thread stalled while touching staging pages");
        }
      }
    }
  }

  /** Bytes [0, end) of the stream are written. */
  published(end: number): void {
    if (this.local) return;
    Atomics.store(this.offsets, 1, BigInt(end));
    Atomics.add(this.bell, 0, 1);
    Atomics.notify(this.bell, 0);
  }

  /** The measurement once every byte is written and hashed (waits for the thread). */
  result(): Uint8Array {
    if (this.local) return this.measureHere();
    let last = Atomics.load(this.offsets, 2);
    let idle = 0;
    while (Atomics.load(this.state, 0) !== S_DONE) {
      const failure = this.threadFailure();
      if (failure) throw new MeasureError(failure);
      Atomics.wait(this.state, 0, S_RUNNING, 100);
      const now = Atomics.load(this.offsets, 2);
      idle = now === last ? idle + 100 : 0;
      last = now;
      if (idle > STALL_MS) throw new MeasureError("measurement thread made no progress");
    }
    return new Uint8Array(this.digestBuffer).slice();
  }

  /** Stops the thread's work on this job (the buffers are about to be wiped). */
  cancel(): void {
    Atomics.store(this.state, 0, S_CANCELLED);
    Atomics.add(this.bell, 0, 1);
    Atomics.notify(this.bell, 0);
  }

  private measureHere(): Uint8Array {
    const h = createHash("sha256");
    for (const b of this.buffers) h.update(new Uint8Array(b));
    return new Uint8Array(h.digest());
  }
}
