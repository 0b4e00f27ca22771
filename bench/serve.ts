// npm run bench:serve [-- --json] [--workers 2] [--threads N] [--plain-threads 1] [--concurrency 16]
//                     [--requests 300] [--gen-requests 48] [--rounds 3] [--batch 8] [--weights-mib 8]
//                     [--gen-tokens 32] [--streams 15]
//
// Throughput and latency of the confidential server (host/server: HTTP → pool → trusted worker →
// loader → ONNX Runtime, sealed both ways) against a plain fastify + ONNX Runtime server serving
// the same model (same graph, same weights, same session options, raw tensors in and out), on
// this machine, in the same run, at the same client concurrency. Each server runs in its own
// child process; this process is the load generator (closed loop: `concurrency` clients, each
// sending its next request when its answer arrived), on 127.0.0.1 only.
//
// Two workloads, both servers serving the same two models:
//   generate — the product's workload: a completion of `gen-tokens` tokens, greedy, of the
//     generate model (models/tiny-lm when present, else bench:infer's GraphBuilder stand-in).
//     veil: POST /v1/programs/lm/infer, the loader runs the decode loop; plain: POST /generate
//     with the prompt bytes, a JS greedy loop calling session.run on the growing context (the
//     same tokenizer, context window and argmax), answering the token bytes. Answers compared.
//   tensor — a small synthetic MLP, batch `batch`: a request of well under a millisecond of
//     ONNX Runtime time, where the fixed per-request cost of the confidential path shows most.
// The headline ratios (rps_vs_plain, p50_ms_vs_plain, p99_ms_vs_plain) are the generate
// workload's; the tensor workload's are reported beside them (tensor_*).
//
// Confidential side: the client's work that does not depend on the server — sealing each request
// to an attested loader key (X25519 via node:crypto, bench/lib/fast-client.ts) — is done before a
// round; every answer is opened (and checked) after it. Plain side: raw bytes in and out.
// Rounds alternate which server goes first; ratios are medians of per-round ratios. The plain
// server runs ONNX Runtime with 1 intra-op thread (measured faster than its default on this kind
// of small-core machine; --plain-threads 0 for the default); the workers use the server's default
// (cores ÷ workers). Also: the time to the first streamed token of the generate program, unloaded.
//
// The last line of --json output is one JSON object: rps_vs_plain, p50_ms_vs_plain,
// p99_ms_vs_plain (veil ÷ plain), stream_first_token_ms, and the raw figures.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { decodeEvidence, verifyEvidence } from "../host/attest/index.ts";
import { createBroker } from "../host/broker/index.ts";
import * as F from "../host/formats/index.ts";
import { readChunks, syntheticMlp, type WeightFile } from "../host/onnx/build.ts";
import { externalData } from "../host/onnx/run.ts";
import { startServer } from "../host/server/index.ts";
import { codeHash } from "../host/trusted/identity.ts";
import { createPlatformKeyFile } from "../host/trusted/attest.ts";
import { REPO_ROOT, workerCommand } from "../host/worker/client.ts";
import { fastSealer } from "./lib/fast-client.ts";
import { argmaxLast, generateModel, tokenize } from "./lib/generate-model.ts";
import { ownChild, tempDir } from "./lib/proc.ts";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const sopt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const json = argv.includes("--json");
const WORKERS = opt("workers", 2);
const CONCURRENCY = opt("concurrency", 16);
const REQUESTS = opt("requests", 300);
const GEN_REQUESTS = opt("gen-requests", 48);
const GEN_TOKENS = opt("gen-tokens", 32);
const ROUNDS = opt("rounds", 3);
const BATCH = opt("batch", 8);
const WEIGHTS_MIB = opt("weights-mib", 8);
const STREAMS = opt("streams", 15);
const THREADS = opt("threads", 0); // worker intra-op threads; 0: the server's default
const IN_FLIGHT = opt("in-flight", 0); // requests sent to one worker at a time; 0: the server's default
const PLAIN_THREADS = opt("plain-threads", 1); // the plain server's intra-op threads; 0: ONNX Runtime's default
const MLP = { weightsMiB: WEIGHTS_MIB, seed: 7, inputDim: 256, outputDim: 64 } as const;
const SESSION: ort.InferenceSession.SessionOptions = { executionProviders: ["cpu"], graphOptimizationLevel: "all", logSeverityLevel: 4 };

const info = (s: string) => void (json ? process.stderr : process.stdout).write(`${s}\n`);

// ---------------------------------------------------------------------------------------------
// children: `--child veil|plain --dir DIR` prints {"url": ...} once it serves
// ---------------------------------------------------------------------------------------------

async function plainChild(dir: string): Promise<void> {
  const { default: Fastify } = await import("fastify");
  const m = syntheticMlp(MLP);
  const session = await ort.InferenceSession.create(m.graph, {
    ...SESSION,
    ...(PLAIN_THREADS > 0 ? { intraOpNumThreads: PLAIN_THREADS } : {}),
    externalData: await externalData(m.files),
  });
  mkdirSync(join(dir, "plain-lm"), { recursive: true });
  const gm = await generateModel(join(dir, "plain-lm"));
  const lm = await ort.InferenceSession.create(gm.graph, {
    ...SESSION,
    ...(PLAIN_THREADS > 0 ? { intraOpNumThreads: PLAIN_THREADS } : {}),
    externalData: await externalData(gm.files),
  });
  await gm.close();
  const app = Fastify({ logger: false, bodyLimit: 64 << 20 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_r, body, done) => done(null, body));
  app.post("/infer", async (req, reply) => {
    const body = req.body as Buffer;
    const x = new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
    const out = await session.run({ x: new ort.Tensor("float32", x, [x.length / m.inputDim, m.inputDim]) });
    const y = out.y.data as Float32Array;
    return reply.type("application/octet-stream").send(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  });
  // The same decoding as the loader's greedy path: tokenize (longest match), keep the last
  // context_length tokens, run, argmax of the last position, stop at the end token.
  app.post("/generate", async (req, reply) => {
    const ids = tokenize(new Uint8Array(req.body as Buffer), gm.tokens);
    const out: Buffer[] = [];
    for (let i = 0; i < GEN_TOKENS; i++) {
      const ctx = ids.slice(-gm.contextLength);
      const res = await lm.run({ [gm.input]: new ort.Tensor("int64", BigInt64Array.from(ctx, (t) => BigInt(t)), [1, ctx.length]) });
      const next = argmaxLast(res[gm.output].data as Float32Array, gm.tokens.length);
      if (next === gm.endToken) break;
      ids.push(next);
      out.push(Buffer.from(gm.tokens[next]));
    }
    return reply.type("application/octet-stream").send(Buffer.concat(out));
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const a = app.server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${a.port}`, dir })}\n`);
}

async function veilChild(dir: string): Promise<void> {
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { policy: { trustedPlatformKeys: string[]; acceptedMeasurements: string[]; acceptedWorkerCodeHashes: string[]; acceptedTrustConfigHashes: string[] }; keyId: string; dataKey: string; trust: string };
  const broker = createBroker({ dir: join(dir, "broker"), brokerKey: new Uint8Array(randomBytes(32)), policy: { ...cfg.policy, logger: { warn: () => {} } } });
  broker.addKey(cfg.keyId, F.fromHex(cfg.dataKey));
  const server = await startServer({
    models: join(dir, "models"),
    trust: F.fromHex(cfg.trust),
    broker,
    workers: WORKERS,
    queue: 1024,
    inFlight: IN_FLIGHT > 0 ? IN_FLIGHT : undefined,
    worker: THREADS > 0 ? { ort: { intraOpNumThreads: THREADS } } : undefined,
    platformKeyFile: join(dir, "platform.key"),
    logLevel: "warn",
    logStream: process.stderr as unknown as import("pino").DestinationStream,
  });
  process.stdout.write(`${JSON.stringify({ url: server.url, dir })}\n`);
  process.stdin.resume();
  process.stdin.on("end", () => void server.close().then(() => process.exit(0)));
}

// ---------------------------------------------------------------------------------------------
// the driver
// ---------------------------------------------------------------------------------------------

/** CPU time (user + system, ms) of a process and all its descendants, from /proc. */
function treeCpuMs(root: number): number {
  const procs: { pid: number; ppid: number; ticks: number }[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from 3 (state) on
      procs.push({ pid: Number(d), ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // gone meanwhile
    }
  }
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) if (!tree.has(p.pid) && tree.has(p.ppid)) (tree.add(p.pid), (grew = true));
  }
  return procs.filter((p) => tree.has(p.pid)).reduce((a, p) => a + p.ticks, 0) * (1000 / CLK_TCK);
}
const CLK_TCK = 100;

function child(kind: "veil" | "plain", dir: string): Promise<{ url: string; pid: number; stop: () => void }> {
  const profile = kind === "veil" && process.env.VEIL_BENCH_PROFILE ? [`--cpu-prof`, `--cpu-prof-dir=${process.env.VEIL_BENCH_PROFILE}`] : [];
  const w = workerCommand({ nodeArgs: profile });
  const args = [...w.args.slice(0, -1), join(REPO_ROOT, "bench", "serve.ts"), "--child", kind, "--dir", dir, "--workers", String(WORKERS), "--weights-mib", String(WEIGHTS_MIB), "--threads", String(THREADS), "--plain-threads", String(PLAIN_THREADS), "--gen-tokens", String(GEN_TOKENS), "--in-flight", String(IN_FLIGHT)];
  const env: NodeJS.ProcessEnv = { ...process.env, ORT_DISABLE_TELEMETRY: "1" };
  const c = spawn(w.command, args, { cwd: w.cwd, stdio: ["pipe", "pipe", "pipe"], env });
  ownChild(c);
  let err = "";
  c.stderr!.on("data", (b: Buffer) => void (err = (err + b.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    let out = "";
    c.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      const i = out.indexOf("\n");
      if (i >= 0) resolve({ url: (JSON.parse(out.slice(0, i)) as { url: string }).url, pid: c.pid!, stop: () => c.stdin!.end() });
    });
    c.once("exit", (code) => reject(new Error(`${kind} server exited (${code}): ${err.trim()}`)));
  });
}

async function sealProgram(root: string, name: string, trust: { reviewers: F.ReviewerKey[]; trustConfig: Uint8Array }, key: { keyId: Uint8Array; dataKey: Uint8Array }, p: {
  graph: Uint8Array; files: readonly WeightFile[]; inputs: F.TensorSpec[]; outputs: F.TensorSpec[]; generate?: F.GenerateSpec;
}): Promise<F.BuiltManifest> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const sealed = await F.sealWeights({
    files: p.files.map((f) => ({ location: f.location, size: f.size, source: () => readChunks(f, 1 << 20) })),
    dataKey: key.dataKey, keyId: key.keyId, chunkSize: 1 << 20, out: join(dir, "weights.sealed"),
  });
  const manifest = F.buildManifest({ name, version: 1, graph: p.graph, inputs: p.inputs, outputs: p.outputs, generate: p.generate, weights: sealed.descriptor });
  writeFileSync(join(dir, "manifest.bin"), manifest.bytes);
  writeFileSync(join(dir, "graph.onnx"), p.graph);
  writeFileSync(join(dir, "signatures.bin"), F.assembleBundle([F.signManifest(manifest.bytes, trust.reviewers[0]), F.signManifest(manifest.bytes, trust.reviewers[2])]));
  return manifest;
}

interface RoundResult {
  rps: number;
  p50: number;
  p99: number;
  /** CPU time of the server's whole process tree (server, workers) per request, ms. */
  cpu: number;
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const median = (xs: number[]) => percentile(xs, 50);

/** `n` requests through `concurrency` closed-loop clients; `send(i)` returns when answer i is read. */
async function load(n: number, concurrency: number, pid: number, send: (i: number) => Promise<void>): Promise<RoundResult> {
  const lat: number[] = [];
  const cpu0 = treeCpuMs(pid);
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        const s = process.hrtime.bigint();
        await send(i);
        lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { rps: n / secs, p50: median(lat), p99: percentile(lat, 99), cpu: (treeCpuMs(pid) - cpu0) / n };
}

async function driver(): Promise<void> {
  const tStart = Date.now();
  const tmp = tempDir("veil-bench-serve-");
  const dir = tmp.dir;
  // Model owner: trust, data key, the MLP (tensor) and a generate program, sealed and signed.
  const reviewers = [F.generateReviewerKey(), F.generateReviewerKey(), F.generateReviewerKey()];
  const trust = { reviewers, trustConfig: F.encodeTrustConfig({ threshold: 2, reviewers: reviewers.map((r) => r.publicKey) }, { sort: true }) };
  const key = { keyId: new Uint8Array(randomBytes(16)), dataKey: new Uint8Array(randomBytes(32)) };
  const mlp = syntheticMlp(MLP);
  const models = join(dir, "models");
  const mlpManifest = await sealProgram(models, "mlp", trust, key, {
    graph: mlp.graph, files: mlp.files,
    inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 256 }, { min: mlp.inputDim, max: mlp.inputDim }] }],
    outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 256 }, { min: mlp.outputDim, max: mlp.outputDim }] }],
  });
  const gm = await generateModel(dir);
  const gen: F.GenerateSpec = { tokens: gm.tokens, endToken: gm.endToken, maxNewTokens: Math.max(32, GEN_TOKENS), contextLength: gm.contextLength, tokensPerChunk: 1 };
  const lmManifest = await sealProgram(models, "lm", trust, key, { graph: gm.graph, files: gm.files, generate: gen, ...F.generateTensorSpecs(gen, { inputName: gm.input, outputName: gm.output, positions: gm.positions }) });
  await gm.close();
  const platformKey = createPlatformKeyFile(join(dir, "platform.key"));
  const measurement = createHash("sha256").update(readFileSync(join(REPO_ROOT, "build", "loader.wasm"))).digest();
  const workerCode = codeHash(join(REPO_ROOT, "host", "trusted"));
  const policy = {
    trustedPlatformKeys: [F.toHex(platformKey)],
    acceptedMeasurements: [F.toHex(measurement)],
    acceptedWorkerCodeHashes: [F.toHex(workerCode)],
    acceptedTrustConfigHashes: [F.toHex(F.trustConfigHash(trust.trustConfig))],
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify({ policy, keyId: F.toHex(key.keyId), dataKey: F.toHex(key.dataKey), trust: F.toHex(trust.trustConfig) }));

  info(`bench:serve — veil server (${WORKERS} workers) vs plain fastify + ONNX Runtime, same model, ${process.version}, onnxruntime-node ${ort.env.versions.common}`);
  info(`  model: synthetic MLP ${mlp.layers} layers, hidden ${mlp.hidden}, ${(mlp.weightBytes / 2 ** 20).toFixed(1)} MiB of weights; request batch ${BATCH} × ${mlp.inputDim} float32`);
  info(`  generate model: ${gm.source}`);
  info(`  load: ${CONCURRENCY} closed-loop clients, ${ROUNDS} rounds per workload (alternating order), 127.0.0.1; plain ONNX Runtime threads ${PLAIN_THREADS || "default"}, worker threads ${THREADS || "server default"}`);
  const [veil, plain] = await Promise.all([child("veil", dir), child("plain", dir)]);
  try {
    // Client: attest every worker with a fresh nonce; one fast sealer per worker.
    const nonce = new Uint8Array(randomBytes(32));
    const att = (await (await fetch(`${veil.url}/v1/attestation?nonce=${Buffer.from(nonce).toString("base64url")}`)).json()) as { workers: { id: string; evidence: string }[] };
    const workers = att.workers.map((w) => {
      const ev = new Uint8Array(Buffer.from(w.evidence, "base64url"));
      verifyEvidence(ev, { ...policy, expectedNonce: nonce, logger: { warn: () => {} } });
      const report = decodeEvidence(ev).report;
      return { id: w.id, report, mlp: fastSealer(report, mlpManifest.digest), lm: fastSealer(report, lmManifest.digest) };
    });
    const post = async (url: string, body: Uint8Array): Promise<Uint8Array> => {
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: body as Uint8Array<ArrayBuffer> });
      const b = new Uint8Array(await res.arrayBuffer());
      if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status} ${Buffer.from(b).toString().slice(0, 200)}`);
      return b;
    };

    // The two workloads: what the plain server gets, what the client seals for veil, and how the answers compare.
    const input = mlp.sampleInput(BATCH, 99);
    const inputBytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    const utf8 = new TextEncoder();
    const promptText = ["Call me Ishmael. Some years ago", "It was the whale. ", "call me ishmael. ", "the sea and the ship "].find((p) => {
      try {
        tokenize(utf8.encode(p), gm.tokens);
        return true;
      } catch {
        return false;
      }
    });
    const prompt = promptText ? utf8.encode(promptText) : new Uint8Array(Buffer.concat(gm.tokens.filter((_, i) => i !== gm.endToken).slice(0, 8)));
    interface Workload {
      name: string;
      requests: number;
      plainPath: string;
      plainBody: Uint8Array;
      program: "mlp" | "lm";
      inner: Uint8Array;
      /** The opened confidential answer's bytes, to compare with the plain answer. */
      answer: (r: F.InnerResponse) => Uint8Array;
    }
    const workloads: Workload[] = [
      {
        name: "generate", requests: GEN_REQUESTS, plainPath: "/generate", plainBody: prompt, program: "lm",
        inner: F.encodeInnerRequest({ kind: 2, prompt, maxNewTokens: GEN_TOKENS, temperatureMilli: 0, topK: 0 } as F.InnerRequest),
        answer: (r) => (r.kind === 2 ? r.text : new Uint8Array(0)),
      },
      {
        name: "tensor", requests: REQUESTS, plainPath: "/infer", plainBody: inputBytes, program: "mlp",
        inner: F.encodeInnerRequest({ kind: 1, inputs: [{ name: "x", dtype: 1, dims: [BATCH, mlp.inputDim], data: inputBytes }] }),
        answer: (r) => (r.kind === 1 ? r.outputs[0].data : new Uint8Array(0)),
      },
    ];

    const measured: Record<string, { rounds: { veil: RoundResult; plain: RoundResult }[]; answerBytes: number }> = {};
    for (const wl of workloads) {
      let expected: Uint8Array | undefined;
      const runVeil = async (n: number): Promise<RoundResult> => {
        const sealed = Array.from({ length: n }, (_, i) => ({ w: workers[i % workers.length], s: workers[i % workers.length][wl.program](wl.inner) }));
        const bodies: Uint8Array[] = new Array(n);
        const r = await load(n, CONCURRENCY, veil.pid, async (i) => {
          bodies[i] = await post(`${veil.url}/v1/programs/${wl.program}/infer?worker=${sealed[i].w.id}`, sealed[i].s.bytes);
        });
        for (let i = 0; i < n; i++) {
          const got = wl.answer(sealed[i].s.response.openResponse(bodies[i]));
          if (!Buffer.from(got).equals(Buffer.from(expected!))) throw new Error(`${wl.name}: a confidential answer differs from the plain one`);
        }
        return r;
      };
      const runPlain = (n: number): Promise<RoundResult> =>
        load(n, CONCURRENCY, plain.pid, async () => {
          const b = await post(`${plain.url}${wl.plainPath}`, wl.plainBody);
          if (!Buffer.from(b).equals(Buffer.from(expected!))) throw new Error(`${wl.name}: plain answer changed`);
        });
      // Same answers: the confidential output equals the plain one, byte for byte.
      expected = await post(`${plain.url}${wl.plainPath}`, wl.plainBody);
      if (wl.name === "generate") info(`  generate: prompt ${JSON.stringify(Buffer.from(prompt).toString())} → ${JSON.stringify(Buffer.from(expected).toString())} (${GEN_TOKENS} tokens at most, greedy, both servers)`);
      await runVeil(Math.min(wl.name === "generate" ? 16 : 100, wl.requests)); // warm-up: JIT, sessions, connections
      await runPlain(Math.min(wl.name === "generate" ? 16 : 100, wl.requests));
      const rounds: { veil: RoundResult; plain: RoundResult }[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        let v: RoundResult;
        let p: RoundResult;
        if (r % 2 === 0) {
          p = await runPlain(wl.requests);
          v = await runVeil(wl.requests);
        } else {
          v = await runVeil(wl.requests);
          p = await runPlain(wl.requests);
        }
        rounds.push({ veil: v, plain: p });
        info(
          `  ${wl.name} round ${r + 1}: veil ${v.rps.toFixed(1)} req/s p50 ${v.p50.toFixed(2)} ms p99 ${v.p99.toFixed(2)} ms cpu ${v.cpu.toFixed(2)} ms/req | ` +
            `plain ${p.rps.toFixed(1)} req/s p50 ${p.p50.toFixed(2)} ms p99 ${p.p99.toFixed(2)} ms cpu ${p.cpu.toFixed(2)} ms/req`,
        );
      }
      measured[wl.name] = { rounds, answerBytes: expected.length };
    }

    // Time to the first streamed token, unloaded: POST to the first record that opens with a token.
    const firsts: number[] = [];
    for (let i = 0; i < STREAMS; i++) {
      const w = workers[i % workers.length];
      const s = w.lm({ kind: 2, prompt, maxNewTokens: GEN_TOKENS, temperatureMilli: 0, topK: 0 } as F.InnerRequest);
      const t0 = process.hrtime.bigint();
      const res = await fetch(`${veil.url}/v1/programs/lm/stream?worker=${w.id}`, { method: "POST", body: s.bytes as Uint8Array<ArrayBuffer> });
      const opener = s.response.openStream();
      let first: number | undefined;
      for await (const piece of res.body!) {
        for (const c of opener.push(new Uint8Array(piece))) if (first === undefined && c.tokens > 0) first = Number(process.hrtime.bigint() - t0) / 1e6;
      }
      opener.end();
      if (first === undefined) throw new Error("stream without a token");
      firsts.push(first);
    }

    const figures = (rounds: { veil: RoundResult; plain: RoundResult }[]) => {
      const ratio = (f: (x: { veil: RoundResult; plain: RoundResult }) => number) => Number(median(rounds.map(f)).toFixed(3));
      const med = (f: (x: { veil: RoundResult; plain: RoundResult }) => number) => Number(median(rounds.map(f)).toFixed(2));
      return {
        rps_vs_plain: ratio((x) => x.veil.rps / x.plain.rps),
        p50_ms_vs_plain: ratio((x) => x.veil.p50 / x.plain.p50),
        p99_ms_vs_plain: ratio((x) => x.veil.p99 / x.plain.p99),
        rps_veil: med((x) => x.veil.rps),
        rps_plain: med((x) => x.plain.rps),
        p50_ms_veil: med((x) => x.veil.p50),
        p50_ms_plain: med((x) => x.plain.p50),
        p99_ms_veil: med((x) => x.veil.p99),
        p99_ms_plain: med((x) => x.plain.p99),
        cpu_ms_per_request_veil: med((x) => x.veil.cpu),
        cpu_ms_per_request_plain: med((x) => x.plain.cpu),
      };
    };
    const g = figures(measured.generate.rounds);
    const t = figures(measured.tensor.rounds);
    const result = {
      ...g,
      stream_first_token_ms: Number(median(firsts).toFixed(2)),
      ...Object.fromEntries(Object.entries(t).map(([k, v]) => [`tensor_${k}`, v])),
      workers: WORKERS,
      worker_threads: THREADS > 0 ? THREADS : "server default (cores ÷ workers)",
      plain_threads: PLAIN_THREADS > 0 ? PLAIN_THREADS : "onnxruntime default",
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      generate: { requests_per_round: GEN_REQUESTS, max_tokens: GEN_TOKENS, answer_bytes: measured.generate.answerBytes, model: gm.source },
      tensor: { requests_per_round: REQUESTS, batch: BATCH, weights_mib: Number((mlp.weightBytes / 2 ** 20).toFixed(2)) },
      seconds: Math.round((Date.now() - tStart) / 1000),
    };
    info(`  stream: first token after ${result.stream_first_token_ms} ms (median of ${STREAMS}, unloaded)`);
    info(`  veil ÷ plain, generate: throughput ${g.rps_vs_plain} (target ≥ 0.8), p50 ${g.p50_ms_vs_plain} (target ≤ 1.25), p99 ${g.p99_ms_vs_plain}`);
    info(`  veil ÷ plain, tensor:   throughput ${t.rps_vs_plain}, p50 ${t.p50_ms_vs_plain}, p99 ${t.p99_ms_vs_plain}`);
    if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    veil.stop();
    plain.stop();
    await new Promise((r) => setTimeout(r, 300));
  }
}

const kind = sopt("child");
if (kind === "plain") await plainChild(sopt("dir")!);
else if (kind === "veil") await veilChild(sopt("dir")!);
else {
  await driver();
  process.exit(0);
}
