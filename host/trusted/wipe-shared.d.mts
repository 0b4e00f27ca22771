// Trusted: the type of wipe-shared.mjs, the wipe of staging memory that held plaintext weights.
/** Zeroes the first `lengths[i]` bytes of each of `buffers`. */
export function wipeShared(buffers: readonly SharedArrayBuffer[], lengths: readonly number[]): void;
