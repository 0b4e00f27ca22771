import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ascii, concat } from "../../host/formats/bytes.ts";
import { DTYPES, LIMITS } from "../../host/formats/constants.ts";
import { VeilFormatError } from "../../host/formats/errors.ts";
import {
  decodeInnerRequest,
  decodeInnerResponse,
  decodeStreamChunk,
  encodeInnerRequest,
  encodeInnerResponse,
  encodeStreamChunk,
  type GenerateRequest,
  type InnerRequest,
  type InnerResponse,
  type StreamChunk,
} from "../../host/formats/inner.ts";
import { checkSchema, decodeTensorList, encodeTensorList, tensorFromArray, type Tensor } from "../../host/formats/tensor.ts";
import type { Manifest } from "../../host/formats/manifest.ts";
import { Writer } from "../../host/formats/wire.ts";
import { codeOf, errOf as err, arbNameOf } from "./helpers.ts";

const runs = process.env.SLOW ? 500 : 60;


const arbName = arbNameOf(20);
const arbTensor: fc.Arbitrary<Tensor> = fc
  .record({ name: arbName, dtype: fc.constantFrom(...Object.keys(DTYPES).map(Number)), dims: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 4 }) })
  .chain((t) => {
    const n = t.dims.reduce((a, b) => a * b, 1) * DTYPES[t.dtype].size;
    const data = t.dtype === 9 ? fc.array(fc.integer({ min: 0, max: 1 }), { minLength: n, maxLength: n }).map((a) => Uint8Array.from(a)) : fc.uint8Array({ minLength: n, maxLength: n });
    return data.map((d) => ({ ...t, data: d }));
  });
const arbTensors = fc.array(arbTensor, { minLength: 1, maxLength: 16 });
const arbGenerate: fc.Arbitrary<GenerateRequest> = fc
  .record({
    prompt: fc.uint8Array({ minLength: 1, maxLength: 300 }),
    maxNewTokens: fc.integer({ min: 1, max: 4096 }),
    temperatureMilli: fc.integer({ min: 0, max: 10000 }),
    topK: fc.integer({ min: 0, max: 65536 }),
    seed: fc.option(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { nil: undefined }),
  })
  .map(({ seed, ...r }) => (seed === undefined ? { kind: 2 as const, ...r } : { kind: 2 as const, ...r, seed }));
const arbRequest: fc.Arbitrary<InnerRequest> = fc.oneof(arbTensors.map((inputs) => ({ kind: 1 as const, inputs })), arbGenerate);
const arbResponse: fc.Arbitrary<InnerResponse> = fc.oneof(
  arbTensors.map((outputs) => ({ kind: 1 as const, outputs })),
  fc.record({ kind: fc.constant(2 as const), text: fc.uint8Array({ maxLength: 300 }), tokens: fc.nat({ max: 0xffffffff }), stop: fc.constantFrom(1 as const, 2 as const) }),
);
const arbChunk: fc.Arbitrary<StreamChunk> = fc.record({ tokens: fc.nat({ max: 0xffffffff }), text: fc.uint8Array({ maxLength: 300 }), stop: fc.constantFrom(0 as const, 1 as const, 2 as const) });

/** A raw generate request (no validation anywhere). */
const rawGenerate = (o: { prompt?: Uint8Array; max?: number; temp?: number; topK?: number; hasSeed?: number; seed?: bigint } = {}) =>
  new Writer("t")
    .magic("RQ")
    .u8(2)
    .u32((o.prompt ?? ascii("hi")).length)
    .bytes(o.prompt ?? ascii("hi"))
    .u32(o.max ?? 10)
    .u32(o.temp ?? 0)
    .u32(o.topK ?? 0)
    .u8(o.hasSeed ?? 0)
    .u64(o.seed ?? 0n)
    .finish();
/** A raw tensor request with one tensor. */
const rawTensorReq = (o: { count?: number; name?: string; dtype?: number; dims?: number[]; data?: Uint8Array } = {}) => {
  const name = ascii(o.name ?? "x");
  const w = new Writer("t").magic("RQ").u8(1).u8(o.count ?? 1).u8(name.length).bytes(name).u8(o.dtype ?? 2);
  const dims = o.dims ?? [2];
  w.u8(dims.length);
  dims.forEach((d) => w.u32(d));
  return concat(w.finish(), o.data ?? new Uint8Array(2));
};

describe("inner request, response and stream chunk round trips", () => {
  it("requests", () => {
    fc.assert(
      fc.property(arbRequest, (r) => {
        const b = encodeInnerRequest(r);
        expect(decodeInnerRequest(b)).toEqual(r);
      }),
      { numRuns: runs },
    );
  });
  it("responses", () => {
    fc.assert(fc.property(arbResponse, (r) => void expect(decodeInnerResponse(encodeInnerResponse(r))).toEqual(r)), { numRuns: runs });
  });
  it("stream chunks", () => {
    fc.assert(fc.property(arbChunk, (c) => void expect(decodeStreamChunk(encodeStreamChunk(c))).toEqual(c)), { numRuns: runs });
  });
  it("decoders never throw anything but VeilFormatError on mutated input", () => {
    fc.assert(
      fc.property(arbRequest, arbResponse, fc.nat(), fc.integer({ min: 1, max: 255 }), (req, res, at, x) => {
        for (const [b, dec] of [
          [encodeInnerRequest(req), decodeInnerRequest],
          [encodeInnerResponse(res), decodeInnerResponse],
        ] as const) {
          const m = b.slice();
          m[at % m.length] ^= x;
          try {
            dec(m);
          } catch (e) {
            expect(e).toBeInstanceOf(VeilFormatError);
          }
        }
      }),
      { numRuns: runs },
    );
  });
});

describe("inner request strictness (§7)", () => {
  const tensorReq: InnerRequest = {
    kind: 1,
    inputs: [tensorFromArray("a", 1, [2, 2], new Float32Array([1, 2, 3, 4])), { name: "flag", dtype: 9, dims: [3], data: Uint8Array.of(0, 1, 1) }],
  };
  const genReq: InnerRequest = { kind: 2, prompt: ascii("hello"), maxNewTokens: 8, temperatureMilli: 700, topK: 40, seed: 42n };

  it("rejects every truncation and trailing bytes", () => {
    for (const r of [tensorReq, genReq, { ...genReq, seed: undefined }]) {
      const b = encodeInnerRequest(r);
      for (let i = 0; i < b.length; i++) expect([i, codeOf(() => decodeInnerRequest(b.subarray(0, i)))]).toEqual([i, "TRUNCATED"]);
      expect(codeOf(() => decodeInnerRequest(concat(b, Uint8Array.of(0))))).toBe("TRAILING_BYTES");
    }
  });

  it("encodes tensor elements little-endian, row-major", () => {
    const b = encodeInnerRequest(tensorReq);
    const f = Buffer.from(b);
    const at = f.indexOf(Buffer.from(new Float32Array([1, 2, 3, 4]).buffer));
    expect(at).toBeGreaterThan(0);
    expect(Array.from(b.subarray(at, at + 4))).toEqual([0, 0, 0x80, 0x3f]); // 1.0f LE
  });

  it("checks the tensor list and each tensor", () => {
    const cases: [Uint8Array, string][] = [
      [rawTensorReq(), "OK"],
      [rawTensorReq({ count: 0 }), "BAD_LENGTH"],
      [rawTensorReq({ count: 17 }), "BAD_LENGTH"],
      [rawTensorReq({ name: ".x" }), "BAD_VALUE"],
      [rawTensorReq({ name: "" }), "BAD_LENGTH"],
      [rawTensorReq({ dtype: 4 }), "BAD_VALUE"],
      [rawTensorReq({ dims: [1, 1, 1, 1, 1, 1, 1, 1, 1], data: new Uint8Array(1) }), "BAD_LENGTH"],
      [rawTensorReq({ dims: [2 ** 24 + 1], data: new Uint8Array(0) }), "TOO_LARGE"],
      [rawTensorReq({ dims: [2 ** 12, 2 ** 12, 2] }), "TOO_LARGE"],
      [rawTensorReq({ dims: [0], data: new Uint8Array(0) }), "OK"],
      [rawTensorReq({ dims: [], data: new Uint8Array(1) }), "OK"],
      [rawTensorReq({ dtype: 9, dims: [2], data: Uint8Array.of(1, 2) }), "BAD_VALUE"],
      [rawTensorReq({ dtype: 9, dims: [2], data: Uint8Array.of(1, 0) }), "OK"],
      [rawTensorReq({ dims: [3] }), "TRUNCATED"],
    ];
    for (const [b, code] of cases) expect(codeOf(() => decodeInnerRequest(b))).toBe(code);
    const kind = rawTensorReq();
    kind[8] = 3;
    expect(codeOf(() => decodeInnerRequest(kind))).toBe("BAD_VALUE");
    const magic = rawTensorReq();
    magic[5] = 0x50; // "RP"
    expect(codeOf(() => decodeInnerRequest(magic))).toBe("WRONG_KIND");
  });

  it("checks the generate request fields", () => {
    const cases: [Uint8Array, string][] = [
      [rawGenerate(), "OK"],
      [rawGenerate({ prompt: new Uint8Array(0) }), "BAD_LENGTH"],
      [rawGenerate({ prompt: new Uint8Array(LIMITS.PROMPT_MAX) }), "OK"],
      [rawGenerate({ prompt: new Uint8Array(LIMITS.PROMPT_MAX + 1) }), "BAD_LENGTH"],
      [rawGenerate({ max: 0 }), "BAD_VALUE"],
      [rawGenerate({ max: 4097 }), "BAD_VALUE"],
      [rawGenerate({ temp: 10000 }), "OK"],
      [rawGenerate({ temp: 10001 }), "BAD_VALUE"],
      [rawGenerate({ topK: 65536 }), "OK"],
      [rawGenerate({ topK: 65537 }), "BAD_VALUE"],
      [rawGenerate({ hasSeed: 2 }), "BAD_VALUE"],
      [rawGenerate({ hasSeed: 0, seed: 1n }), "BAD_VALUE"],
      [rawGenerate({ hasSeed: 1, seed: 0n }), "OK"],
    ];
    for (const [b, code] of cases) expect(codeOf(() => decodeInnerRequest(b))).toBe(code);
    // §1.1: PROMPT_MAX = 65536 does not fit a u16, so the prompt length is a u32.
    expect(Array.from(encodeInnerRequest(genReq).subarray(9, 13))).toEqual([0, 0, 0, 5]);
    expect(decodeInnerRequest(rawGenerate({ hasSeed: 1, seed: 0n }))).toMatchObject({ seed: 0n });
    expect("seed" in decodeInnerRequest(rawGenerate())).toBe(false);
  });

  it("withholds plaintext values from messages", () => {
    const e = err(() => decodeInnerRequest(rawGenerate({ max: 987654 })))!;
    expect(e).toMatchObject({ code: "BAD_VALUE", field: "inner_request.max_new_tokens", fieldId: 0x0804 });
    expect(e.message).not.toContain("987654");
  });

  it("checks requests against the program when given one (§7.3)", () => {
    const program = {
      mode: 1,
      inputs: [
        { name: "a", dtype: 1, dims: [{ min: 1, max: 4 }, { min: 2, max: 2 }] },
        { name: "flag", dtype: 9, dims: [{ min: 3, max: 3 }] },
      ],
    } as unknown as Manifest;
    const dec = (r: InnerRequest) => codeOf(() => decodeInnerRequest(encodeInnerRequest(r), program));
    expect(dec(tensorReq)).toBe("OK");
    const [a, flag] = tensorReq.kind === 1 ? tensorReq.inputs : [];
    expect(dec({ kind: 1, inputs: [flag, a] })).toBe("SCHEMA_VIOLATION");
    expect(dec({ kind: 1, inputs: [a] })).toBe("SCHEMA_VIOLATION");
    expect(dec({ kind: 1, inputs: [a, flag, flag] })).toBe("SCHEMA_VIOLATION");
    expect(dec({ kind: 1, inputs: [a, { ...flag, name: "other" }] })).toBe("SCHEMA_VIOLATION");
    expect(dec({ kind: 1, inputs: [{ ...a, dtype: 11, data: new Uint8Array(32) }, flag] })).toBe("SCHEMA_VIOLATION");
    expect(dec({ kind: 1, inputs: [{ ...a, dims: [4], data: new Uint8Array(16) }, flag] })).toBe("SCHEMA_VIOLATION");
    expect(dec({ kind: 1, inputs: [{ ...a, dims: [5, 2], data: new Uint8Array(40) }, flag] })).toBe("SCHEMA_VIOLATION");
    expect(dec({ kind: 1, inputs: [{ ...a, dims: [1, 2], data: new Uint8Array(8) }, flag] })).toBe("OK");
    expect(dec(genReq)).toBe("SCHEMA_VIOLATION");
    // Any field of a TensorRequest's inputs carries the id of the inputs row (§12.1).
    const e = err(() => decodeInnerRequest(encodeInnerRequest({ kind: 1, inputs: [a, { ...flag, name: "zzz" }] }), program))!;
    expect(e).toMatchObject({ code: "SCHEMA_VIOLATION", field: "inner_request.inputs[1].name", fieldId: 0x0803, loaderCode: 0x08030034 });
    expect(err(() => decodeInnerRequest(encodeInnerRequest(genReq), program))).toMatchObject({ code: "SCHEMA_VIOLATION", fieldId: 0x0802 });

    const gen = { mode: 2, generate: { maxNewTokens: 8, tokens: new Array(40).fill(ascii("x")) } } as unknown as Manifest;
    expect(codeOf(() => decodeInnerRequest(encodeInnerRequest(genReq), gen))).toBe("OK");
    expect(err(() => decodeInnerRequest(encodeInnerRequest({ ...genReq, maxNewTokens: 9 } as InnerRequest), gen))).toMatchObject({ code: "BAD_VALUE", fieldId: 0x0804 });
    expect(err(() => decodeInnerRequest(encodeInnerRequest({ ...genReq, topK: 41 } as InnerRequest), gen))).toMatchObject({ code: "BAD_VALUE", fieldId: 0x0806 });
    expect(codeOf(() => decodeInnerRequest(encodeInnerRequest(tensorReq), gen))).toBe("SCHEMA_VIOLATION");
  });

  it("bare tensor lists (accelerator output) round-trip and every error carries 0x0900", () => {
    fc.assert(fc.property(arbTensors, (l) => void expect(decodeTensorList(encodeTensorList(l))).toEqual(l)), { numRuns: runs });
    const b = encodeTensorList([tensorFromArray("y", 6, [2], new Int32Array([1, 2]))]);
    for (let i = 0; i < b.length; i++) expect(err(() => decodeTensorList(b.subarray(0, i)))).toMatchObject({ code: "TRUNCATED", fieldId: 0x0900 });
    expect(err(() => decodeTensorList(b.subarray(0, b.length - 1)))).toMatchObject({ field: "accelerator_output.tensors[0].data", fieldId: 0x0900 });
    const dtype = b.slice();
    dtype[3] = 99;
    expect(err(() => decodeTensorList(dtype))).toMatchObject({ code: "BAD_VALUE", field: "accelerator_output.tensors[0].dtype", fieldId: 0x0900 });
    expect(err(() => decodeTensorList(Uint8Array.of(0)))).toMatchObject({ code: "BAD_LENGTH", fieldId: 0x0900, loaderCode: 0x09000003 });
    expect(err(() => decodeTensorList(concat(b, Uint8Array.of(0))))).toMatchObject({ code: "TRAILING_BYTES", fieldId: 0x0900 });
  });

  it("validates accelerator outputs with ACCELERATOR_FAILED", () => {
    const specs = [{ name: "y", dtype: 1, dims: [{ min: 1, max: 2 }] }];
    expect(() => checkSchema([tensorFromArray("y", 1, [2], new Float32Array(2))], specs, { structure: "accelerator_output", prefix: "", code: "ACCELERATOR_FAILED" })).not.toThrow();
    const e = err(() => checkSchema([tensorFromArray("y", 1, [3], new Float32Array(3))], specs, { structure: "accelerator_output", prefix: "", code: "ACCELERATOR_FAILED" }))!;
    expect(e).toMatchObject({ code: "ACCELERATOR_FAILED", number: 64, field: "accelerator_output.tensors[0].dims", fieldId: 0x0900, loaderCode: 0x09000040 });
  });

  it("encoders refuse what decoders reject", () => {
    expect(codeOf(() => encodeInnerRequest({ kind: 1, inputs: [] }))).toBe("BAD_LENGTH");
    expect(codeOf(() => encodeInnerRequest({ kind: 1, inputs: [{ name: "a", dtype: 1, dims: [2], data: new Uint8Array(7) }] }))).toBe("BAD_LENGTH");
    expect(codeOf(() => encodeInnerRequest({ kind: 1, inputs: [{ name: "a", dtype: 9, dims: [1], data: Uint8Array.of(7) }] }))).toBe("BAD_VALUE");
    expect(codeOf(() => encodeInnerRequest({ ...genReq, temperatureMilli: 10001 } as InnerRequest))).toBe("BAD_VALUE");
    expect(codeOf(() => encodeInnerRequest({ ...genReq, prompt: new Uint8Array(0) } as InnerRequest))).toBe("BAD_LENGTH");
  });
});

describe("inner response and stream chunk strictness", () => {
  it("bounds the whole InnerResponse plaintext by RESPONSE_MAX (§13), not only its text", () => {
    // magic 8, kind 1, text length 4, tokens 4, stop 1: 18 bytes around the text.
    const fits = encodeInnerResponse({ kind: 2, text: new Uint8Array(LIMITS.RESPONSE_MAX - 18), tokens: 1, stop: 2 });
    expect(fits.length).toBe(LIMITS.RESPONSE_MAX);
    expect(decodeInnerResponse(fits)).toMatchObject({ kind: 2, tokens: 1, stop: 2 });
    // text<0..RESPONSE_MAX> alone would allow this one; the plaintext limit does not.
    expect(codeOf(() => encodeInnerResponse({ kind: 2, text: new Uint8Array(LIMITS.RESPONSE_MAX - 17), tokens: 1, stop: 2 }))).toBe("TOO_LARGE");
    const over = new Writer("t").magic("RP").u8(2).u32(LIMITS.RESPONSE_MAX - 17).bytes(new Uint8Array(LIMITS.RESPONSE_MAX - 17)).u32(1).u8(2).finish();
    expect(codeOf(() => decodeInnerResponse(over))).toBe("TOO_LARGE");
    // Two tensors each within TENSOR_MAX, together over RESPONSE_MAX.
    const half = { name: "h", dtype: 2, dims: [8 << 20], data: new Uint8Array(8 << 20) };
    expect(codeOf(() => encodeInnerResponse({ kind: 1, outputs: [half, { ...half, name: "i" }] }))).toBe("TOO_LARGE");
  });

  it("rejects truncations and trailing bytes", () => {
    const all: [Uint8Array, (b: Uint8Array) => unknown][] = [
      [encodeInnerResponse({ kind: 2, text: ascii("hi"), tokens: 2, stop: 1 }), decodeInnerResponse],
      [encodeInnerResponse({ kind: 1, outputs: [tensorFromArray("y", 6, [2], new Int32Array([5, 6]))] }), decodeInnerResponse],
      [encodeStreamChunk({ tokens: 1, text: ascii("abc"), stop: 0 }), decodeStreamChunk],
    ];
    for (const [b, dec] of all) {
      for (let i = 0; i < b.length; i++) expect(codeOf(() => dec(b.subarray(0, i)))).toBe("TRUNCATED");
      expect(codeOf(() => dec(concat(b, Uint8Array.of(1))))).toBe("TRAILING_BYTES");
    }
  });

  it("checks kind, stop and the text length prefixes (u32)", () => {
    const text = (stop: number, kind = 2) => new Writer("t").magic("RP").u8(kind).u32(2).bytes(ascii("hi")).u32(1).u8(stop).finish();
    expect(codeOf(() => decodeInnerResponse(text(1)))).toBe("OK");
    expect(codeOf(() => decodeInnerResponse(text(0)))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeInnerResponse(text(3)))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeInnerResponse(text(1, 3)))).toBe("BAD_VALUE");
    const big = new Writer("t").magic("RP").u8(2).u32(LIMITS.RESPONSE_MAX + 1).finish();
    expect(codeOf(() => decodeInnerResponse(big))).toBe("BAD_LENGTH");
    const chunk = (stop: number, len = 1) => new Writer("t").magic("RC").u32(1).u32(len).bytes(new Uint8Array(Math.min(len, 4))).u8(stop).finish();
    expect(codeOf(() => decodeStreamChunk(chunk(2)))).toBe("OK");
    expect(codeOf(() => decodeStreamChunk(chunk(3)))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeStreamChunk(chunk(0, 2 ** 24)))).toBe("BAD_LENGTH");
    // §8.4 text<0..2^24-33>, u32 length: 2^24-33 is accepted (then the text is missing), 2^24-32 is not.
    expect(codeOf(() => decodeStreamChunk(chunk(0, 2 ** 24 - 33)))).toBe("TRUNCATED");
    expect(codeOf(() => decodeStreamChunk(chunk(0, 2 ** 24 - 32)))).toBe("BAD_LENGTH");
    expect(Array.from(encodeStreamChunk({ tokens: 1, text: ascii("ab"), stop: 0 }).subarray(12, 16))).toEqual([0, 0, 0, 2]);
    const wrong = chunk(0);
    wrong[5] = 0x50;
    expect(codeOf(() => decodeStreamChunk(wrong))).toBe("WRONG_KIND");
  });
});
