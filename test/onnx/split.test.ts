// Tests of the graph/weights splitter (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { afterAll, describe, expect, it } from "vitest";
import {
  GraphBuilder, externalTensor, readChunks, smallModels, syntheticMlp, writeEmbeddedModel, writeExternalModel,
  type Feed, type WeightFile,
} from "../../host/onnx/build.ts";
import { OnnxError } from "../../host/onnx/errors.ts";
import { decodeModel, encodeMessage, encodeModel } from "../../host/onnx/proto.ts";
import { externalData, run, session, type Output } from "../../host/onnx/run.ts";
import { splitModel, type SplitModel, type SplitOptions } from "../../host/onnx/split.ts";
import { concatBytes, lenField, varintField } from "../../host/onnx/wire.ts";
import { digest, expectSame, expectSplitError, freshDir, splitAndRun, tmp } from "./helpers.ts";

// int64 shape/axes tensors (and, by the same rule, multi_io's small int64 "offset").
const KEPT: Record<string, string[]> = {
  conv: [], attention: [], integer: ["axis1"], multi_io: ["offset"], dynamic: ["seq_axis", "flat_shape"],
};

describe("split gives bitwise-identical outputs", () => {
  for (const m of smallModels()) {
    it(`${m.name}`, async () => {
      const path = join(freshDir(), `${m.name}.onnx`);
      writeFileSync(path, m.bytes);
      const ref = await session(m.bytes);
      const { sp, outs } = await splitAndRun(path, m.feeds);
      for (let i = 0; i < m.feeds.length; i++) expectSame(await run(ref, m.feeds[i]), outs[i]);
      const g = decodeModel(sp.graph).graph!;
      const moved = g.initializer!.filter((t) => t.data_location === 1).map((t) => t.name);
      expect(moved).toEqual(sp.tensors.map((t) => t.name));
      expect([...moved, ...sp.kept].sort()).toEqual(g.initializer!.map((t) => t.name).sort());
      expect(sp.kept).toEqual(KEPT[m.name]);
      expect(sp.files.map((f) => f.location)).toEqual(["weights-0.bin"]);
      expect(sp.tensors.every((t) => t.offset % 64 === 0)).toBe(true);
      expect(sp.weightsSize).toBe(sp.files[0].size);
    });
  }

  it("synthetic MLP written as one embedded file", async () => {
    const m = syntheticMlp({ weightsMiB: 4, seed: 21 });
    const feeds = [{ x: { type: "float32" as const, dims: [2, m.inputDim], data: m.sampleInput(2) } }];
    const ref = await run(await session(m.graph, await externalData(m.files)), feeds[0]);
    const path = join(freshDir(), "mlp.onnx");
    await writeEmbeddedModel(path, m.model, m.files);
    const { sp, outs, hash } = await splitAndRun(path, feeds);
    expectSame(ref, outs[0]);
    await expect(sp.files[0].read(0, 1)).rejects.toThrow(/weights-0\.bin: read after close/);
    // Same tensors, same layout, same bytes as the generator's own files.
    const original = m.model.graph!.initializer!.map((t) => {
      const kv = Object.fromEntries(t.external_data!.map((e) => [e.key, e.value]));
      return { name: t.name, location: kv.location, offset: Number(kv.offset), length: Number(kv.length) };
    });
    expect(sp.tensors).toEqual(original);
    expect(hash).toBe(await digest(m.files));
  });
});

describe("models that already use external data", () => {
  it("re-lays out tensors from unaligned offsets in several files and a subfolder", async () => {
    const m = syntheticMlp({ weightsMiB: 3, seed: 5, align: 1, locationPrefix: "data/part-", maxLocationSize: 1_500_000 });
    expect(m.files.length).toBeGreaterThan(1);
    const dir = freshDir();
    await writeExternalModel(dir, "model.onnx", m.graph, m.files);
    const feeds = [{ x: { type: "float32" as const, dims: [1, m.inputDim], data: m.sampleInput(1) } }];
    const ref = await run(await session(join(dir, "model.onnx")), feeds[0]);
    const { sp, outs } = await splitAndRun(join(dir, "model.onnx"), feeds);
    expectSame(ref, outs[0]);
    expect(sp.files.every((f) => /^weights-\d+\.bin$/.test(f.location))).toBe(true);
    expect(sp.tensors.every((t) => t.offset % 64 === 0)).toBe(true);
  });

  it("accepts external_data without offset and length", async () => {
    const dir = freshDir();
    const w = new Float32Array([1.5, -2.25, 3, 0.125]);
    writeFileSync(join(dir, "w.bin"), new Uint8Array(w.buffer));
    const g = new GraphBuilder("ext");
    const x = g.input("x", "float32", [4]);
    const t = externalTensor("w", "float32", [4], { name: "w", location: "w.bin", offset: 0, length: 16 });
    t.external_data = [{ key: "location", value: "w.bin" }];
    g.initTensor(t);
    g.op("Mul", [x, "w"], {}, "y");
    g.output("y", "float32", [4]);
    writeFileSync(join(dir, "m.onnx"), g.bytes());
    const feeds = [{ x: { type: "float32" as const, dims: [4], data: new Float32Array([2, 2, 2, 2]) } }];
    const { outs } = await splitAndRun(join(dir, "m.onnx"), feeds);
    expect(Array.from(new Float32Array(outs[0].y.bytes.buffer))).toEqual([3, -4.5, 6, 0.25]);
  });

  it("inlines a small external int64 shape tensor into the graph", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "shape.bin"), new Uint8Array(new BigInt64Array([3n, -1n]).buffer));
    const g = new GraphBuilder("reshape");
    const x = g.input("x", "float32", [6]);
    g.initTensor(externalTensor("shape", "int64", [2], { name: "shape", location: "shape.bin", offset: 0, length: 16 }));
    g.op("Reshape", [x, "shape"], {}, "y");
    g.output("y", "float32", [3, 2]);
    writeFileSync(join(dir, "m.onnx"), g.bytes());
    const feeds = [{ x: { type: "float32" as const, dims: [6], data: new Float32Array([1, 2, 3, 4, 5, 6]) } }];
    const { sp, outs } = await splitAndRun(join(dir, "m.onnx"), feeds);
    expect(sp.kept).toEqual(["shape"]);
    expect(sp.tensors).toEqual([]);
    expect(outs[0].y.dims).toEqual([3, 2]);
    const shape = decodeModel(sp.graph).graph!.initializer![0];
    expect(shape.data_location ?? 0).toBe(0);
    expect(Array.from(new BigInt64Array(new Uint8Array(shape.raw_data!).buffer))).toEqual([3n, -1n]);
  });

  function externalModel(dir: string, location: string, length: number): string {
    const g = new GraphBuilder("ext");
    const x = g.input("x", "float32", [4]);
    g.initTensor(externalTensor("w", "float32", [4], { name: "w", location, offset: 0, length }));
    g.op("Add", [x, "w"], {}, "y");
    g.output("y", "float32", [4]);
    writeFileSync(join(dir, "m.onnx"), g.bytes());
    return join(dir, "m.onnx");
  }

  it("refuses locations outside the model's folder, missing files and short files", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "short.bin"), new Uint8Array(8));
    await expectSplitError(externalModel(dir, "../outside.bin", 16), "EXTERNAL_DATA", /^failed to split m\.onnx: initializer "w": .*inside the model's folder/);
    await expectSplitError(externalModel(dir, "/etc/hostname", 16), "EXTERNAL_DATA", /initializer "w": .*relative path/);
    await expectSplitError(externalModel(dir, "missing.bin", 16), "EXTERNAL_DATA", /initializer "w": external data file "missing\.bin"/);
    await expectSplitError(externalModel(dir, "short.bin", 16), "EXTERNAL_DATA", /initializer "w": .*outside "short\.bin" \(8 bytes\)/);
    await expectSplitError(externalModel(dir, "short.bin", 8), "MALFORMED", /initializer "w": holds 8 bytes .* need 16/);
  });
});

describe("layout", () => {
  it("splits over several locations at tensor boundaries, aligned, under the limit", async () => {
    const m = syntheticMlp({ weightsMiB: 3, seed: 8, maxLocationSize: 1 << 20 });
    const path = join(freshDir(), "mlp.onnx");
    await writeEmbeddedModel(path, m.model, m.files);
    const feeds = [{ x: { type: "float32" as const, dims: [2, m.inputDim], data: m.sampleInput(2) } }];
    const ref = await run(await session(m.graph, await externalData(m.files)), feeds[0]);
    const max = 1_100_000;
    const { sp, outs } = await splitAndRun(path, feeds, { maxLocationSize: max, align: 4096, locationPrefix: "w" });
    expectSame(ref, outs[0]);
    expect(sp.files.length).toBeGreaterThan(2);
    expect(sp.files.map((f) => f.location)).toEqual(sp.files.map((_, i) => `w${i}.bin`));
    for (const f of sp.files) expect(f.size).toBeLessThanOrEqual(max);
    expect(sp.weightsSize).toBe(sp.files.reduce((a, f) => a + f.size, 0));
    for (const t of sp.tensors) {
      expect(t.offset % 4096).toBe(0);
      expect(t.offset + t.length).toBeLessThanOrEqual(sp.files.find((f) => f.location === t.location)!.size);
    }
    // Tensor order is kept: the weights stream is the files in order.
    const order = sp.tensors.map((t) => [Number(t.location.slice(1, -4)), t.offset]);
    expect(order).toEqual([...order].sort((a, b) => a[0] - b[0] || a[1] - b[1]));
  });

  it("refuses a tensor larger than one location, naming it", async () => {
    const m = syntheticMlp({ weightsMiB: 1, seed: 2 });
    const path = join(freshDir(), "mlp.onnx");
    await writeEmbeddedModel(path, m.model, m.files);
    await expectSplitError(path, "TOO_LARGE", /^failed to split mlp\.onnx: initializer "layer\d\.weight": \d+ bytes is over the 100000-byte limit/, { maxLocationSize: 100_000 });
  });

  it("gives a model without weights one empty file", async () => {
    const g = new GraphBuilder("noweights");
    g.op("Relu", [g.input("x", "float32", [2])], {}, "y");
    g.output("y", "float32", [2]);
    const path = join(freshDir(), "relu.onnx");
    writeFileSync(path, g.bytes());
    const { sp, outs } = await splitAndRun(path, [{ x: { type: "float32", dims: [2], data: new Float32Array([-1, 2]) } }]);
    expect(sp.files.map((f) => [f.location, f.size])).toEqual([["weights-0.bin", 0]]);
    expect(Array.from(new Float32Array(outs[0].y.bytes.buffer))).toEqual([0, 2]);
  });
});

describe("tensor encodings", () => {
  it("keeps int64 shape tensors in the graph by default, because ORT's shape inference reads them", async () => {
    const m = smallModels()[4];
    const path = join(freshDir(), "dynamic.onnx");
    writeFileSync(path, m.bytes);
    const all = await splitModel(path, { keepInGraph: () => false });
    const data = await externalData(all.files);
    await all.close();
    expect(all.kept).toEqual([]);
    const err = await session(all.graph, data).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/Cannot parse data from external tensors/);
    const custom = await splitModel(path, { keepInGraph: (t) => t.name === "flat_shape" || t.name === "seq_axis" || t.name === "proj.b" });
    await custom.close();
    expect(custom.kept).toEqual(["proj.b", "seq_axis", "flat_shape"]);
    expect(custom.tensors.map((t) => t.name)).toEqual(["proj.w"]);
  });

  it("converts typed int64/uint64 data exactly beyond 2^53 and keeps string tensors in the graph", async () => {
    const g = new GraphBuilder("typed");
    const x = g.input("x", "int64", [2]);
    g.init("big", "int64", [2], new BigInt64Array([2n ** 60n + 1n, -3n]), "typed");
    g.init("ubig", "uint64", [1], new BigUint64Array([2n ** 63n + 7n]), "typed");
    g.initTensor({ name: "words", data_type: 8, dims: [2], string_data: [new TextEncoder().encode("veil"), new Uint8Array([0xff])] });
    g.op("Add", [x, "big"], {}, "y");
    g.op("Identity", ["ubig"], {}, "u");
    g.output("y", "int64", [2]);
    g.output("u", "uint64", [1]);
    const path = join(freshDir(), "typed.onnx");
    writeFileSync(path, g.bytes());
    const feeds = [{ x: { type: "int64" as const, dims: [2], data: new BigInt64Array([1n, 1n]) } }];
    // Moved to external data, and kept in the graph as raw_data by the default rule.
    for (const keepInGraph of [() => false, undefined]) {
      const { sp, outs } = await splitAndRun(path, feeds, { keepInGraph });
      expect(Array.from(new BigInt64Array(outs[0].y.bytes.buffer))).toEqual([2n ** 60n + 2n, -2n]);
      expect(Array.from(new BigUint64Array(outs[0].u.bytes.buffer))).toEqual([2n ** 63n + 7n]);
      const words = decodeModel(sp.graph).graph!.initializer!.find((t) => t.name === "words")!;
      expect(words.data_location ?? 0).toBe(0);
      expect(words.string_data!.map((s) => Buffer.from(s).toString("hex"))).toEqual(["7665696c", "ff"]);
      expect(sp.kept).toEqual(keepInGraph ? ["words"] : ["big", "words"]);
    }
  });

  it("refuses typed data above the conversion budget", async () => {
    const m = smallModels()[4]; // typed float_data/int64_data initializers
    const path = join(freshDir(), "dynamic.onnx");
    writeFileSync(path, m.bytes);
    await expectSplitError(path, "TOO_LARGE", /initializer "proj\.w"|typed \*_data initializers to convert/, { maxConvertBytes: 50 });
  });

  it("keeps fields unknown to the vendored schema, at model, graph and tensor level", async () => {
    const marker = (s: string) => lenField(999, new TextEncoder().encode(s));
    const g = new GraphBuilder("unknown");
    g.op("Add", [g.input("x", "float32", [2]), "w"], {}, "y");
    g.output("y", "float32", [2]);
    const model = g.model();
    const tensorBytes = concatBytes([
      encodeMessage("TensorProto", { name: "w", data_type: 1, dims: [2], raw_data: new Uint8Array(new Float32Array([1, 2]).buffer) }),
      marker("tensor-marker"),
    ]);
    const graphBytes = concatBytes([encodeMessage("GraphProto", model.graph!), lenField(5, tensorBytes), marker("graph-marker")]);
    const bytes = concatBytes([encodeModel({ ...model, graph: undefined }), marker("model-marker"), lenField(7, graphBytes), varintField(998, 2 ** 40)]);
    const path = join(freshDir(), "unknown.onnx");
    writeFileSync(path, bytes);
    const { sp, outs } = await splitAndRun(path, [{ x: { type: "float32", dims: [2], data: new Float32Array([1, 1]) } }]);
    expect(Array.from(new Float32Array(outs[0].y.bytes.buffer))).toEqual([2, 3]);
    const text = Buffer.from(sp.graph).toString("latin1");
    for (const s of ["tensor-marker", "graph-marker", "model-marker"]) expect(text).toContain(s);
  });
});

describe("malformed input gets a clean error", () => {
  const good = () => smallModels()[0].bytes;
  const cases: [string, () => Uint8Array, string, RegExp][] = [
    ["an empty file", () => new Uint8Array(0), "MALFORMED", /empty file/],
    ["random bytes", () => { const b = new Uint8Array(4096); for (let i = 0; i < b.length; i++) b[i] = (i * 2654435761) >>> 24; return b; }, "MALFORMED", /./],
    ["a truncated model", () => good().subarray(0, good().length - 100), "MALFORMED", /past the end|truncated|unexpected end/],
    ["a length past the end", () => concatBytes([new Uint8Array([0x3a]), new Uint8Array([0xff, 0xff, 0xff, 0x0f])]), "MALFORMED", /past the end/],
    ["a group wire type", () => new Uint8Array([0x0b, 0x0c]), "MALFORMED", /wire type 3/],
    ["field number 0", () => new Uint8Array([0x02, 0x00]), "MALFORMED", /field number 0/],
    ["no graph", () => encodeModel({ ir_version: 8 }), "MALFORMED", /no graph/],
    ["an overlong varint", () => new Uint8Array(12).fill(0xff), "MALFORMED", /varint/],
    ["two graphs", () => concatBytes([good(), good()]), "UNSUPPORTED", /more than one graph/],
    ["an initializer whose raw_data does not fit its dims", () => {
      const g = new GraphBuilder("bad");
      g.initTensor({ name: "w1", data_type: 1, dims: [3], raw_data: new Uint8Array(8) });
      g.op("Relu", [g.input("x", "float32", [3])], {}, "y");
      return g.bytes();
    }, "MALFORMED", /initializer "w1": holds 8 bytes of data but dims \[3\]/],
  ];
  for (const [what, bytes, code, pattern] of cases) {
    it(what, async () => {
      const path = join(freshDir(), "model.onnx");
      writeFileSync(path, bytes());
      await expectSplitError(path, code, /^failed to split model\.onnx: /);
      await expectSplitError(path, code, pattern);
    });
  }

  it("a missing file is an IO error with the path's name", async () => {
    await expectSplitError(join(tmp, "nope.onnx"), "IO", /^failed to split nope\.onnx: .*ENOENT/);
  });

  it("a graph over maxGraphBytes", async () => {
    const path = join(freshDir(), "model.onnx");
    writeFileSync(path, smallModels()[1].bytes);
    await expectSplitError(path, "TOO_LARGE", /graph without weights .* exceeds 300 bytes/, { maxGraphBytes: 300 });
  });
});

describe("memory", () => {
  it("splits ~200 MiB of weights without reading them into memory", async () => {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    const m = syntheticMlp({ weightsMiB: 200, seed: 31 });
    const path = join(freshDir(), "big.onnx");
    await writeEmbeddedModel(path, m.model, m.files);

    // Settle earlier tests' garbage (ArrayBuffer backing stores are freed lazily).
    gc();
    await new Promise((r) => setTimeout(r, 50));
    gc();
    const base = process.memoryUsage();
    const peak = { ...base };
    const sample = () => {
      const u = process.memoryUsage();
      peak.rss = Math.max(peak.rss, u.rss);
      peak.arrayBuffers = Math.max(peak.arrayBuffers, u.arrayBuffers);
      peak.external = Math.max(peak.external, u.external);
      peak.heapUsed = Math.max(peak.heapUsed, u.heapUsed);
    };
    const timer = setInterval(sample, 1);
    let sp: SplitModel;
    let hash: string;
    try {
      sp = await splitModel(path);
      sample();
      hash = await digest(sp.files); // the sealer's access pattern: one reused buffer
      sample();
    } finally {
      clearInterval(timer);
    }
    await sp.close();
    const MiB = 2 ** 20;
    const growth = {
      rss: (peak.rss - base.rss) / MiB,
      arrayBuffers: (peak.arrayBuffers - base.arrayBuffers) / MiB,
      external: (peak.external - base.external) / MiB,
      heapUsed: (peak.heapUsed - base.heapUsed) / MiB,
    };
    console.log("split memory growth (MiB):", JSON.stringify(growth));
    expect(sp.weightsSize).toBeGreaterThan(199 * MiB);
    expect(growth.arrayBuffers, JSON.stringify(growth)).toBeLessThan(16);
    expect(growth.external, JSON.stringify(growth)).toBeLessThan(16);
    expect(growth.heapUsed, JSON.stringify(growth)).toBeLessThan(32);
    expect(growth.rss, JSON.stringify(growth)).toBeLessThan(64);
    expect(hash).toBe(await digest(m.files));
  });
});
