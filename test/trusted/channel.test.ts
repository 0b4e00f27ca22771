// The worker's channel under stress, against real child processes: malformed and oversize
// frames get error frames while the worker keeps serving, requests are answered one at a time
// in arrival order, a killed worker fails every pending call promptly as retryable, and the
// Unix-socket transport and graceful shutdown work.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { WorkerClient, WorkerError, workerCommand } from "../../host/worker/client.ts";
import {
  FrameDecoder, Reply, Req, concatParts, decodeError, decodeHello, encodeFrame, u32, vec32, type FrameEvent,
} from "../../host/trusted/protocol.ts";
import { makeTrust, tmpDir } from "./helpers.ts";

const tmp = tmpDir("veil-channel-");
afterAll(() => tmp.cleanup());

/** A worker driven with raw bytes: write anything, read reply frames. */
function rawWorker(maxFrame: number) {
  const cmd = workerCommand({ maxFrame, logLevel: "warn" });
  const child = spawn(cmd.command, cmd.args, { cwd: cmd.cwd, stdio: ["pipe", "pipe", "pipe"] });
  const decoder = new FrameDecoder(1 << 20);
  const replies: FrameEvent[] = [];
  const waiters: (() => void)[] = [];
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => void (stderr += d.toString()));
  child.stdout.on("data", (d: Buffer) => {
    replies.push(...decoder.push(new Uint8Array(d)));
    for (const w of waiters.splice(0)) w();
  });
  const until = async (n: number) => {
    while (replies.length < n) await new Promise<void>((r) => waiters.push(r));
    return replies.slice(0, n);
  };
  return { child, write: (b: Uint8Array) => child.stdin.write(b), until, stderr: () => stderr };
}

const frame = (e: FrameEvent) => {
  if (e.kind !== "frame") throw new Error(`not a frame: ${e.kind}`);
  return e;
};

describe("worker channel", () => {
  it("answers malformed, unknown and oversize frames with error frames and keeps serving", async () => {
    const w = rawWorker(4096);
    try {
      w.write(encodeFrame(0x55, 1)); // unknown type
      w.write(encodeFrame(Req.HELLO, 2, [Uint8Array.of(1)])); // trailing payload
      w.write(encodeFrame(Req.LOAD_WEIGHTS, 3, [u32(1), u32(1000), Uint8Array.of(1, 2)])); // vec32 runs past the payload
      w.write(Uint8Array.of(0, 0, 0, 2, 0xee, 0xee)); // length below 5
      w.write(concatParts([encodeFrame(Req.LOAD_PROGRAM, 4, [new Uint8Array(10_000)])])); // over the 4096-byte bound
      w.write(encodeFrame(Req.INIT, 5, [...vec32(Uint8Array.of(1, 2, 3)), ...vec32(new Uint8Array(32))])); // the loader's refusal
      const hello = encodeFrame(Req.HELLO, 6);
      for (const b of hello) w.write(Uint8Array.of(b)); // one byte at a time
      w.write(encodeFrame(Req.INFER_NEXT, 7, [u32(99)]));
      const r = (await w.until(8)).map(frame);
      expect(r.map((f) => [f.id, f.type])).toEqual([
        [1, Reply.WORKER_ERROR], [2, Reply.WORKER_ERROR], [3, Reply.WORKER_ERROR], [0, Reply.WORKER_ERROR],
        [4, Reply.WORKER_ERROR], [5, Reply.LOADER_ERROR], [6, Reply.OK], [7, Reply.LOADER_ERROR],
      ]);
      expect(r.slice(0, 5).map((f) => decodeError(f.payload).code)).toEqual([2, 1, 1, 1, 3]); // UNKNOWN_TYPE, BAD_FRAME ×3, FRAME_TOO_LARGE
      expect(decodeError(r[1].payload).message).toMatch(/hello: 1 bytes after the last field/);
      expect(decodeError(r[4].payload).message).toMatch(/10005 bytes is over the 4096-byte bound/);
      expect(decodeError(r[5].payload).code & 0xffff).toBe(1); // TRUNCATED trust config
      expect(decodeHello(r[6].payload).protocol).toBe(1);
      expect(w.child.exitCode).toBeNull();
      // stderr stays JSON lines
      for (const line of w.stderr().trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
    } finally {
      w.child.kill("SIGKILL");
    }
  });

  it("answers everything sent before the parent closed its end, then exits cleanly", async () => {
    const w = rawWorker(1 << 20);
    w.write(encodeFrame(Req.HELLO, 1));
    w.write(encodeFrame(Req.ATTEST, 2, vec32(new Uint8Array(32)))); // before init: the loader's STATE
    w.write(encodeFrame(Req.HELLO, 3));
    w.child.stdin.end();
    const r = (await w.until(3)).map(frame);
    expect(r.map((f) => [f.id, f.type])).toEqual([[1, Reply.OK], [2, Reply.LOADER_ERROR], [3, Reply.OK]]);
    expect(decodeError(r[1].payload).code & 0xffff).toBe(16);
    const code = await new Promise((res) => (w.child.exitCode !== null ? res(w.child.exitCode) : w.child.on("exit", res)));
    expect(code).toBe(0);
  });

  it("runs requests one at a time and answers in arrival order", async () => {
    const c = WorkerClient.spawn({ logLevel: "warn" });
    try {
      const trust = makeTrust();
      const nonces = Array.from({ length: 24 }, () => new Uint8Array(randomBytes(32)));
      const order: number[] = [];
      const init = c.init(trust.trustConfig, new Uint8Array(32)).then(() => order.push(-1));
      const attests = nonces.map((n, i) => c.attest(n).then((rb) => { order.push(i); return rb; }));
      await init;
      const reports = await Promise.all(attests);
      expect(order).toEqual([-1, ...nonces.map((_, i) => i)]);
      reports.forEach((rb, i) => expect(Buffer.from(rb.subarray(73, 105)).equals(Buffer.from(nonces[i]))).toBe(true));
    } finally {
      await c.close();
    }
  });

  it("a killed worker rejects every pending call promptly, as retryable, and later calls at once", async () => {
    const c = WorkerClient.spawn({ logLevel: "quiet" });
    await c.hello();
    // A 40 MiB load-program in flight, and more queued behind it.
    const graph = new Uint8Array(40 << 20);
    const calls = [c.loadProgram(new Uint8Array(100), new Uint8Array(100), graph), c.hello(), c.attest(new Uint8Array(32))];
    const settled = Promise.allSettled(calls);
    const t0 = Date.now();
    c.kill("SIGKILL");
    const results = await settled;
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeLessThan(2000);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      const e = (r as PromiseRejectedResult).reason as WorkerError;
      expect(e).toBeInstanceOf(WorkerError);
      expect(e).toMatchObject({ kind: "exited", codeName: "EXITED", retryable: true });
      expect(e.message).toMatch(/retried on a new worker/);
    }
    expect(await c.exited).toMatchObject({ signal: "SIGKILL" });
    const late = await c.hello().then(() => undefined, (e: unknown) => e);
    expect(late).toMatchObject({ kind: "exited", retryable: true });
  });

  it("serves a Unix socket when asked, and shuts down gracefully on request", async () => {
    const path = join(tmp.dir, "worker.sock");
    const parent = WorkerClient.spawn({ socketPath: path, logLevel: "warn" });
    try {
      for (let i = 0; i < 100 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 50));
      const c = await WorkerClient.connect(path);
      const h = await c.hello();
      expect(h.info.transport).toBe("unix");
      expect(h.measurement.length).toBe(32);
      await c.close();
      expect(await parent.exited).toMatchObject({ code: 0 });
      expect(existsSync(path)).toBe(false);
    } finally {
      parent.kill();
    }
  });

  it("refuses a frame over the bound locally, without sending it", async () => {
    const c = WorkerClient.spawn({ maxFrame: 1 << 16, logLevel: "quiet" });
    try {
      const e = await c.loadProgram(new Uint8Array(10), new Uint8Array(10), new Uint8Array(1 << 17)).then(() => undefined, (x: unknown) => x);
      expect(e).toMatchObject({ kind: "worker", codeName: "FRAME_TOO_LARGE" });
      expect((await c.hello()).info.maxFrame).toBe(1 << 16);
    } finally {
      expect(await c.close()).toMatchObject({ code: 0 });
    }
  });

  it("spawns another entry (a benchmark baseline) with the worker's own node flags, and frames it the same way", async () => {
    const worker = workerCommand({ logLevel: "warn" });
    const other = workerCommand({ logLevel: "warn", entry: "bench/lib/plain-run-child.ts" });
    expect(other.args.filter((a) => !a.endsWith(".ts"))).toEqual(worker.args.filter((a) => !a.endsWith(".ts")));
    expect(other.args).toContain(join(other.cwd, "bench/lib/plain-run-child.ts"));
    expect(other.args).not.toContain(worker.args.find((a) => a.endsWith("worker.ts")));
    // bench:infer's process floor answers over the worker's framing: a refusal before a load, then close().
    const c = WorkerClient.spawn({ entry: "bench/lib/plain-run-child.ts" });
    try {
      const e = await c.request(0x71, [new Uint8Array(4)]).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(WorkerError);
      expect(String((e as Error).message)).toMatch(/no op 0x71 before a load/);
    } finally {
      expect(await c.close()).toMatchObject({ code: 0 });
    }
  });
});
