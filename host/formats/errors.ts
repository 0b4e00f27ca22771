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
  SESSION_UNKNOWN: 55,
  ACCELERATOR_FAILED: 64,
  ENTROPY_FAILED: 65,
  RESPONSE_AUTH: 66,
} as const;

/** §12: codes only a client emits; the loader never returns them (it never opens a response). */
export const CLIENT_ONLY_CODES: ReadonlySet<SpecErrorName> = new Set<SpecErrorName>(["RESPONSE_AUTH"]);

export type SpecErrorName = keyof typeof ERROR_CODES;
export type VeilErrorName = SpecErrorName;

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
  SESSION_UNKNOWN: "no live session with this id (unknown, expired, evicted or unloaded)",
  ACCELERATOR_FAILED: "the accelerator reported an error or bad output",
  ENTROPY_FAILED: "the entropy import failed",
  RESPONSE_AUTH: "(client only, never emitted by the loader) a response or stream chunk failed to open",
};

export const errorNumber = (name: VeilErrorName): number => ERROR_CODES[name];

const NAME_BY_NUMBER = new Map<number, SpecErrorName>(
  Object.entries(ERROR_CODES).map(([k, v]) => [v, k as SpecErrorName]),
);

/**
 * §12.1 field identifiers, exactly as SPEC.md's table lists them: the structure in the high
 * byte, the field in the low byte, 0 for the structure as a whole. Each row names the host
 * decoder field paths it covers (array indices removed, so "inputs[2].dims[0].min" is
 * "inputs.dims.min"); a path also covers every path under it, so a nested field the table does
 * not list (a TensorSpec's dims, a file's location, an extension's data, a tensor of a
 * TensorRequest) carries the id of its enclosing row. A path under no row carries the
 * structure's id (low byte 0).
 */
export interface FieldRow {
  readonly id: number;
  /** SPEC.md's wording for the row. */
  readonly label: string;
  readonly paths: readonly string[];
}
export interface FieldGroup {
  readonly group: number;
  readonly title: string;
  /** Host structure names (the `structure` of a VeilFormatError) that use this group. */
  readonly structures: readonly string[];
  readonly rows: readonly FieldRow[];
}

const row = (id: number, label: string, ...paths: string[]): FieldRow => ({ id, label, paths });

export const FIELD_GROUPS: readonly FieldGroup[] = [
  {
    group: 0x01,
    title: "TrustConfig",
    structures: ["trust_config"],
    rows: [
      row(0x0101, "TrustConfig magic (and its size)", "magic", "size"),
      row(0x0102, "TrustConfig threshold", "threshold"),
      row(0x0103, "TrustConfig count", "count"),
      row(0x0104, "TrustConfig reviewer_key", "reviewer_key"),
    ],
  },
  {
    group: 0x02,
    title: "ReportBody",
    structures: ["report"],
    rows: [row(0x0205, "ReportBody nonce (the init/attest argument)", "nonce")],
  },
  {
    group: 0x03,
    title: "Manifest",
    structures: ["manifest"],
    rows: [
      row(0x0301, "Manifest magic (and its size)", "magic", "size"),
      row(0x0302, "Manifest name", "name"),
      row(0x0303, "Manifest version", "version"),
      row(0x0304, "Manifest graph_sha256", "graph_sha256"),
      row(0x0305, "Manifest graph_size (and a graph over GRAPH_MAX)", "graph_size", "graph"),
      row(0x0306, "Manifest inputs (count, any TensorSpec field, the generate input shape)", "input_count", "inputs"),
      row(0x0307, "Manifest outputs (count, any TensorSpec field, the generate output shape)", "output_count", "outputs"),
      // "generate" alone is the mode's select arm (present exactly when mode = 2).
      row(0x0308, "Manifest mode", "mode", "generate"),
      row(0x0309, "GenerateSpec vocab_size", "generate.vocab_size"),
      row(0x030a, "GenerateSpec token", "generate.token"),
      row(0x030b, "GenerateSpec end_token", "generate.end_token"),
      row(0x030c, "GenerateSpec max_new_tokens", "generate.max_new_tokens"),
      row(0x030d, "GenerateSpec context_length", "generate.context_length"),
      row(0x030e, "GenerateSpec tokens_per_chunk", "generate.tokens_per_chunk"),
      row(0x030f, "WeightsDescriptor key_id", "weights.key_id"),
      row(0x0310, "WeightsDescriptor stream_id", "weights.stream_id"),
      row(0x0311, "WeightsDescriptor plaintext_size", "weights.plaintext_size"),
      row(0x0312, "WeightsDescriptor chunk_size", "weights.chunk_size"),
      row(0x0313, "WeightsDescriptor chunk_count", "weights.chunk_count"),
      row(0x0314, "WeightsDescriptor commitment", "weights.commitment"),
      row(0x0315, "WeightsDescriptor files (count, location, size)", "weights.file_count", "weights.files"),
      row(0x0316, "Policy policy_version", "policy.policy_version"),
      row(0x0317, "Policy extensions", "policy.extensions"),
    ],
  },
  {
    group: 0x04,
    title: "SignatureBundle",
    structures: ["signature_bundle"],
    rows: [
      row(0x0401, "SignatureBundle magic", "magic"),
      row(0x0402, "SignatureBundle count", "count"),
      row(0x0403, "SignatureBundle entries", "entries"),
    ],
  },
  {
    group: 0x05,
    title: "sealed weights stream",
    structures: ["weights_header", "weights_stream"],
    rows: [
      row(0x0501, "WeightsHeader magic", "magic"),
      row(0x0502, "WeightsHeader key_id", "key_id"),
      row(0x0503, "WeightsHeader stream_id", "stream_id"),
      row(0x0504, "WeightsHeader chunk_size", "chunk_size"),
      row(0x0505, "WeightsHeader chunk_count", "chunk_count"),
      row(0x0506, "WeightsHeader plaintext_size", "plaintext_size"),
      row(0x0507, "a weights chunk (and the commitment)", "chunk"),
    ],
  },
  {
    group: 0x06,
    title: "WrappedKey",
    structures: ["wrapped_key"],
    rows: [
      row(0x0601, "WrappedKey magic", "magic"),
      row(0x0602, "WrappedKey key_id", "key_id"),
      row(0x0603, "WrappedKey report_nonce", "report_nonce"),
      row(0x0604, "WrappedKey enc", "enc"),
      row(0x0605, "WrappedKey ct", "ct"),
    ],
  },
  {
    group: 0x07,
    title: "EncapsulatedRequest",
    structures: ["encapsulated_request"],
    rows: [
      row(0x0701, "EncapsulatedRequest key_id", "key_id"),
      row(0x0702, "EncapsulatedRequest kem_id", "kem_id"),
      row(0x0703, "EncapsulatedRequest kdf_id", "kdf_id"),
      row(0x0704, "EncapsulatedRequest aead_id", "aead_id"),
      row(0x0705, "EncapsulatedRequest enc", "enc"),
      row(0x0706, "EncapsulatedRequest ct (and its size)", "ct", "size"),
    ],
  },
  {
    group: 0x08,
    title: "inner request",
    structures: ["inner_request"],
    rows: [
      row(0x0801, "inner request magic", "magic"),
      row(0x0802, "inner request kind", "kind"),
      row(0x0803, "TensorRequest inputs / GenerateRequest prompt", "inputs", "prompt"),
      row(0x0804, "GenerateRequest max_new_tokens", "max_new_tokens"),
      row(0x0805, "GenerateRequest temperature_milli", "temperature_milli"),
      row(0x0806, "GenerateRequest top_k", "top_k"),
      row(0x0807, "GenerateRequest has_seed", "has_seed"),
      row(0x0808, "GenerateRequest seed", "seed"),
    ],
  },
  {
    group: 0x09,
    title: "accelerator output",
    structures: ["accelerator_output"],
    // One row for the whole structure: every field of the output TensorList maps to 0x0900.
    rows: [row(0x0900, "accelerator output")],
  },
  {
    group: 0x0a,
    title: "SessionRequest",
    structures: ["session_request"],
    rows: [
      row(0x0a01, "SessionRequest key_id", "key_id"),
      row(0x0a02, "SessionRequest magic", "magic"),
      row(0x0a03, "SessionRequest session_id (and the session it names)", "session_id"),
      row(0x0a04, "SessionRequest seq", "seq"),
      row(0x0a05, "SessionRequest ct (and its size)", "ct", "size"),
    ],
  },
  {
    group: 0x0b,
    title: "SessionOpen",
    structures: ["session_open"],
    rows: [row(0x0b01, "SessionOpen magic", "magic")],
  },
];

const GROUP_BY_STRUCTURE = new Map<string, FieldGroup>();
const ID_BY_PATH = new Map<string, number>();
const ROW_BY_ID = new Map<number, FieldRow>();
for (const g of FIELD_GROUPS) {
  for (const s of g.structures) GROUP_BY_STRUCTURE.set(s, g);
  for (const r of g.rows) {
    if (r.id >> 8 !== g.group || ROW_BY_ID.has(r.id)) throw new Error(`FIELD_GROUPS: bad or duplicate id 0x${r.id.toString(16)}`);
    ROW_BY_ID.set(r.id, r);
    for (const p of r.paths) for (const s of g.structures) ID_BY_PATH.set(`${s}:${p}`, r.id);
  }
}

const normalise = (path: string): string => path.replace(/\[\d+\]/g, "");

/**
 * §12.1 identifier (high 16 bits of a loader error) for a host field path: the row that lists
 * the field or encloses it, else the structure's id (low byte 0); undefined for structures §12.1
 * does not number (responses, stream chunks, the sealer's inputs).
 */
export function fieldIdFor(structure: string, path: string): number | undefined {
  const g = GROUP_BY_STRUCTURE.get(structure);
  if (!g) return undefined;
  for (let p = normalise(path); p !== ""; p = p.includes(".") ? p.slice(0, p.lastIndexOf(".")) : "") {
    const id = ID_BY_PATH.get(`${structure}:${p}`);
    if (id !== undefined) return id;
  }
  return g.group << 8;
}

/** SPEC.md's wording for a §12.1 id: a table row, or a structure as a whole; undefined if unknown. */
export function fieldLabel(fieldId: number): string | undefined {
  const r = ROW_BY_ID.get(fieldId);
  if (r) return r.label;
  if ((fieldId & 0xff) !== 0) return undefined;
  return FIELD_GROUPS.find((x) => x.group === fieldId >> 8)?.title;
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
  const field = fieldId === 0 ? undefined : fieldLabel(fieldId);
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

  /**
   * The §12 u32 for this error: code in the low 16 bits, §12.1 field id (or 0) in the high 16.
   * For a client-only code (RESPONSE_AUTH) it is the same encoding, though no loader returns it.
   */
  get loaderCode(): number {
    return (((this.fieldId ?? 0) << 16) | this.number) >>> 0;
  }

  /** Same error, reported as a failure to encode (encoders validate by decoding their output). */
  asOp(op: string): VeilFormatError {
    return new VeilFormatError(this.code, this.structure, this.path, this.detail, op);
  }
}

export const isVeilError = (e: unknown, code?: VeilErrorName): e is VeilFormatError =>
  e instanceof VeilFormatError && (code === undefined || e.code === code);
