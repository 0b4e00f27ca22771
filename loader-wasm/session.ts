// Trusted: authenticated sessions (SPEC §8.5). Holds each session's key schedule (prk, the
// request and response keys and nonces) and its anti-replay window, opens session requests
// in place and derives the keys that seal their responses and streams.
import { ctEqual, wipe } from "./crypto/ct";
import { hkdfSha256Extract, hkdfSha256Expand } from "./crypto/hkdf";
import { aeadOpen } from "./crypto/aead";
import { err, F_SESSION, KEY_ID, REQUEST_AUTH, REPLAY, BAD_VALUE, BAD_LENGTH, TOO_LARGE, TRUNCATED, SESSION_UNKNOWN, ENTROPY_FAILED } from "./errors";
import { SESSIONS_MAX, SESSION_LIFETIME_S, SESSION_WINDOW, REQUEST_MAX } from "./layout";
import { keyId } from "./trust";
import { slotOf } from "./programs";
import {
  SESSION_REQUEST_KEY, SESSION_REQUEST_KEY_LEN, SESSION_REQUEST_NONCE, SESSION_REQUEST_NONCE_LEN,
  SESSION_RESPONSE_KEY, SESSION_RESPONSE_KEY_LEN, SESSION_RESPONSE_NONCE, SESSION_RESPONSE_NONCE_LEN,
  SESSION_STREAM_KEY, SESSION_STREAM_KEY_LEN, SESSION_STREAM_NONCE, SESSION_STREAM_NONCE_LEN,
} from "./labels";
import * as host from "./imports";

// SPEC §12.1 field ids.
const Q_KEY_ID: u32 = F_SESSION | 1, Q_MAGIC: u32 = F_SESSION | 2, Q_ID: u32 = F_SESSION | 3, Q_SEQ: u32 = F_SESSION | 4,
  Q_CT: u32 = F_SESSION | 5;

// SPEC §8.5.2: key_id ‖ "veil" "SQ" 0x0001 ‖ session_id[16] ‖ u64 seq, then ct (≥ 16 bytes).
export const HEADER_LEN: usize = 33;
const LIFETIME_NS: u64 = <u64>SESSION_LIFETIME_S * 1_000_000_000;

// One static slot per session (SPEC §8.5.4): no allocation per session or request.
const SLOT_SIZE: usize = 256;
const SLOTS = memory.data(<i32>(SLOT_SIZE * <usize>SESSIONS_MAX), 16);
const E_LIVE: usize = 0, E_PROGRAM: usize = 4, E_OPENED: usize = 8, E_USED: usize = 16, E_HIGHEST: usize = 24,
  E_BITS: usize = 32 /* two u64: bits 0..63, 64..127 */, E_ID: usize = 48, E_PRK: usize = 64, E_REQ_KEY: usize = 96,
  E_REQ_NONCE: usize = 128, E_RES_KEY: usize = 144, E_RES_NONCE: usize = 176, E_END: usize = 188;

@inline function slotAt(s: u32): usize { return SLOTS + <usize>s * SLOT_SIZE; }

function kill(s: u32): void {
  wipe(slotAt(s), SLOT_SIZE); // live = 0, keys, id and window gone
}

// Variable time: inputs are public. (Bytes 1..8 are the magic, sent in the clear.)
// SPEC §8.5.2: a message is a session request exactly when bytes 1..8 are the magic.
export function isSessionRequest(p: usize, len: usize): bool {
  return len >= 9 && load<u32>(p + 1) == 0x6c696576 && load<u16>(p + 5) == 0x5153 && load<u16>(p + 7) == 0x0100;
}

// ---- opening a session (SPEC §8.5.1) ----

const SALT = memory.data(48, 16);
const INFO = memory.data(40, 16);

// Fills slot `s` from the request's enc and session_secret; session_id drawn from entropy
// into the slot. Returns false (slot wiped) if entropy failed.
function derive(s: u32, enc: usize, secret: usize): bool {
  const e = slotAt(s);
  if (!host.entropy(e + E_ID, 16)) {
    kill(s);
    return false;
  }
  memory.copy(SALT, enc, 32);
  memory.copy(SALT + 32, e + E_ID, 16);
  hkdfSha256Extract(SALT, 48, secret, 32, e + E_PRK); // salt = enc ‖ session_id
  hkdfSha256Expand(e + E_PRK, 32, SESSION_REQUEST_KEY, SESSION_REQUEST_KEY_LEN, e + E_REQ_KEY, 32);
  hkdfSha256Expand(e + E_PRK, 32, SESSION_REQUEST_NONCE, SESSION_REQUEST_NONCE_LEN, e + E_REQ_NONCE, 12);
  hkdfSha256Expand(e + E_PRK, 32, SESSION_RESPONSE_KEY, SESSION_RESPONSE_KEY_LEN, e + E_RES_KEY, 32);
  hkdfSha256Expand(e + E_PRK, 32, SESSION_RESPONSE_NONCE, SESSION_RESPONSE_NONCE_LEN, e + E_RES_NONCE, 12);
  wipe(SALT, 48);
  return true;
}

// Variable time: inputs are public. (Times and slot states only.)
// A free slot, else the least recently used one, wiped (SPEC §8.5.4).
function takeSlot(): u32 {
  let lru: u32 = 0;
  let oldest: u64 = 0xffffffffffffffff;
  for (let s: u32 = 0; s < SESSIONS_MAX; s++) {
    const e = slotAt(s);
    if (load<u32>(e, E_LIVE) == 0) return s;
    const used = load<u64>(e, E_USED);
    if (used < oldest) {
      oldest = used;
      lru = s;
    }
  }
  kill(lru);
  return lru;
}

// Opens a session for `handle` from an opened request's `enc` and `secret` (the §8.5.1
// session_secret, which the caller wipes). Writes the 32-byte SessionAccept at `out`.
export function createSession(handle: u32, enc: usize, secret: usize, out: usize): u32 {
  const s = takeSlot();
  if (!derive(s, enc, secret)) return err(ENTROPY_FAILED, 0);
  const e = slotAt(s);
  const t = host.now();
  store<u32>(e, handle, E_PROGRAM);
  store<u64>(e, t, E_OPENED);
  store<u64>(e, t, E_USED);
  store<u64>(e, 0, E_HIGHEST);
  store<u64>(e, 0, E_BITS);
  store<u64>(e, 0, E_BITS + 8);
  store<u32>(e, 1, E_LIVE);
  // SessionAccept: magic "SA" ‖ session_id ‖ lifetime_seconds ‖ window
  store<u32>(out, 0x6c696576);
  store<u16>(out, 0x4153, 4); // "SA"
  store<u16>(out, 0x0100, 6); // version 1, big-endian
  memory.copy(out + 8, e + E_ID, 16);
  store<u32>(out + 24, bswap<u32>(SESSION_LIFETIME_S));
  store<u32>(out + 28, bswap<u32>(SESSION_WINDOW));
  lastSession = s;
  return 0;
}

// The slot createSession used, so a later failure of the same call can end it.
export let lastSession: u32 = 0;
export function endSession(s: u32): void { kill(s); }

// unload-program: every session of the program ends with it (SPEC §8.5.4).
export function endSessionsOf(handle: u32): void {
  for (let s: u32 = 0; s < SESSIONS_MAX; s++) {
    const e = slotAt(s);
    if (load<u32>(e, E_LIVE) != 0 && load<u32>(e, E_PROGRAM) == handle) kill(s);
  }
}

// ---- session requests (SPEC §8.5.2, §8.5.3) ----

// Variable time: inputs are public. (seq and the window are public.)
// 0: new or in the window and unseen; else REPLAY.
function windowCheck(e: usize, seq: u64): bool {
  const highest = load<u64>(e, E_HIGHEST);
  if (seq > highest) return true;
  const d = highest - seq;
  if (d >= <u64>SESSION_WINDOW) return false; // too old
  const word = load<u64>(e + E_BITS + (d >= 64 ? 8 : 0));
  return ((word >> (d & 63)) & 1) == 0;
}

// Variable time: inputs are public.
// RFC 4303 §3.4.3: slide for a new highest, then mark. Called only after the AEAD open.
function windowMark(e: usize, seq: u64): void {
  const highest = load<u64>(e, E_HIGHEST);
  let lo = load<u64>(e, E_BITS), hi = load<u64>(e, E_BITS + 8);
  if (seq > highest) {
    const n = seq - highest;
    if (n >= 128) {
      lo = 0;
      hi = 0;
    } else if (n >= 64) {
      hi = lo << (n - 64); // n = 64 moves lo to hi unchanged
      lo = 0;
    } else {
      hi = (hi << n) | (lo >> (64 - n)); // 1 ≤ n ≤ 63: both shift counts in 1..63
      lo = lo << n;
    }
    lo |= 1;
    store<u64>(e, seq, E_HIGHEST);
  } else {
    const d = highest - seq;
    if (d >= 64) hi |= <u64>1 << (d - 64);
    else lo |= <u64>1 << d;
  }
  store<u64>(e, lo, E_BITS);
  store<u64>(e, hi, E_BITS + 8);
}

// The session the current request opened under, and its seq.
export let current: u32 = 0;
export let currentSeq: u64 = 0;
export let sessionInner: usize = 0;
export let sessionInnerLen: usize = 0;
const NONCE = memory.data(12, 16);

// nonce = base XOR seq as 12 bytes big-endian (RFC 9180 §5.2 ComputeNonce).
function seqNonce(base: usize, seq: u64, out: usize): void {
  memory.copy(out, base, 12);
  store<u64>(out + 4, load<u64>(out + 4) ^ bswap<u64>(seq));
}

// Opens the SessionRequest `p..p+len` in place for program `handle` (SPEC §8.5.2, checks in
// the order the SPEC lists). Leaves the inner request at sessionInner/sessionInnerLen.
export function openSessionRequest(handle: u32, p: usize, len: usize): u32 {
  if (len > REQUEST_MAX) return err(TOO_LARGE, Q_CT); // step 1, §13
  if (len < 9) return err(TRUNCATED, Q_MAGIC);
  if (len < 25) return err(TRUNCATED, Q_ID);
  if (len < HEADER_LEN) return err(TRUNCATED, Q_SEQ);
  if (len < HEADER_LEN + 16) return err(BAD_LENGTH, Q_CT);
  if (<u32>load<u8>(p) != keyId) return err(KEY_ID, Q_KEY_ID); // step 2
  const seq = bswap<u64>(load<u64>(p + 25));
  if (seq == 0) return err(BAD_VALUE, Q_SEQ); // step 3
  // Step 4: the live session with this id (ids compared in constant time; the scan is full).
  const now = host.now();
  let found: i32 = -1;
  for (let s: u32 = 0; s < SESSIONS_MAX; s++) {
    const e = slotAt(s);
    const hit = ctEqual(e + E_ID, p + 9, 16) & <i32>load<u32>(e, E_LIVE);
    found = hit != 0 ? <i32>s : found;
  }
  if (found < 0) return err(SESSION_UNKNOWN, Q_ID);
  const s = <u32>found;
  const e = slotAt(s);
  const opened = load<u64>(e, E_OPENED);
  if (now < opened || now - opened >= LIFETIME_NS) {
    kill(s); // expired (or a clock that went back): dead, wiped
    return err(SESSION_UNKNOWN, Q_ID);
  }
  const bound = load<u32>(e, E_PROGRAM);
  if (bound != handle) { // step 5: bound to its program
    if (slotOf(bound) >= 0) return err(REQUEST_AUTH, Q_ID);
    kill(s); // its program is gone: so is the session
    return err(SESSION_UNKNOWN, Q_ID);
  }
  if (!windowCheck(e, seq)) return err(REPLAY, Q_SEQ); // step 6, §8.5.3
  // Step 7: ct with the request key, nonce base XOR seq, aad = the 33-byte header.
  seqNonce(e + E_REQ_NONCE, seq, NONCE);
  const ct = p + HEADER_LEN;
  const n = len - HEADER_LEN - 16;
  const ok = aeadOpen(e + E_REQ_KEY, NONCE, p, HEADER_LEN, ct, n, ct + n, ct) == 0;
  wipe(NONCE, 12);
  if (!ok) return err(REQUEST_AUTH, Q_CT);
  windowMark(e, seq);
  store<u64>(e, now, E_USED);
  current = s;
  currentSeq = seq;
  sessionInner = ct;
  sessionInnerLen = n;
  return 0;
}

// The single-shot response key and nonce (response_nonce XOR seq12) of the current request.
export function responseKeyOfCurrent(): usize { return slotAt(current) + E_RES_KEY; }
export function responseNonceOfCurrent(out: usize): void { seqNonce(slotAt(current) + E_RES_NONCE, currentSeq, out); }

// stream_key(seq), stream_nonce(seq) of the current request (SPEC §8.5.1) into keyOut/nonceOut.
export function streamKeysOfCurrent(keyOut: usize, nonceOut: usize): void {
  const prk = slotAt(current) + E_PRK;
  memory.copy(INFO, SESSION_STREAM_KEY, SESSION_STREAM_KEY_LEN);
  store<u64>(INFO + SESSION_STREAM_KEY_LEN, bswap<u64>(currentSeq));
  hkdfSha256Expand(prk, 32, INFO, SESSION_STREAM_KEY_LEN + 8, keyOut, 32);
  memory.copy(INFO, SESSION_STREAM_NONCE, SESSION_STREAM_NONCE_LEN);
  store<u64>(INFO + SESSION_STREAM_NONCE_LEN, bswap<u64>(currentSeq));
  hkdfSha256Expand(prk, 32, INFO, SESSION_STREAM_NONCE_LEN + 8, nonceOut, 12);
}

