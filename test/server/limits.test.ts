// Backpressure, deadlines and graceful shutdown, with real workers and a deliberately slow program
// (64 MatMul layers, or 512 for the deadline test; the batch sets the cost). No timing assertions
// beyond generous bounds.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import type { VeilServer } from "../../host/server/index.ts";
import { attest, fixture, generateRequest, infer, post, serve, slowModel, tensorRequest, until, writeProgram, type Fixture } from "./helpers.ts";

let fx: Fixture;
// The deadline test's program: 8 times the layers of "slow", so that one request at the largest
// batch runs for seconds — several times the deadline — however fast or loaded the machine is.
const SLOWER_LAYERS = 512;
beforeAll(async () => {
  fx = await fixture({ programs: ["slow", "lm"] });
  fx.programs.slower = await writeProgram(fx.modelsDir, fx.trust, fx.key, { name: "slower", ...slowModel(SLOWER_LAYERS) });
});
afterAll(() => fx?.cleanup());

const slowInput = (batch: number) => tensorRequest("x", [batch, 256], new Float32Array(batch * 256).fill(0.01));

async function sealedSlow(url: string, batch: number) {
  const [w] = await attest(url, fx);
  return { w, seal: () => F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.slow.manifest.digest, request: slowInput(batch) }) };
}

describe("backpressure", () => {
  let srv: VeilServer;
  afterAll(() => srv?.close());

  it("queue size 1: slow requests beyond in-flight + queue are refused at once with 503, Retry-After and a retryable code", async () => {
    srv = await serve(fx, { workers: 1, queue: 1, inFlight: 1 });
    const { w, seal } = await sealedSlow(srv.url, 2048);
    const reqs = Array.from({ length: 6 }, () => seal());
    const t0 = Date.now();
    const answers = await Promise.all(reqs.map((r) => post(`${srv.url}/v1/programs/slow/infer?worker=${w.id}`, r.bytes)));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(2); // one running, one queued
    const refused = answers.filter((a) => a.status === 503);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const r of refused) {
      expect(r.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(r.json).toMatchObject({ code: "SERVER_QUEUE_FULL", number: 0, field: null, retryable: true });
    }
    answers.forEach((a, i) => {
      if (a.status === 200) expect(reqs[i].response.openResponse(a.body).kind).toBe(1);
    });
    expect(Date.now() - t0).toBeLessThan(60_000);
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    expect(m).toMatch(/veil_requests_total\{route="\/v1\/programs\/:name\/infer",outcome="unavailable",code="SERVER_QUEUE_FULL"\} [1-9]/);
  });
});

describe("deadlines", () => {
  let srv: VeilServer;
  afterAll(() => srv?.close());

  it("a request running past the deadline, and one queued behind it, get 504; the worker then serves again", async () => {
    // The deadline is a second; the running request takes several (SLOWER_LAYERS at batch 4096),
    // and a loaded machine only makes it slower. The queued request is one the worker would
    // answer 200 if it ever ran (a generate request on /stream), so only the deadline can make it
    // fail, and it is sent once the slow one is running in the worker: no race on which runs first.
    const deadlineMs = 1000;
    srv = await serve(fx, { workers: 1, queue: 4, inFlight: 1, deadlineMs });
    const [w] = await attest(srv.url, fx);
    const slot = srv.pool.slots[0];
    const seal = (program: "slower" | "lm", request: F.InnerRequest) =>
      F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs[program].manifest.digest, request });
    const a = seal("slower", slowInput(4096));
    const b = seal("lm", generateRequest("queued", 2));
    const t0 = Date.now();
    const pa = post(`${srv.url}/v1/programs/slower/infer?worker=${w.id}`, a.bytes);
    await until(() => slot.active === 1, 10_000, "the slow request to reach the worker");
    const rb = await post(`${srv.url}/v1/programs/lm/stream?worker=${w.id}`, b.bytes); // queued behind a: 504 before any header
    const ra = await pa;
    // Still running when b's deadline passed: the worker was busy with a all along.
    expect(slot.active, "the slow request finished before the queued one's deadline: make it slower").toBe(1);
    for (const [what, r] of [["the running request", ra], ["the queued stream", rb]] as const) {
      expect(r.status, `${what}: HTTP ${r.status} ${r.json ? JSON.stringify(r.json) : `(${r.body.length} bytes)`}`).toBe(504);
      expect(r.json).toMatchObject({ code: "SERVER_DEADLINE", retryable: true });
      expect(r.headers.get("retry-after")).toMatch(/^\d+$/);
    }
    expect(Date.now() - t0).toBeLessThan(30_000);
    // The abandoned request finishes inside the worker; after that the worker answers in time again.
    await until(async () => {
      const [x] = await attest(srv.url, fx);
      const r = await infer(srv.url, x, fx.programs.lm, generateRequest("ok", 2));
      return r.status === 200;
    }, 100_000, "the worker to serve again");
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    expect(m).toMatch(/veil_requests_total\{route="\/v1\/programs\/:name\/infer",outcome="timeout",code="SERVER_DEADLINE"\} 1\b/);
    expect(m).toMatch(/veil_requests_total\{route="\/v1\/programs\/:name\/stream",outcome="timeout",code="SERVER_DEADLINE"\} 1\b/);
  });
});

describe("graceful shutdown", () => {
  it("in-flight requests complete, new ones get 503, readyz turns 503, the workers exit", async () => {
    const srv = await serve(fx, { workers: 1, inFlight: 1 });
    const pid = srv.pool.slots[0].pid!;
    expect(pid).toBeGreaterThan(0);
    const { w, seal } = await sealedSlow(srv.url, 4096);
    const slow = seal();
    const inflight = post(`${srv.url}/v1/programs/slow/infer?worker=${w.id}`, slow.bytes);
    await until(() => srv.pool.slots[0].active === 1, 10_000, "the slow request to reach the worker");
    const closed = srv.close();
    const late = await post(`${srv.url}/v1/programs/lm/infer?worker=${w.id}`, F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest, request: generateRequest("late", 2) }).bytes);
    expect(late.status).toBe(503);
    expect(late.json).toMatchObject({ code: "SERVER_SHUTTING_DOWN", retryable: true });
    expect(late.headers.get("retry-after")).toMatch(/^\d+$/);
    const rz = await fetch(`${srv.url}/readyz`);
    expect(rz.status).toBe(503);
    const done = await inflight;
    expect(done.status).toBe(200);
    expect(slow.response.openResponse(done.body).kind).toBe(1);
    await closed;
    expect(srv.pool.slots[0].state).toBe("stopped");
    await until(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 10_000, "the worker process to exit");
    await expect(fetch(`${srv.url}/healthz`)).rejects.toThrow(); // the listener is closed
  });
});
