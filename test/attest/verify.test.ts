// The worker-side SoftwareAttester (host/trusted/attest.ts, the producer) → verifyEvidence (this
// folder, the verifier): the full verification passes, each SPEC §4.2 check fails with its own
// typed error, and skips are explicit, logged and recorded. Platform key files are tested with
// the producer, in test/trusted/attest.test.ts.
import { describe, expect, it } from "vitest";
import {
  AttestError,
  UNVERIFIED_QUOTE,
  compilePolicy,
  decodeEvidence,
  encodeEvidence,
  verifyEvidence,
  type Evidence,
  type VerifyPolicy,
} from "../../host/attest/index.ts";
import { SoftwareAttester, encodeEvidence as produceEvidence } from "../../host/trusted/attest.ts";
import { hex, makeReport, rand } from "./helpers.ts";

const code = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof AttestError) return e.code;
    throw e;
  }
  return "OK";
};

const attester = SoftwareAttester.generate();
const measurement = rand(32);
const workerCodeHash = rand(32);
const tch = rand(32);

async function setup(nonce = rand(32)) {
  const report = makeReport({ trustConfigHash: tch, nonce });
  const ev = await attester.attest(report, measurement, workerCodeHash);
  const warnings: string[] = [];
  const policy: VerifyPolicy = {
    trustedPlatformKeys: [attester.publicKey],
    acceptedMeasurements: [hex(measurement)],
    acceptedWorkerCodeHashes: [workerCodeHash],
    acceptedTrustConfigHashes: [hex(tch).toUpperCase()],
    expectedNonce: nonce,
    logger: { warn: (m) => warnings.push(m) },
  };
  const bytes = produceEvidence(ev);
  expect(hex(encodeEvidence(ev))).toBe(hex(bytes)); // the producer's encoder and this folder's agree byte for byte
  return { report, ev, bytes, policy, warnings, nonce };
}

describe("verifyEvidence with the software attester", () => {
  it("accepts evidence that passes every check, and returns the loader key", async () => {
    const { bytes, policy, report, warnings, nonce } = await setup();
    const v = verifyEvidence(bytes, policy);
    expect(Buffer.from(v.report).equals(Buffer.from(report))).toBe(true);
    expect(v.hpkePublicKey).toEqual(report.subarray(9, 41));
    expect(v.keyId).toBe(report[8]);
    expect(v.measurement).toBe(hex(measurement));
    expect(v.workerCodeHash).toBe(hex(workerCodeHash));
    expect(v.trustConfigHash).toBe(hex(tch));
    expect(v.nonce).toBe(hex(nonce));
    expect(v.platform).toBe("software");
    expect(v.platformKey).toBe(attester.publicKeyHex);
    expect(v.skipped).toEqual([]);
    expect(warnings).toEqual([]);
    // An Evidence object is accepted too (re-encoded under the same strict rules).
    expect(verifyEvidence(decodeEvidence(bytes), policy).skipped).toEqual([]);
  });

  it("wrong platform key: EVIDENCE_SIGNATURE", async () => {
    const { bytes, policy } = await setup();
    expect(code(() => verifyEvidence(bytes, { ...policy, trustedPlatformKeys: [SoftwareAttester.generate().publicKey] }))).toBe("EVIDENCE_SIGNATURE");
    expect(code(() => verifyEvidence(bytes, { ...policy, trustedPlatformKeys: undefined }))).toBe("EVIDENCE_SIGNATURE");
    // Another platform key signing the same binding is not trusted either.
    const { ev } = await setup();
    const other = await SoftwareAttester.generate().attest(ev.report, ev.measurement, ev.workerCodeHash);
    expect(code(() => verifyEvidence(encodeEvidence(other), policy))).toBe("EVIDENCE_SIGNATURE");
  });

  it("tampered signature, or any signed field changed after signing: EVIDENCE_SIGNATURE", async () => {
    const { ev, policy, nonce } = await setup();
    const sigBit = structuredClone(ev);
    (sigBit.platform as any).signature[10] ^= 1;
    expect(code(() => verifyEvidence(encodeEvidence(sigBit), policy))).toBe("EVIDENCE_SIGNATURE");
    // S >= L (malleated) is refused by the strict §2.3 verification.
    const mall = structuredClone(ev);
    (mall.platform as any).signature.fill(0xff, 32);
    expect(code(() => verifyEvidence(encodeEvidence(mall), policy))).toBe("EVIDENCE_SIGNATURE");
    // A measurement swapped in after signing (even an accepted one) breaks the signature.
    const accepted = rand(32);
    const swapped: Evidence = { ...ev, measurement: accepted };
    expect(code(() => verifyEvidence(encodeEvidence(swapped), { ...policy, acceptedMeasurements: [accepted] }))).toBe("EVIDENCE_SIGNATURE");
    const otherWorker: Evidence = { ...ev, workerCodeHash: rand(32) };
    expect(code(() => verifyEvidence(encodeEvidence(otherWorker), policy))).toBe("EVIDENCE_SIGNATURE");
    const otherReport: Evidence = { ...ev, report: makeReport({ trustConfigHash: tch, nonce }) };
    expect(code(() => verifyEvidence(encodeEvidence(otherReport), policy))).toBe("EVIDENCE_SIGNATURE");
  });

  it("measurement not in the set: MEASUREMENT_UNKNOWN", async () => {
    const { bytes, policy } = await setup();
    expect(code(() => verifyEvidence(bytes, { ...policy, acceptedMeasurements: [rand(32)] }))).toBe("MEASUREMENT_UNKNOWN");
    expect(code(() => verifyEvidence(bytes, { ...policy, acceptedMeasurements: [] }))).toBe("MEASUREMENT_UNKNOWN");
  });

  it("worker code hash not in the set: WORKER_CODE_UNKNOWN", async () => {
    const { bytes, policy } = await setup();
    expect(code(() => verifyEvidence(bytes, { ...policy, acceptedWorkerCodeHashes: [hex(rand(32))] }))).toBe("WORKER_CODE_UNKNOWN");
  });

  it("trust configuration not accepted: TRUST_CONFIG_UNKNOWN", async () => {
    const { bytes, policy } = await setup();
    expect(code(() => verifyEvidence(bytes, { ...policy, acceptedTrustConfigHashes: [rand(32)] }))).toBe("TRUST_CONFIG_UNKNOWN");
  });

  it("another nonce, or an old report: NONCE_MISMATCH", async () => {
    const { bytes, policy } = await setup();
    expect(code(() => verifyEvidence(bytes, { ...policy, expectedNonce: rand(32) }))).toBe("NONCE_MISMATCH");
    expect(code(() => verifyEvidence(bytes, { ...policy, expectedNonce: undefined }))).toBe("POLICY_INVALID");
    expect(code(() => verifyEvidence(bytes, { ...policy, expectedNonce: rand(31) }))).toBe("POLICY_INVALID");
  });

  it("malformed bytes: MALFORMED naming the field", async () => {
    const { bytes, policy } = await setup();
    const bad = bytes.slice();
    bad[16] ^= 1; // ReportBody key_id
    let e: unknown;
    try {
      verifyEvidence(bad, policy);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(AttestError);
    expect((e as AttestError).code).toBe("MALFORMED");
    expect((e as AttestError).field).toBe("evidence.report.key_id");
    expect(code(() => verifyEvidence(bytes.subarray(0, 100), policy))).toBe("MALFORMED");
    expect(code(() => verifyEvidence(new Uint8Array([...bytes, 0]), policy))).toBe("MALFORMED");
  });

  it("refuses a validly signed report whose HPKE key is of small order: MALFORMED", async () => {
    const { policy, nonce } = await setup();
    const { buildReportBody, encodeReportBody } = await import("../../host/formats/index.ts");
    for (const pk of [new Uint8Array(32), Uint8Array.of(1, ...new Uint8Array(31))]) {
      const report = encodeReportBody(buildReportBody(pk, tch, nonce));
      const bytes = encodeEvidence(await attester.attest(report, measurement, workerCodeHash));
      let e: unknown;
      try {
        verifyEvidence(bytes, policy);
      } catch (x) {
        e = x;
      }
      expect((e as AttestError).code).toBe("MALFORMED");
      expect((e as AttestError).field).toBe("evidence.report.hpke_public_key");
    }
  });

  it("reports the first failing check in SPEC §4.2 order", async () => {
    const { bytes, policy } = await setup();
    const allWrong = { ...policy, acceptedMeasurements: [], acceptedWorkerCodeHashes: [], acceptedTrustConfigHashes: [], expectedNonce: rand(32) };
    expect(code(() => verifyEvidence(bytes, { ...allWrong, trustedPlatformKeys: [] }))).toBe("EVIDENCE_SIGNATURE");
    expect(code(() => verifyEvidence(bytes, allWrong))).toBe("MEASUREMENT_UNKNOWN");
    expect(code(() => verifyEvidence(bytes, { ...allWrong, acceptedMeasurements: [measurement] }))).toBe("WORKER_CODE_UNKNOWN");
    expect(code(() => verifyEvidence(bytes, { ...allWrong, acceptedMeasurements: [measurement], acceptedWorkerCodeHashes: [workerCodeHash] }))).toBe(
      "TRUST_CONFIG_UNKNOWN",
    );
  });

  it("skips are explicit, logged once each, and recorded", async () => {
    const { bytes, policy, warnings } = await setup();
    const wrong = { ...policy, trustedPlatformKeys: [], acceptedMeasurements: [rand(32)], expectedNonce: rand(32) };
    expect(code(() => verifyEvidence(bytes, wrong))).toBe("EVIDENCE_SIGNATURE");
    expect(warnings).toEqual([]);
    const v = verifyEvidence(bytes, { ...wrong, skip: ["platform", "measurement", "nonce"] });
    expect(v.skipped).toEqual(["platform", "measurement", "nonce"]);
    expect(warnings.length).toBe(3);
    for (const [w, name] of warnings.map((w, i) => [w, v.skipped[i]])) expect(w).toMatch(new RegExp(`WARNING: SKIPPING the ${name} check`));
    // A skip covers only its own check.
    expect(code(() => verifyEvidence(bytes, { ...wrong, skip: ["platform", "nonce"] }))).toBe("MEASUREMENT_UNKNOWN");
    // Skipping the nonce removes the need for one.
    expect(verifyEvidence(bytes, { ...policy, expectedNonce: undefined, skip: ["nonce"] }).skipped).toEqual(["nonce"]);
    // Skipping a set's check removes the need for the set.
    expect(verifyEvidence(bytes, { ...policy, acceptedTrustConfigHashes: undefined as any, skip: ["trust_config_hash"] }).skipped).toEqual(["trust_config_hash"]);
  });

  it("a skip never hides malformed evidence", async () => {
    const { bytes, policy } = await setup();
    const bad = bytes.slice();
    bad[16] ^= 1;
    expect(code(() => verifyEvidence(bad, { ...policy, skip: ["platform", "measurement", "worker_code_hash", "trust_config_hash", "nonce"] }))).toBe("MALFORMED");
  });

  it("refuses an unusable policy", async () => {
    const { bytes, policy } = await setup();
    expect(code(() => verifyEvidence(bytes, { ...policy, skip: ["signature" as any] }))).toBe("POLICY_INVALID");
    expect(code(() => verifyEvidence(bytes, { ...policy, acceptedMeasurements: ["abc"] }))).toBe("POLICY_INVALID");
    expect(code(() => verifyEvidence(bytes, { ...policy, acceptedMeasurements: hex(measurement) as any }))).toBe("POLICY_INVALID");
    expect(code(() => verifyEvidence(bytes, { ...policy, acceptedWorkerCodeHashes: undefined as any }))).toBe("POLICY_INVALID");
    expect(code(() => verifyEvidence(bytes, { ...policy, allowUnverifiedQuote: "yes" as any }))).toBe("POLICY_INVALID");
  });

  it("a compiled policy gives the same answers", async () => {
    const { bytes, policy, nonce } = await setup();
    const c = compilePolicy(policy);
    expect(verifyEvidence(bytes, c, nonce).skipped).toEqual([]);
    expect(code(() => verifyEvidence(bytes, c, rand(32)))).toBe("NONCE_MISMATCH");
    expect(UNVERIFIED_QUOTE).toBe("quote_vendor_verification");
  });
});
