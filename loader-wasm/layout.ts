// Trusted: the loader's whole memory plan. Every large buffer is placed here once, so
// memory is bounded (SPEC §11.4, §13) and never grows per request or per chunk.
// Variable time: inputs are public. (Sizes and offsets only.)
import { wipe } from "./crypto/ct";

const KiB: usize = 1024;
const MiB: usize = 1024 * KiB;

// SPEC §13 limits the arena must hold at once: the largest call is load-program with a
// manifest, a bundle and a graph; the largest chunk is 16 MiB + tag.
export const MANIFEST_MAX: usize = 1 * MiB;
export const GRAPH_MAX: usize = 64 * MiB;
export const REQUEST_MAX: usize = 16 * MiB;
export const RESPONSE_MAX: usize = 16 * MiB;
export const TENSOR_MAX: usize = 16 * MiB;
export const PROMPT_MAX: usize = 64 * KiB;
export const VOCAB_MAX: u32 = 65536;
export const PROGRAMS_MAX: u32 = 8;
export const KEYS_MAX: u32 = 16;
export const STREAMS_MAX: u32 = 16;
export const REPLAY_WINDOW: u32 = 16384;
export const CONTEXT_MAX: u32 = 65536;
// SPEC §13, §8.5.4: the session table is static (session.ts), SESSIONS_MAX slots.
export const SESSIONS_MAX: u32 = 64;
export const SESSION_LIFETIME_S: u32 = 3600;
export const SESSION_WINDOW: u32 = 128;

export const ARENA_SIZE: usize = 96 * MiB;
// A verified manifest copy, then its token offset table (generate mode).
export const MANIFEST_SLOT: usize = MANIFEST_MAX + <usize>VOCAB_MAX * 4;
export const TOKENS_SLOT: usize = <usize>CONTEXT_MAX * 4;
export const REPLAY_SIZE: usize = <usize>REPLAY_WINDOW * 32;
export const REPLAY_INDEX_SIZE: usize = <usize>REPLAY_WINDOW * 2 * 4;

// Region bases, fixed at first use.
export let ARENA: usize = 0;
export let MANIFESTS: usize = 0; // PROGRAMS_MAX slots of MANIFEST_SLOT: verified manifest copies
export let TOKENS: usize = 0; // STREAMS_MAX slots of TOKENS_SLOT: generation contexts
export let REPLAY_RING: usize = 0; // REPLAY_WINDOW encs, a ring
export let REPLAY_INDEX: usize = 0; // open-addressing table of ring slots + 1

const TOTAL: usize = ARENA_SIZE + <usize>PROGRAMS_MAX * MANIFEST_SLOT + <usize>STREAMS_MAX * TOKENS_SLOT +
  REPLAY_SIZE + REPLAY_INDEX_SIZE;

let ready = false;

// Grows memory once to the fixed plan. Returns false if the host refused the growth.
export function ensureLayout(): bool {
  if (ready) return true;
  const base = (__heap_base + 0xffff) & ~<usize>0xffff;
  const need = base + TOTAL;
  const have = <usize>memory.size() << 16;
  if (need > have && memory.grow(<i32>((need - have + 0xffff) >> 16)) < 0) return false;
  ARENA = base;
  MANIFESTS = ARENA + ARENA_SIZE;
  TOKENS = MANIFESTS + <usize>PROGRAMS_MAX * MANIFEST_SLOT;
  REPLAY_RING = TOKENS + <usize>STREAMS_MAX * TOKENS_SLOT;
  REPLAY_INDEX = REPLAY_RING + REPLAY_SIZE;
  ready = true;
  return true;
}

// ---- the argument arena (component model canonical ABI: cabi_realloc) ----

let top: usize = 0;
let last: usize = 0;
// Set when an argument did not fit; the next export refuses with TOO_LARGE (SPEC §11.4).
export let overflow = false;

export function arenaAlloc(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (!ensureLayout()) return 0;
  if (align == 0 || (align & (align - 1)) != 0 || align > 64) align = 8;
  // Growing the most recent allocation in place.
  if (oldPtr != 0 && oldPtr == last && oldPtr + newSize <= ARENA + ARENA_SIZE) {
    top = oldPtr + newSize - ARENA;
    return oldPtr;
  }
  const p = (ARENA + top + align - 1) & ~(align - 1);
  if (newSize > ARENA_SIZE || p - ARENA > ARENA_SIZE - newSize) {
    // The end of memory: the host's copy fails there, outside the loader, and nothing in
    // the loader is overwritten. The call that follows is refused (SPEC §11.4).
    overflow = true;
    return <usize>memory.size() << 16;
  }
  if (oldPtr != 0) memory.copy(p, oldPtr, min(oldSize, newSize));
  top = p + newSize - ARENA;
  last = p;
  return p;
}

// Empties the arena after the host has read a call's results (cabi_post_*). The arena may
// have held plaintext (decrypted weights, accelerator outputs), so what was used is wiped.
export function arenaReset(): void {
  if (ARENA != 0 && top != 0) wipe(ARENA, top);
  top = 0;
  last = 0;
  overflow = false;
}

// For the loader's own buffers: `n` bytes, 16-aligned, or 0 if the arena is full (the
// caller refuses the call; nothing is written out of bounds).
export function arenaTake(n: usize): usize {
  const p = (ARENA + top + 15) & ~<usize>15;
  if (n > ARENA_SIZE || p - ARENA > ARENA_SIZE - n) return 0;
  top = p + n - ARENA;
  last = p;
  return p;
}

export function arenaMark(): usize {
  return top;
}

// Frees (and wipes) everything allocated since `mark`, for loops inside one call.
export function arenaRewind(mark: usize): void {
  if (top > mark) wipe(ARENA + mark, top - mark);
  top = mark;
  last = 0;
}
