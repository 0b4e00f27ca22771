// Trusted: ONNX Runtime as the accelerator uses it — synchronous sessions, quiet logs, and
// the execution-provider choice. It sees plaintext weights (at session creation) and
// plaintext tensors (at run), so it lives in the trusted worker.
//
// Why the native binding and not `InferenceSession.create` / `session.run`: the loader calls
// its accelerator import synchronously (a WebAssembly import cannot await), and
// onnxruntime-node's public API returns promises — it defers the very same native calls to a
// `setImmediate`. So we call that native binding (`onnxruntime-node/dist/binding.js`, which
// its own backend uses) directly: `loadModel` and `run` block the JS thread, which is what the
// worker wants (it serves one request at a time anyway).
//
// Why logs are silenced: ONNX Runtime's own logger prints kernel errors to stderr, and those
// quote tensor values (e.g. "indices element out of data bounds, idx=…" carries a token id of
// the request). The environment, every session and every run log at "fatal" only, and error
// messages ONNX Runtime throws are never forwarded or logged by the worker.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import { binding, initOrt } from "onnxruntime-node/dist/binding.js";
import type { Logger } from "./log.ts";

export type GraphOptimizationLevel = "disabled" | "basic" | "extended" | "all";

/** Session options the operator may set (public configuration). */
export interface OrtConfig {
  /** Preferred execution providers, best first; "cpu" is always the last resort. Default ["cpu"]. */
  executionProviders?: string[];
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  graphOptimizationLevel?: GraphOptimizationLevel;
  executionMode?: "sequential" | "parallel";
  enableCpuMemArena?: boolean;
  enableMemPattern?: boolean;
  /**
   * Whether intra-op threads spin after a run (ONNX Runtime's session.intra_op.allow_spinning;
   * default true). Measured here: about 40 ms of one core's CPU after each run of a session with
   * two or more threads — idle time other workers on the host cannot use.
   */
  allowSpinning?: boolean;
  /**
   * Whether intra-op threads stop spinning the moment a run returns (ONNX Runtime's
   * session.force_spinning_stop; default false). They still spin within a run. The cost is
   * waking them at the next run: see host/trusted/README.md.
   */
  stopSpinningAfterRun?: boolean;
}

const CONFIG_KEYS = new Set<keyof OrtConfig>([
  "executionProviders", "intraOpNumThreads", "interOpNumThreads", "graphOptimizationLevel",
  "executionMode", "enableCpuMemArena", "enableMemPattern", "allowSpinning", "stopSpinningAfterRun",
]);

/** Validates an untyped configuration (from the command line); throws with a public message. */
export function parseOrtConfig(value: unknown): OrtConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("ONNX Runtime config must be a JSON object");
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) if (!CONFIG_KEYS.has(k as keyof OrtConfig)) throw new Error(`unknown ONNX Runtime config key "${k}"`);
  const out: OrtConfig = {};
  if (v.executionProviders !== undefined) {
    if (!Array.isArray(v.executionProviders) || v.executionProviders.some((p) => typeof p !== "string" || !/^[a-z0-9_-]{1,32}$/.test(p))) {
      throw new Error("executionProviders must be a list of provider names");
    }
    out.executionProviders = [...(v.executionProviders as string[])];
  }
  for (const k of ["intraOpNumThreads", "interOpNumThreads"] as const) {
    if (v[k] === undefined) continue;
    const n = v[k];
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 1024) throw new Error(`${k} must be an integer in 0..1024`);
    out[k] = n;
  }
  if (v.graphOptimizationLevel !== undefined) {
    if (!["disabled", "basic", "extended", "all"].includes(v.graphOptimizationLevel as string)) {
      throw new Error("graphOptimizationLevel must be disabled, basic, extended or all");
    }
    out.graphOptimizationLevel = v.graphOptimizationLevel as GraphOptimizationLevel;
  }
  if (v.executionMode !== undefined) {
    if (v.executionMode !== "sequential" && v.executionMode !== "parallel") throw new Error("executionMode must be sequential or parallel");
    out.executionMode = v.executionMode;
  }
  for (const k of ["enableCpuMemArena", "enableMemPattern", "allowSpinning", "stopSpinningAfterRun"] as const) {
    if (v[k] === undefined) continue;
    if (typeof v[k] !== "boolean") throw new Error(`${k} must be a boolean`);
    out[k] = v[k] as boolean;
  }
  return out;
}

export interface ValueMetadata {
  name: string;
  isTensor: boolean;
  type: number;
}

/** What the native run returns per output: an ONNX Runtime Tensor (its data a fresh copy). */
export interface OrtOutput {
  type: string;
  dims: readonly number[];
  data: unknown;
}

/** A session whose calls block until done. */
export interface SyncSession {
  readonly inputs: readonly ValueMetadata[];
  readonly outputs: readonly ValueMetadata[];
  run(feeds: Record<string, ort.Tensor>, fetches: Record<string, null>): Record<string, OrtOutput>;
  dispose(): void;
}

export interface ExternalBuffer {
  path: string;
  data: Uint8Array;
}

// Providers whose native library is not bundled with onnxruntime-node (downloaded at install).
const PROVIDER_LIBRARY: Record<string, string> = {
  cuda: "libonnxruntime_providers_cuda.so",
  tensorrt: "libonnxruntime_providers_tensorrt.so",
};

let initialised = false;
function init(): void {
  if (initialised) return;
  ort.env.logLevel = "fatal";
  initOrt();
  initialised = true;
}

export const ORT_VERSION: string = (() => {
  try {
    const req = createRequire(import.meta.url);
    return (req("onnxruntime-node/package.json") as { version: string }).version;
  } catch {
    return "unknown";
  }
})();

function bindingDir(): string | undefined {
  try {
    const req = createRequire(import.meta.url);
    return join(dirname(req.resolve("onnxruntime-node/package.json")), "bin", "napi-v6", process.platform, process.arch);
  } catch {
    return undefined;
  }
}

export class OrtRuntime {
  /** Providers ONNX Runtime reports for this build. */
  readonly reported: readonly string[];
  /** Providers sessions are created with, best first; always ends with "cpu". */
  providers: string[];
  private readonly base: Record<string, unknown>;

  constructor(readonly config: OrtConfig, private readonly log: Logger) {
    init();
    this.reported = binding.listSupportedBackends().map((b) => b.name);
    const bundled = new Map(binding.listSupportedBackends().map((b) => [b.name, b.bundled]));
    const wanted = config.executionProviders ?? ["cpu"];
    const dir = bindingDir();
    this.providers = [];
    for (const p of wanted) {
      if (p === "cpu") break;
      if (!bundled.has(p)) {
        log.warn("execution provider unavailable, skipped", { provider: p, reported: this.reported.join(",") });
        continue;
      }
      const lib = PROVIDER_LIBRARY[p];
      if (!bundled.get(p) && lib && !(dir && existsSync(join(dir, lib)))) {
        log.warn("execution provider not installed, skipped", { provider: p, library: lib });
        continue;
      }
      this.providers.push(p);
    }
    this.providers.push("cpu");
    if (wanted[0] !== this.providers[0]) log.warn("falling back to execution provider", { provider: this.providers[0], wanted: wanted.join(",") });
    this.base = {
      graphOptimizationLevel: config.graphOptimizationLevel ?? "all",
      logSeverityLevel: 4,
      ...(config.intraOpNumThreads !== undefined ? { intraOpNumThreads: config.intraOpNumThreads } : {}),
      ...(config.interOpNumThreads !== undefined ? { interOpNumThreads: config.interOpNumThreads } : {}),
      ...(config.executionMode !== undefined ? { executionMode: config.executionMode } : {}),
      ...(config.enableCpuMemArena !== undefined ? { enableCpuMemArena: config.enableCpuMemArena } : {}),
      ...(config.enableMemPattern !== undefined ? { enableMemPattern: config.enableMemPattern } : {}),
    };
    // ONNX Runtime's session config entries (onnxruntime-node joins the nested keys with ".").
    const session: Record<string, unknown> = {};
    if (config.allowSpinning !== undefined) session.intra_op = { allow_spinning: config.allowSpinning ? "1" : "0" };
    if (config.stopSpinningAfterRun !== undefined) session.force_spinning_stop = config.stopSpinningAfterRun ? "1" : "0";
    if (Object.keys(session).length > 0) this.base.extra = { session };
  }

  /** The options every session gets (a copy; without externalData), for benchmarks to match. */
  get sessionOptions(): Record<string, unknown> {
    return structuredClone({ ...this.base, executionProviders: [...this.providers] });
  }

  /** The Tensor class the native binding was initialised with. */
  get Tensor(): typeof ort.Tensor {
    return ort.Tensor;
  }

  /**
   * Builds a session from the graph and the external-data buffers. ONNX Runtime copies the
   * buffers into its own memory (see README.md, "Where plaintext lives"), so the caller may
   * wipe them as soon as this returns. If a non-CPU provider fails, retries once on CPU and
   * keeps to CPU from then on. Throws ONNX Runtime's error, which the caller must not log.
   */
  createSession(graph: Uint8Array, externalData: ExternalBuffer[]): SyncSession {
    for (;;) {
      const native = new binding.InferenceSession();
      const options = { ...this.base, executionProviders: [...this.providers], externalData };
      try {
        native.loadModel(graph.buffer as ArrayBuffer, graph.byteOffset, graph.byteLength, options as never);
      } catch (e) {
        if (this.providers.length === 1) throw e;
        // The error text may quote the model; only the provider names are logged.
        this.log.warn("session creation failed with accelerated providers; retrying on cpu", { providers: this.providers.join(",") });
        this.providers = ["cpu"];
        continue;
      }
      const meta = (list: { name: string; isTensor: boolean; type: number }[]): ValueMetadata[] =>
        list.map((m) => ({ name: m.name, isTensor: m.isTensor, type: m.type }));
      const runOptions = { logSeverityLevel: 4 as const };
      return {
        inputs: meta(native.inputMetadata),
        outputs: meta(native.outputMetadata),
        run: (feeds, fetches) => native.run(feeds, fetches, runOptions) as unknown as Record<string, OrtOutput>,
        dispose: () => native.dispose(),
      };
    }
  }
}
