// Encrypted requests and responses (SPEC §8): the client's sealer and response/stream openers, and a TEST/REFERENCE server. Trust status: the client side runs on the data owner's machine (it holds plaintext and HPKE secrets); the server side here is a test/reference implementation only — in production only the loader opens requests. The untrusted host only relays the bytes.
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "node:crypto";
import { ascii, concat, counterNonce, toHex, wipe, xorInto } from "./bytes.ts";
import {
  LIMITS,
  RESPONSE_NONCE_LEN,
  STREAM_MAX_CHUNKS,
  STREAM_RECORD_MAX,
  STREAM_RECORD_MIN,
  SUITE,
} from "./constants.ts";
import { VeilFormatError } from "./errors.ts";
import { setupBaseR, setupBaseS, type HpkeContext } from "./hpke.ts";
import {
  decodeInnerRequest,
  decodeInnerResponse,
  decodeStreamChunk,
  encodeInnerRequest,
  encodeInnerResponse,
  encodeStreamChunk,
  type InnerRequest,
  type InnerResponse,
  type StreamChunk,
} from "./inner.ts";
import { egressLimit, type Manifest } from "./manifest.ts";
import { decodeReportBody, reportKeyId, type ReportBody } from "./report.ts";
import { Reader, Writer } from "./wire.ts";

export interface EncapsulatedRequest {
  keyId: number;
  kemId: number;
  kdfId: number;
  aeadId: number;
  enc: Uint8Array;
  ct: Uint8Array;
}

const S = "encapsulated_request";
const HEADER_LEN = 7;
const REQUEST_LABEL = ascii("veil request v1\0");
const RESPONSE_LABEL = ascii("veil response v1");
const STREAM_LABEL = ascii("veil stream v1");

/** Parses the §8.1 framing. The suite values are checked by whoever opens it (KEY_ID, then UNSUPPORTED_SUITE). */
export function decodeEncapsulatedRequest(bytes: Uint8Array): EncapsulatedRequest {
  const r: Reader = new Reader(bytes, S);
  // §8.1: REQUEST_MAX bounds the whole message (§12.1 reports it as ct's size, 0x0706).
  if (bytes.length > LIMITS.REQUEST_MAX) r.fail("TOO_LARGE", "size", `${bytes.length} bytes exceed REQUEST_MAX ${LIMITS.REQUEST_MAX}`);
  const keyId = r.u8("key_id");
  const kemId = r.u16("kem_id");
  const kdfId = r.u16("kdf_id");
  const aeadId = r.u16("aead_id");
  const enc = r.fixed("enc", 32);
  if (r.remaining < 16) r.fail("BAD_LENGTH", "ct", `${r.remaining} bytes is shorter than the 16-byte tag`);
  const ct = r.fixed("ct", r.remaining);
  r.end();
  return { keyId, kemId, kdfId, aeadId, enc, ct };
}

export function encodeEncapsulatedRequest(e: EncapsulatedRequest): Uint8Array {
  const w: Writer = new Writer(S).u8(e.keyId, "key_id").u16(e.kemId, "kem_id").u16(e.kdfId, "kdf_id").u16(e.aeadId, "aead_id").fixed(e.enc, 32, "enc");
  if (e.ct.length < 16) w.fail("BAD_LENGTH", "ct", `${e.ct.length} bytes is shorter than the 16-byte tag`);
  w.bytes(e.ct);
  if (w.length > LIMITS.REQUEST_MAX) w.fail("TOO_LARGE", "size", `${w.length} bytes exceed REQUEST_MAX ${LIMITS.REQUEST_MAX}`);
  return w.finish();
}

const requestHeader = (keyId: number): Uint8Array =>
  new Writer(S).u8(keyId, "key_id").u16(SUITE.KEM).u16(SUITE.KDF).u16(SUITE.AEAD).finish();

/** §8.1: info = "veil request v1" ‖ 0x00 ‖ hdr ‖ program_digest. */
export const requestInfo = (hdr: Uint8Array, programDigest: Uint8Array): Uint8Array => concat(REQUEST_LABEL, hdr, programDigest);

/** §8.3/§8.4 response keys: Extract(enc ‖ nonce, secret), Expand "key" and "nonce". */
function responseKeys(secret: Uint8Array, enc: Uint8Array, responseNonce: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const prk = extract(sha256, secret, concat(enc, responseNonce));
  const key = expand(sha256, prk, ascii("key"), 32);
  const nonce = expand(sha256, prk, ascii("nonce"), 12);
  wipe(prk);
  return { key, nonce };
}

/** §8.4: chunk i is sealed with N XOR (i as 11 bytes ‖ f). */
const chunkNonce = (base: Uint8Array, i: number, final: boolean): Uint8Array => xorInto(counterNonce(i, final), base);

export interface LoaderKey {
  keyId: number;
  publicKey: Uint8Array;
}

/** The loader's request key from a report the client has verified (§4.2 is the caller's job). */
export function loaderKeyFromReport(report: Uint8Array | ReportBody): LoaderKey {
  const rb = report instanceof Uint8Array ? decodeReportBody(report) : report;
  return { keyId: rb.keyId, publicKey: rb.hpkePublicKey };
}

export interface SealRequestOptions {
  loader: LoaderKey | Uint8Array;
  /** §5.6 digest of the program to run. */
  programDigest: Uint8Array;
  /** Inner request structure, or its encoding. */
  request: InnerRequest | Uint8Array;
  /** Tests only: a fixed ephemeral key. */
  ephemeralPrivateKey?: Uint8Array;
}

/** Client: seals an inner request (§8.1) and returns the bytes plus the context that opens the answer. */
export function sealRequest(opts: SealRequestOptions): { bytes: Uint8Array; response: ResponseContext } {
  const loader = opts.loader instanceof Uint8Array ? loaderKeyFromReport(opts.loader) : opts.loader;
  if (opts.programDigest.length !== 32) throw new VeilFormatError("BAD_LENGTH", S, "program_digest", `${opts.programDigest.length} bytes, not 32`, "seal");
  const inner = opts.request instanceof Uint8Array ? opts.request : encodeInnerRequest(opts.request);
  const hdr = requestHeader(loader.keyId);
  const { enc, ctx } = setupBaseS(loader.publicKey, requestInfo(hdr, opts.programDigest), {
    ephemeralPrivateKey: opts.ephemeralPrivateKey,
  });
  const ct = ctx.seal(new Uint8Array(0), inner);
  if (!(opts.request instanceof Uint8Array)) wipe(inner);
  const bytes = concat(hdr, enc, ct);
  if (bytes.length > LIMITS.REQUEST_MAX) throw new VeilFormatError("TOO_LARGE", S, "size", `${bytes.length} bytes exceed REQUEST_MAX ${LIMITS.REQUEST_MAX}`, "seal");
  return { bytes, response: new ResponseContext(ctx, enc) };
}

/** Client side of §8.3 and §8.4, holding the request's HPKE context. */
export class ResponseContext {
  constructor(
    private readonly ctx: HpkeContext,
    readonly enc: Uint8Array,
  ) {}

  /** Opens a single-shot encapsulated response (§8.3). */
  openResponse(bytes: Uint8Array): InnerResponse {
    const pt = this.openPlaintext(bytes);
    try {
      return decodeInnerResponse(pt);
    } finally {
      wipe(pt);
    }
  }

  /** §8.3 without decoding: the plaintext, which the caller parses and wipes (a SessionAccept, §8.5.1). */
  openPlaintext(bytes: Uint8Array): Uint8Array {
    if (bytes.length < RESPONSE_NONCE_LEN + 16)
      throw new VeilFormatError("TRUNCATED", "response", "", `${bytes.length} bytes is shorter than nonce and tag`);
    const secret = this.ctx.export(RESPONSE_LABEL, 32);
    const { key, nonce } = responseKeys(secret, this.enc, bytes.subarray(0, RESPONSE_NONCE_LEN));
    let pt: Uint8Array;
    try {
      pt = chacha20poly1305(key, nonce).decrypt(bytes.subarray(RESPONSE_NONCE_LEN));
    } catch {
      throw new VeilFormatError("RESPONSE_AUTH", "response", "", "failed to open", "open");
    } finally {
      wipe(secret, key, nonce);
    }
    return pt;
  }

  /** RFC 9180 §5.3 Export from the request's context (§8.5.1 session_secret). */
  exportSecret(label: Uint8Array, length: number): Uint8Array {
    return this.ctx.export(label, length);
  }

  /** An incremental opener for a streamed response (§8.4). */
  openStream(): StreamOpener {
    return new StreamOpener(this.ctx.export(STREAM_LABEL, 32), this.enc);
  }

  dispose(): void {
    this.ctx.dispose();
  }
}

/**
 * Client: feed the bytes of a §8.4 stream as they arrive, in any split; complete records come
 * back as decoded chunks. Detects dropped, reordered, duplicated and cut streams, trailing bytes,
 * a `stop` that does not match the chunk's final flag (BAD_VALUE), and a stream whose chunk
 * plaintexts (whole StreamChunk encodings, §13) sum to more than RESPONSE_MAX (TOO_LARGE).
 * Buffers at most one record (≤ 2^24 + 4 bytes).
 */
export class StreamOpener {
  private pending: Uint8Array[] = [];
  private pendingLen = 0;
  private key?: Uint8Array;
  private baseNonce?: Uint8Array;
  private index = 0;
  private total = 0;
  private finished = false;
  private failed?: VeilFormatError;

  constructor(
    private readonly secret: Uint8Array,
    private readonly enc: Uint8Array,
    /** §8.5.2: a session stream's key and nonce, known up front; it has no response nonce. */
    keys?: { key: Uint8Array; nonce: Uint8Array },
  ) {
    if (keys) {
      this.key = keys.key;
      this.baseNonce = keys.nonce;
    }
  }

  /** True once the final chunk opened. */
  get done(): boolean {
    return this.finished;
  }

  private fail(code: "TRUNCATED" | "TRAILING_BYTES" | "BAD_LENGTH" | "TOO_LARGE" | "BAD_VALUE" | "RESPONSE_AUTH", field: string, detail: string): never {
    this.failed = new VeilFormatError(code, "stream", field, detail, "open");
    this.wipeKeys();
    throw this.failed;
  }

  private wipeKeys(): void {
    wipe(this.key, this.baseNonce, this.secret);
    this.pending = [];
    this.pendingLen = 0;
  }

  private take(n: number): Uint8Array | undefined {
    if (this.pendingLen < n) return undefined;
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const head = this.pending[0];
      const k = Math.min(head.length, n - o);
      out.set(head.subarray(0, k), o);
      o += k;
      if (k === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(k);
    }
    this.pendingLen -= n;
    return out;
  }

  private peekLength(): number | undefined {
    if (this.pendingLen < 4) return undefined;
    const b = this.take(4)!;
    this.pending.unshift(b);
    this.pendingLen += 4;
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  }

  push(bytes: Uint8Array): StreamChunk[] {
    if (this.failed) throw this.failed;
    if (bytes.length === 0) return [];
    if (this.finished) this.fail("TRAILING_BYTES", "", `${bytes.length} bytes after the final record`);
    this.pending.push(bytes.slice());
    this.pendingLen += bytes.length;
    const out: StreamChunk[] = [];
    if (!this.key) {
      const nonce = this.take(RESPONSE_NONCE_LEN);
      if (!nonce) return out;
      const k = responseKeys(this.secret, this.enc, nonce);
      this.key = k.key;
      this.baseNonce = k.nonce;
    }
    for (;;) {
      if (this.finished) {
        if (this.pendingLen > 0) this.fail("TRAILING_BYTES", "", `${this.pendingLen} bytes after the final record`);
        return out;
      }
      const len = this.peekLength();
      if (len === undefined) return out;
      if (len < STREAM_RECORD_MIN || len > STREAM_RECORD_MAX)
        this.fail("BAD_LENGTH", `record[${this.index}]`, `length ${len} is not in ${STREAM_RECORD_MIN}..${STREAM_RECORD_MAX}`);
      if (this.pendingLen < 4 + len) return out;
      this.take(4);
      out.push(this.openRecord(this.take(len)!));
    }
  }

  private openRecord(sealed: Uint8Array): StreamChunk {
    const i = this.index;
    if (i >= STREAM_MAX_CHUNKS) this.fail("TOO_LARGE", `record[${i}]`, "more than 2^32 chunks");
    let final = false;
    let pt: Uint8Array | undefined;
    for (const f of [false, true]) {
      try {
        pt = chacha20poly1305(this.key!, chunkNonce(this.baseNonce!, i, f)).decrypt(sealed);
        final = f;
        break;
      } catch {
        // try the other flag; both failing means dropped, reordered, duplicated or forged
      }
    }
    if (!pt) this.fail("RESPONSE_AUTH", `record[${i}]`, "failed to open as chunk " + i + " (dropped, reordered, duplicated or altered)");
    this.total += pt.length;
    if (this.total > LIMITS.RESPONSE_MAX) this.fail("TOO_LARGE", `record[${i}]`, `stream plaintext exceeds RESPONSE_MAX ${LIMITS.RESPONSE_MAX}`);
    let chunk: StreamChunk;
    try {
      chunk = decodeStreamChunk(pt);
    } catch (e) {
      this.failed = e as VeilFormatError;
      this.wipeKeys();
      throw e;
    } finally {
      wipe(pt);
    }
    if (final ? chunk.stop === 0 : chunk.stop !== 0)
      this.fail("BAD_VALUE", `record[${i}].stop`, final ? "the final chunk must have stop 1 or 2" : "a non-final chunk must have stop 0");
    this.index++;
    if (final) {
      this.finished = true;
      wipe(this.key, this.baseNonce, this.secret);
    }
    return chunk;
  }

  /** Call when the transport ends: a stream without its final chunk is truncated. */
  end(): void {
    if (this.failed) throw this.failed;
    if (!this.finished) this.fail("TRUNCATED", "", `stream ended after ${this.index} chunks without the final one`);
  }
}

/** Convenience: opens a whole stream held in memory. */
export function openStreamBytes(response: ResponseContext, bytes: Uint8Array): StreamChunk[] {
  const s = response.openStream();
  const chunks = s.push(bytes);
  s.end();
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// TEST/REFERENCE server. In production only the loader opens requests; this mirrors §8 so the
// host's tests and in-process tests can exercise the client without the wasm build.
// ---------------------------------------------------------------------------------------------

/** §8.2 replay memory: the last `size` encs opened successfully. */
export class ReplayWindow {
  private readonly seen = new Set<string>();
  private readonly order: string[] = [];

  constructor(readonly size: number = LIMITS.REPLAY_WINDOW) {}

  has(enc: Uint8Array): boolean {
    return this.seen.has(toHex(enc));
  }

  remember(enc: Uint8Array): void {
    const k = toHex(enc);
    this.seen.add(k);
    this.order.push(k);
    if (this.order.length > this.size) this.seen.delete(this.order.shift()!);
  }
}

export interface ServerKey {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export interface OpenRequestOptions {
  key: ServerKey;
  programDigest: Uint8Array;
  replay?: ReplayWindow;
  /**
   * When given, the inner request is also checked against the program (§7.3), and responses
   * are held to its egress limit (§5.5).
   */
  program?: Manifest;
}

export interface OpenedRequest {
  request: InnerRequest;
  enc: Uint8Array;
  /**
   * §8.3 single-shot response. Refuses an InnerResponse whose plaintext exceeds RESPONSE_MAX
   * (TOO_LARGE) or the program's egress limit (EGRESS_LIMIT).
   */
  respond(response: InnerResponse, responseNonce?: Uint8Array): Uint8Array;
  /** §8.4 stream sealer. */
  stream(responseNonce?: Uint8Array): StreamSealer;
}

/** TEST/REFERENCE: opens a request the way §8.1–§8.2 prescribe for the loader. */
export function openRequest(bytes: Uint8Array, opts: OpenRequestOptions): OpenedRequest {
  const e = decodeEncapsulatedRequest(bytes);
  const fail = (code: "KEY_ID" | "UNSUPPORTED_SUITE" | "REQUEST_AUTH" | "REPLAY", field: string, detail: string): never => {
    throw new VeilFormatError(code, S, field, detail, "open");
  };
  const keyId = reportKeyId(opts.key.publicKey);
  if (e.keyId !== keyId) fail("KEY_ID", "key_id", `${e.keyId} is not this key's ${keyId}`);
  if (e.kemId !== SUITE.KEM) fail("UNSUPPORTED_SUITE", "kem_id", `0x${e.kemId.toString(16)} is not 0x0020`);
  if (e.kdfId !== SUITE.KDF) fail("UNSUPPORTED_SUITE", "kdf_id", `0x${e.kdfId.toString(16)} is not 0x0001`);
  if (e.aeadId !== SUITE.AEAD) fail("UNSUPPORTED_SUITE", "aead_id", `0x${e.aeadId.toString(16)} is not 0x0003`);
  if (opts.replay?.has(e.enc)) fail("REPLAY", "enc", "this enc was opened before");
  let ctx: HpkeContext;
  try {
    ctx = setupBaseR(e.enc, opts.key.privateKey, requestInfo(bytes.subarray(0, HEADER_LEN), opts.programDigest));
  } catch {
    return fail("REQUEST_AUTH", "enc", "failed to open");
  }
  const pt = ctx.open(new Uint8Array(0), e.ct);
  if (!pt) {
    ctx.dispose();
    return fail("REQUEST_AUTH", "ct", "failed to open");
  }
  opts.replay?.remember(e.enc);
  const egress = (): number | undefined => (opts.program ? egressLimit(opts.program.policy) : undefined);
  let request: InnerRequest;
  try {
    request = decodeInnerRequest(pt, opts.program);
  } finally {
    wipe(pt);
  }
  return {
    request,
    enc: e.enc,
    respond(response, responseNonce) {
      const inner = encodeInnerResponse(response); // TOO_LARGE over RESPONSE_MAX
      const limit = egress();
      if (limit !== undefined && inner.length > limit) {
        wipe(inner);
        throw new VeilFormatError("EGRESS_LIMIT", "inner_response", "", `the response plaintext exceeds the program's egress limit of ${limit} bytes`, "seal");
      }
      const rn = responseNonce ?? new Uint8Array(randomBytes(RESPONSE_NONCE_LEN));
      const secret = ctx.export(RESPONSE_LABEL, 32);
      const { key, nonce } = responseKeys(secret, e.enc, rn);
      const sealed = chacha20poly1305(key, nonce).encrypt(inner);
      wipe(secret, key, nonce, inner);
      return concat(rn, sealed);
    },
    stream(responseNonce) {
      const rn = responseNonce ?? new Uint8Array(randomBytes(RESPONSE_NONCE_LEN));
      const secret = ctx.export(STREAM_LABEL, 32);
      const { key, nonce } = responseKeys(secret, e.enc, rn);
      wipe(secret);
      return new StreamSealer(rn, key, nonce, egress());
    },
  };
}

/** TEST/REFERENCE: produces `responseNonce`, then one StreamRecord per chunk. */
export class StreamSealer {
  private index = 0;
  private total = 0;
  private closed = false;

  constructor(
    /** The first thing on the wire. */
    readonly head: Uint8Array,
    private readonly key: Uint8Array,
    private readonly baseNonce: Uint8Array,
    /** The program's egress limit (§5.5), if any. */
    private readonly egress?: number,
  ) {}

  private close(): void {
    this.closed = true;
    wipe(this.key, this.baseNonce);
  }

  /**
   * Seals chunk i as a length-prefixed record; `final` sets f = 0x01 and closes the stream.
   * Refuses (§8.4) a `stop` other than 0 in a non-final chunk or 1..2 in the final one
   * (BAD_VALUE), and (§13, §5.5) a chunk that takes the sum of the stream's chunk plaintexts
   * over RESPONSE_MAX (TOO_LARGE) or the egress limit (EGRESS_LIMIT), which ends the stream as
   * the loader does. `validate: false` skips these checks, for tests of the client's.
   */
  record(chunk: StreamChunk, final: boolean, opts: { validate?: boolean } = {}): Uint8Array {
    const field = `record[${this.index}]`;
    if (this.closed) throw new VeilFormatError("STREAM_DONE", "stream", "", "the stream has ended", "seal");
    const check = opts.validate !== false;
    if (check && (final ? chunk.stop === 0 : chunk.stop !== 0))
      throw new VeilFormatError("BAD_VALUE", "stream", `${field}.stop`, final ? "the final chunk must have stop 1 or 2" : "a non-final chunk must have stop 0", "seal");
    const pt = encodeStreamChunk(chunk, { validate: check });
    this.total += pt.length;
    const over =
      this.total > LIMITS.RESPONSE_MAX
        ? (["TOO_LARGE", `stream plaintext exceeds RESPONSE_MAX ${LIMITS.RESPONSE_MAX}`] as const)
        : this.egress !== undefined && this.total > this.egress
          ? (["EGRESS_LIMIT", `stream plaintext exceeds the program's egress limit of ${this.egress} bytes`] as const)
          : undefined;
    if (check && over) {
      wipe(pt);
      this.close();
      throw new VeilFormatError(over[0], "stream", field, over[1], "seal");
    }
    const sealed = chacha20poly1305(this.key, chunkNonce(this.baseNonce, this.index, final)).encrypt(pt);
    wipe(pt);
    this.index++;
    if (final) this.close();
    return new Writer("stream").vec(sealed, check ? STREAM_RECORD_MIN : 0, STREAM_RECORD_MAX, "record", 4).finish();
  }
}
