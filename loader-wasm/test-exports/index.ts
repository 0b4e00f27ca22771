// Test build only: exports each primitive of the crypto core to the test suite and to
// external vector runners. Never part of the release loader.wasm. ABI: loader-wasm/README.md.
export * from "./common";
export * from "./hash";
export * from "./aead";
export * from "./curve";
