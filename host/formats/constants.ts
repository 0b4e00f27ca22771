// SPEC.md constants (limits §13, dtypes §5.2, kinds §1.2, suite §8). UNTRUSTED host code: public data only.

/** §13. */
export const LIMITS = {
  TRUST_CONFIG_MAX: 8 + 2 + 32 * 32,
  MANIFEST_MAX: 1 << 20,
  GRAPH_MAX: 64 << 20,
  WEIGHTS_MAX: 2 ** 46,
  TENSOR_MAX: 16 << 20,
  REQUEST_MAX: 16 << 20,
  RESPONSE_MAX: 16 << 20,
  PROMPT_MAX: 64 << 10,
  VOCAB_MAX: 65536,
  PROGRAMS_MAX: 8,
  KEYS_MAX: 16,
  STREAMS_MAX: 16,
  REPLAY_WINDOW: 16384,
  SESSIONS_MAX: 64,
  SESSION_LIFETIME_S: 3600,
  SESSION_WINDOW: 128,
} as const;

/** §1.2 structure kinds. */
export const KIND = {
  TRUST_CONFIG: "TC",
  REPORT: "RB",
  MANIFEST: "MF",
  SIGNATURES: "SG",
  WEIGHTS: "WS",
  WRAPPED_KEY: "KW",
  REQUEST: "RQ",
  RESPONSE: "RP",
  STREAM_CHUNK: "RC",
  SESSION_OPEN: "SO",
  SESSION_ACCEPT: "SA",
  SESSION_REQUEST: "SQ",
} as const;
export type Kind = (typeof KIND)[keyof typeof KIND];
export const FORMAT_VERSION = 1;

/** §5.2: ONNX TensorProto.DataType codes and element sizes. */
export const DTYPES: Readonly<Record<number, { name: string; size: number }>> = {
  1: { name: "float32", size: 4 },
  2: { name: "uint8", size: 1 },
  3: { name: "int8", size: 1 },
  5: { name: "int16", size: 2 },
  6: { name: "int32", size: 4 },
  7: { name: "int64", size: 8 },
  9: { name: "bool", size: 1 },
  10: { name: "float16", size: 2 },
  11: { name: "float64", size: 8 },
};
export const DTYPE = { FLOAT32: 1, UINT8: 2, INT8: 3, INT16: 5, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, FLOAT64: 11 } as const;
export const dtypeSize = (code: number): number | undefined => DTYPES[code]?.size;

export const MAX_RANK = 8;
export const MAX_DIM = 1 << 24;
export const MAX_TENSORS = 16;

/** §8: the only HPKE suite. */
export const SUITE = { KEM: 0x0020, KDF: 0x0001, AEAD: 0x0003 } as const;

/** §5.3 ranges. */
export const GENERATE_LIMITS = {
  MAX_NEW_TOKENS: 4096,
  CONTEXT_MAX: 65536,
  TOKENS_PER_CHUNK_MAX: 256,
  TOKEN_BYTES_MAX: 64,
} as const;

/** §7.5. */
export const TEMPERATURE_MILLI_MAX = 10000;

/** §5.4. */
export const CHUNK_SIZE = { MIN: 1 << 16, MAX: 1 << 24, DEFAULT: 1 << 20 } as const;
export const MAX_WEIGHT_FILES = 64;

/** §5.5: extension types this implementation understands. */
export const EXT_EGRESS_LIMIT = 0x8001;
export const CRITICAL_BIT = 0x8000;
export const POLICY_VERSION = 1;

/** §8.4: StreamChunk overhead (magic 8, tokens 4, text length 4, stop 1) and the AEAD tag. */
export const STREAM_CHUNK_OVERHEAD = 8 + 4 + 4 + 1;
export const AEAD_TAG_LEN = 16;
/** sealed_chunk<33..2^24>: the smallest sealed StreamChunk (empty text) up to 2^24. */
export const STREAM_RECORD_MIN = STREAM_CHUNK_OVERHEAD + AEAD_TAG_LEN;
export const STREAM_RECORD_MAX = 1 << 24;
/** text<0..2^24-33>: so that a sealed chunk with the longest text is exactly STREAM_RECORD_MAX. */
export const STREAM_TEXT_MAX = STREAM_RECORD_MAX - STREAM_RECORD_MIN;
export const STREAM_MAX_CHUNKS = 2 ** 32;
export const RESPONSE_NONCE_LEN = 32;

export const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** §5.4: max(1, ceil(plaintext_size / chunk_size)). */
export const chunkCountFor = (plaintextSize: number, chunkSize: number): number =>
  Math.max(1, Math.ceil(plaintextSize / chunkSize));
