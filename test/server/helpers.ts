// Shared fixtures of the server tests: the model owner's side (programs sealed and signed into
// program directories as `veil seal` lays them out, a data key in an embedded key broker), the
// platform's (a software platform key file for the workers), and a client's (attest with a fresh
// nonce and verifyEvidence, seal with host/formats, POST over real HTTP, open the answer).
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { verifyEvidence, type VerifiedLoader } from "../../host/attest/index.ts";
import { createBroker, type Broker } from "../../host/broker/index.ts";
import * as F from "../../host/formats/index.ts";
import { GraphBuilder, readChunks, type WeightFile } from "../../host/onnx/build.ts";
import { uniform } from "../../host/onnx/random.ts";
import { splitModel } from "../../host/onnx/split.ts";
import { startServer, type ServerOptions, type VeilServer } from "../../host/server/index.ts";
import { codeHash } from "../../host/trusted/identity.ts";
import { createPlatformKeyFile } from "../../host/trusted/attest.ts";
import { REPO_ROOT } from "../../host/worker/client.ts";

export const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const utf8 = new TextEncoder();

export interface Trust {
  reviewers: F.ReviewerKey[];
  trustConfig: Uint8Array;
}

export function makeTrust(): Trust {
  const reviewers = [F.generateReviewerKey(), F.generateReviewerKey(), F.generateReviewerKey()];
  return { reviewers, trustConfig: F.encodeTrustConfig({ threshold: 2, reviewers: reviewers.map((r) => r.publicKey) }, { sort: true }) };
}

export interface DataKey {
  keyId: Uint8Array;
  dataKey: Uint8Array;
}

export interface Written {
  name: string;
  dir: string;
  manifest: F.BuiltManifest;
}

/** The model owner and two of three reviewers: a self-contained ONNX model → a program directory. */
export async function writeProgram(
  root: string,
  trust: Trust,
  key: DataKey,
  p: { name: string; model: Uint8Array; inputs?: F.TensorSpec[]; outputs?: F.TensorSpec[]; generate?: F.GenerateSpec; positions?: "all" | "last" },
): Promise<Written> {
  const dir = join(root, p.name);
  mkdirSync(dir, { recursive: true });
  const src = join(root, `.${p.name}.src.onnx`);
  writeFileSync(src, p.model);
  const sp = await splitModel(src);
  try {
    const sealed = await F.sealWeights({
      files: sp.files.map((f: WeightFile) => ({ location: f.location, size: f.size, source: () => readChunks(f, 1 << 20) })),
      dataKey: key.dataKey,
      keyId: key.keyId,
      chunkSize: 1 << 16,
      out: join(dir, "weights.sealed"),
    });
    const io = p.generate ? F.generateTensorSpecs(p.generate, { positions: p.positions ?? "all" }) : { inputs: p.inputs!, outputs: p.outputs! };
    const manifest = F.buildManifest({ name: p.name, version: 1, graph: sp.graph, ...io, generate: p.generate, weights: sealed.descriptor });
    writeFileSync(join(dir, "manifest.bin"), manifest.bytes);
    writeFileSync(join(dir, "graph.onnx"), sp.graph);
    writeFileSync(join(dir, "signatures.bin"), F.assembleBundle([F.signManifest(manifest.bytes, trust.reviewers[2]), F.signManifest(manifest.bytes, trust.reviewers[0])]));
    return { name: p.name, dir, manifest };
  } finally {
    await sp.close();
    rmSync(src, { force: true });
  }
}

/** A tensor program: a small synthetic MLP, x [1..8, 64] → y [1..8, 16]. */
export function mlpModel(): { model: Uint8Array; inputs: F.TensorSpec[]; outputs: F.TensorSpec[]; sample: (b: number, seed: number) => Float32Array } {
  const m = { inputDim: 64, outputDim: 16 };
  const g = new GraphBuilder("mlp");
  const x = g.input("x", "float32", ["batch", m.inputDim]);
  let h = x;
  const dims = [m.inputDim, 64, 64, m.outputDim];
  for (let i = 0; i < dims.length - 1; i++) {
    const w = g.init(`w${i}`, "float32", [dims[i], dims[i + 1]], uniform(dims[i] * dims[i + 1], 40 + i, Math.sqrt(3 / dims[i])));
    h = g.op("MatMul", [h, w]);
    if (i < dims.length - 2) h = g.op("Relu", [h]);
  }
  g.op("Identity", [h], {}, "y");
  g.output("y", "float32", ["batch", m.outputDim]);
  return {
    model: g.bytes(),
    inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }, { min: m.inputDim, max: m.inputDim }] }],
    outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }, { min: m.outputDim, max: m.outputDim }] }],
    sample: (b, seed) => uniform(b * m.inputDim, seed, 1),
  };
}

/**
 * A deliberately slow tensor program: `layers` MatMuls of x [1..4096, 256] with 256×256 weights;
 * the client picks the batch to pick the cost (tests of queues, deadlines and shutdown).
 */
export function slowModel(layers = 64): { model: Uint8Array; inputs: F.TensorSpec[]; outputs: F.TensorSpec[] } {
  const D = 256;
  const g = new GraphBuilder("slow");
  let h = g.input("x", "float32", ["batch", D]);
  const w = g.init("w", "float32", [D, D], uniform(D * D, 77, 1 / D));
  for (let i = 0; i < layers; i++) h = g.op("Tanh", [g.op("MatMul", [h, w])]);
  g.op("Identity", [h], {}, "y");
  g.output("y", "float32", ["batch", D]);
  return {
    model: g.bytes(),
    inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 4096 }, { min: D, max: D }] }],
    outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 4096 }, { min: D, max: D }] }],
  };
}

/** The characters a test prompt may use (every one is a token of lmModel). */
export const LM_CHARS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,-";

/** A generate program: bigram logits over the characters above (token 0 is the end token, never chosen). */
export function lmModel(maxNewTokens = 12): { model: Uint8Array; generate: F.GenerateSpec } {
  const tokens = ["<end>", ...LM_CHARS];
  const V = tokens.length;
  const table = uniform(V * V, 91, 4);
  for (let t = 0; t < V; t++) table[t * V] = -1e4; // the end token never wins
  const g = new GraphBuilder("lm");
  const ids = g.input("input_ids", "int64", [1, "seq"]);
  const e = g.init("bigram", "float32", [V, V], table);
  g.op("Gather", [e, ids], { axis: 0 }, "logits");
  g.output("logits", "float32", [1, "seq", V]);
  return {
    model: g.bytes(),
    generate: { tokens: tokens.map((t) => utf8.encode(t)), endToken: 0, maxNewTokens, contextLength: 64, tokensPerChunk: 3 },
  };
}

export interface Fixture {
  dir: string;
  modelsDir: string;
  trust: Trust;
  key: DataKey;
  platformKeyFile: string;
  platformKey: Uint8Array;
  measurement: Uint8Array;
  codeHash: Uint8Array;
  programs: Record<string, Written>;
  /** What a client or the broker accepts (no nonce). */
  policy(): { trustedPlatformKeys: Uint8Array[]; acceptedMeasurements: Uint8Array[]; acceptedWorkerCodeHashes: Uint8Array[]; acceptedTrustConfigHashes: Uint8Array[] };
  /** A fresh embedded broker (its own directory) holding the data key. */
  broker(): Broker;
  cleanup(): void;
}

/** Everything a server needs, in a temp directory: programs, platform key, trust, data key. */
export async function fixture(opts: { programs?: ("mlp" | "slow" | "lm")[]; dir?: string } = {}): Promise<Fixture> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "veil-server-test-"));
  const modelsDir = join(dir, "models");
  mkdirSync(modelsDir, { recursive: true });
  const trust = makeTrust();
  const key: DataKey = { keyId: rand(16), dataKey: rand(32) };
  const platformKeyFile = join(dir, "platform.key");
  const platformKey = createPlatformKeyFile(platformKeyFile);
  const programs: Record<string, Written> = {};
  for (const name of opts.programs ?? ["mlp", "lm"]) {
    if (name === "mlp") programs.mlp = await writeProgram(modelsDir, trust, key, { name, ...mlpModel() });
    if (name === "slow") programs.slow = await writeProgram(modelsDir, trust, key, { name, ...slowModel() });
    if (name === "lm") programs.lm = await writeProgram(modelsDir, trust, key, { name, ...lmModel() });
  }
  const measurement = new Uint8Array(createHash("sha256").update(readFileSync(join(REPO_ROOT, "build", "loader.wasm"))).digest());
  const ch = codeHash(join(REPO_ROOT, "host", "trusted"));
  const brokers: Broker[] = [];
  const policy = () => ({
    trustedPlatformKeys: [platformKey],
    acceptedMeasurements: [measurement],
    acceptedWorkerCodeHashes: [ch],
    acceptedTrustConfigHashes: [F.trustConfigHash(trust.trustConfig)],
  });
  return {
    dir,
    modelsDir,
    trust,
    key,
    platformKeyFile,
    platformKey,
    measurement,
    codeHash: ch,
    programs,
    policy,
    broker() {
      const b = createBroker({ dir: mkdtempSync(join(dir, "broker-")), brokerKey: rand(32), policy: { ...policy(), logger: { warn: () => {} } } });
      b.addKey(key.keyId, key.dataKey);
      brokers.push(b);
      return b;
    },
    cleanup() {
      for (const b of brokers) {
        try {
          b.close();
        } catch {
          // closed already
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts a server over the fixture with a quiet logger (unless one is given). */
export function serve(fx: Fixture, o: Partial<ServerOptions> = {}): Promise<VeilServer> {
  return startServer({
    models: fx.modelsDir,
    trust: fx.trust.trustConfig,
    broker: o.broker ?? fx.broker(),
    platformKeyFile: fx.platformKeyFile,
    logLevel: "silent",
    workers: 2,
    ...o,
  });
}

export interface Attested {
  id: string;
  loader: VerifiedLoader;
  programs: string[];
}

/** The client's attestation: a fresh nonce, every worker's evidence verified (SPEC §4.2). */
export async function attest(url: string, fx: Fixture): Promise<Attested[]> {
  const nonce = rand(32);
  const res = await fetch(`${url}/v1/attestation?nonce=${Buffer.from(nonce).toString("base64url")}`);
  if (res.status !== 200) throw new Error(`attestation: HTTP ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { workers: { id: string; evidence: string; programs: string[] }[] };
  return body.workers.map((w) => ({
    id: w.id,
    programs: w.programs,
    loader: verifyEvidence(new Uint8Array(Buffer.from(w.evidence, "base64url")), { ...fx.policy(), expectedNonce: nonce }),
  }));
}

export function generateRequest(prompt: string, maxNewTokens = 8): F.InnerRequest {
  return { kind: 2, prompt: utf8.encode(prompt), maxNewTokens, temperatureMilli: 0, topK: 0 } as F.InnerRequest;
}

export function tensorRequest(name: string, dims: number[], data: Float32Array): F.InnerRequest {
  return { kind: 1, inputs: [{ name, dtype: 1, dims, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice() }] };
}

export interface Posted {
  status: number;
  headers: Headers;
  body: Uint8Array;
  json?: { code: string; number: number; field: string | null; message: string; retryable: boolean };
}

/** POSTs bytes and reads the whole answer. */
export async function post(url: string, body: Uint8Array, signal?: AbortSignal): Promise<Posted> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: body as Uint8Array<ArrayBuffer>, signal });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const out: Posted = { status: res.status, headers: res.headers, body: bytes };
  if (res.headers.get("content-type")?.startsWith("application/json")) out.json = JSON.parse(Buffer.from(bytes).toString("utf8"));
  return out;
}

/** Seals `request` to worker `w` for `program` and POSTs it to /infer; returns the opened response, or the error. */
export async function infer(url: string, w: Attested, program: Written, request: F.InnerRequest, route: "infer" | "stream" = "infer") {
  const sealed = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: program.manifest.digest, request });
  const r = await post(`${url}/v1/programs/${program.name}/${route}?worker=${w.id}`, sealed.bytes);
  return { ...r, sealed };
}

export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it is true (or throws after `ms`). */
export async function until(f: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  const ok = async () => {
    try {
      return await f();
    } catch {
      return false;
    }
  };
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
