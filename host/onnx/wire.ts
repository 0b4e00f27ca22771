// Protobuf wire-format primitives for the ONNX splitter and streaming writer (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// Hand-rolled because the splitter must walk a multi-GiB file by offsets without ever
// handing protobufjs the weight bytes; only varints, tags and lengths live here.

import { OnnxError } from "./errors.ts";

export const WT = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

/** Bytes needed to encode `v` (0 ≤ v ≤ 2^53) as a varint. */
export function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

export function encodeVarint(v: number): Uint8Array {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
  const out = new Uint8Array(varintSize(v));
  let i = 0;
  while (v >= 0x80) {
    out[i++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[i] = v;
  return out;
}

export function encodeTag(field: number, wireType: number): Uint8Array {
  return encodeVarint(field * 8 + wireType);
}

/** Tag and length prefix of a length-delimited field of `length` bytes. */
export function lenPrefix(field: number, length: number): Uint8Array {
  return concatBytes([encodeTag(field, WT.LEN), encodeVarint(length)]);
}

/** A complete length-delimited field. */
export function lenField(field: number, body: Uint8Array): Uint8Array {
  return concatBytes([lenPrefix(field, body.length), body]);
}

export function varintField(field: number, v: number): Uint8Array {
  return concatBytes([encodeTag(field, WT.VARINT), encodeVarint(v)]);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
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

/**
 * Decode a varint from `get(i)` byte reads. Values above 2^53 are refused: every length,
 * offset and tag the splitter needs fits, and a silent rounding would corrupt offsets.
 */
export function decodeVarintFrom(get: (i: number) => number, pos: number, end: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= end) throw new OnnxError("MALFORMED", `truncated varint at byte ${pos}`);
    const b = get(pos + i);
    value += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) {
      if (!Number.isSafeInteger(value)) throw new OnnxError("MALFORMED", `varint over 2^53 at byte ${pos}`);
      return { value, next: pos + i + 1 };
    }
    scale *= 128;
  }
  throw new OnnxError("MALFORMED", `varint longer than 10 bytes at byte ${pos}`);
}
