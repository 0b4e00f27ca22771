// The trusted worker as a real child process, driven through its channel by the untrusted
// client: identity, the whole flow (trust config, reviewer signatures, key release, program,
// sealed weights, sealed requests) with outputs bit-identical to ONNX Runtime run directly on
// the unsealed models, and the loader's refusals as typed WorkerErrors.
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { GraphBuilder, smallModels, syntheticMlp, type Feed } from "../../host/onnx/build.ts";
import { Req, u16, u32 } from "../../host/trusted/protocol.ts";
import { REPO_ROOT, WorkerClient, WorkerError, loadSealedWeights, type WeightsProgress } from "../../host/worker/client.ts";
import {
  concatAll, makeTrust, reference, sameOutputs, sealProgram, specsOf, splitBytes, tensorOf, tensorRequest, tmpDir,
  type SealedProgram,
} from "./helpers.ts";

const trust = makeTrust();
const key = { keyId: new Uint8Array(randomBytes(16)), dataKey: new Uint8Array(randomBytes(32)) };
const tmp = tmpDir();
/** The worker's weights directory (load-weights-file reads only under it). */
const WEIGHTS_DIR = join(tmp.dir, "weights");
mkdirSync(WEIGHTS_DIR);
let client: WorkerClient;
let report: Uint8Array;
const logs: (Record<string, unknown> | string)[] = [];

beforeAll(async () => {
  client = WorkerClient.spawn({ onLog: (e) => void logs.push(e), weightsDirs: [WEIGHTS_DIR] });
  report = await client.init(trust.trustConfig, new Uint8Array(randomBytes(32)));
  await client.unwrapKey(F.wrapKey({ report, keyId: key.keyId, dataKey: key.dataKey }));
});

afterAll(async () => {
  await client?.close();
  tmp.cleanup();
});

async function load(p: SealedProgram, onProgress?: (p: WeightsProgress) => void): Promise<number> {
  const h = await client.loadProgram(p.manifest.bytes, p.bundle, p.graph);
  await loadSealedWeights(client, h, p.sealed, { onProgress });
  return h;
}

async function refusal(p: Promise<unknown>): Promise<WorkerError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(WorkerError);
  return e as WorkerError;
}

/** Every file under host/trusted/, hashed as host/trusted/README.md specifies — written afresh here. */
function expectedCodeHash(): string {
  const dir = join(REPO_ROOT, "host", "trusted");
  const files: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else files.push(relative(dir, p).split(sep).join("/"));
    }
  };
  walk(dir);
  files.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const h = createHash("sha256");
  for (const f of files) {
    h.update(f);
    h.update(Buffer.of(0));
    h.update(createHash("sha256").update(readFileSync(join(dir, f))).digest());
  }
  return h.digest("hex");
}

describe("trusted worker: identity", () => {
  it("hello returns the measurement (SHA-256 of build/loader.wasm), the code hash and public versions", async () => {
    const h = await client.hello();
    const wasm = readFileSync(join(REPO_ROOT, "build", "loader.wasm"));
    expect(h.measurementHex).toBe(createHash("sha256").update(wasm).digest("hex"));
    expect(h.codeHashHex).toBe(expectedCodeHash());
    expect(h.protocol).toBe(1);
    expect(h.info).toMatchObject({ worker: "veil-worker", wit: "veil:loader@0.1.0", onnxruntime: "1.30.0", executionProviders: ["cpu"], loaderBytes: wasm.length });
    expect(String(h.info.node)).toBe(process.version);
    // attest: same key as init, the new nonce
    const nonce = new Uint8Array(randomBytes(32));
    const rb = F.decodeReportBody(await client.attest(nonce));
    expect(Buffer.from(rb.nonce).equals(Buffer.from(nonce))).toBe(true);
    expect(Buffer.from(rb.hpkePublicKey).equals(Buffer.from(F.decodeReportBody(report).hpkePublicKey))).toBe(true);
  });
});

describe("trusted worker: sealed inference matches ONNX Runtime bit for bit", () => {
  it("synthetic MLP (4 MiB in several external-data files), weights streamed piece by piece with progress", async () => {
    const mlp = syntheticMlp({ weightsMiB: 4, maxLocationSize: 1_000_000, seed: 3 });
    expect(mlp.files.length).toBeGreaterThan(3);
    const p = await sealProgram(trust, {
      name: "mlp", graph: mlp.graph, files: mlp.files, key,
      inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 256 }, { min: 64, max: 64 }] }],
      outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 256 }, { min: 16, max: 16 }] }],
    });
    const progress: WeightsProgress[] = [];
    const h = await load(p, (x) => void progress.push(x));
    const last = progress.at(-1)!;
    expect(last.pieces).toBe(last.piecesTotal);
    expect(last.bytes).toBe(last.bytesTotal);
    expect(last.bytes).toBe(concatAll(p.sealed).length);
    expect(progress.length).toBe(1 + p.manifest.manifest.weights.chunkCount);
    const feeds: Record<string, Feed>[] = [1, 5].map((b, i) => ({ x: { type: "float32", dims: [b, 64], data: mlp.sampleInput(b, 100 + i) } }));
    const want = await reference({ graph: mlp.graph, files: mlp.files }, feeds);
    for (const [i, feed] of feeds.entries()) {
      const req = tensorRequest(report, p.manifest, feed);
      const res = req.response.openResponse(await client.infer(h, req.bytes));
      expect(sameOutputs(res, p.manifest, want[i])).toBeUndefined();
    }
    await client.unloadProgram(h);
  });

  for (const m of smallModels()) {
    it(`${m.name}: split, sealed, loaded and run through the worker`, async () => {
      const sp = await splitBytes(m.bytes, tmp.dir, m.name);
      try {
        const io = specsOf(m.model);
        // multi_io: the manifest lists outputs in another order than the graph; the response follows the manifest.
        if (m.name === "multi_io") io.outputs.reverse();
        const p = await sealProgram(trust, { name: m.name.replace(/_/g, "-"), graph: sp.graph, files: sp.files, key, ...io });
        const h = await load(p);
        const want = await reference(m.bytes, m.feeds);
        for (const [i, feed] of m.feeds.entries()) {
          const req = tensorRequest(report, p.manifest, feed);
          const res = req.response.openResponse(await client.infer(h, req.bytes));
          expect(sameOutputs(res, p.manifest, want[i]), `${m.name} feed ${i}`).toBeUndefined();
        }
        await client.unloadProgram(h);
      } finally {
        await sp.close();
      }
    });
  }

  // A generate-mode model whose logits depend on the prompt length only: token t = n mod 3 + 1.
  async function lengthModel(): Promise<SealedProgram> {
    const V = 4;
    const g = new GraphBuilder("length_lm");
    const ids = g.input("input_ids", "int64", [1, "seq"]);
    const one = g.init("one", "int64", [], new BigInt64Array([1n]));
    const three = g.init("three", "int64", [], new BigInt64Array([3n]));
    const vocab = g.init("vocab", "int64", [V], new BigInt64Array([0n, 1n, 2n, 3n]));
    const shape = g.init("out_shape", "int64", [3], new BigInt64Array([1n, 1n, BigInt(V)]));
    const scale = g.init("scale", "float32", [], new Float32Array([5]));
    const bias = g.init("bias", "float32", [V], new Float32Array([0.01, 0.02, 0.03, 0.04]));
    const n = g.op("Gather", [g.op("Shape", [ids]), one], { axis: 0 });
    const t = g.op("Add", [g.op("Mod", [n, three]), one]);
    const hot = g.op("Cast", [g.op("Equal", [vocab, t])], { to: 1 });
    g.op("Reshape", [g.op("Add", [g.op("Mul", [hot, scale]), bias]), shape], {}, "logits");
    g.output("logits", "float32", [1, 1, V]);
    const sp = await splitBytes(g.bytes(), tmp.dir, "length_lm");
    try {
      const gen: F.GenerateSpec = { tokens: ["<e>", "a", "b", "c"].map((x) => new TextEncoder().encode(x)), endToken: 0, maxNewTokens: 10, contextLength: 16, tokensPerChunk: 3 };
      return await sealProgram(trust, { name: "length-lm", graph: sp.graph, files: sp.files, key, generate: gen, ...F.generateTensorSpecs(gen, { positions: "last" }) });
    } finally {
      await sp.close();
    }
  }

  it("generate mode: infer, and stream() records opened in order, give the same greedy text; an early break cancels", async () => {
    const p = await lengthModel();
    expect(p.manifest.manifest.weights.plaintextSize).toBeGreaterThan(0);
    const h = await load(p);
    const request = { kind: 2, prompt: new TextEncoder().encode("ab"), maxNewTokens: 7, temperatureMilli: 0, topK: 0, hasSeed: false, seed: 0n } as F.InnerRequest;
    const one = F.sealRequest({ loader: report, programDigest: p.manifest.digest, request });
    const res = one.response.openResponse(await client.infer(h, one.bytes));
    expect(res).toMatchObject({ kind: 2, tokens: 7, stop: 2 });
    expect(new TextDecoder().decode((res as { text: Uint8Array }).text)).toBe("cabcabc");

    const two = F.sealRequest({ loader: report, programDigest: p.manifest.digest, request });
    const opener = two.response.openStream();
    const chunks: F.StreamChunk[] = [];
    for await (const piece of client.stream(h, two.bytes)) chunks.push(...opener.push(piece));
    opener.end();
    expect(chunks.map((c) => c.tokens)).toEqual([3, 3, 1]);
    expect(new TextDecoder().decode(concatAll(chunks.map((c) => c.text)))).toBe("cabcabc");
    expect(chunks.at(-1)!.stop).toBe(2);

    // Leaving the loop early cancels the stream in the loader; the program keeps serving.
    const three = F.sealRequest({ loader: report, programDigest: p.manifest.digest, request });
    let seen = 0;
    for await (const _ of client.stream(h, three.bytes)) if (++seen === 2) break;
    const four = F.sealRequest({ loader: report, programDigest: p.manifest.digest, request });
    expect(four.response.openResponse(await client.infer(h, four.bytes))).toMatchObject({ kind: 2, tokens: 7 });
    await client.unloadProgram(h);
  });

  it("sessions (SPEC §8.5) through the worker: tensor outputs identical to ONNX Runtime, a stream, replay and unload refused", async () => {
    const m = smallModels()[0];
    const sp = await splitBytes(m.bytes, tmp.dir, `${m.name}-session`);
    try {
      const p = await sealProgram(trust, { name: `${m.name.replace(/_/g, "-")}-session`, graph: sp.graph, files: sp.files, key, ...specsOf(m.model) });
      const h = await load(p);
      const want = await reference(m.bytes, m.feeds);
      const o = F.openSession({ loader: report, programDigest: p.manifest.digest });
      const session = o.accept(await client.sessionOpen(h, o.bytes));
      for (let round = 0; round < 2; round++)
        for (const [i, feed] of m.feeds.entries()) {
          const inputs = p.manifest.manifest.inputs.map((s) => tensorOf(s.name, feed[s.name]));
          const req = session.seal({ kind: 1, inputs });
          const res = req.openResponse(await client.infer(h, req.bytes));
          expect(sameOutputs(res, p.manifest, want[i]), `${m.name} feed ${i} round ${round}`).toBeUndefined();
        }
      const inputs = p.manifest.manifest.inputs.map((s) => tensorOf(s.name, m.feeds[0][s.name]));
      const again = session.seal({ kind: 1, inputs });
      await client.infer(h, again.bytes);
      expect((await refusal(client.infer(h, again.bytes))).codeName).toBe("REPLAY");
      await client.unloadProgram(h);
      const h2 = await load(p);
      expect((await refusal(client.infer(h2, session.seal({ kind: 1, inputs }).bytes))).codeName).toBe("SESSION_UNKNOWN");
      await client.unloadProgram(h2);
    } finally {
      await sp.close();
    }
    const g = await lengthModel();
    const hg = await load(g);
    const o = F.openSession({ loader: report, programDigest: g.manifest.digest });
    const session = o.accept(await client.sessionOpen(hg, o.bytes));
    const request = { kind: 2, prompt: new TextEncoder().encode("ab"), maxNewTokens: 7, temperatureMilli: 0, topK: 0, hasSeed: false, seed: 0n } as F.InnerRequest;
    const req = session.seal(request);
    const opener = req.openStream();
    const chunks: F.StreamChunk[] = [];
    for await (const piece of client.stream(hg, req.bytes)) chunks.push(...opener.push(piece));
    opener.end();
    expect(chunks.map((c) => c.tokens)).toEqual([3, 3, 1]);
    expect(new TextDecoder().decode(concatAll(chunks.map((c) => c.text)))).toBe("cabcabc");
    await client.unloadProgram(hg);
  });

  // A token-dependent bigram model: catches any misplaced token id in the loader's input tensor.
  it("generate mode with token-dependent logits (bigram)", async () => {
    const tokens = ["<e>", "a", "b", "c", " ", "ab"];
    const next = [0, 2, 3, 4, 1, 3];
    const V = tokens.length;
    const table = new Float32Array(V * V);
    next.forEach((nx, t) => { table[t * V + nx] = 5; });
    const g = new GraphBuilder("bigram");
    const ids = g.input("input_ids", "int64", [1, "seq"]);
    const e = g.init("bigram.logits", "float32", [V, V], table);
    g.op("Gather", [e, ids], { axis: 0 }, "logits");
    g.output("logits", "float32", [1, "seq", V]);
    const sp = await splitBytes(g.bytes(), tmp.dir, "bigram");
    const gen: F.GenerateSpec = { tokens: tokens.map((t) => new TextEncoder().encode(t)), endToken: 0, maxNewTokens: 10, contextLength: 16, tokensPerChunk: 3 };
    const p = await sealProgram(trust, { name: "bigram", graph: sp.graph, files: sp.files, key, generate: gen, ...F.generateTensorSpecs(gen) });
    await sp.close();
    const h = await load(p);
    try {
      const request = { kind: 2, prompt: new TextEncoder().encode("ab"), maxNewTokens: 7, temperatureMilli: 0, topK: 0, hasSeed: false, seed: 0n } as F.InnerRequest;
      const one = F.sealRequest({ loader: report, programDigest: p.manifest.digest, request });
      const res = one.response.openResponse(await client.infer(h, one.bytes));
      expect(new TextDecoder().decode((res as { text: Uint8Array }).text)).toBe("c abc a");
    } finally {
      await client.unloadProgram(h);
    }
  });
});

describe("trusted worker: load-weights-file (the worker reads the sealed stream itself)", () => {
  let p: SealedProgram;
  let mlp: ReturnType<typeof syntheticMlp>;
  let path: string;
  beforeAll(async () => {
    mlp = syntheticMlp({ weightsMiB: 3, maxLocationSize: 700_000, seed: 11 });
    p = await sealProgram(trust, {
      name: "mlp-file", graph: mlp.graph, files: mlp.files, key,
      inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 64, max: 64 }] }],
      outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 16, max: 16 }] }],
    });
    path = join(WEIGHTS_DIR, "mlp.sealed");
    writeFileSync(path, concatAll(p.sealed));
  });

  const run = async (h: number) => {
    const feed: Record<string, Feed> = { x: { type: "float32", dims: [2, 64], data: mlp.sampleInput(2, 5) } };
    const [want] = await reference({ graph: mlp.graph, files: mlp.files }, [feed]);
    const req = tensorRequest(report, p.manifest, feed);
    expect(sameOutputs(req.response.openResponse(await client.infer(h, req.bytes)), p.manifest, want)).toBeUndefined();
  };

  it("loads a sealed file and runs bit for bit like ONNX Runtime; other requests are answered while it loads", async () => {
    const h = await client.loadProgram(p.manifest.bytes, p.bundle, p.graph);
    const order: string[] = [];
    // Both frames leave in one write (corked: one writev of < PIPE_BUF bytes, atomic on a pipe),
    // so the worker has the hello queued while the load is still at its first pieces; sent one
    // by one, a fast load could finish before the hello even arrived.
    const stdin = client.child!.stdin!;
    stdin.cork();
    const both = Promise.all([
      client.loadWeightsFile(h, path).then(() => void order.push("load")),
      client.hello().then(() => void order.push("hello")),
    ]);
    stdin.uncork();
    await both;
    expect(p.sealed.length).toBeGreaterThan(3); // header and chunks: more pieces than the two the load may take before the hello
    expect(order).toEqual(["hello", "load"]); // the load runs a piece per turn
    await run(h);
    await client.unloadProgram(h);
  });

  it("refuses a path outside the weights directory (through links too), a FIFO, a directory, or a file whose length is not its header's (WEIGHTS_FILE), without touching the program", async () => {
    const h = await client.loadProgram(p.manifest.bytes, p.bundle, p.graph);
    const whole = concatAll(p.sealed);
    const cut = join(WEIGHTS_DIR, "cut.sealed");
    writeFileSync(cut, whole.subarray(0, whole.length - 1));
    const long = join(WEIGHTS_DIR, "long.sealed");
    writeFileSync(long, concatAll([whole, new Uint8Array(1)]));
    const tiny = join(WEIGHTS_DIR, "tiny.sealed");
    writeFileSync(tiny, whole.subarray(0, 59));
    // Outside the weights directory, directly or through a link inside it; a FIFO (which a
    // blocking open would hang on); a directory.
    const outside = join(tmp.dir, "outside.sealed");
    writeFileSync(outside, whole);
    const link = join(WEIGHTS_DIR, "link.sealed");
    symlinkSync(outside, link);
    const fifo = join(WEIGHTS_DIR, "fifo.sealed");
    execFileSync("mkfifo", [fifo]);
    const sub = join(WEIGHTS_DIR, "sub");
    mkdirSync(sub);
    const refused = /cannot be opened inside the weights directories/;
    for (const [bad, why] of [
      [join(WEIGHTS_DIR, "nope"), refused], [outside, refused], [link, refused], ["/etc/passwd", refused],
      [fifo, /not a regular file/], [sub, /not a regular file/],
      [cut, /describes a/], [long, /describes a/], [tiny, /shorter than a weights header/],
    ] as const) {
      const e = await refusal(client.loadWeightsFile(h, bad));
      expect(e.codeName, bad).toBe("WEIGHTS_FILE");
      expect(e.detail).toMatch(why);
    }
    await client.loadWeightsFile(h, path); // still awaiting its header: the good file loads
    await run(h);
    await client.unloadProgram(h);
  });

  it("a worker started without --weights-dir refuses load-weights-file", async () => {
    const other = WorkerClient.spawn({});
    try {
      const e = await refusal(other.loadWeightsFile(1, path));
      expect(e.codeName).toBe("WEIGHTS_FILE");
      expect(e.detail).toMatch(/no weights directory/);
    } finally {
      await other.close();
    }
  });

  it("a flipped ciphertext byte in the file is the loader's WEIGHTS_AUTH", async () => {
    const h = await client.loadProgram(p.manifest.bytes, p.bundle, p.graph);
    const bad = concatAll(p.sealed).slice();
    bad[60 + 70_000] ^= 0x10;
    const flipped = join(WEIGHTS_DIR, "flipped.sealed");
    writeFileSync(flipped, bad);
    const e = await refusal(client.loadWeightsFile(h, flipped));
    expect(e.kind).toBe("loader");
    expect(e.codeName).toBe("WEIGHTS_AUTH");
    await client.unloadProgram(h);
  });

  it("a path that is empty, holds a NUL or is not UTF-8 is a malformed frame (BAD_FRAME); the client refuses an empty one itself", async () => {
    const h = await client.loadProgram(p.manifest.bytes, p.bundle, p.graph);
    await expect(client.loadWeightsFile(h, "")).rejects.toThrow(/1\.\.65535/);
    const frame = (path: Uint8Array) => [u32(h), u16(path.length), path];
    for (const [path, why] of [[new Uint8Array(0), /empty or holds a NUL/], [new TextEncoder().encode("a\0b"), /empty or holds a NUL/], [Uint8Array.of(0x2f, 0xff, 0xfe), /not UTF-8/]] as const) {
      const e = await refusal(client.request(Req.LOAD_WEIGHTS_FILE, frame(path)));
      expect(e.codeName).toBe("BAD_FRAME");
      expect(e.detail).toMatch(why);
    }
    await client.unloadProgram(h);
  });
});

describe("trusted worker: refusals", () => {
  let mlpFiles: ReturnType<typeof syntheticMlp>;
  let a: SealedProgram;
  beforeAll(async () => {
    mlpFiles = syntheticMlp({ weightsMiB: 1, seed: 9 });
    a = await sealProgram(trust, {
      name: "refusals-a", graph: mlpFiles.graph, files: mlpFiles.files, key,
      inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 64, max: 64 }] }],
      outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 16, max: 16 }] }],
    });
  });

  it("GRAPH_MISMATCH: a graph that is not the one the manifest names", async () => {
    const graph = new Uint8Array(a.graph); // a copy (Buffer#slice would be a view)
    graph[graph.length - 1] ^= 1;
    const e = await refusal(client.loadProgram(a.manifest.bytes, a.bundle, graph));
    expect(e).toMatchObject({ kind: "loader", op: "load-program", code: 20, codeName: "GRAPH_MISMATCH", retryable: false });
    expect(e.message).toMatch(/GRAPH_MISMATCH \(20\)/);
  });

  it("WEIGHTS_MISMATCH: weights sealed for another program are refused at the header", async () => {
    const b = await sealProgram(trust, { name: "refusals-b", graph: a.graph, files: mlpFiles.files, key, inputs: a.manifest.manifest.inputs, outputs: a.manifest.manifest.outputs });
    const h = await client.loadProgram(a.manifest.bytes, a.bundle, a.graph);
    const e = await refusal(loadSealedWeights(client, h, b.sealed));
    expect(e).toMatchObject({ kind: "loader", op: "load-weights", codeName: "WEIGHTS_MISMATCH", fieldId: 0x0503, field: "WeightsHeader stream_id" });
    await client.unloadProgram(h);
  });

  it("WEIGHTS_INCOMPLETE: a request before the last chunk has arrived", async () => {
    const h = await client.loadProgram(a.manifest.bytes, a.bundle, a.graph);
    const pieces: Uint8Array[] = [];
    for await (const piece of F.splitSealedWeights(a.sealed)) pieces.push(piece);
    expect(pieces.length).toBeGreaterThan(4);
    for (const piece of pieces.slice(0, 4)) await client.loadWeights(h, piece);
    const req = tensorRequest(report, a.manifest, { x: { type: "float32", dims: [1, 64], data: new Float32Array(64) } });
    const e = await refusal(client.infer(h, req.bytes));
    expect(e).toMatchObject({ codeName: "WEIGHTS_INCOMPLETE", code: 38 });
    // the rest arrives, and the same program then answers a fresh request
    for (const piece of pieces.slice(4)) await client.loadWeights(h, piece);
    const ok = tensorRequest(report, a.manifest, { x: { type: "float32", dims: [1, 64], data: new Float32Array(64) } });
    expect(ok.response.openResponse(await client.infer(h, ok.bytes)).kind).toBe(1);
    await client.unloadProgram(h);
  });

  it("SCHEMA_VIOLATION: a dim out of range, and an input name the program does not have", async () => {
    const h = await load(a);
    const bad = F.sealRequest({ loader: report, programDigest: a.manifest.digest, request: { kind: 1, inputs: [tensorOf("x", { type: "float32", dims: [2, 63], data: new Float32Array(126) })] } });
    expect(await refusal(client.infer(h, bad.bytes))).toMatchObject({ codeName: "SCHEMA_VIOLATION", code: 52 });
    const unknown = F.sealRequest({ loader: report, programDigest: a.manifest.digest, request: { kind: 1, inputs: [tensorOf("z", { type: "float32", dims: [2, 64], data: new Float32Array(128) })] } });
    const e = await refusal(client.infer(h, unknown.bytes));
    expect(e).toMatchObject({ codeName: "SCHEMA_VIOLATION" });
    expect(e.message).toMatch(/request does not match the program's schema/);
    await client.unloadProgram(h);
  });

  it("the worker's stderr is one JSON object per line, of public scalars only", () => {
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.every((l) => typeof l === "object")).toBe(true);
    for (const l of logs as Record<string, unknown>[]) {
      for (const v of Object.values(l)) expect(["string", "number", "boolean"]).toContain(typeof v);
    }
    const text = JSON.stringify(logs);
    expect(text).toMatch(/loader refused/);
    for (const secret of [Buffer.from(key.dataKey).toString("hex"), Buffer.from(key.dataKey).toString("base64")]) expect(text).not.toContain(secret);
  });
});
