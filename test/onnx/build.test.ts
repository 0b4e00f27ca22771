// Tests of the ONNX builder, the five small models and the synthetic MLP (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  GraphBuilder, inlineModel, readAll, readChunks, smallModels, syntheticMlp, writeEmbeddedModel, writeExternalModel,
} from "../../host/onnx/build.ts";
import { decodeModel, encodeModel } from "../../host/onnx/proto.ts";
import { externalData, run, session } from "../../host/onnx/run.ts";

const tmp = mkdtempSync(join(tmpdir(), "veil-onnx-build-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const EXPECTED: Record<string, Record<string, string>> = {
  conv: { logits: "float32[1,4]" },
  attention: { y: "float32[1,8,16]", attn_probs: "float32[1,8,8]" },
  integer: { pooled: "float32[2,8]", best: "int64[2]", score: "int32[2]" },
  multi_io: { sum: "float32[2,3]", prod: "float32[2,4]", scaled: "float64[2,3]", shifted: "int64[2]", positive: "bool[2,3]" },
  dynamic: { pooled: "float32[1,6]", flat: "float32[3,6]" },
};

describe("small models", () => {
  for (const m of smallModels()) {
    it(`${m.name} runs in onnxruntime-node`, async () => {
      const s = await session(m.bytes);
      const out = await run(s, m.feeds[0]);
      const shapes = Object.fromEntries(Object.entries(out).map(([k, o]) => [k, `${o.type}[${o.dims}]`]));
      expect(shapes).toEqual(EXPECTED[m.name]);
      // Not a constant graph: another input gives another output.
      for (const o of Object.values(out)) expect(o.bytes.some((b) => b !== 0)).toBe(true);
    });
  }

  it("the five are structurally different", () => {
    const ops = smallModels().map((m) => new Set(m.model.graph!.node!.map((n) => n.op_type)));
    expect(ops[0].has("Conv") && ops[0].has("MaxPool")).toBe(true);
    expect(ops[1].has("LayerNormalization") && ops[1].has("Softmax") && ops[1].has("Transpose")).toBe(true);
    expect(ops[2].has("Gather") && ops[2].has("ReduceMean")).toBe(true);
    const multi = smallModels()[3].model.graph!;
    expect(multi.input!.length).toBeGreaterThan(1);
    expect(multi.output!.length).toBeGreaterThan(1);
    const dyn = smallModels()[4].model.graph!.input![0].type!.tensor_type!.shape!.dim!;
    expect(dyn.map((d) => d.dim_param)).toEqual(["batch", "seq", undefined]);
  });

  it("the dynamic model runs at two batch/sequence sizes", async () => {
    const m = smallModels()[4];
    const s = await session(m.bytes);
    const a = await run(s, m.feeds[0]);
    const b = await run(s, m.feeds[1]);
    expect(a.pooled.dims).toEqual([1, 6]);
    expect(b.pooled.dims).toEqual([3, 6]);
    expect(b.flat.dims).toEqual([21, 6]);
  });

  it("models round-trip through decode and encode", () => {
    for (const m of smallModels()) {
      const decoded = decodeModel(m.bytes);
      expect(decoded.graph!.node!.length).toBe(m.model.graph!.node!.length);
      expect(encodeModel(decoded)).toEqual(m.bytes);
    }
  });
});

describe("GraphBuilder", () => {
  it("builds a model with symbolic dims and typed attributes", async () => {
    const g = new GraphBuilder("tiny");
    const x = g.input("x", "float32", ["n", 2]);
    const w = g.init("w", "float32", [2], new Float32Array([0.5, -2]));
    g.op("LeakyRelu", [g.op("Mul", [x, w])], { alpha: { f: 2 } }, "y");
    g.output("y", "float32", ["n", 2]);
    const out = await run(await session(g.bytes()), { x: { type: "float32", dims: [1, 2], data: new Float32Array([4, 1]) } });
    expect(Array.from(new Float32Array(out.y.bytes.buffer))).toEqual([2, -4]);
  });
});

describe("syntheticMlp", () => {
  it("sizes the weights near the target and lays them out aligned", () => {
    const m = syntheticMlp({ weightsMiB: 8, seed: 3 });
    expect(Math.abs(m.weightBytes - 8 * 2 ** 20)).toBeLessThan(4 * (m.hidden + 1) * 2);
    for (const t of m.model.graph!.initializer!) {
      expect(t.data_location).toBe(1);
      expect(t.raw_data).toBeUndefined();
      const offset = Number(t.external_data!.find((e) => e.key === "offset")!.value);
      expect(offset % 64).toBe(0);
    }
    const wide = syntheticMlp({ weightsMiB: 8, hidden: 256 });
    expect(wide.hidden).toBe(256);
    expect(Math.abs(wide.weightBytes - 8 * 2 ** 20)).toBeLessThan(4 * 257 * 256);
  });

  it("produces the same bytes for any slicing of a weight file", async () => {
    const m = syntheticMlp({ weightsMiB: 1, seed: 9 });
    const f = m.files[0];
    const whole = await readAll(f);
    const pieces: Uint8Array[] = [];
    for await (const p of readChunks(f, 65_537)) pieces.push(p);
    expect(Buffer.concat(pieces).equals(Buffer.from(whole))).toBe(true);
    expect(Buffer.from(await f.read(12_345, 999)).equals(Buffer.from(whole.subarray(12_345, 13_344)))).toBe(true);
    const again = syntheticMlp({ weightsMiB: 1, seed: 9 });
    expect(Buffer.from(await readAll(again.files[0])).equals(Buffer.from(whole))).toBe(true);
    const other = syntheticMlp({ weightsMiB: 1, seed: 10 });
    expect(Buffer.from(await readAll(other.files[0])).equals(Buffer.from(whole))).toBe(false);
  });

  it("spreads over several locations under a small maxLocationSize", () => {
    const m = syntheticMlp({ weightsMiB: 2, maxLocationSize: 700_000 });
    expect(m.files.length).toBeGreaterThan(2);
    for (const f of m.files) expect(f.size).toBeLessThanOrEqual(700_000);
    expect(m.files.map((f) => f.location)).toEqual(m.files.map((_, i) => `weights-${i}.bin`));
  });

  it("runs in ORT from memory, inlined, embedded on disk and external on disk, identically", async () => {
    const m = syntheticMlp({ weightsMiB: 2, seed: 4, maxLocationSize: 1 << 20 });
    const feeds = { x: { type: "float32" as const, dims: [3, m.inputDim], data: m.sampleInput(3) } };
    const ref = await run(await session(m.graph, await externalData(m.files)), feeds);
    expect(ref.y.dims).toEqual([3, m.outputDim]);

    const inlined = await run(await session(encodeModel(await inlineModel(m.model, m.files))), feeds);
    const embeddedPath = join(tmp, "mlp.onnx");
    const size = await writeEmbeddedModel(embeddedPath, m.model, m.files);
    expect(readFileSync(embeddedPath).length).toBe(size);
    const embedded = await run(await session(embeddedPath), feeds);
    await writeExternalModel(join(tmp, "ext"), "mlp.onnx", m.graph, m.files);
    const external = await run(await session(join(tmp, "ext", "mlp.onnx")), feeds);
    for (const o of [inlined, embedded, external]) expect(Buffer.from(o.y.bytes).equals(Buffer.from(ref.y.bytes))).toBe(true);
  });
});
