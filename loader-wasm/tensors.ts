// Trusted: checks request tensors against the signed I/O schema before they reach the
// accelerator, and the accelerator's outputs before they are sealed (SPEC §7.3). ONNX
// Runtime ignores unknown inputs, so this is the only place an unsigned input is refused.
// Variable time: inputs are public. (Only names, dtypes and shapes are branched on;
// element data is read only to check bools, without a branch per byte.)
import { readSpec, specName, specNameLen, specDtype, specRank, dtypeSize } from "./manifest";

export let listEnd: usize = 0;

// Validates a TensorList (SPEC §7.2) at p..p+len against the TensorSpecs at `specs`
// (u8 count ‖ TensorSpec[count]). Sets `listEnd` to the byte after the list. Returns true
// if every spec is matched, in order, exactly once, and the list fits in len.
export function matchesSchema(p: usize, len: usize, specs: usize): bool {
  const end = p + len;
  const count = <u32>load<u8>(specs);
  if (len < 1 || <u32>load<u8>(p) != count) return false;
  let q = p + 1;
  let s = specs + 1;
  for (let i: u32 = 0; i < count; i++) {
    const dims = readSpec(s);
    // name: u8 length ‖ bytes, equal to the spec's
    if (q >= end) return false;
    const n = <usize>load<u8>(q);
    if (n != specNameLen || end - q < 3 + n || memory.compare(q + 1, specName, n) != 0) return false;
    q += 1 + n;
    if (<u32>load<u8>(q) != specDtype || <u32>load<u8>(q + 1) != specRank) return false;
    q += 2;
    if (end - q < <usize>specRank * 4) return false;
    let elems: u64 = 1;
    for (let d: u32 = 0; d < specRank; d++) {
      const v = bswap<u32>(load<u32>(q + <usize>d * 4));
      const lo = bswap<u32>(load<u32>(dims + <usize>d * 8)), hi = bswap<u32>(load<u32>(dims + <usize>d * 8 + 4));
      if (v < lo || v > hi) return false;
      elems *= v; // bounded by the spec's TENSOR_MAX check at manifest parse
    }
    q += <usize>specRank * 4;
    const bytes = elems * <u64>dtypeSize(specDtype);
    if (bytes > <u64>(end - q)) return false;
    // SPEC §7.1: a bool element is 0 or 1. The data is plaintext, so every byte is read
    // and folded without a branch; only the verdict is branched on.
    if (specDtype == 9) {
      let bits: u32 = 0;
      for (let b: usize = 0; b < <usize>bytes; b++) bits |= <u32>load<u8>(q + b);
      if ((bits & 0xfe) != 0) return false;
    }
    q += <usize>bytes;
    s = dims + <usize>specRank * 8;
  }
  listEnd = q;
  return true;
}
