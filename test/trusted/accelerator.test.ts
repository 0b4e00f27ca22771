// The ONNX Runtime accelerator on its own, in this process: staging and wiping, offset
// checks, the 2 GiB location rule, TensorList in and out for every SPEC dtype at every
// alignment, and the graph/manifest signature check.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { GraphBuilder, readAll, syntheticMlp, type DType, type TypedData, type WeightFile } from "../../host/onnx/build.ts";
import { ACCELERATOR_FAILED, MAX_LOCATION_BYTES, OrtAccelerator } from "../../host/trusted/accelerator-ort.ts";
import { OrtRuntime, parseOrtConfig } from "../../host/trusted/ort-runtime.ts";
import { jsonLogger, silentLogger } from "../../host/trusted/log.ts";
import { TensorListError, readTensorList, typedView, writeTensorList } from "../../host/trusted/tensorlist.ts";
import { readManifestFacts } from "../../host/trusted/manifest-facts.ts";
import { reference } from "./helpers.ts";

async function descriptorFor(files: readonly { location: string; size: number; read?: WeightFile["read"] }[]): Promise<F.WeightsDescriptor> {
  const sw = await F.sealWeights({
    files: files.map((f) => ({ location: f.location, size: f.size, source: f.read ? async function* () { yield await f.read!(0, f.size); } : [] })),
    dataKey: new Uint8Array(32), keyId: new Uint8Array(16), chunkSize: 1 << 16, out: () => undefined,
  });
  return sw.descriptor;
}

function manifestFor(name: string, graph: Uint8Array, inputs: F.TensorSpec[], outputs: F.TensorSpec[], weights: F.WeightsDescriptor): Uint8Array {
  return F.buildManifest({ name, version: 1, graph, inputs, outputs, weights }).bytes;
}

const allZero = (b: Uint8Array) => b.every((x) => x === 0);
const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

describe("OrtAccelerator: weights staging", async () => {
  const mlp = syntheticMlp({ weightsMiB: 3, maxLocationSize: 700_000, seed: 7 });
  const stream = new Uint8Array(Buffer.concat(await Promise.all(mlp.files.map((f) => readAll(f)))));
  const weights = await descriptorFor(mlp.files);
  const io = {
    inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 64, max: 64 }] }],
    outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 16, max: 16 }] }],
  };
  const manifest = manifestFor("mlp", mlp.graph, io.inputs, io.outputs, weights);

  it("stages each location in shared memory, in pieces that span files; measures them (§9.1); wipes every staging buffer at finish; ONNX Runtime keeps its own copy", async () => {
    expect(mlp.files.length).toBeGreaterThan(3);
    const staged: { location: string; buffer: Uint8Array; at: number }[] = [];
    let received = 0;
    const acc = new OrtAccelerator({ observeStaging: (_p, location, buffer) => staged.push({ location, buffer, at: received }) });
    expect(acc.createProgram(5, manifest, mlp.graph)).toBeUndefined();
    // Every location's staging exists from create-program on (its pages are touched only as
    // the stream nears them), so the measurement thread can work ahead.
    expect(staged.map((s) => s.buffer.length)).toEqual(mlp.files.map((f) => f.size));
    expect(staged.every((s) => s.buffer.buffer instanceof SharedArrayBuffer && allZero(s.buffer))).toBe(true);
    const piece = 65536;
    let spanned = 0;
    const bounds = weights.files.reduce<number[]>((a, f) => [...a, (a.at(-1) ?? 0) + f.size], []);
    for (let o = 0; o < stream.length; o += piece) {
      const end = Math.min(o + piece, stream.length);
      if (bounds.some((b) => b > o && b < end)) spanned++;
      // A view into a larger buffer, as the loader's memory is.
      const host = new Uint8Array(end - o + 16);
      host.set(stream.subarray(o, end), 3);
      expect(acc.uploadWeights(5, BigInt(o), host.subarray(3, 3 + end - o))).toBeUndefined();
      host.fill(0); // the loader wipes its copy after the call: the accelerator must have copied
      received = end;
    }
    expect(spanned).toBeGreaterThan(0);
    expect(staged.map((s) => s.location)).toEqual(mlp.files.map((f) => f.location));
    staged.forEach((s, i) => {
      expect(s.buffer.length).toBe(mlp.files[i].size); // sized exactly
      expect(s.at).toBe(0);
      expect(allZero(s.buffer)).toBe(false);
    });
    // The measurement is SHA-256 of the weights stream as staged; nothing is built before the
    // loader asks for it.
    const acc5 = new OrtAccelerator();
    expect(acc5.createProgram(5, manifest, mlp.graph)).toBeUndefined();
    expect(acc5.uploadWeights(5, 0n, stream)).toBeUndefined();
    expect(acc5.finishWeights(5)).toBe(ACCELERATOR_FAILED);
    expect(acc5.takeFailure()).toMatch(/before measure-weights/);
    acc5.close();
    expect(acc.measureWeights(5)).toEqual(sha256(stream));
    expect(acc.finishWeights(5)).toBeUndefined();
    // The measurement thread wipes the staging once the session exists, off this thread.
    await acc.stagingWiped();
    for (const s of staged) expect(allZero(s.buffer), `${s.location} wiped`).toBe(true);

    // The session still computes the model: ONNX Runtime copied the external data.
    const x = mlp.sampleInput(3);
    const list = F.encodeTensorList([F.tensorFromArray("x", 1, [3, 64], x)]);
    const out = acc.run(5, list) as Uint8Array;
    expect(out).toBeInstanceOf(Uint8Array);
    const got = F.decodeTensorList(out.slice());
    // The returned list is wiped once the loader has copied it (after the current call stack).
    expect(allZero(out)).toBe(false);
    await Promise.resolve();
    expect(allZero(out)).toBe(true);
    const [want] = await reference({ graph: mlp.graph, files: mlp.files }, [{ x: { type: "float32", dims: [3, 64], data: x } }]);
    expect(got[0].name).toBe("y");
    expect(got[0].dims).toEqual(want.y.dims);
    expect(Buffer.from(got[0].data).equals(Buffer.from(want.y.bytes))).toBe(true);
    acc.dropProgram(5);
    expect(acc.programCount).toBe(0);
  });

  it("refuses offsets out of order, overlapping or past plaintext_size, weights after finish, and an early finish", () => {
    const acc = new OrtAccelerator();
    expect(acc.createProgram(1, manifest, mlp.graph)).toBeUndefined();
    expect(acc.uploadWeights(1, 10n, stream.subarray(10, 20))).toBe(ACCELERATOR_FAILED);
    expect(acc.takeFailure()).toMatch(/offset 10, expected 0/);
    // a failed program takes nothing more
    expect(acc.uploadWeights(1, 0n, stream.subarray(0, 10))).toBe(ACCELERATOR_FAILED);
    acc.dropProgram(1);

    expect(acc.createProgram(2, manifest, mlp.graph)).toBeUndefined();
    expect(acc.uploadWeights(2, 0n, stream.subarray(0, 100))).toBeUndefined();
    expect(acc.uploadWeights(2, 50n, stream.subarray(50, 150))).toBe(ACCELERATOR_FAILED); // overlap
    expect(acc.takeFailure()).toMatch(/expected 100/);
    acc.dropProgram(2);

    expect(acc.createProgram(3, manifest, mlp.graph)).toBeUndefined();
    expect(acc.uploadWeights(3, 0n, stream)).toBeUndefined();
    expect(acc.uploadWeights(3, BigInt(stream.length), new Uint8Array(1))).toBe(ACCELERATOR_FAILED);
    expect(acc.takeFailure()).toMatch(/past plaintext_size/);
    acc.dropProgram(3);

    let staged: Uint8Array[] = [];
    const acc2 = new OrtAccelerator({ observeStaging: (_p, _l, b) => staged.push(b) });
    expect(acc2.createProgram(4, manifest, mlp.graph)).toBeUndefined();
    expect(acc2.uploadWeights(4, 0n, stream.subarray(0, 1000))).toBeUndefined();
    expect(acc2.measureWeights(4)).toBe(ACCELERATOR_FAILED);
    expect(acc2.takeFailure()).toMatch(/after 1000 of/);
    expect(staged.every(allZero)).toBe(true); // wiped on the failure path too
    acc2.dropProgram(4);

    staged = [];
    expect(acc2.createProgram(6, manifest, mlp.graph)).toBeUndefined();
    expect(acc2.uploadWeights(6, 0n, stream)).toBeUndefined();
    expect(acc2.measureWeights(6)).toEqual(sha256(stream));
    expect(acc2.uploadWeights(6, BigInt(stream.length), new Uint8Array(0))).toBe(ACCELERATOR_FAILED);
    expect(acc2.takeFailure()).toMatch(/after measure-weights/);
    expect(acc2.finishWeights(6)).toBe(ACCELERATOR_FAILED); // a failed program takes nothing more
    expect(acc2.takeFailure()).toMatch(/failed earlier/);

    expect(acc2.createProgram(7, manifest, mlp.graph)).toBeUndefined();
    expect(acc2.uploadWeights(7, 0n, stream)).toBeUndefined();
    expect(acc2.measureWeights(7)).toEqual(sha256(stream));
    expect(acc2.measureWeights(7)).toBe(ACCELERATOR_FAILED); // once only
    expect(acc2.takeFailure()).toMatch(/after the weights were measured/);

    expect(acc2.createProgram(8, manifest, mlp.graph)).toBeUndefined();
    expect(acc2.uploadWeights(8, 0n, stream)).toBeUndefined();
    expect(acc2.measureWeights(8)).toEqual(sha256(stream));
    expect(acc2.finishWeights(8)).toBeUndefined();
    expect(acc2.finishWeights(8)).toBe(ACCELERATOR_FAILED);
    expect(acc2.takeFailure()).toMatch(/called twice/);
    acc2.close();
    expect(acc2.programCount).toBe(0);
    // Program 8's staging may still be with its measurement thread: close wipes it here.
    expect(staged.every(allZero)).toBe(true);
  });

  it("dropProgram wipes a half-staged program", () => {
    const staged: Uint8Array[] = [];
    const acc = new OrtAccelerator({ observeStaging: (_p, _l, b) => staged.push(b) });
    expect(acc.createProgram(9, manifest, mlp.graph)).toBeUndefined();
    expect(acc.uploadWeights(9, 0n, stream.subarray(0, 900_000))).toBeUndefined();
    expect(staged.length).toBe(weights.files.length);
    expect(staged.some((b) => !allZero(b))).toBe(true);
    acc.dropProgram(9);
    expect(staged.every(allZero)).toBe(true);
    expect(acc.run(9, new Uint8Array(1))).toBe(ACCELERATOR_FAILED);
  });

  it("refuses an external-data location of 2 GiB or more at create-program, with a clear reason", async () => {
    const big = MAX_LOCATION_BYTES + 1;
    const d: F.WeightsDescriptor = {
      ...(await descriptorFor([{ location: "x.bin", size: 0 }])),
      plaintextSize: big + 10, chunkSize: 1 << 24, chunkCount: Math.ceil((big + 10) / (1 << 24)),
      files: [{ location: "huge.bin", size: big }, { location: "rest.bin", size: 10 }],
    };
    const acc = new OrtAccelerator();
    expect(acc.createProgram(1, manifestFor("big", mlp.graph, io.inputs, io.outputs, d), mlp.graph)).toBe(ACCELERATOR_FAILED);
    expect(acc.takeFailure()).toMatch(/"huge\.bin" is 2147483648 bytes; ONNX Runtime takes at most 2147483647/);
    expect(acc.programCount).toBe(0);
    // Exactly 2^31 − 1 is accepted (nothing is allocated until bytes arrive).
    const ok = { ...d, plaintextSize: MAX_LOCATION_BYTES + 10, chunkCount: Math.ceil((MAX_LOCATION_BYTES + 10) / (1 << 24)), files: [{ location: "huge.bin", size: MAX_LOCATION_BYTES }, d.files[1]] };
    expect(acc.createProgram(2, manifestFor("big", mlp.graph, io.inputs, io.outputs, ok), mlp.graph)).toBeUndefined();
    acc.close();
  });

  it("checks the graph's inputs and outputs against the manifest when the session is built", async () => {
    const wrong = manifestFor("mlp", mlp.graph, [{ ...io.inputs[0], name: "input" }], io.outputs, weights);
    const acc = new OrtAccelerator();
    expect(acc.createProgram(1, wrong, mlp.graph)).toBeUndefined();
    expect(acc.uploadWeights(1, 0n, stream)).toBeUndefined();
    expect(acc.measureWeights(1)).toEqual(sha256(stream));
    expect(acc.finishWeights(1)).toBe(ACCELERATOR_FAILED);
    expect(acc.takeFailure()).toMatch(/manifest input "input" is not an input of the graph/);
    const badType = manifestFor("mlp", mlp.graph, io.inputs, [{ ...io.outputs[0], dtype: 11 }], weights);
    expect(acc.createProgram(2, badType, mlp.graph)).toBeUndefined();
    expect(acc.uploadWeights(2, 0n, stream)).toBeUndefined();
    expect(acc.measureWeights(2)).toEqual(sha256(stream));
    expect(acc.finishWeights(2)).toBe(ACCELERATOR_FAILED);
    expect(acc.takeFailure()).toMatch(/output "y": graph dtype 1, manifest 11/);
    expect(acc.run(2, new Uint8Array(1))).toBe(ACCELERATOR_FAILED);
    expect(acc.takeFailure()).toMatch(/run before the session exists/);
    acc.close();
  });

  it("ONNX Runtime's own error text is withheld (it can quote plaintext)", async () => {
    const g = new GraphBuilder("gather");
    const emb = g.init("emb", "float32", [4, 2], new Float32Array(8));
    const ids = g.input("ids", "int64", [3]);
    g.op("Gather", [emb, ids], { axis: 0 }, "out");
    g.output("out", "float32", [3, 2]);
    const graph = g.bytes();
    const weights = await descriptorFor([{ location: "w.bin", size: 0 }]);
    const m = manifestFor("gather", graph, [{ name: "ids", dtype: 7, dims: [{ min: 3, max: 3 }] }], [{ name: "out", dtype: 1, dims: [{ min: 3, max: 3 }, { min: 2, max: 2 }] }], weights);
    const lines: string[] = [];
    const acc = new OrtAccelerator({ log: jsonLogger("debug", (l) => void lines.push(l)) });
    expect(acc.createProgram(1, m, graph)).toBeUndefined();
    expect(acc.measureWeights(1)).toEqual(sha256(new Uint8Array(0)));
    expect(acc.finishWeights(1)).toBeUndefined();
    const secretId = 987654321n;
    const list = F.encodeTensorList([F.tensorFromArray("ids", 7, [3], new BigInt64Array([1n, secretId, 2n]))]);
    expect(acc.run(1, list)).toBe(ACCELERATOR_FAILED);
    const why = acc.takeFailure()!;
    expect(why).toMatch(/details withheld/);
    expect(why).not.toContain(String(secretId));
    expect(lines.join("")).not.toContain(String(secretId));
    acc.close();
  });
});

describe("OrtAccelerator: tensors", async () => {
  // Identity for every SPEC §5.2 dtype, plus a scalar; names of odd lengths misalign the data.
  const cases: { name: string; type: DType; code: number; dims: number[]; data: TypedData }[] = [
    { name: "f32", type: "float32", code: 1, dims: [2, 3], data: new Float32Array([1.5, -2, 3.25, 0, -0, 1e-30]) },
    { name: "u8_in", type: "uint8", code: 2, dims: [5], data: new Uint8Array([0, 1, 127, 128, 255]) },
    { name: "i8", type: "int8", code: 3, dims: [3], data: new Int8Array([-128, 0, 127]) },
    { name: "int16_x", type: "int16", code: 5, dims: [2, 2], data: new Int16Array([-32768, -1, 1, 32767]) },
    { name: "i32", type: "int32", code: 6, dims: [3], data: new Int32Array([-(2 ** 31), 0, 2 ** 31 - 1]) },
    { name: "long_ids", type: "int64", code: 7, dims: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 62n + 12345n]) },
    { name: "mask", type: "bool", code: 9, dims: [4], data: new Uint8Array([1, 0, 0, 1]) },
    { name: "half", type: "float16", code: 10, dims: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7bff]) },
    { name: "dbl", type: "float64", code: 11, dims: [2], data: new Float64Array([Math.PI, -1e300]) },
    { name: "scalar", type: "int32", code: 6, dims: [], data: new Int32Array([42]) },
  ];
  const g = new GraphBuilder("identity");
  for (const c of cases) {
    g.input(c.name, c.type, c.dims);
    g.op("Identity", [c.name], {}, `out_${c.name}`);
  }
  // The manifest lists outputs in reverse graph order: the accelerator must follow the manifest.
  for (const c of cases) g.output(`out_${c.name}`, c.type, c.dims);
  const graph = g.bytes();
  const spec = (name: string, c: (typeof cases)[number]): F.TensorSpec => ({ name, dtype: c.code, dims: c.dims.map((d) => ({ min: d, max: d })) });
  const weights = await descriptorFor([{ location: "none.bin", size: 0 }]);
  const inputs = cases.map((c) => spec(c.name, c));
  const outputs = [...cases].reverse().map((c) => spec(`out_${c.name}`, c));
  const manifest = manifestFor("identity", graph, inputs, outputs, weights);
  const bytes = (d: TypedData) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

  it("runs a program without weights (plaintext_size 0)", () => {
    const facts = readManifestFacts(manifest);
    expect(facts.plaintextSize).toBe(0);
    expect(facts.files).toEqual([{ location: "none.bin", size: 0, start: 0 }]);
  });

  it("reads inputs of every dtype at every alignment and returns outputs in the manifest's order, bit for bit", () => {
    const acc = new OrtAccelerator();
    expect(acc.createProgram(3, manifest, graph)).toBeUndefined();
    expect(acc.measureWeights(3)).toEqual(sha256(new Uint8Array(0)));
    expect(acc.finishWeights(3)).toBeUndefined();
    const list = F.encodeTensorList(cases.map((c) => ({ name: c.name, dtype: c.code, dims: c.dims, data: bytes(c.data).slice() })));
    for (let shift = 0; shift < 8; shift++) {
      const host = new Uint8Array(list.length + 16);
      host.set(list, shift);
      const view = host.subarray(shift, shift + list.length);
      const out = acc.run(3, view);
      expect(out, `shift ${shift}`).toBeInstanceOf(Uint8Array);
      const got = F.decodeTensorList((out as Uint8Array).slice());
      expect(got.map((t) => t.name)).toEqual(outputs.map((o) => o.name));
      for (const t of got) {
        const c = cases.find((x) => `out_${x.name}` === t.name)!;
        expect(t.dtype).toBe(c.code);
        expect(t.dims).toEqual(c.dims);
        expect(Buffer.from(t.data).equals(Buffer.from(bytes(c.data))), `${t.name} at shift ${shift}`).toBe(true);
      }
      expect(Buffer.from(view).equals(Buffer.from(list))).toBe(true); // inputs read, never written
    }
    acc.close();
  });

  it("refuses a run whose tensors differ from the manifest, without running it", () => {
    const acc = new OrtAccelerator();
    expect(acc.createProgram(3, manifest, graph)).toBeUndefined();
    expect(acc.measureWeights(3)).toEqual(sha256(new Uint8Array(0)));
    expect(acc.finishWeights(3)).toBeUndefined();
    const first = cases.slice(1);
    const list = F.encodeTensorList(first.map((c) => ({ name: c.name, dtype: c.code, dims: c.dims, data: bytes(c.data).slice() })));
    expect(acc.run(3, list)).toBe(ACCELERATOR_FAILED);
    expect(acc.takeFailure()).toMatch(/input 0 does not match the manifest/);
    expect(acc.run(3, new Uint8Array([1, 2, 3]))).toBe(ACCELERATOR_FAILED);
    expect(acc.takeFailure()).toMatch(/not a well-formed tensor list/);
    acc.close();
  });

  it("typed views are in place when aligned and copies when not", () => {
    const buf = new Uint8Array(64);
    expect(typedView(1, buf.subarray(8, 16))).toMatchObject({ copied: false });
    expect(typedView(1, buf.subarray(9, 17))).toMatchObject({ copied: true });
    expect(typedView(7, buf.subarray(16, 32)).array).toBeInstanceOf(BigInt64Array);
    expect(typedView(2, buf.subarray(3, 4))).toMatchObject({ copied: false });
  });

  it("the trusted TensorList reader is strict and agrees with host/formats", () => {
    const list = F.encodeTensorList(cases.map((c) => ({ name: c.name, dtype: c.code, dims: c.dims, data: bytes(c.data).slice() })));
    const mine = readTensorList(list);
    expect(mine.map((t) => [t.name, t.dtype, t.dims])).toEqual(cases.map((c) => [c.name, c.code, c.dims]));
    expect(writeTensorList(mine.map((t) => ({ name: t.name, dtype: t.dtype, dims: t.dims, bytes: t.data })))).toEqual(list);
    expect(() => readTensorList(list.subarray(0, list.length - 1))).toThrow(TensorListError);
    expect(() => readTensorList(F.concat(list, Uint8Array.of(0)))).toThrow(/after the tensor list/);
    expect(() => readTensorList(Uint8Array.of(0))).toThrow(/count 0/);
    expect(() => readTensorList(Uint8Array.of(1, 1, 0x61, 4, 0))).toThrow(/dtype 4/);
    const huge = F.concat(Uint8Array.of(1, 1, 0x61, 1, 2), new Uint8Array([0, 0x40, 0, 0, 0, 0, 0x40, 0]));
    expect(() => readTensorList(huge)).toThrow(/TENSOR_MAX/);
  });
});

describe("OrtAccelerator: execution providers", () => {
  it("falls back to CPU, with a warning naming only public facts, when a requested provider is not installed", () => {
    const lines: string[] = [];
    const acc = new OrtAccelerator({ config: { executionProviders: ["cuda", "cpu"] }, log: jsonLogger("warn", (l) => void lines.push(l)) });
    expect(acc.runtime.reported).toContain("cpu");
    expect(acc.runtime.providers).toEqual(["cpu"]);
    const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.some((e) => e.provider === "cuda" && /skipped/.test(String(e.event)))).toBe(true);
    expect(events.some((e) => e.event === "falling back to execution provider" && e.provider === "cpu")).toBe(true);
  });
});

describe("ONNX Runtime configuration (--ort)", () => {
  it("parseOrtConfig takes each key with its type and refuses the rest, naming the key", () => {
    const all = { executionProviders: ["cpu"], intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: "basic", executionMode: "sequential", enableCpuMemArena: false, enableMemPattern: true, allowSpinning: false, stopSpinningAfterRun: false };
    expect(parseOrtConfig(all)).toEqual(all);
    expect(() => parseOrtConfig({ allowSpinning: "no" })).toThrow(/allowSpinning must be a boolean/);
    expect(() => parseOrtConfig({ stopSpinningAfterRun: 1 })).toThrow(/stopSpinningAfterRun must be a boolean/);
    expect(() => parseOrtConfig({ intraOpNumThreads: 1.5 })).toThrow(/intraOpNumThreads must be an integer/);
    expect(() => parseOrtConfig({ spin: false })).toThrow(/unknown ONNX Runtime config key "spin"/);
    expect(() => parseOrtConfig([])).toThrow(/JSON object/);
  });

  it("the spinning keys map to ONNX Runtime's session config entries, and without them sessions keep ONNX Runtime's defaults", () => {
    const extra = (config: Parameters<typeof parseOrtConfig>[0]) => (new OrtRuntime(parseOrtConfig(config), silentLogger).sessionOptions as { extra?: unknown }).extra;
    expect(extra({})).toBeUndefined();
    expect(extra({ stopSpinningAfterRun: true })).toEqual({ session: { force_spinning_stop: "1" } });
    expect(extra({ stopSpinningAfterRun: false })).toEqual({ session: { force_spinning_stop: "0" } });
    expect(extra({ allowSpinning: false, stopSpinningAfterRun: true })).toEqual({ session: { intra_op: { allow_spinning: "0" }, force_spinning_stop: "1" } });
  });

  it("sessions with either spinning setting (and two threads) are built by ONNX Runtime and compute like the reference", async () => {
    const mlp = syntheticMlp({ weightsMiB: 1, seed: 5 });
    const stream = new Uint8Array(Buffer.concat(await Promise.all(mlp.files.map((f) => readAll(f)))));
    const io = {
      inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 64, max: 64 }] }],
      outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 16, max: 16 }] }],
    };
    const manifest = manifestFor("mlp", mlp.graph, io.inputs, io.outputs, await descriptorFor(mlp.files));
    for (const spin of [{ allowSpinning: false }, { allowSpinning: true }, { stopSpinningAfterRun: false }, { stopSpinningAfterRun: true }]) {
      const acc = new OrtAccelerator({ config: { intraOpNumThreads: 2, ...spin } });
      expect(acc.createProgram(1, manifest, mlp.graph)).toBeUndefined();
      expect(acc.uploadWeights(1, 0n, stream)).toBeUndefined();
      expect(acc.measureWeights(1)).toEqual(sha256(stream));
      expect(acc.finishWeights(1), acc.takeFailure()).toBeUndefined();
      const x = mlp.sampleInput(4, 9);
      const out = acc.run(1, F.encodeTensorList([F.tensorFromArray("x", 1, [4, 64], x)])) as Uint8Array;
      const got = F.decodeTensorList(out.slice());
      const [want] = await reference({ graph: mlp.graph, files: mlp.files }, [{ x: { type: "float32", dims: [4, 64], data: x } }]);
      expect(Buffer.from(got[0].data).equals(Buffer.from(want.y.bytes))).toBe(true);
      await acc.stagingWiped();
      acc.close();
    }
  });
});

describe("readManifestFacts (the trusted manifest reader)", () => {
  it("agrees with host/formats on what the accelerator needs, and rejects truncation and trailing bytes", async () => {
    const files = [{ location: "a/w0.bin", size: 70_000 }, { location: "w1.bin", size: 5 }];
    const weights = await descriptorFor(files.map((f) => ({ ...f, read: async (_o: number, n: number) => new Uint8Array(n) })));
    const gen: F.GenerateSpec = { tokens: ["<e>", "x", "yy"].map((t) => new TextEncoder().encode(t)), endToken: 0, maxNewTokens: 4, contextLength: 8, tokensPerChunk: 2 };
    for (const generate of [undefined, gen]) {
      const io = generate ? F.generateTensorSpecs(generate) : { inputs: [{ name: "in.a", dtype: 10, dims: [] }, { name: "b", dtype: 9, dims: [{ min: 1, max: 3 }] }], outputs: [{ name: "o", dtype: 11, dims: [{ min: 2, max: 2 }] }] };
      const built = F.buildManifest({ name: "facts", version: 7, graph: new Uint8Array(10), ...io, generate, weights, egressLimit: 1000 });
      const facts = readManifestFacts(built.bytes);
      expect(facts).toMatchObject({ name: "facts", version: 7n, mode: generate ? 2 : 1, plaintextSize: 70_005, chunkSize: 1 << 16 });
      expect(facts.inputs).toEqual(io.inputs.map((t) => ({ name: t.name, dtype: t.dtype, rank: t.dims.length })));
      expect(facts.outputs).toEqual(io.outputs.map((t) => ({ name: t.name, dtype: t.dtype, rank: t.dims.length })));
      expect(facts.files).toEqual([{ location: "a/w0.bin", size: 70_000, start: 0 }, { location: "w1.bin", size: 5, start: 70_000 }]);
      for (const cut of [0, 8, 20, built.bytes.length - 1]) expect(() => readManifestFacts(built.bytes.subarray(0, cut))).toThrow(/ends inside|magic/);
      expect(() => readManifestFacts(F.concat(built.bytes, Uint8Array.of(0)))).toThrow(/after the policy/);
    }
  });
});
