// Trusted: opens encrypted requests (SPEC §8.1), refuses replays (§8.2), runs them on the
// accelerator and seals every response (§8.3) and stream chunk (§8.4). Request plaintext
// exists only here and in the accelerator.
import { wipe } from "./crypto/ct";
import { sha256 } from "./crypto/sha256";
import { hkdfSha256Extract, hkdfSha256Expand } from "./crypto/hkdf";
import { aeadSeal } from "./crypto/aead";
import * as wire from "./wire";
import {
  err, F_REQUEST, F_INNER, F_OUTPUT, KEY_ID, UNSUPPORTED_SUITE, REQUEST_AUTH, REPLAY, SCHEMA_VIOLATION,
  EGRESS_LIMIT, STREAM_DONE, ACCELERATOR_FAILED, ENTROPY_FAILED, WEIGHTS_INCOMPLETE, CAPACITY, BAD_VALUE,
  BAD_LENGTH, TOO_LARGE, STATE,
} from "./errors";
import { setupBaseR, open0, exportSecret, HPKE_CTX_SIZE } from "./hpke";
import { SK, PK, keyId } from "./trust";
import { Facts, MODE_GENERATE, MODE_TENSOR, readSpec, specName, specNameLen } from "./manifest";
import { facts, digest, isReady, manifestBase, tokenTable, slotOf, handleOf } from "./programs";
import { matchesSchema, listEnd } from "./tensors";
import { longestMatch, matchLen, sample, rngInit, rngWipe, RNG_SIZE } from "./generate";
import {
  REPLAY_RING, REPLAY_INDEX, REPLAY_WINDOW, TOKENS, TOKENS_SLOT, STREAMS_MAX, REQUEST_MAX, RESPONSE_MAX,
  PROMPT_MAX, arenaTake, arenaMark, arenaRewind,
} from "./layout";
import { REQUEST_INFO, REQUEST_INFO_LEN, RESPONSE_EXPORT, RESPONSE_EXPORT_LEN, STREAM_EXPORT, STREAM_EXPORT_LEN, KEY, KEY_LEN, NONCE, NONCE_LEN, SAMPLING_SEED, SAMPLING_SEED_LEN } from "./labels";
import * as host from "./imports";
import {
  isSessionRequest, openSessionRequest, sessionInner, sessionInnerLen, createSession, endSession, lastSession,
  responseKeyOfCurrent, responseNonceOfCurrent, streamKeysOfCurrent, HEADER_LEN as SESSION_HEADER_LEN,
} from "./session";
import { SESSION_EXPORT, SESSION_EXPORT_LEN } from "./labels";
import { F_SESSION_OPEN } from "./errors";

// SPEC §12.1 field ids.
const R_KEY_ID: u32 = F_REQUEST | 1, R_KEM = F_REQUEST | 2, R_KDF = F_REQUEST | 3, R_AEAD = F_REQUEST | 4,
  R_ENC = F_REQUEST | 5, R_CT = F_REQUEST | 6;
const I_MAGIC = F_INNER | 1, I_KIND = F_INNER | 2, I_INPUTS = F_INNER | 3, I_PROMPT = F_INNER | 3,
  I_MAX = F_INNER | 4, I_TEMP = F_INNER | 5, I_TOPK = F_INNER | 6, I_HAS_SEED = F_INNER | 7, I_SEED = F_INNER | 8;

// ---- SPEC §8.2 replay window: a ring of encs with a linear-probing index ----
// Index entries pack (home slot << 16) | (ring slot + 1); 0 is empty. Deletion shifts
// entries back (no tombstones), so probe chains stay as short as at load factor 1/2.
// Homes are keyed with a per-instance random key, so a client cannot aim encs at one chain.
let replayNext: u32 = 0;
let replayCount: u32 = 0;
const INDEX_SLOTS: u32 = REPLAY_WINDOW * 2;
const MASK: u32 = INDEX_SLOTS - 1;
const REPLAY_KEY = memory.data(32, 16);
const HOME_IN = memory.data(64, 16);
const HOME_OUT = memory.data(32, 16);
let replayKeyed = false;

// Variable time: inputs are public. (enc is sent in the clear; the key only spreads homes.)
function home(enc: usize): u32 {
  if (!replayKeyed) replayKeyed = host.entropy(REPLAY_KEY, 32); // a zero key stays correct, only less spread
  memory.copy(HOME_IN, REPLAY_KEY, 32);
  memory.copy(HOME_IN + 32, enc, 32);
  sha256(HOME_IN, 64, HOME_OUT);
  return load<u32>(HOME_OUT) & MASK;
}

@inline function entryAt(h: u32): u32 { return load<u32>(REPLAY_INDEX + <usize>h * 4); }
@inline function setEntry(h: u32, v: u32): void { store<u32>(REPLAY_INDEX + <usize>h * 4, v); }

// Returns -1 if `enc` is in the window, else its home (for replayRemember: hashed once).
function replayLookup(enc: usize): i32 {
  const k = home(enc);
  for (let h = k; ; h = (h + 1) & MASK) {
    const v = entryAt(h);
    if (v == 0) return <i32>k;
    if (memory.compare(REPLAY_RING + <usize>((v & 0xffff) - 1) * 32, enc, 32) == 0) return -1;
  }
  return -1;
}

// Removes the index entry of ring slot `slot`, then shifts later entries of the cluster back.
function replayForget(slot: u32): void {
  let i = home(REPLAY_RING + <usize>slot * 32);
  while ((entryAt(i) & 0xffff) != slot + 1) i = (i + 1) & MASK;
  let j = i;
  while (true) {
    j = (j + 1) & MASK;
    const v = entryAt(j);
    if (v == 0) break;
    const k = v >> 16;
    // The entry at j may fill the hole at i unless its home lies cyclically in (i, j].
    const between = i <= j ? k > i && k <= j : k > i || k <= j;
    if (!between) {
      setEntry(i, v);
      i = j;
    }
  }
  setEntry(i, 0);
}

function replayRemember(enc: usize, k: u32): void {
  const slot = replayNext;
  if (replayCount == REPLAY_WINDOW) replayForget(slot); // evict the oldest
  else replayCount++;
  memory.copy(REPLAY_RING + <usize>slot * 32, enc, 32);
  let h = k;
  while (entryAt(h) != 0) h = (h + 1) & MASK;
  setEntry(h, (k << 16) | (slot + 1));
  replayNext = (slot + 1) % REPLAY_WINDOW;
}

// ---- opening (SPEC §8.1) ----
const CTX = memory.data(<i32>HPKE_CTX_SIZE, 16);
const INFO = memory.data(16 + 7 + 32, 16);
const SECRET = memory.data(32, 16);
const PRK = memory.data(32, 16);
const SALT = memory.data(64, 16);
export let innerPtr: usize = 0;
export let innerLen: usize = 0;
let encPtr: usize = 0;

// Opens `p..p+len` in place for program slot `i`. Leaves the inner request at innerPtr and
// the response secret (labelled by `exportLabel`) in SECRET.
// With `export2Label`, a second exported secret (SPEC §8.5.1 session_secret) goes to `export2Out`.
function openRequest(
  i: u32, p: usize, len: usize, exportLabel: usize, exportLabelLen: usize,
  export2Label: usize = 0, export2LabelLen: usize = 0, export2Out: usize = 0,
): u32 {
  if (len > REQUEST_MAX) return err(TOO_LARGE, R_CT); // SPEC §13
  wire.begin(p, len);
  const kid = wire.u8r(R_KEY_ID);
  const kem = wire.u16r(R_KEM), kdf = wire.u16r(R_KDF), aead = wire.u16r(R_AEAD);
  const enc = wire.bytesAt(32, R_ENC);
  if (!wire.failed() && wire.remaining() < 16) wire.fail(BAD_LENGTH, R_CT);
  if (wire.failed()) return wire.errorCode();
  if (kid != keyId) return err(KEY_ID, R_KEY_ID); // §8.1
  if (kem != 0x0020) return err(UNSUPPORTED_SUITE, R_KEM);
  if (kdf != 0x0001) return err(UNSUPPORTED_SUITE, R_KDF);
  if (aead != 0x0003) return err(UNSUPPORTED_SUITE, R_AEAD);
  const encHome = replayLookup(enc);
  if (encHome < 0) return err(REPLAY, R_ENC); // §8.2
  // info = "veil request v1\0" ‖ hdr ‖ program_digest
  memory.copy(INFO, REQUEST_INFO, REQUEST_INFO_LEN);
  memory.copy(INFO + REQUEST_INFO_LEN, p, 7);
  memory.copy(INFO + REQUEST_INFO_LEN + 7, digest(i), 32);
  const ct = p + 39;
  const ctLen = len - 39;
  let ok = setupBaseR(CTX, enc, SK, PK, INFO, REQUEST_INFO_LEN + 39);
  ok = ok && open0(CTX, 0, 0, ct, ctLen, ct); // RFC 9180 §5.2, aad empty, in place
  if (ok) exportSecret(CTX, exportLabel, exportLabelLen, SECRET, 32); // RFC 9458 §4.4
  if (ok && export2Out != 0) exportSecret(CTX, export2Label, export2LabelLen, export2Out, 32); // RFC 9180 §5.3
  wipe(CTX, HPKE_CTX_SIZE);
  if (!ok) return err(REQUEST_AUTH, R_CT);
  replayRemember(enc, <u32>encHome);
  encPtr = enc;
  innerPtr = ct;
  innerLen = ctLen - 16;
  return 0;
}

// RFC 9458 §4.4: response_nonce from entropy; salt = enc ‖ response_nonce;
// prk = Extract(salt, secret); key = Expand(prk, "key", 32); nonce = Expand(prk, "nonce", 12).
// Writes the response nonce to `nonceOut` and the AEAD key and nonce to keyOut/nonce12Out.
function responseKeys(nonceOut: usize, keyOut: usize, nonce12Out: usize): bool {
  if (!host.entropy(nonceOut, 32)) return false;
  memory.copy(SALT, encPtr, 32);
  memory.copy(SALT + 32, nonceOut, 32);
  hkdfSha256Extract(SALT, 64, SECRET, 32, PRK);
  hkdfSha256Expand(PRK, 32, KEY, KEY_LEN, keyOut, 32);
  hkdfSha256Expand(PRK, 32, NONCE, NONCE_LEN, nonce12Out, 12);
  wipe(PRK, 32);
  wipe(SECRET, 32);
  return true;
}

// SPEC §13 RESPONSE_MAX (TOO_LARGE) and the §5.5 egress limit (EGRESS_LIMIT) bound the
// plaintext of a response, or of a stream's chunks in sum.
function responseOver(f: Facts, plain: u64): u32 {
  if (plain > <u64>RESPONSE_MAX) return err(TOO_LARGE, F_OUTPUT);
  if (f.egress != 0 && plain > <u64>f.egress) return err(EGRESS_LIMIT, F_OUTPUT);
  return 0;
}

const RKEY = memory.data(32, 16);
const RNONCE = memory.data(12, 16);
export let outPtr: usize = 0;
export let outLen: usize = 0;

// ---- how the current request is opened and its response sealed: §8.1/§8.3 or §8.5.2 ----
let sessionMode = false;
let sessionHeader: usize = 0;

// SPEC §8.5.2: bytes 1..8 decide the framing; either way the inner request ends up at innerPtr.
function openAny(handle: u32, i: u32, p: usize, len: usize, exportLabel: usize, exportLabelLen: usize): u32 {
  sessionMode = isSessionRequest(p, len);
  if (!sessionMode) return openRequest(i, p, len, exportLabel, exportLabelLen);
  const e = openSessionRequest(handle, p, len);
  if (e != 0) return e;
  sessionHeader = p;
  innerPtr = sessionInner;
  innerLen = sessionInnerLen;
  return 0;
}

// Bytes before the sealed plaintext: the response nonce (§8.3), none in a session (§8.5.2).
@inline function responsePrefix(): usize { return sessionMode ? 0 : 32; }

// Seals the `plainLen` bytes at out + responsePrefix() in place, tag after them. §8.3: keys
// from a fresh response nonce written at `out`; §8.5.2: the session's response key, nonce
// response_nonce XOR seq, aad = the request header. False if entropy failed.
function sealResponse(out: usize, plainLen: usize): bool {
  const body = out + responsePrefix();
  if (sessionMode) {
    responseNonceOfCurrent(RNONCE);
    aeadSeal(responseKeyOfCurrent(), RNONCE, sessionHeader, SESSION_HEADER_LEN, body, plainLen, body, body + plainLen);
    wipe(RNONCE, 12);
    return true;
  }
  if (!responseKeys(out, RKEY, RNONCE)) return false;
  aeadSeal(RKEY, RNONCE, 0, 0, body, plainLen, body, body + plainLen);
  wipe(RKEY, 32);
  wipe(RNONCE, 12);
  return true;
}

// ---- tensor mode ----

function runTensors(i: u32, f: Facts): u32 {
  const base = manifestBase(i);
  wire.begin(innerPtr, innerLen);
  wire.magic(wire.kind(0x52, 0x51), I_MAGIC); // "RQ"
  const kind = wire.u8r(I_KIND);
  let e: u32 = wire.failed() ? wire.errorCode() : 0;
  if (e == 0 && kind != 1) e = err(SCHEMA_VIOLATION, I_KIND); // §7.4: a tensor program takes kind 1
  const inputs = innerPtr + 9;
  // §7.3: the inputs match the signed schema exactly, with nothing after them.
  if (e == 0 && (!matchesSchema(inputs, innerLen - 9, base + f.inputsOff) || listEnd != innerPtr + innerLen)) {
    e = err(SCHEMA_VIOLATION, I_INPUTS);
  }
  if (e != 0) {
    wipe(innerPtr, innerLen);
    return e;
  }
  const a = host.run(handleOf(i), inputs, innerLen - 9);
  wipe(innerPtr, innerLen);
  if (a != 0) return err(ACCELERATOR_FAILED, F_OUTPUT);
  const o = host.runOutput, on = host.runOutputLen;
  // §7.3: outputs are validated before they are sealed.
  const valid = matchesSchema(o, on, base + f.outputsOff) && listEnd == o + on;
  if (!valid) {
    wipe(o, on);
    return err(ACCELERATOR_FAILED, F_OUTPUT);
  }
  const plainLen: usize = 9 + on;
  const over = responseOver(f, <u64>plainLen);
  if (over != 0) {
    wipe(o, on);
    return over;
  }
  const prefix = responsePrefix();
  const out = arenaTake(prefix + plainLen + 16);
  if (out == 0) {
    wipe(o, on);
    return err(TOO_LARGE, F_OUTPUT);
  }
  // InnerResponse kind 1 (SPEC §7.6), sealed in place.
  const body = out + prefix;
  wire.wbegin(body);
  wire.wmagic(wire.kind(0x52, 0x50)); // "RP"
  wire.w8(1);
  memory.copy(body + 9, o, on);
  wipe(o, on);
  if (!sealResponse(out, plainLen)) {
    wipe(body, plainLen);
    return err(ENTROPY_FAILED, 0);
  }
  outPtr = out;
  outLen = prefix + plainLen + 16;
  return 0;
}

// ---- generate mode: streams (SPEC §7.5, §8.4) ----
const STREAM_SIZE: usize = 256;
const STREAMS = memory.data(<i32>(STREAM_SIZE * 16), 16);
const T_STATE: usize = 0, T_PROGRAM: usize = 4, T_COUNTER: usize = 8, T_TOKENS: usize = 12,
  T_GENERATED: usize = 16, T_MAX: usize = 20, T_TEMP: usize = 24, T_TOPK: usize = 28, T_KEY: usize = 32,
  T_NONCE: usize = 64, T_EGRESS: usize = 76, T_RESPONSE_NONCE: usize = 80, T_RNG: usize = 112, T_STOP: usize = 228,
  T_GEN: usize = 232, T_LAST: usize = 240;
// A stream the host has not advanced for this long may be reclaimed for a new one, so
// abandoned streams cannot hold all STREAMS_MAX slots (SPEC §8.4).
const STREAM_IDLE_NS: u64 = 60_000_000_000;
const FREE: u32 = 0, NONCE_PENDING: u32 = 1, RUNNING: u32 = 2, FINISHED: u32 = 3;

@inline function streamAt(s: u32): usize { return STREAMS + <usize>s * STREAM_SIZE; }
@inline function tokensOf(s: u32): usize { return TOKENS + <usize>s * TOKENS_SLOT; }
let streamGen: u32 = 0;
let lastError: u32 = 0;

// SPEC §7.5: parses a GenerateRequest into stream slot `s` and tokenizes its prompt.
function startGenerate(i: u32, f: Facts, s: u32): u32 {
  const st = streamAt(s);
  const base = manifestBase(i);
  wire.begin(innerPtr, innerLen);
  wire.magic(wire.kind(0x52, 0x51), I_MAGIC); // "RQ"
  const kind = wire.u8r(I_KIND);
  if (!wire.failed() && kind != 2) wire.fail(SCHEMA_VIOLATION, I_KIND); // a generate program takes kind 2
  const prompt = wire.vec(1, <u32>PROMPT_MAX, I_PROMPT);
  const promptLen = wire.vecLen;
  const maxNew = wire.u32r(I_MAX);
  if (!wire.failed() && (maxNew < 1 || maxNew > f.maxNew)) wire.fail(BAD_VALUE, I_MAX);
  const temp = wire.u32r(I_TEMP);
  if (!wire.failed() && temp > 10000) wire.fail(BAD_VALUE, I_TEMP);
  const topK = wire.u32r(I_TOPK);
  if (!wire.failed() && topK > f.vocabSize) wire.fail(BAD_VALUE, I_TOPK);
  const hasSeed = wire.u8r(I_HAS_SEED);
  if (!wire.failed() && hasSeed > 1) wire.fail(BAD_VALUE, I_HAS_SEED);
  const seedAt = wire.bytesAt(8, I_SEED);
  if (!wire.failed() && hasSeed == 0 && load<u64>(seedAt) != 0) wire.fail(BAD_VALUE, I_SEED); // MUST be 0
  wire.finish(F_INNER);
  if (wire.failed()) return wire.errorCode();
  // Tokenize by greedy longest match; every byte must be covered (SPEC §7.5).
  const toks = tokensOf(s);
  let n: u32 = 0;
  let q = prompt;
  const end = prompt + promptLen;
  while (q < end) {
    const t = longestMatch(q, end - q, base, tokenTable(i), f.vocabSize);
    if (t < 0) {
      wipe(toks, <usize>n * 4);
      return err(SCHEMA_VIOLATION, I_PROMPT);
    }
    store<u32>(toks + <usize>n * 4, <u32>t);
    n++;
    q += matchLen;
  }
  // Keep the last context_length tokens.
  if (n > f.contextLength) {
    const drop = n - f.contextLength;
    memory.copy(toks, toks + <usize>drop * 4, <usize>f.contextLength * 4);
    wipe(toks + <usize>f.contextLength * 4, <usize>drop * 4);
    n = f.contextLength;
  }
  store<u32>(st, n, T_TOKENS);
  store<u32>(st, 0, T_GENERATED);
  store<u32>(st, maxNew, T_MAX);
  store<u32>(st, temp, T_TEMP);
  store<u32>(st, topK, T_TOPK);
  store<u32>(st, 0, T_STOP);
  // Sampling randomness: a seeded request is reproducible (SPEC §7.5).
  const key = memory.data(32, 16);
  if (hasSeed == 1) {
    const seeded = memory.data(<i32>(SAMPLING_SEED_LEN + 8), 16);
    memory.copy(seeded, SAMPLING_SEED, SAMPLING_SEED_LEN);
    memory.copy(seeded + SAMPLING_SEED_LEN, seedAt, 8);
    sha256(seeded, SAMPLING_SEED_LEN + 8, key);
  } else if (!host.entropy(key, 32)) return err(ENTROPY_FAILED, 0);
  rngInit(st + T_RNG, key);
  wipe(key, 32);
  wipe(innerPtr, innerLen);
  return 0;
}

// One decoding step for stream `s`: returns the new token, or -1 when decoding stopped
// (T_STOP says why) or failed (lastError != 0).
function step(i: u32, f: Facts, s: u32): i32 {
  const st = streamAt(s);
  lastError = 0;
  if (load<u32>(st, T_GENERATED) >= load<u32>(st, T_MAX)) {
    store<u32>(st, 2, T_STOP); // limit
    return -1;
  }
  const base = manifestBase(i);
  const toks = tokensOf(s);
  const n = load<u32>(st, T_TOKENS);
  readSpec(base + f.inputsOff + 1);
  const nameLen = specNameLen;
  const len: usize = 1 + 1 + nameLen + 2 + 8 + <usize>n * 8;
  const mark = arenaMark();
  const p = arenaTake(len);
  if (p == 0) {
    lastError = err(TOO_LARGE, 0);
    return -1;
  }
  // TensorList: one int64 tensor [1, n] (SPEC §5.3, §7.2)
  wire.wbegin(p);
  wire.w8(1);
  wire.w8(<u32>nameLen);
  wire.wbytes(specName, nameLen);
  wire.w8(7);
  wire.w8(2);
  wire.w32(1);
  wire.w32(n);
  const data = p + 12 + nameLen; // after count, name, dtype, rank and two dims
  for (let k: u32 = 0; k < n; k++) store<u64>(data + <usize>k * 8, <u64>load<u32>(toks + <usize>k * 4));
  const a = host.run(handleOf(i), p, len);
  wipe(p, len);
  if (a != 0) {
    arenaRewind(mark);
    lastError = err(ACCELERATOR_FAILED, F_OUTPUT);
    return -1;
  }
  const o = host.runOutput, on = host.runOutputLen;
  // SPEC §7.3 and §5.3: float32 [1, n, vocab], validated before use.
  let ok = matchesSchema(o, on, base + f.outputsOff) && listEnd == o + on;
  const dims = ok ? o + 4 + <usize>load<u8>(o + 1) : 0; // after count, name, dtype, rank
  // SPEC §5.3: n positions when the program declares every position, else exactly 1.
  const positions = ok ? bswap<u32>(load<u32>(dims + 4)) : 0;
  const outDims = readSpec(base + f.outputsOff + 1);
  const lastOnly = bswap<u32>(load<u32>(outDims + 12)) == 1; // the second dim's max
  ok = ok && positions == (lastOnly ? 1 : n);
  let tok: u32 = 0;
  if (ok) {
    const logits = dims + 12 + (<usize>positions - 1) * <usize>f.vocabSize * 4;
    tok = sample(logits, f.vocabSize, load<u32>(st, T_TEMP), load<u32>(st, T_TOPK), st + T_RNG);
  }
  arenaRewind(mark); // wipes the logits
  if (!ok) {
    lastError = err(ACCELERATOR_FAILED, F_OUTPUT);
    return -1;
  }
  if (tok == f.endToken) {
    store<u32>(st, 1, T_STOP); // end token, not emitted
    return -1;
  }
  if (n == f.contextLength) {
    memory.copy(toks, toks + 4, (<usize>n - 1) * 4); // slide the context window
    store<u32>(toks + (<usize>n - 1) * 4, tok);
  } else {
    store<u32>(toks + <usize>n * 4, tok);
    store<u32>(st, n + 1, T_TOKENS);
  }
  store<u32>(st, load<u32>(st, T_GENERATED) + 1, T_GENERATED);
  return <i32>tok;
}

// Appends token `t`'s bytes at `dst`; returns its length.
function tokenBytes(i: u32, f: Facts, t: u32, dst: usize): usize {
  const tok = manifestBase(i) + <usize>load<u32>(tokenTable(i) + <usize>t * 4);
  const len = <usize>load<u8>(tok);
  memory.copy(dst, tok + 1, len);
  return len;
}

function freeStream(s: u32): void {
  const st = streamAt(s);
  wipe(tokensOf(s), <usize>load<u32>(st, T_TOKENS) * 4);
  rngWipe(st + T_RNG);
  wipe(st, STREAM_SIZE);
}

function takeStream(): i32 {
  for (let s: u32 = 0; s < STREAMS_MAX; s++) if (load<u32>(streamAt(s), T_STATE) == FREE) return <i32>s;
  const t = host.now();
  for (let s: u32 = 0; s < STREAMS_MAX; s++) {
    if (t - load<u64>(streamAt(s), T_LAST) > STREAM_IDLE_NS) {
      freeStream(s);
      return <i32>s;
    }
  }
  return -1;
}

// ---- entry points (SPEC §11.2) ----

function programFor(handle: u32): i32 {
  const i = slotOf(handle);
  return i;
}

// infer(program, request) → sealed response (SPEC §8.1–§8.3). Result at outPtr/outLen.
export function infer(handle: u32, p: usize, len: usize): u32 {
  const i = programFor(handle);
  if (i < 0) return err(17, 0); // NO_PROGRAM
  if (!isReady(<u32>i)) return err(WEIGHTS_INCOMPLETE, 0); // SPEC §9
  const f = facts(<u32>i);
  // A generate request needs a stream slot: take it before the request is opened (and so
  // remembered for replay), so a refusal for capacity leaves the request usable.
  const s = f.mode == MODE_GENERATE ? takeStream() : 0;
  if (s < 0) return err(CAPACITY, 0);
  let e = openAny(handle, <u32>i, p, len, RESPONSE_EXPORT, RESPONSE_EXPORT_LEN);
  if (e != 0) return e;
  if (f.mode == MODE_TENSOR) {
    e = runTensors(<u32>i, f);
    wipe(SECRET, 32);
    return e;
  }
  // Generate mode, whole completion in one response (SPEC §7.6 kind 2).
  e = startGenerate(<u32>i, f, <u32>s);
  if (e != 0) {
    wipe(innerPtr, innerLen);
    wipe(SECRET, 32);
    freeStream(<u32>s);
    return e;
  }
  const st = streamAt(<u32>s);
  const cap: usize = 9 + 4 + <usize>load<u32>(st, T_MAX) * 64 + 5;
  const prefix = responsePrefix();
  const out = arenaTake(prefix + cap + 16);
  if (out == 0) {
    wipe(SECRET, 32);
    freeStream(<u32>s);
    return err(TOO_LARGE, 0);
  }
  const body = out + prefix;
  const text = body + 13;
  let textLen: usize = 0;
  let count: u32 = 0;
  while (true) {
    const t = step(<u32>i, f, <u32>s);
    if (t < 0) break;
    textLen += tokenBytes(<u32>i, f, <u32>t, text + textLen);
    count++;
  }
  const stop = load<u32>(st, T_STOP);
  freeStream(<u32>s);
  const plainLen: usize = 13 + textLen + 5;
  const e2 = lastError != 0 ? lastError : responseOver(f, <u64>plainLen);
  if (e2 != 0) {
    wipe(text, textLen);
    wipe(SECRET, 32);
    return e2;
  }
  wire.wbegin(body);
  wire.wmagic(wire.kind(0x52, 0x50)); // "RP"
  wire.w8(2);
  wire.w32(<u32>textLen);
  wire.wbegin(text + textLen);
  wire.w32(count);
  wire.w8(stop);
  if (!sealResponse(out, plainLen)) {
    wipe(body, plainLen);
    wipe(SECRET, 32);
    return err(ENTROPY_FAILED, 0);
  }
  outPtr = out;
  outLen = prefix + plainLen + 16;
  return 0;
}

// infer-begin(program, request) → stream handle (SPEC §8.4). Handle in `outStream`.
export let outStream: u32 = 0;
export function inferBegin(handle: u32, p: usize, len: usize): u32 {
  const i = programFor(handle);
  if (i < 0) return err(17, 0); // NO_PROGRAM
  if (!isReady(<u32>i)) return err(WEIGHTS_INCOMPLETE, 0);
  const f = facts(<u32>i);
  if (f.mode != MODE_GENERATE) return err(SCHEMA_VIOLATION, I_KIND); // streams are for generate programs
  const s = takeStream();
  if (s < 0) return err(CAPACITY, 0);
  let e = openAny(handle, <u32>i, p, len, STREAM_EXPORT, STREAM_EXPORT_LEN);
  if (e != 0) return e;
  e = startGenerate(<u32>i, f, <u32>s);
  const st = streamAt(<u32>s);
  // SPEC §8.5.2: a session stream is keyed by stream_key(seq), stream_nonce(seq), no response nonce.
  if (e == 0 && sessionMode) streamKeysOfCurrent(st + T_KEY, st + T_NONCE);
  else if (e == 0 && !responseKeys(st + T_RESPONSE_NONCE, st + T_KEY, st + T_NONCE)) e = err(ENTROPY_FAILED, 0);
  if (e != 0) {
    wipe(innerPtr, innerLen);
    wipe(SECRET, 32);
    freeStream(<u32>s);
    return e;
  }
  streamGen = (streamGen + 1) & 0x0fffffff;
  store<u32>(st, sessionMode ? RUNNING : NONCE_PENDING, T_STATE); // §8.5.2: no nonce record in a session
  store<u32>(st, handle, T_PROGRAM);
  store<u32>(st, streamGen, T_GEN);
  store<u64>(st, host.now(), T_LAST);
  outStream = <u32>s | (streamGen << 4);
  return 0;
}

function streamOf(h: u32): i32 {
  const s = h & 15;
  if (s >= STREAMS_MAX) return -1;
  const st = streamAt(s);
  if (load<u32>(st, T_STATE) == FREE || load<u32>(st, T_GEN) != (h >> 4)) return -1;
  return <i32>s;
}

// infer-next(stream) → the response nonce first, then one StreamRecord (SPEC §8.4).
export function inferNext(h: u32): u32 {
  const s = streamOf(h);
  if (s < 0) return err(STREAM_DONE, 0);
  const st = streamAt(<u32>s);
  store<u64>(st, host.now(), T_LAST);
  if (load<u32>(st, T_STATE) == NONCE_PENDING) {
    outPtr = arenaTake(32);
    if (outPtr == 0) return err(TOO_LARGE, 0);
    memory.copy(outPtr, st + T_RESPONSE_NONCE, 32);
    outLen = 32;
    store<u32>(st, RUNNING, T_STATE);
    return 0;
  }
  const i = slotOf(load<u32>(st, T_PROGRAM));
  if (i < 0 || !isReady(<u32>i)) {
    freeStream(<u32>s);
    return err(17, 0); // NO_PROGRAM: unloaded mid-stream
  }
  const f = facts(<u32>i);
  // StreamChunk: magic ‖ u32 tokens ‖ text<0..2^24-33> ‖ u8 stop (SPEC §8.4)
  const cap: usize = 8 + 4 + 4 + <usize>f.perChunk * 64 + 1;
  const rec = arenaTake(4 + cap + 16);
  if (rec == 0) return err(TOO_LARGE, 0);
  const body = rec + 4;
  const text = body + 16;
  let textLen: usize = 0;
  let count: u32 = 0;
  let t: i32 = 0;
  while (count < f.perChunk) {
    t = step(<u32>i, f, <u32>s);
    if (t < 0) break;
    textLen += tokenBytes(<u32>i, f, <u32>t, text + textLen);
    count++;
  }
  if (t < 0 && lastError != 0) {
    wipe(text, textLen);
    freeStream(<u32>s);
    return lastError;
  }
  // A chunk that reached perChunk tokens is final only if no further token may follow.
  let stop = load<u32>(st, T_STOP);
  if (stop == 0 && load<u32>(st, T_GENERATED) >= load<u32>(st, T_MAX)) stop = 2;
  const plainLen: usize = 16 + textLen + 1;
  const egress = <u64>load<u32>(st, T_EGRESS) + <u64>plainLen; // SPEC §13: the sum of chunk plaintexts
  const over = responseOver(f, egress);
  if (over != 0) {
    wipe(text, textLen);
    freeStream(<u32>s);
    return over;
  }
  store<u32>(st, <u32>egress, T_EGRESS);
  wire.wbegin(body);
  wire.wmagic(wire.kind(0x52, 0x43)); // "RC"
  wire.w32(count);
  wire.w32(<u32>textLen);
  wire.wbegin(text + textLen);
  wire.w8(stop);
  // nonce = N XOR (counter as 11-byte big-endian ‖ final flag)
  const nonce = memory.data(12, 16);
  const counter = load<u32>(st, T_COUNTER);
  memory.copy(nonce, st + T_NONCE, 12);
  store<u32>(nonce + 7, load<u32>(nonce + 7) ^ bswap<u32>(counter));
  store<u8>(nonce + 11, load<u8>(nonce + 11) ^ <u8>(stop != 0 ? 1 : 0));
  aeadSeal(st + T_KEY, nonce, 0, 0, body, plainLen, body, body + plainLen);
  store<u32>(rec, bswap<u32>(<u32>(plainLen + 16)));
  outPtr = rec;
  outLen = 4 + plainLen + 16;
  store<u32>(st, counter + 1, T_COUNTER);
  if (stop != 0) freeStream(<u32>s);
  return 0;
}

// infer-cancel(stream): ends a stream early and wipes its state.
export function inferCancel(h: u32): u32 {
  const s = streamOf(h);
  if (s < 0) return err(STREAM_DONE, 0);
  freeStream(<u32>s);
  return 0;
}

// session-open(program, request) → encapsulated response carrying a SessionAccept (SPEC §8.5.1).
const SESSION_SECRET = memory.data(32, 16);
export function sessionOpen(handle: u32, p: usize, len: usize): u32 {
  const i = programFor(handle);
  if (i < 0) return err(17, 0); // NO_PROGRAM
  if (!isReady(<u32>i)) return err(WEIGHTS_INCOMPLETE, 0);
  sessionMode = false;
  let e = openRequest(<u32>i, p, len, RESPONSE_EXPORT, RESPONSE_EXPORT_LEN, SESSION_EXPORT, SESSION_EXPORT_LEN, SESSION_SECRET);
  if (e != 0) return e;
  // SessionOpen is exactly the 8-byte magic "veil" "SO" 0x0001.
  wire.begin(innerPtr, innerLen);
  wire.magic(wire.kind(0x53, 0x4f), F_SESSION_OPEN | 1); // "SO"
  wire.finish(F_SESSION_OPEN);
  e = wire.failed() ? wire.errorCode() : 0;
  wipe(innerPtr, innerLen);
  const out = e == 0 ? arenaTake(32 + 32 + 16) : 0;
  if (e == 0 && out == 0) e = err(TOO_LARGE, 0);
  if (e == 0) e = createSession(handle, encPtr, SESSION_SECRET, out + 32);
  wipe(SESSION_SECRET, 32);
  if (e != 0) {
    wipe(SECRET, 32);
    return e;
  }
  if (!sealResponse(out, 32)) { // §8.3 with the SessionAccept as plaintext
    endSession(lastSession);
    wipe(out, 32 + 32);
    wipe(SECRET, 32);
    return err(ENTROPY_FAILED, 0);
  }
  outPtr = out;
  outLen = 32 + 32 + 16;
  return 0;
}
