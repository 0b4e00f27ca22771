// Streams a sealed weights file (SPEC §9) into a worker's load-weights, one piece per frame,
// like host/worker/client.ts loadSealedWeights, but reading each piece with one positional
// read straight into the buffer that is sent (no re-splitting copy), with the next reads
// issued while earlier pieces are still in flight.
import { open } from "node:fs/promises";
import * as F from "../../host/formats/index.ts";
import type { WorkerClient } from "../../host/worker/client.ts";

export interface StreamStats {
  pieces: number;
  bytes: number;
}

/**
 * `beforeLast` runs once every piece but the last is acknowledged, right before the last one
 * (whose load-weights call also runs finish-weights) is sent: it splits the load in two phases.
 */
export async function streamSealedFile(
  client: WorkerClient, program: number, path: string, opts: { inFlight: number; beforeLast?: () => void },
): Promise<StreamStats> {
  const fh = await open(path, "r");
  try {
    const read = async (pos: number, len: number): Promise<Uint8Array> => {
      const buf = new Uint8Array(len);
      let o = 0;
      while (o < len) {
        const { bytesRead } = await fh.read(buf, o, len - o, pos + o);
        if (bytesRead === 0) throw new Error(`${path}: ends at ${pos + o}, expected ${pos + len}`);
        o += bytesRead;
      }
      return buf;
    };
    const headerBytes = await read(0, F.WEIGHTS_HEADER_SIZE);
    const h = F.decodeWeightsHeader(headerBytes);
    const places: [number, number][] = [];
    let pos = F.WEIGHTS_HEADER_SIZE;
    for (let i = 0; i < h.chunkCount; i++) {
      const n = F.chunkWireLength(h, i);
      places.push([pos, n]);
      pos += n;
    }
    const inFlight = Math.max(1, opts.inFlight);
    const send = (piece: Uint8Array) => {
      const p = client.loadWeights(program, piece);
      p.catch(() => undefined); // awaited below in order; never an unhandled rejection meanwhile
      return p;
    };
    const window: Promise<void>[] = [send(headerBytes)];
    let bytes = headerBytes.length;
    // One read ahead of the sends: the read of piece i+1 overlaps the sending of piece i.
    let next = places.length > 0 ? read(...places[0]) : undefined;
    for (let i = 0; i < places.length; i++) {
      const piece = await next!;
      next = i + 1 < places.length ? read(...places[i + 1]) : undefined;
      const last = i === places.length - 1;
      while (window.length >= (last && opts.beforeLast ? 1 : inFlight)) await window.shift();
      if (last) opts.beforeLast?.();
      window.push(send(piece));
      bytes += piece.length;
    }
    while (window.length > 0) await window.shift();
    return { pieces: 1 + places.length, bytes };
  } finally {
    await fh.close();
  }
}
