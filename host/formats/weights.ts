// Sealed weights stream (SPEC §9): a constant-memory streaming sealer and a streaming opener. Trust status: the sealer runs on the model owner's / release CI's own machine (it holds the data key and plaintext weights); the opener is for tests and tools on such machines. The untrusted host only stores and forwards the sealed stream.
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import type { Writable } from "node:stream";
import { ascii, concat, counterNonce, equalBytes, wipe } from "./bytes.ts";
import { CHUNK_SIZE, LIMITS, MAX_WEIGHT_FILES, chunkCountFor, isPowerOfTwo } from "./constants.ts";
import { VeilFormatError, type VeilErrorName } from "./errors.ts";
import type { WeightsDescriptor } from "./manifest.ts";
import {
  WEIGHTS_HEADER_SIZE,
  checkHeaderMatches,
  chunkWireLength,
  decodeWeightsHeader,
  encodeWeightsHeader,
  type WeightsHeader,
} from "./weights-header.ts";
import { nameProblem } from "./wire.ts";

const LABEL = ascii("veil weights v1\0");
const COMMIT_LABEL = ascii("veil weights commitment v1\0");
const TAG = 16;

/** §9: payload_key = HKDF-SHA256(salt = stream_id, IKM = data_key, info = label ‖ header, 32). */
export const payloadKey = (dataKey: Uint8Array, headerBytes: Uint8Array, streamId: Uint8Array): Uint8Array =>
  hkdf(sha256, dataKey, streamId, concat(LABEL, headerBytes), 32);

/** §9.1: commit_key = HKDF-SHA256(salt = stream_id, IKM = data_key, info = label ‖ header, 32). */
export const commitKey = (dataKey: Uint8Array, headerBytes: Uint8Array, streamId: Uint8Array): Uint8Array =>
  hkdf(sha256, dataKey, streamId, concat(COMMIT_LABEL, headerBytes), 32);

/** §9.1: commitment = HMAC-SHA256(commit_key, measurement), measurement = SHA-256 of the plaintext stream. */
export function weightsCommitment(dataKey: Uint8Array, headerBytes: Uint8Array, streamId: Uint8Array, measurement: Uint8Array): Uint8Array {
  const k = commitKey(dataKey, headerBytes, streamId);
  try {
    return new Uint8Array(createHmac("sha256", k).update(measurement).digest());
  } finally {
    wipe(k);
  }
}

export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface WeightsFileInput {
  /** The external-data location in the graph (§1.4 name). */
  location: string;
  /** Bytes this file contributes; the source must deliver exactly this many. */
  size: number;
  /** Read from this file… */
  path?: string;
  /** …or from this source (called lazily when a function). */
  source?: ByteSource | (() => ByteSource);
}

/**
 * Where sealed bytes go. A path is opened and written; a Writable is written with backpressure
 * (not ended); a function receives each piece. Every piece handed out is a fresh buffer the sink
 * may keep.
 */
export type WeightsSink = string | Writable | ((bytes: Uint8Array) => void | Promise<void>);

export interface SealWeightsOptions {
  files: WeightsFileInput[];
  dataKey: Uint8Array;
  keyId: Uint8Array;
  /** Power of two in 64 KiB..16 MiB; 1 MiB by default. */
  chunkSize?: number;
  out: WeightsSink;
  /** Called after each sealed chunk with plaintext bytes done and the total; ends at (total, total). */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Tests only: a fixed stream id (it must be fresh for every sealing). */
  streamId?: Uint8Array;
}

export interface SealedWeights {
  descriptor: WeightsDescriptor;
  header: WeightsHeader;
  /** Bytes written: header plus every chunk. */
  sealedSize: number;
}

const sealFail = (code: VeilErrorName, field: string, detail: string): never => {
  throw new VeilFormatError(code, "weights", field, detail, "seal");
};

interface Sink {
  write(b: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

async function openSink(out: WeightsSink): Promise<Sink> {
  if (typeof out === "string") {
    const fh = await open(out, "w");
    return {
      async write(b) {
        let o = 0;
        while (o < b.length) o += (await fh.write(b, o, b.length - o)).bytesWritten;
      },
      close: () => fh.close(),
    };
  }
  if (typeof out === "function") return { write: async (b) => void (await out(b)), close: async () => {} };
  // Waiting for each write's callback bounds what the stream holds to one piece.
  return {
    write: (b) => new Promise<void>((res, rej) => out.write(b, (err) => (err ? rej(err) : res()))),
    close: async () => {},
  };
}

function checkFiles(files: WeightsFileInput[]): number {
  if (files.length < 1 || files.length > MAX_WEIGHT_FILES) sealFail("BAD_LENGTH", "files", `${files.length} files is not in 1..${MAX_WEIGHT_FILES}`);
  const seen = new Set<string>();
  let total = 0;
  files.forEach((f, i) => {
    const bad = nameProblem(ascii(f.location), false);
    if (bad) sealFail("BAD_VALUE", `files[${i}].location`, bad);
    if (seen.has(f.location)) sealFail("BAD_VALUE", `files[${i}].location`, `duplicate location "${f.location}"`);
    seen.add(f.location);
    if (!Number.isSafeInteger(f.size) || f.size < 0) sealFail("BAD_VALUE", `files[${i}].size`, `${f.size} is not a byte count`);
    total += f.size;
  });
  if (total > LIMITS.WEIGHTS_MAX) sealFail("TOO_LARGE", "files", `${total} bytes exceed WEIGHTS_MAX`);
  files.forEach((f, i) => {
    if (f.size === 0 && !(total === 0 && files.length === 1))
      sealFail("BAD_VALUE", `files[${i}].size`, "0 is allowed only for a single file of an empty stream");
  });
  return total;
}

/**
 * Seals the concatenation of `files` as one §9 stream, in constant memory: plaintext is read
 * straight into one chunk-sized buffer, each sealed chunk is written out before the next is
 * read, and the plaintext's SHA-256 for the §9.1 commitment is computed on the fly.
 */
export async function sealWeights(opts: SealWeightsOptions): Promise<SealedWeights> {
  const chunkSize = opts.chunkSize ?? CHUNK_SIZE.DEFAULT;
  if (chunkSize < CHUNK_SIZE.MIN || chunkSize > CHUNK_SIZE.MAX || !isPowerOfTwo(chunkSize))
    sealFail("BAD_VALUE", "chunk_size", `${chunkSize} is not a power of two in ${CHUNK_SIZE.MIN}..${CHUNK_SIZE.MAX}`);
  if (opts.dataKey.length !== 32) sealFail("BAD_LENGTH", "data_key", `${opts.dataKey.length} bytes, not 32`);
  if (opts.keyId.length !== 16) sealFail("BAD_LENGTH", "key_id", `${opts.keyId.length} bytes, not 16`);
  const total = checkFiles(opts.files);
  const header: WeightsHeader = {
    keyId: Uint8Array.from(opts.keyId),
    streamId: opts.streamId ? Uint8Array.from(opts.streamId) : new Uint8Array(randomBytes(16)),
    chunkSize,
    chunkCount: chunkCountFor(total, chunkSize),
    plaintextSize: total,
  };
  const headerBytes = encodeWeightsHeader(header);
  const key = payloadKey(opts.dataKey, headerBytes, header.streamId);
  const measure = createHash("sha256"); // §9.1: over the plaintext stream
  const sink = await openSink(opts.out);
  const buf = new Uint8Array(chunkSize);
  let fill = 0;
  let index = 0;
  let consumed = 0;
  let written = 0;

  const emit = async (b: Uint8Array) => {
    written += b.length;
    await sink.write(b);
  };
  const sealChunk = async (final: boolean) => {
    const cipher = createCipheriv("chacha20-poly1305", key, counterNonce(index, final), { authTagLength: TAG });
    measure.update(buf.subarray(0, fill));
    const ct = cipher.update(buf.subarray(0, fill));
    cipher.final();
    await emit(ct);
    await emit(cipher.getAuthTag());
    index++;
    fill = 0;
    opts.onProgress?.(consumed, total);
  };
  // Called after bytes land in buf; seals a full chunk only when more plaintext follows it.
  const afterFill = async () => {
    if (fill === chunkSize && consumed < total) await sealChunk(false);
  };

  try {
    await emit(headerBytes);
    for (let i = 0; i < opts.files.length; i++) {
      const f = opts.files[i];
      let got = 0;
      if (f.path !== undefined) {
        const fh: FileHandle = await open(f.path, "r");
        try {
          const actual = (await fh.stat()).size;
          if (actual !== f.size) sealFail("BAD_VALUE", `files[${i}].size`, `declared ${f.size} bytes, ${f.path} has ${actual}`);
          while (got < f.size) {
            const want = Math.min(chunkSize - fill, f.size - got);
            const { bytesRead } = await fh.read(buf, fill, want, got);
            if (bytesRead === 0) sealFail("BAD_VALUE", `files[${i}].size`, `${f.path} ended after ${got} of ${f.size} bytes`);
            fill += bytesRead;
            got += bytesRead;
            consumed += bytesRead;
            await afterFill();
          }
        } finally {
          await fh.close();
        }
      } else if (f.source !== undefined) {
        const src = typeof f.source === "function" ? f.source() : f.source;
        for await (const piece of src) {
          let o = 0;
          if (got + piece.length > f.size) sealFail("BAD_VALUE", `files[${i}].size`, `source delivers more than the declared ${f.size} bytes`);
          while (o < piece.length) {
            const k = Math.min(chunkSize - fill, piece.length - o);
            buf.set(piece.subarray(o, o + k), fill);
            fill += k;
            o += k;
            got += k;
            consumed += k;
            await afterFill();
          }
        }
        if (got !== f.size) sealFail("BAD_VALUE", `files[${i}].size`, `source delivered ${got} of the declared ${f.size} bytes`);
      } else sealFail("BAD_VALUE", `files[${i}]`, "needs a path or a source");
    }
    await sealChunk(true);
  } finally {
    wipe(key, buf);
    await sink.close();
  }
  if (index !== header.chunkCount) throw new Error(`weights sealer: wrote ${index} chunks, expected ${header.chunkCount}`);
  const descriptor: WeightsDescriptor = {
    keyId: header.keyId,
    streamId: Uint8Array.from(header.streamId),
    plaintextSize: total,
    chunkSize,
    chunkCount: header.chunkCount,
    commitment: weightsCommitment(opts.dataKey, headerBytes, header.streamId, new Uint8Array(measure.digest())),
    files: opts.files.map((f) => ({ location: f.location, size: f.size })),
  };
  return { descriptor, header, sealedSize: written };
}

/**
 * Opens a sealed stream piece by piece, as the loader takes it (§9): the header first, then one
 * chunk per call. Verifies order, lengths, the final flag, the count and the commitment; a failure
 * poisons the opener. Returns each chunk's plaintext only after its tag verified.
 */
export class WeightsOpener {
  private hdr?: WeightsHeader;
  private key?: Uint8Array;
  private index = 0;
  private readonly measure: Hash = createHash("sha256");
  private headerBytes?: Uint8Array;
  private digest?: Uint8Array;
  private poisoned?: VeilFormatError;

  constructor(private readonly opts: { dataKey: Uint8Array; descriptor?: WeightsDescriptor }) {}

  get header(): WeightsHeader | undefined {
    return this.hdr;
  }

  /** True after the final chunk opened (and matched the commitment, when a descriptor was given). */
  get complete(): boolean {
    return this.digest !== undefined;
  }

  /** The §9.1 commitment of the stream, once complete. */
  get commitment(): Uint8Array | undefined {
    return this.digest;
  }

  private fail(code: VeilErrorName, field: string, detail: string): never {
    this.poisoned = new VeilFormatError(code, "weights_stream", field, detail, "open");
    wipe(this.key);
    throw this.poisoned;
  }

  push(piece: Uint8Array): Uint8Array | undefined {
    if (this.poisoned) throw this.poisoned;
    if (!this.hdr) {
      try {
        this.hdr = decodeWeightsHeader(piece);
        if (this.opts.descriptor) checkHeaderMatches(this.hdr, this.opts.descriptor);
      } catch (e) {
        if (e instanceof VeilFormatError) this.poisoned = e;
        throw e;
      }
      this.key = payloadKey(this.opts.dataKey, piece, this.hdr.streamId);
      this.headerBytes = Uint8Array.from(piece);
      return undefined;
    }
    const h = this.hdr;
    const i = this.index;
    if (this.digest || i >= h.chunkCount) this.fail("WEIGHTS_ORDER", `chunk[${i}]`, "a piece after the final chunk");
    const want = chunkWireLength(h, i);
    if (piece.length !== want) this.fail("WEIGHTS_ORDER", `chunk[${i}]`, `${piece.length} bytes, chunk ${i} is ${want}`);
    const final = i === h.chunkCount - 1;
    const d = createDecipheriv("chacha20-poly1305", this.key!, counterNonce(i, final), { authTagLength: TAG });
    d.setAuthTag(piece.subarray(piece.length - TAG));
    const pt = d.update(piece.subarray(0, piece.length - TAG));
    try {
      d.final();
    } catch {
      wipe(pt);
      this.fail("WEIGHTS_AUTH", `chunk[${i}]`, `chunk ${i} failed to open`);
    }
    this.measure.update(pt);
    this.index++;
    if (final) {
      const digest = weightsCommitment(this.opts.dataKey, this.headerBytes!, h.streamId, new Uint8Array(this.measure.digest()));
      const expected = this.opts.descriptor?.commitment;
      if (expected && !equalBytes(digest, expected)) {
        wipe(pt);
        this.fail("WEIGHTS_COMMITMENT", `chunk[${i}]`, "the weights differ from the manifest's commitment");
      }
      this.digest = digest;
      wipe(this.key);
    }
    // A copy: small decipher outputs may share Node's buffer pool.
    const out = new Uint8Array(pt);
    wipe(pt);
    return out;
  }

  /** Call at the end of input: a stream without its final chunk is incomplete. */
  finish(): void {
    if (this.poisoned) throw this.poisoned;
    if (!this.digest) this.fail("WEIGHTS_INCOMPLETE", "", `stream ended after ${this.index} of ${this.hdr?.chunkCount ?? "?"} chunks`);
  }
}

const toAsync = async function* (src: ByteSource): AsyncGenerator<Uint8Array> {
  yield* src as AsyncIterable<Uint8Array>;
};

/**
 * Splits a sealed stream into the pieces the loader takes: the header, then each chunk at the
 * length the header implies. Bytes past the last chunk come out as one more piece, and a short
 * last piece as it is, so an opener reports them.
 */
export async function* splitSealedWeights(source: string | ByteSource): AsyncGenerator<Uint8Array> {
  const src = typeof source === "string" ? createReadStream(source, { highWaterMark: 1 << 20 }) : toAsync(source);
  let pending: Uint8Array[] = [];
  let pendingLen = 0;
  let want = WEIGHTS_HEADER_SIZE;
  let hdr: WeightsHeader | undefined;
  let index = 0;
  const take = (n: number): Uint8Array => {
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const head = pending[0];
      const k = Math.min(head.length, n - o);
      out.set(head.subarray(0, k), o);
      o += k;
      if (k === head.length) pending.shift();
      else pending[0] = head.subarray(k);
    }
    pendingLen -= n;
    return out;
  };
  for await (const raw of src as AsyncIterable<Uint8Array>) {
    pending.push(new Uint8Array(raw.buffer, raw.byteOffset, raw.length));
    pendingLen += raw.length;
    while (want > 0 && pendingLen >= want) {
      const piece = take(want);
      if (!hdr) {
        try {
          hdr = decodeWeightsHeader(piece);
        } catch {
          yield piece;
          return;
        }
      } else index++;
      yield piece;
      want = index < hdr.chunkCount ? chunkWireLength(hdr, index) : 0;
    }
  }
  if (pendingLen > 0) yield take(pendingLen);
  pending = [];
}

/** Opens a whole sealed stream from a file or byte source, passing verified plaintext to `onPlaintext`. */
export async function openWeights(opts: {
  source: string | ByteSource;
  dataKey: Uint8Array;
  descriptor?: WeightsDescriptor;
  onPlaintext?: (bytes: Uint8Array, offset: number) => void | Promise<void>;
}): Promise<{ header: WeightsHeader; commitment: Uint8Array }> {
  const o = new WeightsOpener({ dataKey: opts.dataKey, descriptor: opts.descriptor });
  let offset = 0;
  for await (const piece of splitSealedWeights(opts.source)) {
    const pt = o.push(piece);
    if (pt) {
      await opts.onPlaintext?.(pt, offset);
      offset += pt.length;
    }
  }
  o.finish();
  return { header: o.header!, commitment: o.commitment! };
}
