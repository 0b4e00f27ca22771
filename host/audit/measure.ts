// The loader's measurement as an auditor computes it: sha256 over the exact loader.wasm
// bytes, plus the module's imports and exports. Works on public bytes only.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const defaultLoaderPath = fileURLToPath(new URL("../../build/loader.wasm", import.meta.url));

export interface Measurement {
  path: string;
  bytes: number;
  sha256: string;
  imports: string[];
  exports: string[];
}

export function measureLoader(path = defaultLoaderPath): Measurement {
  let wasm: Buffer;
  try {
    wasm = readFileSync(path);
  } catch (e) {
    throw new Error(`failed to read loader module ${path}: ${(e as Error).message} (run \`npm run build\`)`);
  }
  const mod = new WebAssembly.Module(new Uint8Array(wasm));
  return {
    path,
    bytes: wasm.length,
    sha256: createHash("sha256").update(wasm).digest("hex"),
    imports: WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name} (${i.kind})`),
    exports: WebAssembly.Module.exports(mod).map((e) => `${e.name} (${e.kind})`),
  };
}
