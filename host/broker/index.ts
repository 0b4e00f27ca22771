// Public entry point of host/broker (re-exports only). The broker holds data keys: see README.md for its trust position.
export * from "./errors.ts";
export * from "./b64.ts";
export * from "./store.ts";
export * from "./nonces.ts";
export * from "./audit.ts";
export * from "./broker.ts";
export * from "./server.ts";
export * from "./client.ts";
