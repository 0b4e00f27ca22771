import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { concat } from "../../host/formats/bytes.ts";
import { VeilFormatError } from "../../host/formats/errors.ts";
import {
  WEIGHTS_HEADER_SIZE,
  checkHeaderMatches,
  chunkWireLength,
  decodeWeightsHeader,
  encodeWeightsHeader,
  sealedStreamLength,
  type WeightsHeader,
} from "../../host/formats/weights-header.ts";
import { WRAPPED_KEY_SIZE, decodeWrappedKey, encodeWrappedKey } from "../../host/formats/wrapped-key.ts";
import { decodeEncapsulatedRequest, encodeEncapsulatedRequest } from "../../host/formats/request.ts";
import { Writer } from "../../host/formats/wire.ts";

const runs = process.env.SLOW ? 500 : 60;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e.code;
    throw e;
  }
  return "OK";
}

const b = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const arbHeader: fc.Arbitrary<WeightsHeader> = fc
  .tuple(b(16), b(16), fc.integer({ min: 16, max: 24 }), fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 46 })))
  .map(([keyId, streamId, log, plaintextSize]) => ({
    keyId,
    streamId,
    chunkSize: 2 ** log,
    chunkCount: Math.max(1, Math.ceil(plaintextSize / 2 ** log)),
    plaintextSize,
  }));
const rawHeader = (chunkSize: number, chunkCount: bigint, plaintextSize: bigint) =>
  new Writer("t").magic("WS").bytes(new Uint8Array(32)).u32(chunkSize).u64(chunkCount).u64(plaintextSize).finish();

describe("WeightsHeader (§9)", () => {
  it("round-trips and is 60 bytes", () => {
    fc.assert(
      fc.property(arbHeader, (h) => {
        const bytes = encodeWeightsHeader(h);
        expect(bytes.length).toBe(WEIGHTS_HEADER_SIZE);
        expect(decodeWeightsHeader(bytes)).toEqual(h);
      }),
      { numRuns: runs },
    );
  });

  it("rejects truncations, trailing bytes, wrong kind and version", () => {
    const bytes = rawHeader(1 << 16, 1n, 5n);
    for (let i = 0; i < bytes.length; i++) expect(codeOf(() => decodeWeightsHeader(bytes.subarray(0, i)))).toBe("TRUNCATED");
    expect(codeOf(() => decodeWeightsHeader(concat(bytes, new Uint8Array(1))))).toBe("TRAILING_BYTES");
    const kind = bytes.slice();
    kind[4] = 0x4b; // "KS"
    expect(codeOf(() => decodeWeightsHeader(kind))).toBe("WRONG_KIND");
    const ver = bytes.slice();
    ver[6] = 0xff;
    expect(codeOf(() => decodeWeightsHeader(ver))).toBe("UNSUPPORTED_VERSION");
  });

  it("checks chunk_size, chunk_count and plaintext_size", () => {
    const cases: [Uint8Array, string][] = [
      [rawHeader(1 << 16, 1n, 0n), "OK"],
      [rawHeader(1 << 16, 0n, 0n), "NOT_CANONICAL"],
      [rawHeader(1 << 16, 2n, 1n << 16n), "NOT_CANONICAL"],
      [rawHeader(1 << 16, 2n, (1n << 16n) + 1n), "OK"],
      [rawHeader(1 << 24, 1n << 22n, 1n << 46n), "OK"],
      [rawHeader(1 << 24, (1n << 22n) + 1n, (1n << 46n) + 1n), "TOO_LARGE"],
      [rawHeader(3 << 16, 1n, 1n), "BAD_VALUE"],
      [rawHeader(1 << 15, 1n, 1n), "BAD_VALUE"],
      [rawHeader(1 << 25, 1n, 1n), "BAD_VALUE"],
      [rawHeader(0, 1n, 1n), "BAD_VALUE"],
      [rawHeader(1 << 16, 1n << 63n, 1n), "NOT_CANONICAL"],
    ];
    for (const [bytes, code] of cases) expect(codeOf(() => decodeWeightsHeader(bytes))).toBe(code);
  });

  it("compares with the descriptor (WEIGHTS_MISMATCH) and knows chunk lengths", () => {
    const h: WeightsHeader = { keyId: new Uint8Array(16).fill(1), streamId: new Uint8Array(16), chunkSize: 1 << 16, chunkCount: 3, plaintextSize: (2 << 16) + 5 };
    const d = { keyId: h.keyId, plaintextSize: h.plaintextSize, chunkSize: h.chunkSize, chunkCount: 3, commitment: new Uint8Array(64), files: [] };
    expect(() => checkHeaderMatches(h, d)).not.toThrow();
    for (const over of [{ keyId: new Uint8Array(16) }, { chunkSize: 1 << 17 }, { chunkCount: 4 }, { plaintextSize: 1 }]) {
      expect(codeOf(() => checkHeaderMatches(h, { ...d, ...over }))).toBe("WEIGHTS_MISMATCH");
    }
    expect([0, 1, 2].map((i) => chunkWireLength(h, i))).toEqual([(1 << 16) + 16, (1 << 16) + 16, 21]);
    expect(sealedStreamLength(h)).toBe(60 + h.plaintextSize + 48);
    expect(chunkWireLength({ ...h, chunkCount: 1, plaintextSize: 0 }, 0)).toBe(16);
  });
});

describe("WrappedKey (§10)", () => {
  const arbKey = fc.record({ keyId: b(16), reportNonce: b(32), enc: b(32), ct: b(48) });
  it("round-trips and is 136 bytes", () => {
    fc.assert(
      fc.property(arbKey, (k) => {
        const bytes = encodeWrappedKey(k);
        expect(bytes.length).toBe(WRAPPED_KEY_SIZE);
        expect(decodeWrappedKey(bytes)).toEqual(k);
      }),
      { numRuns: runs },
    );
  });
  it("rejects truncations, trailing bytes, wrong kind and version", () => {
    const bytes = encodeWrappedKey({ keyId: new Uint8Array(16), reportNonce: new Uint8Array(32), enc: new Uint8Array(32), ct: new Uint8Array(48) });
    for (let i = 0; i < bytes.length; i++) expect(codeOf(() => decodeWrappedKey(bytes.subarray(0, i)))).toBe("TRUNCATED");
    expect(codeOf(() => decodeWrappedKey(concat(bytes, new Uint8Array(1))))).toBe("TRAILING_BYTES");
    const kind = bytes.slice();
    kind[0] = 0x56;
    expect(codeOf(() => decodeWrappedKey(kind))).toBe("WRONG_KIND");
    const ver = bytes.slice();
    ver[7] = 0;
    expect(codeOf(() => decodeWrappedKey(ver))).toBe("UNSUPPORTED_VERSION");
    expect(codeOf(() => encodeWrappedKey({ keyId: new Uint8Array(15), reportNonce: new Uint8Array(32), enc: new Uint8Array(32), ct: new Uint8Array(48) }))).toBe("BAD_LENGTH");
  });
});

describe("EncapsulatedRequest framing (§8.1)", () => {
  const arbReq = fc.record({ keyId: fc.nat(255), kemId: fc.nat(0xffff), kdfId: fc.nat(0xffff), aeadId: fc.nat(0xffff), enc: b(32), ct: fc.uint8Array({ minLength: 16, maxLength: 200 }) });
  it("round-trips; ct runs to the end of the message", () => {
    fc.assert(
      fc.property(arbReq, (r) => {
        const bytes = encodeEncapsulatedRequest(r);
        expect(bytes.length).toBe(39 + r.ct.length);
        expect(decodeEncapsulatedRequest(bytes)).toEqual(r);
      }),
      { numRuns: runs },
    );
  });
  it("rejects a header cut short, a ct shorter than a tag, and oversize requests", () => {
    const bytes = encodeEncapsulatedRequest({ keyId: 1, kemId: 0x20, kdfId: 1, aeadId: 3, enc: new Uint8Array(32), ct: new Uint8Array(16) });
    for (let i = 0; i < 39; i++) expect(codeOf(() => decodeEncapsulatedRequest(bytes.subarray(0, i)))).toBe("TRUNCATED");
    for (let i = 39; i < 55; i++) expect(codeOf(() => decodeEncapsulatedRequest(bytes.subarray(0, i)))).toBe("BAD_LENGTH");
    expect(codeOf(() => decodeEncapsulatedRequest(new Uint8Array((16 << 20) + 1)))).toBe("TOO_LARGE");
    expect(codeOf(() => decodeEncapsulatedRequest(new Uint8Array(16 << 20)))).toBe("OK");
  });
});
