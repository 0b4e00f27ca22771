// The evidence producer inside the trusted worker (host/trusted/attest.ts): its binding and
// encoder against host/attest's independent implementation, platform key files, the
// configfs-tsm attester against a fake configfs (moved here from test/attest with the code), and
// a real worker's `evidence(nonce)` verified by host/attest verifyEvidence.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as V from "../../host/attest/index.ts";
import * as F from "../../host/formats/index.ts";
import {
  AttestFailure,
  ConfigfsTsmAttester,
  PLATFORM_KIND,
  SecretFileError,
  SoftwareAttester,
  createPlatformKeyFile,
  encodeEvidence,
  evidenceBinding,
  nodeTsmFs,
  reportDataOf,
  type TsmFs,
} from "../../host/trusted/attest.ts";
import { WorkerClient, WorkerError } from "../../host/worker/client.ts";
import { FakeConfigfs, hex, makeReport, rand, snpReport, tdxQuoteV4, tdxQuoteV5 } from "../attest/helpers.ts";

const ROOT = "/sys/kernel/config/tsm/report";
const measurement = rand(32);
const workerCodeHash = rand(32);

const failureCode = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof AttestFailure) return e.code;
    throw e;
  }
  return "OK";
};

const sevFs = () => new FakeConfigfs(ROOT, "sev_guest", (inblob) => snpReport(inblob));
const tdxFs = (v: 4 | 5 = 4) => new FakeConfigfs(ROOT, "tdx_guest", (inblob) => (v === 4 ? tdxQuoteV4(inblob) : tdxQuoteV5(inblob)));

const dir = mkdtempSync(join(tmpdir(), "veil-trusted-attest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("producer vs verifier: two implementations of host/attest/README.md §1", () => {
  it("the binding and every encoding are byte-identical to host/attest's", () => {
    const report = makeReport();
    expect(hex(evidenceBinding(report, measurement, workerCodeHash))).toBe(hex(V.evidenceBinding(report, measurement, workerCodeHash)));
    const sw = SoftwareAttester.generate().attest(report, measurement, workerCodeHash);
    const bytes = encodeEvidence(sw);
    expect(bytes.length).toBe(274);
    expect(hex(V.encodeEvidence(V.decodeEvidence(bytes)))).toBe(hex(bytes));
    for (const fs of [sevFs(), tdxFs(4), tdxFs(5)]) {
      fs.auxblob = rand(100);
      const ev = new ConfigfsTsmAttester({ root: ROOT, fs }).attest(report, measurement, workerCodeHash);
      const b = encodeEvidence(ev);
      expect(hex(V.encodeEvidence(V.decodeEvidence(b)))).toBe(hex(b));
    }
  });

  it("refuses inputs that are not a ReportBody and 32-byte hashes", () => {
    const a = SoftwareAttester.generate();
    expect(failureCode(() => a.attest(rand(105), measurement, workerCodeHash))).toBe("BAD_INPUT");
    expect(failureCode(() => a.attest(makeReport().subarray(1), measurement, workerCodeHash))).toBe("BAD_INPUT");
    expect(failureCode(() => a.attest(makeReport(), rand(31), workerCodeHash))).toBe("BAD_INPUT");
    a.dispose();
    expect(failureCode(() => a.attest(makeReport(), measurement, workerCodeHash))).toBe("BAD_INPUT");
  });
});

describe("software platform key files", () => {
  it("creates a 0600 key file (never replacing one) and loads the same key from it", () => {
    const p = join(dir, "platform.key");
    const pub = createPlatformKeyFile(p);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    const b = SoftwareAttester.fromKeyFile(p);
    expect(b.publicKeyHex).toBe(hex(pub));
    expect(SoftwareAttester.fromKeyFile(p, { create: true }).publicKeyHex).toBe(hex(pub));
    expect(() => SoftwareAttester.createKeyFile(p)).toThrow(/EEXIST/);
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]); // no temporary file left
    // Its signatures verify under its public key (host/attest's verifier).
    const report = makeReport();
    const bytes = encodeEvidence(b.attest(report, measurement, workerCodeHash));
    const v = V.verifyEvidence(bytes, {
      trustedPlatformKeys: [pub],
      acceptedMeasurements: [measurement],
      acceptedWorkerCodeHashes: [workerCodeHash],
      acceptedTrustConfigHashes: [report.subarray(41, 73)],
      expectedNonce: report.subarray(73),
    });
    expect(v.platformKey).toBe(hex(pub));
    expect(JSON.stringify(b)).toBe(JSON.stringify({ kind: "software", publicKey: hex(pub) }));
  });

  it("refuses a key file readable by group or others, or of the wrong size", () => {
    const p = join(dir, "loose.key");
    writeFileSync(p, rand(32), { mode: 0o644 });
    chmodSync(p, 0o644);
    expect(() => SoftwareAttester.fromKeyFile(p)).toThrow(SecretFileError);
    expect(() => SoftwareAttester.fromKeyFile(p)).toThrow(/chmod 600/);
    chmodSync(p, 0o640);
    expect(() => SoftwareAttester.fromKeyFile(p)).toThrow(/0640/);
    chmodSync(p, 0o600);
    expect(() => SoftwareAttester.fromKeyFile(p)).not.toThrow();
    const q = join(dir, "short.key");
    writeFileSync(q, rand(31), { mode: 0o600 });
    expect(() => SoftwareAttester.fromKeyFile(q)).toThrow(/not a 32-byte key/);
    const h = join(dir, "hex.key");
    const seed = rand(32);
    writeFileSync(h, `${hex(seed)}\n`, { mode: 0o600 });
    expect(SoftwareAttester.fromKeyFile(h).publicKeyHex).toBe(new SoftwareAttester(seed).publicKeyHex);
    expect(() => SoftwareAttester.fromKeyFile(join(dir, "missing.key"))).toThrow(/ENOENT/);
  });
});

describe("ConfigfsTsmAttester (fake configfs)", () => {
  it("writes the 64-byte binding to inblob, reads provider, outblob and auxblob, and removes its entry", () => {
    const fs = sevFs();
    fs.auxblob = rand(3 * 4096);
    let seenInblob: Uint8Array | undefined;
    fs.after = (op, path, f) => {
      if (op === "write" && basename(path) === "inblob") seenInblob = f.entries.get(path.slice(0, -"/inblob".length))!.inblob;
    };
    const a = new ConfigfsTsmAttester({ root: ROOT, fs, entryName: () => "veil-test" });
    expect(a.kind).toBeUndefined();
    const report = makeReport();
    const ev = a.attest(report, measurement, workerCodeHash);
    const binding = evidenceBinding(report, measurement, workerCodeHash);
    expect(seenInblob).toEqual(binding);
    expect(ev.platform.kind).toBe(PLATFORM_KIND.SEV_SNP_TSM);
    if (ev.platform.kind === PLATFORM_KIND.SOFTWARE) throw new Error("unreachable");
    expect(ev.platform.provider).toBe("sev_guest");
    expect(ev.platform.outblob.length).toBe(0x4a0);
    expect(ev.platform.outblob.subarray(0x50, 0x90)).toEqual(binding);
    expect(ev.platform.auxblob).toEqual(fs.auxblob);
    expect(a.kind).toBe(PLATFORM_KIND.SEV_SNP_TSM);
    expect(fs.entries.size).toBe(0);
    expect(fs.removed).toEqual([`${ROOT}/veil-test`]);
    expect(fs.log).toEqual([
      "mkdir veil-test", "read provider", "read generation", "write inblob", "read outblob", "read auxblob", "read generation", "rmdir veil-test",
    ]);
    expect(encodeEvidence(ev).length).toBeGreaterThan(0x4a0);
  });

  it("sets privlevel when asked, and counts it as a write", () => {
    const fs = sevFs();
    let level: string | undefined;
    fs.makeOutblob = (inblob, privlevel) => ((level = privlevel), snpReport(inblob));
    new ConfigfsTsmAttester({ root: ROOT, fs, privlevel: 2 }).attest(makeReport(), measurement, workerCodeHash);
    expect(level).toBe("2\n");
    expect(fs.log.filter((l) => l.startsWith("write"))).toEqual(["write privlevel", "write inblob"]);
    expect(() => new ConfigfsTsmAttester({ privlevel: 4 })).toThrow(/privlevel/);
  });

  it("uses a fresh entry for every attestation", () => {
    const fs = tdxFs();
    const a = new ConfigfsTsmAttester({ root: ROOT, fs });
    a.attest(makeReport(), measurement, workerCodeHash);
    a.attest(makeReport(), measurement, workerCodeHash);
    expect(new Set(fs.removed).size).toBe(2);
    expect(fs.entries.size).toBe(0);
    expect(a.kind).toBe(PLATFORM_KIND.TDX_TSM);
  });

  it("detects a generation change between its write and its read, retries with a fresh entry, then gives up", () => {
    const fs = sevFs();
    let hits = 0;
    fs.after = (op, path, f) => {
      if (op === "write" && basename(path) === "inblob" && hits++ === 0) f.writeFile(path, rand(64));
    };
    const report = makeReport();
    const ev = new ConfigfsTsmAttester({ root: ROOT, fs }).attest(report, measurement, workerCodeHash);
    expect(hits).toBeGreaterThan(1);
    expect(fs.removed.length).toBe(2);
    expect(reportDataOf(2, (ev.platform as { outblob: Uint8Array }).outblob)).toEqual(evidenceBinding(report, measurement, workerCodeHash));

    const hostile = sevFs();
    hostile.after = (op, path, f) => {
      if (op === "read" && basename(path) === "outblob") f.writeFile(path.replace(/outblob$/, "inblob"), rand(64));
    };
    const b = new ConfigfsTsmAttester({ root: ROOT, fs: hostile, maxAttempts: 2 });
    expect(failureCode(() => b.attest(makeReport(), measurement, workerCodeHash))).toBe("TSM_GENERATION");
    expect(hostile.removed.length).toBe(2);
    expect(hostile.entries.size).toBe(0);
  });

  it("checks its own result: a report that does not carry the binding is QUOTE_BINDING", () => {
    const fs = new FakeConfigfs(ROOT, "sev_guest", () => snpReport(rand(64)));
    expect(failureCode(() => new ConfigfsTsmAttester({ root: ROOT, fs }).attest(makeReport(), measurement, workerCodeHash))).toBe("QUOTE_BINDING");
    expect(fs.entries.size).toBe(0);
  });

  it("refuses an unknown provider before writing anything", () => {
    const fs = new FakeConfigfs(ROOT, "arm_cca_guest", (i) => i);
    expect(failureCode(() => new ConfigfsTsmAttester({ root: ROOT, fs }).attest(makeReport(), measurement, workerCodeHash))).toBe("TSM_PROVIDER");
    expect(fs.log).toEqual(["mkdir " + basename(fs.removed[0]), "read provider", "rmdir " + basename(fs.removed[0])]);
  });

  it("reports file-system failures as TSM_IO and still removes the entry", () => {
    const fs = sevFs();
    const failing: TsmFs = {
      mkdir: (p) => fs.mkdir(p),
      rmdir: (p) => fs.rmdir(p),
      exists: (p) => fs.exists(p),
      writeFile: (p, d) => fs.writeFile(p, d),
      readFile: (p) => {
        if (p.endsWith("outblob")) throw Object.assign(new Error("EIO"), { code: "EIO" });
        return fs.readFile(p);
      },
    };
    let err: unknown;
    try {
      new ConfigfsTsmAttester({ root: ROOT, fs: failing }).attest(makeReport(), measurement, workerCodeHash);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AttestFailure);
    expect((err as AttestFailure).code).toBe("TSM_IO");
    expect((err as Error).message).toMatch(/outblob failed \(EIO\)/);
    expect(fs.entries.size).toBe(0);
    const none = new ConfigfsTsmAttester({ root: join(tmpdir(), "veil-no-such-configfs", "report") });
    expect(failureCode(() => none.attest(makeReport(), measurement, workerCodeHash))).toBe("TSM_IO");
  });

  it("drives mkdir / write / read / rmdir through node:fs (a temp-dir configfs)", () => {
    const root = mkdtempSync(join(dir, "tsm-"));
    const kept: Record<string, Uint8Array> = {};
    let gen = 0;
    const fs: TsmFs = {
      mkdir: (p) => {
        mkdirSync(p);
        writeFileSync(join(p, "provider"), "tdx_guest\n");
        writeFileSync(join(p, "generation"), `${gen}\n`);
      },
      writeFile: (p, d) => {
        nodeTsmFs.writeFile(p, d);
        writeFileSync(join(p, "..", "generation"), `${++gen}\n`);
      },
      readFile: (p) => {
        if (basename(p) === "outblob") writeFileSync(p, tdxQuoteV5(readFileSync(join(p, "..", "inblob"))));
        return nodeTsmFs.readFile(p);
      },
      exists: (p) => nodeTsmFs.exists(p),
      rmdir: (p) => {
        for (const f of ["inblob", "outblob"]) kept[f] = new Uint8Array(readFileSync(join(p, f)));
        rmSync(p, { recursive: true });
      },
    };
    const report = makeReport();
    const ev = new ConfigfsTsmAttester({ root, fs, entryName: () => "e1" }).attest(report, measurement, workerCodeHash);
    expect(kept.inblob).toEqual(evidenceBinding(report, measurement, workerCodeHash));
    expect(ev.platform.kind).toBe(PLATFORM_KIND.TDX_TSM);
    expect((ev.platform as { outblob: Uint8Array }).outblob).toEqual(kept.outblob);
    expect((ev.platform as { auxblob: Uint8Array }).auxblob.length).toBe(0);
    expect(existsSync(join(root, "e1"))).toBe(false);
  });
});

describe("a real worker's evidence(nonce)", () => {
  const trust = F.encodeTrustConfig({ threshold: 1, reviewers: [F.generateReviewerKey().publicKey] });

  it("is the loader's report on that nonce, with the worker's own measurement and code hash, signed by its platform key", async () => {
    const keyPath = join(dir, "worker-platform.key");
    const pub = createPlatformKeyFile(keyPath);
    const c = WorkerClient.spawn({ env: { ...process.env, VEIL_PLATFORM_KEY: keyPath } });
    try {
      const h = await c.hello();
      expect(h.info).toMatchObject({ attester: "software", platformKey: hex(pub) });
      const first = F.decodeReportBody(await c.init(trust, rand(32)));
      for (let i = 0; i < 2; i++) {
        const nonce = new Uint8Array(randomBytes(32));
        const v = V.verifyEvidence(await c.evidence(nonce), {
          trustedPlatformKeys: [pub],
          acceptedMeasurements: [h.measurement],
          acceptedWorkerCodeHashes: [h.codeHash],
          acceptedTrustConfigHashes: [F.trustConfigHash(trust)],
          expectedNonce: nonce,
        });
        expect(v.nonce).toBe(hex(nonce));
        expect(v.hpkePublicKey).toEqual(first.hpkePublicKey);
        expect(v.skipped).toEqual([]);
      }
      // The loader's own refusal for a bad nonce comes through as a loader error.
      const e = await c.evidence(rand(31)).catch((x: unknown) => x);
      expect(e).toMatchObject({ kind: "loader", codeName: "BAD_LENGTH" });
    } finally {
      await c.close();
    }
  });

  it("a worker without an attester refuses with NO_ATTESTER; a bad platform key file stops it at start", async () => {
    const env = { ...process.env };
    delete env.VEIL_PLATFORM_KEY;
    delete env.VEIL_ATTESTER;
    const c = WorkerClient.spawn({ env });
    try {
      expect((await c.hello()).info.attester).toBe("none");
      await c.init(trust, rand(32));
      const e = (await c.evidence(rand(32)).catch((x: unknown) => x)) as WorkerError;
      expect(e).toBeInstanceOf(WorkerError);
      expect(e).toMatchObject({ kind: "worker", codeName: "NO_ATTESTER", retryable: false });
    } finally {
      await c.close();
    }
    const loose = join(dir, "open.key");
    writeFileSync(loose, rand(32), { mode: 0o644 });
    chmodSync(loose, 0o644);
    const logs: unknown[] = [];
    const bad = WorkerClient.spawn({ env: { ...env, VEIL_PLATFORM_KEY: loose }, onLog: (l) => void logs.push(l) });
    const exit = await bad.exited;
    expect(exit.code).toBe(66);
    expect(logs).toContainEqual(expect.objectContaining({ level: "error", event: "cannot load the platform key", reason: expect.stringMatching(/chmod 600/) }));
  });

  it("--attester tsm against a temp-dir configfs that is not a confidential guest: ATTEST_FAILED (TSM_IO), the worker keeps serving", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, VEIL_ATTESTER: "tsm", VEIL_TSM_ROOT: join(dir, "no-configfs") };
    delete env.VEIL_PLATFORM_KEY;
    const c = WorkerClient.spawn({ env });
    try {
      await c.init(trust, rand(32));
      const e = (await c.evidence(rand(32)).catch((x: unknown) => x)) as WorkerError;
      expect(e).toMatchObject({ kind: "worker", codeName: "ATTEST_FAILED" });
      expect(e.detail).toMatch(/TSM_IO: mkdir .* failed \(ENOENT\)/);
      expect((await c.hello()).protocol).toBe(1);
    } finally {
      await c.close();
    }
  });
});
