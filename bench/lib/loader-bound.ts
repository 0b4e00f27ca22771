// What bounds the confidential load, measured in the benchmark's own run:
// - the loader's load-weights throughput in this process (LoaderInstance, no channel), with an
//   accelerator that only copies each plaintext piece into one staging buffer, as the real one
//   does — the ceiling for streaming through any channel into a single-threaded worker;
// - the loader's one pass over every byte, ChaCha20-Poly1305 open, from the test build of
//   loader.wasm (same sources and options as the release build, with the primitives exported),
//   and the accelerator's measurement pass (SPEC §9.1), node:crypto SHA-256, which runs on its
//   second thread beside it.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import * as F from "../../host/formats/index.ts";
import { LoaderInstance } from "../../host/trusted/loader-instance.ts";
import { REPO_ROOT } from "../../host/worker/client.ts";
import { loadTestLoader } from "../../test/helpers/wasm.ts";
import { median } from "./stats.ts";
import type { DataKey, Program, Trust } from "./veil.ts";

/** Plaintext MB/s of load-weights in this process over every chunk but the last (no session). */
export async function inProcessLoaderMBps(trust: Trust, key: DataKey, p: Program, sealedPath: string): Promise<number> {
  let staging: Uint8Array | undefined;
  const total = Number(p.manifest.manifest.weights.plaintextSize);
  const loader = LoaderInstance.create(readFileSync(`${REPO_ROOT}/build/loader.wasm`), {
    accelerator: {
      createProgram() {},
      uploadWeights(_p, offset, data) {
        staging ??= new Uint8Array(total);
        staging.set(data, Number(offset));
      },
      measureWeights: () => 64, // not reached: the final chunk is never sent
      finishWeights: () => 64,
      run: () => 64,
      dropProgram() {},
    },
  });
  const report = loader.init(trust.trustConfig, new Uint8Array(randomBytes(32)));
  loader.unwrapKey(F.wrapKey({ report, keyId: key.keyId, dataKey: key.dataKey }));
  const h = loader.loadProgram(p.manifest.bytes, p.bundle, p.graph);
  const fh = await open(sealedPath, "r");
  try {
    const header = new Uint8Array(F.WEIGHTS_HEADER_SIZE);
    await fh.read(header, 0, header.length, 0);
    loader.loadWeights(h, header);
    const hd = F.decodeWeightsHeader(header);
    const buf = new Uint8Array(hd.chunkSize + 16);
    let pos = header.length;
    let ns = 0n;
    let bytes = 0;
    for (let i = 0; i < hd.chunkCount - 1; i++) {
      const n = F.chunkWireLength(hd, i);
      await fh.read(buf, 0, n, pos);
      pos += n;
      const t = process.hrtime.bigint();
      loader.loadWeights(h, buf.subarray(0, n)); // copied into the loader's memory by the binding
      ns += process.hrtime.bigint() - t;
      bytes += n - 16;
    }
    return bytes / 1e6 / (Number(ns) / 1e9);
  } finally {
    await fh.close();
    staging = undefined;
  }
}

/** MB/s of the loader's ChaCha20-Poly1305 open and the measurement's SHA-256 over `size` bytes (median of `reps`). */
export function primitiveMBps(size = 16 << 20, reps = 5): { sha256: number; aeadOpen: number } {
  const w = loadTestLoader();
  const x = w.exports;
  const key = new Uint8Array(randomBytes(32));
  const nonce = new Uint8Array(randomBytes(12));
  const sealed = chacha20poly1305(key, nonce).encrypt(new Uint8Array(size));
  const kp = w.put(key);
  const np = w.put(nonce);
  const src = w.put(sealed);
  const dst = w.alloc(size);
  const time = (f: () => void) => {
    f();
    const xs: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t = process.hrtime.bigint();
      f();
      xs.push(size / 1e6 / (Number(process.hrtime.bigint() - t) / 1e9));
    }
    return median(xs);
  };
  return {
    sha256: time(() => createHash("sha256").update(sealed).digest()),
    aeadOpen: time(() => {
      if (x.aead_open(kp, np, 0, 0, src, size + 16, dst) !== 0) throw new Error("aead_open failed");
    }),
  };
}
