// Program manifest (SPEC §5: TensorSpec, GenerateSpec, WeightsDescriptor, Policy) encoder and strict decoder. UNTRUSTED host code: manifests are public data.
import { sha256 } from "@noble/hashes/sha2.js";
import {
  CHUNK_SIZE,
  CRITICAL_BIT,
  DTYPE,
  DTYPES,
  EXT_EGRESS_LIMIT,
  GENERATE_LIMITS,
  KIND,
  LIMITS,
  MAX_DIM,
  MAX_RANK,
  MAX_TENSORS,
  MAX_WEIGHT_FILES,
  POLICY_VERSION,
  chunkCountFor,
  isPowerOfTwo,
} from "./constants.ts";
import { tensorBytes } from "./tensor.ts";
import { Reader, Writer, readName, validated } from "./wire.ts";

export interface Dim {
  min: number;
  max: number;
}

export interface TensorSpec {
  name: string;
  dtype: number;
  /** rank = dims.length (0..8). */
  dims: Dim[];
}

export interface GenerateSpec {
  /** The bytes each token id stands for; vocab_size = tokens.length. */
  tokens: Uint8Array[];
  endToken: number;
  maxNewTokens: number;
  contextLength: number;
  tokensPerChunk: number;
}

export interface ExternalFile {
  location: string;
  size: number;
}

export interface WeightsDescriptor {
  keyId: Uint8Array;
  /** The sealed stream's stream_id (§9): its header must carry the same one. */
  streamId: Uint8Array;
  plaintextSize: number;
  chunkSize: number;
  chunkCount: number;
  /** SHA-512 of the entire sealed stream (§9). */
  commitment: Uint8Array;
  files: ExternalFile[];
}

export interface Extension {
  type: number;
  data: Uint8Array;
}

export interface Policy {
  version: number;
  /** Strictly ascending by type. Unknown non-critical ones are kept verbatim. */
  extensions: Extension[];
}

export const MODE = { TENSOR: 1, GENERATE: 2 } as const;

export interface Manifest {
  name: string;
  /** 1..2^63-1. */
  version: bigint;
  graphSha256: Uint8Array;
  graphSize: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  mode: 1 | 2;
  /** Present exactly when mode = 2. */
  generate?: GenerateSpec;
  weights: WeightsDescriptor;
  policy: Policy;
}

const S = "manifest";
const VERSION_MAX = (1n << 63n) - 1n;

/** Extension types this implementation understands (§5.5). */
export const KNOWN_EXTENSIONS: ReadonlySet<number> = new Set([EXT_EGRESS_LIMIT]);

function readSpecs(r: Reader, list: "inputs" | "outputs", countField: string): TensorSpec[] {
  const count = r.ranged(countField, "u8", 1, MAX_TENSORS, "BAD_LENGTH");
  const specs: TensorSpec[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const p = `${list}[${i}].`;
    const name = readName(r, `${p}name`);
    // §5.1: a repeated name is refused as soon as it is read, before the rest of its spec.
    if (seen.has(name)) r.fail("NOT_CANONICAL", `${p}name`, `duplicate ${list} name "${name}"`);
    seen.add(name);
    const dtype = r.u8(`${p}dtype`);
    if (!DTYPES[dtype]) r.fail("BAD_VALUE", `${p}dtype`, `${dtype} is not a §5.2 dtype`);
    const rank = r.ranged(`${p}rank`, "u8", 0, MAX_RANK, "BAD_LENGTH");
    const dims: Dim[] = [];
    for (let j = 0; j < rank; j++) {
      const min = r.u32(`${p}dims[${j}].min`);
      const max = r.u32(`${p}dims[${j}].max`);
      if (min < 1 || min > MAX_DIM) r.fail("BAD_VALUE", `${p}dims[${j}].min`, `${min} is not in 1..${MAX_DIM}`);
      if (max < min || max > MAX_DIM) r.fail("BAD_VALUE", `${p}dims[${j}].max`, `${max} is not in ${min}..${MAX_DIM} (min..2^24)`);
      dims.push({ min, max });
    }
    if (tensorBytes(dims.map((d) => d.max), dtype) === undefined)
      r.fail("TOO_LARGE", `${p}dims`, `the largest tensor exceeds TENSOR_MAX ${LIMITS.TENSOR_MAX} bytes`);
    specs.push({ name, dtype, dims });
  }
  return specs;
}

function readGenerate(r: Reader): GenerateSpec {
  const vocab = r.ranged("generate.vocab_size", "u32", 2, LIMITS.VOCAB_MAX, "BAD_LENGTH");
  const tokens: Uint8Array[] = [];
  for (let i = 0; i < vocab; i++) tokens.push(r.vec(`generate.token[${i}]`, 1, GENERATE_LIMITS.TOKEN_BYTES_MAX));
  const endToken = r.ranged("generate.end_token", "u32", 0, vocab - 1);
  const maxNewTokens = r.ranged("generate.max_new_tokens", "u32", 1, GENERATE_LIMITS.MAX_NEW_TOKENS);
  const contextLength = r.ranged("generate.context_length", "u32", 1, GENERATE_LIMITS.CONTEXT_MAX);
  const tokensPerChunk = r.ranged("generate.tokens_per_chunk", "u16", 1, GENERATE_LIMITS.TOKENS_PER_CHUNK_MAX);
  return { tokens, endToken, maxNewTokens, contextLength, tokensPerChunk };
}

/**
 * §5.3: one int64 input [1..1, 1..ctx]; one float32 output, either [1..1, 1..ctx, vocab..vocab]
 * (logits for every position) or [1..1, 1..1, vocab..vocab] (the last position only).
 */
function checkGenerateShapes(r: Reader, inputs: TensorSpec[], outputs: TensorSpec[], g: GenerateSpec): void {
  const ctx = g.contextLength;
  const vocab = g.tokens.length;
  const sameDim = (a: Dim, b: Dim) => a.min === b.min && a.max === b.max;
  const show = (alts: Dim[]) => alts.map((d) => `${d.min}..${d.max}`).join(" or ");
  /** Each entry of `dims` lists the allowed ranges of that dimension. */
  const want = (list: "inputs" | "outputs", specs: TensorSpec[], dtype: number, dims: Dim[][]) => {
    if (specs.length !== 1) r.fail("BAD_VALUE", list === "inputs" ? "input_count" : "output_count", `generate mode needs exactly one, got ${specs.length}`);
    const s = specs[0];
    if (s.dtype !== dtype) r.fail("BAD_VALUE", `${list}[0].dtype`, `generate mode needs dtype ${dtype}, got ${s.dtype}`);
    if (s.dims.length !== dims.length) r.fail("BAD_VALUE", `${list}[0].rank`, `generate mode needs rank ${dims.length}, got ${s.dims.length}`);
    dims.forEach((alts, j) => {
      const got = s.dims[j];
      if (!alts.some((d) => sameDim(got, d)))
        r.fail("BAD_VALUE", `${list}[0].dims[${j}]`, `generate mode needs ${show(alts)}, got ${got.min}..${got.max}`);
    });
  };
  const one: Dim = { min: 1, max: 1 };
  want("inputs", inputs, DTYPE.INT64, [[one], [{ min: 1, max: ctx }]]);
  want("outputs", outputs, DTYPE.FLOAT32, [[one], [{ min: 1, max: ctx }, one], [{ min: vocab, max: vocab }]]);
}

function readWeights(r: Reader): WeightsDescriptor {
  const keyId = r.fixed("weights.key_id", 16);
  const streamId = r.fixed("weights.stream_id", 16);
  const plaintextSize = r.u64n("weights.plaintext_size", 0, LIMITS.WEIGHTS_MAX, "TOO_LARGE");
  const chunkSize = r.u32("weights.chunk_size");
  if (chunkSize < CHUNK_SIZE.MIN || chunkSize > CHUNK_SIZE.MAX || !isPowerOfTwo(chunkSize))
    r.fail("BAD_VALUE", "weights.chunk_size", `${chunkSize} is not a power of two in ${CHUNK_SIZE.MIN}..${CHUNK_SIZE.MAX}`);
  const chunkCount64 = r.u64("weights.chunk_count");
  const expected = chunkCountFor(plaintextSize, chunkSize);
  if (chunkCount64 !== BigInt(expected))
    r.fail("NOT_CANONICAL", "weights.chunk_count", `${chunkCount64} is not max(1, ceil(${plaintextSize} / ${chunkSize})) = ${expected}`);
  const commitment = r.fixed("weights.commitment", 32);
  const fileCount = r.ranged("weights.file_count", "u8", 1, MAX_WEIGHT_FILES, "BAD_LENGTH");
  const files: ExternalFile[] = [];
  const seen = new Set<string>();
  let sum = 0n;
  for (let i = 0; i < fileCount; i++) {
    const location = readName(r, `weights.files[${i}].location`);
    const size64 = r.u64(`weights.files[${i}].size`);
    if (seen.has(location)) r.fail("BAD_VALUE", `weights.files[${i}].location`, `duplicate location "${location}"`);
    seen.add(location);
    const emptyAllowed = plaintextSize === 0 && fileCount === 1;
    if (size64 === 0n && !emptyAllowed) r.fail("BAD_VALUE", `weights.files[${i}].size`, "0 is not allowed (only a single file of an empty stream may be empty)");
    sum += size64;
    if (sum > BigInt(plaintextSize))
      r.fail("BAD_VALUE", `weights.files[${i}].size`, `file sizes so far (${sum}) exceed plaintext_size ${plaintextSize}`);
    files.push({ location, size: Number(size64) });
  }
  if (sum !== BigInt(plaintextSize)) r.fail("BAD_VALUE", "weights.files", `file sizes sum to ${sum}, not plaintext_size ${plaintextSize}`);
  return { keyId, streamId, plaintextSize, chunkSize, chunkCount: expected, commitment, files };
}

function readPolicy(r: Reader): Policy {
  const version = r.u16("policy.policy_version");
  if (version !== POLICY_VERSION) r.fail("UNSUPPORTED_VERSION", "policy.policy_version", `${version} is not implemented (only ${POLICY_VERSION})`);
  const len = r.vecLength("policy.extensions", 0, 0xffff);
  const er = r.sub("policy.extensions", len);
  const extensions: Extension[] = [];
  let i = 0;
  while (er.remaining > 0) {
    const type = er.u16(`policy.extensions[${i}].type`);
    const data = er.vec(`policy.extensions[${i}].data`, 0, 0xffff);
    if (i > 0 && type <= extensions[i - 1].type)
      er.fail("NOT_CANONICAL", `policy.extensions[${i}].type`, `0x${type.toString(16)} does not follow 0x${extensions[i - 1].type.toString(16)} in strictly ascending order`);
    if (type === EXT_EGRESS_LIMIT) checkEgress(er, data, `policy.extensions[${i}].data`);
    else if (!KNOWN_EXTENSIONS.has(type) && (type & CRITICAL_BIT) !== 0)
      er.fail("UNKNOWN_CRITICAL", `policy.extensions[${i}].type`, `critical extension 0x${type.toString(16)} is not implemented`);
    extensions.push({ type, data });
    i++;
  }
  return { version, extensions };
}

function checkEgress(r: Reader, data: Uint8Array, field: string): void {
  if (data.length !== 4) r.fail("BAD_LENGTH", field, `egress limit data is ${data.length} bytes, not 4`);
  const v = new DataView(data.buffer, data.byteOffset, 4).getUint32(0);
  if (v < 1 || v > LIMITS.RESPONSE_MAX) r.fail("BAD_VALUE", field, `max_response_bytes ${v} is not in 1..${LIMITS.RESPONSE_MAX}`);
}

export function decodeManifest(bytes: Uint8Array): Manifest {
  const r: Reader = new Reader(bytes, S);
  if (bytes.length > LIMITS.MANIFEST_MAX) r.fail("TOO_LARGE", "size", `${bytes.length} bytes exceed MANIFEST_MAX ${LIMITS.MANIFEST_MAX}`);
  r.magic(KIND.MANIFEST);
  const name = readName(r, "name", true);
  const version = r.u64("version");
  if (version < 1n || version > VERSION_MAX) r.fail("BAD_VALUE", "version", `${version} is not in 1..2^63-1`);
  const graphSha256 = r.fixed("graph_sha256", 32);
  const graphSize64 = r.u64("graph_size");
  if (graphSize64 === 0n) r.fail("BAD_VALUE", "graph_size", "0 is not in 1..GRAPH_MAX");
  if (graphSize64 > BigInt(LIMITS.GRAPH_MAX)) r.fail("TOO_LARGE", "graph_size", `${graphSize64} exceeds GRAPH_MAX ${LIMITS.GRAPH_MAX}`);
  const inputs = readSpecs(r, "inputs", "input_count");
  const outputs = readSpecs(r, "outputs", "output_count");
  const mode = r.u8("mode");
  if (mode !== 1 && mode !== 2) r.fail("BAD_VALUE", "mode", `${mode} is not 1 (tensor) or 2 (generate)`);
  let generate: GenerateSpec | undefined;
  if (mode === 2) {
    generate = readGenerate(r);
    checkGenerateShapes(r, inputs, outputs, generate);
  }
  const weights = readWeights(r);
  const policy = readPolicy(r);
  r.end();
  const m: Manifest = { name, version, graphSha256, graphSize: Number(graphSize64), inputs, outputs, mode, weights, policy };
  if (generate) m.generate = generate;
  return m;
}

function writeSpecs(w: Writer, specs: TensorSpec[], list: string, countField: string): void {
  if (!Array.isArray(specs) || specs.length < 1 || specs.length > MAX_TENSORS)
    w.fail("BAD_LENGTH", countField, `${specs?.length} specs is not in 1..${MAX_TENSORS}`);
  w.u8(specs.length, countField);
  specs.forEach((s, i) => {
    const p = `${list}[${i}].`;
    w.name(s.name, `${p}name`).u8(s.dtype, `${p}dtype`);
    w.u8(s.dims.length, `${p}rank`);
    s.dims.forEach((d, j) => w.u32(d.min, `${p}dims[${j}].min`).u32(d.max, `${p}dims[${j}].max`));
  });
}

export function encodeManifest(m: Manifest, opts: { validate?: boolean } = {}): Uint8Array {
  const w: Writer = new Writer(S).magic(KIND.MANIFEST);
  w.name(m.name, "name", true).u64(m.version, "version").fixed(m.graphSha256, 32, "graph_sha256").u64(m.graphSize, "graph_size");
  writeSpecs(w, m.inputs, "inputs", "input_count");
  writeSpecs(w, m.outputs, "outputs", "output_count");
  w.u8(m.mode, "mode");
  if (m.mode === 2) {
    const g = m.generate;
    if (!g) w.fail("BAD_VALUE", "generate", "mode 2 needs a generate spec");
    w.u32(g.tokens.length, "generate.vocab_size");
    g.tokens.forEach((t, i) => w.vec(t, 1, GENERATE_LIMITS.TOKEN_BYTES_MAX, `generate.token[${i}]`));
    w.u32(g.endToken, "generate.end_token")
      .u32(g.maxNewTokens, "generate.max_new_tokens")
      .u32(g.contextLength, "generate.context_length")
      .u16(g.tokensPerChunk, "generate.tokens_per_chunk");
  } else if (m.generate) w.fail("BAD_VALUE", "generate", "a generate spec needs mode 2");
  const wd = m.weights;
  w.fixed(wd.keyId, 16, "weights.key_id")
    .fixed(wd.streamId, 16, "weights.stream_id")
    .u64(wd.plaintextSize, "weights.plaintext_size")
    .u32(wd.chunkSize, "weights.chunk_size")
    .u64(wd.chunkCount, "weights.chunk_count")
    .fixed(wd.commitment, 32, "weights.commitment");
  if (wd.files.length > 0xff) w.fail("BAD_LENGTH", "weights.file_count", `${wd.files.length} files is not in 1..${MAX_WEIGHT_FILES}`);
  w.u8(wd.files.length, "weights.file_count");
  wd.files.forEach((f, i) => w.name(f.location, `weights.files[${i}].location`).u64(f.size, `weights.files[${i}].size`));
  w.u16(m.policy.version, "policy.policy_version");
  const ext = new Writer(S);
  m.policy.extensions.forEach((e, i) => ext.u16(e.type, `policy.extensions[${i}].type`).vec(e.data, 0, 0xffff, `policy.extensions[${i}].data`));
  w.vec(ext.finish(), 0, 0xffff, "policy.extensions");
  const out = w.finish();
  return opts.validate === false ? out : validated(out, decodeManifest);
}

/** §5.6: the program digest requests are bound to. */
export const programDigest = (manifestBytes: Uint8Array): Uint8Array => sha256(manifestBytes);

/** The egress limit of §5.5, if the policy sets one. */
export function egressLimit(policy: Policy): number | undefined {
  const e = policy.extensions.find((x) => x.type === EXT_EGRESS_LIMIT);
  return e ? new DataView(e.data.buffer, e.data.byteOffset, 4).getUint32(0) : undefined;
}

/** The §5.5 egress-limit extension with this limit. */
export function egressLimitExtension(maxResponseBytes: number): Extension {
  const data = new Uint8Array(4);
  new DataView(data.buffer).setUint32(0, maxResponseBytes);
  return { type: EXT_EGRESS_LIMIT, data };
}
