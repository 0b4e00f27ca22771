// Shared fixture for the loader suite (test/loader/*.test.ts): a trust configuration with
// reviewer keys, sealed weights, signed manifests (through the host implementation in
// host/formats and through a raw encoder below that can write out-of-range values), a
// LoaderInstance over build/loader.wasm with a deterministic fake accelerator that records
// everything it is given, and a node:crypto HPKE sender (a third, independent implementation
// of the §8 client side, fast enough for tens of thousands of requests).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
} from "node:crypto";
import { afterAll, expect } from "vitest";
import * as F from "../../host/formats/index.ts";
import { LoaderError, LoaderInstance, type Accelerator } from "../../host/trusted/loader-instance.ts";

export { F, LoaderError, LoaderInstance };
/** SLOW=1 (npm run test:slow) deepens the sampling. */
export const SLOW = process.env.SLOW === "1";
export const E = F.ERROR_CODES;
export type CodeName = keyof typeof F.ERROR_CODES;

/** The release loader; VEIL_LOADER_WASM points the suite at another build of it. */
export const WASM_PATH = process.env.VEIL_LOADER_WASM ?? fileURLToPath(new URL("../../build/loader.wasm", import.meta.url));
let wasmBytes: Uint8Array | undefined;
export const wasm = (): Uint8Array => (wasmBytes ??= new Uint8Array(readFileSync(WASM_PATH)));

// ------------------------------------------------------------------------------------------
// bytes
// ------------------------------------------------------------------------------------------

export const sha256 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
export const sha512 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash("sha512").update(b).digest());
export const cat = (...parts: Uint8Array[]): Uint8Array => F.concat(...parts);
export const ascii = (s: string): Uint8Array => F.ascii(s);
/** One byte per character (0..255): prompts and tokens that are not ASCII. */
export const latin1 = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString("hex");
export const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
export const u8 = (v: number): Uint8Array => new Uint8Array([v & 0xff]);
export const u16 = (v: number): Uint8Array => new Uint8Array([(v >>> 8) & 0xff, v & 0xff]);
export const u32 = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0);
  return b;
};
export const u64 = (v: bigint | number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(v)));
  return b;
};
export const vec8 = (b: Uint8Array, len = b.length): Uint8Array => cat(u8(len), b);
export const vec16 = (b: Uint8Array, len = b.length): Uint8Array => cat(u16(len), b);
export const vec32 = (b: Uint8Array, len = b.length): Uint8Array => cat(u32(len), b);
export const magic = (kind: string, version = 1): Uint8Array => cat(ascii("veil"), ascii(kind), u16(version));
export const flip = (b: Uint8Array, i: number, mask = 0xff): Uint8Array => {
  const c = b.slice();
  c[i] ^= mask;
  return c;
};
export const patch = (b: Uint8Array, at: number, bytes: Uint8Array): Uint8Array => {
  const c = b.slice();
  c.set(bytes, at);
  return c;
};
export const equal = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

/** A small deterministic PRNG (xorshift32) for sampling positions and building data. */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}
export function detBytes(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r() & 0xff;
  return out;
}

// ------------------------------------------------------------------------------------------
// errors: every loader failure must be a LoaderError; anything else (a WebAssembly trap, an
// exception out of the binding) is recorded and fails the file in afterAll.
// ------------------------------------------------------------------------------------------

export const nonLoaderErrors: { op: string; error: string }[] = [];
const OPS = ["init", "attest", "unwrapKey", "loadProgram", "loadWeights", "unloadProgram", "infer", "inferBegin", "inferNext", "inferCancel", "sessionOpen"] as const;

/** Wraps the instance's entry points so that any exception other than a LoaderError is recorded. */
export function guard(L: LoaderInstance): LoaderInstance {
  for (const op of OPS) {
    const orig = (L as any)[op].bind(L);
    (L as any)[op] = (...args: unknown[]) => {
      try {
        return orig(...args);
      } catch (e) {
        if (!(e instanceof LoaderError)) nonLoaderErrors.push({ op, error: `${(e as Error)?.constructor?.name}: ${(e as Error)?.message}` });
        throw e;
      }
    };
  }
  return L;
}

/** Call once per test file: no call in the file may have failed with anything but a LoaderError. */
export function expectNoTraps(): void {
  afterAll(() => {
    expect(nonLoaderErrors, "loader calls that failed with something other than a LoaderError (a trap is a WebAssembly.RuntimeError)").toEqual([]);
  });
}

/** The LoaderError `f` throws; fails the test if it succeeds or throws something else. */
export function errorOf(f: () => unknown): LoaderError {
  let r: unknown;
  try {
    r = f();
  } catch (e) {
    if (e instanceof LoaderError) return e;
    throw e;
  }
  throw new Error(`expected a LoaderError, the call succeeded (${r instanceof Uint8Array ? `${r.length} bytes` : String(r)})`);
}
export const nameOf = (code: number): string => (Object.entries(E).find(([, v]) => v === code)?.[0] ?? `code ${code}`);
/** "CODE" or "CODE@0xffff" for compact, readable assertions. */
export const describeErr = (e: LoaderError, withField = false): string =>
  withField ? `${nameOf(e.code)}@0x${e.fieldId.toString(16).padStart(4, "0")}` : nameOf(e.code);
/** "OK" or the code name, for table-driven assertions. */
export function outcome(f: () => unknown, withField = false): string {
  try {
    f();
    return "OK";
  } catch (e) {
    if (e instanceof LoaderError) return describeErr(e, withField);
    throw e;
  }
}
export function expectCode(f: () => unknown, code: CodeName, fieldId?: number): LoaderError {
  const e = errorOf(f);
  expect(nameOf(e.code), e.message).toBe(code);
  if (fieldId !== undefined) expect(`0x${e.fieldId.toString(16)}`, e.message).toBe(`0x${fieldId.toString(16)}`);
  return e;
}
/** The host decoder's verdict: "OK" or its §12 name. */
export function hostOutcome(f: () => unknown): string {
  try {
    f();
    return "OK";
  } catch (e) {
    if (e instanceof F.VeilFormatError) return e.code;
    throw e;
  }
}

// ------------------------------------------------------------------------------------------
// the fake accelerator
// ------------------------------------------------------------------------------------------

export interface FakeProgram {
  handle: number;
  manifest: Uint8Array;
  graph: Uint8Array;
  decoded: F.Manifest;
  uploads: { offset: bigint; data: Uint8Array }[];
  finished: number;
  dropped: number;
}

export type RunHook = (program: number, inputs: Uint8Array, dflt: () => Uint8Array) => Uint8Array | number;

/**
 * Deterministic stand-in for the accelerator (SPEC §11.3). Tensor programs echo their inputs
 * renamed to the output names (output i is input i mod count); generate programs return
 * `fakeLogits` of the token context, for every position or the last only, as the manifest says.
 */
export class FakeAccelerator implements Accelerator {
  readonly log: string[] = [];
  readonly programs = new Map<number, FakeProgram>();
  readonly runs: { program: number; inputs: Uint8Array; output?: Uint8Array }[] = [];
  keepRuns = true;
  onRun?: RunHook;
  failCreate?: number;
  failUpload?: number;
  failFinish?: number;

  createProgram(program: number, manifest: Uint8Array, graph: Uint8Array): void | number {
    this.log.push(`create ${program}`);
    if (this.failCreate !== undefined) return this.failCreate;
    this.programs.set(program, {
      handle: program,
      manifest: manifest.slice(),
      graph: graph.slice(),
      decoded: F.decodeManifest(manifest),
      uploads: [],
      finished: 0,
      dropped: 0,
    });
  }
  uploadWeights(program: number, offset: bigint, data: Uint8Array): void | number {
    this.log.push(`upload ${program} ${offset} ${data.length}`);
    if (this.failUpload !== undefined) return this.failUpload;
    this.programs.get(program)!.uploads.push({ offset, data: data.slice() });
  }
  /** Tests only: replaces the measurement measure-weights returns (SPEC §9.1). */
  measurementOverride?: (program: number, honest: Uint8Array) => Uint8Array;
  measureWeights(program: number): Uint8Array | number {
    this.log.push(`measure ${program}`);
    const h = createHash("sha256");
    for (const u of this.programs.get(program)!.uploads) h.update(u.data);
    const honest = new Uint8Array(h.digest());
    return this.measurementOverride ? this.measurementOverride(program, honest) : honest;
  }
  finishWeights(program: number): void | number {
    this.log.push(`finish ${program}`);
    if (this.failFinish !== undefined) return this.failFinish;
    this.programs.get(program)!.finished++;
  }
  run(program: number, inputs: Uint8Array): Uint8Array | number {
    this.log.push(`run ${program}`);
    const copy = inputs.slice();
    const rec: { program: number; inputs: Uint8Array; output?: Uint8Array } = { program, inputs: copy };
    if (this.keepRuns) this.runs.push(rec);
    const dflt = () => this.defaultRun(program, copy);
    const out = this.onRun ? this.onRun(program, copy, dflt) : dflt();
    if (out instanceof Uint8Array) rec.output = out.slice();
    return out;
  }
  dropProgram(program: number): void {
    this.log.push(`drop ${program}`);
    const p = this.programs.get(program);
    if (p) p.dropped++;
  }

  defaultRun(program: number, inputs: Uint8Array): Uint8Array {
    const p = this.programs.get(program);
    if (!p) throw new Error(`run of unknown program ${program}`);
    const m = p.decoded;
    const list = F.decodeTensorList(inputs, { secret: false });
    if (m.mode === 2) {
      const ids = int64s(list[0].data);
      const V = m.generate!.tokens.length;
      const all = m.outputs[0].dims[1].max > 1;
      const positions = all ? ids.length : 1;
      const logits = new Float32Array(positions * V);
      for (let k = 0; k < positions; k++) logits.set(fakeLogits(ids.slice(0, all ? k + 1 : ids.length), V), k * V);
      return F.encodeTensorList([{ name: m.outputs[0].name, dtype: 1, dims: [1, positions, V], data: new Uint8Array(logits.buffer) }]);
    }
    return F.encodeTensorList(m.outputs.map((o, i) => ({ ...list[i % list.length], name: o.name })));
  }

  /** The weights stream as the accelerator received it, checking that offsets are contiguous. */
  weightsOf(program: number): Uint8Array {
    const p = this.programs.get(program)!;
    let off = 0n;
    for (const u of p.uploads) {
      expect(u.offset, "upload-weights offsets follow the stream order").toBe(off);
      off += BigInt(u.data.length);
    }
    return cat(...p.uploads.map((u) => u.data));
  }
}

export const int64s = (data: Uint8Array): number[] => {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: number[] = [];
  for (let i = 0; i < data.length; i += 8) out.push(Number(dv.getBigInt64(i, true)));
  return out;
};

/** Deterministic logits for a token context: distinct values in [0, 10), a hash of the context. */
export function fakeLogits(ctx: readonly number[], V: number): Float32Array {
  let h = 0x811c9dc5;
  for (const t of ctx) h = Math.imul(h ^ t, 0x01000193) >>> 0;
  h = Math.imul(h ^ ctx.length, 0x01000193) >>> 0;
  const out = new Float32Array(V);
  const M = Math.max(1000, 4 * V); // room for V distinct values
  const used = new Set<number>();
  for (let j = 0; j < V; j++) {
    let v = (Math.imul(h ^ Math.imul(j + 1, 0x9e3779b1), 0x85ebca6b) >>> 0) % M;
    while (used.has(v)) v = (v + 1) % M; // no ties: argmax is unambiguous
    used.add(v);
    out[j] = (v * 10) / M;
  }
  return out;
}

export const argmax = (x: Float32Array): number => {
  let best = -Infinity;
  let arg = 0;
  for (let j = 0; j < x.length; j++) if (x[j] > best) (best = x[j]), (arg = j);
  return arg;
};

// ------------------------------------------------------------------------------------------
// §7.5 reference: tokenizer and greedy decoding against the fake accelerator
// ------------------------------------------------------------------------------------------

export function tokenize(prompt: Uint8Array, tokens: Uint8Array[]): number[] | undefined {
  const out: number[] = [];
  let p = 0;
  while (p < prompt.length) {
    let best = -1;
    let bestLen = 0;
    tokens.forEach((t, id) => {
      if (t.length > bestLen && p + t.length <= prompt.length && equal(t, prompt.subarray(p, p + t.length))) (best = id), (bestLen = t.length);
    });
    if (best < 0) return undefined;
    out.push(best);
    p += bestLen;
  }
  return out;
}

export interface GreedyResult {
  text: Uint8Array;
  ids: number[];
  stop: 1 | 2;
  /** The token context of every accelerator run. */
  contexts: number[][];
}

/** What §5.3/§7.5 prescribe for greedy decoding of `prompt` over the fake logits. */
export function greedy(g: F.GenerateSpec, prompt: Uint8Array, maxNew: number): GreedyResult {
  let ctx = tokenize(prompt, g.tokens)!;
  if (ctx.length > g.contextLength) ctx = ctx.slice(ctx.length - g.contextLength);
  const ids: number[] = [];
  const contexts: number[][] = [];
  for (;;) {
    if (ids.length >= maxNew) return { text: cat(...ids.map((t) => g.tokens[t])), ids, stop: 2, contexts };
    contexts.push(ctx.slice());
    const t = argmax(fakeLogits(ctx, g.tokens.length));
    if (t === g.endToken) return { text: cat(...ids.map((i) => g.tokens[i])), ids, stop: 1, contexts };
    ids.push(t);
    ctx = [...ctx, t];
    if (ctx.length > g.contextLength) ctx = ctx.slice(1);
  }
}

// ------------------------------------------------------------------------------------------
// raw encoders: the §5 manifest and the §7 inner request written field by field, so that any
// field can hold any value (the host encoders refuse out-of-range values)
// ------------------------------------------------------------------------------------------

export interface RawSpec {
  name: Uint8Array;
  dtype: number;
  dims: [number, number][];
  /** Written instead of dims.length. */
  rank?: number;
}
export interface RawGenerate {
  tokens: Uint8Array[];
  vocab?: number;
  endToken: number;
  maxNew: number;
  context: number;
  perChunk: number;
}
export interface RawFile {
  location: Uint8Array;
  size: bigint;
}
export interface RawExtension {
  type: number;
  data: Uint8Array;
  dataLen?: number;
}
export interface RawManifest {
  magic: Uint8Array;
  name: Uint8Array;
  nameLen?: number;
  version: bigint;
  graphSha: Uint8Array;
  graphSize: bigint;
  inputs: RawSpec[];
  inputCount?: number;
  outputs: RawSpec[];
  outputCount?: number;
  mode: number;
  generate?: RawGenerate;
  keyId: Uint8Array;
  streamId: Uint8Array;
  plaintextSize: bigint;
  chunkSize: number;
  chunkCount: bigint;
  commitment: Uint8Array;
  files: RawFile[];
  fileCount?: number;
  policyVersion: number;
  extensions: RawExtension[];
  extLen?: number;
  trailing?: Uint8Array;
}

const rawSpec = (s: RawSpec): Uint8Array =>
  cat(vec8(s.name), u8(s.dtype), u8(s.rank ?? s.dims.length), ...s.dims.map(([lo, hi]) => cat(u32(lo), u32(hi))));

export function encodeRawManifest(m: RawManifest): Uint8Array {
  const parts: Uint8Array[] = [
    m.magic,
    vec8(m.name, m.nameLen),
    u64(m.version),
    m.graphSha,
    u64(m.graphSize),
    u8(m.inputCount ?? m.inputs.length),
    ...m.inputs.map(rawSpec),
    u8(m.outputCount ?? m.outputs.length),
    ...m.outputs.map(rawSpec),
    u8(m.mode),
  ];
  if (m.generate) {
    const g = m.generate;
    parts.push(u32(g.vocab ?? g.tokens.length), ...g.tokens.map((t) => vec8(t)), u32(g.endToken), u32(g.maxNew), u32(g.context), u16(g.perChunk));
  }
  parts.push(m.keyId, m.streamId, u64(m.plaintextSize), u32(m.chunkSize), u64(m.chunkCount), m.commitment);
  parts.push(u8(m.fileCount ?? m.files.length), ...m.files.map((f) => cat(vec8(f.location), u64(f.size))));
  const ext = cat(...m.extensions.map((e) => cat(u16(e.type), vec16(e.data, e.dataLen))));
  parts.push(u16(m.policyVersion), vec16(ext, m.extLen));
  if (m.trailing) parts.push(m.trailing);
  return cat(...parts);
}

export function rawFromManifest(m: F.Manifest): RawManifest {
  const spec = (s: F.TensorSpec): RawSpec => ({ name: ascii(s.name), dtype: s.dtype, dims: s.dims.map((d) => [d.min, d.max]) });
  return {
    magic: magic("MF"),
    name: ascii(m.name),
    version: m.version,
    graphSha: m.graphSha256,
    graphSize: BigInt(m.graphSize),
    inputs: m.inputs.map(spec),
    outputs: m.outputs.map(spec),
    mode: m.mode,
    generate: m.generate
      ? {
          tokens: m.generate.tokens,
          endToken: m.generate.endToken,
          maxNew: m.generate.maxNewTokens,
          context: m.generate.contextLength,
          perChunk: m.generate.tokensPerChunk,
        }
      : undefined,
    keyId: m.weights.keyId,
    streamId: m.weights.streamId,
    plaintextSize: BigInt(m.weights.plaintextSize),
    chunkSize: m.weights.chunkSize,
    chunkCount: BigInt(m.weights.chunkCount),
    commitment: m.weights.commitment,
    files: m.weights.files.map((f) => ({ location: ascii(f.location), size: BigInt(f.size) })),
    policyVersion: m.policy.version,
    extensions: m.policy.extensions.map((e) => ({ type: e.type, data: e.data })),
  };
}

/** TensorList (§7.2) written raw; `count`, `rank` and the data length can lie. */
export interface RawTensor {
  name: Uint8Array;
  dtype: number;
  dims: number[];
  rank?: number;
  data: Uint8Array;
}
export const rawTensorList = (ts: RawTensor[], count = ts.length): Uint8Array =>
  cat(u8(count), ...ts.map((t) => cat(vec8(t.name), u8(t.dtype), u8(t.rank ?? t.dims.length), ...t.dims.map(u32), t.data)));
export const rawTensorRequest = (list: Uint8Array, kind = 1): Uint8Array => cat(magic("RQ"), u8(kind), list);
export interface RawGenerateRequest {
  prompt: Uint8Array;
  promptLen?: number;
  maxNew: number;
  temperatureMilli: number;
  topK: number;
  hasSeed: number;
  seed: bigint;
  kind?: number;
  trailing?: Uint8Array;
}
export const rawGenerateRequest = (r: RawGenerateRequest): Uint8Array =>
  cat(
    magic("RQ"),
    u8(r.kind ?? 2),
    vec32(r.prompt, r.promptLen),
    u32(r.maxNew),
    u32(r.temperatureMilli),
    u32(r.topK),
    u8(r.hasSeed),
    u64(r.seed),
    r.trailing ?? new Uint8Array(0),
  );

// ------------------------------------------------------------------------------------------
// sealed weights
// ------------------------------------------------------------------------------------------

export interface SealedStream {
  plaintext: Uint8Array;
  stream: Uint8Array;
  /** Header, then each chunk: what load-weights takes (SPEC §9). */
  pieces: Uint8Array[];
  descriptor: F.WeightsDescriptor;
  dataKey: Uint8Array;
  keyId: Uint8Array;
}

/** Splits a sealed stream into header and chunks from the header fields alone. */
export function splitStream(stream: Uint8Array): Uint8Array[] {
  const dv = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  const chunkSize = dv.getUint32(40);
  const count = Number(dv.getBigUint64(44));
  const size = Number(dv.getBigUint64(52));
  const pieces = [stream.subarray(0, 60)];
  let off = 60;
  for (let i = 0; i < count; i++) {
    const n = (i < count - 1 ? chunkSize : size - (count - 1) * chunkSize) + 16;
    pieces.push(stream.subarray(off, off + n));
    off += n;
  }
  expect(off, "the sealed stream is exactly header plus chunks").toBe(stream.length);
  return pieces;
}

export async function sealStream(
  opts: {
    plaintext?: Uint8Array;
    size?: number;
    chunkSize?: number;
    dataKey?: Uint8Array;
    keyId?: Uint8Array;
    streamId?: Uint8Array;
    files?: { location: string; size: number }[];
  } = {},
): Promise<SealedStream> {
  const plaintext = opts.plaintext ?? detBytes(opts.size ?? 1000, 0x5eed + (opts.size ?? 1000));
  const dataKey = opts.dataKey ?? rand(32);
  const keyId = opts.keyId ?? rand(16);
  const fileSpecs = opts.files ?? [{ location: "weights.bin", size: plaintext.length }];
  let off = 0;
  const files = fileSpecs.map((f) => {
    const part = plaintext.subarray(off, off + f.size);
    off += f.size;
    return { location: f.location, size: f.size, source: [part] };
  });
  const out: Uint8Array[] = [];
  const sw = await F.sealWeights({
    files,
    dataKey,
    keyId,
    chunkSize: opts.chunkSize ?? 65536,
    streamId: opts.streamId,
    out: (b) => void out.push(b.slice()),
  });
  const stream = cat(...out);
  return { plaintext, stream, pieces: splitStream(stream), descriptor: sw.descriptor, dataKey, keyId };
}

// ------------------------------------------------------------------------------------------
// programs
// ------------------------------------------------------------------------------------------

export interface Program {
  manifest: F.Manifest;
  bytes: Uint8Array;
  digest: Uint8Array;
  graph: Uint8Array;
  weights: SealedStream;
}

export const floatSpec = (name: string, max = 8): F.TensorSpec => ({ name, dtype: 1, dims: [{ min: 1, max }] });

export interface TensorProgramOptions {
  name?: string;
  version?: number | bigint;
  inputs?: F.TensorSpec[];
  outputs?: F.TensorSpec[];
  weights?: SealedStream;
  weightsSize?: number;
  dataKey?: Uint8Array;
  keyId?: Uint8Array;
  egressLimit?: number;
  extensions?: F.Extension[];
  graph?: Uint8Array;
}

export async function tensorProgram(o: TensorProgramOptions = {}): Promise<Program> {
  const weights = o.weights ?? (await sealStream({ size: o.weightsSize ?? 1000, dataKey: o.dataKey, keyId: o.keyId }));
  const graph = o.graph ?? detBytes(300, 7);
  const b = F.buildManifest({
    name: o.name ?? "echo",
    version: o.version ?? 1,
    graph,
    inputs: o.inputs ?? [floatSpec("x")],
    outputs: o.outputs ?? [floatSpec("y")],
    weights: weights.descriptor,
    egressLimit: o.egressLimit,
    extensions: o.extensions,
  });
  return { manifest: b.manifest, bytes: b.bytes, digest: b.digest, graph, weights };
}

/** A small vocabulary with multi-byte tokens, so greedy longest match matters. */
export const VOCAB = ["<end>", "a", "b", "c", "ab", "abc", " ", "the", "t", "h", "e", "cat", "ca", "\xff"].map((t) =>
  Uint8Array.from(t, (c) => c.charCodeAt(0)),
);

export interface GenerateProgramOptions {
  name?: string;
  version?: number;
  tokens?: Uint8Array[];
  endToken?: number;
  maxNewTokens?: number;
  contextLength?: number;
  tokensPerChunk?: number;
  positions?: "all" | "last";
  weights?: SealedStream;
  dataKey?: Uint8Array;
  keyId?: Uint8Array;
  egressLimit?: number;
}

export async function generateProgram(o: GenerateProgramOptions = {}): Promise<Program> {
  const weights = o.weights ?? (await sealStream({ size: 64, dataKey: o.dataKey, keyId: o.keyId }));
  const gen: F.GenerateSpec = {
    tokens: o.tokens ?? VOCAB,
    endToken: o.endToken ?? 0,
    maxNewTokens: o.maxNewTokens ?? 12,
    contextLength: o.contextLength ?? 16,
    tokensPerChunk: o.tokensPerChunk ?? 3,
  };
  const graph = detBytes(200, 11);
  const b = F.buildManifest({
    name: o.name ?? "tiny-lm",
    version: o.version ?? 1,
    graph,
    ...F.generateTensorSpecs(gen, { positions: o.positions ?? "last" }),
    generate: gen,
    weights: weights.descriptor,
    egressLimit: o.egressLimit,
  });
  return { manifest: b.manifest, bytes: b.bytes, digest: b.digest, graph, weights };
}

// ------------------------------------------------------------------------------------------
// the world: a trust configuration, reviewers and an initialized loader
// ------------------------------------------------------------------------------------------

export interface WorldOptions {
  n?: number;
  k?: number;
  reviewers?: F.ReviewerKey[];
  /** Deterministic entropy: a seed for a counter-mode SHA-256 stream. */
  entropySeed?: string;
  nonce?: Uint8Array;
  trustConfig?: Uint8Array;
  /** Skip init. */
  noInit?: boolean;
}

export function entropyStream(seed: string): (out: Uint8Array) => void {
  let counter = 0;
  return (out) => {
    for (let o = 0; o < out.length; o += 32) {
      const block = sha256(ascii(seed), u32(counter++));
      out.set(block.subarray(0, Math.min(32, out.length - o)), o);
    }
  };
}

const reviewerCache = new Map<number, F.ReviewerKey>();
/** Deterministic reviewer keys (seeded), sorted by public key per index set. */
export function reviewer(i: number): F.ReviewerKey {
  let r = reviewerCache.get(i);
  if (!r) reviewerCache.set(i, (r = F.generateReviewerKey(sha256(ascii(`veil test reviewer ${i}`)))));
  return r;
}

export class World {
  readonly L: LoaderInstance;
  readonly acc: FakeAccelerator;
  readonly reviewers: F.ReviewerKey[];
  readonly threshold: number;
  readonly trustConfig: Uint8Array;
  readonly clock = { now: 1_000_000_000n };
  report!: Uint8Array;
  rb!: F.ReportBody;

  constructor(o: WorldOptions = {}) {
    this.reviewers = o.reviewers ?? Array.from({ length: o.n ?? 3 }, (_, i) => reviewer(i));
    this.threshold = o.k ?? 2;
    this.trustConfig =
      o.trustConfig ?? F.encodeTrustConfig({ threshold: this.threshold, reviewers: this.reviewers.map((r) => r.publicKey) }, { sort: true });
    this.acc = new FakeAccelerator();
    this.L = guard(
      LoaderInstance.create(wasm(), {
        accelerator: this.acc,
        entropy: o.entropySeed !== undefined ? entropyStream(o.entropySeed) : undefined,
        clock: () => this.clock.now,
      }),
    );
    if (!o.noInit) this.init(o.nonce ?? rand(32));
  }

  init(nonce: Uint8Array): Uint8Array {
    this.report = this.L.init(this.trustConfig, nonce);
    this.rb = F.decodeReportBody(this.report);
    return this.report;
  }

  /** A bundle signed by the given reviewer indices (default: the first k). */
  sign(bytes: Uint8Array, who: number[] = [...Array(this.threshold).keys()]): Uint8Array {
    return F.assembleBundle(who.map((i) => F.signManifest(bytes, this.reviewers[i])));
  }

  giveKey(s: { keyId: Uint8Array; dataKey: Uint8Array }): void {
    this.L.unwrapKey(F.wrapKey({ report: this.report, keyId: s.keyId, dataKey: s.dataKey }));
  }

  load(p: Program, bundle?: Uint8Array): number {
    return this.L.loadProgram(p.bytes, bundle ?? this.sign(p.bytes), p.graph);
  }

  feed(handle: number, pieces: Uint8Array[]): void {
    for (const piece of pieces) this.L.loadWeights(handle, piece);
  }

  /** Unwraps the program's data key, loads it, feeds every weights piece: a runnable handle. */
  ready(p: Program): number {
    this.giveKey(p.weights);
    const h = this.load(p);
    this.feed(h, p.weights.pieces);
    return h;
  }

  seal(p: Program | Uint8Array, request: F.InnerRequest | Uint8Array): { bytes: Uint8Array; response: F.ResponseContext } {
    return F.sealRequest({ loader: this.report, programDigest: p instanceof Uint8Array ? p : p.digest, request });
  }

  /** infer through the host client: seal, run, open. */
  ask(handle: number, p: Program, request: F.InnerRequest | Uint8Array): F.InnerResponse {
    const r = this.seal(p, request);
    return r.response.openResponse(this.L.infer(handle, r.bytes));
  }

  /** Streams a generate request to the end; returns the chunks and the raw wire pieces. */
  stream(handle: number, p: Program, request: F.InnerRequest | Uint8Array): { chunks: F.StreamChunk[]; wire: Uint8Array[] } {
    const r = this.seal(p, request);
    const s = this.L.inferBegin(handle, r.bytes);
    const opener = r.response.openStream();
    const chunks: F.StreamChunk[] = [];
    const wire: Uint8Array[] = [];
    for (;;) {
      let piece: Uint8Array;
      try {
        piece = this.L.inferNext(s);
      } catch (e) {
        if (e instanceof LoaderError && e.code === E.STREAM_DONE) break;
        throw e;
      }
      wire.push(piece);
      chunks.push(...opener.push(piece));
    }
    opener.end();
    return { chunks, wire };
  }
}

export const tensorRequest = (values: number[], name = "x"): F.InnerRequest => ({
  kind: 1,
  inputs: [F.tensorFromArray(name, 1, [values.length], new Float32Array(values))],
});

export const generateRequest = (prompt: string, o: Partial<F.GenerateRequest> = {}): F.GenerateRequest => ({
  kind: 2,
  prompt: Uint8Array.from(prompt, (c) => c.charCodeAt(0)),
  maxNewTokens: 8,
  temperatureMilli: 0,
  topK: 0,
  ...o,
});

// ------------------------------------------------------------------------------------------
// HPKE (RFC 9180 base mode, X25519/HKDF-SHA256/ChaCha20Poly1305) on node:crypto alone
// ------------------------------------------------------------------------------------------

const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");
type Key = ReturnType<typeof createPublicKey>;
const privKey = (sk: Uint8Array): Key => createPrivateKey({ key: Buffer.concat([PKCS8_X25519, sk]), format: "der", type: "pkcs8" });
const pubKeys = new Map<string, Key>();
const pubKey = (pk: Uint8Array): Key => {
  const k = hex(pk);
  let key = pubKeys.get(k);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_X25519, pk]), format: "der", type: "spki" });
    if (pubKeys.size < 64) pubKeys.set(k, key);
  }
  return key;
};
const rawPublic = (key: Key): Uint8Array => new Uint8Array(key.export({ format: "der", type: "spki" }).subarray(12));
export const x25519Public = (sk: Uint8Array): Uint8Array => rawPublic(createPublicKey(privKey(sk)));
export const x25519 = (sk: Uint8Array, pk: Uint8Array): Uint8Array => new Uint8Array(diffieHellman({ privateKey: privKey(sk), publicKey: pubKey(pk) }));

export const hmac = (key: Uint8Array, ...msg: Uint8Array[]): Uint8Array => {
  const h = createHmac("sha256", key);
  for (const m of msg) h.update(m);
  return new Uint8Array(h.digest());
};
export const hkdfExtract = (salt: Uint8Array, ikm: Uint8Array): Uint8Array => hmac(salt, ikm);
/** HKDF-Expand for L ≤ 32 (one block). */
export const hkdfExpand = (prk: Uint8Array, info: Uint8Array, L: number): Uint8Array => hmac(prk, info, u8(1)).slice(0, L);

const KEM_ID = cat(ascii("KEM"), u16(0x20));
const SUITE_ID = cat(ascii("HPKE"), u16(0x20), u16(1), u16(3));
const V1 = ascii("HPKE-v1");
const EMPTY = new Uint8Array(0);
const lExtract = (suite: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array) => hkdfExtract(salt, cat(V1, suite, ascii(label), ikm));
const lExpand = (suite: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, L: number) =>
  hkdfExpand(prk, cat(u16(L), V1, suite, ascii(label), info), L);

export function aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: pt.length });
  return cat(c.update(pt), c.final(), c.getAuthTag());
}
export function aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array | undefined {
  if (ct.length < 16) return undefined;
  const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
  d.setAAD(aad, { plaintextLength: ct.length - 16 });
  d.setAuthTag(ct.subarray(ct.length - 16));
  const pt = d.update(ct.subarray(0, ct.length - 16));
  try {
    d.final();
  } catch {
    return undefined;
  }
  return new Uint8Array(pt);
}

export interface SenderContext {
  enc: Uint8Array;
  seal(aad: Uint8Array, pt: Uint8Array): Uint8Array;
  export(ctx: Uint8Array, L: number): Uint8Array;
}

export function hpkeSender(pkR: Uint8Array, info: Uint8Array, skE?: Uint8Array): SenderContext {
  let enc: Uint8Array;
  let dh: Uint8Array;
  if (skE) {
    enc = x25519Public(skE);
    dh = x25519(skE, pkR);
  } else {
    const pair = generateKeyPairSync("x25519");
    enc = rawPublic(pair.publicKey);
    dh = new Uint8Array(diffieHellman({ privateKey: pair.privateKey, publicKey: pubKey(pkR) }));
  }
  const eae = lExtract(KEM_ID, EMPTY, "eae_prk", dh);
  const shared = lExpand(KEM_ID, eae, "shared_secret", cat(enc, pkR), 32);
  const ksc = cat(u8(0), lExtract(SUITE_ID, EMPTY, "psk_id_hash", EMPTY), lExtract(SUITE_ID, EMPTY, "info_hash", info));
  const secret = lExtract(SUITE_ID, shared, "secret", EMPTY);
  const key = lExpand(SUITE_ID, secret, "key", ksc, 32);
  const baseNonce = lExpand(SUITE_ID, secret, "base_nonce", ksc, 12);
  const exporter = lExpand(SUITE_ID, secret, "exp", ksc, 32);
  let seq = 0;
  return {
    enc,
    seal(aad, pt) {
      const nonce = baseNonce.slice();
      nonce[11] ^= seq++;
      return aeadSeal(key, nonce, aad, pt);
    },
    export: (ctx, L) => lExpand(SUITE_ID, exporter, "sec", ctx, L),
  };
}

export const REQUEST_LABEL = ascii("veil request v1\0");
export const requestHeader = (keyId: number): Uint8Array => cat(u8(keyId), u16(0x20), u16(1), u16(3));

/** RFC 9458 §4.4 as SPEC §8.3 uses it: the response AEAD key and nonce. */
export function responseKeys(secret: Uint8Array, enc: Uint8Array, responseNonce: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const prk = hkdfExtract(cat(enc, responseNonce), secret);
  return { key: hkdfExpand(prk, ascii("key"), 32), nonce: hkdfExpand(prk, ascii("nonce"), 12) };
}

export interface FastSealed {
  bytes: Uint8Array;
  enc: Uint8Array;
  ctx: SenderContext;
  /** Opens a §8.3 response to the InnerResponse plaintext (throws on failure). */
  open(response: Uint8Array): Uint8Array;
}

/** §8.1 client on node:crypto: hdr ‖ enc ‖ Seal("", inner). */
export function fastSeal(report: F.ReportBody, programDigest: Uint8Array, inner: Uint8Array): FastSealed {
  const hdr = requestHeader(report.keyId);
  const ctx = hpkeSender(report.hpkePublicKey, cat(REQUEST_LABEL, hdr, programDigest));
  const ct = ctx.seal(EMPTY, inner);
  return {
    bytes: cat(hdr, ctx.enc, ct),
    enc: ctx.enc,
    ctx,
    open(response) {
      const { key, nonce } = responseKeys(ctx.export(ascii("veil response v1"), 32), ctx.enc, response.subarray(0, 32));
      const pt = aeadOpen(key, nonce, EMPTY, response.subarray(32));
      if (!pt) throw new Error("response failed to open");
      return pt;
    },
  };
}

/** Memory of a loader instance (for wipe checks): a view of its whole linear memory. */
export const loaderMemory = (L: LoaderInstance): Uint8Array => new Uint8Array(((L as any).x.memory as WebAssembly.Memory).buffer);
