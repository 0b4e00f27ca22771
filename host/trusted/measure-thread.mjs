// Trusted: reads plaintext weights in the staging buffers to compute their measurement (SPEC
// §9.1), first-touches those buffers' pages ahead of the main thread so that page faults are
// not paid on the thread that decrypts, and wipes them once the session is built. A thread is
// started ahead of time and serves exactly one job (one weights load); it exits after the wipe,
// or when the load is cancelled, which also drops its references to the staging memory.
// host/trusted/measure.ts is the other side and documents the protocol. Plain JavaScript so
// that it starts without a TypeScript loader.
import { createHash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { wipeShared } from "./wipe-shared.mjs";

const PAGE = 4096;
// Layout shared with measure.ts: Int32 [state, bell], BigInt64 [_, written, hashed].
const S_STATE = 0, S_BELL = 1, O_WRITTEN = 1, O_HASHED = 2;
const RUNNING = 0, DONE = 1, FAILED = 3;
const R_FREE = 0, R_TOUCHING = 1, R_READY = 2;

parentPort.once("message", (job) => {
  try {
    if (measure(job)) {
      // The staging holds plaintext until ONNX Runtime has its copy; then the main thread
      // sends the bytes to wipe per buffer ({ wipe }) and goes on (a cancel terminates us).
      parentPort.once("message", (m) => {
        wipeShared(job.buffers, m.wipe);
        parentPort.postMessage("wiped");
        parentPort.close();
      });
      return;
    }
  } catch {
    // Say so at once: the main thread may be blocked waiting for us.
    const flags = new Int32Array(job.control, 0, 2);
    Atomics.store(flags, S_STATE, FAILED);
    Atomics.notify(flags, S_STATE);
    Atomics.add(flags, S_BELL, 1);
    const regions = new Int32Array(job.regions);
    for (let r = 0; r < regions.length; r++) Atomics.notify(regions, r);
  }
  parentPort.close(); // nothing keeps the thread alive now: it exits
});

/** True once the measurement is written; false if the load was cancelled. */
function measure(job) {
  const { region: REGION, lookahead: LOOKAHEAD } = job;
  const flags = new Int32Array(job.control, 0, 2);
  const offsets = new BigInt64Array(job.control);
  const regions = new Int32Array(job.regions);
  const files = job.buffers.map((b) => new Uint8Array(b));
  const total = files.reduce((a, f) => a + f.length, 0);
  const hash = createHash("sha256");
  let hashed = 0;
  let nextRegion = 0;

  /** Calls f(buffer, start, end) for each staging buffer's part of stream range [from, to). */
  const forEachSpan = (from, to, f) => {
    let base = 0;
    for (const buf of files) {
      const a = Math.max(from, base), b = Math.min(to, base + buf.length);
      if (a < b) f(buf, a - base, b - base);
      base += buf.length;
      if (base >= to) break;
    }
  };

  /** Touches the next free region within LOOKAHEAD of what the main thread has written. */
  const touchAhead = (written) => {
    while (nextRegion < regions.length && nextRegion * REGION < written + LOOKAHEAD) {
      const r = nextRegion++;
      if (Atomics.compareExchange(regions, r, R_FREE, R_TOUCHING) !== R_FREE) continue; // the main thread took it
      forEachSpan(r * REGION, Math.min(total, (r + 1) * REGION), (buf, from, to) => {
        for (let o = from; o < to; o += PAGE) buf[o] = 0; // untouched pages hold zeros
      });
      Atomics.store(regions, r, R_READY);
      Atomics.notify(regions, r);
      return true;
    }
    return false;
  };

  for (;;) {
    if (Atomics.load(flags, S_STATE) !== RUNNING) return false; // cancelled
    const ring = Atomics.load(flags, S_BELL);
    const written = Number(Atomics.load(offsets, O_WRITTEN));
    if (touchAhead(written)) continue;
    if (hashed < written) {
      const to = Math.min(written, hashed + 4 * REGION);
      forEachSpan(hashed, to, (buf, a, b) => hash.update(buf.subarray(a, b)));
      hashed = to;
      Atomics.store(offsets, O_HASHED, BigInt(hashed));
      continue;
    }
    if (hashed === total) {
      new Uint8Array(job.digest).set(hash.digest());
      Atomics.store(flags, S_STATE, DONE);
      Atomics.notify(flags, S_STATE);
      return true;
    }
    // Sleep until the main thread rings (new data or a cancel); the timeout only bounds a missed ring.
    Atomics.wait(flags, S_BELL, ring, 50);
  }
}
