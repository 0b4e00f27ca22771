// Trusted: TensorList (SPEC §7.1, §7.2) reading and writing for the accelerator. Its input is
// request PLAINTEXT inside the loader's memory; it reads it in place — tensor data comes back
// as views, and typed-array views wherever the element alignment allows — and never logs or
// keeps it. Written against SPEC.md alone (no import from host/formats).

/** SPEC §5.2 dtypes: code → ONNX Runtime type name, element size, typed array. */
export const DTYPES = {
  1: { ort: "float32", size: 4, array: Float32Array },
  2: { ort: "uint8", size: 1, array: Uint8Array },
  3: { ort: "int8", size: 1, array: Int8Array },
  5: { ort: "int16", size: 2, array: Int16Array },
  6: { ort: "int32", size: 4, array: Int32Array },
  7: { ort: "int64", size: 8, array: BigInt64Array },
  9: { ort: "bool", size: 1, array: Uint8Array },
  10: { ort: "float16", size: 2, array: Uint16Array }, // IEEE half bits, as ONNX Runtime's JS API takes them
  11: { ort: "float64", size: 8, array: Float64Array },
} as const;
export type DtypeCode = keyof typeof DTYPES;
export type TypedArray = InstanceType<(typeof DTYPES)[DtypeCode]["array"]>;

export const DTYPE_BY_ORT: Readonly<Record<string, DtypeCode>> = Object.fromEntries(
  Object.entries(DTYPES).map(([code, d]) => [d.ort, Number(code) as DtypeCode]),
);

export const isDtype = (code: number): code is DtypeCode => Object.hasOwn(DTYPES, code);

/** SPEC §13 TENSOR_MAX. */
export const TENSOR_MAX = 16 * 2 ** 20;
const MAX_TENSORS = 16;
const MAX_RANK = 8;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  // SPEC §7.1 data is little-endian and typed arrays use the host's order.
  throw new Error("veil's trusted worker needs a little-endian host");
}

export class TensorListError extends Error {
  override readonly name = "TensorListError";
}

export interface TensorView {
  name: string;
  dtype: DtypeCode;
  dims: number[];
  /** A view of the element bytes inside the list (no copy). */
  data: Uint8Array;
}

/** Reads a TensorList strictly; each tensor's data is a view into `bytes`. Messages carry no data. */
export function readTensorList(bytes: Uint8Array): TensorView[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n: number, what: string) => {
    if (bytes.length - pos < n) throw new TensorListError(`tensor list ends inside ${what}`);
  };
  need(1, "count");
  const count = bytes[pos++];
  if (count < 1 || count > MAX_TENSORS) throw new TensorListError(`tensor count ${count} is not in 1..${MAX_TENSORS}`);
  const out: TensorView[] = [];
  for (let i = 0; i < count; i++) {
    need(1, "name length");
    const n = bytes[pos++];
    if (n < 1 || n > 64) throw new TensorListError(`tensor ${i}: name length ${n} is not in 1..64`);
    need(n, "name");
    const name = String.fromCharCode(...bytes.subarray(pos, pos + n));
    pos += n;
    need(2, "dtype and rank");
    const dtype = bytes[pos++];
    const rank = bytes[pos++];
    if (!isDtype(dtype)) throw new TensorListError(`tensor ${i}: dtype ${dtype} is not a SPEC §5.2 dtype`);
    if (rank > MAX_RANK) throw new TensorListError(`tensor ${i}: rank ${rank} is over ${MAX_RANK}`);
    need(4 * rank, "dims");
    const dims: number[] = [];
    let size: number = DTYPES[dtype].size;
    for (let j = 0; j < rank; j++) {
      const d = dv.getUint32(pos);
      pos += 4;
      dims.push(d);
      size *= d;
      if (size > TENSOR_MAX) throw new TensorListError(`tensor ${i}: over TENSOR_MAX`);
    }
    need(size, "data");
    out.push({ name, dtype, dims, data: bytes.subarray(pos, pos + size) });
    pos += size;
  }
  if (pos !== bytes.length) throw new TensorListError(`${bytes.length - pos} bytes after the tensor list`);
  return out;
}

/**
 * The tensor's elements as a typed array: a view of `data` when its offset is aligned for the
 * element size (the bytes are used in place), else a copy the caller must wipe (`copied`).
 */
export function typedView(dtype: DtypeCode, data: Uint8Array): { array: TypedArray; copied: boolean } {
  const d = DTYPES[dtype];
  const count = data.byteLength / d.size;
  if (data.byteOffset % d.size === 0) {
    return { array: new d.array(data.buffer as ArrayBuffer, data.byteOffset, count) as TypedArray, copied: false };
  }
  const array = new d.array(count) as TypedArray;
  new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(data);
  return { array, copied: true };
}

export interface OutTensor {
  name: string;
  dtype: DtypeCode;
  dims: readonly number[];
  bytes: Uint8Array;
}

/** Encodes a TensorList; throws on anything SPEC §7 does not allow (sizes, names, dims). */
export function writeTensorList(list: readonly OutTensor[]): Uint8Array {
  if (list.length < 1 || list.length > MAX_TENSORS) throw new TensorListError(`${list.length} tensors is not in 1..${MAX_TENSORS}`);
  let total = 1;
  for (const [i, t] of list.entries()) {
    if (t.name.length < 1 || t.name.length > 64) throw new TensorListError(`output ${i}: name length ${t.name.length} is not in 1..64`);
    if (t.dims.length > MAX_RANK) throw new TensorListError(`output ${i}: rank ${t.dims.length} is over ${MAX_RANK}`);
    let size: number = DTYPES[t.dtype].size;
    for (const d of t.dims) {
      if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) throw new TensorListError(`output ${i}: dimension ${d} is not a u32`);
      size *= d;
    }
    if (size > TENSOR_MAX) throw new TensorListError(`output ${i}: ${size} bytes is over TENSOR_MAX`);
    if (size !== t.bytes.length) throw new TensorListError(`output ${i}: ${t.bytes.length} data bytes for dims needing ${size}`);
    total += 1 + t.name.length + 2 + 4 * t.dims.length + size;
  }
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  let pos = 0;
  out[pos++] = list.length;
  for (const t of list) {
    out[pos++] = t.name.length;
    for (let k = 0; k < t.name.length; k++) out[pos++] = t.name.charCodeAt(k) & 0xff;
    out[pos++] = t.dtype;
    out[pos++] = t.dims.length;
    for (const d of t.dims) {
      dv.setUint32(pos, d);
      pos += 4;
    }
    out.set(t.bytes, pos);
    pos += t.bytes.length;
  }
  return out;
}
