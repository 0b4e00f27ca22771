// ONNX ModelProto encode/decode over the vendored schema (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// The schema is third_party/onnx/onnx.proto, parsed once at first use with protobufjs
// (keepCase, so fields keep the schema's snake_case names). int64 fields decode to JS
// numbers: exact up to 2^53, which covers every dim, offset and length we handle.

import { readFileSync } from "node:fs";
import protobuf from "protobufjs";
import { OnnxError } from "./errors.ts";

const SCHEMA_URL = new URL("../../third_party/onnx/onnx.proto", import.meta.url);

/** TensorProto.DataType codes (SPEC §5.2 uses the same numbers). */
export const DataType = {
  UNDEFINED: 0, FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7,
  STRING: 8, BOOL: 9, FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, COMPLEX64: 14,
  COMPLEX128: 15, BFLOAT16: 16,
} as const;

const SIZES: Record<number, number> = {
  1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
};

/** Bytes per element of a fixed-size dtype, or undefined (string, unknown, sub-byte). */
export function dtypeSize(dataType: number): number | undefined {
  return SIZES[dataType];
}

export const DataLocation = { DEFAULT: 0, EXTERNAL: 1 } as const;

/** An int64/uint64 field value: a number when exact, else a Long (see int64()). */
export type Int64 = number | { low: number; high: number; unsigned: boolean };

/** A 64-bit value protobufjs encodes exactly, also past 2^53. */
export function int64(v: bigint, unsigned = false): Int64 {
  // Long is protobufjs's own 64-bit carrier; its typings omit the static constructors.
  const Long = protobuf.util.Long as unknown as { fromString(s: string, unsigned: boolean): Int64 };
  return Long.fromString(v.toString(), unsigned);
}

export interface StringStringEntryProto { key?: string; value?: string }
export interface TensorProto {
  dims?: number[];
  data_type?: number;
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: Int64[];
  double_data?: number[];
  uint64_data?: Int64[];
  external_data?: StringStringEntryProto[];
  data_location?: number;
  segment?: { begin?: number; end?: number };
}
export interface DimensionProto { dim_value?: number; dim_param?: string }
export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: { dim?: DimensionProto[] } };
  [other: string]: unknown;
}
export interface ValueInfoProto { name?: string; type?: TypeProto; doc_string?: string }
export interface AttributeProto {
  name?: string;
  type?: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  [other: string]: unknown;
}
export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
}
export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  doc_string?: string;
  input?: ValueInfoProto[];
  output?: ValueInfoProto[];
  value_info?: ValueInfoProto[];
  [other: string]: unknown;
}
export interface OperatorSetIdProto { domain?: string; version?: number }
export interface ModelProto {
  ir_version?: number;
  opset_import?: OperatorSetIdProto[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: number;
  doc_string?: string;
  graph?: GraphProto;
  metadata_props?: StringStringEntryProto[];
  [other: string]: unknown;
}

let modelType: protobuf.Type | undefined;

/** The protobufjs Type for onnx.ModelProto (schema parsed once, lazily). */
export function modelProtoType(): protobuf.Type {
  if (!modelType) {
    const { root } = protobuf.parse(readFileSync(SCHEMA_URL, "utf8"), { keepCase: true });
    modelType = root.lookupType("onnx.ModelProto");
  }
  return modelType;
}

export function encodeModel(model: ModelProto): Uint8Array {
  const T = modelProtoType();
  const bad = T.verify(model);
  if (bad) throw new OnnxError("MALFORMED", `cannot encode ModelProto: ${bad}`);
  return T.encode(T.fromObject(model)).finish();
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  const T = modelProtoType();
  let msg: protobuf.Message;
  try {
    msg = T.decode(bytes);
  } catch (err) {
    throw new OnnxError("MALFORMED", `not a valid ONNX ModelProto: ${(err as Error).message}`, { cause: err });
  }
  return T.toObject(msg, { longs: Number, enums: Number, arrays: false }) as ModelProto;
}

/** Another message type of the schema, e.g. "TensorProto" or "GraphProto". */
export function protoType(name: string): protobuf.Type {
  return modelProtoType().root.lookupType(`onnx.${name}`);
}

/** Encode one sub-message (TensorProto, GraphProto, …) on its own. */
export function encodeMessage(typeName: string, value: object): Uint8Array {
  const T = protoType(typeName);
  const bad = T.verify(value);
  if (bad) throw new OnnxError("MALFORMED", `cannot encode ${typeName}: ${bad}`);
  return T.encode(T.fromObject(value)).finish();
}

export function decodeMessage<T>(typeName: string, bytes: Uint8Array, options: protobuf.IConversionOptions = {}): T {
  const T = protoType(typeName);
  try {
    return T.toObject(T.decode(bytes), { longs: Number, enums: Number, ...options }) as T;
  } catch (err) {
    throw new OnnxError("MALFORMED", `not a valid ${typeName}: ${(err as Error).message}`, { cause: err });
  }
}
