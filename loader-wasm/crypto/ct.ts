// Trusted: the loader's only constant-time compare and only wipe. Every tag, key and
// secret comparison goes through ctEqual; every buffer that held a secret goes through
// wipe, on success and failure paths alike.

// Constant-time equality of two byte ranges. Time depends only on `len` (public).
// Returns 1 if equal, 0 otherwise, without a data-dependent branch.
export function ctEqual(a: usize, b: usize, len: usize): i32 {
  let diff: u64 = 0;
  let i: usize = 0;
  for (; i + 8 <= len; i += 8) diff |= load<u64>(a + i) ^ load<u64>(b + i);
  for (; i < len; i++) diff |= <u64>(load<u8>(a + i) ^ load<u8>(b + i));
  // diff == 0  ->  (0 - 1) >> 63 == 1;  diff != 0  ->  fold to a nonzero 32-bit value first.
  const folded: u64 = (diff | (diff >> 32)) & 0xffffffff;
  return <i32>((folded - 1) >> 63);
}

// Zeroes `len` bytes at `p`. memory.fill on linear memory is an observable side effect,
// so neither binaryen nor the engine may drop it.
export function wipe(p: usize, len: usize): void {
  memory.fill(p, 0, len);
}
