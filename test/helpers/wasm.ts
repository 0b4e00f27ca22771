// Loads the test build (build/loader-test.wasm) and gives tests a tiny bump allocator
// over its linear memory. The crypto core allocates nothing itself, so everything above
// the heap base belongs to the harness.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

// VEIL_TEST_WASM selects a partial test build (scripts/build-wasm.mjs --part NAME).
const wasmPath = process.env.VEIL_TEST_WASM
  ? process.env.VEIL_TEST_WASM
  : fileURLToPath(new URL("../../build/loader-test.wasm", import.meta.url));

export type Exports = Record<string, any> & { memory: WebAssembly.Memory };

export class TestLoader {
  readonly exports: Exports;
  private base: number;
  private top: number;

  constructor(module?: WebAssembly.Module) {
    const mod = module ?? new WebAssembly.Module(readFileSync(wasmPath));
    const instance = new WebAssembly.Instance(mod, {});
    this.exports = instance.exports as Exports;
    this.base = (Number(this.exports.heap_base()) + 15) & ~15;
    this.top = this.base;
  }

  get memory(): WebAssembly.Memory {
    return this.exports.memory;
  }

  /** Free everything the harness allocated. */
  reset(): void {
    this.top = this.base;
  }

  /** Reserve `len` bytes at an offset `misalign` bytes past a 16-byte boundary. */
  alloc(len: number, misalign = 0): number {
    const ptr = ((this.top + 15) & ~15) + misalign;
    const end = ptr + len;
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / 65536));
    this.top = end;
    return ptr;
  }

  /** Copy bytes into fresh memory and return the pointer. */
  put(bytes: Uint8Array, misalign = 0): number {
    const ptr = this.alloc(Math.max(bytes.length, 1), misalign);
    this.view(ptr, bytes.length).set(bytes);
    return ptr;
  }

  view(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, len);
  }

  /** Copy bytes out of linear memory. */
  get(ptr: number, len: number): Uint8Array {
    return this.view(ptr, len).slice();
  }
}

let shared: WebAssembly.Module | undefined;
export function loadTestLoader(): TestLoader {
  shared ??= new WebAssembly.Module(readFileSync(wasmPath));
  return new TestLoader(shared);
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));
