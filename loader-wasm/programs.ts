// Trusted: program slots and the sealed-weights stream (SPEC §5.6, §6.1, §9). It holds
// each program's weights payload and commitment keys and decides when plaintext weights may
// go to the accelerator and when a program may run.
import { ctEqual, wipe } from "./crypto/ct";
import { sha256 } from "./crypto/sha256";
import { hkdfSha256Extract, hkdfSha256Expand } from "./crypto/hkdf";
import { hmacSha256 } from "./crypto/hmac";
import { aeadOpen } from "./crypto/aead";
import * as wire from "./wire";
import {
  err, F_WEIGHTS, CAPACITY, GRAPH_MISMATCH, ROLLBACK, KEY_UNKNOWN, WEIGHTS_MISMATCH,
  WEIGHTS_AUTH, WEIGHTS_ORDER, WEIGHTS_COMMITMENT, ACCELERATOR_FAILED, STATE, TOO_LARGE,
} from "./errors";
import { Facts, parseManifest } from "./manifest";
import { MANIFESTS, MANIFEST_SLOT, MANIFEST_MAX, PROGRAMS_MAX } from "./layout";
import { findKey } from "./keys";
import { WEIGHTS_INFO, WEIGHTS_INFO_LEN, COMMIT_INFO, COMMIT_INFO_LEN } from "./labels";
import * as host from "./imports";

// Slot states.
const FREE: u32 = 0, AWAIT_HEADER: u32 = 1, AWAIT_CHUNK: u32 = 2, READY: u32 = 3, POISONED: u32 = 4;

// Per-slot state beside the parsed facts (static, PROGRAMS_MAX slots).
const SLOT_SIZE: usize = 512;
const SLOTS = memory.data(<i32>(SLOT_SIZE * 8), 16);
const S_STATE: usize = 0, S_GEN: usize = 4, S_LEN: usize = 8, S_NEXT: usize = 16, S_OFFSET: usize = 24,
  S_DIGEST: usize = 32, S_KEY: usize = 64, S_COMMIT_KEY: usize = 96, S_FACTS: usize = 128;

@inline function slotAt(i: u32): usize { return SLOTS + <usize>i * SLOT_SIZE; }
export function facts(i: u32): Facts { return changetype<Facts>(slotAt(i) + S_FACTS); }
export function manifestBase(i: u32): usize { return MANIFESTS + <usize>i * MANIFEST_SLOT; }
export function tokenTable(i: u32): usize { return manifestBase(i) + MANIFEST_MAX; }
export function digest(i: u32): usize { return slotAt(i) + S_DIGEST; }

// A handle is slot | generation << 4, so a stale handle never reaches a reused slot.
export function handleOf(i: u32): u32 { return i | (load<u32>(slotAt(i) + S_GEN) << 4); }

// Returns the slot for a handle, or -1.
export function slotOf(handle: u32): i32 {
  const i = handle & 15;
  if (i >= PROGRAMS_MAX) return -1;
  const s = slotAt(i);
  if (load<u32>(s + S_STATE) == FREE || handleOf(i) != handle) return -1;
  return <i32>i;
}

export function isReady(i: u32): bool { return load<u32>(slotAt(i) + S_STATE) == READY; }

// ---- SPEC §5.6 rollback: highest version seen per program name ----
const NAMES_MAX: u32 = 32;
const NAMES = memory.data(<i32>(NAMES_MAX * 80), 8); // len u8 | name[64] | pad | version u64 at 72
let namesUsed: u32 = 0;

// Variable time: inputs are public.
function rollbackCheck(name: usize, n: usize, version: u64, commit: bool): u32 {
  for (let i: u32 = 0; i < namesUsed; i++) {
    const e = NAMES + <usize>i * 80;
    if (<usize>load<u8>(e) != n || memory.compare(e + 1, name, n) != 0) continue;
    if (version < load<u64>(e, 72)) return err(ROLLBACK, 0);
    if (commit) store<u64>(e, version, 72);
    return 0;
  }
  if (namesUsed >= NAMES_MAX) return err(CAPACITY, 0);
  if (commit) {
    const e = NAMES + <usize>namesUsed * 80;
    namesUsed++;
    store<u8>(e, <u8>n);
    memory.copy(e + 1, name, n);
    store<u64>(e, version, 72);
  }
  return 0;
}

// SPEC §6.1 steps 1, 4, 5 around the trust decision the caller made (step 2–3): parse the
// manifest, check the graph, check rollback, register. Returns the handle via `outHandle`.
export let outHandle: u32 = 0;
export function register(manifest: usize, manifestLen: usize, graph: usize, graphLen: usize): u32 {
  let i: u32 = 0;
  while (i < PROGRAMS_MAX && load<u32>(slotAt(i) + S_STATE) != FREE) i++;
  if (i == PROGRAMS_MAX) return err(CAPACITY, 0);
  if (manifestLen > MANIFEST_MAX) return err(TOO_LARGE, 0x0301);
  const base = manifestBase(i);
  memory.copy(base, manifest, manifestLen);
  const f = facts(i);
  let e = parseManifest(base, manifestLen, f, tokenTable(i));
  if (e != 0) return e;
  // Step 4: the graph is exactly the one the manifest names.
  const h = memory.data(32, 16);
  sha256(graph, graphLen, h);
  if (<u64>graphLen != f.graphSize || memory.compare(h, base + f.graphSha, 32) != 0) return err(GRAPH_MISMATCH, 0);
  // Step 5: rollback, then register.
  e = rollbackCheck(base + f.nameOff, f.nameLen, f.version, false);
  if (e != 0) return e;
  const s = slotAt(i);
  store<u32>(s + S_GEN, (load<u32>(s + S_GEN) + 1) & 0x0fffffff);
  const handle = handleOf(i);
  const a = host.createProgram(handle, base, manifestLen, graph, graphLen);
  if (a != 0) return err(ACCELERATOR_FAILED, 0x0900);
  rollbackCheck(base + f.nameOff, f.nameLen, f.version, true);
  store<u32>(s + S_STATE, AWAIT_HEADER);
  store<u32>(s + S_LEN, <u32>manifestLen);
  sha256(base, manifestLen, s + S_DIGEST); // SPEC §5.6 program digest
  outHandle = handle;
  return 0;
}

// Drops a program: tells the accelerator, wipes the slot's secrets.
export function release(i: u32): void {
  const s = slotAt(i);
  host.dropProgram(handleOf(i));
  wipe(s + S_KEY, 64); // payload and commitment keys
  store<u32>(s + S_STATE, FREE);
}

function poison(i: u32, e: u32): u32 {
  const s = slotAt(i);
  wipe(s + S_KEY, 64); // payload and commitment keys
  host.dropProgram(handleOf(i));
  store<u32>(s + S_STATE, POISONED); // SPEC §9: the program cannot run until loaded again
  return e;
}

// SPEC §12.1 field ids for the weights stream.
const W_MAGIC = F_WEIGHTS | 1, W_KEY_ID = F_WEIGHTS | 2, W_STREAM_ID = F_WEIGHTS | 3, W_CHUNK_SIZE = F_WEIGHTS | 4,
  W_COUNT = F_WEIGHTS | 5, W_SIZE = F_WEIGHTS | 6, W_CHUNK = F_WEIGHTS | 7;
const HEADER_LEN: usize = 60;
const NONCE = memory.data(12, 16);
const INFO = memory.data(27 + 60, 16); // the longer label ‖ header
const PRK = memory.data(32, 16);

// SPEC §9: one piece of the sealed weights stream — the header first, then each chunk.
export function loadWeights(i: u32, piece: usize, len: usize): u32 {
  const s = slotAt(i);
  const f = facts(i);
  const state = load<u32>(s + S_STATE);
  if (state == AWAIT_HEADER) return weightsHeader(i, s, f, piece, len);
  // SPEC §9: a piece after the final chunk is an extension, and any failure poisons.
  if (state == READY) return poison(i, err(WEIGHTS_ORDER, W_CHUNK));
  if (state != AWAIT_CHUNK) return err(STATE, W_CHUNK);
  const index = load<u64>(s + S_NEXT);
  const last = index + 1 == f.chunkCount;
  // SPEC §9: plaintext_i is chunk_size bytes but for the last, which holds the rest.
  const ptLen = last ? f.plaintextSize - index * <u64>f.chunkSize : <u64>f.chunkSize;
  if (<u64>len != ptLen + 16) return poison(i, err(WEIGHTS_ORDER, W_CHUNK));
  // nonce_i = i as 11-byte big-endian ‖ final flag
  store<u32>(NONCE, 0);
  store<u64>(NONCE + 3, bswap<u64>(index));
  store<u8>(NONCE + 11, last ? 1 : 0);
  const n = <usize>ptLen;
  // RFC 8439 §2.8 via aeadOpen: tag verified before any plaintext is released, in place.
  if (aeadOpen(s + S_KEY, NONCE, 0, 0, piece, n, piece + n, piece) != 0) {
    return poison(i, err(WEIGHTS_AUTH, W_CHUNK));
  }
  const offset = load<u64>(s + S_OFFSET);
  const a = n > 0 ? host.uploadWeights(handleOf(i), offset, piece, n) : 0;
  wipe(piece, n); // plaintext leaves only through the accelerator
  if (a != 0) return poison(i, err(ACCELERATOR_FAILED, 0x0900));
  store<u64>(s + S_OFFSET, offset + ptLen);
  store<u64>(s + S_NEXT, index + 1);
  if (!last) return 0;
  wipe(s + S_KEY, 32);
  // SPEC §9.1: the accelerator's measurement of what it received, keyed, must equal the
  // signed commitment before anything is built from the weights or the program may run.
  if (host.measureWeights(handleOf(i)) != 0) return poison(i, err(ACCELERATOR_FAILED, 0x0900));
  const c = memory.data(32, 16);
  hmacSha256(s + S_COMMIT_KEY, 32, host.measurement, 32, c);
  wipe(s + S_COMMIT_KEY, 32);
  wipe(host.measurement, 32);
  const ok = ctEqual(c, manifestBase(i) + f.commitmentOff, 32);
  wipe(c, 32);
  if (ok != 1) return poison(i, err(WEIGHTS_COMMITMENT, W_CHUNK));
  if (host.finishWeights(handleOf(i)) != 0) return poison(i, err(ACCELERATOR_FAILED, 0x0900));
  store<u32>(s + S_STATE, READY);
  return 0;
}

function weightsHeader(i: u32, s: usize, f: Facts, p: usize, len: usize): u32 {
  const base = manifestBase(i);
  wire.begin(p, len);
  wire.magic(wire.kind(0x57, 0x53), W_MAGIC); // "WS"
  const keyId = wire.bytesAt(16, W_KEY_ID);
  const streamId = wire.bytesAt(16, W_STREAM_ID);
  const chunkSize = wire.u32r(W_CHUNK_SIZE);
  const count = wire.u64r(W_COUNT);
  const size = wire.u64r(W_SIZE);
  wire.finish(F_WEIGHTS);
  if (wire.failed()) return poison(i, wire.errorCode());
  // SPEC §9: header fields equal the manifest's weights descriptor.
  if (memory.compare(keyId, base + f.keyIdOff, 16) != 0) return poison(i, err(WEIGHTS_MISMATCH, W_KEY_ID));
  if (memory.compare(streamId, base + f.streamIdOff, 16) != 0) return poison(i, err(WEIGHTS_MISMATCH, W_STREAM_ID));
  if (chunkSize != f.chunkSize) return poison(i, err(WEIGHTS_MISMATCH, W_CHUNK_SIZE));
  if (count != f.chunkCount) return poison(i, err(WEIGHTS_MISMATCH, W_COUNT));
  if (size != f.plaintextSize) return poison(i, err(WEIGHTS_MISMATCH, W_SIZE));
  const key = findKey(keyId);
  if (key == 0) return poison(i, err(KEY_UNKNOWN, W_KEY_ID));
  // payload_key = HKDF-SHA256(salt = stream_id, IKM = data_key, info = label ‖ header, 32)
  memory.copy(INFO, WEIGHTS_INFO, WEIGHTS_INFO_LEN);
  memory.copy(INFO + WEIGHTS_INFO_LEN, p, HEADER_LEN);
  hkdfSha256Extract(streamId, 16, key, 32, PRK);
  hkdfSha256Expand(PRK, 32, INFO, WEIGHTS_INFO_LEN + HEADER_LEN, s + S_KEY, 32);
  // SPEC §9.1: commit_key, same salt and key, its own label before the header.
  memory.copy(INFO, COMMIT_INFO, COMMIT_INFO_LEN);
  memory.copy(INFO + COMMIT_INFO_LEN, p, HEADER_LEN);
  hkdfSha256Expand(PRK, 32, INFO, COMMIT_INFO_LEN + HEADER_LEN, s + S_COMMIT_KEY, 32);
  wipe(PRK, 32);
  wipe(INFO, COMMIT_INFO_LEN + HEADER_LEN);
  store<u64>(s + S_NEXT, 0);
  store<u64>(s + S_OFFSET, 0);
  store<u32>(s + S_STATE, AWAIT_CHUNK);
  return 0;
}

