// Trusted: the release loader's entry point. It is the only module the trusted worker
// instantiates; its exports are the ABI in loader-wasm/wit/loader.wit (later issues).
// Until the entry points land it exports only its memory and the spec version it implements.
import "./runtime/abort";

const SPEC_VERSION: u32 = 1;

export function spec_version(): u32 {
  return SPEC_VERSION;
}
