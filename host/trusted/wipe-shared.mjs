// Trusted: zeroes staging buffers that held plaintext weights. The one wipe for shared memory,
// used on the main thread (host/trusted/measure.ts) and on the measurement thread, which
// cannot load TypeScript; hence plain JavaScript.

/**
 * Zeroes the first `n` bytes of `b`, a view from offset 0 of a SharedArrayBuffer.
 * V8 fills shared memory a byte at a time (about 10× slower than memset), so the bulk goes
 * through an 8-byte view: +0.0 is eight zero bytes.
 */
export function wipeShared(b, n) {
  const words = Math.floor(n / 8);
  if (b.byteOffset === 0 && words > 0) new Float64Array(b.buffer, 0, words).fill(0);
  else b.fill(0, 0, n);
  b.fill(0, words * 8, n);
}
