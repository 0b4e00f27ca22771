// The client SDK's sessions (SPEC §8.5) against the fake server over real loaders: the first
// request to a worker and program is one-shot HPKE, the second opens a session there once, and it
// and later requests are sealed under it; a loader that forgot the
// session (SESSION_UNKNOWN) is met with a transparent re-open; streams in a session; a server
// without the session route gets every request sealed with HPKE as before.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { connect, type Client, type ConnectOptions } from "../../host/client/index.ts";
import { COMPLETION, FakeVeilServer, MEASUREMENT, PIECES, PROMPT, WORKER_CODE_HASH } from "./fake-server.ts";

let s: FakeVeilServer;
const infos: string[] = [];
const logger = { warn: () => undefined, info: (m: string) => void infos.push(m) };

beforeAll(async () => {
  s = await FakeVeilServer.start([{ id: "w0" }, { id: "w1" }]);
});
afterAll(async () => {
  await s?.close();
});
beforeEach(() => {
  s.reset();
  s.sessions = true;
  infos.length = 0;
});

const open = (o: Partial<ConnectOptions> = {}): Promise<Client> =>
  connect({
    url: s.url,
    policy: { trustedPlatformKeys: [s.attester.publicKey], acceptedMeasurements: [MEASUREMENT], acceptedWorkerCodeHashes: [WORKER_CODE_HASH] },
    trustConfig: s.trustConfig,
    logger,
    retry: { baseDelayMs: 5 },
    ...o,
  });

const x = (v: number[]): F.Tensor[] => [F.tensorFromArray("x", 1, [v.length], new Float32Array(v))];
const floats = (t: F.Tensor): number[] => Array.from(new Float32Array(t.data.slice().buffer));
const posts = () => s.hits.filter((h) => h.method === "POST").map((h) => [h.path.replace("/v1/programs/", ""), h.worker, h.status]);

describe("client sessions (SPEC §8.5)", () => {
  it("a first request is one-shot; the second to the same worker opens its session, later ones use it", async () => {
    const c = await open();
    for (let i = 0; i < 8; i++) expect(floats((await c.infer("echo", x([i, 0.5])))[0])).toEqual([i, 0.5]);
    // What the server was sent: §8.1 requests first, SessionRequests (§8.5.2) once a session exists.
    expect(s.hits.filter((h) => h.path.endsWith("/infer")).map((h) => h.sessionRequest)).toEqual([false, false, true, true, true, true, true, true]);
    expect(posts()).toEqual([
      ["echo/infer", "w0", 200],
      ["echo/infer", "w1", 200],
      ["echo/session", "w0", 200],
      ["echo/infer", "w0", 200],
      ["echo/session", "w1", 200],
      ["echo/infer", "w1", 200],
      ["echo/infer", "w0", 200],
      ["echo/infer", "w1", 200],
      ["echo/infer", "w0", 200],
      ["echo/infer", "w1", 200],
    ]);
  });

  it("concurrent requests share the one session being opened, and arrive in any order", async () => {
    const c = await open();
    const ys = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((v) => c.infer("echo", x([v]))));
    expect(ys.map((y) => floats(y[0])[0])).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(s.count("/v1/programs/echo/session", "POST")).toBe(2);
  });

  it("re-opens transparently when the loader no longer knows the session (evicted)", async () => {
    const c = await open();
    for (let i = 0; i < 4; i++) await c.infer("echo", x([i])); // sessions open on w0 and w1
    // Fill w0's session table with other sessions: the client's is the least recently used and goes.
    const w0 = s.worker("w0");
    const h = w0.handles.get("echo")!;
    const digest = s.programs.find((p) => p.name === "echo")!.digest;
    for (let i = 0; i < F.LIMITS.SESSIONS_MAX; i++) {
      const o = F.openSession({ loader: w0.report, programDigest: digest });
      o.accept(w0.L.sessionOpen(h, o.bytes));
    }
    s.hits.length = 0;
    expect(floats((await c.infer("echo", x([3])))[0])).toEqual([3]); // refused at w0, sent again (round robin: w1)
    expect(floats((await c.infer("echo", x([4])))[0])).toEqual([4]); // w0 again: a new session
    expect(posts()).toEqual([
      ["echo/infer", "w0", 400],
      ["echo/infer", "w1", 200],
      ["echo/session", "w0", 200],
      ["echo/infer", "w0", 200],
    ]);
    expect(infos.some((m) => /no longer knows the session/.test(m))).toBe(true);
  });

  it("after a worker restart (new loader key) the client re-attests and drops the dead sessions", async () => {
    const c = await open();
    for (let i = 0; i < 4; i++) await c.infer("echo", x([i]));
    s.workers.forEach((w) => w.boot());
    s.hits.length = 0;
    for (let i = 0; i < 4; i++) expect(floats((await c.infer("echo", x([i])))[0])).toEqual([i]);
    const p = posts();
    expect(p[0]).toEqual(["echo/infer", "w0", 400]); // the old session's key id is gone
    expect(s.count("/v1/attestation")).toBeGreaterThanOrEqual(1);
    expect(p.slice(1).filter((x) => x[2] !== 200)).toEqual([]);
    expect(p.filter((x) => x[0] === "echo/session").length).toBeGreaterThanOrEqual(1); // new sessions on the new keys
  });

  it("streams a generate program in a session: no response nonce, the same pieces", async () => {
    const c = await open();
    for (let round = 0; round < 4; round++) {
      const got: string[] = [];
      const it = c.stream("tiny-lm", PROMPT);
      for await (const piece of it) got.push(piece);
      expect(got).toEqual(PIECES);
    }
    expect((await c.infer("tiny-lm", PROMPT)).text).toBe(COMPLETION);
    expect(s.count(/\/session$/, "POST")).toBe(2);
  });

  it("a server without sessions: one refused session-open per worker, then HPKE per request", async () => {
    s.sessions = false;
    const c = await open();
    for (let i = 0; i < 6; i++) await c.infer("echo", x([i]));
    expect(posts()).toEqual([
      ["echo/infer", "w0", 200],
      ["echo/infer", "w1", 200],
      ["echo/session", "w0", 404],
      ["echo/infer", "w0", 200],
      ["echo/session", "w1", 404],
      ["echo/infer", "w1", 200],
      ["echo/infer", "w0", 200],
      ["echo/infer", "w1", 200],
    ]);
  });

  it("sessions: false seals every request with its own HPKE exchange", async () => {
    const c = await open({ sessions: false });
    for (let i = 0; i < 4; i++) await c.infer("echo", x([i]));
    expect(s.count(/\/session$/, "POST")).toBe(0);
  });
});
