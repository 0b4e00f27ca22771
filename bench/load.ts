// npm run bench:load [-- --json] [--sizes 256,1024] [--pairs-256 5] [--pairs-1024 3]
//                                [--chunk-kib 1024] [--in-flight 2] [--streamer direct|client]
// Confidential model load vs a plain ONNX Runtime load of the same model, in paired rounds.
//
// Confidential (timed from the parent, in a fresh worker that is already initialised and holds
// the data key): load-program (manifest + two reviewer signatures + graph hash), then the
// sealed weights streamed from a file on disk through the worker channel into load-weights
// (decryption, SHA-512 commitment, staging), ending in finish-weights (session creation; the
// worker logs its own timing of it, which splits the breakdown).
// Baseline (timed from the parent, in a fresh child process spawned like the worker — same
// node, flags and tsx loader — with onnxruntime-node already imported): read the plain weight
// files into memory and InferenceSession.create(graph, { externalData }) with the worker's
// session options.
// Each pair runs both (order alternating); the ratio is taken per pair, reported as the median.
// Peak RSS is each process's VmHWM right after its load.
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as F from "../host/formats/index.ts";
import { syntheticMlp } from "../host/onnx/build.ts";
import { loadSealedWeights } from "../host/worker/client.ts";
import { JsonChild } from "./lib/node-child.ts";
import { MiB, procMem, tempDir } from "./lib/proc.ts";
import { median, msSince, nowNs, round, table } from "./lib/stats.ts";
import { streamSealedFile } from "./lib/stream-weights.ts";
import { makeTrust, newKey, readyWorker, sealFromFiles, writePlainFiles, type Program } from "./lib/veil.ts";

const argv = process.argv.slice(2);
const json = argv.includes("--json");
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const SIZES = opt("sizes", "256,1024").split(",").map(Number);
const PAIRS: Record<number, number> = { 256: Number(opt("pairs-256", "5")), 1024: Number(opt("pairs-1024", "3")) };
const CHUNK = Number(opt("chunk-kib", "1024")) * 1024;
const IN_FLIGHT = Number(opt("in-flight", "2"));
const STREAMER = opt("streamer", "direct");
const NODE_ARGS = ["--expose-gc"]; // what WorkerClient.spawn uses by default; the baseline child gets the same
const BATCH = 4;

const t0All = nowNs();
const trust = makeTrust();
const key = newKey();
const tmp = tempDir("veil-bench-load-");

console.log(`bench:load — confidential load vs plain ONNX Runtime load, ${process.version}, onnxruntime-node ${(await import("onnxruntime-node/package.json", { with: { type: "json" } })).default.version}`);
console.log(`  model: synthetic MLP (host/onnx syntheticMlp, float32, one external-data file), sizes ${SIZES.map((s) => `${s} MiB`).join(", ")}`);
console.log(`  sealed: chunk ${CHUNK / 1024} KiB (SPEC §9), read from a file on disk; ${STREAMER === "direct" ? "one positional read per piece" : "host/worker loadSealedWeights"}, ${IN_FLIGHT} pieces in flight; worker over stdin/stdout`);
console.log(`  session options (both sides, host/trusted/ort-runtime.ts): cpu, graphOptimizationLevel "all", log level fatal; node flags ${NODE_ARGS.join(" ")} + tsx`);
console.log(`  method: fresh processes per load, paired rounds (order alternates), median of per-pair ratios; peak RSS = VmHWM of each process after its load`);

interface ConfRun { totalMs: number; verifyMs: number; streamMs: number; sessionMs: number; rssBefore: number; hwm: number; check?: string }
interface BaseRun { totalMs: number; readMs: number; createMs: number; rssBefore: number; hwm: number; check?: string }

const outputHash = (dims: number[], bytes: Uint8Array) => createHash("sha256").update(dims.join(",")).update(bytes).digest("hex").slice(0, 16);

async function confidential(p: Program, sealedPath: string, input: Float32Array | undefined): Promise<ConfRun> {
  const w = await readyWorker(trust, key, { nodeArgs: NODE_ARGS });
  try {
    const before = procMem(w.pid);
    const t0 = nowNs();
    const h = await w.client.loadProgram(p.manifest.bytes, p.bundle, p.graph);
    const verifyMs = msSince(t0);
    const t1 = nowNs();
    if (STREAMER === "direct") await streamSealedFile(w.client, h, sealedPath, { inFlight: IN_FLIGHT });
    else await loadSealedWeights(w.client, h, sealedPath, { inFlight: IN_FLIGHT });
    const weightsMs = msSince(t1);
    const totalMs = msSince(t0);
    const after = procMem(w.pid);
    // The worker's own timing of session creation arrives on stderr beside the reply.
    for (let i = 0; i < 100 && w.sessionMs.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const sessionMs = w.sessionMs[0] ?? NaN;
    let check: string | undefined;
    if (input) {
      const req = F.sealRequest({
        loader: w.report, programDigest: p.manifest.digest,
        request: { kind: 1, inputs: [{ name: "x", dtype: F.DTYPE.FLOAT32, dims: [BATCH, 64], data: new Uint8Array(input.buffer.slice(0)) }] },
      });
      const res = req.response.openResponse(await w.client.infer(h, req.bytes));
      if (res.kind !== 1) throw new Error("unexpected response kind");
      check = outputHash(res.outputs[0].dims, res.outputs[0].data);
    }
    return { totalMs, verifyMs, streamMs: weightsMs - sessionMs, sessionMs, rssBefore: before.rss, hwm: after.hwm, check };
  } finally {
    await w.client.close();
  }
}

async function baseline(graphPath: string, files: { location: string; path: string }[], input: Float32Array | undefined): Promise<BaseRun> {
  const c = JsonChild.spawn("bench/lib/plain-load-child.ts", NODE_ARGS);
  try {
    await c.next(); // ready: onnxruntime-node imported
    const t0 = nowNs();
    const r = await c.call({ op: "load", graph: graphPath, files });
    const totalMs = msSince(t0);
    if (typeof r.createMs !== "number") throw new Error(`baseline child: ${JSON.stringify(r)}`);
    let check: string | undefined;
    if (input) {
      const o = (await c.call({ op: "run", feeds: { x: { type: "float32", dims: [BATCH, 64], data: Buffer.from(input.buffer).toString("base64") } } })) as {
        outputs: Record<string, { dims: number[]; data: string }>;
      };
      check = outputHash(o.outputs.y.dims, Buffer.from(o.outputs.y.data, "base64"));
    }
    return { totalMs, readMs: r.readMs as number, createMs: r.createMs as number, rssBefore: r.rssBefore as number, hwm: r.hwm as number, check };
  } finally {
    await c.close();
  }
}

interface SizeResult { mib: number; pairs: number; conf: ConfRun[]; base: BaseRun[]; ratio: number; rssDelta: number; prepMs: number }
const results: SizeResult[] = [];

for (const mib of SIZES) {
  const tp = nowNs();
  const dir = join(tmp.dir, `${mib}`);
  (await import("node:fs")).mkdirSync(dir);
  const mlp = syntheticMlp({ weightsMiB: mib, seed: mib });
  const plain = await writePlainFiles(mlp.files, dir);
  const graphPath = join(dir, "graph.onnx");
  writeFileSync(graphPath, mlp.graph);
  const sealedPath = join(dir, "sealed.bin");
  const program = await sealFromFiles(trust, key, {
    name: `mlp-${mib}`, graph: mlp.graph,
    inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 64, max: 64 }] }],
    outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 16, max: 16 }] }],
  }, plain, sealedPath, CHUNK);
  const prepMs = msSince(tp);
  const input = mlp.sampleInput(BATCH, 7);
  const pairs = PAIRS[mib] ?? 3;
  const conf: ConfRun[] = [];
  const base: BaseRun[] = [];
  for (let i = 0; i < pairs; i++) {
    const check = i === 0 ? input : undefined; // one end-to-end output comparison, after the timed load
    if (i % 2 === 0) {
      conf.push(await confidential(program, sealedPath, check));
      base.push(await baseline(graphPath, plain, check));
    } else {
      base.push(await baseline(graphPath, plain, check));
      conf.push(await confidential(program, sealedPath, check));
    }
    if (!json) process.stderr.write(`  ${mib} MiB pair ${i + 1}/${pairs}: confidential ${conf[i].totalMs.toFixed(0)} ms, plain ${base[i].totalMs.toFixed(0)} ms\n`);
  }
  if (conf[0].check !== base[0].check) throw new Error(`${mib} MiB: confidential and plain sessions disagree (${conf[0].check} vs ${base[0].check})`);
  const ratio = median(conf.map((c, i) => c.totalMs / base[i].totalMs));
  const rssDelta = median(conf.map((c, i) => (c.hwm - base[i].hwm) / MiB));
  results.push({ mib, pairs, conf, base, ratio, rssDelta, prepMs });
  (await import("node:fs")).rmSync(dir, { recursive: true, force: true });
}
tmp.cleanup();

const m = (xs: number[]) => median(xs).toFixed(0);
console.log("");
console.log(`medians over pairs (ms; RSS in MiB); outputs of one request checked equal on both sides (sha256 ${results.map((r) => r.conf[0].check).join(", ")})`);
table(
  ["weights", "pairs", "verify (load-program)", "stream+decrypt", "finish-weights (session)", "confidential total", "plain: read", "plain: session create", "plain total", "confidential / plain"],
  results.map((r) => [
    `${r.mib} MiB`, r.pairs,
    Number(m(r.conf.map((c) => c.verifyMs))), Number(m(r.conf.map((c) => c.streamMs))), Number(m(r.conf.map((c) => c.sessionMs))), Number(m(r.conf.map((c) => c.totalMs))),
    Number(m(r.base.map((b) => b.readMs))), Number(m(r.base.map((b) => b.createMs))), Number(m(r.base.map((b) => b.totalMs))),
    `${r.ratio.toFixed(3)}×`,
  ]),
);
console.log("");
table(
  ["weights", "worker RSS before", "worker peak (VmHWM)", "plain RSS before", "plain peak (VmHWM)", "peak − plain peak", "stream MB/s"],
  results.map((r) => [
    `${r.mib} MiB`,
    Number(m(r.conf.map((c) => c.rssBefore / MiB))), Number(m(r.conf.map((c) => c.hwm / MiB))),
    Number(m(r.base.map((b) => b.rssBefore / MiB))), Number(m(r.base.map((b) => b.hwm / MiB))),
    Number(r.rssDelta.toFixed(0)),
    Number((r.mib * MiB / 1e6 / (median(r.conf.map((c) => c.streamMs)) / 1e3)).toFixed(0)),
  ]),
);
console.log(`preparation (plain files + sealing, untimed): ${results.map((r) => `${r.mib} MiB ${(r.prepMs / 1e3).toFixed(1)} s`).join(", ")}; whole run ${(msSince(t0All) / 1e3).toFixed(0)} s`);

if (json) {
  const by = (mib: number) => results.find((r) => r.mib === mib);
  const out: Record<string, number | null> = {
    load_256mib_vs_plain: by(256) ? round(by(256)!.ratio, 3) : null,
    load_1gib_vs_plain: by(1024) ? round(by(1024)!.ratio, 3) : null,
    load_peak_rss_over_plain_mib: round(Math.max(...results.map((r) => r.rssDelta)), 1),
  };
  for (const r of results) out[`load_peak_rss_over_plain_mib_${r.mib}mib`] = round(r.rssDelta, 1);
  console.log(JSON.stringify(out));
}
