// In-process tests of the CLI's pure helpers: the progress display (TTY and plain), tensor
// JSON (float16, shortest floats, int64, specials), byte sizes, --dim, the I/O schema.
import { describe, expect, it } from "vitest";
import { DTYPE } from "../../host/formats/constants.ts";
import { GraphBuilder } from "../../host/onnx/build.ts";
import { decodeModel } from "../../host/onnx/proto.ts";
import { parseSize } from "../../host/cli/args.ts";
import { describeError } from "../../host/cli/errors.ts";
import { Progress, progressWanted } from "../../host/cli/progress.ts";
import { ioSchema, parseDimOption } from "../../host/cli/schema.ts";
import { fromFloat16Bits, tensorToJson, tensorsFromJson, toFloat16Bits } from "../../host/cli/tensors-json.ts";

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, columns: 100, write: (s: string) => void writes.push(s) } as unknown as NodeJS.WriteStream };
}

describe("progress", () => {
  it("on a TTY: one line redrawn in place, with percent, MiB and MiB/s, ended by a newline", () => {
    const { writes, stream } = fakeStream(true);
    const p = new Progress({ label: "sealing weights", total: 100 << 20, stream, enabled: true });
    p.update(50 << 20);
    p.update(100 << 20);
    p.finish();
    expect(writes.every((w) => w.startsWith("\r\x1b[K"))).toBe(true);
    expect(writes[0]).toMatch(/sealing weights {2}\[█+░+\] +50% {2}50\.0 \/ 100\.0 MiB {2}[\d.]+ MiB\/s/);
    expect(writes.at(-1)).toMatch(/100% {2}100\.0 \/ 100\.0 MiB .*\n$/);
  });

  it("not a TTY: plain periodic lines and a final one; disabled: nothing", async () => {
    const { writes, stream } = fakeStream(false);
    const p = new Progress({ label: "loading weights", total: 10 << 20, stream, enabled: true, intervalMs: 5 });
    p.update(1 << 20); // too soon after the start
    await new Promise((r) => setTimeout(r, 10));
    p.update(5 << 20);
    p.finish();
    expect(writes).toHaveLength(2);
    expect(writes[0]).toMatch(/^loading weights: 50% \(5\.0 of 10\.0 MiB, [\d.]+ MiB\/s\)\n$/);
    expect(writes[1]).toMatch(/^loading weights: done, 10\.0 MiB in [\d.]+ s \([\d.]+ MiB\/s\)\n$/);
    const off = fakeStream(false);
    const q = new Progress({ label: "x", total: 1, stream: off.stream, enabled: false });
    q.update(1);
    q.finish();
    expect(off.writes).toEqual([]);
  });

  it("shown for large streams, or when forced; never with --quiet or --json", () => {
    expect(progressWanted({}, 1 << 20)).toBe(false);
    expect(progressWanted({}, 64 << 20)).toBe(true);
    expect(progressWanted({ progress: true }, 1)).toBe(true);
    expect(progressWanted({ "no-progress": true }, 64 << 20)).toBe(false);
    expect(progressWanted({ quiet: true, progress: true }, 64 << 20)).toBe(false);
    expect(progressWanted({ json: true }, 64 << 20)).toBe(false);
  });
});

describe("tensor JSON", () => {
  it("float16 conversion is exact for every half value, and rounds to nearest even", () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = fromFloat16Bits(h);
      if (Number.isNaN(x)) expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(x)))).toBe(true);
      else expect(toFloat16Bits(x), `0x${h.toString(16)}`).toBe(h);
    }
    expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // a tie: to even
    expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(toFloat16Bits(2 ** -25)).toBe(0); // half the smallest subnormal: to even (0)
    expect(toFloat16Bits(65520)).toBe(0x7c00); // rounds to infinity
  });

  it("floats print as the shortest decimal that reads back the same, specials as strings", () => {
    const f = new Float32Array([0.1, 1 / 3, -0, NaN, Infinity, -Infinity, 0.11088469624519348, 3.4028234663852886e38, 1e-45]);
    const j = tensorToJson({ name: "y", dtype: DTYPE.FLOAT32, dims: [f.length], data: new Uint8Array(f.buffer) });
    expect(j.data.slice(0, 6)).toEqual([0.1, 0.33333334, "-0", "NaN", "Infinity", "-Infinity"]);
    expect(String(j.data[6]).replace(/^0\./, "").length).toBeLessThanOrEqual(9);
    const back = Float32Array.from(j.data, (v) => (typeof v === "number" ? v : v === "-0" ? -0 : Number(v)));
    expect(Buffer.from(back.buffer).equals(Buffer.from(f.buffer))).toBe(true);
  });

  it("round trip of every dtype; inputs come back in the manifest's order", () => {
    const specs = [
      { name: "a", dtype: DTYPE.INT64, dims: [{ min: 3, max: 3 }] },
      { name: "b", dtype: DTYPE.FLOAT16, dims: [{ min: 2, max: 2 }] },
      { name: "c", dtype: DTYPE.BOOL, dims: [] },
      { name: "d", dtype: DTYPE.INT8, dims: [{ min: 2, max: 2 }] },
    ];
    const text = JSON.stringify([
      { name: "d", dtype: "int8", dims: [2], data: [-128, 127] },
      { name: "c", dims: [], data: [true] },
      { name: "b", dtype: "float16", dims: [2], data: [0.1, "-Infinity"] },
      { name: "a", dtype: 7, dims: [3], data: [1, "-9223372036854775808", "9007199254740993"] },
    ]);
    const ts = tensorsFromJson(text, specs, "t");
    expect(ts.map((t) => t.name)).toEqual(["a", "b", "c", "d"]);
    const j = ts.map(tensorToJson);
    expect(j[0].data).toEqual([1, "-9223372036854775808", "9007199254740993"]);
    expect(j[1].data).toEqual([0.1, "-Infinity"]);
    expect(j[2]).toEqual({ name: "c", dtype: "bool", dims: [], data: [1] });
    expect(j[3].data).toEqual([-128, 127]);
  });

  it("refuses unknown, missing and duplicate inputs, bad element counts and out-of-range integers, without quoting values", () => {
    const specs = [{ name: "x", dtype: DTYPE.UINT8, dims: [{ min: 1, max: 4 }] }];
    const bad = (v: unknown) => () => tensorsFromJson(JSON.stringify(v), specs, "in");
    expect(bad([{ name: "z", dims: [1], data: [1] }])).toThrow(/tensor "z" is not an input of the program \(its inputs: x\)/);
    expect(bad([])).toThrow(/missing input x/);
    expect(bad([{ name: "x", dims: [1], data: [1] }, { name: "x", dims: [1], data: [1] }])).toThrow(/given twice/);
    expect(bad([{ name: "x", dims: [2], data: [1] }])).toThrow(/1 elements, dims \[2\] need 2/);
    expect(bad([{ name: "x", dims: [1], data: [256] }])).toThrow(/element 0 is not an integer in 0\.\.255$/);
    expect(bad({})).toThrow(/expected a JSON list/);
  });
});

describe("options and schema", () => {
  it("byte sizes", () => {
    expect(parseSize("65536", "s")).toBe(65536);
    expect(parseSize("64KiB", "s")).toBe(65536);
    expect(parseSize("1MiB", "s")).toBe(1 << 20);
    expect(parseSize("1M", "s")).toBe(1 << 20);
    expect(parseSize("1.5MB", "s")).toBe(1_500_000);
    expect(() => parseSize("1 parsec", "--chunk-size")).toThrow(/--chunk-size "1 parsec": not a byte size/);
  });

  it("--dim and the I/O schema: symbolic, per-axis and default ranges; initializers are not inputs; TENSOR_MAX", () => {
    expect(parseDimOption("batch=1..8")).toEqual(["batch", { min: 1, max: 8 }]);
    expect(parseDimOption("x[0]=4")).toEqual(["x[0]", { min: 1, max: 4 }]);
    expect(() => parseDimOption("x=0")).toThrow(/need 1 ≤ min ≤ max/);
    const g = new GraphBuilder("s");
    const x = g.input("x", "float32", ["batch", "seq", 4]);
    g.input("w", "float32", [4, 2]); // an initializer listed as an input (IR < 4 style)
    g.init("w", "float32", [4, 2], new Float32Array(8));
    g.op("MatMul", [x, "w"], {}, "y");
    g.output("y", "float32", ["batch", "seq", 2]);
    const model = decodeModel(g.bytes());
    const s = ioSchema(model, { maxDim: 100, byKey: new Map([parseDimOption("batch=2..8"), parseDimOption("y[1]=3")]) });
    expect(s.inputs).toEqual([{ name: "x", dtype: 1, dims: [{ min: 2, max: 8 }, { min: 1, max: 100 }, { min: 4, max: 4 }] }]);
    expect(s.outputs[0].dims).toEqual([{ min: 2, max: 8 }, { min: 1, max: 3 }, { min: 2, max: 2 }]);
    expect(s.dynamic).toEqual(["x[0] (batch) = 2..8", "x[1] (seq) = 1..100", "y[0] (batch) = 2..8", "y[1] (seq) = 1..3"]);
    expect(() => ioSchema(model, { maxDim: 4096, byKey: new Map() })).toThrow(/graph input "x": at the largest dims \[4096, 4096, 4\] it is over TENSOR_MAX/);
  });

  it("errors describe as one line with their SPEC or ONNX code", () => {
    const e = Object.assign(new Error("failed to decode manifest: field name: x\nmore"), { name: "VeilFormatError", code: "BAD_VALUE" });
    expect(describeError(e)).toEqual({ line: "failed to decode manifest: field name: x; more [BAD_VALUE]", exitCode: 1 });
    const fsErr = Object.assign(new Error("ENOENT: no such file or directory, open 'a'"), { code: "ENOENT", syscall: "open", path: "a" });
    expect(describeError(fsErr).line).toBe("cannot open a: no such file or directory");
  });
});
