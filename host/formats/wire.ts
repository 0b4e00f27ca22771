// Strict big-endian reader and writer for SPEC.md §1 encodings. UNTRUSTED host code: parses public bytes; plaintext structures are read with values withheld from messages.
import { ascii } from "./bytes.ts";
import { FORMAT_VERSION } from "./constants.ts";
import { VeilFormatError, type VeilErrorName } from "./errors.ts";

const FAMILY = ascii("veil");

/** §1.1: the prefix of opaque x<A..B> is the smallest of u8, u16, u32 that holds B. */
export const prefixSize = (max: number): 1 | 2 | 4 => (max <= 0xff ? 1 : max <= 0xffff ? 2 : 4);

export interface ReaderOptions {
  /** Plaintext structure: withhold values from error messages. */
  secret?: boolean;
  /** Prefix for field paths (sub-readers). */
  prefix?: string;
  /** Offset of bytes[0] in the outer input, for messages. */
  base?: number;
}

/** A cursor over one structure. Every read checks the bytes present; nothing is sized from unchecked lengths. */
export class Reader {
  private pos = 0;
  readonly secret: boolean;
  private readonly prefix: string;
  private readonly base: number;

  constructor(
    private readonly bytes: Uint8Array,
    readonly structure: string,
    opts: ReaderOptions = {},
  ) {
    this.secret = opts.secret ?? false;
    this.prefix = opts.prefix ?? "";
    this.base = opts.base ?? 0;
  }

  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  /** A value for a message, or a placeholder when the structure is plaintext. */
  show(v: number | bigint | string): string {
    return this.secret ? "(value withheld)" : String(v);
  }

  fail(code: VeilErrorName, field: string, detail: string): never {
    throw new VeilFormatError(code, this.structure, this.prefix + field, detail);
  }

  private need(n: number, field: string): void {
    if (n > this.remaining)
      this.fail("TRUNCATED", field, `needs ${n} bytes at offset ${this.base + this.pos}, ${this.remaining} left`);
  }

  u8(field: string): number {
    this.need(1, field);
    return this.bytes[this.pos++];
  }

  u16(field: string): number {
    this.need(2, field);
    const v = (this.bytes[this.pos] << 8) | this.bytes[this.pos + 1];
    this.pos += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const hi = this.u32(field);
    const lo = this.u32(field);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** A u64 that must lie in min..max (max ≤ 2^53) returned as a number; out of range → `code`. */
  u64n(field: string, min: number, max: number, code: VeilErrorName = "BAD_VALUE"): number {
    const v = this.u64(field);
    if (v < BigInt(min) || v > BigInt(max)) this.fail(code, field, `${this.show(v)} is not in ${min}..${max}`);
    return Number(v);
  }

  /** An integer read with `read` that must lie in min..max. */
  ranged(field: string, read: "u8" | "u16" | "u32", min: number, max: number, code: VeilErrorName = "BAD_VALUE"): number {
    const v = this[read](field);
    if (v < min || v > max) this.fail(code, field, `${this.show(v)} is not in ${min}..${max}`);
    return v;
  }

  /** opaque x[n]; returns a copy so decoded structures never alias the input. */
  fixed(field: string, n: number): Uint8Array {
    this.need(n, field);
    const out = this.bytes.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** opaque x<min..max> with the §1.1 prefix size. */
  vec(field: string, min: number, max: number): Uint8Array {
    return this.fixed(field, this.vecLength(field, min, max));
  }

  /** Vectors with an explicit u8 / u16 / u32 length prefix. */
  vec8(field: string, min = 0, max = 0xff): Uint8Array {
    return this.fixed(field, this.vecLength(field, min, max, 1));
  }
  vec16(field: string, min = 0, max = 0xffff): Uint8Array {
    return this.fixed(field, this.vecLength(field, min, max, 2));
  }
  vec32(field: string, min = 0, max = 0xffffffff): Uint8Array {
    return this.fixed(field, this.vecLength(field, min, max, 4));
  }

  /** Reads and range-checks a length prefix (§1.1 size by default), before any allocation. */
  vecLength(field: string, min: number, max: number, size: 1 | 2 | 4 = prefixSize(max)): number {
    const len = size === 1 ? this.u8(field) : size === 2 ? this.u16(field) : this.u32(field);
    if (len < min || len > max) this.fail("BAD_LENGTH", field, `length ${this.show(len)} is not in ${min}..${max}`);
    return len;
  }

  /** A reader over the next n bytes (a vector's contents); fields keep their path. */
  sub(field: string, n: number, prefix = ""): Reader {
    this.need(n, field);
    const r: Reader = new Reader(this.bytes.subarray(this.pos, this.pos + n), this.structure, {
      secret: this.secret,
      prefix: this.prefix + prefix,
      base: this.base + this.pos,
    });
    this.pos += n;
    return r;
  }

  /** §1.2: family and kind → WRONG_KIND, version → UNSUPPORTED_VERSION. */
  magic(kind: string): void {
    this.need(8, "magic");
    const b = this.bytes;
    const p = this.pos;
    let ok = true;
    for (let i = 0; i < 4; i++) ok &&= b[p + i] === FAMILY[i];
    ok &&= b[p + 4] === kind.charCodeAt(0) && b[p + 5] === kind.charCodeAt(1);
    if (!ok) {
      const printable = Array.from(b.subarray(p, p + 6), (c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "?")).join("");
      this.fail("WRONG_KIND", "magic", `expected "veil${kind}", got ${this.secret ? "something else (value withheld)" : `"${printable}"`}`);
    }
    this.pos += 6;
    const version = this.u16("magic");
    if (version !== FORMAT_VERSION) this.fail("UNSUPPORTED_VERSION", "magic", `version ${version} is not implemented (only ${FORMAT_VERSION})`);
  }

  /** Rejects trailing bytes. */
  end(): void {
    if (this.pos !== this.bytes.length)
      this.fail("TRAILING_BYTES", "", `${this.bytes.length - this.pos} bytes after the end at offset ${this.base + this.pos}`);
  }
}

/** §1.4 names. Returns the name as a string (all bytes are ASCII once checked). */
export function readName(r: Reader, field: string, program = false): string {
  const b = r.vec(field, 1, 64);
  const bad = nameProblem(b, program);
  if (bad) r.fail("BAD_VALUE", field, r.secret ? "not a valid name" : bad);
  return String.fromCharCode(...b);
}

const NAME_CHAR = (c: number) =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x5f || c === 0x2d || c === 0x2f;

/** Why `b` is not a §1.4 name (program rules when `program`), or undefined when it is one. */
export function nameProblem(b: Uint8Array, program = false): string | undefined {
  if (b.length < 1 || b.length > 64) return `length ${b.length} is not in 1..64`;
  if (b[0] === 0x2f || b[0] === 0x2e) return `name begins with "${String.fromCharCode(b[0])}"`;
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (!NAME_CHAR(c)) return `byte 0x${c.toString(16).padStart(2, "0")} at offset ${i} is not in a-z A-Z 0-9 . _ - /`;
    if (program && (c === 0x2f || (c >= 0x41 && c <= 0x5a)))
      return `program names may not contain "${String.fromCharCode(c)}" (offset ${i})`;
  }
  return undefined;
}

/** Growable big-endian writer. Range errors are VeilFormatErrors reported as "encode". */
export class Writer {
  private buf = new Uint8Array(256);
  private len = 0;

  constructor(readonly structure: string) {}

  fail(code: VeilErrorName, field: string, detail: string): never {
    throw new VeilFormatError(code, this.structure, field, detail, "encode");
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private int(field: string, v: number, max: number): void {
    if (!Number.isInteger(v) || v < 0 || v > max) this.fail("BAD_VALUE", field, `${v} is not an integer in 0..${max}`);
  }

  u8(v: number, field = "u8"): this {
    this.int(field, v, 0xff);
    this.room(1);
    this.buf[this.len++] = v;
    return this;
  }

  u16(v: number, field = "u16"): this {
    this.int(field, v, 0xffff);
    this.room(2);
    this.buf[this.len++] = v >>> 8;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u32(v: number, field = "u32"): this {
    this.int(field, v, 0xffffffff);
    this.room(4);
    this.buf[this.len++] = v >>> 24;
    this.buf[this.len++] = (v >>> 16) & 0xff;
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u64(v: bigint | number, field = "u64"): this {
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v) || v < 0) this.fail("BAD_VALUE", field, `${v} is not a safe non-negative integer`);
      v = BigInt(v);
    }
    if (v < 0n || v >= 1n << 64n) this.fail("BAD_VALUE", field, `${v} is not in 0..2^64-1`);
    this.u32(Number(v >> 32n), field);
    this.u32(Number(v & 0xffffffffn), field);
    return this;
  }

  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  fixed(b: Uint8Array, n: number, field: string): this {
    if (!(b instanceof Uint8Array) || b.length !== n) this.fail("BAD_LENGTH", field, `length ${b?.length} is not ${n}`);
    return this.bytes(b);
  }

  /** opaque x<min..max> with the §1.1 prefix size. */
  vec(b: Uint8Array, min: number, max: number, field: string, size: 1 | 2 | 4 = prefixSize(max)): this {
    if (!(b instanceof Uint8Array)) this.fail("BAD_VALUE", field, "not a byte array");
    if (b.length < min || b.length > max) this.fail("BAD_LENGTH", field, `length ${b.length} is not in ${min}..${max}`);
    if (size === 1) this.u8(b.length, field);
    else if (size === 2) this.u16(b.length, field);
    else this.u32(b.length, field);
    return this.bytes(b);
  }

  /** Vectors with an explicit u8 / u16 / u32 length prefix. */
  vec8(b: Uint8Array, field: string, min = 0, max = 0xff): this {
    return this.vec(b, min, max, field, 1);
  }
  vec16(b: Uint8Array, field: string, min = 0, max = 0xffff): this {
    return this.vec(b, min, max, field, 2);
  }
  vec32(b: Uint8Array, field: string, min = 0, max = 0xffffffff): this {
    return this.vec(b, min, max, field, 4);
  }

  name(s: string, field: string, program = false): this {
    const b = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) > 0xff ? 0 : s.charCodeAt(i);
    const bad = nameProblem(b, program);
    if (bad) this.fail("BAD_VALUE", field, bad);
    return this.vec(b, 1, 64, field);
  }

  magic(kind: string): this {
    this.bytes(FAMILY);
    this.bytes(ascii(kind));
    return this.u16(FORMAT_VERSION, "magic");
  }

  get length(): number {
    return this.len;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Runs a decoder over an encoder's output so encoders can never emit what decoders reject. */
export function validated<T>(bytes: Uint8Array, decode: (b: Uint8Array) => T): Uint8Array {
  try {
    decode(bytes);
  } catch (e) {
    if (e instanceof VeilFormatError) throw e.asOp("encode");
    throw e;
  }
  return bytes;
}
