// Trusted: parses the signed program manifest (SPEC §5) into the facts the loader enforces —
// I/O schema, mode, weights descriptor, policy. A parsing mistake here would let a program
// run outside what its reviewers signed.
// Variable time: inputs are public. (Manifests are public, signed metadata.)
import * as wire from "./wire";
import {
  F_MANIFEST, BAD_VALUE, BAD_LENGTH, NOT_CANONICAL, TOO_LARGE, UNKNOWN_CRITICAL, UNSUPPORTED_VERSION, TRUNCATED,
} from "./errors";
import { TENSOR_MAX, RESPONSE_MAX, VOCAB_MAX, CONTEXT_MAX, MANIFEST_MAX } from "./layout";

// SPEC §12.1 field ids for the manifest.
export const M_MAGIC = F_MANIFEST | 1, M_NAME = F_MANIFEST | 2, M_VERSION = F_MANIFEST | 3,
  M_GRAPH_SHA = F_MANIFEST | 4, M_GRAPH_SIZE = F_MANIFEST | 5, M_INPUTS = F_MANIFEST | 6,
  M_OUTPUTS = F_MANIFEST | 7, M_MODE = F_MANIFEST | 8, M_VOCAB = F_MANIFEST | 9,
  M_TOKEN = F_MANIFEST | 10, M_END = F_MANIFEST | 11, M_MAX_NEW = F_MANIFEST | 12,
  M_CONTEXT = F_MANIFEST | 13, M_PER_CHUNK = F_MANIFEST | 14, M_KEY_ID = F_MANIFEST | 15,
  M_STREAM_ID = F_MANIFEST | 16, M_PLAINTEXT = F_MANIFEST | 17, M_CHUNK_SIZE = F_MANIFEST | 18,
  M_CHUNK_COUNT = F_MANIFEST | 19, M_COMMITMENT = F_MANIFEST | 20, M_FILES = F_MANIFEST | 21,
  M_POLICY = F_MANIFEST | 22, M_EXTENSIONS = F_MANIFEST | 23;

export const MODE_TENSOR: u32 = 1;
export const MODE_GENERATE: u32 = 2;
export const GRAPH_MAX: u64 = 64 << 20;
export const WEIGHTS_MAX: u64 = 1 << 46;

// What the loader keeps of a parsed manifest. Offsets are into the manifest bytes.
@unmanaged export class Facts {
  nameOff: u32; nameLen: u32; version: u64;
  graphSha: u32; graphSize: u64;
  inputsOff: u32; outputsOff: u32;
  mode: u32;
  vocabSize: u32; tokensOff: u32; endToken: u32; maxNew: u32; contextLength: u32; perChunk: u32;
  keyIdOff: u32; streamIdOff: u32; plaintextSize: u64; chunkSize: u32; chunkCount: u64; commitmentOff: u32;
  egress: u32;
}

// SPEC §5.2: ONNX dtype code → element size, 0 if undefined.
export function dtypeSize(code: u32): u32 {
  switch (code) {
    case 2: case 3: case 9: return 1;
    case 5: case 10: return 2;
    case 1: case 6: return 4;
    case 7: case 11: return 8;
  }
  return 0;
}

// SPEC §1.4: [a-zA-Z0-9._/-], not starting with "/" or "."; program names also no "/" or upper case.
export function nameOk(p: usize, n: usize, program: bool): bool {
  const c0 = load<u8>(p);
  if (c0 == 0x2f || c0 == 0x2e) return false;
  for (let i: usize = 0; i < n; i++) {
    const c = <u32>load<u8>(p + i);
    const lower = c >= 0x61 && c <= 0x7a, digit = c >= 0x30 && c <= 0x39, upper = c >= 0x41 && c <= 0x5a;
    const punct = c == 0x2e || c == 0x5f || c == 0x2d;
    if (!(lower || digit || punct || (!program && (upper || c == 0x2f)))) return false;
  }
  return true;
}

function sameBytes(a: usize, an: usize, b: usize, bn: usize): bool {
  if (an != bn) return false;
  for (let i: usize = 0; i < an; i++) if (load<u8>(a + i) != load<u8>(b + i)) return false;
  return true;
}

// SPEC §5.1: u8 count then TensorSpec[count]. Returns the count (0 after a failure).
function tensorSpecs(field: u32): u32 {
  const count = wire.u8r(field);
  if (!wire.failed() && (count < 1 || count > 16)) wire.fail(BAD_LENGTH, field); // 1..16
  const names = memory.data(16 * 8, 8); // (ptr, len) of each name, for uniqueness
  for (let i: u32 = 0; i < count && !wire.failed(); i++) {
    const name = wire.vec(1, 64, field);
    const n = wire.vecLen;
    if (!wire.failed() && !nameOk(name, n, false)) wire.fail(BAD_VALUE, field); // §1.4
    for (let j: u32 = 0; j < i && !wire.failed(); j++) {
      // §5.1: names unique among the inputs, and among the outputs (checked as the name is read)
      if (sameBytes(load<u32>(names + j * 8), load<u32>(names + j * 8 + 4), name, n)) wire.fail(NOT_CANONICAL, field);
    }
    store<u32>(names + i * 8, <u32>name);
    store<u32>(names + i * 8 + 4, <u32>n);
    const size = dtypeSize(wire.u8r(field));
    if (!wire.failed() && size == 0) wire.fail(BAD_VALUE, field); // §5.2
    const rank = wire.u8r(field);
    if (!wire.failed() && rank > 8) wire.fail(BAD_LENGTH, field); // rank 0..8
    let bytes: u64 = size;
    for (let d: u32 = 0; d < rank && !wire.failed(); d++) {
      const lo = wire.u32r(field), hi = wire.u32r(field);
      if (!wire.failed() && (lo < 1 || lo > hi || hi > (1 << 24))) wire.fail(BAD_VALUE, field); // §5.1 Dim
      bytes *= hi; // ≤ 2^24 · TENSOR_MAX before the check below: no overflow
      if (!wire.failed() && bytes > <u64>TENSOR_MAX) wire.fail(TOO_LARGE, field); // §5.1
    }
  }
  return wire.failed() ? 0 : count;
}

// Reads one TensorSpec header at `p` (name, dtype, rank) for schema checks; returns the
// address of its first Dim. The spec was validated when the manifest was parsed.
export let specName: usize = 0;
export let specNameLen: usize = 0;
export let specDtype: u32 = 0;
export let specRank: u32 = 0;
export function readSpec(p: usize): usize {
  specNameLen = <usize>load<u8>(p);
  specName = p + 1;
  specDtype = load<u8>(p + 1 + specNameLen);
  specRank = load<u8>(p + 2 + specNameLen);
  return p + 3 + specNameLen;
}

function dimIs(p: usize, lo: u32, hi: u32): bool {
  return bswap<u32>(load<u32>(p)) == lo && bswap<u32>(load<u32>(p + 4)) == hi;
}

// SPEC §5.3: a generate program takes int64 [1, 1..context] ...
function generateInputOk(base: usize, f: Facts): bool {
  const d = readSpec(base + f.inputsOff + 1);
  if (load<u8>(base + f.inputsOff) != 1 || specDtype != 7 || specRank != 2) return false;
  return dimIs(d, 1, 1) && dimIs(d + 8, 1, f.contextLength);
}

// ... and yields float32 [1, 1..context, vocab] or [1, 1, vocab].
function generateOutputOk(base: usize, f: Facts): bool {
  const d = readSpec(base + f.outputsOff + 1);
  if (load<u8>(base + f.outputsOff) != 1 || specDtype != 1 || specRank != 3) return false;
  const positions = dimIs(d + 8, 1, f.contextLength) || dimIs(d + 8, 1, 1); // every position, or the last
  return dimIs(d, 1, 1) && positions && dimIs(d + 16, f.vocabSize, f.vocabSize);
}

// Parses a manifest at `base` (len bytes) into `f`; `tokenTable` receives the offset of each
// vocabulary token (generate mode). Returns 0 or an error (SPEC §12).
export function parseManifest(base: usize, len: usize, f: Facts, tokenTable: usize): u32 {
  wire.begin(base, len);
  if (<usize>len > MANIFEST_MAX) wire.fail(TOO_LARGE, M_MAGIC); // SPEC §13
  wire.magic(wire.kind(0x4d, 0x46), M_MAGIC); // SPEC §5: "MF"
  const name = wire.vec(1, 64, M_NAME);
  f.nameOff = <u32>(name - base);
  f.nameLen = <u32>wire.vecLen;
  if (!wire.failed() && !nameOk(name, wire.vecLen, true)) wire.fail(BAD_VALUE, M_NAME); // §1.4
  f.version = wire.u64r(M_VERSION);
  if (!wire.failed() && (f.version < 1 || f.version >= (<u64>1 << 63))) wire.fail(BAD_VALUE, M_VERSION); // §5
  f.graphSha = <u32>(wire.bytesAt(32, M_GRAPH_SHA) - base);
  f.graphSize = wire.u64r(M_GRAPH_SIZE);
  if (!wire.failed() && f.graphSize < 1) wire.fail(BAD_VALUE, M_GRAPH_SIZE); // §5: 1..GRAPH_MAX
  if (!wire.failed() && f.graphSize > GRAPH_MAX) wire.fail(TOO_LARGE, M_GRAPH_SIZE);
  f.inputsOff = <u32>(wire.position() - base);
  tensorSpecs(M_INPUTS);
  f.outputsOff = <u32>(wire.position() - base);
  tensorSpecs(M_OUTPUTS);
  f.mode = wire.u8r(M_MODE);
  if (!wire.failed() && f.mode != MODE_TENSOR && f.mode != MODE_GENERATE) wire.fail(BAD_VALUE, M_MODE); // §5
  f.vocabSize = 0;
  if (!wire.failed() && f.mode == MODE_GENERATE) {
    // SPEC §5.3
    f.vocabSize = wire.u32r(M_VOCAB);
    if (!wire.failed() && (f.vocabSize < 2 || f.vocabSize > VOCAB_MAX)) wire.fail(BAD_LENGTH, M_VOCAB);
    f.tokensOff = <u32>(wire.position() - base);
    for (let i: u32 = 0; i < f.vocabSize && !wire.failed(); i++) {
      const t = wire.vec(1, 64, M_TOKEN);
      store<u32>(tokenTable + <usize>i * 4, <u32>(t - 1 - base)); // offset of the length byte
    }
    f.endToken = wire.u32r(M_END);
    if (!wire.failed() && f.endToken >= f.vocabSize) wire.fail(BAD_VALUE, M_END);
    f.maxNew = wire.u32r(M_MAX_NEW);
    if (!wire.failed() && (f.maxNew < 1 || f.maxNew > 4096)) wire.fail(BAD_VALUE, M_MAX_NEW);
    f.contextLength = wire.u32r(M_CONTEXT);
    if (!wire.failed() && (f.contextLength < 1 || f.contextLength > CONTEXT_MAX)) wire.fail(BAD_VALUE, M_CONTEXT);
    f.perChunk = wire.u16r(M_PER_CHUNK);
    if (!wire.failed() && (f.perChunk < 1 || f.perChunk > 256)) wire.fail(BAD_VALUE, M_PER_CHUNK);
    if (!wire.failed() && !generateInputOk(base, f)) wire.fail(BAD_VALUE, M_INPUTS);
    if (!wire.failed() && !generateOutputOk(base, f)) wire.fail(BAD_VALUE, M_OUTPUTS);
  }
  // SPEC §5.4 weights descriptor
  f.keyIdOff = <u32>(wire.bytesAt(16, M_KEY_ID) - base);
  f.streamIdOff = <u32>(wire.bytesAt(16, M_STREAM_ID) - base);
  f.plaintextSize = wire.u64r(M_PLAINTEXT);
  if (!wire.failed() && f.plaintextSize > WEIGHTS_MAX) wire.fail(TOO_LARGE, M_PLAINTEXT);
  f.chunkSize = wire.u32r(M_CHUNK_SIZE);
  if (!wire.failed() && (f.chunkSize < (1 << 16) || f.chunkSize > (1 << 24) || popcnt(f.chunkSize) != 1)) {
    wire.fail(BAD_VALUE, M_CHUNK_SIZE);
  }
  f.chunkCount = wire.u64r(M_CHUNK_COUNT);
  if (!wire.failed()) {
    const cs = <u64>f.chunkSize;
    const want = f.plaintextSize == 0 ? <u64>1 : (f.plaintextSize + cs - 1) / cs;
    if (f.chunkCount != want) wire.fail(NOT_CANONICAL, M_CHUNK_COUNT); // max(1, ⌈size/chunk⌉)
  }
  f.commitmentOff = <u32>(wire.bytesAt(32, M_COMMITMENT) - base); // SPEC §5.4, §9.1
  const files = wire.u8r(M_FILES);
  if (!wire.failed() && (files < 1 || files > 64)) wire.fail(BAD_LENGTH, M_FILES); // 1..64
  let total: u64 = 0;
  const locs = memory.data(64 * 8, 8);
  for (let i: u32 = 0; i < files && !wire.failed(); i++) {
    const loc = wire.vec(1, 64, M_FILES);
    const n = wire.vecLen;
    if (!wire.failed() && !nameOk(loc, n, false)) wire.fail(BAD_VALUE, M_FILES);
    for (let j: u32 = 0; j < i && !wire.failed(); j++) {
      if (sameBytes(load<u32>(locs + j * 8), load<u32>(locs + j * 8 + 4), loc, n)) wire.fail(BAD_VALUE, M_FILES);
    }
    store<u32>(locs + i * 8, <u32>loc);
    store<u32>(locs + i * 8 + 4, <u32>n);
    const size = wire.u64r(M_FILES);
    if (!wire.failed() && size == 0 && !(f.plaintextSize == 0 && files == 1)) wire.fail(BAD_VALUE, M_FILES);
    if (!wire.failed() && size > WEIGHTS_MAX) wire.fail(BAD_VALUE, M_FILES);
    total += size; // each ≤ 2^46, at most 64 of them: no overflow
  }
  if (!wire.failed() && total != f.plaintextSize) wire.fail(BAD_VALUE, M_FILES); // sizes sum to plaintext_size
  // SPEC §5.5 policy
  if (!wire.failed() && wire.u16r(M_POLICY) != 1) wire.fail(UNSUPPORTED_VERSION, M_POLICY); // §1.3
  const extLen = wire.u16r(M_EXTENSIONS);
  const extEnd = wire.position() + <usize>extLen;
  if (!wire.failed() && <usize>extLen > wire.remaining()) wire.fail(TRUNCATED, M_EXTENSIONS);
  f.egress = 0;
  let prev: i32 = -1;
  while (!wire.failed() && wire.position() < extEnd) {
    const type = wire.u16r(M_EXTENSIONS);
    const data = wire.vec(0, 0xffff, M_EXTENSIONS);
    const dataLen = wire.vecLen;
    if (wire.failed()) break;
    if (wire.position() > extEnd) wire.fail(TRUNCATED, M_EXTENSIONS); // §1.1: runs past the list
    else if (<i32>type <= prev) wire.fail(NOT_CANONICAL, M_EXTENSIONS); // strictly ascending
    else if (type == 0x8001) {
      // egress limit: u32 max_response_bytes in 1..RESPONSE_MAX
      const v = dataLen == 4 ? bswap<u32>(load<u32>(data)) : 0;
      if (dataLen != 4) wire.fail(BAD_LENGTH, M_EXTENSIONS);
      else if (v < 1 || <usize>v > RESPONSE_MAX) wire.fail(BAD_VALUE, M_EXTENSIONS);
      f.egress = v;
    } else if ((type & 0x8000) != 0) wire.fail(UNKNOWN_CRITICAL, M_EXTENSIONS); // §5.5
    prev = <i32>type;
  }
  wire.finish(F_MANIFEST);
  return wire.failed() ? wire.errorCode() : 0;
}
