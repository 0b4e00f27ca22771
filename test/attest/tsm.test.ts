// The verifier's handling of SEV-SNP and TDX evidence: REPORT_DATA located at the cited offsets,
// the binding checked, and a refusal unless allowUnverifiedQuote is set (noisily). The producer
// (the worker-side ConfigfsTsmAttester) is tested in test/trusted/attest.test.ts; here its bytes
// go through this folder's decoder and verifier.
import { describe, expect, it } from "vitest";
import {
  AttestError,
  SNP,
  TDX,
  UNVERIFIED_QUOTE,
  encodeEvidence,
  evidenceBinding,
  reportDataOf,
  verifyEvidence,
  type Evidence,
  type VerifyPolicy,
} from "../../host/attest/index.ts";
import { ConfigfsTsmAttester, encodeEvidence as produceEvidence } from "../../host/trusted/attest.ts";
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

  it("end to end: the worker-side configfs attester (fake configfs) → its bytes → this verifier", async () => {
    const report = makeReport({ trustConfigHash: tch, nonce });
    for (const fs of [sevFs(), tdxFs(4), tdxFs(5)]) {
      const ev = new ConfigfsTsmAttester({ root: ROOT, fs }).attest(report, measurement, workerCodeHash);
      const bytes = produceEvidence(ev);
      expect(hex(encodeEvidence(ev))).toBe(hex(bytes)); // two encoders, one encoding
      expect(await codeOf(() => verifyEvidence(bytes, policyFor([])))).toBe("QUOTE_UNVERIFIED");
      expect(verifyEvidence(bytes, policyFor([], { allowUnverifiedQuote: true })).hpkePublicKey).toEqual(report.subarray(9, 41));
    }
    // Skipping "platform" for tsm evidence is explicit and recorded, and needs no allowUnverifiedQuote.
    const ev = new ConfigfsTsmAttester({ root: ROOT, fs: sevFs() }).attest(report, measurement, workerCodeHash);
    const w: string[] = [];
    expect(verifyEvidence(produceEvidence(ev), policyFor(w, { skip: ["platform"] })).skipped).toEqual(["platform"]);
    expect(w.length).toBe(1);
    expect(hex(report)).toBe(hex(ev.report));
  });
});
