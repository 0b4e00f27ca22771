import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ed25519 } from "@noble/curves/ed25519.js";
import wycheproof from "../vectors/wycheproof/ed25519_test.json" with { type: "json" };
import { compareBytes, concat, fromHex, toHex } from "../../host/formats/bytes.ts";
import { VeilFormatError } from "../../host/formats/errors.ts";
import { decodeSignatureBundle, encodeSignatureBundle, type SignatureEntry } from "../../host/formats/bundle.ts";
import { ED25519_L, verifyStrict } from "../../host/formats/ed25519.ts";
import { SIGNATURE_LABEL, assembleBundle, checkThreshold, generateReviewerKey, signManifest, signedMessage } from "../../host/formats/sign.ts";
import { encodeTrustConfig } from "../../host/formats/trust.ts";
import { buildManifest } from "../../host/formats/manifest-builder.ts";
import { Writer } from "../../host/formats/wire.ts";

const runs = process.env.SLOW ? 200 : 25;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e.code;
    throw e;
  }
  return "OK";
}

const manifestBytes = buildManifest({
  name: "demo",
  version: 3,
  graph: new Uint8Array([1, 2, 3]),
  inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 4 }] }],
  outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 4 }] }],
  weights: { keyId: new Uint8Array(16), streamId: new Uint8Array(16), plaintextSize: 0, chunkSize: 1 << 16, chunkCount: 1, commitment: new Uint8Array(32), files: [{ location: "w.bin", size: 0 }] },
}).bytes;

const reviewers = Array.from({ length: 5 }, (_, i) => generateReviewerKey(new Uint8Array(32).fill(i + 1)));
const trust = (k: number, keys = reviewers) => encodeTrustConfig({ threshold: k, reviewers: keys.map((r) => r.publicKey) }, { sort: true });

describe("SignatureBundle (§6)", () => {
  const arbEntry = fc.record({ publicKey: fc.uint8Array({ minLength: 32, maxLength: 32 }), signature: fc.uint8Array({ minLength: 64, maxLength: 64 }) });
  it("round-trips 1..32 entries", () => {
    fc.assert(
      fc.property(fc.array(arbEntry, { minLength: 1, maxLength: 32 }), (entries) => {
        const bytes = encodeSignatureBundle(entries);
        expect(bytes.length).toBe(9 + 96 * entries.length);
        expect(decodeSignatureBundle(bytes)).toEqual(entries);
      }),
      { numRuns: runs },
    );
  });

  it("rejects truncations, trailing bytes, counts 0 and 33, wrong kind and version", () => {
    const bytes = assembleBundle([signManifest(manifestBytes, reviewers[0]), signManifest(manifestBytes, reviewers[1])]);
    for (let i = 0; i < bytes.length; i++) expect(codeOf(() => decodeSignatureBundle(bytes.subarray(0, i)))).toBe("TRUNCATED");
    expect(codeOf(() => decodeSignatureBundle(concat(bytes, new Uint8Array(1))))).toBe("TRAILING_BYTES");
    expect(codeOf(() => decodeSignatureBundle(new Writer("t").magic("SG").u8(0).finish()))).toBe("BAD_LENGTH");
    expect(codeOf(() => decodeSignatureBundle(concat(new Writer("t").magic("SG").u8(33).finish(), new Uint8Array(33 * 96))))).toBe("BAD_LENGTH");
    expect(codeOf(() => encodeSignatureBundle([]))).toBe("BAD_LENGTH");
    const kind = bytes.slice();
    kind[4] = 0x54; // "TG"
    expect(codeOf(() => decodeSignatureBundle(kind))).toBe("WRONG_KIND");
    const ver = bytes.slice();
    ver[7] = 9;
    expect(codeOf(() => decodeSignatureBundle(ver))).toBe("UNSUPPORTED_VERSION");
  });
});

describe("signing (§6) and the host's threshold check (§6.1)", () => {
  it("signs the labelled manifest with pure Ed25519", () => {
    const e = signManifest(manifestBytes, reviewers[0]);
    expect(toHex(SIGNATURE_LABEL)).toBe(Buffer.from("veil manifest signature v1\0").toString("hex"));
    expect(ed25519.verify(e.signature, signedMessage(manifestBytes), e.publicKey)).toBe(true);
    expect(verifyStrict(e.publicKey, concat(SIGNATURE_LABEL, manifestBytes), e.signature)).toBe(true);
    expect(verifyStrict(e.publicKey, manifestBytes, e.signature)).toBe(false);
  });

  it("counts k distinct valid reviewer signatures", () => {
    const sigs = reviewers.map((r) => signManifest(manifestBytes, r));
    expect(checkThreshold(trust(3), assembleBundle(sigs.slice(0, 3)), manifestBytes)).toMatchObject({ ok: true, counted: 3, threshold: 3 });
    expect(checkThreshold(trust(3), assembleBundle(sigs.slice(0, 2)), manifestBytes)).toMatchObject({ ok: false, counted: 2 });
  });

  it("counts a repeated key once, a non-reviewer zero, and an invalid signature zero", () => {
    const sigs = reviewers.map((r) => signManifest(manifestBytes, r));
    const outsider = signManifest(manifestBytes, generateReviewerKey(new Uint8Array(32).fill(99)));
    const wrongMsg = signManifest(new Uint8Array([1]), reviewers[2]);
    const res = checkThreshold(trust(3, reviewers.slice(0, 3)), [sigs[0], sigs[0], outsider, wrongMsg, sigs[1]], manifestBytes);
    expect(res.entries.map((e) => e.status)).toEqual(["counted", "duplicate", "not-reviewer", "invalid", "counted"]);
    expect(res).toMatchObject({ ok: false, counted: 2 });
  });

  it("a key whose first entry was invalid still counts with a later valid one", () => {
    const bad: SignatureEntry = { publicKey: reviewers[0].publicKey, signature: new Uint8Array(64) };
    const res = checkThreshold(trust(1), [bad, signManifest(manifestBytes, reviewers[0])], manifestBytes);
    expect(res.entries.map((e) => e.status)).toEqual(["invalid", "counted"]);
    expect(res.ok).toBe(true);
  });

  it("parses all three inputs strictly first", () => {
    const b = assembleBundle([signManifest(manifestBytes, reviewers[0])]);
    expect(codeOf(() => checkThreshold(trust(1), b, concat(manifestBytes, new Uint8Array(1))))).toBe("TRAILING_BYTES");
    expect(codeOf(() => checkThreshold(trust(1).subarray(1), b, manifestBytes))).toBe("WRONG_KIND");
    expect(codeOf(() => checkThreshold(trust(1), b.subarray(0, 20), manifestBytes))).toBe("TRUNCATED");
  });

  it("any single-byte change to a signed manifest loses its signatures", () => {
    const sigs = reviewers.slice(0, 2).map((r) => signManifest(manifestBytes, r));
    fc.assert(
      fc.property(fc.nat(manifestBytes.length - 1), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const m = manifestBytes.slice();
        m[i] ^= x;
        const message = signedMessage(m);
        for (const s of sigs) expect(verifyStrict(s.publicKey, message, s.signature)).toBe(false);
      }),
      { numRuns: runs },
    );
  });
});

describe("strict Ed25519 verification (§2.3)", () => {
  it("agrees with Wycheproof: valid verifies, invalid does not", () => {
    let checked = 0;
    for (const g of wycheproof.testGroups) {
      const pk = fromHex(g.publicKey.pk);
      for (const t of g.tests) {
        let sig: Uint8Array;
        try {
          sig = fromHex(t.sig);
        } catch {
          sig = new Uint8Array(0);
        }
        expect([t.tcId, verifyStrict(pk, fromHex(t.msg), sig)]).toEqual([t.tcId, t.result === "valid"]);
        checked++;
      }
    }
    expect(checked).toBe(wycheproof.numberOfTests);
  });

  it("rejects S ≥ L (malleability) even when S − L would verify", () => {
    const r = reviewers[0];
    const msg = new Uint8Array([7]);
    const sig = ed25519.sign(msg, r.secretKey);
    let s = 0n;
    for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]);
    const s2 = s + ED25519_L;
    const mall = sig.slice();
    let v = s2;
    for (let i = 32; i < 64; i++) {
      mall[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    expect(verifyStrict(r.publicKey, msg, sig)).toBe(true);
    expect(verifyStrict(r.publicKey, msg, mall)).toBe(false);
  });

  it("rejects small-order A and R even when the cofactorless equation holds", () => {
    // A = R = identity and S = 0 satisfy [S]B = R + [k]A for every message.
    const identity = fromHex("0100000000000000000000000000000000000000000000000000000000000000");
    const sig = concat(identity, new Uint8Array(32));
    expect(verifyStrict(identity, new Uint8Array([1, 2]), sig)).toBe(false);
  });

  it("rejects R with the other sign bit, and non-canonical R encodings", () => {
    const r = reviewers[1];
    const msg = new Uint8Array([9]);
    const sig = ed25519.sign(msg, r.secretKey);
    const flipped = sig.slice();
    flipped[31] ^= 0x80; // −R: a different point, so the encoding comparison fails
    expect(verifyStrict(r.publicKey, msg, flipped)).toBe(false);
    expect(verifyStrict(r.publicKey, msg, sig)).toBe(true);
    const yIsP = fromHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
    expect(verifyStrict(r.publicKey, msg, concat(yIsP, sig.subarray(32)))).toBe(false);
  });

  it("key and signature lengths must be exact", () => {
    const r = reviewers[2];
    const sig = ed25519.sign(new Uint8Array(0), r.secretKey);
    expect(verifyStrict(r.publicKey.subarray(1), new Uint8Array(0), sig)).toBe(false);
    expect(verifyStrict(r.publicKey, new Uint8Array(0), sig.subarray(1))).toBe(false);
    expect(verifyStrict(r.publicKey, new Uint8Array(0), concat(sig, new Uint8Array(1)))).toBe(false);
  });

  it("reviewer keys sort bytewise in trust configs built by tools", () => {
    const tc = trust(2);
    const keys = reviewers.map((r) => r.publicKey).sort(compareBytes);
    expect(tc.subarray(10, 42)).toEqual(keys[0]);
  });
});
