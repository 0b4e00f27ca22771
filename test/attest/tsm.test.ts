// ConfigfsTsmAttester against a fake configfs, and the verifier's handling of SEV-SNP and TDX
// evidence: REPORT_DATA located at the cited offsets, the binding checked, and a refusal unless
// allowUnverifiedQuote is set (noisily).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  AttestError,
  ConfigfsTsmAttester,
  PLATFORM_KIND,
  SNP,
  TDX,
  UNVERIFIED_QUOTE,
  encodeEvidence,
  evidenceBinding,
  nodeTsmFs,
  reportDataOf,
  verifyEvidence,
  type Evidence,
  type TsmFs,
  type VerifyPolicy,
} from "../../host/attest/index.ts";
import { FakeConfigfs, hex, makeReport, rand, snpReport, tdxQuoteV4, tdxQuoteV5 } from "./helpers.ts";

const ROOT = "/sys/kernel/config/tsm/report";
const measurement = rand(32);
const workerCodeHash = rand(32);
const tch = rand(32);

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (e instanceof AttestError) return e.code;
    throw e;
  }
  return "OK";
}

const sevFs = () => new FakeConfigfs(ROOT, "sev_guest", (inblob) => snpReport(inblob));
const tdxFs = (v: 4 | 5 = 4) => new FakeConfigfs(ROOT, "tdx_guest", (inblob) => (v === 4 ? tdxQuoteV4(inblob) : tdxQuoteV5(inblob)));

describe("ConfigfsTsmAttester (fake configfs)", () => {
  it("writes the 64-byte binding to inblob, reads provider, outblob and auxblob, and removes its entry", async () => {
    const fs = sevFs();
    fs.auxblob = rand(3 * 4096);
    let seenInblob: Uint8Array | undefined;
    fs.after = (op, path, f) => {
      if (op === "write" && basename(path) === "inblob") seenInblob = f.entries.get(path.slice(0, -"/inblob".length))!.inblob;
    };
    const a = new ConfigfsTsmAttester({ root: ROOT, fs, entryName: () => "veil-test" });
    expect(a.kind).toBeUndefined();
    const report = makeReport();
    const ev = await a.attest(report, measurement, workerCodeHash);
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
      "mkdir veil-test",
      "read provider",
      "read generation",
      "write inblob",
      "read outblob",
      "read auxblob",
      "read generation",
      "rmdir veil-test",
    ]);
    // And the evidence encodes.
    expect(encodeEvidence(ev).length).toBeGreaterThan(0x4a0);
  });

  it("sets privlevel when asked, and counts it as a write", async () => {
    const fs = sevFs();
    let level: string | undefined;
    fs.makeOutblob = (inblob, privlevel) => ((level = privlevel), snpReport(inblob));
    const a = new ConfigfsTsmAttester({ root: ROOT, fs, privlevel: 2 });
    await a.attest(makeReport(), measurement, workerCodeHash);
    expect(level).toBe("2\n");
    expect(fs.log.filter((l) => l.startsWith("write"))).toEqual(["write privlevel", "write inblob"]);
    expect(() => new ConfigfsTsmAttester({ privlevel: 4 })).toThrow(/privlevel/);
  });

  it("uses a fresh entry for every attestation", async () => {
    const fs = tdxFs();
    const a = new ConfigfsTsmAttester({ root: ROOT, fs });
    await a.attest(makeReport(), measurement, workerCodeHash);
    await a.attest(makeReport(), measurement, workerCodeHash);
    expect(new Set(fs.removed).size).toBe(2);
    expect(fs.entries.size).toBe(0);
    expect(a.kind).toBe(PLATFORM_KIND.TDX_TSM);
  });

  it("detects a generation change between its write and its read, retries with a fresh entry, then gives up", async () => {
    // Another writer rewrites inblob right after ours, once: the first attempt is discarded.
    const fs = sevFs();
    let hits = 0;
    fs.after = (op, path, f) => {
      if (op === "write" && basename(path) === "inblob" && hits++ === 0) void f.writeFile(path, rand(64));
    };
    const a = new ConfigfsTsmAttester({ root: ROOT, fs });
    const report = makeReport();
    const ev = await a.attest(report, measurement, workerCodeHash);
    expect(hits).toBeGreaterThan(1);
    expect(fs.removed.length).toBe(2);
    expect(reportDataOf(PLATFORM_KIND.SEV_SNP_TSM, (ev.platform as any).outblob)).toEqual(evidenceBinding(report, measurement, workerCodeHash));

    // A writer that always interferes: TSM_GENERATION after maxAttempts, every entry removed.
    const hostile = sevFs();
    hostile.after = (op, path, f) => {
      if (op === "read" && basename(path) === "outblob") void f.writeFile(path.replace(/outblob$/, "inblob"), rand(64));
    };
    const b = new ConfigfsTsmAttester({ root: ROOT, fs: hostile, maxAttempts: 2 });
    expect(await codeOf(b.attest(makeReport(), measurement, workerCodeHash))).toBe("TSM_GENERATION");
    expect(hostile.removed.length).toBe(2);
    expect(hostile.entries.size).toBe(0);
  });

  it("checks its own result: a report that does not carry the binding is QUOTE_BINDING", async () => {
    const fs = new FakeConfigfs(ROOT, "sev_guest", () => snpReport(rand(64)));
    expect(await codeOf(new ConfigfsTsmAttester({ root: ROOT, fs }).attest(makeReport(), measurement, workerCodeHash))).toBe("QUOTE_BINDING");
    expect(fs.entries.size).toBe(0);
  });

  it("refuses an unknown provider before writing anything", async () => {
    const fs = new FakeConfigfs(ROOT, "arm_cca_guest", (i) => i);
    expect(await codeOf(new ConfigfsTsmAttester({ root: ROOT, fs }).attest(makeReport(), measurement, workerCodeHash))).toBe("TSM_PROVIDER");
    expect(fs.log).toEqual(["mkdir " + basename(fs.removed[0]), "read provider", "rmdir " + basename(fs.removed[0])]);
  });

  it("reports file-system failures as TSM_IO and still removes the entry", async () => {
    const fs = sevFs();
    const failing: TsmFs = {
      ...fs,
      mkdir: (p) => fs.mkdir(p),
      rmdir: (p) => fs.rmdir(p),
      exists: (p) => fs.exists(p),
      writeFile: (p, d) => fs.writeFile(p, d),
      readFile: async (p) => {
        if (p.endsWith("outblob")) throw Object.assign(new Error("EIO"), { code: "EIO" });
        return fs.readFile(p);
      },
    };
    const e = await new ConfigfsTsmAttester({ root: ROOT, fs: failing }).attest(makeReport(), measurement, workerCodeHash).catch((x) => x);
    expect(e).toBeInstanceOf(AttestError);
    expect(e.code).toBe("TSM_IO");
    expect(e.message).toMatch(/outblob failed \(EIO\)/);
    expect(fs.entries.size).toBe(0);
    // No configfs at all (not a confidential guest).
    const none = new ConfigfsTsmAttester({ root: join(tmpdir(), "veil-no-such-configfs", "report") });
    expect(await codeOf(none.attest(makeReport(), measurement, workerCodeHash))).toBe("TSM_IO");
  });
});

describe("ConfigfsTsmAttester (temp-dir configfs on the real file system)", () => {
  const root = mkdtempSync(join(tmpdir(), "veil-tsm-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("drives mkdir / write / read / rmdir through node:fs", async () => {
    // A stand-in kernel: mkdir pre-creates the attribute files; reading outblob builds the report
    // from inblob; rmdir keeps a copy of the entry so the test can inspect it, then removes it.
    const kept: Record<string, Uint8Array> = {};
    let gen = 0;
    const fs: TsmFs = {
      mkdir: async (p) => {
        mkdirSync(p);
        writeFileSync(join(p, "provider"), "tdx_guest\n");
        writeFileSync(join(p, "generation"), `${gen}\n`);
      },
      writeFile: async (p, d) => {
        await nodeTsmFs.writeFile(p, d);
        writeFileSync(join(p, "..", "generation"), `${++gen}\n`);
      },
      readFile: async (p) => {
        if (basename(p) === "outblob") writeFileSync(p, tdxQuoteV5(readFileSync(join(p, "..", "inblob"))));
        return nodeTsmFs.readFile(p);
      },
      exists: (p) => nodeTsmFs.exists(p),
      rmdir: async (p) => {
        for (const f of ["inblob", "outblob"]) kept[f] = new Uint8Array(readFileSync(join(p, f)));
        rmSync(p, { recursive: true });
      },
    };
    const report = makeReport();
    const ev = await new ConfigfsTsmAttester({ root, fs, entryName: () => "e1" }).attest(report, measurement, workerCodeHash);
    const binding = evidenceBinding(report, measurement, workerCodeHash);
    expect(kept.inblob).toEqual(binding);
    expect(ev.platform.kind).toBe(PLATFORM_KIND.TDX_TSM);
    expect((ev.platform as any).outblob).toEqual(kept.outblob);
    expect((ev.platform as any).auxblob.length).toBe(0); // no auxblob file
    expect(existsSync(join(root, "e1"))).toBe(false);
  });
});

describe("verifier: configfs-tsm evidence", () => {
  const nonce = rand(32);
  const policyFor = (warnings: string[], extra: Partial<VerifyPolicy> = {}): VerifyPolicy => ({
    acceptedMeasurements: [measurement],
    acceptedWorkerCodeHashes: [workerCodeHash],
    acceptedTrustConfigHashes: [tch],
    expectedNonce: nonce,
    logger: { warn: (m) => warnings.push(m) },
    ...extra,
  });
  const evidenceFor = (kind: 2 | 3, build: (rd: Uint8Array) => Uint8Array, report = makeReport({ trustConfigHash: tch, nonce })): Evidence => ({
    report,
    measurement,
    workerCodeHash,
    platform: { kind, provider: kind === 2 ? "sev_guest" : "tdx_guest", outblob: build(evidenceBinding(report, measurement, workerCodeHash)), auxblob: new Uint8Array(0) },
  });

  const cases: [string, 2 | 3, (rd: Uint8Array) => Uint8Array, number][] = [
    ["SEV-SNP report v2", 2, (rd) => snpReport(rd, 2), SNP.REPORT_DATA_OFFSET],
    ["SEV-SNP report v5", 2, (rd) => snpReport(rd, 5), SNP.REPORT_DATA_OFFSET],
    ["TDX quote v4", 3, (rd) => tdxQuoteV4(rd), TDX.V4_REPORT_DATA_OFFSET],
    ["TDX quote v5 (TDX 1.0 body)", 3, (rd) => tdxQuoteV5(rd, 2), TDX.V5_REPORT_DATA_OFFSET],
    ["TDX quote v5 (TDX 1.5 body)", 3, (rd) => tdxQuoteV5(rd, 3), TDX.V5_REPORT_DATA_OFFSET],
  ];

  for (const [name, kind, build, offset] of cases) {
    it(`${name}: REPORT_DATA at ${offset}; refused without allowUnverifiedQuote; accepted noisily with it`, async () => {
      const warnings: string[] = [];
      const ev = evidenceFor(kind, build);
      const bytes = encodeEvidence(ev);
      expect(reportDataOf(kind, (ev.platform as any).outblob)).toEqual((ev.platform as any).outblob.subarray(offset, offset + 64));
      expect(await codeOf(() => verifyEvidence(bytes, policyFor(warnings)))).toBe("QUOTE_UNVERIFIED");
      expect(warnings).toEqual([]);
      const v = verifyEvidence(bytes, policyFor(warnings, { allowUnverifiedQuote: true }));
      expect(v.platform).toBe(kind === 2 ? "sev-snp" : "tdx");
      expect(v.skipped).toEqual([UNVERIFIED_QUOTE]);
      expect(warnings.length).toBe(1);
      expect(warnings[0]).toMatch(/UNVERIFIED .* quote/);
      // The other checks still apply.
      expect(await codeOf(() => verifyEvidence(bytes, policyFor([], { allowUnverifiedQuote: true, acceptedMeasurements: [rand(32)] })))).toBe("MEASUREMENT_UNKNOWN");
      expect(await codeOf(() => verifyEvidence(bytes, policyFor([], { allowUnverifiedQuote: true, expectedNonce: rand(32) })))).toBe("NONCE_MISMATCH");
      // A quote for another binding: QUOTE_BINDING, with or without the option.
      const other = evidenceFor(kind, () => build(rand(64)));
      expect(await codeOf(() => verifyEvidence(encodeEvidence(other), policyFor([], { allowUnverifiedQuote: true })))).toBe("QUOTE_BINDING");
      expect(await codeOf(() => verifyEvidence(encodeEvidence(other), policyFor([])))).toBe("QUOTE_BINDING");
      // A measurement changed after quoting breaks the binding even when accepted.
      const swapped = { ...ev, measurement: rand(32) };
      expect(
        await codeOf(() => verifyEvidence(encodeEvidence(swapped), policyFor([], { allowUnverifiedQuote: true, acceptedMeasurements: [swapped.measurement] }))),
      ).toBe("QUOTE_BINDING");
    });
  }

  it("refuses vendor blobs it cannot locate REPORT_DATA in: MALFORMED", async () => {
    const p = policyFor([], { allowUnverifiedQuote: true });
    const bad = async (kind: 2 | 3, outblob: Uint8Array) => {
      const ev = evidenceFor(kind, () => outblob);
      return codeOf(() => verifyEvidence(encodeEvidence(ev), p));
    };
    const rd = rand(64);
    expect(await bad(2, snpReport(rd).subarray(0, 0x49f))).toBe("MALFORMED");
    expect(await bad(2, snpReport(rd, 1))).toBe("MALFORMED");
    expect(await bad(2, snpReport(rd, 6))).toBe("MALFORMED");
    const q4 = tdxQuoteV4(rd);
    expect(await bad(3, q4.subarray(0, 48 + 584 + 3))).toBe("MALFORMED");
    const wrongTee = q4.slice();
    wrongTee[4] = 0;
    expect(await bad(3, wrongTee)).toBe("MALFORMED");
    const v3 = q4.slice();
    v3[0] = 3;
    expect(await bad(3, v3)).toBe("MALFORMED");
    const q5 = tdxQuoteV5(rd, 3);
    const badType = q5.slice();
    badType[48] = 1; // an SGX enclave report body
    expect(await bad(3, badType)).toBe("MALFORMED");
    const badSize = q5.slice();
    badSize[50] = 0x48; // 584 with type 3
    expect(await bad(3, badSize)).toBe("MALFORMED");
    expect(await bad(3, q5.subarray(0, 54 + 648))).toBe("MALFORMED");
  });

  it("end to end: fake configfs attester → bytes → verifier", async () => {
    const report = makeReport({ trustConfigHash: tch, nonce });
    for (const fs of [sevFs(), tdxFs(4), tdxFs(5)]) {
      const ev = await new ConfigfsTsmAttester({ root: ROOT, fs }).attest(report, measurement, workerCodeHash);
      const bytes = encodeEvidence(ev);
      expect(await codeOf(() => verifyEvidence(bytes, policyFor([])))).toBe("QUOTE_UNVERIFIED");
      expect(verifyEvidence(bytes, policyFor([], { allowUnverifiedQuote: true })).hpkePublicKey).toEqual(report.subarray(9, 41));
    }
    // Skipping "platform" for tsm evidence is explicit and recorded, and needs no allowUnverifiedQuote.
    const ev = await new ConfigfsTsmAttester({ root: ROOT, fs: sevFs() }).attest(report, measurement, workerCodeHash);
    const w: string[] = [];
    expect(verifyEvidence(encodeEvidence(ev), policyFor(w, { skip: ["platform"] })).skipped).toEqual(["platform"]);
    expect(w.length).toBe(1);
    expect(hex(report)).toBe(hex(ev.report));
  });
});
