// A small builder for ONNX models that ONNX Runtime runs (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// Tests and benchmarks describe graphs in a few lines; initializers are embedded (raw_data
// or, to exercise the splitter, the typed *_data fields) or left external as placeholders.

import { OnnxError } from "./errors.ts";
import {
  DataLocation,
  encodeModel,
  int64,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "./proto.ts";
import type { Placement } from "./weights.ts";

export const DTYPES = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7,
  bool: 9, float16: 10, float64: 11, uint32: 12, uint64: 13,
} as const;
export type DType = keyof typeof DTYPES;

/** A fixed size, or a symbolic name for a dynamic dimension. */
export type Dim = number | string;

export type TypedData =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** A model input for tests: float16 carried as Uint16Array bits, bool as Uint8Array. */
export interface Feed {
  type: DType;
  dims: number[];
  data: TypedData;
}

/**
 * Attribute value. Shorthands: integer → INT, other number → FLOAT, string → STRING,
 * number[] → INTS (all integers) or FLOATS. Explicit: { f }, { i }, { floats }, { ints },
 * { s }, { strings }, { t }.
 */
export type AttrValue =
  | number | string | number[]
  | { f: number } | { i: number } | { floats: number[] } | { ints: number[] }
  | { s: string } | { strings: string[] } | { t: TensorProto };

const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;
const utf8 = new TextEncoder();

function attribute(name: string, v: AttrValue): AttributeProto {
  if (typeof v === "number") return Number.isInteger(v) ? { name, type: ATTR.INT, i: v } : { name, type: ATTR.FLOAT, f: v };
  if (typeof v === "string") return { name, type: ATTR.STRING, s: utf8.encode(v) };
  if (Array.isArray(v)) {
    return v.every(Number.isInteger) ? { name, type: ATTR.INTS, ints: v } : { name, type: ATTR.FLOATS, floats: v };
  }
  if ("f" in v) return { name, type: ATTR.FLOAT, f: v.f };
  if ("i" in v) return { name, type: ATTR.INT, i: v.i };
  if ("floats" in v) return { name, type: ATTR.FLOATS, floats: v.floats };
  if ("ints" in v) return { name, type: ATTR.INTS, ints: v.ints };
  if ("s" in v) return { name, type: ATTR.STRING, s: utf8.encode(v.s) };
  if ("strings" in v) return { name, type: ATTR.STRINGS, strings: v.strings.map((s) => utf8.encode(s)) };
  return { name, type: ATTR.TENSOR, t: v.t };
}

export function valueInfo(name: string, type: DType, dims: readonly Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: DTYPES[type],
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dim_value: d } : { dim_param: d })) },
      },
    },
  };
}

/** Little-endian bytes of a typed array (the only byte order ONNX raw_data uses). */
export function bytesOf(data: TypedData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * An initializer. `encoding: "typed"` stores the values in the dtype's typed field
 * (float_data, int32_data, int64_data, double_data, uint64_data) instead of raw_data,
 * as older exporters did; the splitter must convert those.
 */
export function tensor(name: string, type: DType, dims: readonly number[], data: TypedData, encoding: "raw" | "typed" = "raw"): TensorProto {
  const count = dims.reduce((a, b) => a * b, 1);
  if (data.length !== count) {
    throw new OnnxError("MALFORMED", `initializer "${name}": ${data.length} values for dims [${dims.join(", ")}]`);
  }
  const t: TensorProto = { name, data_type: DTYPES[type], dims: [...dims] };
  if (encoding === "raw") {
    t.raw_data = bytesOf(data).slice();
    return t;
  }
  const nums = Array.from(data as ArrayLike<number | bigint>, Number);
  // 64-bit values go in as Longs so protobufjs keeps them exact past 2^53.
  const longs = (unsigned: boolean) => Array.from(data as ArrayLike<number | bigint>, (x) => int64(BigInt(x), unsigned));
  switch (type) {
    case "float32": t.float_data = nums; break;
    case "int64": t.int64_data = longs(false); break;
    case "float64": t.double_data = nums; break;
    case "uint32": case "uint64": t.uint64_data = longs(true); break;
    default: t.int32_data = nums; // int8/16/32, uint8/16, bool, float16 bits
  }
  return t;
}

/** An initializer whose bytes live in external data at `where`. */
export function externalTensor(name: string, type: DType, dims: readonly number[], where: Placement): TensorProto {
  return {
    name,
    data_type: DTYPES[type],
    dims: [...dims],
    data_location: DataLocation.EXTERNAL,
    external_data: [
      { key: "location", value: where.location },
      { key: "offset", value: String(where.offset) },
      { key: "length", value: String(where.length) },
    ],
  };
}

export interface ModelOptions {
  opset?: number;
  irVersion?: number;
  producer?: string;
  docString?: string;
}

/** Builds one graph; `model()` wraps it in a ModelProto with an opset import. */
export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly inits: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private counter = 0;

  constructor(readonly name = "graph") {}

  input(name: string, type: DType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(name: string, type: DType, dims: readonly Dim[]): string {
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Add an initializer (embedded, or a ready TensorProto such as externalTensor()). */
  init(name: string, type: DType, dims: readonly number[], data: TypedData, encoding: "raw" | "typed" = "raw"): string {
    return this.initTensor(tensor(name, type, dims, data, encoding));
  }

  initTensor(t: TensorProto): string {
    this.inits.push(t);
    return t.name!;
  }

  /**
   * Add a node. `outputs` is a list of names or a count (names are generated);
   * returns the output names.
   */
  node(op: string, inputs: readonly string[], outputs: readonly string[] | number = 1, attrs: Record<string, AttrValue> = {}): string[] {
    const outs = typeof outputs === "number"
      ? Array.from({ length: outputs }, (_, i) => `${op.toLowerCase()}_${this.counter}${outputs > 1 ? `_${i}` : ""}`)
      : [...outputs];
    const n: NodeProto = { op_type: op, name: `${op}_${this.counter++}`, input: [...inputs], output: outs };
    const list = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    if (list.length > 0) n.attribute = list;
    this.nodes.push(n);
    return outs;
  }

  /** Single-output node: returns its output name. */
  op(op: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    return this.node(op, inputs, output === undefined ? 1 : [output], attrs)[0];
  }

  model(options: ModelOptions = {}): ModelProto {
    return {
      ir_version: options.irVersion ?? 8,
      opset_import: [{ domain: "", version: options.opset ?? 17 }],
      producer_name: options.producer ?? "veil-onnx-build",
      doc_string: options.docString,
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.inits,
        input: this.inputs,
        output: this.outputs,
      },
    };
  }

  bytes(options: ModelOptions = {}): Uint8Array {
    return encodeModel(this.model(options));
  }
}
