// Positioned, windowed reads of a protobuf file for the splitter (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// One fixed buffer serves tags and lengths; bulk reads allocate only what the caller keeps,
// so walking a multi-GiB model costs the window plus the graph bytes.

import type { FileHandle } from "node:fs/promises";
import { OnnxError } from "./errors.ts";
import { decodeVarintFrom, WT } from "./wire.ts";

export interface FieldSpan {
  field: number;
  wireType: number;
  /** Offset of the tag. */
  start: number;
  /** Offset of the value (after the length prefix for LEN fields). */
  valueStart: number;
  /** Offset just past the field. */
  end: number;
}

/** Fill `into` from `fh` at `position`, failing on a short file. */
export async function readFully(fh: FileHandle, into: Uint8Array, position: number, what: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) {
      throw new OnnxError("IO", `${what}: unexpected end of file at byte ${position + done}`);
    }
    done += bytesRead;
  }
}

export class Cursor {
  private readonly buf: Uint8Array;
  private start = 0;
  private len = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    private readonly what: string,
    windowSize = 64 << 10,
  ) {
    this.buf = new Uint8Array(windowSize);
  }

  /** Make [pos, pos + n) resident (n ≤ window), n clipped at the file end. */
  private async window(pos: number, n: number): Promise<void> {
    if (pos >= this.size) throw new OnnxError("MALFORMED", `unexpected end of data at byte ${pos}`);
    const want = Math.min(n, this.size - pos);
    if (pos >= this.start && pos + want <= this.start + this.len) return;
    this.start = pos;
    this.len = Math.min(this.buf.length, this.size - pos);
    await readFully(this.fh, this.buf.subarray(0, this.len), pos, this.what);
  }

  async varint(pos: number, end: number): Promise<{ value: number; next: number }> {
    await this.window(pos, 10);
    return decodeVarintFrom((i) => this.buf[i - this.start], pos, Math.min(end, this.start + this.len));
  }

  /** Skip a varint of any size (values are not needed, so no 2^53 limit). */
  async skipVarint(pos: number, end: number): Promise<number> {
    await this.window(pos, 10);
    for (let i = pos; i < Math.min(end, pos + 10, this.start + this.len); i++) {
      if ((this.buf[i - this.start] & 0x80) === 0) return i + 1;
    }
    throw new OnnxError("MALFORMED", `bad varint at byte ${pos}`);
  }

  /** A copy of [pos, pos + n). */
  async bytes(pos: number, n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    if (n <= this.buf.length) {
      await this.window(pos, n);
      out.set(this.buf.subarray(pos - this.start, pos - this.start + n));
    } else {
      await readFully(this.fh, out, pos, this.what);
    }
    return out;
  }

  /** The next field of a message spanning up to `end`, starting at `pos`. */
  async field(pos: number, end: number): Promise<FieldSpan> {
    const tag = await this.varint(pos, end);
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value % 8;
    if (field === 0 || field >= 2 ** 29) throw new OnnxError("MALFORMED", `invalid field number ${field} at byte ${pos}`);
    let valueStart = tag.next;
    let fieldEnd: number;
    switch (wireType) {
      case WT.VARINT: fieldEnd = await this.skipVarint(valueStart, end); break;
      case WT.I64: fieldEnd = valueStart + 8; break;
      case WT.I32: fieldEnd = valueStart + 4; break;
      case WT.LEN: {
        const len = await this.varint(valueStart, end);
        valueStart = len.next;
        fieldEnd = valueStart + len.value;
        break;
      }
      default:
        throw new OnnxError("MALFORMED", `unsupported wire type ${wireType} (field ${field}) at byte ${pos}`);
    }
    if (fieldEnd > end) throw new OnnxError("MALFORMED", `field ${field} at byte ${pos} runs past the end of its message (${fieldEnd} > ${end})`);
    return { field, wireType, start: pos, valueStart, end: fieldEnd };
  }
}
