// Trusted: the one strict reader every loader parser uses (SPEC §1.1, §1.3). A sticky
// error makes parsers linear: after the first failure every read returns 0 and reads
// nothing, and the caller checks `failed()` once per structure.
// Variable time: inputs are public. (Structure lengths and framing are public; field
// contents that are secret are copied out with `bytesAt`, never branched on.)
import { err, TRUNCATED, TRAILING_BYTES, BAD_LENGTH, WRONG_KIND, UNSUPPORTED_VERSION, OK } from "./errors";

let pos: usize = 0;
let end: usize = 0;
let error: u32 = OK;

export function begin(p: usize, len: usize): void {
  pos = p;
  end = p + len;
  error = OK;
}

export function failed(): bool {
  return error != OK;
}

export function errorCode(): u32 {
  return error;
}

export function position(): usize {
  return pos;
}

export function remaining(): usize {
  return end - pos;
}

// Records the first failure only, so the reported field is the first one that broke.
export function fail(code: u32, field: u32): void {
  if (error == OK) error = err(code, field);
}

// SPEC §1.3 rule 1: every read checks that the bytes are present.
@inline function take(n: usize, field: u32): usize {
  if (error != OK) return 0;
  if (n > end - pos) {
    fail(TRUNCATED, field);
    return 0;
  }
  const p = pos;
  pos += n;
  return p;
}

export function u8r(field: u32): u32 {
  const p = take(1, field);
  return p ? <u32>load<u8>(p) : 0;
}

export function u16r(field: u32): u32 {
  const p = take(2, field);
  return p ? <u32>bswap<u16>(load<u16>(p)) : 0;
}

export function u32r(field: u32): u32 {
  const p = take(4, field);
  return p ? bswap<u32>(load<u32>(p)) : 0;
}

export function u64r(field: u32): u64 {
  const p = take(8, field);
  return p ? bswap<u64>(load<u64>(p)) : 0;
}

// Fixed-size field: returns its address in the input (0 on failure).
export function bytesAt(n: usize, field: u32): usize {
  return take(n, field);
}

// SPEC §1.1 opaque x<min..max>: the prefix width is the smallest of u8/u16/u32 holding max.
// Returns the address; the length is in `vecLen`.
export let vecLen: usize = 0;
export function vec(min: u32, max: u32, field: u32): usize {
  const n = max <= 0xff ? u8r(field) : max <= 0xffff ? u16r(field) : u32r(field);
  vecLen = 0;
  if (error != OK) return 0;
  if (n < min || n > max) {
    fail(BAD_LENGTH, field); // SPEC §1.3 rule 3
    return 0;
  }
  const p = take(<usize>n, field);
  if (p) vecLen = <usize>n;
  return p;
}

// SPEC §1.2: "veil" ‖ kind ‖ u16 version.
export function magic(kind: u32, field: u32): void {
  const p = take(8, field);
  if (!p) return;
  if (load<u32>(p) != 0x6c696576 || <u32>load<u16>(p, 4) != kind) fail(WRONG_KIND, field);
  else if (bswap<u16>(load<u16>(p, 6)) != 1) fail(UNSUPPORTED_VERSION, field);
}

// SPEC §1.3 rule 2: no bytes after the structure.
export function finish(field: u32): void {
  if (error == OK && pos != end) fail(TRAILING_BYTES, field);
}

// Two ASCII letters as they sit in memory (little-endian u16), for `magic`.
@inline export function kind(a: u32, b: u32): u32 {
  return a | (b << 8);
}

// ---- writer (for structures the loader emits) ----

let wpos: usize = 0;

export function wbegin(p: usize): void {
  wpos = p;
}

export function wpos_(): usize {
  return wpos;
}

export function w8(v: u32): void {
  store<u8>(wpos, <u8>v);
  wpos += 1;
}

export function w16(v: u32): void {
  store<u16>(wpos, bswap<u16>(<u16>v));
  wpos += 2;
}

export function w32(v: u32): void {
  store<u32>(wpos, bswap<u32>(v));
  wpos += 4;
}

export function w64(v: u64): void {
  store<u64>(wpos, bswap<u64>(v));
  wpos += 8;
}

export function wbytes(src: usize, n: usize): void {
  memory.copy(wpos, src, n);
  wpos += n;
}

export function wmagic(k: u32): void {
  store<u32>(wpos, 0x6c696576); // "veil"
  store<u16>(wpos, <u16>k, 4);
  store<u16>(wpos, bswap<u16>(1), 6);
  wpos += 8;
}
