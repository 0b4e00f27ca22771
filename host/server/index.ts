// Public entry point of host/server (re-exports only): the confidential inference service, UNTRUSTED side. See README.md.
export * from "./errors.ts";
export * from "./keybroker.ts";
export * from "./metrics.ts";
export * from "./models.ts";
export * from "./pool.ts";
export * from "./server.ts";
