// Trusted: the loader's only imports — the capabilities in wit/loader.wit and nothing else
// (SPEC §11.1): the accelerator, entropy and a monotonic clock. Lowered per the canonical
// ABI: lists are (ptr, len); results that do not fit one value go through a return area.
import { wipe } from "./crypto/ct";
import { overflow } from "./layout";


// Return area for result<_, error-code> and result<list<u8>, error-code>:
// discriminant u8 at 0; ok list (ptr, len) at 4 and 8, or the error code at 4.
export const RET = memory.data(16, 8);

@external("veil:loader/accelerator@0.1.0", "create-program")
declare function accCreateProgram(program: u32, manifest: usize, manifestLen: usize, graph: usize, graphLen: usize, ret: usize): void;
@external("veil:loader/accelerator@0.1.0", "upload-weights")
declare function accUploadWeights(program: u32, offset: u64, data: usize, len: usize, ret: usize): void;
@external("veil:loader/accelerator@0.1.0", "measure-weights")
declare function accMeasureWeights(program: u32, ret: usize): void;
@external("veil:loader/accelerator@0.1.0", "finish-weights")
declare function accFinishWeights(program: u32, ret: usize): void;
@external("veil:loader/accelerator@0.1.0", "run")
declare function accRun(program: u32, inputs: usize, len: usize, ret: usize): void;
@external("veil:loader/accelerator@0.1.0", "drop-program")
declare function accDropProgram(program: u32): void;
@external("veil:loader/entropy@0.1.0", "fill")
declare function entropyFill(len: u32, ret: usize): void;
@external("veil:loader/clock@0.1.0", "now")
declare function clockNow(): u64;

// A list the host handed back must lie inside linear memory, so reading it cannot trap.
@inline function inMemory(p: usize, n: usize): bool {
  const size = <usize>memory.size() << 16;
  return p != 0 && p <= size && n <= size - p;
}

// Each wrapper returns 0 or the accelerator's error code (never 0 on failure).
@inline function status(): u32 {
  if (load<u8>(RET) == 0) return 0;
  const code = load<u32>(RET, 4);
  return code == 0 ? 1 : code;
}

export function createProgram(program: u32, manifest: usize, manifestLen: usize, graph: usize, graphLen: usize): u32 {
  store<u64>(RET, 0);
  accCreateProgram(program, manifest, manifestLen, graph, graphLen, RET);
  return status();
}

export function uploadWeights(program: u32, offset: u64, data: usize, len: usize): u32 {
  store<u64>(RET, 0);
  accUploadWeights(program, offset, data, len, RET);
  return status();
}

// On success the 32-byte measurement (SPEC §9.1) is at `measurement` (in the arena).
export let measurement: usize = 0;
export function measureWeights(program: u32): u32 {
  store<u64>(RET, 0);
  store<u32>(RET, 0, 8);
  accMeasureWeights(program, RET);
  const s = status();
  if (s != 0 || overflow) return s != 0 ? s : 1;
  measurement = <usize>load<u32>(RET, 4);
  // SPEC §9.1: exactly 32 bytes, else ACCELERATOR_FAILED.
  return load<u32>(RET, 8) == 32 && inMemory(measurement, 32) ? 0 : 1;
}

export function finishWeights(program: u32): u32 {
  store<u64>(RET, 0);
  accFinishWeights(program, RET);
  return status();
}

// On success the outputs are at `runOutput`/`runOutputLen` (in the arena, via cabi_realloc).
export let runOutput: usize = 0;
export let runOutputLen: usize = 0;
export function run(program: u32, inputs: usize, len: usize): u32 {
  store<u64>(RET, 0);
  store<u32>(RET, 0, 8);
  accRun(program, inputs, len, RET);
  const s = status();
  if (s != 0 || overflow) return s != 0 ? s : 1; // outputs that did not fit the arena
  runOutput = <usize>load<u32>(RET, 4);
  runOutputLen = <usize>load<u32>(RET, 8);
  return inMemory(runOutput, runOutputLen) ? 0 : 1;
}

export function dropProgram(program: u32): void {
  accDropProgram(program);
}

// Fills `len` bytes at `dst` from the host's CSPRNG; false if the host returned a list
// of the wrong length. The copy the host wrote into the arena is wiped.
export function entropy(dst: usize, len: u32): bool {
  store<u64>(RET, 0);
  entropyFill(len, RET);
  const p = <usize>load<u32>(RET);
  const n = load<u32>(RET, 4);
  if (n != len || overflow || !inMemory(p, n)) return false;
  memory.copy(dst, p, len);
  wipe(p, len);
  return true;
}

export function now(): u64 {
  return clockNow();
}
