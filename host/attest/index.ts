// Public entry point of host/attest (re-exports only): Evidence, attesters, verifyEvidence. See README.md for what each does and does not protect against.
export * from "./errors.ts";
export * from "./evidence.ts";
export * from "./quote.ts";
export * from "./secret-file.ts";
export * from "./attester.ts";
export * from "./tsm.ts";
export * from "./verify.ts";
