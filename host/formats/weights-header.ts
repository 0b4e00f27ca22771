// WeightsHeader (SPEC §9) encoder, strict decoder and descriptor comparison. UNTRUSTED host code: the header is public.
import { equalBytes } from "./bytes.ts";
import { CHUNK_SIZE, KIND, LIMITS, chunkCountFor, isPowerOfTwo } from "./constants.ts";
import { VeilFormatError } from "./errors.ts";
import type { WeightsDescriptor } from "./manifest.ts";
import { Reader, Writer, validated } from "./wire.ts";

export interface WeightsHeader {
  keyId: Uint8Array;
  /** Random, fresh for every sealing. */
  streamId: Uint8Array;
  chunkSize: number;
  chunkCount: number;
  plaintextSize: number;
}

export const WEIGHTS_HEADER_SIZE = 60;
const S = "weights_header";

export function decodeWeightsHeader(bytes: Uint8Array): WeightsHeader {
  const r: Reader = new Reader(bytes, S);
  r.magic(KIND.WEIGHTS);
  const keyId = r.fixed("key_id", 16);
  const streamId = r.fixed("stream_id", 16);
  const chunkSize = r.u32("chunk_size");
  if (chunkSize < CHUNK_SIZE.MIN || chunkSize > CHUNK_SIZE.MAX || !isPowerOfTwo(chunkSize))
    r.fail("BAD_VALUE", "chunk_size", `${chunkSize} is not a power of two in ${CHUNK_SIZE.MIN}..${CHUNK_SIZE.MAX}`);
  const chunkCount64 = r.u64("chunk_count");
  const plaintextSize = r.u64n("plaintext_size", 0, LIMITS.WEIGHTS_MAX, "TOO_LARGE");
  r.end();
  const expected = chunkCountFor(plaintextSize, chunkSize);
  if (chunkCount64 !== BigInt(expected))
    r.fail("NOT_CANONICAL", "chunk_count", `${chunkCount64} is not max(1, ceil(${plaintextSize} / ${chunkSize})) = ${expected}`);
  return { keyId, streamId, chunkSize, chunkCount: expected, plaintextSize };
}

export function encodeWeightsHeader(h: WeightsHeader, opts: { validate?: boolean } = {}): Uint8Array {
  const out = new Writer(S)
    .magic(KIND.WEIGHTS)
    .fixed(h.keyId, 16, "key_id")
    .fixed(h.streamId, 16, "stream_id")
    .u32(h.chunkSize, "chunk_size")
    .u64(h.chunkCount, "chunk_count")
    .u64(h.plaintextSize, "plaintext_size")
    .finish();
  return opts.validate === false ? out : validated(out, decodeWeightsHeader);
}

/** §9: key_id, stream_id, chunk_size, chunk_count and plaintext_size must equal the descriptor's (WEIGHTS_MISMATCH). */
export function checkHeaderMatches(h: WeightsHeader, d: WeightsDescriptor): void {
  const fail = (field: string, detail: string): never => {
    throw new VeilFormatError("WEIGHTS_MISMATCH", S, field, detail, "check");
  };
  if (!equalBytes(h.keyId, d.keyId)) fail("key_id", "differs from the manifest's weights.key_id");
  if (!equalBytes(h.streamId, d.streamId)) fail("stream_id", "differs from the manifest's weights.stream_id (weights sealed for another program, or sealed again)");
  if (h.chunkSize !== d.chunkSize) fail("chunk_size", `${h.chunkSize} differs from the manifest's ${d.chunkSize}`);
  if (h.chunkCount !== d.chunkCount) fail("chunk_count", `${h.chunkCount} differs from the manifest's ${d.chunkCount}`);
  if (h.plaintextSize !== d.plaintextSize) fail("plaintext_size", `${h.plaintextSize} differs from the manifest's ${d.plaintextSize}`);
}

/** Wire length of chunk i (plaintext + 16-byte tag). */
export function chunkWireLength(h: WeightsHeader, i: number): number {
  if (i < h.chunkCount - 1) return h.chunkSize + 16;
  return h.plaintextSize - (h.chunkCount - 1) * h.chunkSize + 16;
}

/** Total sealed stream length: header plus every chunk. */
export const sealedStreamLength = (h: WeightsHeader): number => WEIGHTS_HEADER_SIZE + h.plaintextSize + 16 * h.chunkCount;
