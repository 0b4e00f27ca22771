// The accelerator's weights measurement (SPEC §9.1) on its second thread: whatever the order
// in which the thread and the main thread reach the staging pages, the measurement is SHA-256
// of exactly the bytes written, checked against node:crypto on the same bytes; two programs
// loading at once do not mix; released, the thread wipes the staging and exits (or, if it is
// gone, release wipes here); a cancelled job's thread exits; without a thread it measures
// locally.
import { createHash, randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MeasureJob, REGION } from "../../host/trusted/measure.ts";

const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

/** Writes `data` into the job's buffers in pieces of the given sizes, the way uploadWeights does. */
function stage(sizes: number[], data: Uint8Array, pieces: number[]) {
  const buffers = sizes.map((n) => new SharedArrayBuffer(n));
  const views = buffers.map((b) => new Uint8Array(b));
  const job = new MeasureJob(buffers);
  let at = 0;
  let k = 0;
  const write = () => {
    const end = Math.min(data.length, at + pieces[k++ % pieces.length]);
    job.claim(at, end);
    let base = 0;
    for (const v of views) {
      const a = Math.max(at, base), b = Math.min(end, base + v.length);
      if (a < b) v.set(data.subarray(a, b), a - base);
      base += v.length;
    }
    at = end;
    job.published(at);
  };
  return { job, views, write, done: () => at >= data.length };
}

describe("MeasureThread (SPEC §9.1)", () => {
  it("measures SHA-256 of exactly the staged bytes, across files and regions, for any piece sizes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 3 * REGION }), { minLength: 1, maxLength: 4 }),
        fc.array(fc.integer({ min: 1, max: 2 * REGION }), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        async (sizes, pieces, pause) => {
          const total = sizes.reduce((a, b) => a + b, 0);
          const data = new Uint8Array(randomBytes(total));
          const s = stage(sizes, data, pieces);
          while (!s.done()) {
            s.write();
            if (pause) await new Promise((r) => setImmediate(r)); // let the thread get ahead
          }
          expect(Buffer.from(s.job.result())).toEqual(Buffer.from(sha256(data)));
          // The staging holds exactly the data: the thread's page touches wrote over nothing.
          let base = 0;
          for (const v of s.views) {
            expect(Buffer.from(v).equals(Buffer.from(data.subarray(base, base + v.length)))).toBe(true);
            base += v.length;
          }
          // Released, the thread wipes every byte written, in every file, and exits.
          await s.job.release(sizes);
          expect(s.views.every((v) => v.every((x) => x === 0))).toBe(true);
        },
      ),
      { numRuns: 12 },
    );
  });

  it("keeps two jobs written in turns apart", async () => {
    const a = new Uint8Array(randomBytes(5 * REGION + 123));
    const b = new Uint8Array(randomBytes(3 * REGION + 7));
    const sa = stage([a.length], a, [REGION / 2]);
    const sb = stage([1000, b.length - 1000], b, [Math.floor(REGION / 3)]);
    while (!sa.done() || !sb.done()) {
      if (!sa.done()) sa.write();
      if (!sb.done()) sb.write();
    }
    expect(sa.job.result()).toEqual(sha256(a));
    expect(sb.job.result()).toEqual(sha256(b));
    await Promise.all([sa.job.release([a.length]), sb.job.release([1000, b.length - 1000])]);
  });

  it("an empty stream measures SHA-256 of nothing", async () => {
    const job = new MeasureJob([new SharedArrayBuffer(0)]);
    expect(job.result()).toEqual(sha256(new Uint8Array(0)));
    await job.release([0]);
  });

  it("a cancelled job's thread exits; a job after it measures as usual", async () => {
    const a = new Uint8Array(randomBytes(2 * REGION));
    const s = stage([a.length], a, [REGION]);
    s.write();
    const worker = (s.job as unknown as { worker: import("node:worker_threads").Worker }).worker;
    const exited = new Promise((r) => worker.once("exit", r));
    s.job.cancel();
    await exited;
    const b = new Uint8Array(randomBytes(REGION + 5));
    const t = stage([b.length], b, [4096]);
    while (!t.done()) t.write();
    expect(t.job.result()).toEqual(sha256(b));
    await t.job.release([b.length]);
  });

  it("a finished job's thread waits to wipe; released, it wipes only the bytes named, then exits", async () => {
    const a = new Uint8Array(randomBytes(REGION + 1));
    const s = stage([a.length], a, [REGION]);
    const worker = (s.job as unknown as { worker: import("node:worker_threads").Worker }).worker;
    let gone = false;
    const exited = new Promise<number>((r) => worker.once("exit", (code) => r(((gone = true), code))));
    while (!s.done()) s.write();
    expect(s.job.result()).toEqual(sha256(a));
    await new Promise((r) => setTimeout(r, 50));
    expect(gone).toBe(false); // it holds the staging until told what to wipe
    s.views[0][REGION] = 0xaa; // stands for a byte past what was written: not ours to wipe
    await s.job.release([REGION]);
    expect(await exited).toBe(0);
    expect(s.views[0].subarray(0, REGION).every((x) => x === 0)).toBe(true);
    expect(s.views[0][REGION]).toBe(0xaa);
  });

  it("if the thread is gone before release, release wipes on the calling thread", async () => {
    const a = new Uint8Array(randomBytes(2 * REGION + 3));
    const s = stage([REGION, a.length - REGION], a, [REGION]);
    const worker = (s.job as unknown as { worker: import("node:worker_threads").Worker }).worker;
    while (!s.done()) s.write();
    expect(s.job.result()).toEqual(sha256(a));
    await worker.terminate();
    await s.job.release([REGION, a.length - REGION]);
    expect(s.views.every((v) => v.every((x) => x === 0))).toBe(true);
  });

  it("without a thread, a job measures on the calling thread", () => {
    const data = new Uint8Array(randomBytes(REGION + 9));
    const buffers = [new SharedArrayBuffer(data.length)];
    const job = new MeasureJob(buffers, { thread: false });
    expect(job.local).toBe(true);
    job.claim(0, data.length);
    new Uint8Array(buffers[0]).set(data);
    job.published(data.length);
    expect(job.result()).toEqual(sha256(data));
  });
});
