// Trusted: the accelerator's weights measurement (SPEC §9.1) — SHA-256 of the plaintext
// weights as they sit in the staging buffers — computed on a second thread
// (measure-thread.mjs) while the loader decrypts on this one. That thread also touches each
// staging page before the main thread writes it, so the page faults of a fresh multi-GiB
// buffer are paid on the other core too. It reads plaintext, so it lives here.
//
// One thread per weights load. Once the session is built it wipes the staging (release), off the
// thread that answers requests, and exits; a cancelled load's thread exits at once (the caller
// wipes). Either way it holds the staging memory no longer than it holds plaintext. Each is
// started ahead of time and waits for its job: starting a thread takes tens of milliseconds and
// slows the loader's thread while it runs, so the next one starts only once a load is over.
// Protocol, all through SharedArrayBuffers (the staging buffers are shared with the thread):
// - regions: one Int32 per REGION bytes of the weights stream, FREE → TOUCHING → READY. The
//   thread takes a FREE region (compare-exchange), writes a zero to each of its pages and marks
//   it READY. Before writing into a region the main thread needs it READY: it takes a FREE one
//   itself (then the thread skips it) or waits while the thread is touching it. So the two never
//   write the same bytes.
// - written (BigInt64): stream bytes the main thread has written, published after the write;
//   the thread hashes up to it. hashed: how far the thread has hashed.
// - state (Int32): 0 running, 1 done (digest holds the measurement), 2 cancelled, 3 failed
//   (the thread threw; it also wakes every waiter); bell (Int32):
//   bumped and notified on every publish and on cancel, so the idle thread wakes.
// - After done, one message: { wipe: bytes per buffer } (it wipes, answers "wiped" and exits);
//   cancel() terminates it instead. If it dies before "wiped", release() wipes here.
import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";
import { wipeShared } from "./wipe-shared.mjs";

export const REGION = 1 << 20;
/** How far ahead of the written data the thread touches pages (bounds memory committed early). */
const LOOKAHEAD = 64 << 20;
const R_FREE = 0, R_TOUCHING = 1, R_READY = 2;
const S_STATE = 0, S_BELL = 1, O_WRITTEN = 1, O_HASHED = 2;
const RUNNING = 0, DONE = 1, CANCELLED = 2, FAILED = 3;
/** A measurement that makes no progress for this long is a failure. */
const STALL_MS = 30_000;
const THREAD = new URL("./measure-thread.mjs", import.meta.url);

export class MeasureError extends Error {}

/** The started thread waiting for the next job (one per process). */
let standby: Worker | undefined;

function startThread(): Worker {
  const w = new Worker(THREAD, { execArgv: [] }); // plain JavaScript: no TypeScript loader needed
  w.unref();
  return w;
}

/** Makes sure a thread is waiting for the next job (called when an accelerator starts and after each load). */
export function warmMeasureThread(): void {
  if (standby) return;
  try {
    const w = startThread();
    w.once("error", () => undefined); // a failed standby is noticed when a job takes it
    w.once("exit", () => {
      if (standby === w) standby = undefined;
    });
    standby = w;
  } catch {
    // No threads: jobs measure on the calling thread.
  }
}

function takeThread(): Worker {
  const w = standby ?? startThread();
  standby = undefined;
  return w;
}

export class MeasureJob {
  private readonly control = new SharedArrayBuffer(24);
  private readonly digest = new SharedArrayBuffer(32);
  private readonly flags = new Int32Array(this.control, 0, 2);
  private readonly offsets = new BigInt64Array(this.control);
  private readonly regions: Int32Array;
  private worker?: Worker;
  private failed?: string;
  private exited = false;
  /** No thread: the job measures on this thread at `result()` (slower, same result). */
  readonly local: boolean;

  /** Starts measuring the staging `buffers` (in stream order) on a thread of its own. */
  constructor(private readonly buffers: SharedArrayBuffer[], opts: { thread?: boolean } = {}) {
    const total = buffers.reduce((a, b) => a + b.byteLength, 0);
    this.regions = new Int32Array(new SharedArrayBuffer(4 * Math.ceil(total / REGION)));
    let local = opts.thread === false;
    if (!local) {
      try {
        const w = takeThread();
        w.on("error", (e) => void (this.failed ??= `measurement thread failed (${e.name})`));
        w.on("exit", () => {
          this.exited = true;
          if (Atomics.load(this.flags, S_STATE) === RUNNING) this.failed ??= "measurement thread exited";
        });
        w.postMessage({ control: this.control, digest: this.digest, regions: this.regions.buffer, buffers, region: REGION, lookahead: LOOKAHEAD });
        this.worker = w;
      } catch {
        local = true;
      }
    }
    this.local = local;
  }

  /** Call before writing stream bytes [from, to): afterwards no other thread writes there. */
  claim(from: number, to: number): void {
    if (this.local) return;
    for (let r = Math.floor(from / REGION); r * REGION < to; r++) {
      let waited = 0;
      while (Atomics.compareExchange(this.regions, r, R_FREE, R_READY) === R_TOUCHING) {
        // The thread is touching this region's pages (well under a millisecond).
        if (Atomics.load(this.flags, S_STATE) === FAILED) throw new MeasureError("measurement thread failed");
        if (Atomics.wait(this.regions, r, R_TOUCHING, 100) === "timed-out" && (waited += 100) > STALL_MS) {
          throw new MeasureError("measurement thread stalled while touching staging pages");
        }
      }
    }
  }

  /** Bytes the thread has hashed so far (public: a count). */
  get hashedBytes(): number {
    return Number(Atomics.load(this.offsets, O_HASHED));
  }

  /** Bytes [0, end) of the stream are written. */
  published(end: number): void {
    if (this.local) return;
    Atomics.store(this.offsets, O_WRITTEN, BigInt(end));
    this.ring();
  }

  /** The measurement once every byte is written and hashed (waits for the thread). */
  result(): Uint8Array {
    if (this.local) return this.measureHere();
    let last = Atomics.load(this.offsets, O_HASHED);
    let idle = 0;
    while (Atomics.load(this.flags, S_STATE) !== DONE) {
      if (this.failed) throw new MeasureError(this.failed);
      if (Atomics.load(this.flags, S_STATE) === FAILED) throw new MeasureError("measurement thread failed");
      Atomics.wait(this.flags, S_STATE, RUNNING, 100);
      const now = Atomics.load(this.offsets, O_HASHED);
      idle = now === last ? idle + 100 : 0;
      last = now;
      if (idle > STALL_MS) throw new MeasureError("measurement thread made no progress");
    }
    setImmediate(warmMeasureThread); // the next load's thread, once this call is over
    // The unkeyed digest is what the commitment's key hides (SPEC §9.1): one copy out, then gone.
    const shared = new Uint8Array(this.digest);
    const out = shared.slice();
    shared.fill(0);
    return out;
  }

  /**
   * After result(): the thread wipes the first `lengths[i]` bytes of each buffer and exits, and
   * this returns at once. Resolves once they are zero and the thread is gone (if it died before
   * saying "wiped", they are wiped here). Without a live thread: wipes here, now.
   */
  release(lengths: number[]): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (!w || this.exited || Atomics.load(this.flags, S_STATE) !== DONE) {
      if (w) void w.terminate();
      this.wipeHere(lengths);
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let wiped = false;
      w.once("message", () => void (wiped = true));
      w.once("exit", () => {
        if (!wiped) this.wipeHere(lengths); // it died first: the plaintext goes anyway
        resolve();
      });
      w.postMessage({ wipe: lengths });
    });
  }

  /** Wipes the first `lengths[i]` bytes of each buffer on this thread. */
  wipeHere(lengths: number[]): void {
    wipeShared(this.buffers, lengths);
  }

  /** Stops the thread (the buffers are about to be wiped); `rewarm` starts the next load's thread. */
  cancel(rewarm = true): void {
    Atomics.store(this.flags, S_STATE, CANCELLED);
    this.ring();
    if (this.worker) {
      void this.worker.terminate();
      this.worker = undefined;
      if (rewarm) setImmediate(warmMeasureThread);
    }
  }

  private ring(): void {
    Atomics.add(this.flags, S_BELL, 1);
    Atomics.notify(this.flags, S_BELL);
  }

  private measureHere(): Uint8Array {
    const h = createHash("sha256");
    for (const b of this.buffers) h.update(new Uint8Array(b));
    return new Uint8Array(h.digest());
  }
}
