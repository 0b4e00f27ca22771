// The shipped language model (models/tiny-lm: model.onnx + vocab.json) through a real trusted
// worker: split from its weights, sealed, its generate-mode manifest built from vocab.json and
// signed, the key released, and a confidential GREEDY generation compared token for token with a
// plain greedy loop over ONNX Runtime in this process (same session options as the worker, the
// loader's tokenizer and sampling rules re-implemented from SPEC §5.3/§7.5) — by `infer` and by
// the streamed path. This test does not skip: without the model it fails and says why.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { splitModel } from "../../host/onnx/split.ts";
import { REPO_ROOT, WorkerClient, loadSealedWeights } from "../../host/worker/client.ts";
import { concatAll, makeTrust, sealProgram, type SealedProgram } from "./helpers.ts";

// VEIL_TINY_LM: another export of the model (as in test/cli/flow.test.ts).
const LM_DIR = process.env.VEIL_TINY_LM ?? join(REPO_ROOT, "models", "tiny-lm");
const MODEL = join(LM_DIR, "model.onnx");
const VOCAB = join(LM_DIR, "vocab.json");
/** Tokens generated per request. */
const N = 48;

interface Vocab {
  tokens: string[];
  end_token: number;
  context_length: number;
  input: string;
  output: string;
  logits: "last" | "all";
}

const enc = new TextEncoder();
const dec = new TextDecoder();

const missingFiles = () => [MODEL, VOCAB].filter((p) => !existsSync(p));

/** Every test calls this first: it fails (never skips) when the model is not there. */
function requireModel(): void {
  const missing = missingFiles();
  if (missing.length > 0) {
    const show = (p: string) => (p.startsWith(REPO_ROOT) ? relative(REPO_ROOT, p) : p);
    throw new Error(
      `tiny-lm: ${missing.map(show).join(" and ")} not found. This test needs the trained ` +
      `model shipped in models/tiny-lm/ (model.onnx and vocab.json, exported by models/tiny-lm/train.py); it fails rather than skips without it.`,
    );
  }
}

function readVocab(): Vocab {
  const v = JSON.parse(readFileSync(VOCAB, "utf8")) as Partial<Vocab>;
  const problems: string[] = [];
  if (!Array.isArray(v.tokens) || !v.tokens.every((t) => typeof t === "string")) problems.push("tokens must be a list of strings");
  if (!Number.isInteger(v.end_token)) problems.push("end_token must be an integer");
  if (!Number.isInteger(v.context_length)) problems.push("context_length must be an integer");
  if (typeof v.input !== "string" || typeof v.output !== "string") problems.push("input and output must be tensor names");
  if (v.logits !== "last" && v.logits !== "all") problems.push('logits must be "last" or "all"');
  if (problems.length) throw new Error(`tiny-lm: ${VOCAB}: ${problems.join("; ")}`);
  return v as Vocab;
}

/** SPEC §7.5: greedy longest match over the token table's bytes (the longest; the lowest id among equals). */
function tokenize(prompt: Uint8Array, table: readonly Uint8Array[]): number[] {
  const ids: number[] = [];
  for (let p = 0; p < prompt.length;) {
    let best = -1;
    let bestLen = 0;
    table.forEach((t, id) => {
      if (t.length > bestLen && p + t.length <= prompt.length && t.every((b, i) => prompt[p + i] === b)) {
        best = id;
        bestLen = t.length;
      }
    });
    if (best < 0) throw new Error(`tiny-lm: prompt byte ${p} (${JSON.stringify(dec.decode(prompt.subarray(p, p + 4)))}…) is not covered by the vocabulary`);
    ids.push(best);
    p += bestLen;
  }
  return ids;
}

/** The loader's greedy pick (loader-wasm/generate.ts): first index of the maximum, NaN as −∞. */
function argmax(logits: Float32Array): number {
  let best = -Infinity;
  let arg = 0;
  for (let j = 0; j < logits.length; j++) {
    const x = Number.isNaN(logits[j]) ? -Infinity : logits[j];
    if (x > best) {
      best = x;
      arg = j;
    }
  }
  return arg;
}

interface Generation {
  ids: number[];
  text: Uint8Array;
  stop: 1 | 2;
}

/** A plain greedy loop on ONNX Runtime: the last context_length tokens in, the last position's logits, stop at end_token. */
async function greedy(s: ort.InferenceSession, v: Vocab, table: readonly Uint8Array[], prompt: string, n: number): Promise<Generation> {
  const ctx = tokenize(enc.encode(prompt), table);
  const ids: number[] = [];
  const V = table.length;
  for (let step = 0; step < n; step++) {
    const window = ctx.slice(-v.context_length);
    const input = new ort.Tensor("int64", BigInt64Array.from(window, BigInt), [1, window.length]);
    const out = (await s.run({ [v.input]: input }))[v.output];
    const positions = v.logits === "last" ? 1 : window.length;
    expect(out.dims).toEqual([1, positions, V]);
    const all = out.data as Float32Array;
    const next = argmax(all.subarray((positions - 1) * V, positions * V));
    if (next === v.end_token) return { ids, text: concatAll(ids.map((t) => table[t])), stop: 1 };
    ids.push(next);
    ctx.push(next);
  }
  return { ids, text: concatAll(ids.map((t) => table[t])), stop: 2 };
}

// A short prompt with multi-byte tokens (the em dash, curly quotes), and one longer than the
// 128-token context, so the window is cut from the prompt and slides while generating.
const PROMPTS = [
  "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse,",
  "There now is your insular city of the Manhattoes, belted round by wharves as Indian isles by coral reefs—commerce " +
    "surrounds it with her surf. Right and left, the streets take you waterward. Its extreme downtown is the battery, " +
    "where that noble mole is washed by waves, and cooled by breezes, which a few hours previous were out of sight of land. " +
    "Look at the crowds of water-gazers there. “What do you see?” said the",
];

describe("models/tiny-lm through a real worker: confidential greedy generation = plain ONNX Runtime greedy loop", () => {
  const trust = makeTrust();
  const key = { keyId: new Uint8Array(randomBytes(16)), dataKey: new Uint8Array(randomBytes(32)) };
  let vocab: Vocab;
  let table: Uint8Array[];
  let program: SealedProgram;
  let client: WorkerClient | undefined;
  let report: Uint8Array;
  let handle: number;
  let reference: ort.InferenceSession | undefined;
  const want = new Map<string, Generation>();

  beforeAll(async () => {
    if (missingFiles().length > 0) return; // each test then fails with requireModel()'s message
    vocab = readVocab();
    table = vocab.tokens.map((t) => enc.encode(t));
    // The model owner: split the graph from its weights, seal them, and build the generate-mode
    // manifest (§5.3) from vocab.json, its logits form included.
    const sp = await splitModel(MODEL);
    try {
      const generate: F.GenerateSpec = { tokens: table, endToken: vocab.end_token, maxNewTokens: 64, contextLength: vocab.context_length, tokensPerChunk: 5 };
      program = await sealProgram(trust, {
        name: "tiny-lm", graph: sp.graph, files: sp.files, key, generate,
        ...F.generateTensorSpecs(generate, { inputName: vocab.input, outputName: vocab.output, positions: vocab.logits }),
      });
    } finally {
      await sp.close();
    }
    client = WorkerClient.spawn({ env: { ...process.env, TSX_DISABLE_CACHE: "1" } });
    report = await client.init(trust.trustConfig, new Uint8Array(randomBytes(32)));
    await client.unwrapKey(F.wrapKey({ report, ...key }));
    handle = await client.loadProgram(program.manifest.bytes, program.bundle, program.graph);
    await loadSealedWeights(client, handle, program.sealed);

    // The reference: the original model.onnx, with the worker's session options
    // (host/trusted/ort-runtime.ts: CPU, graph optimisation "all", default threads).
    reference = await ort.InferenceSession.create(MODEL, { executionProviders: ["cpu"], graphOptimizationLevel: "all", logSeverityLevel: 4 });
    for (const prompt of PROMPTS) want.set(prompt, await greedy(reference, vocab, table, prompt, N));
  });

  afterAll(async () => {
    await reference?.release();
    await client?.close();
  });

  const request = (prompt: string) => F.sealRequest({
    loader: report,
    programDigest: program.manifest.digest,
    request: { kind: 2, prompt: enc.encode(prompt), maxNewTokens: N, temperatureMilli: 0, topK: 0 }, // greedy, unseeded
  });

  it("the prompts exercise what they should: multi-byte tokens, a prompt over the context length, a full-length generation", () => {
    requireModel();
    expect(tokenize(enc.encode(PROMPTS[0]), table).length).toBeLessThan(enc.encode(PROMPTS[0]).length); // "—" is one 3-byte token
    expect(tokenize(enc.encode(PROMPTS[1]), table).length).toBeGreaterThan(vocab.context_length);
    for (const [prompt, g] of want) {
      process.stderr.write(`[tiny-lm] ${JSON.stringify(prompt.slice(-40))} → ${JSON.stringify(dec.decode(g.text))} (${g.ids.length} tokens, stop ${g.stop})\n`);
    }
    // A trained model continues these prompts with text, not the end token.
    expect([...want.values()].some((g) => g.ids.length === N)).toBe(true);
  });

  for (const [i, prompt] of PROMPTS.entries()) {
    it(`prompt ${i}: infer gives the reference's ${N} greedy tokens exactly`, async () => {
      requireModel();
      const g = want.get(prompt)!;
      const req = request(prompt);
      const res = req.response.openResponse(await client!.infer(handle, req.bytes));
      if (res.kind !== 2) throw new Error(`response kind ${res.kind}`);
      expect(dec.decode(res.text)).toBe(dec.decode(g.text));
      expect(Buffer.from(res.text).equals(Buffer.from(g.text))).toBe(true);
      expect(res.tokens).toBe(g.ids.length);
      expect(res.stop).toBe(g.stop);
      // The token sequence, recovered from the text with the same tokenizer, is the reference's.
      expect(tokenize(res.text, table)).toEqual(g.ids);
    });

    it(`prompt ${i}: the streamed path gives the same text, in chunks of tokens_per_chunk`, async () => {
      requireModel();
      const g = want.get(prompt)!;
      const req = request(prompt);
      const opener = req.response.openStream();
      const chunks: F.StreamChunk[] = [];
      for await (const piece of client!.stream(handle, req.bytes)) chunks.push(...opener.push(piece));
      opener.end();
      expect(dec.decode(concatAll(chunks.map((c) => c.text)))).toBe(dec.decode(g.text));
      expect(chunks.reduce((a, c) => a + c.tokens, 0)).toBe(g.ids.length);
      expect(chunks.at(-1)!.stop).toBe(g.stop);
      for (const c of chunks.slice(0, -1)) expect(c).toMatchObject({ tokens: 5, stop: 0 });
    });
  }
});
