// `veil gen-mlp`: a synthetic MLP of about N MiB of float32 weights, for tests and benchmarks
// (models/synthetic/README.md). UNTRUSTED host code: the weights are public pseudo-random data.
import { mkdir } from "node:fs/promises";
import { basename, dirname, extname, resolve } from "node:path";
import { syntheticMlp } from "../../onnx/mlp.ts";
import { writeEmbeddedModel, writeExternalModel } from "../../onnx/write.ts";
import type { WeightFile } from "../../onnx/weights.ts";
import { CliError, UsageError, flag, formatBytes, intOption, numberOption, required, toJson, type Command } from "../args.ts";
import { Progress, progressWanted } from "../progress.ts";

/** ONNX Runtime (and protobuf) load a self-contained model only below 2 GiB. */
const EMBEDDED_MAX = 2 ** 31 - 1;

export const genMlp: Command = {
  name: "gen-mlp",
  help: `Usage:
  veil gen-mlp --mib <n> --out <model.onnx> [--external] [--seed <s>] [options]

Writes an MLP (MatMul + Add + Relu per layer) whose float32 weights total about n MiB,
generated from the seed as they are written: memory stays constant whatever the size.
Input "x" is [batch, 64] float32, output "y" is [batch, 16] float32 (batch symbolic).
Self-contained by default (below 2 GiB only); with --external the graph is <out> and the
weights are <stem>.weights-<i>.bin files beside it (each < 2 GiB), as ONNX external data.
The same seed and shape always give the same bytes. See models/synthetic/README.md.

Options:
  --mib <n>            weight size in MiB (fractions allowed, e.g. 0.5)
  --out <path>         the model file to write
  --external           weights in external-data files beside the model
  --seed <s>           weight seed (default 1)
  --hidden <n>         hidden width (default: derived from --mib)
  --layers <n>         linear layers, ≥ 2 (default: derived from --mib)
  --input-dim <n>      width of x (default 64)
  --output-dim <n>     width of y (default 16)
  --progress, --no-progress  force the progress bar on or off (default: on for ≥ 16 MiB)`,
  options: {
    mib: { type: "string" },
    out: { type: "string" },
    external: { type: "boolean" },
    seed: { type: "string" },
    hidden: { type: "string" },
    layers: { type: "string" },
    "input-dim": { type: "string" },
    "output-dim": { type: "string" },
    progress: { type: "boolean" },
    "no-progress": { type: "boolean" },
  },
  positionals: [0, 0],
  async run(ctx) {
    const mib = numberOption(ctx, "mib", 0, 64 * 1024 * 1024);
    if (mib === undefined || mib <= 0) throw new UsageError("--mib is required (the weight size in MiB, > 0)");
    const out = required(ctx, "out", "the model file to write");
    const external = flag(ctx, "external");
    const stem = basename(out, extname(out)).replace(/[^A-Za-z0-9._-]/g, "_").replace(/^[._]+/, "").slice(0, 40) || "model";
    const mlp = syntheticMlp({
      weightsMiB: mib,
      seed: intOption(ctx, "seed", 0, 2 ** 31 - 1, 1),
      hidden: intOption(ctx, "hidden", 1, 1 << 16),
      layers: intOption(ctx, "layers", 2, 4096),
      inputDim: intOption(ctx, "input-dim", 1, 1 << 16),
      outputDim: intOption(ctx, "output-dim", 1, 1 << 16),
      locationPrefix: `${stem}.weights-`,
    });
    const total = mlp.files.reduce((n, f) => n + f.size, 0);
    if (!external && total + mlp.graph.length >= EMBEDDED_MAX)
      throw new CliError(`${formatBytes(total)} of weights do not fit a self-contained ONNX model (< 2 GiB); add --external`);
    const progress = new Progress({ label: "writing weights", total, stream: ctx.io.stderr, enabled: progressWanted(ctx.values, total) });
    let done = 0;
    const counted: WeightFile[] = mlp.files.map((f) => ({
      location: f.location,
      size: f.size,
      read: async (offset: number, length: number, into?: Uint8Array) => {
        const r = await f.read(offset, length, into);
        done += length;
        progress.update(done);
        return r;
      },
    }));
    try {
      await mkdir(dirname(resolve(out)), { recursive: true });
      if (external) await writeExternalModel(dirname(resolve(out)), basename(out), mlp.graph, counted);
      else await writeEmbeddedModel(out, mlp.model, counted);
      progress.finish();
    } catch (e) {
      progress.finish(false);
      throw e;
    }
    const summary = {
      path: out,
      external,
      weight_files: external ? mlp.files.map((f) => ({ path: resolve(dirname(resolve(out)), f.location), size: f.size })) : [],
      weight_bytes: mlp.weightBytes,
      layers: mlp.layers,
      hidden: mlp.hidden,
      input: { name: mlp.input, dims: ["batch", mlp.inputDim] },
      output: { name: mlp.output, dims: ["batch", mlp.outputDim] },
    };
    if (ctx.json) {
      ctx.out(toJson(summary));
      return;
    }
    ctx.out(`wrote ${out}: synthetic MLP, ${mlp.layers} layers, hidden ${mlp.hidden}, ${formatBytes(mlp.weightBytes)} of float32 weights (${mlp.weightBytes} bytes)`);
    ctx.out(`  input x float32 [batch, ${mlp.inputDim}] → output y float32 [batch, ${mlp.outputDim}]`);
    if (external) for (const f of summary.weight_files) ctx.out(`  external data ${f.path} (${formatBytes(f.size)})`);
  },
};
