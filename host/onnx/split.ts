// Graph/weights splitter for the weights sealer (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// Walks the ONNX file's protobuf wire format with positioned reads, moves every top-level
// initializer's bytes (but small int64 shape tensors, see keepShapeTensors) to aligned spans
// in the veil weights files (SPEC §5.4 ExternalFile) and rewrites only the tensors' headers;
// every other byte of the graph, fields unknown to our schema included, is copied as is.
// Weight bytes are never read here: the returned WeightFiles read them from the original
// file(s) on demand. Memory is the graph plus a fixed window (and the small typed *_data
// fields it converts, capped).

import { open, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, isAbsolute, resolve } from "node:path";
import { Cursor, readFully } from "./cursor.ts";
import { OnnxError, rethrowWithin } from "./errors.ts";
import { DataLocation, DataType, decodeMessage, decodeModel, dtypeSize, type TensorProto } from "./proto.ts";
import { layoutTensors, segmentedFile, type LayoutOptions, type Placement, type Segment, type WeightFile } from "./weights.ts";
import { concatBytes, lenField, varintField, WT } from "./wire.ts";

/** SPEC §13 GRAPH_MAX. */
export const GRAPH_MAX = 64 << 20;

export interface SplitOptions extends LayoutOptions {
  /** Largest graph-only model, and the most non-weight bytes read into memory (default GRAPH_MAX). */
  maxGraphBytes?: number;
  /** Total bytes of typed *_data fields converted to raw bytes in memory (default 64 MiB). */
  maxConvertBytes?: number;
  /** Read window for walking the file (default 64 KiB). */
  windowSize?: number;
  /** Initializers whose data stays in the graph (default: keepShapeTensors). */
  keepInGraph?: (t: InitializerInfo) => boolean;
}

export interface InitializerInfo {
  name: string;
  dataType: number;
  dims: readonly number[];
  /** Bytes of data. */
  length: number;
}

/**
 * The default keepInGraph: int64 tensors of at most 64 elements. ONNX shape inference,
 * which ONNX Runtime runs at load, must read shapes, axes, pads and the like and fails on
 * external tensors; such small int64 tensors are graph structure, not learned weights.
 */
export function keepShapeTensors(t: InitializerInfo): boolean {
  return t.dataType === DataType.INT64 && t.length <= 64 * 8;
}

export interface SplitModel {
  /** The graph-only ModelProto: every initializer with data is EXTERNAL into `files`. */
  graph: Uint8Array;
  /** The weights files, in stream order (SPEC §5.4: the weights stream is their concatenation). */
  files: WeightFile[];
  /** Where each moved initializer now lives. */
  tensors: Placement[];
  /** Initializers whose data stayed in the graph (keepInGraph, string tensors). */
  kept: string[];
  /** Sum of the files' sizes (the weights stream's plaintext size). */
  weightsSize: number;
  /** Close the source files the WeightFiles read from. */
  close(): Promise<void>;
}

// ModelProto.graph, GraphProto.initializer, TensorProto fields (onnx.proto).
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const T = {
  SEGMENT: 3, FLOAT_DATA: 4, INT32_DATA: 5, STRING_DATA: 6, INT64_DATA: 7, RAW_DATA: 9,
  DOUBLE_DATA: 10, UINT64_DATA: 11, EXTERNAL_DATA: 13, DATA_LOCATION: 14,
} as const;
const TYPED = new Set<number>([T.FLOAT_DATA, T.INT32_DATA, T.INT64_DATA, T.DOUBLE_DATA, T.UINT64_DATA]);

/** Where one tensor's bytes come from. */
type Source =
  | { kind: "file"; path: string; offset: number; length: number }
  | { kind: "memory"; bytes: Uint8Array };

interface ScannedTensor {
  name: string;
  /** Fields copied verbatim into the rewritten tensor (all but data and location fields). */
  keep: Uint8Array;
  /** The whole tensor body when it stays in the graph (strings, keepInGraph). */
  verbatim?: Uint8Array;
  source?: Source;
  length: number;
}

type Part = Uint8Array | ScannedTensor;

class Budget {
  used = 0;
  constructor(private readonly max: number, private readonly what: string) {}
  take(n: number): void {
    this.used += n;
    if (this.used > this.max) {
      throw new OnnxError("TOO_LARGE", `${this.what} exceeds ${this.max} bytes`);
    }
  }
}

/**
 * Split the ONNX model at `path` (embedded initializers, or external data beside it) into
 * a graph-only model and weight files laid out in ≤ maxLocationSize locations.
 */
export async function splitModel(path: string, options: SplitOptions = {}): Promise<SplitModel> {
  const where = `failed to split ${basename(path)}`;
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, "r");
    const size = (await fh.stat()).size;
    const ctx: ScanContext = {
      cursor: new Cursor(fh, size, basename(path), options.windowSize),
      modelPath: path,
      graphBudget: new Budget(options.maxGraphBytes ?? GRAPH_MAX, "graph without weights (Constant nodes, subgraph and sparse initializers stay in the graph)"),
      convertBudget: new Budget(options.maxConvertBytes ?? 64 << 20, "typed *_data initializers to convert (store them as raw_data)"),
      externalSizes: new Map(),
      keepInGraph: options.keepInGraph ?? keepShapeTensors,
    };
    const parts = await scanModel(ctx, size);
    return await assemble(parts, options);
  } catch (err) {
    return rethrowWithin(where, err);
  } finally {
    await fh?.close();
  }
}

interface ScanContext {
  cursor: Cursor;
  modelPath: string;
  graphBudget: Budget;
  convertBudget: Budget;
  externalSizes: Map<string, number>;
  keepInGraph: (t: InitializerInfo) => boolean;
}

async function keepBytes(ctx: ScanContext, start: number, end: number): Promise<Uint8Array> {
  ctx.graphBudget.take(end - start);
  return ctx.cursor.bytes(start, end - start);
}

async function scanModel(ctx: ScanContext, size: number): Promise<Part[][]> {
  if (size === 0) throw new OnnxError("MALFORMED", "empty file");
  const model: Part[] = [];
  let graph: Part[] | undefined;
  for (let pos = 0; pos < size;) {
    const f = await ctx.cursor.field(pos, size);
    if (f.field === MODEL_GRAPH && f.wireType === WT.LEN) {
      if (graph) throw new OnnxError("UNSUPPORTED", "ModelProto has more than one graph field");
      graph = await scanGraph(ctx, f.valueStart, f.end);
    } else {
      model.push(await keepBytes(ctx, f.start, f.end));
    }
    pos = f.end;
  }
  if (!graph) throw new OnnxError("MALFORMED", "ModelProto has no graph");
  return [model, graph];
}

async function scanGraph(ctx: ScanContext, start: number, end: number): Promise<Part[]> {
  const parts: Part[] = [];
  for (let pos = start; pos < end;) {
    const f = await ctx.cursor.field(pos, end);
    if (f.field === GRAPH_INITIALIZER && f.wireType === WT.LEN) {
      parts.push(await scanTensor(ctx, f.valueStart, f.end, parts.length));
    } else {
      parts.push(await keepBytes(ctx, f.start, f.end));
    }
    pos = f.end;
  }
  return parts;
}

async function scanTensor(ctx: ScanContext, start: number, end: number, index: number): Promise<ScannedTensor> {
  const keep: Uint8Array[] = [];
  const meta: Uint8Array[] = []; // keep + external_data + data_location, decoded for names and dims
  const typed: Uint8Array[] = [];
  let raw: { start: number; end: number } | undefined;
  let strings = false;
  for (let pos = start; pos < end;) {
    const f = await ctx.cursor.field(pos, end);
    pos = f.end;
    if (f.field === T.RAW_DATA && f.wireType === WT.LEN) {
      if (raw) throw new OnnxError("UNSUPPORTED", `initializer #${index}: raw_data appears twice`);
      raw = { start: f.valueStart, end: f.end };
    } else if (TYPED.has(f.field)) {
      ctx.convertBudget.take(f.end - f.start);
      typed.push(await ctx.cursor.bytes(f.start, f.end - f.start));
    } else if (f.field === T.STRING_DATA) {
      strings = true;
    } else {
      const b = await keepBytes(ctx, f.start, f.end);
      meta.push(b);
      if (f.field !== T.EXTERNAL_DATA && f.field !== T.DATA_LOCATION) keep.push(b);
    }
  }
  let t: TensorProto;
  try {
    t = decodeMessage<TensorProto>("TensorProto", concatBytes(meta));
  } catch (err) {
    throw err instanceof OnnxError ? err.within(`initializer #${index}`) : err;
  }
  const name = t.name ?? `#${index}`;
  try {
    if (t.segment) throw new OnnxError("UNSUPPORTED", "segmented tensors are not supported");
    if (strings || t.data_type === DataType.STRING) {
      // Strings cannot be external data in ONNX: the tensor stays in the graph as it was.
      return { name, keep: concatBytes(keep), verbatim: await keepBytes(ctx, start, end), length: 0 };
    }
    const count = elementCount(t.dims ?? []);
    const elem = dtypeSize(t.data_type ?? 0);
    const expected = elem === undefined ? undefined : count * elem;
    let source: Source | undefined;
    if (t.data_location === DataLocation.EXTERNAL) {
      if (raw || typed.length > 0) throw new OnnxError("MALFORMED", "has both external_data and embedded data");
      source = await externalSource(ctx, t, expected);
    } else if (raw) {
      if (typed.length > 0) throw new OnnxError("MALFORMED", "has both raw_data and typed *_data fields");
      source = { kind: "file", path: ctx.modelPath, offset: raw.start, length: raw.end - raw.start };
    } else if (typed.length > 0) {
      source = { kind: "memory", bytes: convertTyped(t.data_type ?? 0, concatBytes(typed), count) };
    }
    const length = source === undefined ? 0 : source.kind === "file" ? source.length : source.bytes.length;
    if (expected !== undefined && length !== expected && !(length === 0 && source === undefined && expected === 0)) {
      throw new OnnxError("MALFORMED", `holds ${length} bytes of data but dims [${(t.dims ?? []).join(", ")}] of data type ${t.data_type} need ${expected}`);
    }
    if (length > 0 && ctx.keepInGraph({ name, dataType: t.data_type ?? 0, dims: t.dims ?? [], length })) {
      ctx.graphBudget.take(length);
      const bytes = await readSource(ctx, source!);
      return { name, keep: concatBytes(keep), verbatim: concatBytes([...keep, lenField(T.RAW_DATA, bytes)]), length: 0 };
    }
    return { name, keep: concatBytes(keep), source: length > 0 ? source : undefined, length };
  } catch (err) {
    if (err instanceof OnnxError) throw err.within(`initializer "${name}"`);
    throw err;
  }
}

/** A (small) tensor's bytes, for one that stays in the graph. */
async function readSource(ctx: ScanContext, src: Source): Promise<Uint8Array> {
  if (src.kind === "memory") return src.bytes;
  if (src.path === ctx.modelPath) return ctx.cursor.bytes(src.offset, src.length);
  const fh = await open(src.path, "r");
  try {
    const out = new Uint8Array(src.length);
    await readFully(fh, out, src.offset, basename(src.path));
    return out;
  } finally {
    await fh.close();
  }
}

function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new OnnxError("MALFORMED", `bad dimension ${d}`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new OnnxError("MALFORMED", "element count overflows");
  return n;
}

/** The original file span of an initializer already in external data. */
async function externalSource(ctx: ScanContext, t: TensorProto, expected: number | undefined): Promise<Source> {
  const kv = new Map((t.external_data ?? []).map((e) => [e.key ?? "", e.value ?? ""]));
  const location = kv.get("location");
  if (!location) throw new OnnxError("EXTERNAL_DATA", "external_data has no location");
  // Same rule as ONNX Runtime: relative to the model's folder, never outside it.
  if (isAbsolute(location) || location.includes("\0") || location.split(/[\\/]/).includes("..")) {
    throw new OnnxError("EXTERNAL_DATA", `external_data location "${location}" must be a relative path inside the model's folder`);
  }
  const path = resolve(dirname(ctx.modelPath), location);
  let fileSize = ctx.externalSizes.get(path);
  if (fileSize === undefined) {
    try {
      const st = await stat(path);
      if (!st.isFile()) throw new Error("not a regular file");
      fileSize = st.size;
    } catch (err) {
      throw new OnnxError("EXTERNAL_DATA", `external data file "${location}": ${(err as Error).message}`, { cause: err });
    }
    ctx.externalSizes.set(path, fileSize);
  }
  const offset = parseSize(kv.get("offset") ?? "0", "offset");
  const length = kv.has("length") ? parseSize(kv.get("length")!, "length") : expected ?? fileSize - offset;
  if (offset + length > fileSize) {
    throw new OnnxError("EXTERNAL_DATA", `external data [${offset}, +${length}) is outside "${location}" (${fileSize} bytes)`);
  }
  return { kind: "file", path, offset, length };
}

function parseSize(s: string, what: string): number {
  const n = /^\d{1,16}$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n)) throw new OnnxError("EXTERNAL_DATA", `external_data ${what} "${s}" is not a byte count`);
  return n;
}

/** Little-endian raw bytes of the typed *_data fields, as raw_data would hold them. */
function convertTyped(dataType: number, fields: Uint8Array, count: number): Uint8Array {
  // int64/uint64 decode as decimal strings so values past 2^53 stay exact.
  const v = decodeMessage<Record<string, (number | string)[] | undefined>>("TensorProto", fields, { longs: String });
  const pick = (field: string): (number | string)[] => {
    const present = ["float_data", "int32_data", "int64_data", "double_data", "uint64_data"].filter((k) => (v[k]?.length ?? 0) > 0);
    if (present.length !== 1 || present[0] !== field) {
      throw new OnnxError("MALFORMED", `data type ${dataType} must use ${field}, found ${present.join(", ") || "none"}`);
    }
    return v[field]!;
  };
  const num = (field: string) => pick(field) as number[];
  const big = (field: string) => (pick(field) as string[]).map((s) => BigInt(s));
  let out: Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array | Uint32Array | BigInt64Array | BigUint64Array;
  switch (dataType) {
    case DataType.FLOAT: case DataType.COMPLEX64: out = Float32Array.from(num("float_data")); break;
    case DataType.DOUBLE: case DataType.COMPLEX128: out = Float64Array.from(num("double_data")); break;
    case DataType.INT32: out = Int32Array.from(num("int32_data")); break;
    case DataType.INT16: out = Int16Array.from(num("int32_data")); break;
    case DataType.INT8: out = Int8Array.from(num("int32_data")); break;
    case DataType.UINT8: case DataType.BOOL: out = Uint8Array.from(num("int32_data")); break;
    case DataType.UINT16: case DataType.FLOAT16: case DataType.BFLOAT16: out = Uint16Array.from(num("int32_data")); break;
    case DataType.INT64: out = BigInt64Array.from(big("int64_data")); break;
    case DataType.UINT32: out = Uint32Array.from(big("uint64_data"), Number); break;
    case DataType.UINT64: out = BigUint64Array.from(big("uint64_data")); break;
    default: throw new OnnxError("UNSUPPORTED", `cannot convert typed data of data type ${dataType}; store it as raw_data`);
  }
  const complex = dataType === DataType.COMPLEX64 || dataType === DataType.COMPLEX128 ? 2 : 1;
  if (out.length !== count * complex) throw new OnnxError("MALFORMED", `has ${out.length} values for ${count} elements`);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Lay out the moved tensors, rewrite their headers, and build the graph bytes and files. */
async function assemble([model, graph]: Part[][], options: SplitOptions): Promise<SplitModel> {
  const moved = graph.filter((p): p is ScannedTensor => !(p instanceof Uint8Array) && p.source !== undefined);
  const { placements, sizes, locations } = layoutTensors(moved.map((t) => ({ name: t.name, length: t.length })), options);
  const placed = new Map<ScannedTensor, Placement>();
  moved.forEach((t, i) => placed.set(t, placements[i]!));

  const graphBytes = concatBytes(graph.map((p) => {
    if (p instanceof Uint8Array) return p;
    if (p.verbatim) return lenField(GRAPH_INITIALIZER, p.verbatim);
    const at = placed.get(p);
    if (!at) return lenField(GRAPH_INITIALIZER, p.keep); // no data to move (zero elements)
    return lenField(GRAPH_INITIALIZER, concatBytes([
      p.keep,
      entry("location", at.location),
      entry("offset", String(at.offset)),
      entry("length", String(at.length)),
      varintField(T.DATA_LOCATION, DataLocation.EXTERNAL),
    ]));
  }));
  const out = concatBytes([...(model as Uint8Array[]), lenField(MODEL_GRAPH, graphBytes)]);
  if (out.length > (options.maxGraphBytes ?? GRAPH_MAX)) {
    throw new OnnxError("TOO_LARGE", `graph-only model is ${out.length} bytes, over ${options.maxGraphBytes ?? GRAPH_MAX}`);
  }
  decodeModel(out); // our own output must be a valid ModelProto

  const handles = new Map<string, Promise<FileHandle>>();
  let closed = false;
  const handle = (path: string) => {
    let h = handles.get(path);
    if (!h) {
      h = open(path, "r");
      handles.set(path, h);
    }
    return h;
  };
  const segments: Segment[][] = locations.map(() => []);
  moved.forEach((t) => {
    const at = placed.get(t)!;
    const src = t.source!;
    const fill = src.kind === "memory"
      ? (into: Uint8Array, from: number) => void into.set(src.bytes.subarray(from, from + into.length))
      : async (into: Uint8Array, from: number) => {
        try {
          await readFully(await handle(src.path), into, src.offset + from, basename(src.path));
        } catch (err) {
          rethrowWithin(`${at.location}: initializer "${t.name}" from ${basename(src.path)}`, err);
        }
      };
    segments[locations.indexOf(at.location)].push({ offset: at.offset, length: at.length, fill });
  });
  // SPEC §5.4 wants at least one file; a model without weights gets one empty file.
  const files = (locations.length > 0
    ? locations.map((loc, i) => segmentedFile(loc, sizes[i], segments[i]))
    : [segmentedFile(`${options.locationPrefix ?? "weights-"}0.bin`, 0, [])]
  ).map((f): WeightFile => ({
    location: f.location,
    size: f.size,
    read: (offset, length, into) => (closed ? Promise.reject(new OnnxError("IO", `${f.location}: read after close()`)) : f.read(offset, length, into)),
  }));
  return {
    graph: out,
    files,
    tensors: moved.map((t) => placed.get(t)!),
    kept: graph.filter((p): p is ScannedTensor => !(p instanceof Uint8Array) && p.verbatim !== undefined).map((t) => t.name),
    weightsSize: sizes.reduce((a, b) => a + b, 0),
    async close() {
      closed = true;
      const all = [...handles.values()];
      handles.clear();
      await Promise.all(all.map(async (h) => (await h.catch(() => undefined))?.close()));
    },
  };
}

function entry(key: string, value: string): Uint8Array {
  const enc = new TextEncoder();
  return lenField(T.EXTERNAL_DATA, concatBytes([lenField(1, enc.encode(key)), lenField(2, enc.encode(value))]));
}
