// Synthetic MLP of any weight size, with weights generated on demand (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// The graph is returned with every initializer external; the weights are WeightFiles whose
// bytes are computed from (seed, tensor, element) only when read, so a 5 GiB model costs
// no more memory than the read buffer the caller asks for.

import { OnnxError } from "./errors.ts";
import { externalTensor, GraphBuilder } from "./graph.ts";
import { encodeModel, type ModelProto } from "./proto.ts";
import { fillUniform, streamKey, uniform } from "./random.ts";
import { layoutTensors, segmentedFile, type LayoutOptions, type Segment, type WeightFile } from "./weights.ts";

export interface MlpOptions extends LayoutOptions {
  /** Target float32 weight size in MiB (the result is within one row of it). */
  weightsMiB: number;
  inputDim?: number;
  outputDim?: number;
  /** Hidden width; derived from weightsMiB when absent. */
  hidden?: number;
  /** Linear layers (≥ 2); derived from weightsMiB when absent. */
  layers?: number;
  seed?: number;
}

export interface SyntheticMlp {
  /** Graph-only model: every initializer has data_location = EXTERNAL. */
  model: ModelProto;
  graph: Uint8Array;
  files: WeightFile[];
  /** Bytes of tensor data (the files add alignment padding). */
  weightBytes: number;
  inputDim: number;
  outputDim: number;
  hidden: number;
  layers: number;
  /** Input "x" is [batch, inputDim], output "y" is [batch, outputDim]; batch is symbolic. */
  input: "x";
  output: "y";
  sampleInput(batch: number, seed?: number): Float32Array;
}

const MiB = 2 ** 20;
/** Largest hidden×hidden matrix the default shape aims for (tensors must stay < 2 GiB). */
const TARGET_MATRIX_BYTES = 2 ** 30;

function shape(o: MlpOptions): { hidden: number; layers: number } {
  const inD = o.inputDim ?? 64;
  const outD = o.outputDim ?? 16;
  const target = (o.weightsMiB * MiB) / 4; // floats
  // floats(H, L) = inD·H + (L−2)·H² + H·outD + (L−1)·H + outD
  if (o.hidden !== undefined && o.layers !== undefined) return { hidden: o.hidden, layers: o.layers };
  if (o.hidden !== undefined) {
    const H = o.hidden;
    const rest = target - (inD + outD + 1) * H - outD;
    return { hidden: H, layers: 2 + Math.max(0, Math.round(rest / (H * H + H))) };
  }
  // Enough layers that one hidden×hidden matrix fits a location with room to spare.
  const cap = 0.9 * Math.min(TARGET_MATRIX_BYTES, o.maxLocationSize ?? Infinity);
  const L = o.layers ?? Math.max(4, 2 + Math.ceil((o.weightsMiB * MiB) / cap));
  const a = L - 2;
  const b = inD + outD + L - 1;
  const c = outD - target;
  const H = a === 0 ? -c / b : (-b + Math.sqrt(b * b - 4 * a * c)) / (2 * a);
  return { hidden: Math.max(1, Math.round(H)), layers: L };
}

/** An MLP (MatMul + Add + Relu per layer, no Relu on the last) with external weights. */
export function syntheticMlp(options: MlpOptions): SyntheticMlp {
  if (!(options.weightsMiB > 0)) throw new OnnxError("UNSUPPORTED", `syntheticMlp: weightsMiB must be > 0`);
  const inputDim = options.inputDim ?? 64;
  const outputDim = options.outputDim ?? 16;
  const seed = options.seed ?? 1;
  const { hidden, layers } = shape(options);
  if (layers < 2 || hidden < 1) throw new OnnxError("UNSUPPORTED", `syntheticMlp: needs layers ≥ 2 and hidden ≥ 1`);

  // Tensor list in graph order: W0, b0, W1, b1, …
  const specs: { name: string; dims: number[]; scale: number }[] = [];
  for (let l = 0; l < layers; l++) {
    const din = l === 0 ? inputDim : hidden;
    const dout = l === layers - 1 ? outputDim : hidden;
    // He-style scaling keeps activations O(1) through any depth.
    specs.push({ name: `layer${l}.weight`, dims: [din, dout], scale: Math.sqrt(6 / din) });
    specs.push({ name: `layer${l}.bias`, dims: [dout], scale: 0.05 });
  }
  const lengths = specs.map((s) => ({ name: s.name, length: 4 * s.dims.reduce((a, b) => a * b, 1) }));
  const { placements, sizes, locations } = layoutTensors(lengths, options);

  const g = new GraphBuilder("synthetic_mlp");
  let h = g.input("x", "float32", ["batch", inputDim]);
  specs.forEach((s, i) => g.initTensor(externalTensor(s.name, "float32", s.dims, placements[i]!)));
  for (let l = 0; l < layers; l++) {
    const last = l === layers - 1;
    h = g.op("Add", [g.op("MatMul", [h, `layer${l}.weight`]), `layer${l}.bias`], {}, last ? "y" : undefined);
    if (!last) h = g.op("Relu", [h]);
  }
  g.output("y", "float32", ["batch", outputDim]);
  const model = g.model({ docString: `synthetic MLP: ${layers} layers, hidden ${hidden}, seed ${seed}` });

  const segments: Segment[][] = locations.map(() => []);
  specs.forEach((s, i) => {
    const p = placements[i]!;
    const key = streamKey(seed, i);
    segments[locations.indexOf(p.location)].push({ offset: p.offset, length: p.length, fill: generator(key, s.scale) });
  });
  return {
    model,
    graph: encodeModel(model),
    files: locations.map((loc, i) => segmentedFile(loc, sizes[i], segments[i])),
    weightBytes: lengths.reduce((a, t) => a + t.length, 0),
    inputDim,
    outputDim,
    hidden,
    layers,
    input: "x",
    output: "y",
    sampleInput: (batch, s = seed + 1000) => uniform(batch * inputDim, s, 1, 0),
  };
}

/** Bytes [from, from + into.length) of a float32 tensor whose value i is hash(key, i). */
function generator(key: number, scale: number) {
  return (into: Uint8Array, from: number): void => {
    const first = Math.floor(from / 4);
    const last = Math.ceil((from + into.length) / 4);
    if (from % 4 === 0 && into.length % 4 === 0 && into.byteOffset % 4 === 0) {
      fillUniform(new Float32Array(into.buffer, into.byteOffset, into.length / 4), key, first, scale);
      return;
    }
    const tmp = new Float32Array(last - first);
    fillUniform(tmp, key, first, scale);
    into.set(new Uint8Array(tmp.buffer, from - first * 4, into.length));
  };
}
