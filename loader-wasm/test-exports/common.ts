// Test build only. The JS harness places inputs in linear memory above the heap base
// (the crypto core allocates nothing at run time) and grows memory itself.
import "../runtime/abort";
import { ctEqual, wipe } from "../crypto/ct";

export function heap_base(): usize {
  return __heap_base;
}

export function ct_equal(a: usize, b: usize, len: usize): i32 {
  return ctEqual(a, b, len);
}

export function wipe_bytes(p: usize, len: usize): void {
  wipe(p, len);
}
