// Crash recovery and key-broker outages, with real worker processes and a real broker over HTTP.
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerClient, startBrokerServer, type BrokerServer } from "../../host/broker/index.ts";
import * as F from "../../host/formats/index.ts";
import type { VeilServer } from "../../host/server/index.ts";
import type { WorkerClient } from "../../host/worker/client.ts";
import { attest, fixture, generateRequest, infer, post, serve, sleep, tensorRequest, until, type Fixture } from "./helpers.ts";

let fx: Fixture;
beforeAll(async () => {
  fx = await fixture({ programs: ["slow", "lm"] });
});
afterAll(() => fx?.cleanup());

const metric = async (url: string, re: RegExp): Promise<number> => {
  const m = (await (await fetch(`${url}/metrics`)).text()).match(re);
  return m ? Number(m[1]) : 0;
};

describe("a worker killed mid-request", () => {
  let srv: VeilServer;
  afterAll(() => srv?.close());

  it("fails the request at once with a retryable 503; the worker restarts, is re-attested by the broker, and serves the next request", async () => {
    srv = await serve(fx, { workers: 2 });
    const before = await attest(srv.url, fx);
    const w0 = before.find((w) => w.id === "w0")!;
    const oldPid = srv.pool.slots[0].pid!;
    const releasesBefore = await metric(srv.url, /veil_broker_calls_total\{op="release",outcome="ok"\} (\d+)/);
    expect(releasesBefore).toBe(2);

    const slow = F.sealRequest({ loader: { keyId: w0.loader.keyId, publicKey: w0.loader.hpkePublicKey }, programDigest: fx.programs.slow.manifest.digest, request: tensorRequest("x", [4096, 256], new Float32Array(4096 * 256)) });
    const pending = post(`${srv.url}/v1/programs/slow/infer?worker=w0`, slow.bytes);
    await until(() => srv.pool.slots[0].active === 1, 10_000, "the request to reach w0");
    const t0 = Date.now();
    process.kill(oldPid, "SIGKILL");
    const r = await pending;
    expect(Date.now() - t0).toBeLessThan(5_000); // promptly, not at a deadline
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ code: "SERVER_WORKER_RESTARTING", retryable: true });
    expect(r.headers.get("retry-after")).toMatch(/^\d+$/);

    // While it restarts: requests to it are 503 too (not a hang), the other worker keeps serving.
    const w1 = before.find((w) => w.id === "w1")!;
    const other = await infer(srv.url, w1, fx.programs.lm, generateRequest("still here", 3));
    expect(other.status).toBe(200);

    await until(async () => (await fetch(`${srv.url}/readyz`)).status === 200, 30_000, "w0 to be ready again");
    const newPid = srv.pool.slots[0].pid!;
    expect(newPid).not.toBe(oldPid);
    expect(await metric(srv.url, /veil_worker_restarts_total\{worker="w0"\} (\d+)/)).toBe(1);
    expect(await metric(srv.url, /veil_broker_calls_total\{op="release",outcome="ok"\} (\d+)/)).toBe(releasesBefore + 1); // re-attested by the broker

    // A request sealed to the old loader key: KEY_ID, whether routed by key id or by name.
    const stale = F.sealRequest({ loader: { keyId: w0.loader.keyId, publicKey: w0.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest, request: generateRequest("old key", 2) });
    const byName = await post(`${srv.url}/v1/programs/lm/infer?worker=w0`, stale.bytes);
    expect(byName.status).toBe(400);
    expect(byName.json?.code).toMatch(/^(KEY_ID|REQUEST_AUTH)$/); // 1 in 256: the new key shares the old key id
    // The client attests again and is served by the restarted worker.
    const after = await attest(srv.url, fx);
    const n0 = after.find((w) => w.id === "w0")!;
    expect(Buffer.from(n0.loader.hpkePublicKey).equals(Buffer.from(w0.loader.hpkePublicKey))).toBe(false);
    const ok = await infer(srv.url, n0, fx.programs.lm, generateRequest("new key", 4));
    expect(ok.status).toBe(200);
    expect(ok.sealed.response.openResponse(ok.body)).toMatchObject({ kind: 2, tokens: 4 });
  });
});

describe("the key broker down", () => {
  const quiet = pino({ level: "silent" });

  function countingClient(url: string) {
    const calls = { n: 0 };
    const client = new BrokerClient(url, {
      timeoutMs: 2000,
      retryDelayMs: 100,
      fetch: (input, init) => {
        calls.n++;
        return fetch(input, init);
      },
    });
    return { client, calls };
  }

  it("at startup: one clear error naming the broker and the cause, a bounded number of broker calls, no worker left running", async () => {
    const broker = fx.broker();
    const bs = await startBrokerServer({ broker, logger: quiet });
    const url = bs.url;
    await bs.close(); // nothing listens there any more
    const { client, calls } = countingClient(url);
    const spawned: WorkerClient[] = [];
    const t0 = Date.now();
    const err = (await serve(fx, { workers: 2, broker: client, onWorker: (_id, c) => void spawned.push(c) }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/the server cannot start: worker w\d: no nonce from the key broker \(http:\/\/127\.0\.0\.1:\d+\): BROKER_UNAVAILABLE: .*ECONNREFUSED/);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(calls.n).toBeGreaterThanOrEqual(2);
    expect(calls.n).toBeLessThanOrEqual(4); // two workers, one nonce call each, at most one retry each: no storm
    expect(spawned.length).toBe(2);
    await until(() => spawned.every((c) => c.closed), 10_000, "the workers to be gone");
  });

  it("at a restart: the worker stays out of service with the broker's error in readyz, retries with backoff (few calls), and recovers when the broker returns", async () => {
    const broker = fx.broker();
    let bs: BrokerServer = await startBrokerServer({ broker, logger: quiet });
    const port = bs.port;
    const { client, calls } = countingClient(bs.url);
    const srv = await serve(fx, { workers: 1, broker: client, restartDelayMs: { min: 400, max: 4000 } });
    try {
      expect(calls.n).toBe(2); // nonce + release
      await bs.close();
      const before = calls.n;
      process.kill(srv.pool.slots[0].pid!, "SIGKILL");
      await until(() => srv.pool.slots[0].lastError?.includes("BROKER_UNAVAILABLE") === true, 15_000, "the restart to fail on the broker");
      const rz = await fetch(`${srv.url}/readyz`);
      expect(rz.status).toBe(503);
      const body = (await rz.json()) as { workers: { id: string; state: string; lastError?: string }[] };
      expect(body.workers[0]).toMatchObject({ id: "w0", state: "restarting" });
      expect(body.workers[0].lastError).toMatch(/no nonce from the key broker \(http:\/\/127\.0\.0\.1:\d+\): BROKER_UNAVAILABLE/);
      // Requests meanwhile: 503, retryable.
      const r = await post(`${srv.url}/v1/programs/lm/infer?worker=w0`, new Uint8Array(120));
      expect(r.status).toBe(503);
      expect(r.json).toMatchObject({ code: "SERVER_WORKER_RESTARTING", retryable: true });
      // Backoff, not a storm: over ~3 s at most a handful of attempts (each ≤ 2 calls).
      const t = Date.now();
      await sleep(3000);
      const during = calls.n - before;
      expect(during).toBeGreaterThanOrEqual(1);
      expect(during).toBeLessThanOrEqual(10);
      expect(Date.now() - t).toBeLessThan(10_000);
      // The broker comes back on the same address: the worker is re-attested and serves.
      bs = await startBrokerServer({ broker, logger: quiet, port });
      await until(async () => (await fetch(`${srv.url}/readyz`)).status === 200, 30_000, "w0 to recover");
      const [w] = await attest(srv.url, fx);
      const ok = await infer(srv.url, w, fx.programs.lm, generateRequest("back", 2));
      expect(ok.status).toBe(200);
    } finally {
      await srv.close();
      await bs.close();
    }
  });
});
