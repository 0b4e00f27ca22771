// The confidential side of the benchmarks, following test/trusted/worker.test.ts: a trust
// configuration of three reviewers (threshold 2), a data key released to a real worker
// (init → wrapKey → unwrap-key), programs sealed by the model owner's tools (sealWeights,
// buildManifest, two reviewer signatures) and requests sealed by a client (sealRequest).
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import * as F from "../../host/formats/index.ts";
import type { WeightFile } from "../../host/onnx/build.ts";
import { WorkerClient, type WorkerOptions } from "../../host/worker/client.ts";
import { makeTrust, type Trust } from "../../test/trusted/helpers.ts";
import { ownChild } from "./proc.ts";

// Three reviewers, threshold 2: the tests' trust configuration.
export { makeTrust, type Trust };

export interface DataKey {
  keyId: Uint8Array;
  dataKey: Uint8Array;
}

export const newKey = (): DataKey => ({ keyId: new Uint8Array(randomBytes(16)), dataKey: new Uint8Array(randomBytes(32)) });

export interface Program {
  manifest: F.BuiltManifest;
  /** Two reviewer signatures (threshold 2 of 3). */
  bundle: Uint8Array;
  graph: Uint8Array;
}

export interface ProgramSpec {
  name: string;
  graph: Uint8Array;
  inputs: F.TensorSpec[];
  outputs: F.TensorSpec[];
  generate?: F.GenerateSpec;
}

function sign(trust: Trust, spec: ProgramSpec, descriptor: F.WeightsDescriptor): Program {
  const manifest = F.buildManifest({
    name: spec.name, version: 1, graph: spec.graph, inputs: spec.inputs, outputs: spec.outputs, generate: spec.generate, weights: descriptor,
  });
  const bundle = F.assembleBundle([F.signManifest(manifest.bytes, trust.reviewers[2]), F.signManifest(manifest.bytes, trust.reviewers[0])]);
  return { manifest, bundle, graph: spec.graph };
}

/** Writes each weight file to `dir` as plaintext (the baseline's input), in constant memory. */
export async function writePlainFiles(files: readonly WeightFile[], dir: string, bufSize = 8 << 20): Promise<{ location: string; path: string; size: number }[]> {
  const out = [];
  const buf = new Uint8Array(bufSize);
  for (const [i, f] of files.entries()) {
    const path = join(dir, `plain-${i}.bin`);
    const fh = await open(path, "w");
    try {
      for (let o = 0; o < f.size; o += bufSize) {
        const piece = await f.read(o, Math.min(bufSize, f.size - o), buf);
        let w = 0;
        while (w < piece.length) w += (await fh.write(piece, w, piece.length - w, o + w)).bytesWritten;
      }
    } finally {
      await fh.close();
    }
    out.push({ location: f.location, path, size: f.size });
  }
  return out;
}

/** Seals plaintext weight files (on disk) into one sealed stream file; signs the manifest. */
export async function sealFromFiles(
  trust: Trust, key: DataKey, spec: ProgramSpec,
  plain: readonly { location: string; path: string; size: number }[], sealedPath: string, chunkSize: number,
): Promise<Program> {
  const sw = await F.sealWeights({
    files: plain.map((p) => ({ location: p.location, size: p.size, path: p.path })),
    dataKey: key.dataKey, keyId: key.keyId, chunkSize, out: sealedPath,
  });
  return sign(trust, spec, sw.descriptor);
}

/** Seals in-memory (or lazily generated) weight files into memory: for small models only. */
export async function sealInMemory(trust: Trust, key: DataKey, spec: ProgramSpec, files: readonly WeightFile[], chunkSize = 1 << 16): Promise<{ program: Program; sealed: Uint8Array[] }> {
  const sealed: Uint8Array[] = [];
  const sw = await F.sealWeights({
    files: files.map((f) => ({ location: f.location, size: f.size, source: async function* () { yield await f.read(0, f.size); } })),
    dataKey: key.dataKey, keyId: key.keyId, chunkSize, out: (b) => void sealed.push(b),
  });
  return { program: sign(trust, spec, sw.descriptor), sealed };
}

export interface ReadyWorker {
  /** Where calls go: the spawned worker's stdin/stdout, or a connection to its Unix socket. */
  client: WorkerClient;
  /** The spawned process's own client (the same object as `client` over stdio). */
  spawned: WorkerClient;
  report: Uint8Array;
  pid: number;
  /** Milliseconds of each "session ready" the worker logged (its own timing of session creation). */
  sessionMs: number[];
  /** Milliseconds measure-weights waited for the weights measurement (SPEC §9.1), per session. */
  measureWaitMs: number[];
  /** Minor page faults and kernel CPU ms while each session was built (worker log). */
  sessionFaults: number[];
  sessionSysMs: number[];
}

/**
 * Spawns a worker, initialises it with the trust config and releases the data key to it.
 * With `socketPath`, the worker serves that Unix socket and calls go over a connection to it.
 */
export async function readyWorker(trust: Trust, key: DataKey, opts: WorkerOptions = {}): Promise<ReadyWorker> {
  const sessionMs: number[] = [];
  const measureWaitMs: number[] = [];
  const sessionFaults: number[] = [];
  const sessionSysMs: number[] = [];
  const spawned = WorkerClient.spawn({
    logLevel: "info",
    ...opts,
    onLog: (e) => {
      if (typeof e === "object" && e.event === "weights measured" && typeof e.waitMs === "number") measureWaitMs.push(e.waitMs);
      if (typeof e === "object" && e.event === "session ready" && typeof e.ms === "number") {
        sessionMs.push(e.ms);
        if (typeof e.minorFaults === "number") sessionFaults.push(e.minorFaults);
        if (typeof e.sysMs === "number") sessionSysMs.push(e.sysMs);
      }
      opts.onLog?.(e);
    },
  });
  ownChild(spawned.child!);
  let client = spawned;
  if (opts.socketPath) {
    // The socket node appears once the worker listens (its "listening" log is info-level only).
    for (let i = 0; !existsSync(opts.socketPath); i++) {
      if (spawned.closed || i > 3000) throw new Error("the worker did not open its socket");
      await new Promise((r) => setTimeout(r, 10));
    }
    client = await WorkerClient.connect(opts.socketPath);
  }
  const report = await client.init(trust.trustConfig, new Uint8Array(randomBytes(32)));
  await client.unwrapKey(F.wrapKey({ report, keyId: key.keyId, dataKey: key.dataKey }));
  return { client, spawned, report, pid: spawned.pid!, sessionMs, measureWaitMs, sessionFaults, sessionSysMs };
}
