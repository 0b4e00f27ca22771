// Trusted: a small strict reader for the manifest fields (SPEC §5) the accelerator needs —
// tensor names and dtypes, the mode, and the weights descriptor's plaintext size and files.
// The loader has verified the manifest before `create-program`; this reader still checks every
// bound so that a loader bug cannot turn into an out-of-range read here. It is written against
// SPEC.md alone (no import from host/formats: trusted code depends on nothing untrusted).
// Manifests are public, so error messages may quote their fields.
import { PayloadReader } from "./protocol.ts";

export interface TensorFacts {
  name: string;
  dtype: number;
  rank: number;
}

export interface WeightsFile {
  location: string;
  size: number;
  /** Offset of the file's first byte in the weights stream. */
  start: number;
}

export interface ManifestFacts {
  name: string;
  version: bigint;
  mode: 1 | 2;
  inputs: TensorFacts[];
  outputs: TensorFacts[];
  plaintextSize: number;
  chunkSize: number;
  files: WeightsFile[];
}

export class ManifestReadError extends Error {
  override readonly name = "ManifestReadError";
}

const MAGIC = [0x76, 0x65, 0x69, 0x6c, 0x4d, 0x46, 0x00, 0x01]; // "veil" "MF" 0x0001
const DTYPES = new Set([1, 2, 3, 5, 6, 7, 9, 10, 11]); // SPEC §5.2
const NAME_BYTE = /^[A-Za-z0-9._/-]$/;
const WEIGHTS_MAX = 2 ** 46; // SPEC §13

// The channel's strict reader, failing with this file's error type, plus SPEC §1.4 names.
class Cursor extends PayloadReader {
  constructor(b: Uint8Array) {
    super(b, "manifest", (m) => new ManifestReadError(m));
  }
  /** SPEC §1.4 name<1..64>. */
  name(field: string): string {
    const n = this.u8(`${field} length`);
    if (n < 1 || n > 64) throw new ManifestReadError(`${field}: length ${n} is not in 1..64`);
    const s = String.fromCharCode(...this.fixed(n, field));
    for (const c of s) if (!NAME_BYTE.test(c)) throw new ManifestReadError(`${field}: byte outside the name alphabet`);
    if (s[0] === "/" || s[0] === ".") throw new ManifestReadError(`${field}: "${s}" begins with / or .`);
    return s;
  }
}

function tensorSpecs(c: Cursor, list: string): TensorFacts[] {
  const count = c.u8(`${list} count`);
  if (count < 1 || count > 16) throw new ManifestReadError(`${list}: count ${count} is not in 1..16`);
  const out: TensorFacts[] = [];
  for (let i = 0; i < count; i++) {
    const name = c.name(`${list}[${i}].name`);
    const dtype = c.u8(`${list}[${i}].dtype`);
    if (!DTYPES.has(dtype)) throw new ManifestReadError(`${list}[${i}]: dtype ${dtype} is not a SPEC §5.2 dtype`);
    const rank = c.u8(`${list}[${i}].rank`);
    if (rank > 8) throw new ManifestReadError(`${list}[${i}]: rank ${rank} is over 8`);
    c.skip(8 * rank, `${list}[${i}].dims`);
    if (out.some((t) => t.name === name)) throw new ManifestReadError(`${list}: "${name}" appears twice`);
    out.push({ name, dtype, rank });
  }
  return out;
}

function safe(v: bigint, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (v > BigInt(max)) throw new ManifestReadError(`${field}: ${v} is over ${max}`);
  return Number(v);
}

/** Reads the facts the accelerator needs; throws ManifestReadError on anything out of bounds. */
export function readManifestFacts(bytes: Uint8Array): ManifestFacts {
  const c = new Cursor(bytes);
  const magic = c.fixed(8, "magic");
  if (magic.some((b, i) => b !== MAGIC[i])) throw new ManifestReadError("not a version 1 manifest (magic)");
  const name = c.name("name");
  const version = c.u64("version");
  c.skip(32, "graph_sha256");
  c.u64("graph_size");
  const inputs = tensorSpecs(c, "inputs");
  const outputs = tensorSpecs(c, "outputs");
  const mode = c.u8("mode");
  if (mode !== 1 && mode !== 2) throw new ManifestReadError(`mode ${mode} is not 1 or 2`);
  if (mode === 2) {
    const vocab = c.u32("generate.vocab_size");
    if (vocab < 2 || vocab > 65536) throw new ManifestReadError(`generate.vocab_size ${vocab} is not in 2..65536`);
    for (let i = 0; i < vocab; i++) {
      const n = c.u8("generate.token length");
      if (n < 1 || n > 64) throw new ManifestReadError(`generate.token[${i}]: length ${n} is not in 1..64`);
      c.skip(n, "generate.token");
    }
    c.skip(4 + 4 + 4 + 2, "generate");
  }
  c.skip(16 + 16, "weights key_id and stream_id");
  const plaintextSize = safe(c.u64("weights.plaintext_size"), "weights.plaintext_size", WEIGHTS_MAX);
  const chunkSize = c.u32("weights.chunk_size");
  c.u64("weights.chunk_count");
  c.skip(32, "weights.commitment");
  const fileCount = c.u8("weights.file_count");
  if (fileCount < 1 || fileCount > 64) throw new ManifestReadError(`weights.file_count ${fileCount} is not in 1..64`);
  const files: WeightsFile[] = [];
  let start = 0;
  for (let i = 0; i < fileCount; i++) {
    const location = c.name(`weights.files[${i}].location`);
    const size = safe(c.u64(`weights.files[${i}].size`), `weights.files[${i}].size`, WEIGHTS_MAX);
    if (files.some((f) => f.location === location)) throw new ManifestReadError(`weights.files: location "${location}" appears twice`);
    if (size === 0 && !(plaintextSize === 0 && fileCount === 1)) {
      throw new ManifestReadError(`weights.files[${i}]: size 0 is allowed only for the single file of an empty stream`);
    }
    files.push({ location, size, start });
    start += size;
  }
  if (start !== plaintextSize) throw new ManifestReadError(`weights.files sum to ${start}, not plaintext_size ${plaintextSize}`);
  // Policy: u16 version, then u16-length extensions; nothing may follow.
  c.u16("policy.policy_version");
  c.skip(c.u16("policy.extensions length"), "policy.extensions");
  if (c.remaining() !== 0) throw new ManifestReadError(`${c.remaining()} bytes after the policy`);
  return { name, version, mode, inputs, outputs, plaintextSize, chunkSize, files };
}
