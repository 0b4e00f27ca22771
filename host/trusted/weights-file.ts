// Trusted: reads a sealed weights stream (SPEC §9) from a file named by the parent, straight
// into the loader's argument arena, one piece per load-weights call. It runs in the trusted
// worker because it writes into the loader's memory; what it reads is ciphertext from
// untrusted storage, so nothing here decides anything: the loader checks every byte.
// One read per piece and no copy between the file and the loader: the parent's pipe, the
// frame decoder and the copy into the arena all drop out of the path.
import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync, realpathSync } from "node:fs";
import { sep } from "node:path";
import type { LoaderInstance } from "./loader-instance.ts";

/** SPEC §9: the WeightsHeader is 60 bytes; chunk_size at 40, chunk_count at 44, plaintext_size at 52. */
const HEADER = 60;
const TAG = 16;

/** The file cannot be used (not the loader's verdict: nothing was decided about its contents). */
export class WeightsFileError extends Error {}

export class WeightsFileLoad {
  private next = -1; // -1: the header; then chunk indices
  private pos = 0;
  private readonly chunkSize: number;
  private readonly count: number;
  private readonly size: number;

  private constructor(private readonly fd: number, header: Uint8Array, private readonly path: string) {
    const dv = new DataView(header.buffer, header.byteOffset, HEADER);
    this.chunkSize = dv.getUint32(40);
    // Variable time: inputs are public. Sizes only steer reads; the loader checks them.
    const count = dv.getBigUint64(44), size = dv.getBigUint64(52);
    if (count > BigInt(Number.MAX_SAFE_INTEGER) || size > BigInt(Number.MAX_SAFE_INTEGER)) throw new WeightsFileError(`${path}: header sizes out of range`);
    this.count = Number(count);
    this.size = Number(size);
  }

  /**
   * Opens `path`, which must be a regular file inside one of `dirs` (the operator's sealed-weights
   * storage: the parent names files, but cannot make the worker read, or describe, any other),
   * and checks that its length is the one its header implies.
   */
  static open(path: string, dirs: readonly string[]): WeightsFileLoad {
    if (dirs.length === 0) throw new WeightsFileError("this worker has no weights directory (start it with --weights-dir DIR)");
    let fd: number;
    try {
      // Non-blocking: a FIFO must not stall the worker's one thread; reads of a regular file
      // are unaffected.
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      throw new WeightsFileError(`${path}: cannot be opened inside the weights directories`);
    }
    try {
      // Where the descriptor really points, after every link: checked after opening, so the
      // path cannot be swapped in between.
      if (!inside(openedPath(fd, path), dirs)) throw new WeightsFileError(`${path}: cannot be opened inside the weights directories`);
      const st = fstatSync(fd);
      if (!st.isFile()) throw new WeightsFileError(`${path}: not a regular file`);
      const header = new Uint8Array(HEADER);
      if (st.size < HEADER || readFull(fd, header, 0) !== HEADER) throw new WeightsFileError(`${path}: shorter than a weights header (${st.size} bytes)`);
      const load = new WeightsFileLoad(fd, header, path);
      const want = load.bytesTotal;
      if (want !== st.size) throw new WeightsFileError(`${path}: ${st.size} bytes, but its header describes a ${want}-byte stream`);
      return load;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Bytes handed to the loader so far. */
  get bytesRead(): number {
    return this.pos;
  }

  /** Header plus each chunk with its tag (SPEC §9): the file's length, checked at open; NaN if the header is not a stream. */
  get bytesTotal(): number {
    if (this.chunkSize === 0) return NaN;
    return HEADER + this.size + TAG * this.count;
  }

  /** Length of the next piece on the wire. */
  private pieceLength(): number {
    if (this.next < 0) return HEADER;
    const last = this.next === this.count - 1;
    return (last ? this.size - this.next * this.chunkSize : this.chunkSize) + TAG;
  }

  /** Hands the next piece to the loader. True once the final chunk was accepted. */
  step(loader: LoaderInstance, program: number): boolean {
    const len = this.pieceLength();
    loader.loadWeightsFrom(program, len, (arena) => {
      if (readFull(this.fd, arena, this.pos) !== len) throw new WeightsFileError(`${this.path}: changed while being read`);
    });
    this.pos += len;
    this.next++;
    return this.next === this.count;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** The opened file's real path (Linux: /proc/self/fd); elsewhere the path as resolved now. */
function openedPath(fd: number, path: string): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return realpathSync(path);
  }
}

// Variable time: inputs are public.
function inside(real: string, dirs: readonly string[]): boolean {
  return dirs.some((d) => {
    let root: string;
    try {
      root = realpathSync(d);
    } catch {
      return false;
    }
    return real.startsWith(root.endsWith(sep) ? root : root + sep);
  });
}

function readFull(fd: number, into: Uint8Array, position: number): number {
  let got = 0;
  while (got < into.length) {
    const n = readSync(fd, into, got, into.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}
