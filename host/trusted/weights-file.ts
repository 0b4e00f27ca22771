// Trusted: reads a sealed weights stream (SPEC §9) from a file named by the parent, straight
// into the loader's argument arena, one piece per load-weights call. It runs in the trusted
// worker because it writes into the loader's memory; what it reads is ciphertext from
// untrusted storage, so nothing here decides anything: the loader checks every byte.
// One read per piece and no copy between the file and the loader: the parent's pipe, the
// frame decoder and the copy into the arena all drop out of the path.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
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

  /** Opens `path` and checks that its length is the one its header implies. */
  static open(path: string): WeightsFileLoad {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new WeightsFileError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new WeightsFileError(`${path}: not a regular file`);
      const header = new Uint8Array(HEADER);
      if (st.size < HEADER || readFull(fd, header, 0) !== HEADER) throw new WeightsFileError(`${path}: shorter than a weights header (${st.size} bytes)`);
      const load = new WeightsFileLoad(fd, header, path);
      const want = load.expectedLength();
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

  /** The file's length (checked at open). */
  get bytesTotal(): number {
    return this.expectedLength();
  }

  /** Header plus each chunk with its tag (SPEC §9); NaN if the header is not a stream. */
  private expectedLength(): number {
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

function readFull(fd: number, into: Uint8Array, position: number): number {
  let got = 0;
  while (got < into.length) {
    const n = readSync(fd, into, got, into.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}
