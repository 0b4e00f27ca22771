// Trusted: the framing and payload codecs of the worker channel (README.md in this folder).
// The worker parses every byte its parent sends with this file, so a bug here is a bug in the
// trusted process. The untrusted client imports the same file to speak the protocol; nothing
// here touches secrets: frames carry only ciphertext and public data.
//
//   frame   = u32 length ‖ u8 type ‖ u32 request_id ‖ payload      (big-endian; length counts
//             type, request_id and payload, so length ≥ 5)
//   vec32   = u32 n ‖ n bytes,  vec16 = u16 n ‖ n bytes

export const PROTOCOL_VERSION = 1;
/** Bytes before the payload: length, type, request id. */
export const FRAME_HEADER = 9;
/** Default bound on `length`: a 64 MiB graph, a 1 MiB manifest and signatures fit with room. */
export const DEFAULT_MAX_FRAME = 80 * 2 ** 20;
/** The smallest legal `length` (type and request id, empty payload). */
export const MIN_FRAME_LENGTH = 5;

/** Requests (parent → worker). Payloads in README.md; every integer is big-endian. */
export const Req = {
  HELLO: 0x01, //          (empty)                          → measurement[32] ‖ code_hash[32] ‖ u16 protocol ‖ vec16 info JSON
  INIT: 0x02, //           vec32 trust_config ‖ vec32 nonce → report body
  ATTEST: 0x03, //         vec32 nonce                      → report body
  UNWRAP_KEY: 0x04, //     vec32 wrapped                    → (empty)
  LOAD_PROGRAM: 0x05, //   vec32 manifest ‖ vec32 signatures ‖ vec32 graph → u32 program
  LOAD_WEIGHTS: 0x06, //   u32 program ‖ vec32 piece        → (empty)
  UNLOAD_PROGRAM: 0x07, // u32 program                      → (empty)
  INFER: 0x08, //          u32 program ‖ vec32 request      → encapsulated response
  INFER_BEGIN: 0x09, //    u32 program ‖ vec32 request      → u32 stream
  INFER_NEXT: 0x0a, //     u32 stream                       → response nonce, then one StreamRecord
  INFER_CANCEL: 0x0b, //   u32 stream                       → (empty)
  EVIDENCE: 0x0c, //       vec32 nonce                      → Evidence (host/attest/README.md §1) for the report on nonce
  SHUTDOWN: 0x0f, //       (empty)                          → (empty), then the worker exits
  SESSION_OPEN: 0x10, //   u32 program ‖ vec32 request      → encapsulated response (SPEC §8.5.1)
  LOAD_WEIGHTS_FILE: 0x11, // u32 program ‖ vec16 path (UTF-8) → (empty): the worker reads the sealed stream from the file
} as const;
export type ReqType = (typeof Req)[keyof typeof Req];

/** Replies (worker → parent), echoing the request id. */
export const Reply = {
  OK: 0x80, //             the result, as listed beside each request
  LOADER_ERROR: 0x81, //   u32 raw loader error (SPEC §12) ‖ vec16 public message (UTF-8)
  WORKER_ERROR: 0x82, //   u32 worker error code (below) ‖ vec16 public message (UTF-8)
} as const;

/** Errors of the worker itself, not of the loader (their own namespace, in WORKER_ERROR frames). */
export const WorkerCode = {
  /** A frame whose payload does not parse as its type requires (or whose length is below 5). */
  BAD_FRAME: 1,
  /** A frame type the worker does not know. */
  UNKNOWN_TYPE: 2,
  /** A frame over the worker's size bound; its bytes were skipped. */
  FRAME_TOO_LARGE: 3,
  /** The worker is shutting down and did not run the request. */
  SHUTTING_DOWN: 4,
  /** The loader failed in a way it must never fail (a trap); the worker exits after replying. */
  INTERNAL: 5,
  /** `evidence` asked of a worker started without an attester (--platform-key or --attester tsm). */
  NO_ATTESTER: 6,
  /** The attester failed (configfs-tsm I/O, provider, generation conflicts, self-check). */
  ATTEST_FAILED: 7,
  /** load-weights-file: the file cannot be opened, is not a regular file, or its length is not the one its header implies. */
  WEIGHTS_FILE: 8,
} as const;
export type WorkerCodeName = keyof typeof WorkerCode;
export const WORKER_CODE_NAMES: Readonly<Record<number, WorkerCodeName>> = Object.fromEntries(
  Object.entries(WorkerCode).map(([k, v]) => [v, k as WorkerCodeName]),
);

export const REQ_NAMES: Readonly<Record<number, string>> = {
  [Req.HELLO]: "hello",
  [Req.INIT]: "init",
  [Req.ATTEST]: "attest",
  [Req.UNWRAP_KEY]: "unwrap-key",
  [Req.LOAD_PROGRAM]: "load-program",
  [Req.LOAD_WEIGHTS]: "load-weights",
  [Req.UNLOAD_PROGRAM]: "unload-program",
  [Req.INFER]: "infer",
  [Req.INFER_BEGIN]: "infer-begin",
  [Req.INFER_NEXT]: "infer-next",
  [Req.INFER_CANCEL]: "infer-cancel",
  [Req.EVIDENCE]: "evidence",
  [Req.SHUTDOWN]: "shutdown",
  [Req.SESSION_OPEN]: "session-open",
  [Req.LOAD_WEIGHTS_FILE]: "load-weights-file",
};

/** A payload that does not parse. The message names the field, never its bytes. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

// ---- encoding ----

export function u32(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new ProtocolError(`u32 out of range: ${n}`);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function u16(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new ProtocolError(`u16 out of range: ${n}`);
  return Uint8Array.of(n >>> 8, n & 0xff);
}

export function vec32(bytes: Uint8Array): Uint8Array[] {
  return [u32(bytes.length), bytes];
}

export function vec16(bytes: Uint8Array): Uint8Array[] {
  return [u16(bytes.length), bytes];
}

/** Writes one frame to a stream in a single write call (corked: one writev of header and payload). */
export function writeFrame(out: { cork(): void; write(chunk: Uint8Array): unknown; uncork(): void }, type: number, id: number, payload: readonly Uint8Array[]): void {
  out.cork();
  for (const p of frameParts(type, id, payload)) out.write(p);
  out.uncork();
}

/** Frame parts (header first); write them in order, or join them with `concatParts`. */
export function frameParts(type: number, id: number, payload: readonly Uint8Array[]): Uint8Array[] {
  let n = 0;
  for (const p of payload) n += p.length;
  const header = new Uint8Array(FRAME_HEADER);
  const dv = new DataView(header.buffer);
  dv.setUint32(0, MIN_FRAME_LENGTH + n);
  dv.setUint8(4, type);
  dv.setUint32(5, id >>> 0);
  return [header, ...payload];
}

export function concatParts(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function encodeFrame(type: number, id: number, payload: readonly Uint8Array[] = []): Uint8Array {
  return concatParts(frameParts(type, id, payload));
}

const utf8 = new TextEncoder();
const utf8d = new TextDecoder("utf-8", { fatal: false });

/** An error reply's payload: u32 code ‖ vec16 message (cut to 1 KiB). */
export function errorPayload(code: number, message: string): Uint8Array[] {
  let m = utf8.encode(message);
  if (m.length > 1024) m = m.subarray(0, 1024);
  return [u32(code >>> 0), ...vec16(m)];
}

// ---- decoding ----

/** A strict reader over one payload: every read is bounds-checked; `end()` rejects trailing bytes. */
export class PayloadReader {
  private pos = 0;
  private readonly dv: DataView;
  /** `fail` makes the error a caller's own type (the manifest reader's, for one). */
  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
    private readonly fail: (message: string) => Error = (m) => new ProtocolError(m),
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(n: number, field: string): void {
    if (this.bytes.length - this.pos < n) {
      throw this.fail(`${this.what}: payload ends inside ${field} (${this.bytes.length - this.pos} of ${n} bytes left)`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.bytes[this.pos++];
  }

  u64(field: string): bigint {
    this.need(8, field);
    const v = this.dv.getBigUint64(this.pos);
    this.pos += 8;
    return v;
  }

  skip(n: number, field: string): void {
    this.need(n, field);
    this.pos += n;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.dv.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.dv.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  fixed(n: number, field: string): Uint8Array {
    this.need(n, field);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  vec32(field: string): Uint8Array {
    return this.fixed(this.u32(`${field} length`), field);
  }

  vec16(field: string): Uint8Array {
    return this.fixed(this.u16(`${field} length`), field);
  }

  /** A vec16 of strict UTF-8 with no NUL (a file path). */
  utf8_16(field: string): string {
    const b = this.vec16(field);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(b);
    } catch {
      throw this.fail(`${this.what}: ${field} is not UTF-8`);
    }
    if (text.length === 0 || text.includes("\0")) throw this.fail(`${this.what}: ${field} is empty or holds a NUL`);
    return text;
  }

  remaining(): number {
    return this.bytes.length - this.pos;
  }

  rest(): Uint8Array {
    const v = this.bytes.subarray(this.pos);
    this.pos = this.bytes.length;
    return v;
  }

  end(): void {
    if (this.pos !== this.bytes.length) {
      throw this.fail(`${this.what}: ${this.bytes.length - this.pos} bytes after the last field`);
    }
  }
}

export function decodeError(payload: Uint8Array): { code: number; message: string } {
  const r = new PayloadReader(payload, "error reply");
  const code = r.u32("code");
  const message = utf8d.decode(r.vec16("message"));
  r.end();
  return { code, message };
}

export interface HelloInfo {
  measurement: Uint8Array;
  codeHash: Uint8Array;
  protocol: number;
  info: Record<string, unknown>;
}

export function encodeHello(h: HelloInfo): Uint8Array[] {
  if (h.measurement.length !== 32 || h.codeHash.length !== 32) throw new ProtocolError("hello: hashes must be 32 bytes");
  return [h.measurement, h.codeHash, u16(h.protocol), ...vec16(utf8.encode(JSON.stringify(h.info)))];
}

export function decodeHello(payload: Uint8Array): HelloInfo {
  const r = new PayloadReader(payload, "hello reply");
  const measurement = new Uint8Array(r.fixed(32, "measurement"));
  const codeHash = new Uint8Array(r.fixed(32, "code_hash"));
  const protocol = r.u16("protocol");
  let info: Record<string, unknown>;
  try {
    info = JSON.parse(utf8d.decode(r.vec16("info"))) as Record<string, unknown>;
  } catch {
    throw new ProtocolError("hello reply: info is not JSON");
  }
  r.end();
  return { measurement, codeHash, protocol, info };
}

// ---- frame decoder ----

export type FrameEvent =
  | { kind: "frame"; type: number; id: number; payload: Uint8Array }
  /** `length` was over the bound: its type and id are known, the rest is being skipped. */
  | { kind: "too-large"; type: number; id: number; length: number }
  /** `length` below 5: the frame's bytes were consumed, the id is unknown. */
  | { kind: "bad-length"; length: number };

/**
 * Incremental frame decoder. Holds at most one frame's bytes (≤ maxFrame + FRAME_HEADER);
 * an oversize frame is skipped as it streams by, never buffered.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private skip = 0;

  constructor(private readonly maxFrame = DEFAULT_MAX_FRAME) {}

  /** Bytes held, waiting for the rest of a frame. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): FrameEvent[] {
    const out: FrameEvent[] = [];
    if (this.skip > 0) {
      const k = Math.min(this.skip, chunk.length);
      this.skip -= k;
      chunk = chunk.subarray(k);
    }
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.skip > 0) {
        const k = this.drop(this.skip);
        this.skip -= k;
        if (this.skip > 0) break;
      }
      if (this.buffered < 4) break;
      const length = this.peekU32();
      if (length < MIN_FRAME_LENGTH) {
        this.drop(4);
        this.skip = length;
        out.push({ kind: "bad-length", length });
        continue;
      }
      if (length > this.maxFrame) {
        if (this.buffered < FRAME_HEADER) break;
        const head = this.take(FRAME_HEADER);
        const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
        this.skip = length - MIN_FRAME_LENGTH;
        out.push({ kind: "too-large", type: dv.getUint8(4), id: dv.getUint32(5), length });
        continue;
      }
      if (this.buffered < 4 + length) break;
      const frame = this.take(4 + length);
      const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
      out.push({ kind: "frame", type: dv.getUint8(4), id: dv.getUint32(5), payload: frame.subarray(FRAME_HEADER) });
    }
    return out;
  }

  private peekU32(): number {
    const head = this.chunks[0].length >= 4 ? this.chunks[0] : this.coalesce(4);
    return new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
  }

  /** Makes the first chunk hold at least n bytes (n ≤ buffered). */
  private coalesce(n: number): Uint8Array {
    const joined = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - o);
      joined.set(c.subarray(0, k), o);
      o += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.chunks.unshift(joined);
    return joined;
  }

  /** The next n bytes (n ≤ buffered), as one view; copies only when they span chunks. */
  private take(n: number): Uint8Array {
    const first = this.chunks[0].length >= n ? this.chunks[0] : this.coalesce(n);
    const v = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return v;
  }

  /** Drops up to n buffered bytes; returns how many. */
  private drop(n: number): number {
    let dropped = 0;
    while (dropped < n && this.chunks.length > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - dropped);
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
      dropped += k;
    }
    this.buffered -= dropped;
    return dropped;
  }
}
