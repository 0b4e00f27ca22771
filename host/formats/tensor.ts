// Tensor and TensorList (SPEC §7.1–§7.3) codecs and schema check. Trust status: inside requests these are PLAINTEXT — used by the client (data owner's machine) and the test server; never by the untrusted host on real data.
import { DTYPES, LIMITS, MAX_RANK, MAX_TENSORS, dtypeSize } from "./constants.ts";
import { VeilFormatError } from "./errors.ts";
import { Reader, Writer, readName, validated } from "./wire.ts";
import type { TensorSpec } from "./manifest.ts";

export interface Tensor {
  name: string;
  /** §5.2 dtype code. */
  dtype: number;
  dims: number[];
  /** product(dims) × size(dtype) bytes, elements little-endian, row-major. */
  data: Uint8Array;
}

/** Bytes of a tensor with these dims, or undefined when over TENSOR_MAX (computed without overflow). */
export function tensorBytes(dims: readonly number[], dtype: number): number | undefined {
  let n = dtypeSize(dtype) ?? 0;
  for (const d of dims) {
    n *= d;
    if (n > LIMITS.TENSOR_MAX) return undefined;
  }
  return n;
}

/** Reads one Tensor; `p` prefixes its field paths ("inputs[0]." …). */
export function readTensor(r: Reader, p: string): Tensor {
  const name = readName(r, `${p}name`);
  const dtype = r.u8(`${p}dtype`);
  if (!DTYPES[dtype]) r.fail("BAD_VALUE", `${p}dtype`, `${r.show(dtype)} is not a §5.2 dtype`);
  const rank = r.ranged(`${p}rank`, "u8", 0, MAX_RANK, "BAD_LENGTH");
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(r.u32(`${p}dims[${i}]`));
  const size = tensorBytes(dims, dtype);
  if (size === undefined) r.fail("TOO_LARGE", `${p}data`, `tensor over TENSOR_MAX ${LIMITS.TENSOR_MAX} bytes`);
  const data = r.fixed(`${p}data`, size);
  if (dtype === 9 && data.some((b) => b > 1)) r.fail("BAD_VALUE", `${p}data`, "bool elements must be 0 or 1");
  return { name, dtype, dims, data };
}

export function writeTensor(w: Writer, t: Tensor, p: string): void {
  w.name(t.name, `${p}name`);
  w.u8(t.dtype, `${p}dtype`);
  if (!Array.isArray(t.dims) || t.dims.length > MAX_RANK) w.fail("BAD_LENGTH", `${p}rank`, `rank ${t.dims?.length} is not in 0..${MAX_RANK}`);
  w.u8(t.dims.length, `${p}rank`);
  t.dims.forEach((d, i) => w.u32(d, `${p}dims[${i}]`));
  const size = tensorBytes(t.dims, t.dtype);
  if (size === undefined) w.fail("TOO_LARGE", `${p}data`, `tensor over TENSOR_MAX ${LIMITS.TENSOR_MAX} bytes`);
  if (t.data.length !== size) w.fail("BAD_LENGTH", `${p}data`, `${t.data.length} bytes, dims and dtype need ${size}`);
  w.bytes(t.data);
}

/** Field paths of a list: "inputs.count", "inputs[0].name"; a bare list uses "count", "tensors[0].name". */
const countPath = (list: string) => (list ? `${list}.count` : "count");
const elemPath = (list: string, i: number) => (list ? `${list}[${i}].` : `tensors[${i}].`);

/** TensorList (§7.2); `list` names it in field paths ("inputs", "outputs", or "" on its own). */
export function readTensorList(r: Reader, list: string): Tensor[] {
  const count = r.ranged(countPath(list), "u8", 1, MAX_TENSORS, "BAD_LENGTH");
  const out: Tensor[] = [];
  for (let i = 0; i < count; i++) out.push(readTensor(r, elemPath(list, i)));
  return out;
}

export function writeTensorList(w: Writer, list: Tensor[], name: string): void {
  if (!Array.isArray(list) || list.length < 1 || list.length > MAX_TENSORS)
    w.fail("BAD_LENGTH", countPath(name), `${list?.length} tensors is not in 1..${MAX_TENSORS}`);
  w.u8(list.length, countPath(name));
  list.forEach((t, i) => writeTensor(w, t, elemPath(name, i)));
}

const LIST = "accelerator_output";

/** A bare TensorList, as the accelerator's run() returns it (§11.3; errors use the 0x09 field ids). */
export function decodeTensorList(bytes: Uint8Array, opts: { secret?: boolean } = {}): Tensor[] {
  const r: Reader = new Reader(bytes, LIST, { secret: opts.secret ?? true });
  const list = readTensorList(r, "");
  r.end();
  return list;
}

export function encodeTensorList(list: Tensor[], opts: { validate?: boolean } = {}): Uint8Array {
  const w: Writer = new Writer(LIST);
  writeTensorList(w, list, "");
  const out = w.finish();
  return opts.validate === false ? out : validated(out, (b) => decodeTensorList(b));
}

/**
 * §7.3: the list names each spec exactly once, in order, with equal dtype and rank and every dim
 * in min..max. Throws `code` (SCHEMA_VIOLATION for requests, ACCELERATOR_FAILED for outputs).
 */
export function checkSchema(
  tensors: readonly Tensor[],
  specs: readonly TensorSpec[],
  opts: { structure?: string; prefix?: string; code?: "SCHEMA_VIOLATION" | "ACCELERATOR_FAILED" } = {},
): void {
  const structure = opts.structure ?? "inner_request";
  const list = opts.prefix ?? "inputs";
  const code = opts.code ?? "SCHEMA_VIOLATION";
  const fail = (field: string, detail: string): never => {
    throw new VeilFormatError(code, structure, field, detail, "check");
  };
  if (tensors.length !== specs.length) fail(countPath(list), `${tensors.length} tensors, the program has ${specs.length}`);
  specs.forEach((spec, i) => {
    const t = tensors[i];
    const p = elemPath(list, i);
    if (t.name !== spec.name) fail(`${p}name`, `tensor ${i} is not the program's "${spec.name}"`);
    if (t.dtype !== spec.dtype) fail(`${p}dtype`, `dtype ${t.dtype} is not the program's ${spec.dtype}`);
    if (t.dims.length !== spec.dims.length) fail(`${p}rank`, `rank ${t.dims.length} is not the program's ${spec.dims.length}`);
    spec.dims.forEach((d, j) => {
      const v = t.dims[j];
      if (v < d.min || v > d.max) fail(`${p}dims`, `dim ${j} = ${v} is not in ${d.min}..${d.max}`);
    });
  });
}

/** Little-endian element bytes from a typed array (the host is little-endian; checked). */
export function tensorFromArray(name: string, dtype: number, dims: number[], values: ArrayBufferView): Tensor {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error("tensorFromArray needs a little-endian host");
  const data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice();
  return { name, dtype, dims, data };
}
