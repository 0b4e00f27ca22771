import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { sha256 } from "@noble/hashes/sha2.js";
import { ascii, concat } from "../../host/formats/bytes.ts";
import { LIMITS } from "../../host/formats/constants.ts";
import { VeilFormatError } from "../../host/formats/errors.ts";
import {
  decodeManifest,
  egressLimit,
  egressLimitExtension,
  encodeManifest,
  programDigest,
  type Dim,
  type Extension,
  type GenerateSpec,
  type Manifest,
  type TensorSpec,
  type WeightsDescriptor,
} from "../../host/formats/manifest.ts";
import { buildManifest, generateTensorSpecs } from "../../host/formats/manifest-builder.ts";
import { Writer } from "../../host/formats/wire.ts";
import { codeOf, errOf as err, arbNameOf } from "./helpers.ts";

const runs = process.env.SLOW ? 500 : 60;


// ---- arbitraries -------------------------------------------------------------------------------

const arbName = arbNameOf(63);
const arbProgramName = fc
  .tuple(fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789"), fc.array(fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789._-"), { maxLength: 63 }))
  .map(([h, t]) => h + t.join(""));
const arbDtype = fc.constantFrom(1, 2, 3, 5, 6, 7, 9, 10, 11);
const arbDim: fc.Arbitrary<Dim> = fc.tuple(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 0, max: 16 })).map(([min, extra]) => ({ min, max: min + extra }));
const arbSpecs = fc.uniqueArray(
  fc.record({ name: arbName, dtype: arbDtype, dims: fc.array(arbDim, { maxLength: 4 }) }),
  { minLength: 1, maxLength: 16, selector: (s) => s.name },
);
const arbExtensions: fc.Arbitrary<Extension[]> = fc
  .tuple(
    fc.uniqueArray(fc.integer({ min: 0, max: 0x7fff }), { maxLength: 4 }),
    fc.option(fc.integer({ min: 1, max: LIMITS.RESPONSE_MAX })),
    fc.array(fc.uint8Array({ maxLength: 20 }), { minLength: 4, maxLength: 4 }),
  )
  .map(([types, egress, datas]) => {
    const ext: Extension[] = types.map((type, i) => ({ type, data: datas[i] }));
    if (egress !== null) ext.push(egressLimitExtension(egress));
    return ext.sort((a, b) => a.type - b.type);
  });
const arbWeights: fc.Arbitrary<WeightsDescriptor> = fc
  .tuple(
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 46 })),
    fc.integer({ min: 16, max: 24 }),
    fc.uint8Array({ minLength: 32, maxLength: 32 }),
    fc.uniqueArray(arbName, { minLength: 1, maxLength: 64 }),
    fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 64, maxLength: 64 }),
  )
  .map(([keyId, streamId, plaintextSize, log, commitment, locations, cuts]) => {
    const chunkSize = 2 ** log;
    const n = plaintextSize === 0 ? 1 : Math.min(locations.length, plaintextSize);
    // n − 1 distinct cut points in 1..size−1 give n sizes ≥ 1 summing to plaintextSize.
    const points = [...new Set(cuts.slice(0, n - 1).map((c) => 1 + Math.min(plaintextSize - 2, Math.floor(c * (plaintextSize - 1)))))].sort((a, b) => a - b);
    const bounds = [0, ...points, plaintextSize];
    const files = bounds.slice(1).map((b, i) => ({ location: locations[i], size: b - bounds[i] }));
    return { keyId, streamId, plaintextSize, chunkSize, chunkCount: Math.max(1, Math.ceil(plaintextSize / chunkSize)), commitment, files };
  });
const arbGenerate: fc.Arbitrary<GenerateSpec> = fc
  .tuple(
    fc.array(fc.uint8Array({ minLength: 1, maxLength: 8 }), { minLength: 2, maxLength: 40 }),
    fc.nat(),
    fc.integer({ min: 1, max: 4096 }),
    fc.integer({ min: 1, max: 200 }),
    fc.integer({ min: 1, max: 256 }),
  )
  .map(([tokens, end, maxNewTokens, contextLength, tokensPerChunk]) => ({ tokens, endToken: end % tokens.length, maxNewTokens, contextLength, tokensPerChunk }));

/** §5.3 shapes written out by hand (independently of generateTensorSpecs): all positions, or the last. */
const generateShapes = (g: GenerateSpec, last = false): { inputs: TensorSpec[]; outputs: TensorSpec[] } => ({
  inputs: [{ name: "ids", dtype: 7, dims: [{ min: 1, max: 1 }, { min: 1, max: g.contextLength }] }],
  outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 1, max: last ? 1 : g.contextLength }, { min: g.tokens.length, max: g.tokens.length }] }],
});

const arbManifest: fc.Arbitrary<Manifest> = fc
  .record({
    name: arbProgramName,
    version: fc.bigInt({ min: 1n, max: (1n << 63n) - 1n }),
    graphSha256: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    graphSize: fc.integer({ min: 1, max: LIMITS.GRAPH_MAX }),
    inputs: arbSpecs,
    outputs: arbSpecs,
    generate: fc.option(fc.tuple(arbGenerate, fc.boolean()), { freq: 3 }),
    weights: arbWeights,
    extensions: arbExtensions,
  })
  .map(({ generate, extensions, ...rest }) => {
    const m: Manifest = { ...rest, mode: 1, policy: { version: 1, extensions } };
    if (generate) Object.assign(m, { mode: 2, generate: generate[0] }, generateShapes(...generate));
    return m;
  });

// ---- fixtures -----------------------------------------------------------------------------------

const weights = (over: Partial<WeightsDescriptor> = {}): WeightsDescriptor => ({
  keyId: new Uint8Array(16).fill(0x11),
  streamId: new Uint8Array(16).fill(0x22),
  plaintextSize: 300000,
  chunkSize: 1 << 16,
  chunkCount: 5,
  commitment: new Uint8Array(32).fill(0xcc),
  files: [
    { location: "LOCA.bin", size: 100000 },
    { location: "LOCB.bin", size: 200000 },
  ],
  ...over,
});
const tensorManifest = (over: Partial<Manifest> = {}): Manifest => ({
  name: "classifier",
  version: 7n,
  graphSha256: new Uint8Array(32).fill(0xab),
  graphSize: 1234,
  inputs: [
    { name: "INPA", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 3, max: 3 }] },
    { name: "INPB", dtype: 7, dims: [] },
  ],
  outputs: [{ name: "OUTA", dtype: 1, dims: [{ min: 1, max: 8 }] }],
  mode: 1,
  weights: weights(),
  policy: { version: 1, extensions: [{ type: 0x0007, data: ascii("note") }, egressLimitExtension(4096)] },
  ...over,
});
const gen: GenerateSpec = { tokens: [ascii("TOKA"), ascii("b"), ascii(" "), ascii("TOKZ")], endToken: 3, maxNewTokens: 64, contextLength: 32, tokensPerChunk: 4 };
const generateManifest = (g: Partial<GenerateSpec> = {}, over: Partial<Manifest> = {}): Manifest => {
  const spec = { ...gen, ...g };
  return { ...tensorManifest(), mode: 2, generate: spec, ...generateShapes(spec), ...over };
};

const raw = (m: Manifest) => encodeManifest(m, { validate: false });
/** Same-length substitution of a unique ASCII marker inside an encoding. */
function patch(bytes: Uint8Array, from: string, to: string | number[]): Uint8Array {
  const hay = Buffer.from(bytes);
  const at = hay.indexOf(from, 0, "latin1");
  if (at < 0 || hay.indexOf(from, at + 1, "latin1") >= 0) throw new Error(`marker ${from} not unique`);
  const out = bytes.slice();
  out.set(typeof to === "string" ? ascii(to) : to, at);
  return out;
}
const offsetOf = (bytes: Uint8Array, marker: string) => Buffer.from(bytes).indexOf(marker, 0, "latin1");
/** Replaces the policy (the last field) with `tail`. */
function withPolicy(m: Manifest, tail: Uint8Array): Uint8Array {
  const full = raw(m);
  const ext = new Writer("t");
  m.policy.extensions.forEach((e) => ext.u16(e.type).vec(e.data, 0, 0xffff, "d"));
  const policyLen = 4 + ext.length;
  return concat(full.subarray(0, full.length - policyLen), tail);
}

// ---- tests --------------------------------------------------------------------------------------

describe("Manifest (§5) round trips", () => {
  it("encode → decode is the identity on random valid manifests, and decode → encode on their bytes", () => {
    fc.assert(
      fc.property(arbManifest, (m) => {
        const bytes = encodeManifest(m);
        const back = decodeManifest(bytes);
        expect(back).toEqual(m);
        expect(encodeManifest(back)).toEqual(bytes);
      }),
      { numRuns: runs },
    );
  });

  it("fixtures round-trip and keep unknown non-critical extensions verbatim", () => {
    for (const m of [tensorManifest(), generateManifest()]) expect(decodeManifest(encodeManifest(m))).toEqual(m);
    const m = decodeManifest(encodeManifest(tensorManifest()));
    expect(m.policy.extensions[0]).toEqual({ type: 7, data: ascii("note") });
    expect(egressLimit(m.policy)).toBe(4096);
  });

  it("decoders never throw anything but VeilFormatError on mutated input", () => {
    const base = encodeManifest(generateManifest());
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (flips) => {
        const b = base.slice();
        for (const [i, x] of flips) b[i] ^= x;
        try {
          decodeManifest(b);
        } catch (e) {
          expect(e).toBeInstanceOf(VeilFormatError);
        }
      }),
      { numRuns: runs * 5 },
    );
  });
});

describe("Manifest strict decoding", () => {
  it("rejects every truncation with TRUNCATED and any trailing byte", () => {
    for (const m of [tensorManifest(), generateManifest()]) {
      const bytes = encodeManifest(m);
      for (let i = 0; i < bytes.length; i++) expect([i, codeOf(() => decodeManifest(bytes.subarray(0, i)))]).toEqual([i, "TRUNCATED"]);
      expect(codeOf(() => decodeManifest(concat(bytes, new Uint8Array(1))))).toBe("TRAILING_BYTES");
    }
  });

  it("checks magic, size and the top-level fields", () => {
    const b = encodeManifest(tensorManifest());
    expect(codeOf(() => decodeManifest(patch(b, "veilMF", "veilMG")))).toBe("WRONG_KIND");
    const v = b.slice();
    v[7] = 2;
    expect(codeOf(() => decodeManifest(v))).toBe("UNSUPPORTED_VERSION");
    expect(codeOf(() => decodeManifest(new Uint8Array(LIMITS.MANIFEST_MAX + 1)))).toBe("TOO_LARGE");
    expect(codeOf(() => decodeManifest(raw(tensorManifest({ version: 0n }))))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeManifest(raw(tensorManifest({ version: 1n << 63n }))))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeManifest(raw(tensorManifest({ version: (1n << 63n) - 1n }))))).toBe("OK");
    expect(codeOf(() => decodeManifest(raw(tensorManifest({ graphSize: 0 }))))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeManifest(raw(tensorManifest({ graphSize: LIMITS.GRAPH_MAX + 1 }))))).toBe("TOO_LARGE");
    expect(codeOf(() => decodeManifest(raw(tensorManifest({ graphSize: LIMITS.GRAPH_MAX }))))).toBe("OK");
    expect(codeOf(() => decodeManifest(raw(tensorManifest({ mode: 3 as 1 }))))).toBe("BAD_VALUE");
  });

  it("applies the program-name rules of §1.4", () => {
    const b = encodeManifest(tensorManifest({ name: "classifier" }));
    expect(codeOf(() => decodeManifest(patch(b, "classifier", "Classifier")))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeManifest(patch(b, "classifier", "class/fier")))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeManifest(patch(b, "classifier", ".lassifier")))).toBe("BAD_VALUE");
    const empty = b.slice();
    empty[8] = 0;
    expect(codeOf(() => decodeManifest(empty))).toBe("BAD_LENGTH");
    const long = b.slice();
    long[8] = 65;
    expect(codeOf(() => decodeManifest(long))).toBe("BAD_LENGTH");
    expect(codeOf(() => encodeManifest(tensorManifest({ name: "Up" })))).toBe("BAD_VALUE");
  });

  it("checks tensor specs: counts, names, dtypes, ranks, dims and the TENSOR_MAX product", () => {
    const spec = (over: Partial<TensorSpec> = {}): TensorSpec => ({ name: "s", dtype: 1, dims: [{ min: 1, max: 2 }], ...over });
    const cases: [Partial<Manifest>, string][] = [
      [{ inputs: [] }, "BAD_LENGTH"],
      [{ inputs: Array.from({ length: 17 }, (_, i) => spec({ name: `s${i}` })) }, "BAD_LENGTH"],
      [{ inputs: Array.from({ length: 16 }, (_, i) => spec({ name: `s${i}` })) }, "OK"],
      [{ outputs: [] }, "BAD_LENGTH"],
      [{ inputs: [spec({ dtype: 4 })] }, "BAD_VALUE"],
      [{ inputs: [spec({ dtype: 12 })] }, "BAD_VALUE"],
      [{ inputs: [spec({ dims: Array.from({ length: 9 }, () => ({ min: 1, max: 1 })) })] }, "BAD_LENGTH"],
      [{ inputs: [spec({ dims: Array.from({ length: 8 }, () => ({ min: 1, max: 1 })) })] }, "OK"],
      [{ inputs: [spec({ dims: [{ min: 0, max: 1 }] })] }, "BAD_VALUE"],
      [{ inputs: [spec({ dims: [{ min: 3, max: 2 }] })] }, "BAD_VALUE"],
      [{ inputs: [spec({ dims: [{ min: 1, max: 2 ** 24 + 1 }] })] }, "BAD_VALUE"],
      [{ inputs: [spec({ dtype: 2, dims: [{ min: 1, max: 2 ** 24 }] })] }, "OK"],
      [{ inputs: [spec({ dtype: 2, dims: [{ min: 1, max: 2 ** 24 }, { min: 1, max: 2 }] })] }, "TOO_LARGE"],
      [{ inputs: [spec({ dtype: 1, dims: [{ min: 1, max: 2 ** 22 }] })] }, "OK"],
      [{ inputs: [spec({ dtype: 1, dims: [{ min: 1, max: 2 ** 22 + 1 }] })] }, "TOO_LARGE"],
      [{ inputs: [spec({ dtype: 11, dims: Array.from({ length: 8 }, () => ({ min: 1, max: 2 ** 24 })) })] }, "TOO_LARGE"],
      [{ inputs: [spec({ name: "a" }), spec({ name: "a" })] }, "NOT_CANONICAL"],
      [{ outputs: [spec({ name: "a" }), spec({ name: "b" }), spec({ name: "a" })] }, "NOT_CANONICAL"],
      [{ inputs: [spec({ name: "same" })], outputs: [spec({ name: "same" })] }, "OK"],
    ];
    for (const [over, code] of cases) expect([over, codeOf(() => decodeManifest(raw(tensorManifest(over))))]).toEqual([over, code]);
    const b = encodeManifest(tensorManifest());
    expect(codeOf(() => decodeManifest(patch(b, "INPA", "IN A")))).toBe("BAD_VALUE");
    expect(codeOf(() => decodeManifest(patch(b, "INPA", "/NPA")))).toBe("BAD_VALUE");
  });

  it("checks the generate spec and its fixed shapes (§5.3)", () => {
    const cases: [Partial<GenerateSpec>, Partial<Manifest>, string][] = [
      [{}, {}, "OK"],
      [{ tokens: [ascii("x")] }, {}, "BAD_LENGTH"],
      [{ endToken: 4 }, {}, "BAD_VALUE"],
      [{ maxNewTokens: 0 }, {}, "BAD_VALUE"],
      [{ maxNewTokens: 4097 }, {}, "BAD_VALUE"],
      [{ maxNewTokens: 4096 }, {}, "OK"],
      [{ contextLength: 0 }, {}, "BAD_VALUE"],
      [{ tokensPerChunk: 0 }, {}, "BAD_VALUE"],
      [{ tokensPerChunk: 257 }, {}, "BAD_VALUE"],
      [{ tokensPerChunk: 256 }, {}, "OK"],
      [{}, { inputs: [{ name: "ids", dtype: 6, dims: [{ min: 1, max: 1 }, { min: 1, max: 32 }] }] }, "BAD_VALUE"],
      [{}, { inputs: [{ name: "ids", dtype: 7, dims: [{ min: 1, max: 1 }, { min: 1, max: 31 }] }] }, "BAD_VALUE"],
      [{}, { inputs: [{ name: "ids", dtype: 7, dims: [{ min: 1, max: 2 }, { min: 1, max: 32 }] }] }, "BAD_VALUE"],
      [{}, { inputs: [{ name: "ids", dtype: 7, dims: [{ min: 1, max: 32 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 1, max: 32 }, { min: 3, max: 3 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [{ name: "logits", dtype: 10, dims: [{ min: 1, max: 1 }, { min: 1, max: 32 }, { min: 4, max: 4 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [...generateShapes(gen).outputs, { name: "extra", dtype: 1, dims: [] }] }, "BAD_VALUE"],
      // §5.3: logits for the last position only.
      [{}, generateShapes(gen, true), "OK"],
      [{}, { outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 1, max: 1 }, { min: 3, max: 3 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [{ name: "logits", dtype: 10, dims: [{ min: 1, max: 1 }, { min: 1, max: 1 }, { min: 4, max: 4 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 4, max: 4 }] }] }, "BAD_VALUE"],
      // Neither form: a positions dim other than 1..context_length or 1..1.
      [{}, { outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 1, max: 2 }, { min: 4, max: 4 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 1, max: 31 }, { min: 4, max: 4 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 2, max: 2 }, { min: 4, max: 4 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 32, max: 32 }, { min: 4, max: 4 }] }] }, "BAD_VALUE"],
      [{}, { outputs: [{ name: "logits", dtype: 1, dims: [{ min: 1, max: 2 }, { min: 1, max: 1 }, { min: 4, max: 4 }] }] }, "BAD_VALUE"],
      // The last-position form does not loosen the input.
      [{}, { ...generateShapes(gen, true), inputs: [{ name: "ids", dtype: 7, dims: [{ min: 1, max: 1 }, { min: 1, max: 1 }] }] }, "BAD_VALUE"],
      // With context_length 1 the two forms coincide.
      [{ contextLength: 1 }, {}, "OK"],
    ];
    for (const [g, over, code] of cases) expect([g, over, codeOf(() => decodeManifest(raw(generateManifest(g, over))))]).toEqual([g, over, code]);
    // The context × vocab logits tensor is bound by TENSOR_MAX too.
    const tokens = Array.from({ length: 64 }, (_, i) => ascii(`t${i}`));
    expect(codeOf(() => decodeManifest(raw(generateManifest({ tokens, endToken: 0, contextLength: 65536 }))))).toBe("OK");
    const tokens65 = [...tokens, ascii("t64")];
    expect(codeOf(() => decodeManifest(raw(generateManifest({ tokens: tokens65, endToken: 0, contextLength: 65536 }))))).toBe("TOO_LARGE");
    // Last-position logits keep a full VOCAB_MAX vocabulary with the longest context within TENSOR_MAX.
    const big: Partial<GenerateSpec> = { tokens: Array.from({ length: LIMITS.VOCAB_MAX }, (_, i) => ascii(i.toString(36))), endToken: 0, contextLength: 65536 };
    const bigSpec = { ...gen, ...big };
    expect(codeOf(() => decodeManifest(raw(generateManifest(big, generateShapes(bigSpec, true)))))).toBe("OK");
    expect(err(() => decodeManifest(raw(generateManifest(big, generateShapes(bigSpec, false)))))).toMatchObject({ code: "TOO_LARGE", fieldId: 0x0307 });
    const b = encodeManifest(generateManifest());
    const at = offsetOf(b, "TOKA") - 1;
    for (const [len, code] of [[0, "BAD_LENGTH"], [65, "BAD_LENGTH"]] as const) {
      const t = b.slice();
      t[at] = len;
      expect(codeOf(() => decodeManifest(t))).toBe(code);
    }
    const vocab = b.slice();
    new DataView(vocab.buffer).setUint32(at - 4, 65537);
    expect(codeOf(() => decodeManifest(vocab))).toBe("BAD_LENGTH");
    expect(codeOf(() => encodeManifest({ ...tensorManifest(), mode: 2 }))).toBe("BAD_VALUE");
    expect(codeOf(() => encodeManifest({ ...generateManifest(), mode: 1 }))).toBe("BAD_VALUE");
  });

  it("checks the weights descriptor (§5.4)", () => {
    const cases: [Partial<WeightsDescriptor>, string][] = [
      [{ chunkSize: 12345 }, "BAD_VALUE"],
      [{ chunkSize: 1 << 15 }, "BAD_VALUE"],
      [{ chunkSize: 1 << 25 }, "BAD_VALUE"],
      [{ chunkSize: (1 << 16) + 1 }, "BAD_VALUE"],
      [{ chunkCount: 4 }, "NOT_CANONICAL"],
      [{ chunkCount: 6 }, "NOT_CANONICAL"],
      [{ plaintextSize: 2 ** 46 + 1, chunkSize: 1 << 24, chunkCount: 2 ** 22 + 1 }, "TOO_LARGE"],
      [{ files: [] }, "BAD_LENGTH"],
      [{ files: [{ location: "a", size: 300000 }] }, "OK"],
      [{ files: [{ location: "a", size: 299999 }] }, "BAD_VALUE"],
      [{ files: [{ location: "a", size: 300001 }] }, "BAD_VALUE"],
      [{ files: [{ location: "a", size: 300000 }, { location: "b", size: 0 }] }, "BAD_VALUE"],
      [{ files: [{ location: "a", size: 100000 }, { location: "a", size: 200000 }] }, "BAD_VALUE"],
      [{ files: Array.from({ length: 65 }, (_, i) => ({ location: `f${i}`, size: i < 64 ? 4687 : 300000 - 64 * 4687 })) }, "BAD_LENGTH"],
      [{ files: Array.from({ length: 64 }, (_, i) => ({ location: `f${i}`, size: i < 63 ? 4687 : 300000 - 63 * 4687 })) }, "OK"],
      [{ plaintextSize: 0, chunkCount: 1, files: [{ location: "a", size: 0 }] }, "OK"],
      [{ plaintextSize: 0, chunkCount: 0, files: [{ location: "a", size: 0 }] }, "NOT_CANONICAL"],
      [{ plaintextSize: 0, chunkCount: 1, files: [{ location: "a", size: 0 }, { location: "b", size: 0 }] }, "BAD_VALUE"],
      [{ plaintextSize: 1 << 16, chunkCount: 1, files: [{ location: "a", size: 1 << 16 }] }, "OK"],
      [{ plaintextSize: (1 << 16) + 1, chunkCount: 2, files: [{ location: "a", size: (1 << 16) + 1 }] }, "OK"],
    ];
    for (const [over, code] of cases) expect([over, codeOf(() => decodeManifest(raw(tensorManifest({ weights: weights(over) }))))]).toEqual([over, code]);
    const b = encodeManifest(tensorManifest());
    expect(codeOf(() => decodeManifest(patch(b, "LOCA.bin", ".OCA.bin")))).toBe("BAD_VALUE");
    const e = err(() => decodeManifest(raw(tensorManifest({ weights: weights({ chunkSize: 12345 }) }))))!;
    expect(e.message).toBe("failed to decode manifest: field weights.chunk_size: 12345 is not a power of two in 65536..16777216");
    expect(e).toMatchObject({ code: "BAD_VALUE", number: 4, field: "manifest.weights.chunk_size", fieldId: 0x0312 });
  });

  it("carries stream_id right after key_id (§5.4)", () => {
    const m = tensorManifest();
    const b = encodeManifest(m);
    const at = Buffer.from(b).indexOf(Buffer.alloc(16, 0x11));
    expect(at).toBeGreaterThan(0);
    expect(Array.from(b.subarray(at + 16, at + 32))).toEqual(Array(16).fill(0x22));
    // Then plaintext_size (u64) and chunk_size (u32).
    expect(new DataView(b.buffer, b.byteOffset).getBigUint64(at + 32)).toBe(300000n);
    expect(new DataView(b.buffer, b.byteOffset).getUint32(at + 40)).toBe(1 << 16);
    const s = b.slice();
    s[at + 20] ^= 0xff;
    expect(decodeManifest(s).weights.streamId).toEqual(Uint8Array.from({ length: 16 }, (_, i) => (i === 4 ? 0xdd : 0x22)));
    for (let i = at + 16; i < at + 32; i++) expect(err(() => decodeManifest(b.subarray(0, i)))).toMatchObject({ code: "TRUNCATED", fieldId: 0x0310 });
    expect(err(() => encodeManifest(tensorManifest({ weights: weights({ streamId: new Uint8Array(15) }) })))).toMatchObject({ code: "BAD_LENGTH", field: "manifest.weights.stream_id", fieldId: 0x0310 });
  });

  it("applies the §1.3 default classes: counts and lengths BAD_LENGTH, §13 sizes TOO_LARGE, policy_version UNSUPPORTED_VERSION", () => {
    const spec = (dims: Dim[]): TensorSpec => ({ name: "s", dtype: 1, dims });
    const cases: [Uint8Array, string, number][] = [
      [raw(tensorManifest({ inputs: [spec(Array.from({ length: 9 }, () => ({ min: 1, max: 1 })))] })), "BAD_LENGTH", 0x0306],
      [raw(tensorManifest({ outputs: [spec(Array.from({ length: 9 }, () => ({ min: 1, max: 1 })))] })), "BAD_LENGTH", 0x0307],
      [raw(generateManifest({ tokens: [ascii("x")], endToken: 0 })), "BAD_LENGTH", 0x0309],
      [raw(tensorManifest({ graphSize: LIMITS.GRAPH_MAX + 1 })), "TOO_LARGE", 0x0305],
      [raw(tensorManifest({ weights: weights({ plaintextSize: 2 ** 46 + 1, chunkSize: 1 << 24, chunkCount: 2 ** 22 + 1 }) })), "TOO_LARGE", 0x0311],
      [raw(tensorManifest({ policy: { version: 2, extensions: [] } })), "UNSUPPORTED_VERSION", 0x0316],
      [raw(tensorManifest({ policy: { version: 1, extensions: [{ type: 0x8001, data: new Uint8Array(3) }] } })), "BAD_LENGTH", 0x0317],
      [raw(tensorManifest({ policy: { version: 1, extensions: [{ type: 0x8001, data: new Uint8Array(8) }] } })), "BAD_LENGTH", 0x0317],
      [new Uint8Array(LIMITS.MANIFEST_MAX + 1), "TOO_LARGE", 0x0301],
    ];
    for (const [bytes, code, fieldId] of cases) expect(err(() => decodeManifest(bytes))).toMatchObject({ code, fieldId });
  });

  it("reports the §12.1 id of the failing field", () => {
    const spec = (over: Partial<TensorSpec> = {}): TensorSpec => ({ name: "s", dtype: 1, dims: [{ min: 1, max: 2 }], ...over });
    const t = encodeManifest(tensorManifest());
    const g = encodeManifest(generateManifest());
    /** Cuts the encoding inside the field that starts with `marker`. */
    const cutIn = (b: Uint8Array, marker: Uint8Array) => b.subarray(0, Buffer.from(b).indexOf(Buffer.from(marker)) + 1);
    const versionByte = t.slice();
    versionByte[7] = 9;
    /** Sets the byte `back` bytes before `marker` (a count in front of a name). */
    const setBefore = (b: Uint8Array, marker: string, back: number, v: number) => {
      const out = b.slice();
      out[offsetOf(b, marker) - back] = v;
      return out;
    };
    const cases: [string, Uint8Array, string, number][] = [
      ["magic", patch(t, "veilMF", "veilMX"), "WRONG_KIND", 0x0301],
      ["magic version", versionByte, "UNSUPPORTED_VERSION", 0x0301],
      ["name", patch(t, "classifier", "Classifier"), "BAD_VALUE", 0x0302],
      ["version", raw(tensorManifest({ version: 0n })), "BAD_VALUE", 0x0303],
      ["graph_sha256", cutIn(t, new Uint8Array(32).fill(0xab)), "TRUNCATED", 0x0304],
      ["graph_size", raw(tensorManifest({ graphSize: 0 })), "BAD_VALUE", 0x0305],
      ["input_count", setBefore(t, "INPA", 2, 0), "BAD_LENGTH", 0x0306],
      ["input name", patch(t, "INPA", ".NPA"), "BAD_VALUE", 0x0306],
      ["input dtype", raw(tensorManifest({ inputs: [spec({ dtype: 4 })] })), "BAD_VALUE", 0x0306],
      ["input dim", raw(tensorManifest({ inputs: [spec({ dims: [{ min: 0, max: 1 }] })] })), "BAD_VALUE", 0x0306],
      ["input TENSOR_MAX", raw(tensorManifest({ inputs: [spec({ dims: [{ min: 1, max: 2 ** 23 }] })] })), "TOO_LARGE", 0x0306],
      ["input names", raw(tensorManifest({ inputs: [spec(), spec()] })), "NOT_CANONICAL", 0x0306],
      ["output_count", setBefore(t, "OUTA", 2, 17), "BAD_LENGTH", 0x0307],
      ["output dim", raw(tensorManifest({ outputs: [spec({ dims: [{ min: 3, max: 2 }] })] })), "BAD_VALUE", 0x0307],
      ["output names", raw(tensorManifest({ outputs: [spec(), spec()] })), "NOT_CANONICAL", 0x0307],
      ["mode", raw(tensorManifest({ mode: 3 as 1 })), "BAD_VALUE", 0x0308],
      ["vocab_size", raw(generateManifest({ tokens: [ascii("x")], endToken: 0 })), "BAD_LENGTH", 0x0309],
      ["token", cutIn(g, ascii("TOKZ")), "TRUNCATED", 0x030a],
      ["end_token", raw(generateManifest({ endToken: 4 })), "BAD_VALUE", 0x030b],
      ["max_new_tokens", raw(generateManifest({ maxNewTokens: 0 })), "BAD_VALUE", 0x030c],
      ["context_length", raw(generateManifest({ contextLength: 65537 })), "BAD_VALUE", 0x030d],
      ["tokens_per_chunk", raw(generateManifest({ tokensPerChunk: 0 })), "BAD_VALUE", 0x030e],
      ["generate input shape", raw(generateManifest({}, { inputs: [spec()] })), "BAD_VALUE", 0x0306],
      ["generate input count", raw(generateManifest({}, { inputs: [...generateShapes(gen).inputs, spec()] })), "BAD_VALUE", 0x0306],
      ["generate output shape", raw(generateManifest({}, { outputs: [spec()] })), "BAD_VALUE", 0x0307],
      ["key_id", cutIn(t, new Uint8Array(16).fill(0x11)), "TRUNCATED", 0x030f],
      ["stream_id", cutIn(t, new Uint8Array(16).fill(0x22)), "TRUNCATED", 0x0310],
      ["plaintext_size", raw(tensorManifest({ weights: weights({ plaintextSize: 2 ** 47, chunkSize: 1 << 24, chunkCount: 2 ** 23 }) })), "TOO_LARGE", 0x0311],
      ["chunk_size", raw(tensorManifest({ weights: weights({ chunkSize: 3 << 16 }) })), "BAD_VALUE", 0x0312],
      ["chunk_count", raw(tensorManifest({ weights: weights({ chunkCount: 4 }) })), "NOT_CANONICAL", 0x0313],
      ["commitment", cutIn(t, new Uint8Array(32).fill(0xcc)), "TRUNCATED", 0x0314],
      ["file_count", setBefore(t, "LOCA.bin", 2, 65), "BAD_LENGTH", 0x0315],
      ["file location", patch(t, "LOCA.bin", "/OCA.bin"), "BAD_VALUE", 0x0315],
      ["file size", raw(tensorManifest({ weights: weights({ files: [{ location: "a", size: 1 }] }) })), "BAD_VALUE", 0x0315],
      ["policy_version", raw(tensorManifest({ policy: { version: 0, extensions: [] } })), "UNSUPPORTED_VERSION", 0x0316],
      ["extension order", raw(tensorManifest({ policy: { version: 1, extensions: [{ type: 2, data: new Uint8Array(0) }, { type: 1, data: new Uint8Array(0) }] } })), "NOT_CANONICAL", 0x0317],
      ["extension critical", raw(tensorManifest({ policy: { version: 1, extensions: [{ type: 0x9000, data: new Uint8Array(0) }] } })), "UNKNOWN_CRITICAL", 0x0317],
      ["egress value", raw(tensorManifest({ policy: { version: 1, extensions: [{ type: 0x8001, data: new Uint8Array(4) }] } })), "BAD_VALUE", 0x0317],
      ["trailing", concat(t, Uint8Array.of(0)), "TRAILING_BYTES", 0x0300],
    ];
    for (const [what, bytes, code, fieldId] of cases) {
      const e = err(() => decodeManifest(bytes));
      expect([what, e?.code, e?.fieldId, e?.loaderCode]).toEqual([what, code, fieldId, ((fieldId << 16) | e!.number) >>> 0]);
    }
  });

  it("checks the policy (§5.5): version, ordering, critical bit, egress limit", () => {
    const ext = (...e: Extension[]) => tensorManifest({ policy: { version: 1, extensions: e } });
    const d = (n: number) => new Uint8Array(n);
    const cases: [Manifest, string][] = [
      [ext(), "OK"],
      [tensorManifest({ policy: { version: 2, extensions: [] } }), "UNSUPPORTED_VERSION"],
      [tensorManifest({ policy: { version: 0, extensions: [] } }), "UNSUPPORTED_VERSION"],
      [ext({ type: 5, data: d(1) }, { type: 3, data: d(0) }), "NOT_CANONICAL"],
      [ext({ type: 5, data: d(1) }, { type: 5, data: d(0) }), "NOT_CANONICAL"],
      [ext({ type: 0x8002, data: d(0) }), "UNKNOWN_CRITICAL"],
      [ext({ type: 0xffff, data: d(3) }), "UNKNOWN_CRITICAL"],
      [ext({ type: 0x7fff, data: d(3) }), "OK"],
      [ext({ type: 0x0002, data: d(300) }, { type: 0x0003, data: d(0) }), "OK"],
      [ext({ type: 0x8001, data: d(3) }), "BAD_LENGTH"],
      [ext({ type: 0x8001, data: d(5) }), "BAD_LENGTH"],
      [ext({ type: 0x8001, data: d(4) }), "BAD_VALUE"],
      [ext(egressLimitExtension(LIMITS.RESPONSE_MAX + 1)), "BAD_VALUE"],
      [ext(egressLimitExtension(LIMITS.RESPONSE_MAX)), "OK"],
      [ext(egressLimitExtension(1)), "OK"],
    ];
    for (const [m, code] of cases) expect([m.policy, codeOf(() => decodeManifest(raw(m)))]).toEqual([m.policy, code]);
    const m = tensorManifest({ policy: { version: 1, extensions: [] } });
    // An extension vector whose contents end inside an extension.
    const inner = new Writer("t").u16(5).u16(4).bytes(d(2)).finish();
    const cut = withPolicy(m, new Writer("t").u16(1).vec(inner, 0, 0xffff, "e").finish());
    expect(codeOf(() => decodeManifest(cut))).toBe("TRUNCATED");
    // A declared vector length longer than the input.
    expect(codeOf(() => decodeManifest(withPolicy(m, new Writer("t").u16(1).u16(10).finish())))).toBe("TRUNCATED");
    expect(codeOf(() => decodeManifest(withPolicy(m, new Writer("t").u16(1).u16(0).finish())))).toBe("OK");
  });
});

describe("manifest builder", () => {
  it("hashes and sizes the graph, derives the mode and sorts extensions", () => {
    const graph = new Uint8Array(1000).fill(5);
    const built = buildManifest({
      name: "m1",
      version: 2,
      graph,
      inputs: tensorManifest().inputs,
      outputs: tensorManifest().outputs,
      weights: weights(),
      egressLimit: 100,
      extensions: [{ type: 0x0009, data: new Uint8Array(0) }],
    });
    expect(built.manifest.graphSha256).toEqual(sha256(graph));
    expect(built.manifest.graphSize).toBe(1000);
    expect(built.manifest.mode).toBe(1);
    expect(built.manifest.policy.extensions.map((e) => e.type)).toEqual([0x0009, 0x8001]);
    expect(decodeManifest(built.bytes)).toEqual(built.manifest);
    expect(built.digest).toEqual(programDigest(built.bytes));
    expect(built.digest).toEqual(sha256(built.bytes));
    const g = buildManifest({ name: "m2", version: 1n, graph, generate: gen, ...generateShapes(gen), weights: weights() });
    expect(g.manifest.mode).toBe(2);
  });

  it("builds generate programs with either §5.3 output form", () => {
    const graph = ascii("graph");
    const all = generateTensorSpecs(gen);
    const last = generateTensorSpecs(gen, { positions: "last", inputName: "ids", outputName: "logits" });
    expect(all.inputs).toEqual([{ name: "input_ids", dtype: 7, dims: [{ min: 1, max: 1 }, { min: 1, max: 32 }] }]);
    expect(all.outputs).toEqual([{ name: "logits", dtype: 1, dims: [{ min: 1, max: 1 }, { min: 1, max: 32 }, { min: 4, max: 4 }] }]);
    expect(last).toEqual(generateShapes(gen, true));
    for (const shapes of [all, last]) {
      const built = buildManifest({ name: "gen", version: 1, graph, generate: gen, ...shapes, weights: weights() });
      const back = decodeManifest(built.bytes);
      expect(back).toEqual(built.manifest);
      expect(back.outputs[0].dims[1]).toEqual(shapes.outputs[0].dims[1]);
    }
    // A shape in neither form is refused by the builder too.
    const bad = { ...all, outputs: [{ ...all.outputs[0], dims: [{ min: 1, max: 1 }, { min: 1, max: 2 }, { min: 4, max: 4 }] }] };
    expect(err(() => buildManifest({ name: "gen", version: 1, graph, generate: gen, ...bad, weights: weights() }))).toMatchObject({
      code: "BAD_VALUE",
      field: "manifest.outputs[0].dims[1]",
      fieldId: 0x0307,
      message: "failed to encode manifest: field outputs[0].dims[1]: generate mode needs 1..32 or 1..1, got 1..2",
    });
  });

  it("refuses parts that do not make a valid manifest", () => {
    expect(() => buildManifest({ name: "m", version: 0, graph: new Uint8Array(1), inputs: [], outputs: [], weights: weights() })).toThrow(VeilFormatError);
    expect(() => buildManifest({ name: "m", version: 1, graph: new Uint8Array(0), ...generateShapes(gen), weights: weights() })).toThrow(/graph_size/);
  });
});
