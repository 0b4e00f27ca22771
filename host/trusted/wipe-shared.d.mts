// Trusted: the type of wipe-shared.mjs, the wipe of staging memory that held plaintext weights.
/** Zeroes the first `n` bytes of `b` (a view from offset 0 of a SharedArrayBuffer). */
export function wipeShared(b: Uint8Array, n: number): void;
