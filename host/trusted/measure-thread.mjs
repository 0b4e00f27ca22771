// Trusted: reads plaintext weights in the staging buffers to compute their measurement (SPEC
// §9.1), and first-touches those buffers' pages ahead of the main thread so that page faults
// are not paid on the thread that decrypts. Runs as a worker thread of the trusted worker;
// host/trusted/measure.ts is the other side and documents the protocol. Plain JavaScript so
// that it starts without a TypeScript loader.
import { createHash } from "node:crypto";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";

// Layout shared with measure.ts.
const REGION = workerData.region;
const PAGE = 4096;
const LOOKAHEAD = workerData.lookahead;
const F_STATE = 0; // Int32 index: 0 running, 1 done, 2 cancelled
const O_WRITTEN = 1, O_HASHED = 2; // BigInt64 indices (8-byte slots; slot 0 holds the Int32 flags)
const R_FREE = 0, R_TOUCHING = 1, R_READY = 2;

const bell = new Int32Array(workerData.bell);
/** @type {Job[]} */
let jobs = [];

class Job {
  constructor(m) {
    this.flags = new Int32Array(m.control, 0, 2);
    this.offsets = new BigInt64Array(m.control);
    this.digest = new Uint8Array(m.digest);
    this.regions = new Int32Array(m.regions);
    this.files = m.buffers.map((b) => new Uint8Array(b));
    this.total = this.files.reduce((a, f) => a + f.length, 0);
    this.hash = createHash("sha256");
    this.hashed = 0;
    this.nextRegion = 0;
  }

  /** One bounded piece of work; false when there is none now. */
  step() {
    if (Atomics.load(this.flags, F_STATE) !== 0) return this.finish(false);
    const written = Number(Atomics.load(this.offsets, O_WRITTEN));
    if (this.touchAhead(written)) return true;
    if (this.hashed < written) {
      this.hashRange(this.hashed, Math.min(written, this.hashed + 4 * REGION));
      return true;
    }
    if (this.hashed === this.total) return this.finish(true);
    return false;
  }

  /** Touches the next free region within LOOKAHEAD of what the main thread has written. */
  touchAhead(written) {
    while (this.nextRegion < this.regions.length && this.nextRegion * REGION < written + LOOKAHEAD) {
      const r = this.nextRegion++;
      if (Atomics.compareExchange(this.regions, r, R_FREE, R_TOUCHING) !== R_FREE) continue; // the main thread took it
      this.forEachSpan(r * REGION, Math.min(this.total, (r + 1) * REGION), (buf, from, to) => {
        for (let o = from; o < to; o += PAGE) buf[o] = 0; // untouched pages hold zeros
      });
      Atomics.store(this.regions, r, R_READY);
      Atomics.notify(this.regions, r);
      return true;
    }
    return false;
  }

  hashRange(from, to) {
    this.forEachSpan(from, to, (buf, a, b) => this.hash.update(buf.subarray(a, b)));
    this.hashed = to;
    Atomics.store(this.offsets, O_HASHED, BigInt(to));
  }

  /** Calls f(buffer, start, end) for each staging buffer's part of stream range [from, to). */
  forEachSpan(from, to, f) {
    let base = 0;
    for (const buf of this.files) {
      const a = Math.max(from, base), b = Math.min(to, base + buf.length);
      if (a < b) f(buf, a - base, b - base);
      base += buf.length;
      if (base >= to) break;
    }
  }

  finish(complete) {
    if (complete) {
      this.digest.set(this.hash.digest());
      Atomics.store(this.flags, F_STATE, 1);
      Atomics.notify(this.flags, F_STATE);
    }
    this.done = true;
    return true;
  }
}

for (;;) {
  const ring = Atomics.load(bell, 0);
  for (let m = receiveMessageOnPort(parentPort); m; m = receiveMessageOnPort(parentPort)) {
    if (m.message.op === "close") process.exit(0);
    if (m.message.op === "job") jobs.push(new Job(m.message));
  }
  let busy = false;
  for (const j of jobs) busy = j.step() || busy;
  jobs = jobs.filter((j) => !j.done);
  // Sleep until the main thread rings (new data, a new job, a cancel); the timeout only bounds a missed ring.
  if (!busy) Atomics.wait(bell, 0, ring, 50);
}
