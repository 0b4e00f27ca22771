// Trusted: the release loader's entry points — the world in wit/loader.wit, lowered by
// hand to the component model's canonical ABI: lists arrive as (ptr, len) placed with
// cabi_realloc, results go through a return area, and cabi_post_* empties the arena.
// Export names are snake_case here; the build renames them to the WIT's kebab-case.
import "./runtime/abort";
import { wipe } from "./crypto/ct";
import { err, STATE, TOO_LARGE, NO_PROGRAM, ENTROPY_FAILED, BAD_LENGTH, F_REPORT } from "./errors";
import { ensureLayout, arenaAlloc, arenaTake, arenaReset, overflow, MANIFEST_MAX, GRAPH_MAX } from "./layout";
import { initTrust, initialized, writeReport, REPORT_LEN, enoughSignatures } from "./trust";
import { unwrapKey } from "./keys";
import { register, outHandle, loadWeights, slotOf, release } from "./programs";
import { infer as inferOne, inferBegin, inferNext, inferCancel, sessionOpen, outPtr, outLen, outStream } from "./request";
import { endSessionsOf } from "./session";
import { MANIFEST_SIG, MANIFEST_SIG_LEN } from "./labels";

// Return area: discriminant u8 at 0; payload at 4 (a u32, or a list's ptr at 4 and len at 8).
const RET = memory.data(16, 8);

function fail(e: u32): usize {
  store<u8>(RET, 1);
  store<u32>(RET, e, 4);
  return RET;
}

function okList(p: usize, n: usize): usize {
  store<u8>(RET, 0);
  store<u32>(RET, <u32>p, 4);
  store<u32>(RET, <u32>n, 8);
  return RET;
}

function okU32(v: u32): usize {
  store<u8>(RET, 0);
  store<u32>(RET, v, 4);
  return RET;
}

// Every export starts here: memory plan in place, no argument overflowed the arena.
function entry(): u32 {
  if (!ensureLayout()) return err(TOO_LARGE, 0);
  if (overflow) return err(TOO_LARGE, 0); // SPEC §11.4
  return 0;
}

export function cabi_realloc(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  return arenaAlloc(oldPtr, oldSize, align, newSize);
}

// SPEC §11.2 init
export function init(trust: usize, trustLen: usize, nonce: usize, nonceLen: usize): usize {
  let e = entry();
  if (e != 0) return fail(e);
  if (initialized) return fail(err(STATE, 0));
  if (nonceLen != 32) return fail(err(BAD_LENGTH, F_REPORT | 5)); // SPEC §4: exactly 32 bytes
  e = initTrust(trust, trustLen);
  if (e == 0xffffffff) return fail(err(ENTROPY_FAILED, 0));
  if (e != 0) return fail(e);
  const out = arenaTake(REPORT_LEN);
  if (out == 0) return fail(err(TOO_LARGE, 0));
  writeReport(out, nonce);
  return okList(out, REPORT_LEN);
}

// SPEC §11.2 attest
export function attest(nonce: usize, nonceLen: usize): usize {
  const e = entry();
  if (e != 0) return fail(e);
  if (!initialized) return fail(err(STATE, 0));
  if (nonceLen != 32) return fail(err(BAD_LENGTH, F_REPORT | 5));
  const out = arenaTake(REPORT_LEN);
  if (out == 0) return fail(err(TOO_LARGE, 0));
  writeReport(out, nonce);
  return okList(out, REPORT_LEN);
}

export function unwrap_key(p: usize, len: usize): usize {
  let e = entry();
  if (e != 0) return fail(e);
  if (!initialized) return fail(err(STATE, 0));
  e = unwrapKey(p, len);
  return e != 0 ? fail(e) : okU32(0);
}

// SPEC §6.1: the signatures decide first, on the domain-separated manifest.
export function load_program(m: usize, mLen: usize, sig: usize, sigLen: usize, g: usize, gLen: usize): usize {
  let e = entry();
  if (e != 0) return fail(e);
  if (!initialized) return fail(err(STATE, 0));
  if (mLen > MANIFEST_MAX) return fail(err(TOO_LARGE, 0x0301));
  if (gLen > GRAPH_MAX) return fail(err(TOO_LARGE, 0x0305));
  const signed = arenaTake(MANIFEST_SIG_LEN + mLen);
  if (signed == 0) return fail(err(TOO_LARGE, 0x0301));
  memory.copy(signed, MANIFEST_SIG, MANIFEST_SIG_LEN);
  memory.copy(signed + MANIFEST_SIG_LEN, m, mLen);
  e = enoughSignatures(sig, sigLen, signed, MANIFEST_SIG_LEN + mLen);
  if (e != 0) return fail(e);
  e = register(m, mLen, g, gLen);
  return e != 0 ? fail(e) : okU32(outHandle);
}

export function load_weights(program: u32, p: usize, len: usize): usize {
  let e = entry();
  if (e != 0) return fail(e);
  const i = slotOf(program);
  if (i < 0) return fail(err(NO_PROGRAM, 0));
  e = loadWeights(<u32>i, p, len);
  return e != 0 ? fail(e) : okU32(0);
}

export function unload_program(program: u32): usize {
  const e = entry();
  if (e != 0) return fail(e);
  const i = slotOf(program);
  if (i < 0) return fail(err(NO_PROGRAM, 0));
  endSessionsOf(program); // SPEC §8.5.4: the program's sessions end with it
  release(<u32>i);
  return okU32(0);
}

export function infer(program: u32, p: usize, len: usize): usize {
  let e = entry();
  if (e != 0) return fail(e);
  e = inferOne(program, p, len);
  return e != 0 ? fail(e) : okList(outPtr, outLen);
}

export function infer_begin(program: u32, p: usize, len: usize): usize {
  let e = entry();
  if (e != 0) return fail(e);
  e = inferBegin(program, p, len);
  return e != 0 ? fail(e) : okU32(outStream);
}

export function infer_next(stream: u32): usize {
  let e = entry();
  if (e != 0) return fail(e);
  e = inferNext(stream);
  return e != 0 ? fail(e) : okList(outPtr, outLen);
}

export function infer_cancel(stream: u32): usize {
  let e = entry();
  if (e != 0) return fail(e);
  e = inferCancel(stream);
  return e != 0 ? fail(e) : okU32(0);
}

// SPEC §8.5.1
export function session_open(program: u32, p: usize, len: usize): usize {
  let e = entry();
  if (e != 0) return fail(e);
  e = sessionOpen(program, p, len);
  return e != 0 ? fail(e) : okList(outPtr, outLen);
}

// cabi_post_*: the host has copied the results out; wipe and empty the arena.
export function cabi_post_init(_r: usize): void { arenaReset(); }
export function cabi_post_attest(_r: usize): void { arenaReset(); }
export function cabi_post_unwrap_key(_r: usize): void { arenaReset(); }
export function cabi_post_load_program(_r: usize): void { arenaReset(); }
export function cabi_post_load_weights(_r: usize): void { arenaReset(); }
export function cabi_post_unload_program(_r: usize): void { arenaReset(); }
export function cabi_post_infer(_r: usize): void { arenaReset(); }
export function cabi_post_infer_begin(_r: usize): void { arenaReset(); }
export function cabi_post_infer_next(_r: usize): void { arenaReset(); }
export function cabi_post_infer_cancel(_r: usize): void { arenaReset(); }
export function cabi_post_session_open(_r: usize): void { arenaReset(); }
