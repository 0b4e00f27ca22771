// Five small, structurally different ONNX models for correctness tests (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// Each is self-contained (embedded initializers) and comes with sample inputs. Between them
// they cover conv, attention/LayerNormalization, integer inputs, several inputs/outputs with
// mixed-dtype initializers, dynamic dims, and typed *_data initializers the splitter converts.

import { GraphBuilder, type Feed } from "./graph.ts";
import type { ModelProto } from "./proto.ts";
import { encodeModel } from "./proto.ts";
import { float16Bits, randomInts, uniform } from "./random.ts";

export interface SmallModel {
  name: string;
  model: ModelProto;
  /** The self-contained model file. */
  bytes: Uint8Array;
  /** One or more input sets (several for dynamic dims). */
  feeds: Record<string, Feed>[];
}

function finish(name: string, g: GraphBuilder, feeds: Record<string, Feed>[]): SmallModel {
  const model = g.model({ docString: `veil test model: ${name}` });
  return { name, model, bytes: encodeModel(model), feeds };
}

const f32 = (dims: number[], seed: number, scale = 1): Feed => ({
  type: "float32", dims, data: uniform(dims.reduce((a, b) => a * b, 1), seed, scale),
});

/** (a) Conv + Relu + MaxPool, Conv + Relu + AveragePool, GlobalAveragePool, Flatten. */
export function convModel(seed = 1): SmallModel {
  const g = new GraphBuilder("conv");
  const x = g.input("image", "float32", [1, 3, 16, 16]);
  const w1 = g.init("conv1.w", "float32", [8, 3, 3, 3], uniform(8 * 27, seed, 0.4, 1));
  const b1 = g.init("conv1.b", "float32", [8], uniform(8, seed, 0.1, 2));
  const w2 = g.init("conv2.w", "float32", [4, 8, 3, 3], uniform(4 * 72, seed, 0.2, 3));
  const b2 = g.init("conv2.b", "float32", [4], uniform(4, seed, 0.1, 4));
  let h = g.op("Conv", [x, w1, b1], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] });
  h = g.op("Relu", [h]);
  h = g.op("MaxPool", [h], { kernel_shape: [2, 2], strides: [2, 2] });
  h = g.op("Conv", [h, w2, b2], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] });
  h = g.op("Relu", [h]);
  h = g.op("AveragePool", [h], { kernel_shape: [2, 2], strides: [2, 2] });
  h = g.op("GlobalAveragePool", [h]);
  g.op("Flatten", [h], { axis: 1 }, "logits");
  g.output("logits", "float32", [1, 4]);
  return finish("conv", g, [{ image: f32([1, 3, 16, 16], seed + 100) }]);
}

/** (b) Pre-norm single-head self-attention: LayerNormalization, Q/K/V, Transpose, Softmax, residual. */
export function attentionModel(seed = 2, seq = 8, d = 16): SmallModel {
  const g = new GraphBuilder("attention");
  const x = g.input("x", "float32", [1, seq, d]);
  const gamma = g.init("ln.gamma", "float32", [d], uniform(d, seed, 0.5, 1).map((v) => 1 + v));
  const beta = g.init("ln.beta", "float32", [d], uniform(d, seed, 0.1, 2));
  const w = (name: string, s: number) => g.init(name, "float32", [d, d], uniform(d * d, seed, 1 / Math.sqrt(d), s));
  const [wq, wk, wv, wo] = [w("attn.q", 3), w("attn.k", 4), w("attn.v", 5), w("attn.o", 6)];
  const scale = g.init("attn.scale", "float32", [], new Float32Array([1 / Math.sqrt(d)]));
  const ln = g.op("LayerNormalization", [x, gamma, beta], { axis: -1, epsilon: { f: 1e-5 } });
  const q = g.op("MatMul", [ln, wq]);
  const k = g.op("MatMul", [ln, wk]);
  const v = g.op("MatMul", [ln, wv]);
  const kt = g.op("Transpose", [k], { perm: [0, 2, 1] });
  const scores = g.op("Mul", [g.op("MatMul", [q, kt]), scale]);
  const probs = g.op("Softmax", [scores], { axis: -1 }, "attn_probs");
  const o = g.op("MatMul", [g.op("MatMul", [probs, v]), wo]);
  g.op("Add", [x, o], {}, "y");
  g.output("y", "float32", [1, seq, d]);
  g.output("attn_probs", "float32", [1, seq, seq]);
  return finish("attention", g, [{ x: f32([1, seq, d], seed + 100) }]);
}

/** (c) int64 token ids → Gather embedding → ReduceMean and ArgMax; int32 arithmetic → ReduceSum. */
export function integerModel(seed = 3, vocab = 32, dim = 8): SmallModel {
  const g = new GraphBuilder("integer");
  const ids = g.input("ids", "int64", [2, 5]);
  const emb = g.init("embedding", "float32", [vocab, dim], uniform(vocab * dim, seed, 1, 1));
  const weights = g.init("pos_weight", "int32", [5], new Int32Array([3, -1, 4, 1, -5]));
  const bias = g.init("bias", "int32", [], new Int32Array([7]));
  const axis1 = g.init("axis1", "int64", [1], new BigInt64Array([1n]));
  const gathered = g.op("Gather", [emb, ids], { axis: 0 });
  const pooled = g.op("ReduceMean", [gathered], { axes: [1], keepdims: 0 }, "pooled");
  g.op("ArgMax", [pooled], { axis: 1, keepdims: 0 }, "best");
  const ids32 = g.op("Cast", [ids], { to: 6 });
  const scored = g.op("Add", [g.op("Mul", [ids32, weights]), bias]);
  g.op("ReduceSum", [scored, axis1], { keepdims: 0 }, "score");
  g.output("pooled", "float32", [2, dim]);
  g.output("best", "int64", [2]);
  g.output("score", "int32", [2]);
  const tokens = BigInt64Array.from(randomInts(10, vocab, seed + 100), (n) => BigInt(n));
  return finish("integer", g, [{ ids: { type: "int64", dims: [2, 5], data: tokens } }]);
}

/**
 * (d) Three inputs, five outputs of four dtypes; initializers in float16 (int32_data),
 * float64, int8 (int32_data) and int64, so odd sizes and typed fields reach the splitter.
 */
export function multiIoModel(seed = 4): SmallModel {
  const g = new GraphBuilder("multi_io");
  const a = g.input("a", "float32", [2, 3]);
  const b = g.input("b", "float32", [3, 4]);
  const n = g.input("n", "int64", [2]);
  const h16 = g.init("half", "float16", [3], Uint16Array.from(uniform(3, seed, 2, 1), float16Bits), "typed");
  const i8 = g.init("small", "int8", [3], new Int8Array([-7, 0, 5]), "typed");
  const d64 = g.init("double", "float64", [2, 3], Float64Array.from(uniform(6, seed, 3, 2), (v) => v * Math.PI));
  const c64 = g.init("offset", "int64", [2], new BigInt64Array([-(2n ** 40n), 12345n]));
  const zero = g.init("zero", "float32", [], new Float32Array([0]));
  const sum = g.op("Add", [a, g.op("Cast", [h16], { to: 1 })]);
  g.op("Add", [sum, g.op("Cast", [i8], { to: 1 })], {}, "sum");
  g.op("MatMul", [a, b], {}, "prod");
  g.op("Mul", [g.op("Cast", [a], { to: 11 }), d64], {}, "scaled");
  g.op("Add", [n, c64], {}, "shifted");
  g.op("Greater", [a, zero], {}, "positive");
  g.output("sum", "float32", [2, 3]);
  g.output("prod", "float32", [2, 4]);
  g.output("scaled", "float64", [2, 3]);
  g.output("shifted", "int64", [2]);
  g.output("positive", "bool", [2, 3]);
  return finish("multi_io", g, [{
    a: f32([2, 3], seed + 100),
    b: f32([3, 4], seed + 101),
    n: { type: "int64", dims: [2], data: new BigInt64Array([5n, -9n]) },
  }]);
}

/**
 * (e) Symbolic batch and sequence: MatMul + Add + Tanh, ReduceSum over the sequence, and a
 * Reshape to [-1, 6]. Weights, bias, axes and shape are typed fields (float_data, int64_data).
 */
export function dynamicModel(seed = 5, inDim = 4, outDim = 6): SmallModel {
  const g = new GraphBuilder("dynamic");
  const x = g.input("x", "float32", ["batch", "seq", inDim]);
  const w = g.init("proj.w", "float32", [inDim, outDim], uniform(inDim * outDim, seed, 1, 1), "typed");
  const bias = g.init("proj.b", "float32", [outDim], uniform(outDim, seed, 0.5, 2), "typed");
  const axes = g.init("seq_axis", "int64", [1], new BigInt64Array([1n]), "typed");
  const shape = g.init("flat_shape", "int64", [2], new BigInt64Array([-1n, BigInt(outDim)]), "typed");
  const h = g.op("Tanh", [g.op("Add", [g.op("MatMul", [x, w]), bias])]);
  g.op("ReduceSum", [h, axes], { keepdims: 0 }, "pooled");
  g.op("Reshape", [h, shape], {}, "flat");
  g.output("pooled", "float32", ["batch", outDim]);
  g.output("flat", "float32", ["rows", outDim]);
  return finish("dynamic", g, [
    { x: f32([1, 3, inDim], seed + 100) },
    { x: f32([3, 7, inDim], seed + 101) },
  ]);
}

/** All five, for tests that loop over them. */
export function smallModels(): SmallModel[] {
  return [convModel(), attentionModel(), integerModel(), multiIoModel(), dynamicModel()];
}
