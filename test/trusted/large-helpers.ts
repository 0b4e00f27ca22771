// Helpers of the slow large-model worker tests (test/trusted/large.slow.test.ts), and, run as a
// script, the child process that computes their ONNX Runtime reference:
//
//   node --import tsx test/trusted/large-helpers.ts reference '<ReferenceParams as JSON>'
//
// prints one JSON line (ReferenceResult) on stdout. The reference runs in its own process, after
// the worker has exited, so that the two multi-GiB ONNX Runtime sessions never coexist.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as F from "../../host/formats/index.ts";
import { readChunks, syntheticMlp, type MlpOptions, type SyntheticMlp } from "../../host/onnx/build.ts";
import type { Trust } from "./helpers.ts";

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;
const HERE = fileURLToPath(import.meta.url);
const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

export const fmt = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;
export const say = (msg: string): void => void process.stderr.write(`[large] ${msg}\n`);

// ---- memory of a process, from /proc ----------------------------------------------------------

export interface ProcMem {
  /** VmRSS: resident now. */
  rss: number;
  /** VmHWM: the peak resident set over the process's life. */
  hwm: number;
}

export function procMem(pid: number | "self" = "self"): ProcMem {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)![1]) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/**
 * The WebAssembly linear memories of a V8 process, seen from outside through /proc/<pid>/maps.
 *
 * V8 (x64, trap-handler bounds checks) reserves 10 GiB of address space per 32-bit memory: a
 * 2 GiB inaccessible guard, then the memory's current pages, mapped read-write, then
 * inaccessible space up to 8 GiB. `memory.grow` only widens the read-write part. So each linear
 * memory is one anonymous rw mapping whose neighbours are anonymous PROT_NONE mappings, the one
 * before it at least 2 GiB long, and the mapping's length is exactly `memory.buffer.byteLength`.
 * (Adjacent reservations' guards merge into one PROT_NONE mapping, hence "at least".) Nothing
 * else in a Node process has that shape: malloc and ArrayBuffer memory are plain rw mappings.
 *
 * Returns the sizes in bytes, in address order.
 */
export function wasmMemories(pid: number): { start: bigint; size: number }[] {
  const rows = readFileSync(`/proc/${pid}/maps`, "utf8").trim().split("\n").map((line) => {
    const f = line.trim().split(/\s+/);
    const [a, e] = f[0].split("-").map((x) => BigInt(`0x${x}`));
    return { a, e, perms: f[1], anon: f[4] === "0" && f.length === 5 };
  });
  const out: { start: bigint; size: number }[] = [];
  rows.forEach((r, i) => {
    const before = rows[i - 1];
    const after = rows[i + 1];
    if (
      r.anon && r.perms.startsWith("rw") && before && after &&
      before.anon && before.perms === "---p" && before.e === r.a && before.e - before.a >= 2n ** 31n &&
      after.anon && after.perms === "---p" && after.a === r.e
    ) out.push({ start: r.a, size: Number(r.e - r.a) });
  });
  return out;
}

// ---- the model owner's side: seal to a file in constant memory -----------------------------

export interface SealedToFile {
  manifest: F.BuiltManifest;
  bundle: Uint8Array;
  graph: Uint8Array;
  key: { keyId: Uint8Array; dataKey: Uint8Array };
  /** SHA-256 of the plaintext weights stream (the files concatenated), computed while sealing. */
  weightsSha256: string;
  sealedSize: number;
  ms: number;
}

/** A synthetic MLP's manifest inputs and outputs: x [1..8, inputDim] → y [1..8, outputDim]. */
export const mlpSpecs = (m: SyntheticMlp, maxBatch = 8) => ({
  inputs: [{ name: "x", dtype: F.DTYPE.FLOAT32, dims: [{ min: 1, max: maxBatch }, { min: m.inputDim, max: m.inputDim }] }],
  outputs: [{ name: "y", dtype: F.DTYPE.FLOAT32, dims: [{ min: 1, max: maxBatch }, { min: m.outputDim, max: m.outputDim }] }],
});

/**
 * Seals the MLP's weights (generated lazily, 4 MiB at a time into one reused buffer) straight to
 * `path`, builds the manifest and signs it with two of the three reviewers. Nothing of size
 * proportional to the weights is ever held in memory.
 */
export async function sealMlpToFile(trust: Trust, m: SyntheticMlp, name: string, path: string, chunkSize: number): Promise<SealedToFile> {
  const key = { keyId: new Uint8Array(randomBytes(16)), dataKey: new Uint8Array(randomBytes(32)) };
  const plain = createHash("sha256");
  const total = m.files.reduce((a, f) => a + f.size, 0);
  let nextReport = 0.1;
  const t0 = Date.now();
  const sw = await F.sealWeights({
    files: m.files.map((f) => ({
      location: f.location,
      size: f.size,
      source: async function* () {
        for await (const piece of readChunks(f, 4 * MiB, true)) {
          plain.update(piece);
          yield piece;
        }
      },
    })),
    dataKey: key.dataKey,
    keyId: key.keyId,
    chunkSize,
    out: path,
    onProgress: (done) => {
      if (done >= nextReport * total) {
        say(`${name}: sealed ${fmt(done)} of ${fmt(total)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
        nextReport += 0.1;
      }
    },
  });
  const manifest = F.buildManifest({ name, version: 1, graph: m.graph, ...mlpSpecs(m), weights: sw.descriptor });
  const bundle = F.assembleBundle([F.signManifest(manifest.bytes, trust.reviewers[1]), F.signManifest(manifest.bytes, trust.reviewers[2])]);
  return { manifest, bundle, graph: m.graph, key, weightsSha256: plain.digest("hex"), sealedSize: sw.sealedSize, ms: Date.now() - t0 };
}

// ---- the reference: ONNX Runtime on the unsealed model, in a child process ---------------

export interface ReferenceParams {
  mlp: MlpOptions;
  /** One request per entry: x = sampleInput(batch, seed). */
  feeds: { batch: number; seed: number }[];
}

export interface ReferenceResult {
  graphSha256: string;
  weightsSha256: string;
  /** Per feed: SHA-256 of x, and y as ONNX Runtime returned it. */
  outputs: { inputSha256: string; dims: number[]; type: string; bytesB64: string }[];
  /** The child's VmHWM: plain ONNX Runtime's peak for this model (external data from memory). */
  hwm: number;
  sessionMs: number;
}

export const sha256Hex = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** The input the worker and the reference both get for one feed. */
export const feedInput = (m: SyntheticMlp, f: { batch: number; seed: number }): Float32Array => m.sampleInput(f.batch, f.seed);

/**
 * Runs the reference in a child process (node --import tsx this file) and returns its result.
 * The child rebuilds the same deterministic synthetic model from `params` and reports hashes of
 * its graph, weights and inputs, so the caller can check it ran on exactly what was sealed.
 */
export function referenceInChild(params: ReferenceParams, timeoutMs: number): Promise<ReferenceResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", HERE, "reference", JSON.stringify(params)], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ORT_DISABLE_TELEMETRY: "1" },
    });
    let out = "";
    let err = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr!.setEncoding("utf8").on("data", (s: string) => {
      err += s;
      if (err.length > 1 << 16) err = err.slice(-(1 << 16));
      process.stderr.write(s); // the child's progress lines
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`reference child exited with ${signal ?? code}: ${err.slice(-2000)}`));
      try {
        resolve(JSON.parse(out.trim().split("\n").at(-1)!) as ReferenceResult);
      } catch (e) {
        reject(new Error(`reference child printed no result: ${(e as Error).message}; stdout ${out.slice(-500)}`));
      }
    });
  });
}

async function referenceMain(params: ReferenceParams): Promise<void> {
  const { externalData, run, session } = await import("../../host/onnx/run.ts");
  const m = syntheticMlp(params.mlp);
  say(`reference: ${fmt(m.weightBytes)} of weights in ${m.files.length} locations, generating them in memory`);
  const ext = await externalData(m.files);
  const h = createHash("sha256");
  for (const e of ext) h.update(e.data);
  const weightsSha256 = h.digest("hex");
  const t0 = Date.now();
  const s = await session(m.graph, ext);
  const sessionMs = Date.now() - t0;
  say(`reference: session built in ${(sessionMs / 1000).toFixed(1)} s; running ${params.feeds.length} request(s)`);
  ext.length = 0; // ONNX Runtime has its own copy; let the buffers go
  const outputs: ReferenceResult["outputs"] = [];
  for (const f of params.feeds) {
    const x = feedInput(m, f);
    const y = (await run(s, { x: { type: "float32", dims: [f.batch, m.inputDim], data: x } })).y;
    outputs.push({ inputSha256: sha256Hex(new Uint8Array(x.buffer)), dims: y.dims, type: y.type, bytesB64: Buffer.from(y.bytes).toString("base64") });
  }
  await s.release();
  const result: ReferenceResult = { graphSha256: sha256Hex(m.graph), weightsSha256, outputs, hwm: procMem().hwm, sessionMs };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (process.argv[1] === HERE && process.argv[2] === "reference") {
  referenceMain(JSON.parse(process.argv[3]) as ReferenceParams).catch((e: unknown) => {
    process.stderr.write(`reference failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
