// The broker's HTTP service on 127.0.0.1 (ephemeral port) and its client: a full release to a
// real loader, error mapping, strict request parsing, logs with only public facts, and a down or
// hung broker reported as one clear, quick client error.
import { createServer, type Server, type Socket } from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BrokerClient, BrokerError, startBrokerServer, toBase64url, verifyAuditLog, type AuditEntry, type BrokerServer } from "../../host/broker/index.ts";
import { contains, evidenceFor, fixture, hex, makeLoader, rand, type Fixture } from "./helpers.ts";

let fx: Fixture;
let server: BrokerServer;
let client: BrokerClient;
const logLines: string[] = [];

beforeAll(async () => {
  fx = fixture();
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  server = await startBrokerServer({ broker: fx.broker, port: 0, logger: pino({ level: "info" }, sink) });
  client = new BrokerClient(server.url);
});
afterAll(async () => {
  await server.close();
  fx.cleanup();
});

const auditLines = (): AuditEntry[] =>
  readFileSync(join(fx.dir, "audit.log"), "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));

async function brokerError(p: Promise<unknown>): Promise<BrokerError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof BrokerError) return e;
    throw e;
  }
  throw new Error("expected a BrokerError");
}

const post = (path: string, body: string, type = "application/json") =>
  fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": type }, body });

describe("broker HTTP service", () => {
  it("binds to 127.0.0.1 by default and answers /healthz", async () => {
    expect(server.host).toBe("127.0.0.1");
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const r = await fetch(`${server.url}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ ok: true });
    expect(await client.healthy()).toBe(true);
  });

  it("GET /v1/nonce gives 32 bytes of base64url, not cached", async () => {
    const r = await fetch(`${server.url}/v1/nonce`);
    expect(r.headers.get("cache-control")).toBe("no-store");
    const { nonce } = (await r.json()) as { nonce: string };
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await client.nonce()).length).toBe(32);
  });

  it("releases over HTTP to a real loader, which accepts the WrappedKey", async () => {
    const nonce = await client.nonce();
    const evidence = await evidenceFor(fx.loader, nonce);
    const wrapped = await client.release(fx.keyId, evidence, nonce);
    expect(wrapped.length).toBe(136);
    expect(() => fx.loader.L.unwrapKey(wrapped)).not.toThrow();
  });

  it("maps refusals to {code, message} with 403 / 404 / 400", async () => {
    let n = await client.nonce();
    let e = await brokerError(client.release(rand(16), await evidenceFor(fx.loader, n), n));
    expect([e.code, e.status]).toEqual(["KEY_UNKNOWN", 404]);
    n = await client.nonce();
    e = await brokerError(client.release(fx.keyId, await evidenceFor(fx.loader, n, { measurement: rand(32) }), n));
    expect([e.code, e.status]).toEqual(["MEASUREMENT_UNKNOWN", 403]);
    expect(e.detail).toMatch(/loader measurement [0-9a-f]{64} is not accepted/);
    n = await client.nonce();
    e = await brokerError(client.release(fx.keyId, await evidenceFor(makeLoader(), n), n));
    expect([e.code, e.status]).toEqual(["TRUST_CONFIG_UNKNOWN", 403]);
    e = await brokerError(client.release(fx.keyId, await evidenceFor(fx.loader, n), n));
    expect([e.code, e.status]).toEqual(["NONCE_REUSED", 403]);
    n = await client.nonce();
    e = await brokerError(client.release(fx.keyId, (await evidenceFor(fx.loader, n)).subarray(1), n));
    expect([e.code, e.status]).toEqual(["MALFORMED", 400]);
    const made = rand(32);
    e = await brokerError(client.release(fx.keyId, await evidenceFor(fx.loader, made), made));
    expect([e.code, e.status]).toEqual(["NONCE_UNKNOWN", 403]);
  });

  it("parses requests strictly", async () => {
    const n = toBase64url(rand(32));
    const ev = toBase64url(rand(300));
    const id = hex(fx.keyId);
    const cases: [string, Promise<Response>, number, string][] = [
      ["bad key id", post(`/v1/keys/zz/release`, JSON.stringify({ evidence: ev, nonce: n })), 400, "BAD_REQUEST"],
      ["not JSON", post(`/v1/keys/${id}/release`, "{nope"), 400, "BAD_REQUEST"],
      ["wrong media type", post(`/v1/keys/${id}/release`, "<x/>", "application/xml"), 415, "BAD_REQUEST"],
      ["text body", post(`/v1/keys/${id}/release`, "x", "text/plain"), 400, "BAD_REQUEST"],
      ["array body", post(`/v1/keys/${id}/release`, "[]"), 400, "BAD_REQUEST"],
      ["missing nonce", post(`/v1/keys/${id}/release`, JSON.stringify({ evidence: ev })), 400, "BAD_REQUEST"],
      ["padded base64", post(`/v1/keys/${id}/release`, JSON.stringify({ evidence: ev, nonce: Buffer.from(rand(32)).toString("base64") })), 400, "BAD_REQUEST"],
      ["short nonce", post(`/v1/keys/${id}/release`, JSON.stringify({ evidence: ev, nonce: toBase64url(rand(31)) })), 400, "BAD_REQUEST"],
      ["extra field", post(`/v1/keys/${id}/release`, JSON.stringify({ evidence: ev, nonce: n, dataKey: "x" })), 400, "BAD_REQUEST"],
      ["too large", post(`/v1/keys/${id}/release`, JSON.stringify({ evidence: "A".repeat(200_000), nonce: n })), 413, "BODY_TOO_LARGE"],
      ["no route", fetch(`${server.url}/v1/keys`), 404, "NOT_FOUND"],
      ["wrong method", fetch(`${server.url}/v1/nonce`, { method: "POST" }), 404, "NOT_FOUND"],
    ];
    const before = auditLines().length;
    for (const [name, p, status, code] of cases) {
      const r = await p;
      expect(r.status, name).toBe(status);
      const body = (await r.json()) as { code: string; message: string };
      expect(body.code, name).toBe(code);
      expect(typeof body.message, name).toBe("string");
    }
    // Every refused release request is in the audit log, including those fastify refused itself.
    const added = auditLines().slice(before);
    expect(added.map((e) => e.reason!.split(":")[0])).toEqual(cases.filter(([n]) => n !== "no route" && n !== "wrong method").map(([, , , c]) => c));
    expect(added.every((e) => e.event === "refusal")).toBe(true);
    expect(added.find((e) => e.reason!.startsWith("BODY_TOO_LARGE"))!.keyId).toBe(id);
    expect(verifyAuditLog(join(fx.dir, "audit.log")).ok).toBe(true);
  });

  it("logs only public facts: no data key, broker key, evidence or wrapped key", async () => {
    const nonce = await client.nonce();
    const evidence = await evidenceFor(fx.loader, nonce);
    const wrapped = await client.release(fx.keyId, evidence, nonce);
    const all = Buffer.from(logLines.join(""));
    expect(contains(all, fx.dataKey)).toBe(false);
    expect(contains(all, fx.brokerKey)).toBe(false);
    expect(all.includes(Buffer.from(toBase64url(evidence)))).toBe(false);
    expect(all.includes(Buffer.from(toBase64url(wrapped)))).toBe(false);
    const reqs = logLines.map((l) => JSON.parse(l)).filter((l) => l.msg === "request");
    expect(reqs.length).toBeGreaterThan(10);
    const release = reqs.find((l) => l.route === "/v1/keys/:keyId/release" && l.status === 200);
    expect(release).toMatchObject({ method: "POST", keyId: hex(fx.keyId) });
    expect(reqs.find((l) => l.status === 404 && l.code === "KEY_UNKNOWN")).toBeTruthy();
    for (const l of reqs) expect(Object.keys(l).sort()).not.toContain("body");
  });
});

describe("broker client against a down or hung broker", () => {
  it("a closed port: one BROKER_UNAVAILABLE error after exactly one retry, quickly", async () => {
    const s = await startBrokerServer({ broker: fx.broker, logger: pino({ level: "silent" }) });
    const url = s.url;
    await s.close();
    let attempts = 0;
    const counting: typeof fetch = (input, init) => {
      attempts++;
      return fetch(input, init);
    };
    const c = new BrokerClient(url, { fetch: counting, retryDelayMs: 50 });
    const t0 = Date.now();
    const e = await brokerError(c.release(fx.keyId, rand(300), rand(32)));
    const ms = Date.now() - t0;
    expect(e.code).toBe("BROKER_UNAVAILABLE");
    expect(e.message).toMatch(/unreachable \(ECONNREFUSED\) after 2 attempt\(s\)/);
    expect(e.message).toContain(url);
    expect(attempts).toBe(2);
    expect(ms).toBeLessThan(2000);
    attempts = 0;
    expect((await brokerError(c.nonce())).code).toBe("BROKER_UNAVAILABLE");
    expect(attempts).toBe(2);
    expect(await c.healthy()).toBe(false);
  });

  it("a broker that accepts but never answers: BROKER_UNAVAILABLE at the deadline, a release never retried", async () => {
    const sockets: Socket[] = [];
    const hung: Server = createServer((sock) => void sockets.push(sock));
    await new Promise<void>((r) => hung.listen(0, "127.0.0.1", () => r()));
    const port = (hung.address() as { port: number }).port;
    let attempts = 0;
    const counting: typeof fetch = (input, init) => {
      attempts++;
      return fetch(input, init);
    };
    try {
      const c = new BrokerClient(`http://127.0.0.1:${port}`, { timeoutMs: 300, fetch: counting });
      const t0 = Date.now();
      const e = await brokerError(c.release(fx.keyId, rand(300), rand(32)));
      expect(e.code).toBe("BROKER_UNAVAILABLE");
      expect(e.message).toMatch(/TIMEOUT/);
      expect(attempts).toBe(1);
      expect(Date.now() - t0).toBeLessThan(1500);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => hung.close(r));
    }
  });

  it("a server that is not a broker: BAD_RESPONSE", async () => {
    const s = await startBrokerServer({ broker: fx.broker, logger: pino({ level: "silent" }) });
    try {
      const c = new BrokerClient(`${s.url}/healthz/..`, { timeoutMs: 1000 });
      expect(c.url).toBe(s.url);
      const socks: Socket[] = [];
      const notBroker = createServer((sock) => {
        socks.push(sock);
        sock.end("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi");
      });
      await new Promise<void>((r) => notBroker.listen(0, "127.0.0.1", () => r()));
      const c2 = new BrokerClient(`http://127.0.0.1:${(notBroker.address() as { port: number }).port}`, { timeoutMs: 1000 });
      expect((await brokerError(c2.nonce())).code).toBe("BAD_RESPONSE");
      for (const k of socks) k.destroy();
      await new Promise((r) => notBroker.close(r));
    } finally {
      await s.close();
    }
  });
});
