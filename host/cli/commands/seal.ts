// `veil seal`: an ONNX model → a program directory (graph without weights, sealed weights,
// manifest, empty signature list). Trust status: runs on the model owner's / release CI's own
// machine — it reads the plaintext weights and the data key; it writes only public files and
// ciphertext, and prints only public facts.
import { mkdir, rename, rmdir, stat, unlink } from "node:fs/promises";
import { basename } from "node:path";
import { CHUNK_SIZE, LIMITS, MAX_DIM, isPowerOfTwo } from "../../formats/constants.ts";
import { buildManifest } from "../../formats/manifest-builder.ts";
import { sealWeights } from "../../formats/weights.ts";
import { nameProblem } from "../../formats/wire.ts";
import { ascii } from "../../formats/bytes.ts";
import { decodeModel } from "../../onnx/proto.ts";
import { splitModel } from "../../onnx/split.ts";
import { readChunks } from "../../onnx/weights.ts";
import {
  CliError, UsageError, bigOption, flag, formatBytes, hex, intOption, list, parseSize, required, str, toJson, type Command,
} from "../args.ts";
import { readDataKey } from "../keyfile.ts";
import { Progress, progressWanted } from "../progress.ts";
import { PROGRAM_FILES, programPath, tempPath, writeAtomic } from "../program.ts";
import { DEFAULT_MAX_DIM, generateSchema, ioSchema, parseDimOption, readVocab, showSpec, type DimLimits } from "../schema.ts";

export const seal: Command = {
  name: "seal",
  help: `Usage:
  veil seal <model.onnx> --data-key <file> --name <name> --version <n> [options]

Moves every weight out of the graph (small int64 shape tensors stay, and are listed),
seals the weights with the data key (SPEC §9) in constant memory, and writes the program
directory:
  graph.onnx       the graph without its weights
  weights.sealed   the sealed weights stream
  manifest.bin     the SPEC §5 manifest (I/O schema, weights descriptor, policy)
  signatures.bin   empty: reviewers add signatures with veil sign
Prints the program digest (SHA-256 of manifest.bin). The model may have its weights embedded
or in external-data files beside it.

Options:
  --data-key <file>        data key file (veil keygen --data-key)
  --name <name>            program name: 1..64 of a-z 0-9 . _ - (SPEC §1.4)
  --version <n>            program version, 1..2^63-1 (the loader refuses rollbacks)
  --out <dir>              program directory (default: ./<name>.veil)
  --chunk-size <size>      sealing chunk, a power of two in 64KiB..16MiB (default 1MiB)
  --max-dim <n>            range 1..n for every dynamic dimension (default ${DEFAULT_MAX_DIM})
  --dim <key>=[min..]max   range of one dynamic dimension, by symbolic name (batch=1..8)
                           or by tensor and axis (x[0]=8); repeatable
  --generate <vocab.json>  a generate-mode program (SPEC §5.3): {"tokens": [...], "end_token",
                           "context_length", "input", "output", "logits": "last"|"all"}
  --max-new-tokens <n>     generate mode: the program's max_new_tokens (default: vocab.json's, else 256)
  --tokens-per-chunk <n>   generate mode: tokens per stream chunk (default: vocab.json's, else 4)
  --egress-limit <size>    policy: the largest response the loader may release (SPEC §5.5)
  --force                  replace a program already in <dir>
  --progress, --no-progress  force the progress bar on or off (default: on for ≥ 16 MiB)`,
  options: {
    "data-key": { type: "string" },
    name: { type: "string" },
    version: { type: "string" },
    out: { type: "string" },
    "chunk-size": { type: "string" },
    "max-dim": { type: "string" },
    dim: { type: "string", multiple: true },
    generate: { type: "string" },
    "max-new-tokens": { type: "string" },
    "tokens-per-chunk": { type: "string" },
    "egress-limit": { type: "string" },
    force: { type: "boolean" },
    progress: { type: "boolean" },
    "no-progress": { type: "boolean" },
  },
  positionals: [1, 1],
  async run(ctx) {
    const modelPath = ctx.positionals[0];
    // Check everything cheap before reading the model.
    const keyPath = required(ctx, "data-key", "the data key file to seal the weights with");
    const name = required(ctx, "name", "the program name");
    const bad = /^[\x20-\x7e]*$/.test(name) ? nameProblem(ascii(name), true) : "it is not ASCII";
    if (bad) throw new UsageError(`--name ${JSON.stringify(name)}: not a program name (${bad}); use 1..64 of a-z 0-9 . _ -`);
    const version = bigOption(ctx, "version", 1n, (1n << 63n) - 1n);
    if (version === undefined) throw new UsageError("--version is required (1..2^63-1)");
    const chunkSize = parseSize(str(ctx, "chunk-size") ?? "1MiB", "--chunk-size");
    if (!isPowerOfTwo(chunkSize) || chunkSize < CHUNK_SIZE.MIN || chunkSize > CHUNK_SIZE.MAX)
      throw new UsageError(`--chunk-size ${str(ctx, "chunk-size")}: must be a power of two in 64KiB..16MiB`);
    const egressArg = str(ctx, "egress-limit");
    const egressLimit = egressArg === undefined ? undefined : parseSize(egressArg, "--egress-limit");
    if (egressLimit !== undefined && (egressLimit < 1 || egressLimit > LIMITS.RESPONSE_MAX))
      throw new UsageError(`--egress-limit ${egressArg}: must be 1..16MiB (RESPONSE_MAX)`);
    const limits: DimLimits = { maxDim: intOption(ctx, "max-dim", 1, MAX_DIM, DEFAULT_MAX_DIM)!, byKey: new Map(list(ctx, "dim").map(parseDimOption)) };
    const vocabPath = str(ctx, "generate");
    const maxNewTokens = intOption(ctx, "max-new-tokens", 1, 4096);
    const tokensPerChunk = intOption(ctx, "tokens-per-chunk", 1, 256);
    if (!vocabPath && (maxNewTokens !== undefined || tokensPerChunk !== undefined))
      throw new UsageError("--max-new-tokens and --tokens-per-chunk need --generate");
    if (vocabPath && limits.byKey.size > 0) throw new UsageError("--dim does not apply to generate programs (their dims come from vocab.json)");
    const outDir = str(ctx, "out") ?? `${name}.veil`;
    const key = await readDataKey(keyPath, (w) => ctx.warn(w));
    const vocab = vocabPath ? await readVocab(vocabPath) : undefined;

    try {
      const st = await stat(modelPath);
      if (!st.isFile()) throw new CliError(`${modelPath} is not a file`);
    } catch (e) {
      if (e instanceof CliError) throw e;
      throw new CliError(`cannot read model ${modelPath}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
    }
    if (!flag(ctx, "force")) {
      const exists = await stat(programPath(outDir, "manifest")).then(() => true, () => false);
      if (exists) throw new CliError(`${outDir} already holds a program (${PROGRAM_FILES.manifest}); pass --force to replace it`);
    }

    const split = await splitModel(modelPath);
    const weightsTmp = tempPath(programPath(outDir, "weights"));
    let progress: Progress | undefined;
    let created: string | undefined;
    try {
      const model = decodeModel(split.graph);
      const gen = vocab ? generateSchema(model, vocab, { maxNewTokens, tokensPerChunk, where: `--generate ${vocabPath}` }) : undefined;
      const schema = gen ? { inputs: gen.inputs, outputs: gen.outputs, dynamic: [] as string[] } : ioSchema(model, limits);
      created = await mkdir(outDir, { recursive: true });
      progress = new Progress({ label: "sealing weights", total: split.weightsSize, stream: ctx.io.stderr, enabled: progressWanted(ctx.values, split.weightsSize) });
      const p = progress;
      const sealed = await sealWeights({
        files: split.files.map((f) => ({ location: f.location, size: f.size, source: () => readChunks(f, 1 << 20, true) })),
        dataKey: key.dataKey,
        keyId: key.keyId,
        chunkSize,
        out: weightsTmp,
        onProgress: (done) => p.update(done),
      });
      progress.finish();
      const built = buildManifest({
        name, version, graph: split.graph, inputs: schema.inputs, outputs: schema.outputs,
        generate: gen?.generate, weights: sealed.descriptor, egressLimit,
      });
      await writeAtomic(programPath(outDir, "graph"), split.graph);
      await writeAtomic(programPath(outDir, "signatures"), new Uint8Array(0));
      await rename(weightsTmp, programPath(outDir, "weights"));
      await writeAtomic(programPath(outDir, "manifest"), built.bytes);

      const m = built.manifest;
      const w = m.weights;
      const digest = hex(built.digest);
      if (ctx.json) {
        ctx.out(toJson({
          dir: outDir, name, version: version.toString(), digest, mode: m.mode === 2 ? "generate" : "tensor",
          graph: { path: programPath(outDir, "graph"), size: split.graph.length, sha256: hex(m.graphSha256) },
          weights: { path: programPath(outDir, "weights"), sealed_size: sealed.sealedSize, plaintext_size: w.plaintextSize, chunk_size: w.chunkSize, chunk_count: w.chunkCount, key_id: hex(w.keyId), files: w.files },
          kept_in_graph: split.kept,
          inputs: m.inputs, outputs: m.outputs, dynamic: schema.dynamic,
          egress_limit: egressLimit ?? null,
        }));
        return;
      }
      const row = (k: string, v: string) => ctx.out(`${k.padEnd(12)} ${v}`);
      row("program", `${name} v${version} → ${outDir}`);
      row("source", `${basename(modelPath)}`);
      row("graph", `${PROGRAM_FILES.graph}, ${formatBytes(split.graph.length)} (weights removed), sha256 ${hex(m.graphSha256)}`);
      row("weights", `${PROGRAM_FILES.weights}, ${formatBytes(w.plaintextSize)} in ${w.chunkCount} chunk${w.chunkCount > 1 ? "s" : ""} of ${formatBytes(w.chunkSize)}, key id ${hex(w.keyId)}`);
      row("", `from ${split.tensors.length} tensor${split.tensors.length === 1 ? "" : "s"} in ${w.files.length} external-data file${w.files.length > 1 ? "s" : ""} (${w.files.map((f) => `${f.location} ${formatBytes(f.size)}`).join(", ")})`);
      if (split.kept.length > 0) {
        const shown = split.kept.slice(0, 12).join(", ") + (split.kept.length > 12 ? `, and ${split.kept.length - 12} more` : "");
        row("kept", `${split.kept.length} small tensor${split.kept.length > 1 ? "s" : ""} stay in the graph (shape data ONNX Runtime must read): ${shown}`);
      }
      for (const s of m.inputs) row("input", showSpec(s));
      for (const s of m.outputs) row("output", showSpec(s));
      for (const d of schema.dynamic) row("dynamic", `${d} (--dim, --max-dim)`);
      if (m.generate) {
        const g = m.generate;
        row("mode", `generate: ${g.tokens.length} tokens, end token ${g.endToken}, context ${g.contextLength}, up to ${g.maxNewTokens} new tokens, ${g.tokensPerChunk} per stream chunk`);
      } else row("mode", "tensor");
      if (egressLimit !== undefined) row("policy", `egress limit ${egressLimit} bytes`);
      row("signatures", `none yet: reviewers run veil sign ${outDir} --key <reviewer key>`);
      ctx.out(`program digest ${digest}`);
    } catch (e) {
      progress?.finish(false);
      await unlink(weightsTmp).catch(() => undefined);
      if (created) await rmdir(outDir).catch(() => undefined); // only if still empty
      throw e;
    } finally {
      key.dataKey.fill(0);
      await split.close();
    }
  },
};
