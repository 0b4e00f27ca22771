// Sessions (SPEC §8.5), the client side: open a session with one HPKE request, then seal session
// requests and open their responses and streams with symmetric keys. Trust status: runs on the
// data owner's machine (it holds session keys and plaintext); the untrusted host only relays
// the bytes. An implementation independent of the loader's, on node:crypto and @noble/hashes.
import { createCipheriv, createDecipheriv } from "node:crypto";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { ascii, concat, wipe } from "./bytes.ts";
import { LIMITS } from "./constants.ts";
import { VeilFormatError } from "./errors.ts";
import { decodeInnerResponse, encodeInnerRequest, type InnerRequest, type InnerResponse } from "./inner.ts";
import { loaderKeyFromReport, sealRequest, StreamOpener, type LoaderKey, type ResponseContext } from "./request.ts";
import { Reader, Writer } from "./wire.ts";

/** §8.5.2: key_id ‖ "veil" "SQ" 0x0001 ‖ session_id[16] ‖ u64 seq. */
export const SESSION_HEADER_LEN = 33;
export const SESSION_ID_LEN = 16;
/** §8.5.1: a SessionAccept is 32 bytes. */
export const SESSION_ACCEPT_LEN = 32;
const SESSION_MAGIC = concat(ascii("veilSQ"), Uint8Array.of(0, 1));
const SESSION_LABEL = ascii("veil session v1");
const SEQ_MAX = 2n ** 64n - 1n;
const TAG = 16;

export interface SessionAccept {
  sessionId: Uint8Array;
  lifetimeSeconds: number;
  window: number;
}

/** §8.5.1: the SessionOpen inner request, exactly the 8-byte magic. */
export const encodeSessionOpen = (): Uint8Array => new Writer("session_open").magic("SO").finish();

/** §8.5.1, strict. */
export function decodeSessionOpen(bytes: Uint8Array): void {
  const r = new Reader(bytes, "session_open");
  r.magic("SO");
  r.end();
}

/** §8.5.1, strict: magic, 16-byte id, lifetime, window, nothing after. */
export function decodeSessionAccept(bytes: Uint8Array): SessionAccept {
  const r = new Reader(bytes, "session_accept");
  r.magic("SA");
  const sessionId = r.fixed("session_id", SESSION_ID_LEN);
  const lifetimeSeconds = r.u32("lifetime_seconds");
  const window = r.u32("window");
  if (lifetimeSeconds === 0) r.fail("BAD_VALUE", "lifetime_seconds", "0 is no lifetime");
  if (window === 0) r.fail("BAD_VALUE", "window", "0 is no window");
  r.end();
  return { sessionId, lifetimeSeconds, window };
}

export function encodeSessionAccept(a: SessionAccept): Uint8Array {
  return new Writer("session_accept").magic("SA").fixed(a.sessionId, SESSION_ID_LEN, "session_id").u32(a.lifetimeSeconds, "lifetime_seconds").u32(a.window, "window").finish();
}

/** The §8.5.1 key schedule from session_secret, enc and session_id. */
export interface SessionKeys {
  prk: Uint8Array;
  requestKey: Uint8Array;
  requestNonce: Uint8Array;
  responseKey: Uint8Array;
  responseNonce: Uint8Array;
}

export function sessionKeys(sessionSecret: Uint8Array, enc: Uint8Array, sessionId: Uint8Array): SessionKeys {
  const prk = extract(sha256, sessionSecret, concat(enc, sessionId));
  return {
    prk,
    requestKey: expand(sha256, prk, ascii("veil session request key"), 32),
    requestNonce: expand(sha256, prk, ascii("veil session request nonce"), 12),
    responseKey: expand(sha256, prk, ascii("veil session response key"), 32),
    responseNonce: expand(sha256, prk, ascii("veil session response nonce"), 12),
  };
}

const u64be = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v);
  return b;
};

/** §8.5.1: stream_key(seq), stream_nonce(seq). */
export function sessionStreamKeys(prk: Uint8Array, seq: bigint): { key: Uint8Array; nonce: Uint8Array } {
  return {
    key: expand(sha256, prk, concat(ascii("veil session stream key"), u64be(seq)), 32),
    nonce: expand(sha256, prk, concat(ascii("veil session stream nonce"), u64be(seq)), 12),
  };
}

/** RFC 9180 §5.2 ComputeNonce: base XOR seq as 12 bytes big-endian. */
export function seqNonce(base: Uint8Array, seq: bigint): Uint8Array {
  const n = base.slice();
  const dv = new DataView(n.buffer);
  dv.setBigUint64(4, dv.getBigUint64(4) ^ seq);
  return n;
}

/** aad ‖ ChaCha20-Poly1305(pt, aad) ‖ tag in one buffer: the request is its header then its ct. */
function aeadSealAfterAad(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG });
  c.setAAD(aad, { plaintextLength: pt.length });
  const out = new Uint8Array(aad.length + pt.length + TAG);
  out.set(aad, 0);
  const a = c.update(pt);
  out.set(a, aad.length);
  const b = c.final(); // empty for a stream cipher; kept in case
  out.set(b, aad.length + a.length);
  out.set(c.getAuthTag(), aad.length + a.length + b.length);
  return out;
}

/** Authenticates before releasing anything: undefined if the tag does not verify. */
function aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array | undefined {
  if (ct.length < TAG) return undefined;
  const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG });
  d.setAAD(aad, { plaintextLength: ct.length - TAG });
  d.setAuthTag(ct.subarray(ct.length - TAG));
  const a = d.update(ct.subarray(0, ct.length - TAG));
  try {
    d.final();
  } catch {
    a.fill(0);
    return undefined;
  }
  return new Uint8Array(a.buffer, a.byteOffset, a.length);
}

/** §8.5.2: a SessionRequest's header, parsed strictly (the ct is the rest, ≥ 16 bytes). */
export interface SessionRequestHeader {
  keyId: number;
  sessionId: Uint8Array;
  seq: bigint;
  ct: Uint8Array;
}

export function decodeSessionRequest(bytes: Uint8Array): SessionRequestHeader {
  const r = new Reader(bytes, "session_request");
  if (bytes.length > LIMITS.REQUEST_MAX) r.fail("TOO_LARGE", "ct", `${bytes.length} bytes exceed REQUEST_MAX ${LIMITS.REQUEST_MAX}`);
  const keyId = r.u8("key_id");
  r.magic("SQ");
  const sessionId = r.fixed("session_id", SESSION_ID_LEN);
  const seq = r.u64("seq");
  if (seq === 0n) r.fail("BAD_VALUE", "seq", "0 is not a sequence number");
  if (r.remaining < TAG) r.fail("BAD_LENGTH", "ct", `${r.remaining} bytes is shorter than the 16-byte tag`);
  const ct = r.fixed("ct", r.remaining);
  r.end();
  return { keyId, sessionId, seq, ct };
}

/** §8.5.2: bytes 1..8 are the SessionRequest magic exactly for a session request. */
export const isSessionRequest = (bytes: Uint8Array): boolean =>
  bytes.length >= 9 && SESSION_MAGIC.every((b, i) => bytes[1 + i] === b);

export interface SealedSessionRequest {
  bytes: Uint8Array;
  seq: bigint;
  /** Opens the single-shot response to this request (§8.5.2). */
  openResponse(bytes: Uint8Array): InnerResponse;
  /** An opener for this request's stream (§8.5.2: no response nonce; records from the first infer-next). */
  openStream(): StreamOpener;
}

/**
 * A client's open session (§8.5). Holds its keys until `close()`, which wipes them. Not
 * re-entrant across processes; sequence numbers are handed out in order from 1.
 */
export class ClientSession {
  private nextSeq = 1n;
  private closed = false;
  /** Monotonic milliseconds after which the session must not be used (§8.5.1). */
  readonly expiresAtMs: number;

  constructor(
    readonly keyId: number,
    readonly accept: SessionAccept,
    private readonly keys: SessionKeys,
    openedAtMs: number,
  ) {
    // A margin of one minute, so a request sent just before the end does not arrive after it.
    this.expiresAtMs = openedAtMs + Math.max(0, accept.lifetimeSeconds - 60) * 1000;
  }

  get sessionId(): Uint8Array {
    return this.accept.sessionId;
  }

  /** False once closed, expired, or out of sequence numbers: open a new session. */
  usable(nowMs: number = performance.now()): boolean {
    return !this.closed && nowMs < this.expiresAtMs && this.nextSeq <= SEQ_MAX;
  }

  /** §8.5.2: seals one inner request under the next sequence number. */
  seal(request: InnerRequest | Uint8Array): SealedSessionRequest {
    if (this.closed) throw new VeilFormatError("STATE", "session_request", "", "the session is closed", "seal");
    if (this.nextSeq > SEQ_MAX) throw new VeilFormatError("REPLAY", "session_request", "seq", "the session's sequence numbers are used up: open a new session", "seal");
    const seq = this.nextSeq++;
    const inner = request instanceof Uint8Array ? request : encodeInnerRequest(request);
    const header = new Uint8Array(SESSION_HEADER_LEN);
    header[0] = this.keyId;
    header.set(SESSION_MAGIC, 1);
    header.set(this.accept.sessionId, 9);
    new DataView(header.buffer).setBigUint64(25, seq);
    const bytes = aeadSealAfterAad(this.keys.requestKey, seqNonce(this.keys.requestNonce, seq), header, inner);
    if (!(request instanceof Uint8Array)) wipe(inner);
    if (bytes.length > LIMITS.REQUEST_MAX) throw new VeilFormatError("TOO_LARGE", "session_request", "ct", `${bytes.length} bytes exceed REQUEST_MAX ${LIMITS.REQUEST_MAX}`, "seal");
    const keys = this.keys;
    return {
      bytes,
      seq,
      openResponse(res: Uint8Array): InnerResponse {
        const pt = aeadOpen(keys.responseKey, seqNonce(keys.responseNonce, seq), header, res);
        if (!pt) throw new VeilFormatError("RESPONSE_AUTH", "response", "", "failed to open (not the response to this session request)", "open");
        try {
          return decodeInnerResponse(pt);
        } finally {
          wipe(pt);
        }
      },
      openStream(): StreamOpener {
        return new StreamOpener(new Uint8Array(0), new Uint8Array(0), sessionStreamKeys(keys.prk, seq));
      },
    };
  }

  /** Wipes the session's keys; it cannot seal again. */
  close(): void {
    this.closed = true;
    wipe(this.keys.prk, this.keys.requestKey, this.keys.requestNonce, this.keys.responseKey, this.keys.responseNonce);
  }
}

export interface SessionOpenRequest {
  /** The EncapsulatedRequest carrying a SessionOpen, for `session-open`. */
  bytes: Uint8Array;
  /** Opens the loader's answer (§8.5.1): the session, ready to seal. */
  accept(response: Uint8Array): ClientSession;
}

/** §8.5.1: seals a SessionOpen to the loader for `programDigest`. */
export function openSession(opts: { loader: LoaderKey | Uint8Array; programDigest: Uint8Array; ephemeralPrivateKey?: Uint8Array }): SessionOpenRequest {
  const loader = opts.loader instanceof Uint8Array ? loaderKeyFromReport(opts.loader) : opts.loader;
  const openedAtMs = performance.now();
  const { bytes, response } = sealRequest({ loader, programDigest: opts.programDigest, request: encodeSessionOpen(), ephemeralPrivateKey: opts.ephemeralPrivateKey });
  return {
    bytes,
    accept: (res: Uint8Array) => acceptSession(loader.keyId, response, res, openedAtMs),
  };
}

function acceptSession(keyId: number, response: ResponseContext, res: Uint8Array, openedAtMs: number): ClientSession {
  const pt = response.openPlaintext(res);
  let accept: SessionAccept;
  try {
    accept = decodeSessionAccept(pt);
  } finally {
    wipe(pt);
  }
  const secret = response.exportSecret(SESSION_LABEL, 32);
  response.dispose();
  const keys = sessionKeys(secret, response.enc, accept.sessionId);
  wipe(secret);
  return new ClientSession(keyId, accept, keys, openedAtMs);
}
