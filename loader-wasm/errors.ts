// Trusted: the loader's error codes. Every failure the loader returns is one of these
// (SPEC §12), combined with a field identifier (SPEC §12.1) in the high 16 bits.

export const OK: u32 = 0;
export const TRUNCATED: u32 = 1;
export const TRAILING_BYTES: u32 = 2;
export const BAD_LENGTH: u32 = 3;
export const BAD_VALUE: u32 = 4;
export const NOT_CANONICAL: u32 = 5;
export const TOO_LARGE: u32 = 6;
export const WRONG_KIND: u32 = 7;
export const UNSUPPORTED_VERSION: u32 = 8;
export const UNKNOWN_CRITICAL: u32 = 9;
export const BAD_KEY: u32 = 10;
export const STATE: u32 = 16;
export const NO_PROGRAM: u32 = 17;
export const CAPACITY: u32 = 18;
export const SIGNATURE_THRESHOLD: u32 = 19;
export const GRAPH_MISMATCH: u32 = 20;
export const ROLLBACK: u32 = 21;
export const KEY_UNKNOWN: u32 = 32;
export const KEY_UNWRAP: u32 = 33;
export const WEIGHTS_MISMATCH: u32 = 34;
export const WEIGHTS_AUTH: u32 = 35;
export const WEIGHTS_ORDER: u32 = 36;
export const WEIGHTS_COMMITMENT: u32 = 37;
export const WEIGHTS_INCOMPLETE: u32 = 38;
export const KEY_ID: u32 = 48;
export const UNSUPPORTED_SUITE: u32 = 49;
export const REQUEST_AUTH: u32 = 50;
export const REPLAY: u32 = 51;
export const SCHEMA_VIOLATION: u32 = 52;
export const EGRESS_LIMIT: u32 = 53;
export const STREAM_DONE: u32 = 54;
export const SESSION_UNKNOWN: u32 = 55;
export const ACCELERATOR_FAILED: u32 = 64;
export const ENTROPY_FAILED: u32 = 65;

// SPEC §12.1 structure identifiers (high byte of the field id).
export const F_TRUST: u32 = 0x0100;
export const F_REPORT: u32 = 0x0200;
export const F_MANIFEST: u32 = 0x0300;
export const F_SIGNATURES: u32 = 0x0400;
export const F_WEIGHTS: u32 = 0x0500;
export const F_KEYWRAP: u32 = 0x0600;
export const F_REQUEST: u32 = 0x0700;
export const F_INNER: u32 = 0x0800;
export const F_OUTPUT: u32 = 0x0900;
export const F_SESSION: u32 = 0x0a00; // SessionRequest (SPEC §8.5.2)
export const F_SESSION_OPEN: u32 = 0x0b00; // SessionOpen (SPEC §8.5.1)

// SPEC §12: low 16 bits code, high 16 bits field.
@inline export function err(code: u32, field: u32): u32 {
  return (field << 16) | code;
}
