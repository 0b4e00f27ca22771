// Trusted: zeroes staging buffers that held plaintext weights. The one wipe for shared memory,
// used on the main thread (host/trusted/measure.ts) and on the measurement thread, which
// cannot load TypeScript; hence plain JavaScript.

/**
 * Zeroes the first `lengths[i]` bytes of each of `buffers` (SharedArrayBuffers). V8 fills shared
 * memory a byte at a time (about 10× slower than memset), so the bulk goes through an 8-byte
 * view: +0.0 is eight zero bytes.
 */
export function wipeShared(buffers, lengths) {
  buffers.forEach((buffer, i) => {
    const n = lengths[i];
    if (!(n > 0)) return;
    const words = Math.floor(n / 8);
    if (words > 0) new Float64Array(buffer, 0, words).fill(0);
    new Uint8Array(buffer, words * 8, n - words * 8).fill(0);
  });
}
