import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { concat } from "../../host/formats/bytes.ts";
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
import type { WeightsDescriptor } from "../../host/formats/manifest.ts";
import { Writer } from "../../host/formats/wire.ts";
import { codeOf, errOf } from "./helpers.ts";

const runs = process.env.SLOW ? 500 : 60;


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

  it("compares key_id, stream_id, chunk_size, chunk_count and plaintext_size with the descriptor (WEIGHTS_MISMATCH) and knows chunk lengths", () => {
    const h: WeightsHeader = { keyId: new Uint8Array(16).fill(1), streamId: new Uint8Array(16).fill(2), chunkSize: 1 << 16, chunkCount: 3, plaintextSize: (2 << 16) + 5 };
    const d: WeightsDescriptor = { keyId: h.keyId.slice(), streamId: h.streamId.slice(), plaintextSize: h.plaintextSize, chunkSize: h.chunkSize, chunkCount: 3, commitment: new Uint8Array(32), files: [] };
    expect(() => checkHeaderMatches(h, d)).not.toThrow();
    const other = new Uint8Array(16).fill(2);
    other[15] = 3;
    const cases: [Partial<WeightsDescriptor>, string, number][] = [
      [{ keyId: new Uint8Array(16) }, "weights_header.key_id", 0x0502],
      [{ streamId: other }, "weights_header.stream_id", 0x0503],
      [{ streamId: new Uint8Array(16) }, "weights_header.stream_id", 0x0503],
      [{ chunkSize: 1 << 17 }, "weights_header.chunk_size", 0x0504],
      [{ chunkCount: 4 }, "weights_header.chunk_count", 0x0505],
      [{ plaintextSize: 1 }, "weights_header.plaintext_size", 0x0506],
    ];
    for (const [over, field, fieldId] of cases) {
      const e = errOf(() => checkHeaderMatches(h, { ...d, ...over }));
      expect([over, e]).toMatchObject([over, { code: "WEIGHTS_MISMATCH", number: 34, field, fieldId, loaderCode: ((fieldId << 16) | 34) >>> 0 }]);
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
    for (let i = 39; i < 55; i++) expect(errOf(() => decodeEncapsulatedRequest(bytes.subarray(0, i)))).toMatchObject({ code: "BAD_LENGTH", fieldId: 0x0706 });
    expect(errOf(() => decodeEncapsulatedRequest(new Uint8Array((16 << 20) + 1)))).toMatchObject({ code: "TOO_LARGE", fieldId: 0x0706 });
    expect(codeOf(() => decodeEncapsulatedRequest(new Uint8Array(16 << 20)))).toBe("OK");
  });

  it("REQUEST_MAX bounds the whole message, header included (§8.1)", () => {
    const enc = new Uint8Array(32);
    const at = (ctLen: number) => ({ keyId: 1, kemId: 0x20, kdfId: 1, aeadId: 3, enc, ct: new Uint8Array(ctLen) });
    expect(encodeEncapsulatedRequest(at((16 << 20) - 39)).length).toBe(16 << 20);
    expect(errOf(() => encodeEncapsulatedRequest(at((16 << 20) - 38)))).toMatchObject({ code: "TOO_LARGE", fieldId: 0x0706 });
    const ok = encodeEncapsulatedRequest(at((16 << 20) - 39));
    expect(decodeEncapsulatedRequest(ok).ct.length).toBe((16 << 20) - 39);
    expect(codeOf(() => decodeEncapsulatedRequest(concat(ok, Uint8Array.of(0))))).toBe("TOO_LARGE");
  });
});
