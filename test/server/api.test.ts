// The HTTP API end to end, real worker processes on 127.0.0.1: attestation (evidence produced by
// each worker, verified here with the software platform key), programs, infer and stream opened
// with host/formats, 50 concurrent clients each opening only their own answer, routing by key id,
// errors of the contract, health, readiness and metrics.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { decodeEvidence } from "../../host/attest/index.ts";
import type { VeilServer } from "../../host/server/index.ts";
import {
  attest, fixture, generateRequest, hex, infer, mlpModel, post, rand, serve, tensorRequest, text,
  type Attested, type Fixture,
} from "./helpers.ts";

let fx: Fixture;
let srv: VeilServer;
let workers: Attested[];
const mlp = mlpModel();

beforeAll(async () => {
  fx = await fixture({ programs: ["mlp", "lm"] });
  srv = await serve(fx, { workers: 2 });
  workers = await attest(srv.url, fx);
});

afterAll(async () => {
  await srv?.close();
  fx?.cleanup();
});

describe("GET /v1/attestation", () => {
  it("returns evidence from every worker for the client's nonce, verifiable with the software platform key", async () => {
    const nonce = rand(32);
    const res = await fetch(`${srv.url}/v1/attestation?nonce=${Buffer.from(nonce).toString("base64url")}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as { workers: { id: string; evidence: string; programs: string[] }[] };
    expect(body.workers.map((w) => w.id).sort()).toEqual(["w0", "w1"]);
    const keys = new Set<string>();
    for (const w of body.workers) {
      const ev = decodeEvidence(new Uint8Array(Buffer.from(w.evidence, "base64url")));
      // The worker's own measurement and code hash, the nonce echoed in its loader's report.
      expect(hex(ev.measurement)).toBe(hex(fx.measurement));
      expect(hex(ev.workerCodeHash)).toBe(hex(fx.codeHash));
      expect(hex(F.decodeReportBody(ev.report).nonce)).toBe(hex(nonce));
      expect(w.programs.sort()).toEqual(["lm", "mlp"]);
      keys.add(hex(F.decodeReportBody(ev.report).hpkePublicKey));
    }
    expect(keys.size).toBe(2); // one loader key per worker
    // And the full SPEC §4.2 verification passes (helpers.attest runs verifyEvidence with a fresh nonce).
    const again = await attest(srv.url, fx);
    expect(again.map((w) => w.loader.skipped)).toEqual([[], []]);
    expect(again.map((w) => w.loader.platformKey)).toEqual([hex(fx.platformKey), hex(fx.platformKey)]);
  });

  it("refuses a nonce that is not 32 bytes of canonical base64url", async () => {
    for (const q of ["", "?nonce=abc", `?nonce=${Buffer.from(rand(31)).toString("base64url")}`, `?nonce=${Buffer.from(rand(32)).toString("base64")}`]) {
      const res = await fetch(`${srv.url}/v1/attestation${q}`);
      expect(res.status, q).toBe(400);
      expect(await res.json()).toMatchObject({ code: "SERVER_BAD_REQUEST", number: 0, field: null, retryable: false });
    }
  });
});

describe("GET /v1/programs", () => {
  it("lists each program's manifest, signatures, digest, version and workers", async () => {
    const res = await fetch(`${srv.url}/v1/programs`);
    expect(res.status).toBe(200);
    const { programs } = (await res.json()) as { programs: { name: string; version: string; digest: string; manifest: string; signatures: string; workers: string[] }[] };
    expect(programs.map((p) => p.name).sort()).toEqual(["lm", "mlp"]);
    for (const p of programs) {
      const manifest = new Uint8Array(Buffer.from(p.manifest, "base64url"));
      expect(p.digest).toBe(hex(F.programDigest(manifest)));
      expect(p.digest).toBe(hex(fx.programs[p.name].manifest.digest));
      expect(p.version).toBe("1");
      expect(p.workers.sort()).toEqual(["w0", "w1"]);
      // The client checks the reviewer threshold itself: 2 of 3.
      const t = F.checkThreshold(fx.trust.trustConfig, new Uint8Array(Buffer.from(p.signatures, "base64url")), manifest);
      expect(t).toMatchObject({ ok: true, threshold: 2, counted: 2 });
    }
  });
});

describe("infer and stream", () => {
  it("a tensor request on each worker: the response opens and matches across workers", async () => {
    const outs: string[] = [];
    for (const w of workers) {
      const r = await infer(srv.url, w, fx.programs.mlp, tensorRequest("x", [3, 64], mlp.sample(3, 7)));
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe("application/octet-stream");
      const res = r.sealed.response.openResponse(r.body);
      expect(res.kind).toBe(1);
      if (res.kind !== 1) throw new Error("unreachable");
      expect(res.outputs[0].dims).toEqual([3, 16]);
      outs.push(hex(res.outputs[0].data));
    }
    expect(outs[0]).toBe(outs[1]);
  });

  it("a generate request: infer and stream give the same greedy completion; the stream arrives record by record", async () => {
    const w = workers[0];
    const one = await infer(srv.url, w, fx.programs.lm, generateRequest("Hello there", 9));
    expect(one.status).toBe(200);
    const res = one.sealed.response.openResponse(one.body);
    if (res.kind !== 2) throw new Error("not text");
    expect(res.tokens).toBe(9);

    const sealed = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest, request: generateRequest("Hello there", 9) });
    const http = await fetch(`${srv.url}/v1/programs/lm/stream?worker=${w.id}`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: sealed.bytes as Uint8Array<ArrayBuffer> });
    expect(http.status).toBe(200);
    expect(http.headers.get("transfer-encoding")).toBe("chunked");
    const opener = sealed.response.openStream();
    const chunks: F.StreamChunk[] = [];
    let reads = 0;
    for await (const piece of http.body!) {
      reads++;
      chunks.push(...opener.push(new Uint8Array(piece)));
    }
    opener.end();
    expect(reads).toBeGreaterThanOrEqual(1);
    expect(chunks.map((c) => c.tokens)).toEqual([3, 3, 3]);
    expect(chunks.map((c) => text(c.text)).join("")).toBe(text(res.text));
    expect(chunks.at(-1)!.stop).toBe(2);
  });

  it("sessions (SPEC §8.5): session-open, then session requests through /infer and /stream routed by key_id; SESSION_UNKNOWN is a 400", async () => {
    for (const w of workers) {
      const loader = { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey };
      const o = F.openSession({ loader, programDigest: fx.programs.mlp.manifest.digest });
      const opened = await post(`${srv.url}/v1/programs/mlp/session?worker=${w.id}`, o.bytes);
      expect(opened.status).toBe(200);
      const session = o.accept(opened.body);
      const hpke = await infer(srv.url, w, fx.programs.mlp, tensorRequest("x", [2, 64], mlp.sample(2, 11)));
      const want = hpke.sealed.response.openResponse(hpke.body);
      for (let i = 0; i < 3; i++) {
        const req = session.seal(tensorRequest("x", [2, 64], mlp.sample(2, 11)));
        const ambiguous = workers[0].loader.keyId === workers[1].loader.keyId;
        const r = await post(`${srv.url}/v1/programs/mlp/infer${ambiguous ? `?worker=${w.id}` : ""}`, req.bytes);
        expect(r.status).toBe(200);
        const res = req.openResponse(r.body);
        expect(res.kind === 1 && want.kind === 1 && hex(res.outputs[0].data)).toBe(want.kind === 1 && hex(want.outputs[0].data));
      }
      // The other worker's loader does not know this session.
      const other = workers.find((x) => x !== w)!;
      const r = await post(`${srv.url}/v1/programs/mlp/infer?worker=${other.id}`, session.seal(tensorRequest("x", [1, 64], mlp.sample(1, 1))).bytes);
      expect(r.status).toBe(400);
      expect(r.json?.code).toMatch(/^(SESSION_UNKNOWN|KEY_ID)$/); // KEY_ID unless the two key ids collide
    }
    const w = workers[0];
    const o = F.openSession({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest });
    const session = o.accept((await post(`${srv.url}/v1/programs/lm/session?worker=${w.id}`, o.bytes)).body);
    const one = session.seal(generateRequest("Hello there", 9));
    const whole = one.openResponse((await post(`${srv.url}/v1/programs/lm/infer?worker=${w.id}`, one.bytes)).body);
    const req = session.seal(generateRequest("Hello there", 9));
    const http = await fetch(`${srv.url}/v1/programs/lm/stream?worker=${w.id}`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: req.bytes as Uint8Array<ArrayBuffer> });
    expect(http.status).toBe(200);
    const opener = req.openStream();
    const chunks: F.StreamChunk[] = [];
    for await (const piece of http.body!) chunks.push(...opener.push(new Uint8Array(piece)));
    opener.end();
    expect(whole.kind === 2 && chunks.map((c) => text(c.text)).join("")).toBe(whole.kind === 2 && text(whole.text));
    // A session that never existed.
    const bogus = F.concat(Uint8Array.of(w.loader.keyId), F.ascii("veilSQ"), Uint8Array.of(0, 1), rand(16), Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1), rand(16));
    const r = await post(`${srv.url}/v1/programs/lm/infer?worker=${w.id}`, bogus);
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: "SESSION_UNKNOWN", number: 55, field: "SessionRequest session_id (and the session it names)", retryable: false });
  });

  it("the client SDK over the real server uses a session per worker and gets the same answers", async () => {
    const { connect } = await import("../../host/client/index.ts");
    const opens = async () => {
      const m = (await (await fetch(`${srv.url}/metrics`)).text()).split("\n").filter((l) => l.startsWith('veil_requests_total{route="/v1/programs/:name/session"') && l.includes('outcome="ok"'));
      return m.reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
    };
    const before = await opens();
    const c = await connect({ url: srv.url, policy: fx.policy(), trustConfig: fx.trust.trustConfig, logger: { warn: () => undefined } });
    const outs = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const y = await c.infer("mlp", [{ name: "x", dtype: 1, dims: [1, 64], data: new Uint8Array(mlp.sample(1, 3).buffer.slice(0)) }]);
      outs.add(hex(y[0].data));
    }
    expect(outs.size).toBe(1);
    expect(await opens()).toBe(before + 2); // one session per worker, for six requests
    const pieces: string[] = [];
    for await (const p of c.stream("lm", "Hello there", { maxTokens: 9 })) pieces.push(p);
    const whole = await c.infer("lm", "Hello there", { maxTokens: 9 });
    expect(pieces.join("")).toBe(whole.text);
  });

  it("routes by the request's key_id when ?worker= is omitted", async () => {
    for (const w of workers) {
      const sealed = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest, request: generateRequest("abc", 2) });
      const r = await post(`${srv.url}/v1/programs/lm/infer`, sealed.bytes);
      if (workers[0].loader.keyId === workers[1].loader.keyId) {
        expect(r.status).toBe(409);
        expect(r.json?.code).toBe("SERVER_AMBIGUOUS_WORKER");
        continue;
      }
      expect(r.status).toBe(200);
      expect(sealed.response.openResponse(r.body).kind).toBe(2);
    }
    // A key id no worker has: KEY_ID, as the loader itself would say.
    const unused = [...Array(256).keys()].find((k) => !workers.some((w) => w.loader.keyId === k))!;
    const body = rand(200);
    body[0] = unused;
    const r = await post(`${srv.url}/v1/programs/lm/infer`, body);
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: "KEY_ID", number: 48, field: "EncapsulatedRequest key_id", retryable: false });
  });

  it("50 concurrent clients each open only their own response; no response opens with another client's context", async () => {
    const N = 50;
    const reqs = Array.from({ length: N }, (_, i) => {
      const w = workers[i % workers.length];
      const input = mlp.sample(1 + (i % 4), 1000 + i);
      const sealed = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.mlp.manifest.digest, request: tensorRequest("x", [1 + (i % 4), 64], input) });
      return { w, sealed, batch: 1 + (i % 4) };
    });
    const answers = await Promise.all(reqs.map((r) => post(`${srv.url}/v1/programs/mlp/infer?worker=${r.w.id}`, r.sealed.bytes)));
    expect(answers.map((a) => a.status)).toEqual(Array(N).fill(200));
    const outputs = answers.map((a, i) => {
      const res = reqs[i].sealed.response.openResponse(a.body);
      if (res.kind !== 1) throw new Error("not tensors");
      expect(res.outputs[0].dims).toEqual([reqs[i].batch, 16]);
      return hex(res.outputs[0].data);
    });
    expect(new Set(outputs).size).toBe(N); // every client got its own answer
    // Client i cannot open client j's answer (a different HPKE context): RESPONSE_AUTH.
    for (let i = 0; i < N; i++) {
      const j = (i + 1) % N;
      expect(() => reqs[i].sealed.response.openResponse(answers[j].body)).toThrow(expect.objectContaining({ code: "RESPONSE_AUTH" }));
    }
  });
});

describe("errors of the contract", () => {
  it("loader refusals are 400 with the SPEC §12 name, number and field; unknown program/worker 404; oversize 413", async () => {
    const w = workers[0];
    // A request sealed for the mlp program sent to lm: it does not open under lm's digest.
    const wrong = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.mlp.manifest.digest, request: generateRequest("abc", 2) });
    let r = await post(`${srv.url}/v1/programs/lm/infer?worker=${w.id}`, wrong.bytes);
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: "REQUEST_AUTH", number: 50, retryable: false });
    // Replayed: the loader refuses a request enc it has seen.
    const once = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest, request: generateRequest("abc", 2) });
    expect((await post(`${srv.url}/v1/programs/lm/infer?worker=${w.id}`, once.bytes)).status).toBe(200);
    r = await post(`${srv.url}/v1/programs/lm/infer?worker=${w.id}`, once.bytes);
    expect(r.json).toMatchObject({ code: "REPLAY", number: 51 });
    // Bytes no token covers: SCHEMA_VIOLATION with its field.
    const bad = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest, request: generateRequest("{}", 2) });
    r = await post(`${srv.url}/v1/programs/lm/stream?worker=${w.id}`, bad.bytes);
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: "SCHEMA_VIOLATION", number: 52, field: expect.stringContaining("prompt") });

    r = await post(`${srv.url}/v1/programs/nope/infer?worker=w0`, rand(100));
    expect([r.status, r.json?.code]).toEqual([404, "SERVER_UNKNOWN_PROGRAM"]);
    r = await post(`${srv.url}/v1/programs/lm/infer?worker=w9`, rand(100));
    expect([r.status, r.json?.code]).toEqual([404, "SERVER_UNKNOWN_WORKER"]);
    r = await post(`${srv.url}/v1/programs/lm/infer?worker=w0`, new Uint8Array(0));
    expect([r.status, r.json?.code]).toEqual([400, "SERVER_BAD_REQUEST"]);
    r = await post(`${srv.url}/v1/programs/lm/infer?worker=w0`, new Uint8Array(F.LIMITS.REQUEST_MAX + 1));
    expect([r.status, r.json?.code]).toEqual([413, "SERVER_BODY_TOO_LARGE"]);
    const nf = await fetch(`${srv.url}/v2/nothing`);
    expect([nf.status, ((await nf.json()) as { code: string }).code]).toEqual([404, "SERVER_NOT_FOUND"]);
  });
});

describe("health, readiness, metrics", () => {
  it("healthz, readyz and the listed metrics", async () => {
    expect(await (await fetch(`${srv.url}/healthz`)).json()).toEqual({ ok: true });
    const ready = await fetch(`${srv.url}/readyz`);
    expect(ready.status).toBe(200);
    const rz = (await ready.json()) as { ready: boolean; workers: { id: string; state: string }[] };
    expect(rz.ready).toBe(true);
    expect(rz.workers.map((w) => w.state)).toEqual(["ready", "ready"]);
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    for (const name of ["veil_queue_depth{worker=\"w0\"}", "veil_request_duration_seconds_bucket", "veil_requests_total{", "veil_sealed_bytes_out_total{", "veil_worker_restarts_total{worker=\"w1\"} 0"])
      expect(m, name).toContain(name);
    expect(m).toMatch(/veil_requests_total\{route="\/v1\/programs\/:name\/infer",outcome="ok",code="OK"\} \d+/);
    expect(m).toMatch(/veil_requests_total\{route="\/v1\/programs\/:name\/infer",outcome="refused",code="REPLAY"\} 1/);
  });
});
