// External-data layout and lazily read weight files (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// A weight file is a list of segments at aligned offsets; bytes are produced only when
// read(), so a multi-GiB weights stream never has to exist in memory or on disk at once.

import { OnnxError } from "./errors.ts";

/** ONNX Runtime cannot take one external-data buffer of 2 GiB or more. */
export const MAX_LOCATION_SIZE = 2 ** 31 - 1;
export const DEFAULT_ALIGN = 64;
/** SPEC §5.4: file_count is 1..64. */
export const MAX_LOCATIONS = 64;

export interface LayoutOptions {
  /** Alignment of each tensor inside its location (power of two; default 64). */
  align?: number;
  /** Largest size of one location in bytes (default 2^31 − 1). */
  maxLocationSize?: number;
  /** Locations are `${prefix}${i}.bin` (default "weights-"). */
  locationPrefix?: string;
}

/** One tensor's place in the weights files, as written into its external_data. */
export interface Placement {
  name: string;
  location: string;
  offset: number;
  length: number;
}

/** A source of one tensor's bytes: fill `into` with bytes [from, from + into.length). */
export type Fill = (into: Uint8Array, from: number) => Promise<void> | void;

export interface Segment {
  offset: number;
  length: number;
  fill: Fill;
}

export interface WeightFile {
  /** The external-data location (SPEC §5.4 ExternalFile.location). */
  readonly location: string;
  readonly size: number;
  /**
   * Bytes [offset, offset + length) of this file; alignment padding reads as zeros.
   * With `into` (≥ length bytes) the bytes land there and a view of it is returned, so a
   * streaming caller can reuse one buffer.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
}

const NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._\/-]{0,63}$/;

/** SPEC §1.4 name rules for an external-data location. */
export function checkLocationName(location: string): void {
  if (!NAME_RE.test(location)) {
    throw new OnnxError("UNSUPPORTED", `location "${location}" breaks the name rules (1..64 of A-Za-z0-9._-/, not starting with . or /)`);
  }
}

/**
 * Place tensors, in order, into locations: each aligned, a new location when the next
 * tensor would cross maxLocationSize. Zero-length tensors get no placement.
 */
export function layoutTensors(
  tensors: readonly { name: string; length: number }[],
  options: LayoutOptions = {},
): { placements: (Placement | undefined)[]; sizes: number[]; locations: string[] } {
  const align = options.align ?? DEFAULT_ALIGN;
  const max = options.maxLocationSize ?? MAX_LOCATION_SIZE;
  const prefix = options.locationPrefix ?? "weights-";
  if (!Number.isInteger(align) || align < 1 || (align & (align - 1)) !== 0 || align > 1 << 24) {
    throw new OnnxError("UNSUPPORTED", `align must be a power of two up to 2^24, got ${align}`);
  }
  if (!Number.isSafeInteger(max) || max < 1 || max > MAX_LOCATION_SIZE) {
    throw new OnnxError("UNSUPPORTED", `maxLocationSize must be 1..${MAX_LOCATION_SIZE}, got ${max}`);
  }
  const locations: string[] = [];
  const sizes: number[] = [];
  const open = () => {
    const loc = `${prefix}${locations.length}.bin`;
    checkLocationName(loc);
    locations.push(loc);
    sizes.push(0);
  };
  const placements = tensors.map(({ name, length }) => {
    if (length === 0) return undefined;
    if (length > max) {
      throw new OnnxError("TOO_LARGE", `initializer "${name}": ${length} bytes is over the ${max}-byte limit of one external-data location`);
    }
    if (locations.length === 0) open();
    let offset = alignUp(sizes[sizes.length - 1], align);
    if (offset + length > max) {
      open();
      offset = 0;
    }
    if (locations.length > MAX_LOCATIONS) {
      throw new OnnxError("TOO_LARGE", `weights need more than ${MAX_LOCATIONS} external-data locations`);
    }
    sizes[sizes.length - 1] = offset + length;
    return { name, location: locations[locations.length - 1], offset, length };
  });
  return { placements, sizes, locations };
}

export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/** A weight file assembled from segments (sorted, non-overlapping) with zero gaps. */
export function segmentedFile(location: string, size: number, segments: Segment[]): WeightFile {
  const segs = [...segments].sort((a, b) => a.offset - b.offset);
  return {
    location,
    size,
    async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new OnnxError("UNSUPPORTED", `${location}: read [${offset}, +${length}) outside 0..${size}`);
      }
      if (into && into.length < length) throw new OnnxError("UNSUPPORTED", `${location}: read buffer of ${into.length} bytes for ${length}`);
      const out = into ? into.subarray(0, length).fill(0) : new Uint8Array(length);
      const end = offset + length;
      // First segment ending after `offset`.
      let lo = 0;
      let hi = segs.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (segs[mid].offset + segs[mid].length <= offset) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < segs.length && segs[i].offset < end; i++) {
        const s = segs[i];
        const a = Math.max(offset, s.offset);
        const b = Math.min(end, s.offset + s.length);
        await s.fill(out.subarray(a - offset, b - offset), a - s.offset);
      }
      return out;
    },
  };
}

/**
 * The file in pieces of at most `chunkSize` bytes, in order. With `reuse`, every piece is
 * a view of one buffer: consume it before asking for the next.
 */
export async function* readChunks(file: WeightFile, chunkSize = 1 << 20, reuse = false): AsyncGenerator<Uint8Array> {
  const buf = reuse ? new Uint8Array(Math.min(chunkSize, file.size)) : undefined;
  for (let o = 0; o < file.size; o += chunkSize) {
    yield await file.read(o, Math.min(chunkSize, file.size - o), buf);
  }
}

/** The whole file in memory: for tests and small models only. */
export function readAll(file: WeightFile): Promise<Uint8Array> {
  return file.read(0, file.size);
}
