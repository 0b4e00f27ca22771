// The generate-mode model of bench:infer: models/tiny-lm (model.onnx + vocab.json) when it
// exists, else a small stand-in built with GraphBuilder (embedding → MLP → logits for every
// position). Also the plain side's tokenizer (SPEC §7.5 greedy longest match) and greedy step.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as F from "../../host/formats/index.ts";
import { GraphBuilder, type WeightFile } from "../../host/onnx/build.ts";
import { uniform } from "../../host/onnx/random.ts";
import { splitModel } from "../../host/onnx/split.ts";
import { REPO_ROOT } from "../../host/worker/client.ts";

export interface GenerateModel {
  /** Where it came from, for the header. */
  source: string;
  graph: Uint8Array;
  files: WeightFile[];
  tokens: Uint8Array[];
  endToken: number;
  contextLength: number;
  input: string;
  output: string;
  positions: "all" | "last";
  close(): Promise<void>;
}

const utf8 = new TextEncoder();

/** models/tiny-lm if it has been exported, else a GraphBuilder stand-in (split into `dir`). */
export async function generateModel(dir: string): Promise<GenerateModel> {
  const lm = join(REPO_ROOT, "models", "tiny-lm");
  if (existsSync(join(lm, "model.onnx")) && existsSync(join(lm, "vocab.json"))) {
    const v = JSON.parse(readFileSync(join(lm, "vocab.json"), "utf8")) as {
      tokens: string[]; end_token: number; context_length: number; input: string; output: string; logits: "last" | "all";
    };
    const sp = await splitModel(join(lm, "model.onnx"));
    return {
      source: `models/tiny-lm (${v.tokens.length} tokens, context ${v.context_length}, ${(sp.weightsSize / 2 ** 20).toFixed(1)} MiB of weights)`,
      graph: sp.graph, files: sp.files, tokens: v.tokens.map((t) => utf8.encode(t)), endToken: v.end_token,
      contextLength: v.context_length, input: v.input, output: v.output, positions: v.logits === "all" ? "all" : "last", close: () => sp.close(),
    };
  }
  // Stand-in: characters as tokens; logits = MLP(embedding(ids)) at every position.
  const chars = [..." abcdefghijklmnopqrstuvwxyz.,'"];
  const V = chars.length + 1;
  const D = 64;
  const H = 256;
  const C = 128;
  const g = new GraphBuilder("bench_lm");
  const ids = g.input("input_ids", "int64", [1, "seq"]);
  const emb = g.init("emb", "float32", [V, D], uniform(V * D, 11, 1, 0));
  const w1 = g.init("w1", "float32", [D, H], uniform(D * H, 12, Math.sqrt(6 / D), 0));
  const w2 = g.init("w2", "float32", [H, V], uniform(H * V, 13, Math.sqrt(6 / H), 0));
  const bias = new Float32Array(V);
  bias[0] = -1e4; // the end token never wins: every run produces max_new_tokens tokens
  const b2 = g.init("b2", "float32", [V], bias);
  const h = g.op("Relu", [g.op("MatMul", [g.op("Gather", [emb, ids], { axis: 0 }), w1])]);
  g.op("Add", [g.op("MatMul", [h, w2]), b2], {}, "logits");
  g.output("logits", "float32", [1, "seq", V]);
  const path = join(dir, "bench_lm.onnx");
  writeFileSync(path, g.bytes());
  const sp = await splitModel(path);
  return {
    source: `GraphBuilder stand-in (models/tiny-lm/model.onnx not present): ${V} tokens, embedding ${D} → MLP ${H} → logits, context ${C}`,
    graph: sp.graph, files: sp.files, tokens: ["", ...chars].map((t, i) => (i === 0 ? utf8.encode("<end>") : utf8.encode(t))), endToken: 0,
    contextLength: C, input: "input_ids", output: "logits", positions: "all", close: () => sp.close(),
  };
}

/** SPEC §7.5: greedy longest match of the prompt bytes over the token table. */
export function tokenize(prompt: Uint8Array, tokens: Uint8Array[]): number[] {
  const byFirst = new Map<number, number[]>();
  tokens.forEach((t, i) => {
    if (t.length === 0) return;
    const l = byFirst.get(t[0]) ?? [];
    l.push(i);
    byFirst.set(t[0], l);
  });
  const out: number[] = [];
  for (let p = 0; p < prompt.length;) {
    let best = -1;
    for (const i of byFirst.get(prompt[p]) ?? []) {
      const t = tokens[i];
      if (t.length > prompt.length - p || (best >= 0 && t.length <= tokens[best].length)) continue;
      let ok = true;
      for (let k = 0; k < t.length && ok; k++) ok = t[k] === prompt[p + k];
      if (ok) best = i;
    }
    if (best < 0) throw new Error(`prompt byte ${prompt[p]} at ${p} is in no token`);
    out.push(best);
    p += tokens[best].length;
  }
  return out;
}

/** Index of the largest of the last `vocab` logits (first one on ties). */
export function argmaxLast(logits: Float32Array, vocab: number): number {
  const base = logits.length - vocab;
  let best = 0;
  for (let i = 1; i < vocab; i++) if (logits[base + i] > logits[base + best]) best = i;
  return best;
}

export function generateSpec(m: GenerateModel, maxNewTokens: number, tokensPerChunk: number): F.GenerateSpec {
  return { tokens: m.tokens, endToken: m.endToken, maxNewTokens, contextLength: m.contextLength, tokensPerChunk };
}
