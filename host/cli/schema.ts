// The manifest's I/O schema (SPEC §5.1–§5.3) from an ONNX graph's inputs and outputs, and the
// GenerateSpec from a vocab.json. UNTRUSTED host code: public graph metadata only.
import { readFile } from "node:fs/promises";
import { DTYPES, GENERATE_LIMITS, LIMITS, MAX_DIM } from "../formats/constants.ts";
import type { Dim, GenerateSpec, TensorSpec } from "../formats/manifest.ts";
import { generateTensorSpecs } from "../formats/manifest-builder.ts";
import { tensorBytes } from "../formats/tensor.ts";
import type { ModelProto, ValueInfoProto } from "../onnx/proto.ts";
import { CliError, UsageError, formatBytes } from "./args.ts";

/** ONNX TensorProto.DataType names, for messages about types SPEC §5.2 lacks. */
const ONNX_TYPE_NAMES: Record<number, string> = {
  0: "undefined", 1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
  9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16",
};

export const dtypeName = (code: number): string => DTYPES[code]?.name ?? ONNX_TYPE_NAMES[code] ?? `type ${code}`;

/** A SPEC §5.2 dtype code from a name ("float32") or a number. */
export function dtypeFromName(v: unknown): number | undefined {
  if (typeof v === "number") return DTYPES[v] ? v : undefined;
  if (typeof v !== "string") return undefined;
  const s = v.toLowerCase();
  const alias: Record<string, string> = { float: "float32", double: "float64", half: "float16" };
  const name = alias[s] ?? s;
  const hit = Object.entries(DTYPES).find(([, d]) => d.name === name);
  return hit ? Number(hit[0]) : undefined;
}

export const DEFAULT_MAX_DIM = 256;

export interface DimLimits {
  /** The range of a dynamic dimension no --dim names: 1..maxDim. */
  maxDim: number;
  /** By symbolic dim name ("batch") or by "tensor[axis]" ("x[0]"). */
  byKey: Map<string, Dim>;
}

/** `--dim KEY=MAX` or `--dim KEY=MIN..MAX`. */
export function parseDimOption(s: string): [string, Dim] {
  const m = /^(.+)=(?:(\d+)\.\.)?(\d+)$/.exec(s);
  if (!m) throw new UsageError(`--dim ${s}: expected NAME=MAX or NAME=MIN..MAX (NAME a symbolic dim like batch, or tensor[axis] like x[0])`);
  const max = Number(m[3]);
  const min = m[2] === undefined ? 1 : Number(m[2]);
  if (!(min >= 1 && min <= max && max <= MAX_DIM)) throw new UsageError(`--dim ${s}: need 1 ≤ min ≤ max ≤ ${MAX_DIM}`);
  return [m[1], { min, max }];
}

export interface IoSchema {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Each dynamic dimension and the range chosen for it, for the report. */
  dynamic: string[];
}

function specOf(v: ValueInfoProto, kind: "input" | "output", limits: DimLimits, dynamic: string[], used: Set<string>): TensorSpec {
  const name = v.name ?? "";
  const where = `graph ${kind} "${name}"`;
  const t = v.type?.tensor_type;
  if (!t) throw new CliError(`${where} is not a tensor (sequences and maps are not supported)`);
  const elem = t.elem_type ?? 0;
  if (!DTYPES[elem]) throw new CliError(`${where} has type ${dtypeName(elem)}, which SPEC §5.2 does not allow`);
  if (!t.shape) throw new CliError(`${where} has no shape in the graph (rank unknown); re-export the model with shapes`);
  const dims: Dim[] = (t.shape.dim ?? []).map((d, axis) => {
    const key = `${name}[${axis}]`;
    if (d.dim_value !== undefined && d.dim_value !== null && Number(d.dim_value) > 0) {
      const n = Number(d.dim_value);
      if (n > MAX_DIM) throw new CliError(`${where} dimension ${axis} is ${n}, over SPEC §5.1's 2^24`);
      if (limits.byKey.has(key)) used.add(key);
      return { min: n, max: n };
    }
    if (d.dim_value !== undefined && d.dim_value !== null && Number(d.dim_value) !== 0) {
      throw new CliError(`${where} dimension ${axis} is ${d.dim_value}`);
    }
    const sym = d.dim_param || undefined;
    let r = limits.byKey.get(key);
    if (r) used.add(key);
    else if (sym && limits.byKey.has(sym)) {
      r = limits.byKey.get(sym)!;
      used.add(sym);
    }
    const range = r ?? { min: 1, max: limits.maxDim };
    dynamic.push(`${key}${sym ? ` (${sym})` : ""} = ${range.min}..${range.max}`);
    return range;
  });
  if (dims.length > 8) throw new CliError(`${where} has rank ${dims.length}, over SPEC §5.1's 8`);
  const size = tensorBytes(dims.map((d) => d.max), elem);
  if (size === undefined) {
    throw new CliError(
      `${where}: at the largest dims [${dims.map((d) => d.max).join(", ")}] it is over TENSOR_MAX (${formatBytes(LIMITS.TENSOR_MAX)}); lower the dynamic dims with --max-dim or --dim NAME=MAX`,
    );
  }
  return { name, dtype: elem, dims };
}

/** The graph's inputs (initializers excluded) and outputs as TensorSpecs. */
export function ioSchema(model: ModelProto, limits: DimLimits): IoSchema {
  const g = model.graph ?? {};
  const inits = new Set((g.initializer ?? []).map((t) => t.name));
  const dynamic: string[] = [];
  const used = new Set<string>();
  const inputs = (g.input ?? []).filter((v) => !inits.has(v.name)).map((v) => specOf(v, "input", limits, dynamic, used));
  const outputs = (g.output ?? []).map((v) => specOf(v, "output", limits, dynamic, used));
  for (const k of limits.byKey.keys()) if (!used.has(k)) throw new UsageError(`--dim ${k}: no dynamic dimension of the graph has this name`);
  if (inputs.length < 1 || inputs.length > 16) throw new CliError(`the graph has ${inputs.length} inputs; SPEC §5 allows 1..16`);
  if (outputs.length < 1 || outputs.length > 16) throw new CliError(`the graph has ${outputs.length} outputs; SPEC §5 allows 1..16`);
  return { inputs, outputs, dynamic };
}

// ---- generate mode --------------------------------------------------------------------------

/** models/tiny-lm/vocab.json and friends. */
export interface VocabFile {
  tokens: string[];
  end_token: number;
  context_length: number;
  input?: string;
  output?: string;
  logits?: "last" | "all";
  max_new_tokens?: number;
  tokens_per_chunk?: number;
}

export async function readVocab(path: string): Promise<VocabFile> {
  let v: unknown;
  try {
    v = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`--generate ${path}: ${code === "ENOENT" ? "no such file" : code ? `cannot read (${code})` : `not JSON (${(e as Error).message})`}`);
  }
  const where = `--generate ${path}`;
  const o = v as Record<string, unknown>;
  if (typeof o !== "object" || o === null || !Array.isArray(o.tokens)) throw new CliError(`${where}: needs a "tokens" list of strings`);
  if (!o.tokens.every((t) => typeof t === "string")) throw new CliError(`${where}: every token must be a string`);
  const int = (k: string, optional = false) => {
    if (o[k] === undefined && optional) return undefined;
    if (!Number.isSafeInteger(o[k]) || (o[k] as number) < 0) throw new CliError(`${where}: "${k}" must be a whole number`);
    return o[k] as number;
  };
  const str = (k: string) => {
    if (o[k] !== undefined && typeof o[k] !== "string") throw new CliError(`${where}: "${k}" must be a string`);
    return o[k] as string | undefined;
  };
  if (o.logits !== undefined && o.logits !== "last" && o.logits !== "all") throw new CliError(`${where}: "logits" must be "last" or "all"`);
  return {
    tokens: o.tokens as string[],
    end_token: int("end_token")!,
    context_length: int("context_length")!,
    input: str("input"),
    output: str("output"),
    logits: o.logits as "last" | "all" | undefined,
    max_new_tokens: int("max_new_tokens", true),
    tokens_per_chunk: int("tokens_per_chunk", true),
  };
}

export interface GenerateSchema {
  generate: GenerateSpec;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

const findValue = (list: ValueInfoProto[] | undefined, name: string) => (list ?? []).find((v) => v.name === name);

/**
 * §5.3: the GenerateSpec from vocab.json (options override its max_new_tokens and
 * tokens_per_chunk), and the one input and one output it implies, checked against the graph.
 */
export function generateSchema(
  model: ModelProto,
  vocab: VocabFile,
  opts: { maxNewTokens?: number; tokensPerChunk?: number; where: string },
): GenerateSchema {
  const w = opts.where;
  const enc = new TextEncoder();
  const tokens = vocab.tokens.map((t, i) => {
    const b = enc.encode(t);
    if (b.length < 1 || b.length > GENERATE_LIMITS.TOKEN_BYTES_MAX) throw new CliError(`${w}: token ${i} is ${b.length} bytes; SPEC §5.3 allows 1..64`);
    return b;
  });
  if (tokens.length < 2 || tokens.length > LIMITS.VOCAB_MAX) throw new CliError(`${w}: ${tokens.length} tokens; SPEC §5.3 allows 2..${LIMITS.VOCAB_MAX}`);
  if (vocab.end_token >= tokens.length) throw new CliError(`${w}: end_token ${vocab.end_token} is not a token id (0..${tokens.length - 1})`);
  if (vocab.context_length < 1 || vocab.context_length > GENERATE_LIMITS.CONTEXT_MAX)
    throw new CliError(`${w}: context_length ${vocab.context_length} is not in 1..${GENERATE_LIMITS.CONTEXT_MAX}`);
  const maxNewTokens = opts.maxNewTokens ?? vocab.max_new_tokens ?? 256;
  const tokensPerChunk = opts.tokensPerChunk ?? vocab.tokens_per_chunk ?? 4;
  if (maxNewTokens < 1 || maxNewTokens > GENERATE_LIMITS.MAX_NEW_TOKENS) throw new CliError(`max_new_tokens ${maxNewTokens} is not in 1..${GENERATE_LIMITS.MAX_NEW_TOKENS}`);
  if (tokensPerChunk < 1 || tokensPerChunk > GENERATE_LIMITS.TOKENS_PER_CHUNK_MAX) throw new CliError(`tokens_per_chunk ${tokensPerChunk} is not in 1..${GENERATE_LIMITS.TOKENS_PER_CHUNK_MAX}`);
  const generate: GenerateSpec = { tokens, endToken: vocab.end_token, maxNewTokens, contextLength: vocab.context_length, tokensPerChunk };
  const inputName = vocab.input ?? "input_ids";
  const outputName = vocab.output ?? "logits";
  const io = generateTensorSpecs(generate, { inputName, outputName, positions: vocab.logits ?? "all" });

  // The graph must have these, with compatible types and fixed dims.
  const g = model.graph ?? {};
  const inits = new Set((g.initializer ?? []).map((t) => t.name));
  const graphInputs = (g.input ?? []).filter((v) => !inits.has(v.name));
  const check = (v: ValueInfoProto | undefined, spec: TensorSpec, kind: string) => {
    if (!v) throw new CliError(`${w}: the graph has no ${kind} "${spec.name}" (set "${kind}" in vocab.json)`);
    const t = v.type?.tensor_type;
    if (t?.elem_type !== spec.dtype) throw new CliError(`graph ${kind} "${spec.name}" is ${dtypeName(t?.elem_type ?? 0)}; generate mode needs ${dtypeName(spec.dtype)}`);
    const dims = t.shape?.dim;
    if (dims && dims.length !== spec.dims.length) throw new CliError(`graph ${kind} "${spec.name}" has rank ${dims.length}; generate mode needs ${spec.dims.length}`);
    dims?.forEach((d, i) => {
      const n = Number(d.dim_value ?? 0);
      const r = spec.dims[i];
      if (n > 0 && (n < r.min || n > r.max)) {
        throw new CliError(`graph ${kind} "${spec.name}" dimension ${i} is fixed at ${n}, but generate mode needs ${r.min}..${r.max}${i === 2 ? " (the vocabulary size)" : i === 1 && kind === "output" ? ' (check "logits": "last" or "all")' : ""}`);
      }
    });
  };
  if (graphInputs.length !== 1) throw new CliError(`a generate program's graph must have exactly one input; this one has ${graphInputs.length}`);
  check(findValue(graphInputs, inputName), io.inputs[0], "input");
  check(findValue(g.output, outputName), io.outputs[0], "output");
  return { generate, ...io };
}

export const showDims = (dims: readonly Dim[]): string => `[${dims.map((d) => (d.min === d.max ? `${d.min}` : `${d.min}..${d.max}`)).join(", ")}]`;
export const showSpec = (s: TensorSpec): string => `${s.name} ${dtypeName(s.dtype)} ${showDims(s.dims)}`;
