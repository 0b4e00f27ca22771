// The broker's hash-chained audit log: the chain verifies, and an edited, deleted, inserted,
// reordered, cut or torn line is found, by line number. A broker will not append to a broken log.
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog, GENESIS, canonicalJson, createBroker, entryHash, verifyAuditLog, verifyAuditText } from "../../host/broker/index.ts";
import { evidenceFor, fixture, hex, policyFor, rand, tmp, type Fixture } from "./helpers.ts";

let fx: Fixture;
let text: string;
let lines: string[];

beforeAll(async () => {
  fx = fixture();
  // key_added, release, refusal (reused nonce), refusal (unknown key), key_added
  const n = fx.broker.issueNonce();
  const ev = await evidenceFor(fx.loader, n);
  await fx.broker.release({ keyId: fx.keyId, evidence: ev, nonce: n });
  await fx.broker.release({ keyId: fx.keyId, evidence: ev, nonce: n }).catch(() => {});
  const m = fx.broker.issueNonce();
  await fx.broker.release({ keyId: rand(16), evidence: await evidenceFor(fx.loader, m), nonce: m }).catch(() => {});
  fx.broker.addKey(rand(16), rand(32));
  text = readFileSync(join(fx.dir, "audit.log"), "utf8");
  lines = text.trimEnd().split("\n");
});
afterAll(() => fx.cleanup());

const join_ = (ls: string[]) => ls.join("\n") + "\n";

describe("audit log", () => {
  it("one canonical JSON line per event with the documented fields, chained from GENESIS", () => {
    expect(lines.length).toBe(5);
    const es = lines.map((l) => JSON.parse(l));
    expect(Object.keys(es[1]).sort()).toEqual(["event", "hash", "keyId", "measurement", "nonce", "outcome", "prev", "reason", "seq", "time", "trustConfigHash"]);
    expect(es.map((e) => e.event)).toEqual(["key_added", "release", "refusal", "refusal", "key_added"]);
    expect(es.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(es[0].prev).toBe(GENESIS);
    for (let i = 0; i < es.length; i++) {
      expect(lines[i]).toBe(canonicalJson(es[i]));
      const { hash, ...rest } = es[i];
      expect(entryHash(rest)).toBe(hash);
      if (i > 0) expect(es[i].prev).toBe(es[i - 1].hash);
    }
    expect(es[2].reason).toMatch(/^NONCE_REUSED: /);
    expect(es[3].reason).toMatch(/^KEY_UNKNOWN: /);
    const v = verifyAuditLog(join(fx.dir, "audit.log"));
    expect(v).toEqual({ ok: true, entries: 5, head: es[4].hash });
    expect(fx.broker.auditHead()).toBe(es[4].hash);
  });

  it("the hash is SHA-256(prev bytes ‖ canonical JSON without hash)", async () => {
    const { createHash } = await import("node:crypto");
    const e = JSON.parse(lines[1]);
    const { hash, ...rest } = e;
    const h = createHash("sha256").update(Buffer.from(e.prev, "hex")).update(canonicalJson(rest)).digest("hex");
    expect(h).toBe(hash);
  });

  it("detects an edited line, even one whose hash was recomputed", () => {
    const edited = lines.slice();
    edited[1] = edited[1].replace('"outcome":"released"', '"outcome":"refused"');
    expect(verifyAuditText(join_(edited))).toMatchObject({ ok: false, line: 2, entries: 1 });
    // The editor recomputes that line's hash: the next line's prev no longer matches.
    const e = JSON.parse(lines[2]);
    e.reason = "NONCE_EXPIRED: edited";
    const { hash: _h, ...rest } = e;
    e.hash = entryHash(rest);
    const rehashed = lines.slice();
    rehashed[2] = canonicalJson(e);
    const r = verifyAuditText(join_(rehashed));
    expect(r).toMatchObject({ ok: false, line: 4 });
    if (!r.ok) expect(r.reason).toMatch(/prev/);
    // Whitespace or key order changes are edits too.
    const spaced = lines.slice();
    spaced[0] = JSON.stringify(JSON.parse(lines[0]), null, 1).replace(/\n/g, "");
    expect(verifyAuditText(join_(spaced))).toMatchObject({ ok: false, line: 1 });
  });

  it("detects a deleted, inserted or reordered line", () => {
    expect(verifyAuditText(join_([...lines.slice(0, 2), ...lines.slice(3)]))).toMatchObject({ ok: false, line: 3 });
    expect(verifyAuditText(join_(lines.slice(1)))).toMatchObject({ ok: false, line: 1 });
    expect(verifyAuditText(join_([lines[0], lines[2], lines[1], lines[3], lines[4]]))).toMatchObject({ ok: false, line: 2 });
    expect(verifyAuditText(join_([...lines.slice(0, 3), lines[2], ...lines.slice(3)]))).toMatchObject({ ok: false, line: 4 });
    expect(verifyAuditText(join_([lines[0], lines[1], lines[3], lines[2], lines[4]]))).toMatchObject({ ok: false, line: 3 });
  });

  it("detects a cut end against an anchored head or count, and a torn last line", () => {
    const cut = join_(lines.slice(0, 4));
    expect(verifyAuditText(cut).ok).toBe(true); // a chain alone cannot see its own end...
    const head = JSON.parse(lines[4]).hash;
    expect(verifyAuditText(cut, { expectedHead: head })).toMatchObject({ ok: false, line: 4 });
    expect(verifyAuditText(cut, { expectedEntries: 5 })).toMatchObject({ ok: false, line: 5 });
    expect(verifyAuditText(text, { expectedHead: head, expectedEntries: 5 }).ok).toBe(true);
    const torn = text.slice(0, -20);
    expect(verifyAuditText(torn)).toMatchObject({ ok: false, line: 5, entries: 4 });
    expect(verifyAuditText("")).toEqual({ ok: true, entries: 0, head: GENESIS });
    expect(verifyAuditText("garbage\n")).toMatchObject({ ok: false, line: 1 });
  });

  it("a broker refuses to start on a broken log, and appends only with O_APPEND and fsync", () => {
    const { dir, cleanup } = tmp();
    try {
      const path = join(dir, "audit.log");
      const log = AuditLog.open(path);
      log.append({ event: "key_added", outcome: "ok", keyId: hex(rand(16)) });
      log.append({ event: "refusal", outcome: "refused", reason: "KEY_UNKNOWN: x", nonce: hex(rand(32)) });
      log.close();
      expect(verifyAuditLog(path)).toMatchObject({ ok: true, entries: 2 });
      // Secret-shaped input is refused by the appender (only hex of the right sizes goes in the key fields).
      const l2 = AuditLog.open(path);
      expect(() => l2.append({ event: "release", outcome: "released", keyId: "not hex" })).toThrow(TypeError);
      expect(() => l2.append({ event: "release", outcome: "released", nonce: hex(rand(16)) })).toThrow(TypeError);
      l2.close();
      const ls = readFileSync(path, "utf8").trimEnd().split("\n");
      writeFileSync(path, join_([ls[1], ls[0]]));
      expect(() => AuditLog.open(path)).toThrow(/AUDIT_BROKEN/);
      expect(() => createBroker({ dir, brokerKey: rand(32), policy: policyFor([]) })).toThrow(/AUDIT_BROKEN/);
      writeFileSync(path, join_(ls));
      appendFileSync(path, '{"seq":3');
      expect(() => AuditLog.open(path)).toThrow(/line 3: the last line is not terminated/);
    } finally {
      cleanup();
    }
  });
});
