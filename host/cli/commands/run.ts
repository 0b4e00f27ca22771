// `veil run`: a whole local confidential run in one command. This process plays three roles
// that are separate parties in production, each with only its own secrets:
//   - the untrusted host: spawns the trusted worker and relays ciphertext and public data;
//   - the key broker (holds the data key): checks the worker's measurement and report, then
//     wraps the data key to that one loader instance (SPEC §10);
//   - the client (holds the request and its answer in plaintext): seals the request to the
//     attested loader key and opens the response (SPEC §8).
// The worker (host/trusted/) is the only place weights and requests exist in plaintext apart
// from the data owner's own input and output here.
import { sha256 } from "@noble/hashes/sha2.js";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { equalBytes } from "../../formats/bytes.ts";
import { LIMITS, TEMPERATURE_MILLI_MAX } from "../../formats/constants.ts";
import type { InnerRequest } from "../../formats/inner.ts";
import { wrapKey } from "../../formats/keywrap.ts";
import { decodeReportBody } from "../../formats/report.ts";
import { sealRequest } from "../../formats/request.ts";
import { checkThreshold } from "../../formats/sign.ts";
import { decodeTrustConfig, trustConfigHash } from "../../formats/trust.ts";
import { REPO_ROOT, WorkerClient, WorkerError } from "../../worker/client.ts";
import {
  CliError, LOADER_REFUSED, UsageError, bigOption, hex, intOption, numberOption, required, str, toJson, type Command, type Context,
} from "../args.ts";
import { readDataKey } from "../keyfile.ts";
import { Progress, progressWanted } from "../progress.ts";
import { programPath, readNamed, readProgram, type ProgramDir } from "../program.ts";
import { readTensorsJson, tensorToJson, tensorsToJsonText } from "../tensors-json.ts";

export const LOADER_WASM = join(REPO_ROOT, "build", "loader.wasm");

export const run: Command = {
  name: "run",
  help: `Usage:
  veil run <program dir> --trust <trust.bin> --data-key <file> --prompt "<text>" [generation options]
  veil run <program dir> --trust <trust.bin> --data-key <file> --input <tensors.json>

Starts a trusted worker and, in one command, does what a key broker and a client would:
  1. hello: checks the loader measurement equals SHA-256 of build/loader.wasm (or --measurement)
  2. init with the trust configuration and a fresh nonce; checks the report body (its
     trust_config_hash, the nonce, the key_id rule)
  3. wraps the data key to that loader (SPEC §10) and has it unwrapped inside
  4. load-program: the loader checks the reviewer signatures against the trust configuration
  5. streams weights.sealed in, chunk by chunk (progress bar for large programs)
  6. seals the request to the loader's key (SPEC §8), prints the answer, closes the worker
A generate program's completion streams to stdout as the loader releases each token group;
a tensor program's outputs print as JSON. --trust is required: veil never trusts a program's
own signers by default.

Options:
  --trust <file>          trust configuration (veil trust) to initialise the loader with
  --data-key <file>       the program's data key file (veil keygen --data-key)
  --prompt <text>         generate programs: the prompt ("-" reads stdin)
  --max-tokens <n>        new tokens at most (default: the program's max_new_tokens)
  --temperature <t>       0 (greedy, the default) .. 10
  --top-k <k>             sample from the k likeliest tokens (0: all)
  --seed <s>              a u64: reproducible sampling
  --input <file>          tensor programs: JSON list of {"name", "dtype", "dims", "data"} ("-": stdin)
  --measurement <hex>     the loader measurement to expect (default: SHA-256 of build/loader.wasm)
  --progress, --no-progress  force the weights progress bar on or off (default: on for ≥ 16 MiB)

Exit status: 0 success, 1 error, 2 bad usage, 3 the loader refused (SPEC §12 code shown).`,
  options: {
    trust: { type: "string" },
    "data-key": { type: "string" },
    prompt: { type: "string" },
    "max-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    seed: { type: "string" },
    input: { type: "string" },
    measurement: { type: "string" },
    progress: { type: "boolean" },
    "no-progress": { type: "boolean" },
  },
  positionals: [1, 1],
  run: runCommand,
};

async function readStdin(): Promise<Uint8Array> {
  return new Uint8Array(readFileSync(0));
}

/**
 * §7.5: the loader tokenizes by greedy longest match; the first byte where no token matches,
 * if any (the same walk, on public data: the token table).
 */
function uncoveredByte(prompt: Uint8Array, tokens: readonly Uint8Array[]): number | undefined {
  const byLength = new Map<number, Set<string>>();
  for (const t of tokens) {
    const s = Buffer.from(t).toString("latin1");
    if (!byLength.has(t.length)) byLength.set(t.length, new Set());
    byLength.get(t.length)!.add(s);
  }
  const lengths = [...byLength.keys()].sort((a, b) => b - a);
  const text = Buffer.from(prompt).toString("latin1");
  for (let i = 0; i < text.length;) {
    const n = lengths.find((l) => i + l <= text.length && byLength.get(l)!.has(text.slice(i, i + l)));
    if (n === undefined) return i;
    i += n;
  }
  return undefined;
}

/** Builds the inner request from the options, before any worker starts. */
async function buildRequest(ctx: Context, p: ProgramDir): Promise<InnerRequest> {
  const prompt = str(ctx, "prompt");
  const input = str(ctx, "input");
  const m = p.manifest;
  if (prompt !== undefined && input !== undefined) throw new UsageError("give --prompt (generate programs) or --input (tensor programs), not both");
  if (m.mode === 2) {
    if (input !== undefined) throw new UsageError(`${m.name} is a generate program: give --prompt, not --input`);
    if (prompt === undefined) throw new UsageError(`${m.name} is a generate program: --prompt is required`);
    const bytes = prompt === "-" ? await readStdin() : new TextEncoder().encode(prompt);
    if (bytes.length < 1 || bytes.length > LIMITS.PROMPT_MAX) throw new UsageError(`the prompt is ${bytes.length} bytes; SPEC §7.5 allows 1..${LIMITS.PROMPT_MAX}`);
    const g = m.generate!;
    const gap = uncoveredByte(bytes, g.tokens);
    if (gap !== undefined) {
      const ch = new TextDecoder().decode(bytes.subarray(gap, gap + 4)).slice(0, 1);
      throw new CliError(`the prompt's byte ${gap} (${JSON.stringify(ch)}) is not covered by any token of ${m.name}'s vocabulary; the loader would refuse it (SCHEMA_VIOLATION)`);
    }
    const maxNewTokens = intOption(ctx, "max-tokens", 1, 4096, g.maxNewTokens)!;
    if (maxNewTokens > g.maxNewTokens) throw new UsageError(`--max-tokens ${maxNewTokens} is over the program's max_new_tokens ${g.maxNewTokens}`);
    const t = numberOption(ctx, "temperature", 0, TEMPERATURE_MILLI_MAX / 1000) ?? 0;
    const topK = intOption(ctx, "top-k", 0, g.tokens.length, 0)!;
    const seed = bigOption(ctx, "seed", 0n, (1n << 64n) - 1n);
    const req: InnerRequest = { kind: 2, prompt: bytes, maxNewTokens, temperatureMilli: Math.round(t * 1000), topK };
    if (seed !== undefined) req.seed = seed;
    return req;
  }
  if (prompt !== undefined) throw new UsageError(`${m.name} is a tensor program: give --input <tensors.json>, not --prompt`);
  if (input === undefined) throw new UsageError(`${m.name} is a tensor program: --input <tensors.json> is required`);
  for (const o of ["max-tokens", "temperature", "top-k", "seed"]) if (ctx.values[o] !== undefined) throw new UsageError(`--${o} applies to generate programs only`);
  return { kind: 1, inputs: await readTensorsJson(input, m.inputs) };
}

/** A loader refusal as one line, with what the CLI can tell about its cause. */
function refusal(e: unknown, hint: (name: string) => string | undefined): unknown {
  // The loader's refusals, and the worker's refusal of a weights file that is not a whole stream.
  if (!(e instanceof WorkerError) || (e.kind !== "loader" && e.codeName !== "WEIGHTS_FILE")) return e;
  const h = e.codeName ? hint(e.codeName) : undefined;
  return new CliError(`${e.message}${h ? ` (${h})` : ""}`, LOADER_REFUSED, { cause: e });
}

async function runCommand(ctx: Context): Promise<void> {
  const dir = ctx.positionals[0];
  const trustPath = str(ctx, "trust");
  if (!trustPath) {
    throw new UsageError("--trust <trust.bin> is required: the loader must be initialised with a trust configuration you chose (veil trust); veil never trusts a program's signers by default");
  }
  const keyPath = required(ctx, "data-key", "the program's data key file");
  const p = await readProgram(dir);
  const m = p.manifest;
  const request = await buildRequest(ctx, p);
  const trustBytes = await readNamed(trustPath, "trust configuration");
  const tc = decodeTrustConfig(trustBytes);
  if (p.signatures.length === 0) throw new CliError(`${dir} has no reviewer signatures (signatures.bin is empty); reviewers add them with veil sign`);
  const graph = await readNamed(programPath(dir, "graph"), "graph");
  const weightsPath = programPath(dir, "weights");
  const weightsSize = await stat(weightsPath).then((s) => s.size, () => {
    throw new CliError(`cannot read sealed weights ${weightsPath}: no such file`);
  });
  const key = await readDataKey(keyPath, (w) => ctx.warn(w));
  const expectedHex = str(ctx, "measurement")?.toLowerCase();
  if (expectedHex !== undefined && !/^[0-9a-f]{64}$/.test(expectedHex)) throw new UsageError("--measurement: expected 64 hex digits (a SHA-256)");
  const expected = expectedHex ?? hex(sha256(await readNamed(LOADER_WASM, "loader module (run npm run build)")));

  const row = (k: string, v: string) => ctx.note(`${k.padEnd(12)} ${v}`);
  let onWeightsProgress: ((bytes: number) => void) | undefined;
  const client = WorkerClient.spawn({
    weightsDirs: [dirname(resolve(weightsPath))], // the one file it will read
    onLog: (e) => {
      if (typeof e === "object" && e.event === "weights progress" && typeof e.bytes === "number") onWeightsProgress?.(e.bytes);
      if (ctx.verbose) ctx.io.stderr.write(`worker: ${typeof e === "string" ? e : JSON.stringify(e)}\n`);
    },
  });
  let progress: Progress | undefined;
  try {
    // 1. Which loader is this? (SPEC §4.1, §4.2 rule 2)
    const hello = await client.hello();
    if (hello.measurementHex !== expected) {
      throw new CliError(`the worker runs loader sha256:${hello.measurementHex}, not the expected sha256:${expected}${expectedHex ? "" : " (build/loader.wasm)"}; refusing to release the key`);
    }
    row("measurement", `sha256:${hello.measurementHex} (${expectedHex ? "as --measurement" : "= build/loader.wasm"})`);
    row("worker", `code hash ${hello.codeHashHex}, pid ${client.pid}`);

    // 2. A fresh report for our nonce, bound to our trust configuration (§4.2 rules 3, 4).
    const nonce = new Uint8Array(randomBytes(32));
    const report = await client.init(trustBytes, nonce);
    let rb;
    try {
      rb = decodeReportBody(report);
    } catch (e) {
      throw new CliError(`the worker's report body is not valid (${(e as Error).message}); refusing to release the key`);
    }
    if (!equalBytes(rb.trustConfigHash, trustConfigHash(trustBytes))) throw new CliError("the report's trust_config_hash is not the hash of --trust; refusing to release the key");
    if (!equalBytes(rb.nonce, nonce)) throw new CliError("the report does not carry our fresh nonce; refusing to release the key");
    row("report", `key id ${rb.keyId}, loader key ${hex(rb.hpkePublicKey)}; trust config ${tc.threshold} of ${tc.reviewers.length}, nonce fresh: checked`);

    // 3. Key release to exactly this loader instance (§10).
    const wrapped = wrapKey({ report, keyId: key.keyId, dataKey: key.dataKey });
    key.dataKey.fill(0);
    await client.unwrapKey(wrapped).catch((e) => {
      throw refusal(e, () => undefined);
    });
    row("key", `data key ${hex(key.keyId)} wrapped to the loader and unwrapped inside it`);

    // 4. The loader decides trust (§6.1).
    const handle = await client.loadProgram(p.manifestBytes, p.signaturesBytes, graph).catch((e) => {
      throw refusal(e, (name) => {
        if (name === "SIGNATURE_THRESHOLD") {
          const t = checkThreshold(tc, p.signatures, p.manifestBytes);
          return `${t.counted} of the ${t.threshold} required signatures count under ${trustPath}; reviewers add theirs with veil sign`;
        }
        if (name === "GRAPH_MISMATCH") return "graph.onnx is not the graph the manifest names";
        if (name === "ROLLBACK") return "this loader already ran a later version of this program";
        return undefined;
      });
    });
    row("program", `${m.name} v${m.version}, digest ${hex(p.digest)}: signatures accepted`);

    // 5. Sealed weights (§9): the worker reads the file itself, one piece per load-weights call.
    progress = new Progress({ label: "loading weights", total: weightsSize, stream: ctx.io.stderr, enabled: progressWanted(ctx.values, weightsSize) });
    const prog = progress;
    onWeightsProgress = (bytes) => prog.update(bytes);
    await client.loadWeightsFile(handle, resolve(weightsPath)).catch((e) => {
      prog.finish(false);
      throw refusal(e, (name) => {
        if (name === "WEIGHTS_FILE") return `${weightsPath} is truncated or extended (its length is not the one its header gives)`;
        if (name === "KEY_UNKNOWN") return `the data key ${keyPath} has key id ${hex(key.keyId)}, but the weights are sealed under ${hex(m.weights.keyId)}`;
        if (name === "WEIGHTS_AUTH") return `${weightsPath} was altered, or sealed with another data key under the same key id`;
        if (name === "WEIGHTS_COMMITMENT") return `${weightsPath} is not the sealed stream the manifest commits to`;
        if (name === "WEIGHTS_MISMATCH") return `${weightsPath} is not this program's sealing (its header differs from the manifest)`;
        if (name === "WEIGHTS_ORDER") return `${weightsPath} is truncated or extended`;
        return undefined;
      });
    });
    progress.finish();
    // Resolved only after the final chunk: the loader checked the accelerator's measurement
    // against the manifest's commitment (§9.1).
    row("weights", `${weightsSize} sealed bytes in ${1 + m.weights.chunkCount} pieces, accepted by the loader (commitment matched)`);

    // 6. The request, sealed to the attested key and bound to this program (§8.1).
    const sealed = sealRequest({ loader: report, programDigest: p.digest, request });
    const identity = { program: m.name, version: m.version.toString(), digest: hex(p.digest), measurement: hello.measurementHex, code_hash: hello.codeHashHex };
    const weightsHint = (name: string) => (name === "WEIGHTS_INCOMPLETE" ? `${weightsPath} ended before its final chunk, truncated` : name === "SCHEMA_VIOLATION" ? `the request does not fit the program's inputs; see veil inspect ${dir}` : undefined);
    if (request.kind === 2) {
      const opener = sealed.response.openStream();
      const parts: Uint8Array[] = [];
      let tokens = 0;
      let stop = 0;
      let last = 0x0a;
      try {
        for await (const piece of client.stream(handle, sealed.bytes)) {
          for (const c of opener.push(piece)) {
            tokens += c.tokens;
            if (c.stop) stop = c.stop;
            if (ctx.json) parts.push(c.text);
            else if (c.text.length > 0) {
              last = c.text[c.text.length - 1];
              await new Promise<void>((res, rej) => ctx.io.stdout.write(c.text, (err) => (err ? rej(err) : res())));
            }
          }
        }
      } catch (e) {
        throw refusal(e, weightsHint);
      }
      opener.end();
      const why = stop === 1 ? "end" : "limit";
      if (ctx.json) {
        const text = new TextDecoder().decode(Buffer.concat(parts));
        ctx.out(toJson({ ...identity, text, tokens, stop: why }));
      } else {
        if (last !== 0x0a) ctx.io.stdout.write("\n");
        row("done", `${tokens} token${tokens === 1 ? "" : "s"}, stopped at ${why === "end" ? "the end token" : "the token limit"}`);
      }
    } else {
      const bytes = await client.infer(handle, sealed.bytes).catch((e) => {
        throw refusal(e, weightsHint);
      });
      const res = sealed.response.openResponse(bytes);
      if (res.kind !== 1) throw new CliError("the loader answered a tensor request with text");
      const outputs = res.outputs.map(tensorToJson);
      if (ctx.json) ctx.out(toJson({ ...identity, outputs }));
      else ctx.out(tensorsToJsonText(outputs));
    }
  } finally {
    key.dataKey.fill(0); // the broker's copy: released to the loader, or not at all
    progress?.finish(false);
    await client.close();
  }
}
