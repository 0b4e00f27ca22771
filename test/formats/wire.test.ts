import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { ascii } from "../../host/formats/bytes.ts";
import {
  CLIENT_ONLY_CODES,
  ERROR_CODES,
  ERROR_MEANINGS,
  FIELD_GROUPS,
  VeilFormatError,
  describeLoaderError,
  fieldIdFor,
  fieldLabel,
} from "../../host/formats/errors.ts";
import { Reader, Writer, nameProblem, prefixSize, readName } from "../../host/formats/wire.ts";

const runs = process.env.SLOW ? 1000 : 100;

/** SPEC.md §12 and §12.1 as written, so the host's tables are checked against the text itself. */
const spec = readFileSync(new URL("../../SPEC.md", import.meta.url), "utf8");
const section = (from: string, to: string): string[] => {
  const a = spec.indexOf(from);
  const b = spec.indexOf(to, a + from.length);
  if (a < 0 || b < 0) throw new Error(`SPEC.md: section ${from} not found`);
  return spec.slice(a, b).split("\n");
};
const cells = (line: string) => line.split("|").slice(1, -1).map((c) => c.trim().replace(/`/g, ""));
const specCodes = new Map<string, [number, string]>(
  section("## 12. Error codes", "### 12.1")
    .filter((l) => /^\| \d+ \|/.test(l))
    .map((l) => {
      const [n, name, meaning] = cells(l);
      return [name, [Number(n), meaning]];
    }),
);
const specFieldIds = new Map<number, string>();
for (const l of section("### 12.1", "## 13.")) {
  const c = cells(l);
  for (let i = 0; i + 1 < c.length; i += 2) if (/^0x[0-9a-f]{4}$/.test(c[i])) specFieldIds.set(Number(c[i]), c[i + 1]);
}

function caught(f: () => unknown): VeilFormatError {
  try {
    f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e;
    throw e;
  }
  throw new Error("expected a VeilFormatError");
}

describe("§12 error table", () => {
  it("has every SPEC code with its stable number", () => {
    expect(ERROR_CODES).toEqual({
      TRUNCATED: 1, TRAILING_BYTES: 2, BAD_LENGTH: 3, BAD_VALUE: 4, NOT_CANONICAL: 5, TOO_LARGE: 6,
      WRONG_KIND: 7, UNSUPPORTED_VERSION: 8, UNKNOWN_CRITICAL: 9, BAD_KEY: 10,
      STATE: 16, NO_PROGRAM: 17, CAPACITY: 18, SIGNATURE_THRESHOLD: 19, GRAPH_MISMATCH: 20, ROLLBACK: 21,
      KEY_UNKNOWN: 32, KEY_UNWRAP: 33, WEIGHTS_MISMATCH: 34, WEIGHTS_AUTH: 35, WEIGHTS_ORDER: 36,
      WEIGHTS_COMMITMENT: 37, WEIGHTS_INCOMPLETE: 38,
      KEY_ID: 48, UNSUPPORTED_SUITE: 49, REQUEST_AUTH: 50, REPLAY: 51, SCHEMA_VIOLATION: 52,
      EGRESS_LIMIT: 53, STREAM_DONE: 54, SESSION_UNKNOWN: 55, ACCELERATOR_FAILED: 64, ENTROPY_FAILED: 65, RESPONSE_AUTH: 66,
    });
    for (const k of Object.keys(ERROR_CODES)) expect(ERROR_MEANINGS[k as keyof typeof ERROR_CODES]).toBeTruthy();
  });

  it("matches SPEC.md §12 row for row: names, numbers and meanings", () => {
    expect(specCodes.size).toBeGreaterThanOrEqual(33);
    expect(Object.fromEntries([...specCodes].map(([k, [n]]) => [k, n]))).toEqual(ERROR_CODES);
    expect(Object.fromEntries([...specCodes].map(([k, [, m]]) => [k, m]))).toEqual(ERROR_MEANINGS);
    // Every number fits the low 16 bits of the u32 (§12); none is reused.
    const numbers = Object.values(ERROR_CODES);
    expect(new Set(numbers).size).toBe(numbers.length);
    for (const n of numbers) expect(n).toBeLessThan(0x10000);
  });

  it("RESPONSE_AUTH is §12 code 66, client only", () => {
    expect(ERROR_CODES.RESPONSE_AUTH).toBe(66);
    expect([...CLIENT_ONLY_CODES]).toEqual(["RESPONSE_AUTH"]);
    const e = new VeilFormatError("RESPONSE_AUTH", "response", "", "failed to open", "open");
    expect(e).toMatchObject({ number: 66, fieldId: undefined, loaderCode: 66 });
    expect(describeLoaderError(66)).toMatchObject({ name: "RESPONSE_AUTH", code: 66 });
    expect(describeLoaderError(66).message).toBe(
      "loader error 0x00000042: RESPONSE_AUTH (66): (client only, never emitted by the loader) a response or stream chunk failed to open",
    );
  });
});

describe("§12.1 field identifiers", () => {
  it("the host table is exactly SPEC.md's table: same ids, same labels", () => {
    expect(specFieldIds.size).toBe(64);
    const ours = new Map(FIELD_GROUPS.flatMap((g) => g.rows.map((r) => [r.id, r.label] as const)));
    expect([...ours].sort((a, b) => a[0] - b[0])).toEqual([...specFieldIds].sort((a, b) => a[0] - b[0]));
    for (const g of FIELD_GROUPS) for (const r of g.rows) expect(r.id >> 8).toBe(g.group);
  });

  it("maps host field paths to the SPEC ids", () => {
    const cases: [string, string, number | undefined][] = [
      ["trust_config", "magic", 0x0101],
      ["trust_config", "threshold", 0x0102],
      ["trust_config", "count", 0x0103],
      ["trust_config", "reviewer_key[3]", 0x0104],
      ["trust_config", "", 0x0100],
      ["report", "nonce", 0x0205],
      // ReportBody fields other than the nonce have no row: the structure's id.
      ["report", "key_id", 0x0200],
      ["report", "magic", 0x0200],
      ["manifest", "", 0x0300],
      ["manifest", "magic", 0x0301],
      ["manifest", "size", 0x0301],
      ["manifest", "name", 0x0302],
      ["manifest", "version", 0x0303],
      ["manifest", "graph_sha256", 0x0304],
      ["manifest", "graph_size", 0x0305],
      ["manifest", "input_count", 0x0306],
      ["manifest", "inputs[2].name", 0x0306],
      ["manifest", "inputs[2].dims[0].min", 0x0306],
      ["manifest", "inputs[0].rank", 0x0306],
      ["manifest", "output_count", 0x0307],
      ["manifest", "outputs[0].dtype", 0x0307],
      ["manifest", "outputs[1].dims[2].max", 0x0307],
      ["manifest", "mode", 0x0308],
      ["manifest", "generate", 0x0308],
      ["manifest", "generate.vocab_size", 0x0309],
      ["manifest", "generate.token[7]", 0x030a],
      ["manifest", "generate.end_token", 0x030b],
      ["manifest", "generate.max_new_tokens", 0x030c],
      ["manifest", "generate.context_length", 0x030d],
      ["manifest", "generate.tokens_per_chunk", 0x030e],
      ["manifest", "weights.key_id", 0x030f],
      ["manifest", "weights.stream_id", 0x0310],
      ["manifest", "weights.plaintext_size", 0x0311],
      ["manifest", "weights.chunk_size", 0x0312],
      ["manifest", "weights.chunk_count", 0x0313],
      ["manifest", "weights.commitment", 0x0314],
      ["manifest", "weights.file_count", 0x0315],
      ["manifest", "weights.files", 0x0315],
      ["manifest", "weights.files[3].location", 0x0315],
      ["manifest", "weights.files[3].size", 0x0315],
      ["manifest", "policy.policy_version", 0x0316],
      ["manifest", "policy.extensions", 0x0317],
      ["manifest", "policy.extensions[1].type", 0x0317],
      ["manifest", "policy.extensions[1].data", 0x0317],
      ["signature_bundle", "magic", 0x0401],
      ["signature_bundle", "count", 0x0402],
      ["signature_bundle", "entries[4].public_key", 0x0403],
      ["signature_bundle", "entries[4].signature", 0x0403],
      ["weights_header", "magic", 0x0501],
      ["weights_header", "key_id", 0x0502],
      ["weights_header", "stream_id", 0x0503],
      ["weights_header", "chunk_size", 0x0504],
      ["weights_header", "chunk_count", 0x0505],
      ["weights_header", "plaintext_size", 0x0506],
      ["weights_stream", "chunk[9]", 0x0507],
      ["weights_stream", "", 0x0500],
      ["wrapped_key", "magic", 0x0601],
      ["wrapped_key", "key_id", 0x0602],
      ["wrapped_key", "report_nonce", 0x0603],
      ["wrapped_key", "enc", 0x0604],
      ["wrapped_key", "ct", 0x0605],
      ["encapsulated_request", "key_id", 0x0701],
      ["encapsulated_request", "kem_id", 0x0702],
      ["encapsulated_request", "kdf_id", 0x0703],
      ["encapsulated_request", "aead_id", 0x0704],
      ["encapsulated_request", "enc", 0x0705],
      ["encapsulated_request", "ct", 0x0706],
      ["encapsulated_request", "size", 0x0706],
      ["inner_request", "magic", 0x0801],
      ["inner_request", "kind", 0x0802],
      ["inner_request", "inputs", 0x0803],
      ["inner_request", "inputs.count", 0x0803],
      ["inner_request", "inputs[1].data", 0x0803],
      ["inner_request", "prompt", 0x0803],
      ["inner_request", "max_new_tokens", 0x0804],
      ["inner_request", "temperature_milli", 0x0805],
      ["inner_request", "top_k", 0x0806],
      ["inner_request", "has_seed", 0x0807],
      ["inner_request", "seed", 0x0808],
      ["accelerator_output", "", 0x0900],
      ["accelerator_output", "count", 0x0900],
      ["accelerator_output", "tensors[0].dims", 0x0900],
      // Client-side structures have no §12.1 ids.
      ["stream", "record", undefined],
      ["inner_response", "text", undefined],
      ["stream_chunk", "stop", undefined],
    ];
    for (const [structure, path, id] of cases) expect([structure, path, fieldIdFor(structure, path)]).toEqual([structure, path, id]);
  });

  it("every id fieldIdFor produces has a label, and every SPEC id is produced by some path", () => {
    const produced = new Set<number>();
    for (const g of FIELD_GROUPS)
      for (const s of g.structures) {
        produced.add(fieldIdFor(s, "")!);
        for (const r of g.rows) for (const p of r.paths) produced.add(fieldIdFor(s, p)!);
      }
    for (const id of produced) expect([id, fieldLabel(id)]).toEqual([id, expect.any(String)]);
    for (const id of specFieldIds.keys()) expect([id, produced.has(id)]).toEqual([id, true]);
  });

  it("decodes a loader u32 into code and field", () => {
    const info = describeLoaderError((0x0302 << 16) | 1);
    expect(info).toMatchObject({ code: 1, name: "TRUNCATED", fieldId: 0x0302, field: "Manifest name" });
    expect(info.message).toBe("loader error 0x03020001: TRUNCATED (1): input ends inside a structure; field Manifest name (0x0302)");
    expect(describeLoaderError(19).message).toBe("loader error 0x00000013: SIGNATURE_THRESHOLD (19): fewer than k valid reviewer signatures");
    expect(describeLoaderError((0x0312 << 16) | 4).field).toBe("WeightsDescriptor chunk_size");
    expect(describeLoaderError((0x0310 << 16) | 34).field).toBe("WeightsDescriptor stream_id");
    expect(describeLoaderError((0x0503 << 16) | 34).message).toBe(
      "loader error 0x05030022: WEIGHTS_MISMATCH (34): weights header differs from the manifest; field WeightsHeader stream_id (0x0503)",
    );
    expect(describeLoaderError((0x0803 << 16) | 3).field).toBe("TensorRequest inputs / GenerateRequest prompt");
    expect(describeLoaderError((0x0900 << 16) | 64).field).toBe("accelerator output");
    expect(describeLoaderError((0x0300 << 16) | 2).field).toBe("Manifest");
    expect(describeLoaderError(0x7777).message).toContain("unknown error code 30583");
    // Ids the table does not define: past the last row of a structure, or in no structure.
    for (const id of [0x0318, 0x0399, 0x0201, 0x0508, 0x0901, 0x0a06, 0x0b02, 0x0c00]) expect(describeLoaderError((id << 16) | 4).message).toContain(`unknown field 0x0${id.toString(16)}`);
  });

  it("errors carry name, number, field, §12.1 id and the loader u32", () => {
    const e = new VeilFormatError("BAD_VALUE", "manifest", "weights.chunk_size", "12345 is not a power of two in 65536..16777216");
    expect(e).toMatchObject({ code: "BAD_VALUE", number: 4, field: "manifest.weights.chunk_size", fieldId: 0x0312 });
    expect(e.message).toBe("failed to decode manifest: field weights.chunk_size: 12345 is not a power of two in 65536..16777216");
    expect(e.loaderCode).toBe(0x03120004);
    expect(new VeilFormatError("BAD_LENGTH", "manifest", "inputs[1].rank", "x").loaderCode).toBe(0x03060003);
    expect(new VeilFormatError("TRUNCATED", "stream", "record[2]", "x").loaderCode).toBe(1);
  });
});

describe("Reader", () => {
  it("reads big-endian integers", () => {
    const r = new Reader(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]), "t");
    expect(r.u8("a")).toBe(1);
    expect(r.u16("b")).toBe(0x0203);
    expect(r.u32("c")).toBe(0x04050607);
    expect(r.u64("d")).toBe(0x08090a0b0c0d0e0fn);
    r.end();
  });

  it("u32 and u64 cover the full unsigned range", () => {
    const r = new Reader(new Uint8Array(12).fill(0xff), "t");
    expect(r.u32("a")).toBe(0xffffffff);
    expect(r.u64("b")).toBe((1n << 64n) - 1n);
  });

  it("u64n range-checks before narrowing", () => {
    const big = new Writer("t").u64(2n ** 60n).finish();
    expect(caught(() => new Reader(big, "t").u64n("x", 0, 2 ** 46, "TOO_LARGE"))).toMatchObject({ code: "TOO_LARGE", field: "t.x" });
    expect(new Reader(new Writer("t").u64(2 ** 46).finish(), "t").u64n("x", 0, 2 ** 46)).toBe(2 ** 46);
  });

  it("reports TRUNCATED with the field, offset and what is left", () => {
    const e = caught(() => new Reader(Uint8Array.from([0, 0, 1]), "manifest").u32("name"));
    expect(e).toMatchObject({ code: "TRUNCATED", number: 1, field: "manifest.name" });
    expect(e.message).toBe("failed to decode manifest: field name: needs 4 bytes at offset 0, 3 left");
  });

  it("rejects trailing bytes", () => {
    const r = new Reader(Uint8Array.from([1, 2]), "x");
    r.u8("a");
    expect(caught(() => r.end())).toMatchObject({ code: "TRAILING_BYTES", field: "x" });
  });

  it("picks the §1.1 length prefix from the maximum", () => {
    expect([prefixSize(64), prefixSize(255), prefixSize(256), prefixSize(65535), prefixSize(65536), prefixSize(2 ** 24)]).toEqual([1, 1, 2, 2, 4, 4]);
    const w = new Writer("t").vec(Uint8Array.of(9), 1, 65536, "p").finish();
    expect(Array.from(w)).toEqual([0, 0, 0, 1, 9]);
  });

  it("reads and writes vectors with explicit u8 / u16 / u32 prefixes", () => {
    const v = Uint8Array.of(7, 8);
    const bytes = new Writer("t").vec8(v, "a").vec16(v, "b").vec32(v, "c").finish();
    expect(Array.from(bytes)).toEqual([2, 7, 8, 0, 2, 7, 8, 0, 0, 0, 2, 7, 8]);
    const r = new Reader(bytes, "t");
    expect([r.vec8("a"), r.vec16("b"), r.vec32("c")]).toEqual([v, v, v]);
    r.end();
    expect(caught(() => new Reader(Uint8Array.of(0, 3, 1, 2, 3), "t").vec16("b", 0, 2)).code).toBe("BAD_LENGTH");
  });

  it("checks vector lengths against the range before reading the contents", () => {
    expect(caught(() => new Reader(Uint8Array.from([0]), "t").vec("v", 1, 64)).code).toBe("BAD_LENGTH");
    expect(caught(() => new Reader(Uint8Array.from([65]), "t").vec("v", 1, 64)).code).toBe("BAD_LENGTH");
    // A huge length with nothing behind it fails on the range, never allocates.
    expect(caught(() => new Reader(Uint8Array.from([0xff, 0xff, 0xff, 0xff]), "t").vec("v", 0, 2 ** 24)).code).toBe("BAD_LENGTH");
    expect(caught(() => new Reader(Uint8Array.from([0, 0, 0, 9, 1]), "t").vec("v", 0, 2 ** 24)).code).toBe("TRUNCATED");
  });

  it("checks magic: family and kind → WRONG_KIND, version → UNSUPPORTED_VERSION", () => {
    const good = new Writer("t").magic("MF").finish();
    new Reader(good, "t").magic("MF");
    expect(caught(() => new Reader(good, "t").magic("TC"))).toMatchObject({ code: "WRONG_KIND", field: "t.magic" });
    const fam = good.slice();
    fam[0] = 0x56; // "Veil"
    expect(caught(() => new Reader(fam, "t").magic("MF")).code).toBe("WRONG_KIND");
    const v2 = good.slice();
    v2[7] = 2;
    expect(caught(() => new Reader(v2, "t").magic("MF")).code).toBe("UNSUPPORTED_VERSION");
    const v0 = good.slice();
    v0[7] = 0;
    expect(caught(() => new Reader(v0, "t").magic("MF")).code).toBe("UNSUPPORTED_VERSION");
    expect(caught(() => new Reader(good.subarray(0, 7), "t").magic("MF")).code).toBe("TRUNCATED");
  });

  it("withholds values of plaintext structures from messages", () => {
    const e = caught(() => new Reader(Uint8Array.from([0, 0, 0x30, 0x39]), "inner_request", { secret: true }).ranged("max_new_tokens", "u32", 1, 4096));
    expect(e.code).toBe("BAD_VALUE");
    expect(e.message).not.toContain("12345");
    expect(e.message).toContain("withheld");
    const pub = caught(() => new Reader(Uint8Array.from([0, 0, 0x30, 0x39]), "manifest").ranged("x", "u32", 1, 4096));
    expect(pub.message).toContain("12345");
    const kind = caught(() => new Reader(ascii("secretRQ"), "inner_request", { secret: true }).magic("RQ"));
    expect(kind.code).toBe("WRONG_KIND");
    expect(kind.message).not.toContain("secret");
    expect(caught(() => new Reader(ascii("veilXX\0\x01"), "manifest").magic("MF")).message).toContain('got "veilXX"');
  });

  it("Writer and Reader agree on random field sequences", () => {
    type Op = { t: "u8"; v: number } | { t: "u16"; v: number } | { t: "u32"; v: number } | { t: "u64"; v: bigint } | { t: "vec"; v: Uint8Array; max: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.nat(0xff).map((v) => ({ t: "u8" as const, v })),
      fc.nat(0xffff).map((v) => ({ t: "u16" as const, v })),
      fc.nat({ max: 0xffffffff }).map((v) => ({ t: "u32" as const, v })),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => ({ t: "u64" as const, v })),
      fc.tuple(fc.uint8Array({ maxLength: 70 }), fc.constantFrom(255, 65535, 2 ** 24)).map(([v, max]) => ({ t: "vec" as const, v, max })),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 20 }), (ops) => {
        const w = new Writer("t");
        for (const o of ops) {
          if (o.t === "vec") w.vec(o.v, 0, o.max, "v");
          else if (o.t === "u64") w.u64(o.v);
          else w[o.t](o.v);
        }
        const bytes = w.finish();
        const r = new Reader(bytes, "t");
        for (const o of ops) {
          if (o.t === "vec") expect(r.vec("v", 0, o.max)).toEqual(o.v);
          else if (o.t === "u64") expect(r.u64("x")).toBe(o.v);
          else expect(r[o.t]("x")).toBe(o.v);
        }
        r.end();
      }),
      { numRuns: runs },
    );
  });

  it("Writer rejects out-of-range integers as encode errors", () => {
    expect(caught(() => new Writer("m").u8(256, "f"))).toMatchObject({ code: "BAD_VALUE", field: "m.f" });
    expect(caught(() => new Writer("m").u16(-1, "f")).message).toMatch(/^failed to encode m: field f:/);
    expect(caught(() => new Writer("m").u32(1.5, "f")).code).toBe("BAD_VALUE");
    expect(caught(() => new Writer("m").u64(1n << 64n, "f")).code).toBe("BAD_VALUE");
    expect(caught(() => new Writer("m").fixed(new Uint8Array(3), 4, "f")).code).toBe("BAD_LENGTH");
  });
});

describe("§1.4 names", () => {
  const ok = ["a", "model.onnx", "weights/part-1_of_2.bin", "A-Z_09", "x".repeat(64)];
  const bad = ["", ".hidden", "/abs", "sp ace", "é", "x".repeat(65), "a\0b", "a:b"];
  it("accepts names of a-z A-Z 0-9 . _ - / not starting with / or .", () => {
    for (const n of ok) expect(nameProblem(ascii(n))).toBeUndefined();
  });
  it("rejects everything else", () => {
    for (const n of bad) expect(nameProblem(new Uint8Array(Buffer.from(n, "latin1")))).toBeDefined();
  });
  it("program names additionally forbid / and upper case", () => {
    expect(nameProblem(ascii("my-model.v2"), true)).toBeUndefined();
    expect(nameProblem(ascii("My-model"), true)).toBeDefined();
    expect(nameProblem(ascii("a/b"), true)).toBeDefined();
  });
  it("readName rejects with BAD_VALUE, lengths with BAD_LENGTH", () => {
    const enc = (s: string) => Uint8Array.from([s.length, ...Buffer.from(s, "latin1")]);
    expect(readName(new Reader(enc("ok.name"), "m"), "name")).toBe("ok.name");
    expect(caught(() => readName(new Reader(enc(".x"), "m"), "name")).code).toBe("BAD_VALUE");
    expect(caught(() => readName(new Reader(enc("Up"), "m"), "name", true)).code).toBe("BAD_VALUE");
    expect(caught(() => readName(new Reader(Uint8Array.of(0), "m"), "name")).code).toBe("BAD_LENGTH");
  });
});
