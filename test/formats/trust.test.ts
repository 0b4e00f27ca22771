import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { compareBytes, fromHex } from "../../host/formats/bytes.ts";
import { VeilFormatError } from "../../host/formats/errors.ts";
import { decodeTrustConfig, encodeTrustConfig, trustConfigHash, type TrustConfig } from "../../host/formats/trust.ts";
import { REPORT_BODY_SIZE, buildReportBody, decodeReportBody, encodeReportBody, reportKeyId } from "../../host/formats/report.ts";
import { isAcceptableEd25519Key } from "../../host/formats/ed25519.ts";
import { decodeSignatureBundle } from "../../host/formats/bundle.ts";
import { Writer } from "../../host/formats/wire.ts";

const runs = process.env.SLOW ? 300 : 30;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e.code;
    throw e;
  }
  return "OK";
}

const PUBS = Array.from({ length: 256 }, (_, i) => ed25519.getPublicKey(new Uint8Array(32).fill(i)));
const pub = (seed: number) => PUBS[seed];
const sortedKeys = (n: number, offset = 1) => Array.from({ length: n }, (_, i) => pub(i + offset)).sort(compareBytes);

const arbTrustConfig: fc.Arbitrary<TrustConfig> = fc
  .uniqueArray(fc.integer({ min: 1, max: 250 }), { minLength: 1, maxLength: 32 })
  .chain((seeds) => {
    const reviewers = seeds.map(pub).sort(compareBytes);
    return fc.integer({ min: 1, max: reviewers.length }).map((threshold) => ({ threshold, reviewers }));
  });

/** Raw TrustConfig bytes without validation, for negative tests. */
const rawTc = (threshold: number, keys: Uint8Array[], count = keys.length) => {
  const w = new Writer("t").magic("TC").u8(threshold).u8(count);
  keys.forEach((k) => w.bytes(k));
  return w.finish();
};

describe("TrustConfig (§3)", () => {
  it("round-trips random valid configurations", () => {
    fc.assert(
      fc.property(arbTrustConfig, (tc) => {
        const bytes = encodeTrustConfig(tc);
        expect(bytes.length).toBe(10 + 32 * tc.reviewers.length);
        expect(decodeTrustConfig(bytes)).toEqual(tc);
        expect(encodeTrustConfig(decodeTrustConfig(bytes))).toEqual(bytes);
      }),
      { numRuns: runs },
    );
  });

  it("rejects every truncation with TRUNCATED and trailing bytes with TRAILING_BYTES", () => {
    const bytes = encodeTrustConfig({ threshold: 2, reviewers: sortedKeys(3) });
    for (let i = 0; i < bytes.length; i++) expect(codeOf(() => decodeTrustConfig(bytes.subarray(0, i)))).toBe("TRUNCATED");
    expect(codeOf(() => decodeTrustConfig(Uint8Array.from([...bytes, 0])))).toBe("TRAILING_BYTES");
  });

  it("rejects count and threshold out of range", () => {
    const keys = sortedKeys(3);
    expect(codeOf(() => decodeTrustConfig(rawTc(1, [], 0)))).toBe("BAD_LENGTH");
    expect(codeOf(() => decodeTrustConfig(rawTc(1, [], 33)))).toBe("BAD_LENGTH");
    expect(codeOf(() => decodeTrustConfig(rawTc(0, keys)))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeTrustConfig(rawTc(4, keys)))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeTrustConfig(rawTc(3, keys)))).toBe("OK");
  });

  it("requires strictly ascending keys (order and duplicates are NOT_CANONICAL)", () => {
    const keys = sortedKeys(3);
    expect(codeOf(() => decodeTrustConfig(rawTc(1, [keys[1], keys[0], keys[2]])))).toBe("NOT_CANONICAL");
    expect(codeOf(() => decodeTrustConfig(rawTc(1, [keys[0], keys[0]])))).toBe("NOT_CANONICAL");
    expect(encodeTrustConfig({ threshold: 1, reviewers: [keys[2], keys[0], keys[1]] }, { sort: true })).toEqual(rawTc(1, keys));
    expect(codeOf(() => encodeTrustConfig({ threshold: 1, reviewers: [keys[2], keys[0]] }))).toBe("NOT_CANONICAL");
  });

  it("rejects unacceptable reviewer keys with BAD_KEY (§2.3 rules 3–5)", () => {
    const identity = fromHex("0100000000000000000000000000000000000000000000000000000000000000");
    const yTooBig = fromHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"); // y = p
    const negZeroX = fromHex("0100000000000000000000000000000000000000000000000000000000000080"); // x = 0 with sign bit
    const order4 = fromHex("0000000000000000000000000000000000000000000000000000000000000000"); // y = 0: order 4
    let notOnCurve: Uint8Array | undefined;
    for (let y = 2; !notOnCurve; y++) {
      const b = new Uint8Array(32);
      b[0] = y;
      try {
        ed25519.Point.fromBytes(b);
      } catch {
        notOnCurve = b;
      }
    }
    for (const k of [identity, yTooBig, negZeroX, order4, notOnCurve]) {
      expect(isAcceptableEd25519Key(k)).toBe(false);
      expect(codeOf(() => decodeTrustConfig(rawTc(1, [k])))).toBe("BAD_KEY");
    }
    expect(isAcceptableEd25519Key(pub(9))).toBe(true);
  });

  it("rejects wrong kind, unknown version and oversize input", () => {
    const bytes = encodeTrustConfig({ threshold: 1, reviewers: sortedKeys(1) });
    const kind = bytes.slice();
    kind[5] = 0x42; // "TB"
    expect(codeOf(() => decodeTrustConfig(kind))).toBe("WRONG_KIND");
    const version = bytes.slice();
    version[7] = 2;
    expect(codeOf(() => decodeTrustConfig(version))).toBe("UNSUPPORTED_VERSION");
    expect(codeOf(() => decodeTrustConfig(new Uint8Array(8 + 2 + 32 * 32 + 1)))).toBe("TOO_LARGE");
  });

  it("hashes with SHA-256 (bound into reports)", () => {
    const bytes = encodeTrustConfig({ threshold: 1, reviewers: sortedKeys(2) });
    expect(trustConfigHash(bytes)).toEqual(sha256(bytes));
  });
});

describe("ReportBody (§4)", () => {
  const arbReport = fc
    .tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }))
    .map(([pk, h, n]) => buildReportBody(pk, h, n));

  it("round-trips and is 105 bytes", () => {
    fc.assert(
      fc.property(arbReport, (rb) => {
        const bytes = encodeReportBody(rb);
        expect(bytes.length).toBe(REPORT_BODY_SIZE);
        expect(decodeReportBody(bytes)).toEqual(rb);
        expect(rb.keyId).toBe(sha256(rb.hpkePublicKey)[0]);
      }),
      { numRuns: runs },
    );
  });

  it("rejects truncations, trailing bytes, wrong kind and version", () => {
    const bytes = encodeReportBody(buildReportBody(new Uint8Array(32).fill(1), new Uint8Array(32), new Uint8Array(32).fill(2)));
    for (let i = 0; i < bytes.length; i++) expect(codeOf(() => decodeReportBody(bytes.subarray(0, i)))).toBe("TRUNCATED");
    expect(codeOf(() => decodeReportBody(Uint8Array.from([...bytes, 1])))).toBe("TRAILING_BYTES");
    const kind = bytes.slice();
    kind[4] = 0x4d;
    expect(codeOf(() => decodeReportBody(kind))).toBe("WRONG_KIND");
    const ver = bytes.slice();
    ver[6] = 1;
    expect(codeOf(() => decodeReportBody(ver))).toBe("UNSUPPORTED_VERSION");
  });

  it("rejects a key_id that is not the first byte of SHA-256(hpke_public_key)", () => {
    const pk = new Uint8Array(32).fill(3);
    const bytes = encodeReportBody({ keyId: (reportKeyId(pk) + 1) & 0xff, hpkePublicKey: pk, trustConfigHash: new Uint8Array(32), nonce: new Uint8Array(32) }, { validate: false });
    expect(codeOf(() => decodeReportBody(bytes))).toBe("BAD_VALUE");
    // The encoder validates too, reporting the failure as an encode error.
    expect(() => encodeReportBody({ keyId: (reportKeyId(pk) + 1) & 0xff, hpkePublicKey: pk, trustConfigHash: new Uint8Array(32), nonce: new Uint8Array(32) })).toThrow(
      /^failed to encode report: field key_id:/,
    );
  });
});

describe("§12.1 field ids of TrustConfig, ReportBody and SignatureBundle errors", () => {
  const idOf = (f: () => unknown): [string, number | undefined] | "OK" => {
    try {
      f();
    } catch (e) {
      if (e instanceof VeilFormatError) return [e.code, e.fieldId];
      throw e;
    }
    return "OK";
  };

  it("TrustConfig: magic 0x0101, threshold 0x0102, count 0x0103, reviewer_key 0x0104", () => {
    const keys = sortedKeys(3);
    const good = rawTc(2, keys);
    const kind = good.slice();
    kind[5] = 0x44;
    expect(idOf(() => decodeTrustConfig(kind))).toEqual(["WRONG_KIND", 0x0101]);
    expect(idOf(() => decodeTrustConfig(rawTc(4, keys)))).toEqual(["BAD_VALUE", 0x0102]);
    expect(idOf(() => decodeTrustConfig(rawTc(1, [], 0)))).toEqual(["BAD_LENGTH", 0x0103]);
    expect(idOf(() => decodeTrustConfig(rawTc(1, [keys[1], keys[0]])))).toEqual(["NOT_CANONICAL", 0x0104]);
    expect(idOf(() => decodeTrustConfig(good.subarray(0, good.length - 1)))).toEqual(["TRUNCATED", 0x0104]);
    // Over TRUST_CONFIG_MAX: §12.1 has no row for the TrustConfig's size, so the structure's id.
    expect(idOf(() => decodeTrustConfig(new Uint8Array(8 + 2 + 32 * 32 + 1)))).toEqual(["TOO_LARGE", 0x0100]);
  });

  it("ReportBody: the nonce is 0x0205; the other fields have no row (0x0200)", () => {
    const pk = new Uint8Array(32).fill(3);
    const good = encodeReportBody(buildReportBody(pk, new Uint8Array(32), new Uint8Array(32).fill(9)));
    expect(idOf(() => decodeReportBody(good.subarray(0, 104)))).toEqual(["TRUNCATED", 0x0205]);
    const badKeyId = good.slice();
    badKeyId[8] ^= 1;
    expect(idOf(() => decodeReportBody(badKeyId))).toEqual(["BAD_VALUE", 0x0200]);
  });

  it("SignatureBundle: magic 0x0401, count 0x0402, entries 0x0403", () => {
    expect(idOf(() => decodeSignatureBundle(new Writer("t").magic("SG").u8(0).finish()))).toEqual(["BAD_LENGTH", 0x0402]);
    expect(idOf(() => decodeSignatureBundle(new Writer("t").magic("SX").u8(1).finish()))).toEqual(["WRONG_KIND", 0x0401]);
    const cut = new Writer("t").magic("SG").u8(1).bytes(new Uint8Array(32 + 63)).finish();
    expect(idOf(() => decodeSignatureBundle(cut))).toEqual(["TRUNCATED", 0x0403]);
  });
});
