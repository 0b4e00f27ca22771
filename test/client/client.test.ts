// The client SDK (host/client) against a fake server over real loaders (fake-server.ts):
// attestation before sealing, worker and program rejection, tensor and generate infer, typed
// errors, retries with backoff and Retry-After, re-attestation after a worker restart.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { SoftwareAttester } from "../../host/attest/index.ts";
import { ClientError, connect, type Client, type ClientPolicy, type ConnectOptions } from "../../host/client/index.ts";
import { COMPLETION, COMPLETION_TOKENS, FakeVeilServer, MEASUREMENT, PROMPT, WORKER_CODE_HASH, rand } from "./fake-server.ts";

let s: FakeVeilServer;
const warnings: string[] = [];
const logger = { warn: (m: string) => void warnings.push(m) };

beforeAll(async () => {
  s = await FakeVeilServer.start([{ id: "w0" }, { id: "w1" }]);
});
afterAll(async () => {
  await s?.close();
});
beforeEach(() => {
  s.reset();
  warnings.length = 0;
});

const policy = (o: Partial<ClientPolicy> = {}): ClientPolicy => ({
  trustedPlatformKeys: [s.attester.publicKey],
  acceptedMeasurements: [MEASUREMENT],
  acceptedWorkerCodeHashes: [WORKER_CODE_HASH],
  ...o,
});
const open = (o: Partial<ConnectOptions> = {}): Promise<Client> =>
  connect({ url: s.url, policy: policy(), trustConfig: s.trustConfig, logger, retry: { baseDelayMs: 5 }, sessions: false, ...o });

async function refusal(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ClientError);
    return e as ClientError;
  }
  throw new Error("expected a ClientError, the call succeeded");
}

const floats = (t: F.Tensor): number[] => Array.from(new Float32Array(t.data.slice().buffer));
const x = (values: number[]): F.Tensor[] => [F.tensorFromArray("x", 1, [values.length], new Float32Array(values))];

describe("connect: attestation before anything is sealed", () => {
  it("verifies every worker with a fresh nonce and checks every program", async () => {
    const c = await open();
    expect(c.workers().map((w) => w.id)).toEqual(["w0", "w1"]);
    for (const w of c.workers()) {
      expect(w.measurement).toBe(F.toHex(MEASUREMENT));
      expect(w.platform).toBe("software");
      expect(w.skipped).toEqual([]);
      expect(w.trustConfigHash).toBe(F.toHex(F.trustConfigHash(s.trustConfig)));
    }
    expect(c.rejected).toEqual([]);
    const progs = c.programs();
    expect(progs.map((p) => [p.name, p.version, p.mode, p.workers])).toEqual([
      ["echo", 3n, "tensor", ["w0", "w1"]],
      ["tiny-lm", 1n, "generate", ["w0", "w1"]],
    ]);
    expect(progs[0].digest).toBe(F.toHex(s.programs[0].digest));
    expect(progs[0].schema.inputs).toEqual([{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }] }]);
    expect(progs[1].schema.generate).toMatchObject({ vocabSize: 14, maxNewTokens: 32, tokensPerChunk: 1 });
    expect(progs[1].signatures).toEqual({ checked: true, counted: 2, threshold: 2 });
    expect(warnings).toEqual([]);
    // the nonce is 32 fresh bytes per attestation
    const nonces = s.hits.filter((h) => h.path === "/v1/attestation");
    expect(nonces).toHaveLength(1);
    await c.refresh();
    expect(s.count("/v1/attestation")).toBe(2);
  });

  it("excludes a worker with an unknown measurement and keeps the reason", async () => {
    const t = await FakeVeilServer.start([{ id: "good" }, { id: "odd", measurement: rand(32) }]);
    try {
      const c = await connect({ url: t.url, policy: { ...policy(), trustedPlatformKeys: [t.attester.publicKey] }, trustConfig: t.trustConfig, logger, sessions: false });
      expect(c.workers().map((w) => w.id)).toEqual(["good"]);
      expect(c.rejected).toMatchObject([{ kind: "worker", id: "odd", code: "MEASUREMENT_UNKNOWN" }]);
      expect(c.programs().map((p) => p.workers)).toEqual([["good"], ["good"]]);
      // round robin only ever picks the verified worker
      for (let i = 0; i < 3; i++) await c.infer("echo", x([i]));
      expect(t.hits.filter((h) => h.method === "POST").map((h) => h.worker)).toEqual(["good", "good", "good"]);
    } finally {
      await t.close();
    }
  });

  const refusedCases: [string, () => void, string][] = [
    ["replayed (expired) evidence", () => (s.evidenceMode = "replay"), "NONCE_MISMATCH"],
    ["evidence for a foreign nonce", () => (s.evidenceMode = "foreign"), "NONCE_MISMATCH"],
    ["a bad platform signature", () => (s.evidenceMode = "bad-signature"), "EVIDENCE_SIGNATURE"],
  ];
  for (const [what, arrange, code] of refusedCases) {
    it(`refuses ${what}: connect fails and nothing is ever sent`, async () => {
      await open(); // the first evidence, which "replay" serves again
      s.reset();
      arrange();
      const e = await refusal(open());
      expect(e.code).toBe("ATTESTATION_FAILED");
      expect(e.reasons.map((r) => [r.id, r.code])).toEqual([
        ["w0", code],
        ["w1", code],
      ]);
      expect(e.message).toContain(code);
      expect(s.posts).toBe(0);
      expect(s.count("/v1/programs")).toBe(0);
    });
  }

  it("refuses a worker whose measurement, worker code or trust configuration it does not accept", async () => {
    const m = await refusal(open({ policy: policy({ acceptedMeasurements: [rand(32)] }) }));
    expect(m.reasons.map((r) => r.code)).toEqual(["MEASUREMENT_UNKNOWN", "MEASUREMENT_UNKNOWN"]);
    const w = await refusal(open({ policy: policy({ acceptedWorkerCodeHashes: [F.toHex(rand(32))] }) }));
    expect(w.reasons.map((r) => r.code)).toEqual(["WORKER_CODE_UNKNOWN", "WORKER_CODE_UNKNOWN"]);
    const other = F.encodeTrustConfig({ threshold: 1, reviewers: [F.generateReviewerKey().publicKey] });
    const t = await refusal(open({ trustConfig: other }));
    expect(t.reasons.map((r) => r.code)).toEqual(["TRUST_CONFIG_UNKNOWN", "TRUST_CONFIG_UNKNOWN"]);
    // the accepted trust config hash may also be given directly
    const c = await open({ trustConfig: undefined, policy: policy({ acceptedTrustConfigHashes: [F.trustConfigHash(s.trustConfig)] }) });
    expect(c.programs()[0].signatures).toEqual({ checked: false });
    const stranger = SoftwareAttester.generate();
    const k = await refusal(open({ policy: policy({ trustedPlatformKeys: [stranger.publicKey] }) }));
    expect(k.reasons.map((r) => r.code)).toEqual(["EVIDENCE_SIGNATURE", "EVIDENCE_SIGNATURE"]);
    expect(s.posts).toBe(0);
  });

  it("trusts nothing by default: a policy without a platform key, measurements or trust config is refused before any request", async () => {
    const cases: Partial<ConnectOptions>[] = [
      { policy: policy({ trustedPlatformKeys: [] }) },
      { policy: policy({ acceptedMeasurements: [] }) },
      { policy: policy({ acceptedMeasurements: undefined }) },
      { policy: policy({ acceptedWorkerCodeHashes: undefined }) },
      { trustConfig: undefined },
      { policy: policy({ skip: ["everything" as never] }) },
      { trustConfig: new Uint8Array(10) },
    ];
    for (const o of cases) expect((await refusal(open(o))).code).toBe("POLICY_INVALID");
    expect(s.hits).toEqual([]);
  });

  it("skips a check only when the policy names it, and says so on every verification", async () => {
    const c = await open({ policy: policy({ acceptedMeasurements: undefined, skip: ["measurement"] }) });
    expect(c.workers().map((w) => w.skipped)).toEqual([["measurement"], ["measurement"]]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/WARNING: SKIPPING the measurement check by explicit policy/);
    // allowUnverifiedQuote alone does not make software evidence trusted
    const e = await refusal(open({ policy: policy({ trustedPlatformKeys: [], allowUnverifiedQuote: true }) }));
    expect(e.reasons.map((r) => r.code)).toEqual(["EVIDENCE_SIGNATURE", "EVIDENCE_SIGNATURE"]);
  });

  it("rejects programs whose digest, signatures or name do not check out, and never sends to them", async () => {
    s.listing = { badDigest: "echo", weakSignatures: "tiny-lm" };
    const c = await open();
    expect(c.programs()).toEqual([]);
    expect(c.rejected.map((r) => [r.kind, r.id, r.code])).toEqual([
      ["program", "echo", "DIGEST_MISMATCH"],
      ["program", "tiny-lm", "SIGNATURE_THRESHOLD"],
    ]);
    const e = await refusal(c.infer("echo", x([1])));
    expect(e.code).toBe("PROGRAM_REJECTED");
    expect((await refusal(c.infer("nope", x([1])))).code).toBe("UNKNOWN_PROGRAM");
    s.listing = { renamed: "echo" };
    const c2 = await open();
    expect(c2.rejected).toMatchObject([{ id: "echo-x", code: "NAME_MISMATCH" }]);
    // without a trust config the client cannot check signatures; the loader still does
    s.listing = { weakSignatures: "tiny-lm" };
    const c3 = await open({ trustConfig: undefined, policy: policy({ acceptedTrustConfigHashes: [F.trustConfigHash(s.trustConfig)] }) });
    expect(c3.programs().map((p) => p.name)).toEqual(["echo", "tiny-lm"]);
    expect(s.posts).toBe(0);
  });
});

describe("infer", () => {
  it("tensor program: seals to a verified worker, round-robin, and opens the answer", async () => {
    const c = await open();
    const y = await c.infer("echo", x([1.5, -2, 3]));
    expect(y.map((t) => [t.name, t.dtype, t.dims])).toEqual([["y", 1, [3]]]);
    expect(floats(y[0])).toEqual([1.5, -2, 3]);
    await c.infer("echo", x([4]));
    await c.infer("echo", x([5]));
    expect(s.hits.filter((h) => h.method === "POST").map((h) => [h.path, h.worker, h.status])).toEqual([
      ["/v1/programs/echo/infer", "w0", 200],
      ["/v1/programs/echo/infer", "w1", 200],
      ["/v1/programs/echo/infer", "w0", 200],
    ]);
  });

  it("generate program: the completion, with token count and stop reason", async () => {
    const c = await open();
    expect(await c.infer("tiny-lm", PROMPT)).toMatchObject({ text: COMPLETION, tokens: COMPLETION_TOKENS, stop: "end" });
    const short = await c.infer("tiny-lm", PROMPT, { maxTokens: 3 });
    expect(short).toMatchObject({ text: "hé", tokens: 3, stop: "limit" });
    expect(Array.from(short.bytes)).toEqual([0x68, 0xc3, 0xa9]);
    const seeded = await c.infer("tiny-lm", PROMPT, { temperature: 0.7, topK: 2, seed: 42n });
    expect(seeded.stop).toMatch(/end|limit/);
  });

  it("checks the request locally and reports the loader's refusals as typed errors", async () => {
    const c = await open();
    const local = await refusal(c.infer("echo", [F.tensorFromArray("z", 1, [1], new Float32Array([1]))]));
    expect([local.code, local.number, local.retryable]).toEqual(["SCHEMA_VIOLATION", 52, false]);
    expect((await refusal(c.infer("echo", "text"))).code).toBe("WRONG_MODE");
    expect((await refusal(c.infer("tiny-lm", x([1])))).code).toBe("WRONG_MODE");
    const big = await refusal(c.infer("tiny-lm", PROMPT, { maxTokens: 33 }));
    expect([big.code, big.field]).toEqual(["BAD_VALUE", "maxTokens"]);
    expect(s.posts).toBe(0);
    // the loader's own refusal (bytes no token covers) comes back with its §12 code
    const e = await refusal(c.infer("tiny-lm", "Say: ?"));
    expect([e.code, e.number, e.status, e.retryable, e.worker]).toEqual(["SCHEMA_VIOLATION", 52, 400, false, "w0"]);
    expect(e.field).toMatch(/prompt/);
    expect(e.message).not.toContain("Say");
    expect(s.posts).toBe(1);
  });
});

describe("retries", () => {
  it("retries a 503 after the Retry-After the server asked for", async () => {
    const c = await open();
    s.failures = [{ status: 503, code: "SERVER_QUEUE_FULL", retryAfter: "1" }];
    const t0 = Date.now();
    const y = await c.infer("echo", x([7]));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(floats(y[0])).toEqual([7]);
    expect(s.hits.filter((h) => h.method === "POST").map((h) => h.status)).toEqual([503, 200]);
  });

  it("backs off on 504 and gives up after the bounded number of retries with the server's error", async () => {
    const c = await open({ retry: { retries: 2, baseDelayMs: 20 } });
    s.failures = Array.from({ length: 5 }, () => ({ status: 504, code: "SERVER_DEADLINE" }));
    const t0 = Date.now();
    const e = await refusal(c.infer("echo", x([1])));
    expect([e.code, e.status, e.retryable]).toEqual(["SERVER_DEADLINE", 504, true]);
    expect(s.posts).toBe(3);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(10 + 20 - 5); // jittered 10..20 then 20..40 ms
    // not retried: a 4xx refusal, or a 500
    s.reset();
    s.failures = [{ status: 500, code: "SERVER_INTERNAL" }, { status: 500, code: "SERVER_INTERNAL" }];
    expect((await refusal(c.infer("echo", x([1])))).code).toBe("SERVER_INTERNAL");
    expect(s.posts).toBe(1);
  });

  it("re-attests after a worker restart changed its loader key, then succeeds", async () => {
    const c = await open();
    const before = c.workers().find((w) => w.id === "w0")!.hpkePublicKey;
    s.worker("w0").boot();
    s.worker("w1").boot();
    const y = await c.infer("echo", x([9]));
    expect(floats(y[0])).toEqual([9]);
    // the stale request failed at the loader (KEY_ID, or REQUEST_AUTH when the key ids collide)
    const posts = s.hits.filter((h) => h.method === "POST").map((h) => h.status);
    expect(posts).toEqual([400, 200]);
    expect(s.count("/v1/attestation")).toBe(2);
    expect(c.workers().find((w) => w.id === "w0")!.hpkePublicKey).not.toBe(before);
  });

  it("concurrent requests that meet a new key share one re-attestation", async () => {
    const c = await open();
    s.workers.forEach((w) => w.boot());
    const ys = await Promise.all([1, 2, 3, 4, 5, 6].map((v) => c.infer("echo", x([v]))));
    expect(ys.map((y) => floats(y[0])[0])).toEqual([1, 2, 3, 4, 5, 6]);
    expect(s.count("/v1/attestation")).toBe(2);
    expect(s.hits.filter((h) => h.method === "POST" && h.status === 200)).toHaveLength(6);
  });

  it("re-attests when the server answers 503 worker restarting", async () => {
    const c = await open();
    s.failures = [{ status: 503, code: "SERVER_WORKER_RESTARTING", retryAfter: "0", then: () => s.workers.forEach((w) => w.boot()) }];
    const y = await c.infer("tiny-lm", PROMPT);
    expect(y.text).toBe(COMPLETION);
    expect(s.hits.filter((h) => h.method === "POST").map((h) => h.status)).toEqual([503, 200]);
    expect(s.count("/v1/attestation")).toBe(2);
  });

  it("fails with ATTESTATION_FAILED if the restarted worker no longer verifies", async () => {
    const c = await open();
    s.workers.forEach((w) => w.boot());
    s.evidenceMode = "bad-signature";
    const e = await refusal(c.infer("echo", x([1])));
    expect(e.code).toBe("ATTESTATION_FAILED");
    expect(s.posts).toBe(1); // the stale request only; nothing is sealed to an unverified key
  });

  it("cancels through the signal, also while backing off", async () => {
    const c = await open();
    s.failures = [{ status: 503, code: "SERVER_QUEUE_FULL", retryAfter: "5" }];
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const t0 = Date.now();
    const e = await refusal(c.infer("echo", x([1]), { signal: ac.signal }));
    expect(e.code).toBe("ABORTED");
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("reports an unreachable server as a retryable NETWORK error", async () => {
    const dead = await FakeVeilServer.start([]);
    const url = dead.url;
    await dead.close();
    const e = await refusal(connect({ url, policy: policy(), trustConfig: s.trustConfig, logger, retry: { retries: 1, baseDelayMs: 1 } }));
    expect([e.code, e.retryable]).toEqual(["NETWORK", true]);
  });
});
