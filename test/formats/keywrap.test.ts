import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { sha256 } from "@noble/hashes/sha2.js";
import { ascii, concat } from "../../host/formats/bytes.ts";
import { VeilFormatError } from "../../host/formats/errors.ts";
import { generateKeyPair } from "../../host/formats/hpke.ts";
import { keyReleaseInfo, unwrapKey, wrapKey } from "../../host/formats/keywrap.ts";
import { buildReportBody, encodeReportBody } from "../../host/formats/report.ts";
import { decodeWrappedKey } from "../../host/formats/wrapped-key.ts";

const runs = process.env.SLOW ? 100 : 15;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e.code;
    throw e;
  }
  return "OK";
}

const loader = generateKeyPair();
const tcHash = sha256(ascii("trust config"));
const nonce = new Uint8Array(32).fill(0x33);
const report = encodeReportBody(buildReportBody(loader.publicKey, tcHash, nonce));
const keyId = new Uint8Array(16).fill(0x44);
const dataKey = new Uint8Array(32).map((_, i) => i);
const self = { privateKey: loader.privateKey, trustConfigHash: tcHash };

describe("key release (§10)", () => {
  it("wraps to the loader of the report; the loader unwraps by rebuilding the report", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), (k, id) => {
        const wrapped = wrapKey({ report, keyId: id, dataKey: k });
        expect(wrapped.length).toBe(136);
        const wk = decodeWrappedKey(wrapped);
        expect(wk.keyId).toEqual(id);
        expect(wk.reportNonce).toEqual(nonce);
        expect(unwrapKey(wrapped, self)).toEqual({ keyId: id, dataKey: k });
      }),
      { numRuns: runs },
    );
  });

  it("@hpke/core opens a wrapped key with the §10 info and aad", async () => {
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
    const wrapped = wrapKey({ report, keyId, dataKey });
    const info = concat(ascii("veil key release v1"), Uint8Array.of(0), keyId, sha256(report));
    expect(keyReleaseInfo(keyId, report)).toEqual(info);
    const rc = await suite.createRecipientContext({
      recipientKey: await suite.kem.deserializePrivateKey(loader.privateKey.slice().buffer),
      enc: wrapped.slice(56, 88).buffer,
      info: info.buffer,
    });
    const pt = new Uint8Array(await rc.open(wrapped.slice(88).buffer, wrapped.slice(0, 56).buffer));
    expect(pt).toEqual(dataKey);
  });

  it("every single-byte flip of a wrapped key is rejected", () => {
    const wrapped = wrapKey({ report, keyId, dataKey });
    for (let i = 0; i < wrapped.length; i++) {
      const b = wrapped.slice();
      b[i] ^= 0x20;
      const code = codeOf(() => unwrapKey(b, self));
      expect([i, code]).toEqual([i, i < 8 ? (i < 6 ? "WRONG_KIND" : "UNSUPPORTED_VERSION") : "KEY_UNWRAP"]);
    }
    expect(codeOf(() => unwrapKey(wrapped.subarray(0, 135), self))).toBe("TRUNCATED");
  });

  it("fails for another loader, another trust configuration, another nonce or key id", () => {
    const wrapped = wrapKey({ report, keyId, dataKey });
    expect(codeOf(() => unwrapKey(wrapped, { privateKey: generateKeyPair().privateKey, trustConfigHash: tcHash }))).toBe("KEY_UNWRAP");
    expect(codeOf(() => unwrapKey(wrapped, { ...self, trustConfigHash: sha256(ascii("other")) }))).toBe("KEY_UNWRAP");
    const otherNonce = encodeReportBody(buildReportBody(loader.publicKey, tcHash, new Uint8Array(32).fill(1)));
    const w2 = wrapKey({ report: otherNonce, keyId, dataKey });
    // Splicing the first report's nonce into a key wrapped for another nonce fails.
    const spliced = w2.slice();
    spliced.set(nonce, 24);
    expect(codeOf(() => unwrapKey(spliced, self))).toBe("KEY_UNWRAP");
    expect(unwrapKey(w2, self).dataKey).toEqual(dataKey);
  });

  it("checks its inputs", () => {
    expect(codeOf(() => wrapKey({ report: report.subarray(1), keyId, dataKey }))).toBe("WRONG_KIND");
    expect(codeOf(() => wrapKey({ report, keyId: keyId.subarray(1), dataKey }))).toBe("BAD_LENGTH");
    expect(codeOf(() => wrapKey({ report, keyId, dataKey: new Uint8Array(16) }))).toBe("BAD_LENGTH");
    const lowOrder = encodeReportBody(buildReportBody(new Uint8Array(32), tcHash, nonce));
    expect(codeOf(() => wrapKey({ report: lowOrder, keyId, dataKey }))).toBe("BAD_KEY");
  });
});
