// client.stream against the fake server over real loaders: tokens arrive as the chunked body
// does, UTF-8 is decoded across records and HTTP chunks, any tampering with the records
// (drop, reorder, duplicate, alter, cut, pad, broken connection) throws, cancellation works.
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { ClientError, connect, type Client, type StreamSummary } from "../../host/client/index.ts";
import { COMPLETION, COMPLETION_TOKENS, FakeVeilServer, MEASUREMENT, PIECES, PROMPT, WORKER_CODE_HASH, type StreamMode } from "./fake-server.ts";

let s: FakeVeilServer;
let c: Client;

beforeAll(async () => {
  s = await FakeVeilServer.start([{ id: "w0" }]);
  c = await connect({
    url: s.url,
    policy: { trustedPlatformKeys: [s.attester.publicKey], acceptedMeasurements: [MEASUREMENT], acceptedWorkerCodeHashes: [WORKER_CODE_HASH] },
    trustConfig: s.trustConfig,
    retry: { baseDelayMs: 5 },
  });
});
afterAll(async () => {
  await s?.close();
});
beforeEach(() => s.reset());

async function collect(it: AsyncGenerator<string, StreamSummary>): Promise<{ pieces: string[]; summary: StreamSummary }> {
  const pieces: string[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { pieces, summary: r.value };
    pieces.push(r.value);
  }
}

async function failure(it: AsyncGenerator<string, StreamSummary>): Promise<{ pieces: string[]; error: ClientError }> {
  const pieces: string[] = [];
  try {
    for await (const p of it) pieces.push(p);
  } catch (e) {
    expect(e).toBeInstanceOf(ClientError);
    return { pieces, error: e as ClientError };
  }
  throw new Error(`expected the stream to throw; it ended after ${JSON.stringify(pieces)}`);
}

describe("stream", () => {
  it("yields the completion piece by piece, multi-byte characters whole", async () => {
    const { pieces, summary } = await collect(c.stream("tiny-lm", PROMPT));
    expect(pieces).toEqual(PIECES);
    expect(pieces.join("")).toBe(COMPLETION);
    expect(summary).toMatchObject({ tokens: COMPLETION_TOKENS, stop: "end", worker: "w0" });
    expect(summary.chunks).toBeGreaterThanOrEqual(COMPLETION_TOKENS);
  });

  it("decodes UTF-8 incrementally when records and characters straddle HTTP chunks", async () => {
    s.streamMode = "split"; // 3-byte writes: every record, and "é" and "€", are cut across chunks
    const { pieces } = await collect(c.stream("tiny-lm", PROMPT));
    expect(pieces.join("")).toBe(COMPLETION);
    expect(pieces.join("")).not.toContain("\ufffd");
    expect(pieces).toContain("é");
    expect(pieces).toContain("€");
  });

  it("decodes UTF-8 incrementally when the body arrives one byte at a time (the client's own fetch)", async () => {
    let reads = 0;
    const oneByte: typeof fetch = async (url, init) => {
      const res = await fetch(url, init);
      if (!res.body) return res;
      const reader = res.body.getReader();
      let pending = new Uint8Array(0);
      const body = new ReadableStream<Uint8Array>({
        async pull(ctl) {
          while (pending.length === 0) {
            const r = await reader.read();
            if (r.done) return ctl.close();
            pending = r.value;
          }
          reads++;
          ctl.enqueue(pending.slice(0, 1));
          pending = pending.subarray(1);
        },
        cancel: (why) => reader.cancel(why),
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const c1 = await connect({
      url: s.url,
      fetch: oneByte,
      policy: { trustedPlatformKeys: [s.attester.publicKey], acceptedMeasurements: [MEASUREMENT], acceptedWorkerCodeHashes: [WORKER_CODE_HASH] },
      trustConfig: s.trustConfig,
    });
    reads = 0;
    const { pieces } = await collect(c1.stream("tiny-lm", PROMPT));
    expect(pieces).toEqual(PIECES);
    expect(reads).toBeGreaterThan(300); // nonce, 10 records of 4 + 33.. bytes each, byte by byte
  });

  it("logs nothing that holds plaintext, retries and re-attestation included", async () => {
    const lines: string[] = [];
    const spies = (["log", "warn", "error", "info", "debug"] as const).map((m) => vi.spyOn(console, m).mockImplementation((...a: unknown[]) => void lines.push(a.join(" "))));
    try {
      const logged: string[] = [];
      const c2 = await connect({
        url: s.url,
        policy: { trustedPlatformKeys: [s.attester.publicKey], acceptedWorkerCodeHashes: [WORKER_CODE_HASH], skip: ["measurement"] },
        trustConfig: s.trustConfig,
        retry: { baseDelayMs: 1 },
        logger: { warn: (m) => void logged.push(m), info: (m) => void logged.push(m) },
      });
      s.failures = [{ status: 503, code: "SERVER_QUEUE_FULL", retryAfter: "0" }];
      s.workers[0].boot(); // the next request meets a new key: KEY_ID, re-attestation
      const got = await collect(c2.stream("tiny-lm", PROMPT));
      expect(got.pieces.join("")).toBe(COMPLETION);
      s.streamMode = "cut";
      await failure(c2.stream("tiny-lm", PROMPT));
      expect(logged.some((l) => /retry 1\/3/.test(l))).toBe(true);
      expect(logged.some((l) => /attesting again/.test(l))).toBe(true);
      expect(logged.some((l) => /SKIPPING the measurement check/.test(l))).toBe(true);
      for (const l of [...logged, ...lines]) for (const secret of ["Say", "llo", "rld", "é", "€"]) expect(l).not.toContain(secret);
    } finally {
      spies.forEach((sp) => sp.mockRestore());
    }
  });

  it("hands out tokens as they arrive, before the server has finished", async () => {
    let release!: () => void;
    s.streamGate = new Promise<void>((r) => (release = r));
    const it = c.stream("tiny-lm", PROMPT);
    const first = await it.next(); // the server is still holding the rest of the stream
    expect(first).toEqual({ done: false, value: "h" });
    release();
    const rest = await collect(it);
    expect(["h", ...rest.pieces].join("")).toBe(COMPLETION);
  });

  it("stops at maxTokens with stop = limit", async () => {
    const { pieces, summary } = await collect(c.stream("tiny-lm", PROMPT, { maxTokens: 5 }));
    expect(pieces.join("")).toBe("héllo w");
    expect(summary).toMatchObject({ tokens: 5, stop: "limit" });
  });

  const tampered: [StreamMode, string][] = [
    ["drop", "RESPONSE_AUTH"],
    ["reorder", "RESPONSE_AUTH"],
    ["duplicate", "RESPONSE_AUTH"],
    ["flip", "RESPONSE_AUTH"],
    ["cut", "TRUNCATED"],
    ["abort", "TRUNCATED"],
    ["trailing", "TRAILING_BYTES"],
  ];
  for (const [mode, code] of tampered) {
    it(`throws ${code} when the server's stream is tampered with (${mode}), never ending short`, async () => {
      s.streamMode = mode;
      const { pieces, error } = await failure(c.stream("tiny-lm", PROMPT));
      expect(error.code).toBe(code);
      expect(error.retryable).toBe(false);
      expect(error.worker).toBe("w0");
      // only authenticated text came out, and none of it after the tampered record
      expect(COMPLETION.startsWith(pieces.join(""))).toBe(true);
      if (mode !== "trailing" && mode !== "cut") expect(pieces.join("").length).toBeLessThan(COMPLETION.length);
      expect(error.message).not.toContain("llo");
    });
  }

  it("cancels through the signal mid-stream and closes the connection", async () => {
    let release!: () => void;
    s.streamGate = new Promise<void>((r) => (release = r));
    const ac = new AbortController();
    const it = c.stream("tiny-lm", PROMPT, { signal: ac.signal });
    expect((await it.next()).value).toBe("h");
    ac.abort();
    const e = await it.next().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(ClientError);
    expect((e as ClientError).code).toBe("ABORTED");
    release();
    await expect.poll(() => s.streamClosed).toBe(1);
  });

  it("gives up with TIMEOUT when the stream outlives timeoutMs", async () => {
    let release!: () => void;
    s.streamGate = new Promise<void>((r) => (release = r));
    const { pieces, error } = await failure(c.stream("tiny-lm", PROMPT, { timeoutMs: 150 }));
    release();
    expect(pieces).toEqual(["h"]);
    expect(error.code).toBe("TIMEOUT");
  });

  it("closes the connection when the consumer leaves the loop early", async () => {
    let release!: () => void;
    s.streamGate = new Promise<void>((r) => (release = r));
    for await (const piece of c.stream("tiny-lm", PROMPT)) {
      expect(piece).toBe("h");
      break;
    }
    release();
    await expect.poll(() => s.streamClosed).toBe(1);
  });

  it("retries a 503 before the stream starts, and refuses a tensor program", async () => {
    s.failures = [{ status: 503, code: "SERVER_QUEUE_FULL", retryAfter: "0" }];
    const { pieces } = await collect(c.stream("tiny-lm", PROMPT));
    expect(pieces.join("")).toBe(COMPLETION);
    expect(s.hits.filter((h) => h.method === "POST").map((h) => h.status)).toEqual([503, 200]);
    const e = await failure(c.stream("echo", PROMPT));
    expect(e.error.code).toBe("WRONG_MODE");
  });
});
