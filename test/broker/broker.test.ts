// The embedded key broker with a REAL loader (build/loader.wasm): release to a verified loader
// whose unwrap-key accepts the WrappedKey; refusals; the at-rest store; nonces.
import { chmodSync, readFileSync, readdirSync, statSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SoftwareAttester } from "../../host/attest/index.ts";
import {
  BrokerError,
  FileKeyStore,
  NonceTracker,
  createBroker,
  verifyAuditLog,
  type AuditEntry,
} from "../../host/broker/index.ts";
import * as F from "../../host/formats/index.ts";
import { LoaderError } from "../../host/trusted/loader-instance.ts";
import { contains, evidenceFor, fixture, hex, makeLoader, measurement, policyFor, rand, type Fixture } from "./helpers.ts";

const entries = (dir: string): AuditEntry[] =>
  readFileSync(join(dir, "audit.log"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as AuditEntry);

async function refusal(p: Promise<unknown>): Promise<BrokerError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof BrokerError) return e;
    throw e;
  }
  throw new Error("expected a BrokerError, the release succeeded");
}

let fx: Fixture | undefined;
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
});

describe("key release to a real loader", () => {
  it("releases the data key to a verified loader, whose unwrap-key accepts it", async () => {
    fx = fixture();
    const { broker, loader, keyId } = fx;
    const nonce = broker.issueNonce();
    expect(nonce.length).toBe(32);
    const evidence = await evidenceFor(loader, nonce);
    const wrapped = await broker.release({ keyId, evidence, nonce });
    expect(wrapped.length).toBe(F.WRAPPED_KEY_SIZE);
    const wk = F.decodeWrappedKey(wrapped);
    expect(wk.keyId).toEqual(keyId);
    expect(wk.reportNonce).toEqual(nonce);
    // A flipped byte anywhere in the WrappedKey makes the loader refuse it (so acceptance below means something).
    for (const i of [20, 60, 100, 135]) {
      const bad = wrapped.slice();
      bad[i] ^= 1;
      expect(() => loader.L.unwrapKey(bad)).toThrow(LoaderError);
    }
    expect(() => loader.L.unwrapKey(wrapped)).not.toThrow();

    // Another loader instance (other HPKE key), even with the same trust configuration, cannot open it.
    const other = makeLoader(loader.trustConfig);
    let e: unknown;
    try {
      other.L.unwrapKey(wrapped);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(LoaderError);
    expect((e as LoaderError).code).toBe(F.ERROR_CODES.KEY_UNWRAP);

    const log = entries(fx.dir);
    expect(log.map((x) => [x.event, x.outcome])).toEqual([
      ["key_added", "ok"],
      ["release", "released"],
    ]);
    const r = log[1];
    expect(r).toMatchObject({ keyId: hex(keyId), nonce: hex(nonce), trustConfigHash: hex(loader.trustConfigHash), reason: null, seq: 2 });
    expect(r.measurement).toBe(hex(measurement()));
    expect(verifyAuditLog(join(fx.dir, "audit.log"))).toMatchObject({ ok: true, entries: 2, head: broker.auditHead() });
  });

  it("accepts the key id as hex, and releases the same key to a second loader with its own nonce", async () => {
    fx = fixture();
    const second = makeLoader(fx.loader.trustConfig);
    const n = fx.broker.issueNonce();
    const w = await fx.broker.release({ keyId: hex(fx.keyId).toUpperCase(), evidence: await evidenceFor(second, n), nonce: n });
    expect(() => second.L.unwrapKey(w)).not.toThrow();
  });

  it("refuses, with typed errors, and logs every refusal", async () => {
    fx = fixture();
    const { broker, loader, keyId, dir } = fx;
    const cases: [string, () => Promise<unknown>][] = [];
    const go = async (expected: string, f: () => Promise<unknown>) => {
      const e = await refusal(f());
      expect(e.code, expected).toBe(expected);
      cases.push([expected, f]);
      return e;
    };

    // unknown key
    let n = broker.issueNonce();
    await go("KEY_UNKNOWN", async () => broker.release({ keyId: rand(16), evidence: await evidenceFor(loader, n), nonce: n }));
    // malformed evidence
    n = broker.issueNonce();
    const good = await evidenceFor(loader, n);
    await go("MALFORMED", async () => broker.release({ keyId, evidence: good.subarray(0, 200), nonce: n }));
    // evidence signed by an untrusted platform key
    n = broker.issueNonce();
    const rogue = SoftwareAttester.generate();
    await go("EVIDENCE_SIGNATURE", async () => broker.release({ keyId, evidence: await evidenceFor(loader, n, { attester: rogue }), nonce: n }));
    // another loader.wasm
    n = broker.issueNonce();
    await go("MEASUREMENT_UNKNOWN", async () => broker.release({ keyId, evidence: await evidenceFor(loader, n, { measurement: rand(32) }), nonce: n }));
    // other worker code
    n = broker.issueNonce();
    await go("WORKER_CODE_UNKNOWN", async () => broker.release({ keyId, evidence: await evidenceFor(loader, n, { workerCodeHash: rand(32) }), nonce: n }));
    // a loader with another trust configuration
    n = broker.issueNonce();
    await go("TRUST_CONFIG_UNKNOWN", async () => broker.release({ keyId, evidence: await evidenceFor(makeLoader(), n), nonce: n }));
    // evidence for another (issued) nonce than the one presented
    n = broker.issueNonce();
    const n2 = broker.issueNonce();
    await go("NONCE_MISMATCH", async () => broker.release({ keyId, evidence: await evidenceFor(loader, n2), nonce: n }));
    // a nonce the broker never issued
    const made = rand(32);
    await go("NONCE_UNKNOWN", async () => broker.release({ keyId, evidence: await evidenceFor(loader, made), nonce: made }));
    // reuse: a nonce is single use whatever the outcome (n was consumed by the NONCE_MISMATCH attempt)
    await go("NONCE_REUSED", async () => broker.release({ keyId, evidence: await evidenceFor(loader, n), nonce: n }));
    const ok = broker.issueNonce();
    const okEvidence = await evidenceFor(loader, ok);
    await broker.release({ keyId, evidence: okEvidence, nonce: ok });
    await go("NONCE_REUSED", async () => broker.release({ keyId, evidence: okEvidence, nonce: ok }));
    // bad requests
    await go("BAD_REQUEST", async () => broker.release({ keyId: "xyz", evidence: okEvidence, nonce: broker.issueNonce() }));
    await go("BAD_REQUEST", async () => broker.release({ keyId, evidence: okEvidence, nonce: rand(31) }));

    const log = entries(dir);
    const refusals = log.filter((x) => x.event === "refusal");
    expect(refusals.map((x) => x.reason!.split(":")[0])).toEqual(cases.map(([c]) => c));
    expect(refusals.every((x) => x.outcome === "refused")).toBe(true);
    // Claimed facts are recorded for a refusal too (here the rogue measurement), and nonces as given.
    const meas = refusals.find((x) => x.reason!.startsWith("MEASUREMENT_UNKNOWN"))!;
    expect(meas.measurement).toMatch(/^[0-9a-f]{64}$/);
    expect(meas.measurement).not.toBe(log.find((x) => x.event === "release")!.measurement);
    expect(refusals.find((x) => x.reason!.startsWith("NONCE_UNKNOWN"))!.nonce).toBe(hex(made));
    expect(log.filter((x) => x.event === "release").length).toBe(1);
    expect(verifyAuditLog(join(dir, "audit.log")).ok).toBe(true);
  });

  it("an expired nonce is refused (NONCE_EXPIRED), then forgotten (NONCE_UNKNOWN)", async () => {
    let now = 1_000_000;
    fx = fixture({ nonces: { ttlMs: 60_000, now: () => now } });
    const { broker, loader, keyId } = fx;
    const n = broker.issueNonce();
    const ev = await evidenceFor(loader, n);
    now += 60_000;
    expect((await refusal(broker.release({ keyId, evidence: ev, nonce: n }))).code).toBe("NONCE_EXPIRED");
    const m = broker.issueNonce();
    const evm = await evidenceFor(loader, m);
    now += 59_999;
    expect(await broker.release({ keyId, evidence: evm, nonce: m })).toHaveLength(136);
    const o = broker.issueNonce();
    const evo = await evidenceFor(loader, o);
    now += 2 * 60_000;
    broker.issueNonce(); // sweeps
    expect((await refusal(broker.release({ keyId, evidence: evo, nonce: o }))).code).toBe("NONCE_UNKNOWN");
    expect(entries(fx.dir).filter((x) => x.event === "refusal").map((x) => x.reason!.split(":")[0])).toEqual(["NONCE_EXPIRED", "NONCE_UNKNOWN"]);
  });

  it("records skipped checks in the release entry", async () => {
    fx = fixture();
    const warnings: string[] = [];
    fx.broker.close();
    fx.broker = fx.reopen({ policy: { ...policyFor([]), skip: ["trust_config_hash"], logger: { warn: (m) => warnings.push(m) } } });
    const n = fx.broker.issueNonce();
    const w = await fx.broker.release({ keyId: fx.keyId, evidence: await evidenceFor(makeLoader(), n), nonce: n });
    expect(w.length).toBe(136);
    expect(warnings.length).toBe(1);
    const last = entries(fx.dir).at(-1)!;
    expect([last.event, last.reason]).toEqual(["release", "released with checks skipped: trust_config_hash"]);
  });

  it("a closed broker refuses everything", async () => {
    fx = fixture();
    fx.broker.close();
    expect(() => fx!.broker.issueNonce()).toThrow(/BROKER_CLOSED/);
    expect((await refusal(fx.broker.release({ keyId: fx.keyId, evidence: rand(10), nonce: rand(32) }))).code).toBe("BROKER_CLOSED");
  });
});

describe("key store at rest", () => {
  it("never holds the plaintext data key, in any encoding, and is mode 0600", async () => {
    fx = fixture();
    const more = Array.from({ length: 5 }, () => [rand(16), rand(32)] as const);
    for (const [id, k] of more) fx.broker.addKey(id, k);
    const file = readFileSync(join(fx.dir, "keys.json"));
    for (const k of [fx.dataKey, ...more.map(([, k]) => k)]) expect(contains(file, k)).toBe(false);
    expect(contains(file, fx.brokerKey)).toBe(false);
    expect(statSync(join(fx.dir, "keys.json")).mode & 0o777).toBe(0o600);
    expect(statSync(fx.dir).mode & 0o077).toBe(0);
    // Only the store and the log: no temp files left behind.
    expect(readdirSync(fx.dir).sort()).toEqual(["audit.log", "keys.json"]);
    // Neither does the audit log.
    const audit = readFileSync(join(fx.dir, "audit.log"));
    for (const k of [fx.dataKey, fx.brokerKey]) expect(contains(audit, k)).toBe(false);
    const json = JSON.parse(file.toString());
    expect(json).toMatchObject({ format: "veil-broker-keystore", version: 1, aead: "xchacha20poly1305" });
    expect(Object.keys(json.keys)).toEqual([hex(fx.keyId), ...more.map(([id]) => hex(id))].sort());
  });

  it("survives a restart: a new broker over the same directory and key releases the same key", async () => {
    fx = fixture();
    fx.broker.close();
    fx.broker = fx.reopen();
    expect(fx.broker.keyIds()).toEqual([hex(fx.keyId)]);
    const n = fx.broker.issueNonce();
    const w = await fx.broker.release({ keyId: fx.keyId, evidence: await evidenceFor(fx.loader, n), nonce: n });
    expect(() => fx!.loader.L.unwrapKey(w)).not.toThrow();
    // The chain continues across the restart.
    expect(verifyAuditLog(join(fx.dir, "audit.log"))).toMatchObject({ ok: true, entries: 2 });
    // Nonces are not persisted: one issued before a restart is unknown after it.
    const before = fx.broker.issueNonce();
    fx.broker.close();
    fx.broker = fx.reopen();
    expect((await refusal(fx.broker.release({ keyId: fx.keyId, evidence: await evidenceFor(fx.loader, before), nonce: before }))).code).toBe("NONCE_UNKNOWN");
  });

  it("refuses a wrong broker key, a corrupted store, and a tampered entry", async () => {
    fx = fixture();
    fx.broker.close();
    expect(() => fx!.reopen({ brokerKey: rand(32) })).toThrow(/WRONG_BROKER_KEY/);
    const path = join(fx.dir, "keys.json");
    const json = JSON.parse(readFileSync(path, "utf8"));
    // An entry moved to another key id fails to open (AAD = key id).
    const other = hex(rand(16));
    json.keys[other] = json.keys[hex(fx.keyId)];
    writeFileSync(path, JSON.stringify(json));
    const s = FileKeyStore.open(path, fx.brokerKey);
    expect(() => s.get(F.fromHex(other))).toThrow(/STORE_CORRUPT/);
    expect(s.get(fx.keyId)).toEqual(fx.dataKey);
    s.close();
    writeFileSync(path, "{not json");
    expect(() => FileKeyStore.open(path, fx!.brokerKey)).toThrow(/STORE_CORRUPT/);
    fx.broker = fx.reopen({ dir: join(fx.dir, "fresh") });
  });

  it("addKey refuses duplicates unless replacing, and bad sizes", () => {
    fx = fixture();
    expect(() => fx!.broker.addKey(fx!.keyId, rand(32))).toThrow(/KEY_EXISTS/);
    fx.broker.addKey(fx.keyId, rand(32), { replace: true });
    expect(() => fx!.broker.addKey(rand(15), rand(32))).toThrow(/BAD_REQUEST/);
    expect(() => fx!.broker.addKey(rand(16), rand(31))).toThrow(/BAD_REQUEST/);
    expect(fx.broker.removeKey(fx.keyId)).toBe(true);
    expect(fx.broker.removeKey(fx.keyId)).toBe(false);
    expect(entries(fx.dir).map((e) => [e.event, e.reason])).toEqual([
      ["key_added", null],
      ["key_added", "replace"],
      ["key_removed", null],
    ]);
  });

  it("loads the broker key from a 0600 file, and refuses a looser one", () => {
    fx = fixture();
    const keyFile = join(fx.dir, "..", `${fx.dir.split("/").pop()}.key`);
    writeFileSync(keyFile, fx.brokerKey, { mode: 0o600 });
    fx.broker.close();
    fx.broker = fx.reopen({ brokerKey: undefined, brokerKeyFile: keyFile });
    expect(fx.broker.keyIds()).toEqual([hex(fx.keyId)]);
    fx.broker.close();
    writeFileSync(keyFile, fx.brokerKey, { mode: 0o644 });
    chmodSync(keyFile, 0o644);
    expect(() => fx!.reopen({ brokerKey: undefined, brokerKeyFile: keyFile })).toThrow(/chmod 600/);
    rmSync(keyFile); // a test secret: leave none behind in the shared temp dir
    fx.broker = fx.reopen();
  });
});

describe("nonces", () => {
  it("are 32 random bytes, single use, and bounded", () => {
    const t = new NonceTracker({ max: 3 });
    const ns = Array.from({ length: 5 }, () => t.issue());
    expect(new Set(ns.map(hex)).size).toBe(5);
    expect(t.size).toBe(3);
    expect(t.evicted).toBe(2);
    expect(() => t.consume(ns[0])).toThrow(/NONCE_UNKNOWN/);
    t.consume(ns[4]);
    expect(() => t.consume(ns[4])).toThrow(/NONCE_REUSED/);
    expect(() => t.consume(rand(16))).toThrow(/BAD_REQUEST/);
  });
});
