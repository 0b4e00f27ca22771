// npm run bench:infer [-- --json] [--requests 2000] [--block 50] [--big-requests 300] [--big-block 1] [--trace]
//                                 [--parts 500] [--gen-runs 15] [--gen-tokens 64] [--settle-ms 80]
// Latency of confidential inference through a real worker vs ONNX Runtime run directly in this
// process on the same model, with the same session options and the same inputs.
//
// Confidential request, timed end to end in this process, in a session (SPEC §8.5, the client
// SDK's default): the client seals the request under the session's keys (host/formats
// ClientSession.seal: ChaCha20-Poly1305, no key exchange) → worker channel (stdin/stdout frames)
// → the loader opens it, checks the replay window, validates it against the manifest, runs ONNX
// Runtime, seals the response → the client opens it. The session is opened once per model, with
// one HPKE request, before the timed blocks and untimed. A fresh sequence number every request.
// One-shot (§8.1–§8.3, a separate row and JSON key): the client seals each request with its own
// HPKE key exchange (host/formats sealRequest), opens with openResponse.
// Outputs are checked bit-identical to the plain path first, on both confidential paths.
// Process floor: the same session.run in a child that WorkerClient spawns and frames exactly like
// the worker (bench/lib/plain-run-child.ts), raw tensor bytes both ways: what a separate process
// costs before veil does anything. Reported beside plain, and veil's cost over it.
// Plain: `await session.run(feeds)` (onnxruntime-node's public API) in this process, with the
// worker's default session options.
// The paths alternate in blocks (a short pause at each switch); p50/p99 over all requests of a
// path. The confidential path's parts are then timed alone the same way, to show where the
// time goes, and a what-if client (bench/lib/fast-client.ts: the same HPKE with node:crypto's
// X25519) runs beside the real one.
// Generation (models/tiny-lm when exported, else a GraphBuilder stand-in): the worker streams
// a greedy, seeded request (infer-begin/next, one record per token); the plain side is a JS
// greedy loop calling session.run on the growing context. Whole generations back to back,
// order alternating; (confidential − plain) / tokens per run, median over runs.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadavg } from "node:os";
import * as ort from "onnxruntime-node";
import * as F from "../host/formats/index.ts";
import { syntheticMlp, type SyntheticMlp } from "../host/onnx/build.ts";
import { externalData } from "../host/onnx/run.ts";
import { OrtAccelerator } from "../host/trusted/accelerator-ort.ts";
import { silentLogger } from "../host/trusted/log.ts";
import { OrtRuntime } from "../host/trusted/ort-runtime.ts";
import { LoaderInstance } from "../host/trusted/loader-instance.ts";
import { REPO_ROOT, WorkerClient, isWorkerError } from "../host/worker/client.ts";
import { argmaxLast, generateModel, generateSpec, tokenize } from "./lib/generate-model.ts";
import { fastSealer } from "./lib/fast-client.ts";
import { PLAIN_CHILD } from "./lib/plain-run-protocol.ts";
import { ownChild, tempDir } from "./lib/proc.ts";
import { median, msSince, nowNs, percentile, round, table, usSince } from "./lib/stats.ts";
import { makeTrust, newKey, readyWorker, sealInMemory, writePlainFiles, type Program, type ProgramSpec } from "./lib/veil.ts";

const argv = process.argv.slice(2);
const json = argv.includes("--json");
/** --trace: the 10 ms model's in-session requests split into segments on the shared monotonic clock. */
const TRACE = argv.includes("--trace");
const opt = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const REQUESTS = opt("requests", 2000);
const BLOCK = opt("block", 50);
const BIG_REQUESTS = opt("big-requests", 300);
const BIG_BLOCK = opt("big-block", 1);
const GEN_RUNS = opt("gen-runs", 15);
const GEN_TOKENS = opt("gen-tokens", 64);
const SMALL_BATCH = 1;
// After a run, ONNX Runtime's intra-op threads spin for about 40 ms on this machine (measured:
// a core's worth of CPU in each 10 ms window for ~40 ms; none with allow_spinning 0). A path
// measured inside the other process's spin gets one core instead of two, so every switch of
// path waits this long; 20 ms made both plain and in-session runs of the 10 ms model ~2× slow.
const SETTLE_MS = opt("settle-ms", 80);
const PARTS = opt("parts", 500);
const MAX_BATCH = 256;

const t0All = nowNs();
ort.env.logLevel = "fatal";
// Plain gets exactly what the worker's sessions get with no config (host/trusted/ort-runtime.ts),
// so the comparison is veil's cost, not a difference in ONNX Runtime settings.
const SESSION_OPTIONS = new OrtRuntime({}, silentLogger).sessionOptions as ort.InferenceSession.SessionOptions;
const RUN_OPTIONS: ort.InferenceSession.RunOptions = { logSeverityLevel: 4 };

const trust = makeTrust();
const key = newKey();
const tmp = tempDir("veil-bench-infer-");
// With --trace the worker logs its public per-request timings (debug level), matched below.
const workerLog: Record<string, number | string>[] = [];
const worker = await readyWorker(trust, key, {
  logLevel: TRACE ? "debug" : "warn",
  onLog: (e) => {
    if (TRACE && typeof e === "object" && (e.event === "run timing" || (e.event === "request done" && e.op === "infer"))) workerLog.push(e as Record<string, number | string>);
  },
});
/** Client-side stamps (monotonic µs) of traced in-session requests: start, sealed, reply in hand, opened. */
const clientStamps: number[][] = [];
const monoUs = () => Number(process.hrtime.bigint() / 1000n);
const { client, report } = worker;
// The process floor: ONNX Runtime alone in a child spawned and framed like the worker (no loader, no crypto).
const plainChild = WorkerClient.spawn({ entry: "bench/lib/plain-run-child.ts" });
ownChild(plainChild.child!);

// The same loader and accelerator code in this process (no channel, no client crypto), for the breakdown.
const localAcc = new OrtAccelerator({ config: {} });
const local = LoaderInstance.create(readFileSync(`${REPO_ROOT}/build/loader.wasm`), { accelerator: localAcc });
const localReport = local.init(trust.trustConfig, new Uint8Array(32).fill(3));
local.unwrapKey(F.wrapKey({ report: localReport, keyId: key.keyId, dataKey: key.dataKey }));

async function load(spec: ProgramSpec, files: SyntheticMlp["files"]): Promise<{ program: Program; handle: number; localHandle: number }> {
  const { program, sealed } = await sealInMemory(trust, key, spec, files);
  const handle = await client.loadProgram(program.manifest.bytes, program.bundle, program.graph);
  const localHandle = local.loadProgram(program.manifest.bytes, program.bundle, program.graph);
  for await (const piece of F.splitSealedWeights(sealed)) {
    await client.loadWeights(handle, piece);
    local.loadWeights(localHandle, piece);
  }
  return { program, handle, localHandle };
}

console.log(`bench:infer — confidential inference (client → worker → loader → ONNX Runtime → client) vs session.run in this process`);
console.log(`  ${process.version}, onnxruntime-node ${ort.env.versions.common ?? ""}; session options (both sides, the worker's defaults): ${JSON.stringify(SESSION_OPTIONS)}, default threads; worker over stdin/stdout`);
console.log(`  method: small and 10 ms models in a session opened once per model before the timed blocks (untimed), a fresh sequence number per request; one-shot rows seal each request with its own HPKE exchange; paths alternate in blocks; p50/p99 over all requests of a path; load average at start ${loadavg().map((x) => x.toFixed(1)).join(" ")} (2 cores, shared)`);

type Sample = number[];
const stat = (xs: Sample) => ({ p50: percentile(xs, 50), p99: percentile(xs, 99) });

/** Runs each contender `total` times, in alternating blocks of `block`; returns µs samples. */
async function interleave(contenders: Record<string, () => Promise<number> | number>, total: number, block: number, warmup = 20): Promise<Record<string, Sample>> {
  const names = Object.keys(contenders);
  for (const n of names) for (let i = 0; i < warmup; i++) await contenders[n]();
  const out: Record<string, Sample> = Object.fromEntries(names.map((n) => [n, []]));
  for (let b = 0; b * block < total; b++) {
    const order = names.map((_, i) => names[(i + b) % names.length]);
    for (const n of order) {
      // A pause at each switch lets the other process's ONNX Runtime threads stop spinning first (SETTLE_MS).
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      for (let i = 0; i < Math.min(block, total - b * block); i++) out[n].push(await contenders[n]());
    }
  }
  return out;
}

interface TensorCase {
  label: string;
  plain: Sample;
  /** In a session (opened untimed beforehand). */
  conf: Sample;
  /** One HPKE exchange per request (§8.1). */
  oneshot: Sample;
  /** What-if: the same request sealed with OpenSSL's X25519 (bench/lib/fast-client.ts). */
  confFast: Sample;
  /** The process floor: plain in a child spawned and framed like the worker, raw bytes both ways. */
  plainInChild: Sample;
  batch: number;
  mlp: SyntheticMlp;
  parts?: Record<string, Sample>;
  oneshotParts?: Record<string, Sample>;
}

async function tensorCase(label: string, mlp: SyntheticMlp, batch: number, total: number, block: number, withParts: boolean): Promise<TensorCase> {
  const { program, handle, localHandle } = await load({
    name: label, graph: mlp.graph,
    inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: MAX_BATCH }, { min: mlp.inputDim, max: mlp.inputDim }] }],
    outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: MAX_BATCH }, { min: mlp.outputDim, max: mlp.outputDim }] }],
  }, mlp.files);
  const session = await ort.InferenceSession.create(mlp.graph, { ...SESSION_OPTIONS, externalData: await externalData(mlp.files) });
  const childDir = join(tmp.dir, label);
  mkdirSync(childDir);
  writeFileSync(join(childDir, "model.onnx"), mlp.graph);
  const childLoad = { graph: join(childDir, "model.onnx"), files: await writePlainFiles(mlp.files, childDir), input: "x", inputDim: mlp.inputDim, output: "y" };
  await plainChild.request(PLAIN_CHILD.LOAD, [new TextEncoder().encode(JSON.stringify(childLoad))]);
  const input = mlp.sampleInput(batch, 5);
  const feeds = { x: new ort.Tensor("float32", input, [batch, mlp.inputDim]) };
  const inner = F.encodeInnerRequest({ kind: 1, inputs: [{ name: "x", dtype: 1, dims: [batch, mlp.inputDim], data: new Uint8Array(input.buffer.slice(0)) }] });
  const tensorList = F.encodeTensorList([{ name: "x", dtype: 1, dims: [batch, mlp.inputDim], data: new Uint8Array(input.buffer.slice(0)) }]);
  const seal = () => F.sealRequest({ loader: report, programDigest: program.manifest.digest, request: inner });

  // Same output on both paths, bit for bit.
  const want = (await session.run(feeds, RUN_OPTIONS)).y.data as Float32Array;
  const one = seal();
  const got = one.response.openResponse(await client.infer(handle, one.bytes));
  if (got.kind !== 1 || !Buffer.from(got.outputs[0].data).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))) {
    throw new Error(`${label}: the confidential output differs from session.run's`);
  }

  const plain = async () => {
    const t = nowNs();
    await session.run(feeds, RUN_OPTIONS);
    return usSince(t);
  };
  const inputBytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const fromChild = await plainChild.request(PLAIN_CHILD.RUN, [inputBytes]);
  if (!Buffer.from(fromChild).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))) throw new Error(`${label}: the plain child's output differs from session.run's`);
  const plainInChild = async () => {
    const t = nowNs();
    await plainChild.request(PLAIN_CHILD.RUN, [inputBytes]);
    return usSince(t);
  };
  const conf = async () => {
    const t = nowNs();
    const req = seal();
    const res = req.response.openResponse(await client.infer(handle, req.bytes));
    const us = usSince(t);
    if (res.kind !== 1) throw new Error("bad response");
    return us;
  };
  const sealFast = fastSealer(report, program.manifest.digest);
  const check = sealFast(inner);
  const gotFast = check.response.openResponse(await client.infer(handle, check.bytes));
  if (gotFast.kind !== 1 || !Buffer.from(gotFast.outputs[0].data).equals(Buffer.from(got.outputs[0].data))) throw new Error(`${label}: what-if client's output differs`);
  const confFast = async () => {
    const t = nowNs();
    const req = sealFast(inner);
    const res = req.response.openResponse(await client.infer(handle, req.bytes));
    const us = usSince(t);
    if (res.kind !== 1) throw new Error("bad response");
    return us;
  };
  // The session: opened once, untimed, before any timed block (SPEC §8.5.1).
  const opening = F.openSession({ loader: report, programDigest: program.manifest.digest });
  const veilSession = opening.accept(await client.sessionOpen(handle, opening.bytes));
  const viaSession = veilSession.seal(inner);
  const gotSession = viaSession.openResponse(await client.infer(handle, viaSession.bytes));
  if (gotSession.kind !== 1 || !Buffer.from(gotSession.outputs[0].data).equals(Buffer.from(got.outputs[0].data))) throw new Error(`${label}: the session's output differs`);
  const sessionConf = async () => {
    const t = nowNs();
    const stamp = [monoUs()];
    const req = veilSession.seal(inner);
    stamp.push(monoUs());
    const reply = await client.infer(handle, req.bytes);
    stamp.push(monoUs());
    const res = req.openResponse(reply);
    const took = usSince(t);
    if (res.kind !== 1) throw new Error("bad response");
    if (TRACE && label === "10ms-mlp") clientStamps.push([...stamp, monoUs()]);
    return took;
  };
  const main = await interleave({ plain, conf: sessionConf, oneshot: conf, confFast, plainInChild }, total, block);
  let parts: Record<string, Sample> | undefined;
  let oneshotParts: Record<string, Sample> | undefined;
  if (withParts) {
    // Where the session request's time goes: each part timed alone, its setup untimed.
    const localOpening = F.openSession({ loader: localReport, programDigest: program.manifest.digest });
    const localSession = localOpening.accept(local.sessionOpen(localHandle, localOpening.bytes));
    parts = await interleave({
      "client: session seal (host/formats, ChaCha20-Poly1305 on node:crypto)": () => {
        const t = nowNs();
        veilSession.seal(inner);
        return usSince(t);
      },
      "worker round trip: channel + loader + ORT (session request sealed beforehand)": async () => {
        const req = veilSession.seal(inner);
        const t = nowNs();
        await client.infer(handle, req.bytes);
        return usSince(t);
      },
      "client: session openResponse": async () => {
        const req = veilSession.seal(inner);
        const bytes = await client.infer(handle, req.bytes);
        const t = nowNs();
        req.openResponse(bytes);
        return usSince(t);
      },
      "channel only: worker hello round trip": async () => {
        const t = nowNs();
        await client.hello();
        return usSince(t);
      },
      "loader + ORT in this process (LoaderInstance.infer, session request, no channel)": () => {
        const req = localSession.seal(inner);
        const t = nowNs();
        local.infer(localHandle, req.bytes);
        return usSince(t);
      },
      "ORT alone in this process (the accelerator's run, TensorList in and out)": () => {
        const t = nowNs();
        localAcc.run(localHandle, tensorList);
        return usSince(t);
      },
    }, Math.min(total, PARTS), BLOCK, 5);
    // The same for the one-shot HPKE request.
    const localSeal = () => F.sealRequest({ loader: localReport, programDigest: program.manifest.digest, request: inner });
    oneshotParts = await interleave({
      "client: sealRequest (host/formats, HPKE on @noble)": () => {
        const t = nowNs();
        seal();
        return usSince(t);
      },
      "worker round trip: channel + loader + ORT (request sealed beforehand)": async () => {
        const req = seal();
        const t = nowNs();
        await client.infer(handle, req.bytes);
        return usSince(t);
      },
      "client: openResponse": async () => {
        const req = seal();
        const bytes = await client.infer(handle, req.bytes);
        const t = nowNs();
        req.response.openResponse(bytes);
        return usSince(t);
      },
      "channel only: worker hello round trip": async () => {
        const t = nowNs();
        await client.hello();
        return usSince(t);
      },
      "loader + ORT in this process (LoaderInstance.infer, no channel)": () => {
        const req = localSeal();
        const t = nowNs();
        local.infer(localHandle, req.bytes);
        return usSince(t);
      },
    }, Math.min(total, PARTS), BLOCK, 5);
  }
  await session.release();
  await client.unloadProgram(handle);
  local.unloadProgram(localHandle);
  veilSession.close();
  return { label, plain: main.plain, conf: main.conf, oneshot: main.oneshot, confFast: main.confFast, plainInChild: main.plainInChild, batch, mlp, parts, oneshotParts };
}

// ---- tensor mode: a small MLP, then one whose plain run takes ≥ 10 ms ----
const small = await tensorCase("small-mlp", syntheticMlp({ weightsMiB: 1, seed: 21 }), SMALL_BATCH, REQUESTS, BLOCK, true);

const bigMlp = syntheticMlp({ weightsMiB: 16, hidden: 1024, seed: 31 });
let bigBatch = 0;
const calibration: string[] = [];
{
  const s = await ort.InferenceSession.create(bigMlp.graph, { ...SESSION_OPTIONS, externalData: await externalData(bigMlp.files) });
  for (const b of [8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256]) {
    const feeds = { x: new ort.Tensor("float32", bigMlp.sampleInput(b, 5), [b, bigMlp.inputDim]) };
    const xs: number[] = [];
    for (let i = 0; i < 25; i++) {
      const t = nowNs();
      await s.run(feeds, RUN_OPTIONS);
      xs.push(usSince(t));
    }
    const p10 = percentile(xs.slice(5), 10);
    calibration.push(`batch ${b}: ${(p10 / 1e3).toFixed(1)} ms`);
    bigBatch = b;
    // The 10th percentile, with a margin: even the runs of quiet moments must take ≥ 10 ms.
    if (p10 >= 11_000) break;
  }
  await s.release();
}
const big = await tensorCase("10ms-mlp", bigMlp, bigBatch, BIG_REQUESTS, BIG_BLOCK, false);

// ---- generate mode ----
const gm = await generateModel(tmp.dir);
const gen = generateSpec(gm, GEN_TOKENS, 1);
const genSpecs = F.generateTensorSpecs(gen, { positions: gm.positions, inputName: gm.input, outputName: gm.output });
const genLoaded = { ...(await load({ name: "bench-lm", graph: gm.graph, generate: gen, ...genSpecs }, gm.files)), tpc: 1 };
// What-if: the same model streamed 16 tokens per record (fewer round trips and records).
const gen16 = generateSpec(gm, GEN_TOKENS, 16);
const gen16Loaded = { ...(await load({ name: "bench-lm-16", graph: gm.graph, generate: gen16, ...genSpecs }, gm.files)), tpc: 16 };
const genSession = await ort.InferenceSession.create(gm.graph, { ...SESSION_OPTIONS, externalData: await externalData(gm.files) });
await gm.close();
const utf8 = new TextEncoder();
const prompt = (() => {
  for (const p of ["It was the whale. ", "call me ishmael. ", "the sea and the ship "]) {
    try {
      tokenize(utf8.encode(p), gm.tokens);
      return utf8.encode(p);
    } catch {
      // a byte this vocabulary lacks: try the next
    }
  }
  return new Uint8Array(Buffer.concat(gm.tokens.filter((_, i) => i !== gm.endToken).slice(0, 8)));
})();
const vocab = gm.tokens.length;

/** The plain side: a JS greedy loop over session.run on the growing context, one step at a time. */
class PlainGeneration {
  us = 0;
  readonly tokens: number[] = [];
  done = false;
  private ids: number[] = [];
  constructor() {
    const t = nowNs();
    this.ids = tokenize(prompt, gm.tokens);
    this.us += usSince(t);
  }
  async step(): Promise<void> {
    if (this.done) return;
    const t = nowNs();
    const ctx = this.ids.slice(-gm.contextLength);
    const res = await genSession.run({ [gm.input]: new ort.Tensor("int64", BigInt64Array.from(ctx, (x) => BigInt(x)), [1, ctx.length]) }, RUN_OPTIONS);
    const next = argmaxLast(res[gm.output].data as Float32Array, vocab);
    if (next === gm.endToken) this.done = true;
    else {
      this.ids.push(next);
      this.tokens.push(next);
      if (this.tokens.length === GEN_TOKENS) this.done = true;
    }
    this.us += usSince(t);
  }
}

/**
 * The confidential side, as host/worker client.stream() drives it (infer-begin, then infer-next
 * until STREAM_DONE), one record at a time: seal, the response nonce, one record per
 * tokens_per_chunk tokens, each opened as it arrives.
 */
class ConfidentialGeneration {
  us = 0;
  tokens = 0;
  records = 0;
  done = false;
  private readonly text: Uint8Array[] = [];
  private opener!: F.StreamOpener;
  private stream = 0;
  constructor(private readonly target: typeof genLoaded) {}
  async begin(): Promise<void> {
    const t = nowNs();
    const req = F.sealRequest({
      loader: report, programDigest: this.target.program.manifest.digest,
      request: { kind: 2, prompt, maxNewTokens: GEN_TOKENS, temperatureMilli: 0, topK: 0, seed: 42n },
    });
    this.opener = req.response.openStream();
    this.stream = await client.inferBegin(this.target.handle, req.bytes);
    this.us += usSince(t);
  }
  /** One infer-next; returns the tokens it delivered. */
  async step(): Promise<number> {
    if (this.done) return 0;
    const t = nowNs();
    let got = 0;
    try {
      const piece = await client.inferNext(this.stream);
      this.records++;
      for (const c of this.opener.push(piece)) {
        got += c.tokens;
        this.text.push(c.text);
      }
    } catch (e) {
      if (!isWorkerError(e, "STREAM_DONE")) throw e;
      this.opener.end();
      this.done = true;
    }
    this.us += usSince(t);
    this.tokens += got;
    return got;
  }
  get textBytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.text));
  }
}

/** A whole generation on one side: the plain greedy loop, or the confidential stream to its end. */
async function plainRun(): Promise<PlainGeneration> {
  const p = new PlainGeneration();
  while (!p.done) await p.step();
  return p;
}
async function confidentialRun(target: typeof genLoaded): Promise<ConfidentialGeneration> {
  const c = new ConfidentialGeneration(target);
  await c.begin();
  while (!c.done) await c.step();
  return c;
}

/**
 * One run: a plain generation and a confidential one back to back, the order alternating by
 * run, each as a client would drive it (the next step as soon as the previous one is back).
 * Stepping the two in lockstep pairs them more tightly against the machine's noise, but each
 * hand-over between processes then costs a scheduler wake-up on this oversubscribed 2-core
 * machine (measured: several ms per token), which a streaming client does not pay.
 */
async function generationRun(target: typeof genLoaded, r: number): Promise<{ plain: number; conf: number; tokens: number; records: number; same: boolean; text: string }> {
  let p: PlainGeneration;
  let c: ConfidentialGeneration;
  const settle = () => new Promise((res) => setTimeout(res, SETTLE_MS));
  if (r % 2 === 0) {
    p = await plainRun();
    await settle();
    c = await confidentialRun(target);
  } else {
    c = await confidentialRun(target);
    await settle();
    p = await plainRun();
  }
  await settle();
  const plainText = Buffer.concat(p.tokens.map((i) => gm.tokens[i]));
  const text = c.textBytes;
  return { plain: p.us, conf: c.us, tokens: c.tokens, records: c.records, same: plainText.equals(Buffer.from(text)) && p.tokens.length === c.tokens, text: new TextDecoder().decode(text) };
}

await generationRun(genLoaded, 0); // warm up
const genRuns: { plain: number; conf: number; plain16: number; conf16: number; tokens: number; records: number }[] = [];
let genText = "";
let genSame = true;
for (let r = 0; r < GEN_RUNS; r++) {
  const one = await generationRun(genLoaded, r);
  const sixteen = await generationRun(gen16Loaded, r + 1);
  genSame &&= one.same && sixteen.same;
  genText = one.text;
  genRuns.push({ plain: one.plain, conf: one.conf, plain16: sixteen.plain, conf16: sixteen.conf, tokens: one.tokens, records: one.records });
}
if (!genSame) throw new Error("generate: the confidential greedy text differs from the plain greedy loop's");
const perToken = median(genRuns.map((g) => (g.conf - g.plain) / g.tokens));
const perToken16 = median(genRuns.map((g) => (g.conf16 - g.plain16) / g.tokens));
await genSession.release();
await client.unloadProgram(genLoaded.handle);
await client.unloadProgram(gen16Loaded.handle);

// ---- the client's X25519, which dominates sealRequest here ----
const x25519Us = await (async () => {
  const { x25519 } = await import("@noble/curves/ed25519.js");
  const crypto = await import("node:crypto");
  const a = x25519.utils.randomSecretKey();
  const b = x25519.getPublicKey(x25519.utils.randomSecretKey());
  const kp = crypto.generateKeyPairSync("x25519");
  const peer = crypto.createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(b).toString("base64url") }, format: "jwk" });
  const time = (f: () => void, n: number) => {
    for (let i = 0; i < 5; i++) f();
    const xs: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = nowNs();
      f();
      xs.push(usSince(t));
    }
    return median(xs);
  };
  return {
    noble: time(() => void x25519.getSharedSecret(a, b), 100),
    openssl: time(() => void crypto.diffieHellman({ privateKey: kp.privateKey, publicKey: peer }), 300),
  };
})();

await client.close();
await plainChild.close();
tmp.cleanup();

// ---- report ----
const us = (x: number) => Number(x.toFixed(0));
const smallPlain = stat(small.plain);
const smallConf = stat(small.conf);
const bigPlain = stat(big.plain);
const bigConf = stat(big.conf);
const overheadSmall = smallConf.p50 - smallPlain.p50;
const ratioBig = bigConf.p50 / bigPlain.p50;
const smallOneshot = stat(small.oneshot);
const bigOneshot = stat(big.oneshot);
const overheadSmallOneshot = smallOneshot.p50 - smallPlain.p50;
const ratioBigOneshot = bigOneshot.p50 / bigPlain.p50;

console.log("");
console.log(`models: small = synthetic MLP ${small.mlp.layers} layers, hidden ${small.mlp.hidden} (${(small.mlp.weightBytes / 2 ** 20).toFixed(1)} MiB), batch ${small.batch};`);
console.log(`        10 ms = synthetic MLP ${big.mlp.layers} layers, hidden ${big.mlp.hidden} (${(big.mlp.weightBytes / 2 ** 20).toFixed(1)} MiB), batch ${big.batch} (plain p10 by batch at calibration: ${calibration.join(", ")})`);
console.log(`requests: ${small.plain.length} per path (blocks of ${BLOCK}) for the small model, ${big.plain.length} per path (blocks of ${BIG_BLOCK}) for the 10 ms model; ${SETTLE_MS} ms pause at each switch of path`);
table(
  ["model", "path", "p50 µs", "p99 µs", "requests"],
  [
    ["small", "plain session.run", us(smallPlain.p50), us(smallPlain.p99), small.plain.length],
    ["small", "process floor: plain in a child spawned and framed like the worker (raw bytes, no loader, no crypto)", us(stat(small.plainInChild).p50), us(stat(small.plainInChild).p99), small.plainInChild.length],
    ["small", "confidential in a session (seal → worker → open)", us(smallConf.p50), us(smallConf.p99), small.conf.length],
    ["small", "confidential one-shot HPKE (seal → worker → open)", us(smallOneshot.p50), us(smallOneshot.p99), small.oneshot.length],
    ["small", "what-if: one-shot, client X25519 from node:crypto", us(stat(small.confFast).p50), us(stat(small.confFast).p99), small.confFast.length],
    ["10 ms", "plain session.run", us(bigPlain.p50), us(bigPlain.p99), big.plain.length],
    ["10 ms", "process floor: plain in a child spawned and framed like the worker (raw bytes, no loader, no crypto)", us(stat(big.plainInChild).p50), us(stat(big.plainInChild).p99), big.plainInChild.length],
    ["10 ms", "confidential in a session (seal → worker → open)", us(bigConf.p50), us(bigConf.p99), big.conf.length],
    ["10 ms", "confidential one-shot HPKE (seal → worker → open)", us(bigOneshot.p50), us(bigOneshot.p99), big.oneshot.length],
    ["10 ms", "what-if: one-shot, client X25519 from node:crypto", us(stat(big.confFast).p50), us(stat(big.confFast).p99), big.confFast.length],
  ],
);
const overheadSmallFast = stat(small.confFast).p50 - smallPlain.p50;
/** Robustness check: median over blocks of (confidential block p50 / plain block p50), same block index. */
const blockRatio = (c: TensorCase, block: number, which: "conf" | "oneshot" | "confFast") => {
  const r: number[] = [];
  for (let i = 0; i * block < c.plain.length; i++) r.push(percentile(c[which].slice(i * block, (i + 1) * block), 50) / percentile(c.plain.slice(i * block, (i + 1) * block), 50));
  return median(r);
};
const ratioBigFast = stat(big.confFast).p50 / bigPlain.p50;
console.log(`robustness (median over blocks of block-p50 ratios${BIG_BLOCK === 1 ? ", i.e. of adjacent request pairs" : ""}): 10 ms model ${blockRatio(big, BIG_BLOCK, "conf").toFixed(3)}× in a session, ${blockRatio(big, BIG_BLOCK, "oneshot").toFixed(3)}× one-shot (what-if client ${blockRatio(big, BIG_BLOCK, "confFast").toFixed(3)}×); small model, session − plain by block p50: ${median(Array.from({ length: Math.ceil(small.plain.length / BLOCK) }, (_, i) => percentile(small.conf.slice(i * BLOCK, (i + 1) * BLOCK), 50) - percentile(small.plain.slice(i * BLOCK, (i + 1) * BLOCK), 50))).toFixed(0)} µs`);
const floorSmall = stat(small.plainInChild).p50 - smallPlain.p50;
const floorBig = stat(big.plainInChild).p50 / bigPlain.p50;
const overFloorSmall = smallConf.p50 - stat(small.plainInChild).p50;
const overFloorBig = bigConf.p50 / stat(big.plainInChild).p50;
console.log(`process floor (a separate process, before any of veil's work): small +${floorSmall.toFixed(0)} µs, 10 ms model ${floorBig.toFixed(3)}× over plain; veil over that floor: small +${overFloorSmall.toFixed(0)} µs, 10 ms model ${overFloorBig.toFixed(3)}×`);
console.log(`10 ms model check: plain p50 ${(bigPlain.p50 / 1e3).toFixed(1)} ms ${bigPlain.p50 >= 10_000 ? "≥ 10 ms" : "< 10 ms: the machine was quieter than at calibration; the ratio understates the model size asked for"}`);
console.log(`small: confidential − plain at p50 = ${overheadSmall.toFixed(0)} µs in a session (opened once, untimed), ${overheadSmallOneshot.toFixed(0)} µs one-shot HPKE (what-if client: ${overheadSmallFast.toFixed(0)} µs);  10 ms model: confidential / plain at p50 = ${ratioBig.toFixed(3)}× in a session, ${ratioBigOneshot.toFixed(3)}× one-shot (what-if client: ${ratioBigFast.toFixed(3)}×)`);
console.log("");
if (TRACE) traceTable();
console.log(`small model, the session path's parts (each timed alone, ${Object.values(small.parts!)[0].length} samples):`);
table(["part", "p50 µs", "p99 µs"], Object.entries(small.parts!).map(([k, v]) => [k, us(stat(v).p50), us(stat(v).p99)]));
console.log(`small model, the one-shot HPKE path's parts (each timed alone, ${Object.values(small.oneshotParts!)[0].length} samples):`);
table(["part", "p50 µs", "p99 µs"], Object.entries(small.oneshotParts!).map(([k, v]) => [k, us(stat(v).p50), us(stat(v).p99)]));
console.log(`X25519 shared secret, median of single calls: @noble/curves ${x25519Us.noble.toFixed(0)} µs, node:crypto (OpenSSL) ${x25519Us.openssl.toFixed(0)} µs; sealRequest does two (ephemeral public key + DH)`);
console.log("");
console.log(`generate: ${gm.source}`);
console.log(`  prompt ${JSON.stringify(new TextDecoder().decode(prompt))}, greedy (temperature 0, seed 42), max ${GEN_TOKENS} new tokens, streamed with tokens_per_chunk 1 (one infer-next per token); plain = JS greedy loop over session.run on the growing context;`);
console.log(`  each run: one plain and one confidential generation back to back (order alternating), ${SETTLE_MS} ms apart; overhead per run = (confidential − plain) / tokens`);
console.log(`  both produce the same text: ${JSON.stringify(genText.slice(0, 80))}`);
table(
  ["run", "tokens", "records", "plain ms", "confidential ms", "plain µs/token", "confidential µs/token", "overhead µs/token", "what-if 16 tokens/record: overhead µs/token"],
  genRuns.map((g, i) => [
    i + 1, g.tokens, g.records, Number((g.plain / 1e3).toFixed(1)), Number((g.conf / 1e3).toFixed(1)), us(g.plain / g.tokens), us(g.conf / g.tokens),
    us((g.conf - g.plain) / g.tokens), us((g.conf16 - g.plain16) / g.tokens),
  ]),
);
console.log(`generate: median overhead ${perToken.toFixed(0)} µs/token over ${GEN_RUNS} runs (records include the response nonce); with 16 tokens per record ${perToken16.toFixed(0)} µs/token`);
console.log(`whole bench ${(msSince(t0All) / 1e3).toFixed(0)} s; load average at the end ${loadavg().map((x) => x.toFixed(1)).join(" ")}`);

if (json) {
  console.log(JSON.stringify({
    infer_small_overhead_us_p50: round(overheadSmall, 1),
    infer_small_oneshot_overhead_us_p50: round(overheadSmallOneshot, 1),
    infer_10ms_model_ratio_p50: round(ratioBig, 3),
    infer_10ms_oneshot_ratio_p50: round(ratioBigOneshot, 3),
    infer_small_process_floor_us_p50: round(floorSmall, 1),
    infer_10ms_process_floor_ratio_p50: round(floorBig, 3),
    infer_small_overhead_over_floor_us_p50: round(overFloorSmall, 1),
    infer_10ms_ratio_over_floor_p50: round(overFloorBig, 3),
    generate_token_overhead_us: round(perToken, 1),
    whatif_16_tokens_per_record_generate_token_overhead_us: round(perToken16, 1),
    whatif_openssl_client_small_overhead_us_p50: round(overheadSmallFast, 1),
    whatif_openssl_client_10ms_ratio_p50: round(ratioBigFast, 3),
    infer_small_plain_us_p50: round(smallPlain.p50, 1),
    infer_small_confidential_us_p50: round(smallConf.p50, 1),
    infer_small_oneshot_us_p50: round(smallOneshot.p50, 1),
    infer_10ms_plain_us_p50: round(bigPlain.p50, 1),
    infer_10ms_confidential_us_p50: round(bigConf.p50, 1),
  }));
}

/** --trace: pairs each traced client request with the worker's timings of it (by time) and prints the p50 of each segment. */
function traceTable(): void {
  const done = workerLog.filter((e) => e.event === "request done" && typeof e.arrivedUs === "number") as Record<string, number>[];
  const runs = workerLog.filter((e) => e.event === "run timing") as Record<string, number>[];
  const segs = new Map<string, number[]>();
  const add = (k: string, v: number) => {
    if (!segs.has(k)) segs.set(k, []);
    segs.get(k)!.push(v);
  };
  for (const [t0, sealed, got, opened] of clientStamps) {
    // The worker stamps "replied" just after its write, so the client may already hold the reply then.
    const w = done.find((d) => d.arrivedUs >= sealed && d.arrivedUs <= got);
    const r = w && runs.find((x) => x.startUs >= w.startUs && x.endUs <= w.repliedUs);
    if (!w || !r) continue;
    add("client seal", sealed - t0);
    add("sent → frame complete in the worker (channel in, wake-up)", w.arrivedUs - sealed);
    add("frame complete → dispatch (queue)", w.startUs - w.arrivedUs);
    add("dispatch → ONNX Runtime starts (loader open, tensor views)", r.startUs - w.startUs);
    add("ONNX Runtime run", r.endUs - r.startUs);
    add("ONNX Runtime done → reply written (outputs, loader seal, frame)", w.repliedUs - r.endUs);
    add("reply written → client has it (channel out, wake-up)", got - w.repliedUs);
    add("client open", opened - got);
  }
  const n = segs.get("client seal")?.length ?? 0;
  console.log(`--trace: the 10 ms model's in-session requests, ${n} of ${clientStamps.length} matched with the worker's timings (monotonic clock, µs;`);
  console.log(`  the worker stamps "reply written" after its write returns: if the woken client took the core first, the next segment goes negative;`);
  console.log(`  the worker logs every request in this mode, so the other numbers of a --trace run are not comparable with a plain run)`);
  table(["segment", "p50 µs", "p90 µs"], [...segs].map(([k, v]) => [k, percentile(v, 50).toFixed(0), percentile(v, 90).toFixed(0)]));
}
