// Public entry point of host/attest (re-exports only): the Evidence format, the REPORT_DATA locator
// and verifyEvidence — the VERIFIER side. Evidence is produced inside the trusted worker
// (host/trusted/attest.ts: binding, software platform key, configfs-tsm), an independent
// implementation of README.md §1. See README.md for what each does and does not protect against.
export * from "./errors.ts";
export * from "./evidence.ts";
export * from "./quote.ts";
export * from "./secret-file.ts";
export * from "./verify.ts";
// Compatibility for test fixtures that sign evidence outside a worker (test/broker): the producer
// itself lives in host/trusted/attest.ts; import it from there.
export { SoftwareAttester } from "../trusted/attest.ts";
