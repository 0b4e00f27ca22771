// Frame types of bench/lib/plain-run-child.ts (outside the worker's own request types).
export const PLAIN_CHILD = { LOAD: 0x70, RUN: 0x71 } as const;
