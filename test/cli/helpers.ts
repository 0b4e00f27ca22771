// Helpers of the CLI tests: run `veil` as a real process (the package bin, host/cli/veil.mjs),
// temporary folders, and the small models the tests seal.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { GraphBuilder } from "../../host/onnx/build.ts";

export const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const VEIL = join(REPO, "host", "cli", "veil.mjs");

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node host/cli/veil.mjs …args` in `cwd` (a temp dir: the bin must work from anywhere). */
export function veil(args: string[], opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((res) => {
    const child = execFile(
      process.execPath,
      [VEIL, ...args],
      { cwd: opts.cwd, env: { ...process.env, ...opts.env }, maxBuffer: 64 << 20, encoding: "utf8" },
      (err, stdout, stderr) => res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

/** Like veil(), but fails the test with the CLI's stderr when it does not exit 0. */
export async function ok(args: string[], opts: Parameters<typeof veil>[1] = {}): Promise<Result> {
  const r = await veil(args, opts);
  if (r.code !== 0) throw new Error(`veil ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  return r;
}

export function tmpDir(prefix = "veil-cli-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A bigram language model that writes a sentence: each token's logits put all weight on the
 * next word, and "." leads to the end token. Logits for the last position only, as
 * models/tiny-lm exports them ("logits": "last"). Writes `bigram.onnx` and `vocab.json`.
 */
export function writeBigramModel(dir: string): { model: string; vocab: string; prompt: string; completion: string } {
  const tokens = ["<|end|>", "veil ", "keeps ", "weights ", "and ", "prompts ", "sealed", ".", "a", "b"];
  const next: Record<string, string> = {
    "<|end|>": "<|end|>", "veil ": "keeps ", "keeps ": "weights ", "weights ": "and ", "and ": "prompts ",
    "prompts ": "sealed", sealed: ".", ".": "<|end|>", a: "b", b: "a",
  };
  const V = tokens.length;
  const table = new Float32Array(V * V);
  tokens.forEach((t, i) => {
    table[i * V + tokens.indexOf(next[t])] = 8;
  });
  const g = new GraphBuilder("bigram");
  const ids = g.input("input_ids", "int64", [1, "sequence"]);
  const starts = g.init("starts", "int64", [1], new BigInt64Array([-1n]));
  const ends = g.init("ends", "int64", [1], new BigInt64Array([2n ** 62n]));
  const axes = g.init("axes", "int64", [1], new BigInt64Array([1n]));
  const emb = g.init("bigram.logits", "float32", [V, V], table);
  const last = g.op("Slice", [ids, starts, ends, axes]);
  g.op("Gather", [emb, last], { axis: 0 }, "logits");
  g.output("logits", "float32", [1, 1, V]);
  const model = join(dir, "bigram.onnx");
  writeFileSync(model, g.bytes());
  const vocab = join(dir, "vocab.json");
  writeFileSync(vocab, JSON.stringify({ tokens, end_token: 0, context_length: 32, input: "input_ids", output: "logits", logits: "last" }));
  return { model, vocab, prompt: "veil ", completion: "keeps weights and prompts sealed." };
}
