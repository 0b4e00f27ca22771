// Tensors as JSON for `veil run --input` and its output. Trust status: these are the CLIENT's
// PLAINTEXT request and response tensors, on the data owner's own machine; error messages name
// tensors, dtypes and positions, never values.
//
//   [{"name": "x", "dtype": "float32", "dims": [1, 4], "data": [0.5, -1, 2, 3]}, …]
//
// `dtype` is a SPEC §5.2 name (float32 uint8 int8 int16 int32 int64 bool float16 float64) or
// code, and may be left out on input (the program's is used). `data` is the row-major flat list
// of product(dims) elements (nested lists are flattened). Floats print as the shortest decimal
// that reads back to the same value; non-finite ones and negative zero are the strings "NaN",
// "Infinity", "-Infinity" and "-0"; int64 values beyond ±2^53 are decimal strings; bool is 0/1
// (true/false accepted on input).
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { DTYPE, DTYPES } from "../formats/constants.ts";
import type { TensorSpec } from "../formats/manifest.ts";
import type { Tensor } from "../formats/tensor.ts";
import { CliError } from "./args.ts";
import { dtypeFromName } from "./schema.ts";

export interface JsonTensor {
  name: string;
  dtype: string;
  dims: number[];
  data: (number | string)[];
}

const SPECIAL: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity, "-0": -0 };

/** IEEE 754 binary16 bits of a double, round to nearest even, subnormals and NaN kept. */
export function toFloat16Bits(x: number): number {
  const f32 = new Float32Array([x]);
  const u = new Uint32Array(f32.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return h;
}

export function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

function num(v: unknown, where: string, i: number): number {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v in SPECIAL) return SPECIAL[v];
  throw new CliError(`${where}: element ${i} is not a number`);
}

function int(v: unknown, where: string, i: number, lo: number, hi: number): number {
  const n = typeof v === "boolean" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < lo || n > hi) throw new CliError(`${where}: element ${i} is not an integer in ${lo}..${hi}`);
  return n;
}

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Little-endian element bytes of `values` for `dtype` (the host is little-endian, as the typed arrays below assume). */
function encodeData(dtype: number, values: unknown[], where: string): Uint8Array {
  switch (dtype) {
    case DTYPE.FLOAT32: return bytesOf(Float32Array.from(values, (v, i) => num(v, where, i)));
    case DTYPE.FLOAT64: return bytesOf(Float64Array.from(values, (v, i) => num(v, where, i)));
    case DTYPE.FLOAT16: return bytesOf(Uint16Array.from(values, (v, i) => toFloat16Bits(num(v, where, i))));
    case DTYPE.UINT8: return Uint8Array.from(values, (v, i) => int(v, where, i, 0, 255));
    case DTYPE.INT8: return bytesOf(Int8Array.from(values, (v, i) => int(v, where, i, -128, 127)));
    case DTYPE.INT16: return bytesOf(Int16Array.from(values, (v, i) => int(v, where, i, -32768, 32767)));
    case DTYPE.INT32: return bytesOf(Int32Array.from(values, (v, i) => int(v, where, i, -(2 ** 31), 2 ** 31 - 1)));
    case DTYPE.BOOL: return Uint8Array.from(values, (v, i) => int(v, where, i, 0, 1));
    case DTYPE.INT64: return bytesOf(BigInt64Array.from(values, (v, i) => {
      let b: bigint | undefined;
      if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
      else if (typeof v === "string" && /^-?\d{1,20}$/.test(v)) b = BigInt(v);
      if (b === undefined || b < -(2n ** 63n) || b >= 2n ** 63n) throw new CliError(`${where}: element ${i} is not an int64 (a whole number, or a decimal string beyond 2^53)`);
      return b;
    }));
    default: throw new CliError(`${where}: dtype ${dtype} is not supported`);
  }
}

/**
 * The program's inputs from `--input` JSON, in the manifest's order (the file may list them in
 * any order). Dims and dtypes are checked by the loader (SCHEMA_VIOLATION); here only what is
 * needed to encode: known names, a dtype, and data of product(dims) elements.
 */
export function tensorsFromJson(text: string, specs: readonly TensorSpec[], where: string): Tensor[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CliError(`${where}: not JSON (${(e as Error).message.split("\n")[0].slice(0, 80)})`);
  }
  if (!Array.isArray(v)) throw new CliError(`${where}: expected a JSON list of {name, dtype, dims, data}`);
  const byName = new Map<string, Tensor>();
  v.forEach((t: unknown, i) => {
    const o = t as Record<string, unknown>;
    if (typeof o !== "object" || o === null || typeof o.name !== "string") throw new CliError(`${where}: entry ${i} needs a "name"`);
    const w = `${where}: tensor "${o.name}"`;
    const spec = specs.find((s) => s.name === o.name);
    if (!spec) throw new CliError(`${w} is not an input of the program (its inputs: ${specs.map((s) => s.name).join(", ")})`);
    if (byName.has(o.name)) throw new CliError(`${w} is given twice`);
    const dtype = o.dtype === undefined ? spec.dtype : dtypeFromName(o.dtype);
    if (dtype === undefined) throw new CliError(`${w}: unknown dtype ${JSON.stringify(o.dtype)}`);
    if (!Array.isArray(o.dims) || !o.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new CliError(`${w}: "dims" must be a list of whole numbers`);
    const dims = o.dims as number[];
    const data = Array.isArray(o.data) ? (o.data as unknown[]).flat(Infinity) : typeof o.data === "number" ? [o.data] : undefined;
    if (!data) throw new CliError(`${w}: "data" must be a list of numbers`);
    const count = dims.reduce((a, b) => a * b, 1);
    if (data.length !== count) throw new CliError(`${w}: ${data.length} elements, dims [${dims.join(", ")}] need ${count}`);
    byName.set(o.name, { name: o.name, dtype, dims, data: encodeData(dtype, data, w) });
  });
  const missing = specs.filter((s) => !byName.has(s.name)).map((s) => s.name);
  if (missing.length) throw new CliError(`${where}: missing input${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`);
  return specs.map((s) => byName.get(s.name)!);
}

export async function readTensorsJson(path: string, specs: readonly TensorSpec[]): Promise<Tensor[]> {
  let text: string;
  try {
    text = path === "-" ? readFileSync(0, "utf8") : await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`--input ${path}: ${code === "ENOENT" ? "no such file" : `cannot read (${code})`}`);
  }
  return tensorsFromJson(text, specs, `--input ${path}`);
}

const fin = (x: number): number | string =>
  Object.is(x, -0) ? "-0" : Number.isFinite(x) ? x : Number.isNaN(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity";

/** The shortest decimal that reads back as the same float32 (or float16): 0.1, not 0.10000000149011612. */
function shortest(x: number, same: (y: number) => boolean, maxDigits: number): number | string {
  if (!Number.isFinite(x) || x === 0) return fin(x);
  for (let p = 1; p <= maxDigits; p++) {
    const y = Number(x.toPrecision(p));
    if (same(y)) return y;
  }
  return x;
}
const f32 = (x: number) => shortest(x, (y) => Math.fround(y) === x, 9);
const f16 = (h: number) => {
  const x = fromFloat16Bits(h);
  return shortest(x, (y) => toFloat16Bits(y) === h, 5);
};

/** A tensor as JSON (see the top of this file). */
export function tensorToJson(t: Tensor): JsonTensor {
  const d = t.data;
  const ab = d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength); // aligned copy
  let data: (number | string)[];
  switch (t.dtype) {
    case DTYPE.FLOAT32: data = Array.from(new Float32Array(ab), f32); break;
    case DTYPE.FLOAT64: data = Array.from(new Float64Array(ab), fin); break;
    case DTYPE.FLOAT16: data = Array.from(new Uint16Array(ab), f16); break;
    case DTYPE.UINT8: case DTYPE.BOOL: data = Array.from(new Uint8Array(ab)); break;
    case DTYPE.INT8: data = Array.from(new Int8Array(ab)); break;
    case DTYPE.INT16: data = Array.from(new Int16Array(ab)); break;
    case DTYPE.INT32: data = Array.from(new Int32Array(ab)); break;
    case DTYPE.INT64: data = Array.from(new BigInt64Array(ab), (b) => (b >= -(2n ** 53n - 1n) && b <= 2n ** 53n - 1n ? Number(b) : b.toString())); break;
    default: data = Array.from(new Uint8Array(ab));
  }
  return { name: t.name, dtype: DTYPES[t.dtype]?.name ?? String(t.dtype), dims: [...t.dims], data };
}

/** One tensor per line: readable, and still one JSON document. */
export function tensorsToJsonText(list: JsonTensor[]): string {
  return `[\n${list.map((t) => `  ${JSON.stringify(t)}`).join(",\n")}\n]`;
}
