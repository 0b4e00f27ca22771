// The SPEC §12 error table and §12.1 field identifiers: the host's single source for error names. UNTRUSTED host code: public data only.

/** §12: code numbers are stable across versions. */
export const ERROR_CODES = {
  TRUNCATED: 1,
  TRAILING_BYTES: 2,
  BAD_LENGTH: 3,
  BAD_VALUE: 4,
  NOT_CANONICAL: 5,
  TOO_LARGE: 6,
  WRONG_KIND: 7,
  UNSUPPORTED_VERSION: 8,
  UNKNOWN_CRITICAL: 9,
  BAD_KEY: 10,
  STATE: 16,
  NO_PROGRAM: 17,
  CAPACITY: 18,
  SIGNATURE_THRESHOLD: 19,
  GRAPH_MISMATCH: 20,
  ROLLBACK: 21,
  KEY_UNKNOWN: 32,
  KEY_UNWRAP: 33,
  WEIGHTS_MISMATCH: 34,
  WEIGHTS_AUTH: 35,
  WEIGHTS_ORDER: 36,
  WEIGHTS_COMMITMENT: 37,
  WEIGHTS_INCOMPLETE: 38,
  KEY_ID: 48,
  UNSUPPORTED_SUITE: 49,
  REQUEST_AUTH: 50,
  REPLAY: 51,
  SCHEMA_VIOLATION: 52,
  EGRESS_LIMIT: 53,
  STREAM_DONE: 54,
  ACCELERATOR_FAILED: 64,
  ENTROPY_FAILED: 65,
} as const;

/**
 * Conditions only a client can see (the loader never opens a response), so §12 has no code
 * for them. They live above the u16 range the loader can emit, so they never collide.
 */
export const HOST_ERROR_CODES = {
  RESPONSE_AUTH: 0x1_0001,
} as const;

export type SpecErrorName = keyof typeof ERROR_CODES;
export type HostErrorName = keyof typeof HOST_ERROR_CODES;
export type VeilErrorName = SpecErrorName | HostErrorName;

export const ERROR_MEANINGS: Readonly<Record<VeilErrorName, string>> = {
  TRUNCATED: "input ends inside a structure",
  TRAILING_BYTES: "bytes after the end of a structure",
  BAD_LENGTH: "a length or count out of range",
  BAD_VALUE: "an undefined or out-of-range value",
  NOT_CANONICAL: "a non-canonical encoding",
  TOO_LARGE: "over a limit of §13",
  WRONG_KIND: "magic family or kind mismatch",
  UNSUPPORTED_VERSION: "version not implemented",
  UNKNOWN_CRITICAL: "unknown critical policy extension",
  BAD_KEY: "a public key that is not acceptable",
  STATE: "call not valid in the loader's state",
  NO_PROGRAM: "unknown program handle",
  CAPACITY: "too many programs, keys or streams",
  SIGNATURE_THRESHOLD: "fewer than k valid reviewer signatures",
  GRAPH_MISMATCH: "graph hash or size differs from the manifest",
  ROLLBACK: "program version lower than one loaded before",
  KEY_UNKNOWN: "no data key for the weights' key id",
  KEY_UNWRAP: "wrapped key failed to open",
  WEIGHTS_MISMATCH: "weights header differs from the manifest",
  WEIGHTS_AUTH: "a weights chunk failed to open",
  WEIGHTS_ORDER: "weights piece out of order, wrong length or extra",
  WEIGHTS_COMMITMENT: "sealed weights differ from the commitment",
  WEIGHTS_INCOMPLETE: "program run before its weights are complete",
  KEY_ID: "request key id is not this loader's",
  UNSUPPORTED_SUITE: "request KEM, KDF or AEAD not supported",
  REQUEST_AUTH: "request failed to open",
  REPLAY: "request enc seen before",
  SCHEMA_VIOLATION: "request does not match the program's schema",
  EGRESS_LIMIT: "response over the policy's egress limit",
  STREAM_DONE: "stream has ended",
  ACCELERATOR_FAILED: "the accelerator reported an error or bad output",
  ENTROPY_FAILED: "the entropy import failed",
  RESPONSE_AUTH: "response or stream record failed to open (client side, not a loader code)",
};

export const errorNumber = (name: VeilErrorName): number =>
  (ERROR_CODES as Record<string, number>)[name] ?? (HOST_ERROR_CODES as Record<string, number>)[name];

const NAME_BY_NUMBER = new Map<number, SpecErrorName>(
  Object.entries(ERROR_CODES).map(([k, v]) => [v, k as SpecErrorName]),
);

/**
 * §12.1 field identifiers. Each group lists its fields in the order SPEC.md lists them, from 1.
 * Nested structures continue the numbering after their parent's own fields, in document order
 * (our reading of §12.1; see the report). Each entry is [label, ...paths]; a path is the host
 * decoder's field path with array indices removed (so "inputs[2].dims[0].min" → "inputs.dims.min").
 */
type FieldEntry = readonly [label: string, ...paths: string[]];
interface FieldGroup {
  readonly group: number;
  readonly title: string;
  readonly structures: readonly string[];
  readonly fields: readonly FieldEntry[];
}


export const FIELD_GROUPS: readonly FieldGroup[] = [
  {
    group: 0x01,
    title: "TrustConfig",
    structures: ["trust_config"],
    fields: [["magic"], ["threshold"], ["count"], ["reviewer_key"]],
  },
  {
    group: 0x02,
    title: "ReportBody",
    structures: ["report"],
    fields: [["magic"], ["key_id"], ["hpke_public_key"], ["trust_config_hash"], ["nonce"]],
  },
  {
    group: 0x03,
    title: "Manifest",
    structures: ["manifest"],
    fields: [
      ["magic"],
      ["name"],
      ["version"],
      ["graph_sha256"],
      ["graph_size"],
      ["input_count"],
      ["inputs"],
      ["output_count"],
      ["outputs"],
      ["mode"],
      ["generate"],
      ["weights"],
      ["policy"],
      ["TensorSpec.name", "inputs.name", "outputs.name"],
      ["TensorSpec.dtype", "inputs.dtype", "outputs.dtype"],
      ["TensorSpec.rank", "inputs.rank", "outputs.rank"],
      ["TensorSpec.dims", "inputs.dims", "outputs.dims"],
      ["Dim.min", "inputs.dims.min", "outputs.dims.min"],
      ["Dim.max", "inputs.dims.max", "outputs.dims.max"],
      ["generate.vocab_size"],
      ["generate.token"],
      ["generate.end_token"],
      ["generate.max_new_tokens"],
      ["generate.context_length"],
      ["generate.tokens_per_chunk"],
      ["weights.key_id"],
      ["weights.plaintext_size"],
      ["weights.chunk_size"],
      ["weights.chunk_count"],
      ["weights.commitment"],
      ["weights.file_count"],
      ["weights.files"],
      ["weights.files.location"],
      ["weights.files.size"],
      ["policy.policy_version"],
      ["policy.extensions"],
      ["policy.extensions.type"],
      ["policy.extensions.data"],
    ],
  },
  {
    group: 0x04,
    title: "SignatureBundle",
    structures: ["signature_bundle"],
    fields: [["magic"], ["count"], ["entries"], ["entries.public_key"], ["entries.signature"]],
  },
  {
    group: 0x05,
    title: "WeightsHeader/chunks",
    structures: ["weights_header", "weights_stream"],
    fields: [["magic"], ["key_id"], ["stream_id"], ["chunk_size"], ["chunk_count"], ["plaintext_size"], ["chunk"]],
  },
  {
    group: 0x06,
    title: "WrappedKey",
    structures: ["wrapped_key"],
    fields: [["magic"], ["key_id"], ["report_nonce"], ["enc"], ["ct"]],
  },
  {
    group: 0x07,
    title: "EncapsulatedRequest",
    structures: ["encapsulated_request"],
    fields: [["key_id"], ["kem_id"], ["kdf_id"], ["aead_id"], ["enc"], ["ct"]],
  },
  {
    group: 0x08,
    title: "inner request",
    structures: ["inner_request"],
    // Fields 3.. differ by kind; the paths do not collide, so one table serves both.
    fields: [
      ["magic"],
      ["kind"],
      ["tensor: inputs / generate: prompt", "inputs", "prompt"],
      ["tensor: inputs.count / generate: max_new_tokens", "inputs.count", "max_new_tokens"],
      ["tensor: inputs.tensors / generate: temperature_milli", "inputs.tensors", "temperature_milli"],
      ["tensor: Tensor.name / generate: top_k", "inputs.name", "top_k"],
      ["tensor: Tensor.dtype / generate: has_seed", "inputs.dtype", "has_seed"],
      ["tensor: Tensor.rank / generate: seed", "inputs.rank", "seed"],
      ["tensor: Tensor.dims", "inputs.dims"],
      ["tensor: Tensor.data", "inputs.data"],
    ],
  },
  {
    group: 0x09,
    title: "accelerator output",
    structures: ["accelerator_output"],
    fields: [
      ["count"],
      ["tensors"],
      ["Tensor.name", "tensors.name"],
      ["Tensor.dtype", "tensors.dtype"],
      ["Tensor.rank", "tensors.rank"],
      ["Tensor.dims", "tensors.dims"],
      ["Tensor.data", "tensors.data"],
    ],
  },
];

const GROUP_BY_STRUCTURE = new Map<string, FieldGroup>();
const ID_BY_PATH = new Map<string, number>();
for (const g of FIELD_GROUPS) {
  for (const s of g.structures) GROUP_BY_STRUCTURE.set(s, g);
  g.fields.forEach((entry, i) => {
    const paths = entry.length > 1 ? entry.slice(1) : [entry[0]];
    for (const p of paths) for (const s of g.structures) ID_BY_PATH.set(`${s}:${p}`, (g.group << 8) | (i + 1));
  });
}

const normalise = (path: string): string => path.replace(/\[\d+\]/g, "");

/** §12.1 identifier (high 16 bits of a loader error) for a host field path, if SPEC numbers it. */
export function fieldIdFor(structure: string, path: string): number | undefined {
  const g = GROUP_BY_STRUCTURE.get(structure);
  if (!g) return undefined;
  if (path === "") return g.group << 8;
  return ID_BY_PATH.get(`${structure}:${normalise(path)}`);
}

export interface LoaderErrorInfo {
  raw: number;
  code: number;
  name?: SpecErrorName;
  meaning?: string;
  fieldId: number;
  field?: string;
  message: string;
}

/** Decodes a loader u32 error (§12: low 16 bits code, high 16 bits field id) into words. */
export function describeLoaderError(raw: number): LoaderErrorInfo {
  const u = raw >>> 0;
  const code = u & 0xffff;
  const fieldId = u >>> 16;
  const name = NAME_BY_NUMBER.get(code);
  const meaning = name ? ERROR_MEANINGS[name] : undefined;
  let field: string | undefined;
  if (fieldId !== 0) {
    const g = FIELD_GROUPS.find((x) => x.group === fieldId >> 8);
    const idx = fieldId & 0xff;
    if (g) field = idx === 0 ? g.title : g.fields[idx - 1] ? `${g.title}.${g.fields[idx - 1][0]}` : undefined;
  }
  const hex = (n: number, w: number) => `0x${n.toString(16).padStart(w, "0")}`;
  const what = name ? `${name} (${code}): ${meaning}` : `unknown error code ${code}`;
  const where = fieldId === 0 ? "" : field ? `; field ${field} (${hex(fieldId, 4)})` : `; unknown field ${hex(fieldId, 4)}`;
  return { raw: u, code, name, meaning, fieldId, field, message: `loader error ${hex(u, 8)}: ${what}${where}` };
}

/**
 * A format or protocol error with a stable SPEC §12 name and number. Messages name the field
 * and the value received, never secret bytes (values in plaintext structures are withheld).
 */
export class VeilFormatError extends Error {
  override readonly name = "VeilFormatError";
  readonly number: number;
  /** Dotted field path including the structure, e.g. "manifest.weights.chunk_size". */
  readonly field: string;
  /** §12.1 identifier for this field, when SPEC numbers it. */
  readonly fieldId: number | undefined;

  constructor(
    readonly code: VeilErrorName,
    readonly structure: string,
    readonly path: string,
    readonly detail: string,
    readonly op: string = "decode",
  ) {
    super(`failed to ${op} ${structure.replace(/_/g, " ")}: ${path ? `field ${path}: ` : ""}${detail}`);
    this.number = errorNumber(code);
    this.field = path ? `${structure}.${path}` : structure;
    this.fieldId = fieldIdFor(structure, path);
  }

  /** The u32 the loader would return for this error (§12); undefined for host-only codes. */
  get loaderCode(): number | undefined {
    if (this.number > 0xffff) return undefined;
    return (((this.fieldId ?? 0) << 16) | this.number) >>> 0;
  }

  /** Same error, reported as a failure to encode (encoders validate by decoding their output). */
  asOp(op: string): VeilFormatError {
    return new VeilFormatError(this.code, this.structure, this.path, this.detail, op);
  }
}

export const isVeilError = (e: unknown, code?: VeilErrorName): e is VeilFormatError =>
  e instanceof VeilFormatError && (code === undefined || e.code === code);
