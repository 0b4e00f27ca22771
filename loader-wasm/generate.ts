// Trusted: tokenizes prompts and samples next tokens from the accelerator's logits
// (SPEC §5.3, §7.5). Both read plaintext, so their loops do not branch on it: every step
// scans the whole vocabulary and picks with selects.
import { chacha20Block } from "./crypto/chacha20";
import { wipe } from "./crypto/ct";

// Greedy longest match at `p` (n bytes left) over the token table: returns the token id
// and sets `matchLen`, or returns -1 if no token matches. Each call reads every token
// in full, whatever the prompt bytes. (How many calls a prompt takes — its token count —
// is visible, as it is in the accelerator's running time.)
export let matchLen: usize = 0;
export function longestMatch(p: usize, n: usize, base: usize, table: usize, vocab: u32): i32 {
  let best: i32 = -1;
  let bestLen: u32 = 0;
  for (let t: u32 = 0; t < vocab; t++) {
    const tok = base + <usize>load<u32>(table + <usize>t * 4);
    const len = <u32>load<u8>(tok);
    let diff: u32 = <usize>len > n ? 1 : 0; // lengths are public
    const m = min(<usize>len, n);
    for (let i: usize = 0; i < m; i++) diff |= <u32>(load<u8>(tok + 1 + i) ^ load<u8>(p + i));
    const better = <u32>(diff == 0) & <u32>(len > bestLen);
    best = select<i32>(<i32>t, best, better != 0);
    bestLen = select<u32>(len, bestLen, better != 0);
  }
  matchLen = <usize>bestLen;
  return best;
}

// ---- the sampler's randomness: ChaCha20 keyed per request (SPEC §7.5) ----
// state: key (32) | counter u32 | pad | buffered block (64) | used u32
export const RNG_SIZE: usize = 112;
const ZERO_NONCE = memory.data(12, 16);

export function rngInit(rng: usize, key32: usize): void {
  memory.copy(rng, key32, 32);
  store<u32>(rng, 0, 32);
  store<u32>(rng, 64, 104); // buffer empty
}

function rngU32(rng: usize): u32 {
  let used = load<u32>(rng, 104);
  if (used >= 64) {
    const ctr = load<u32>(rng, 32);
    chacha20Block(rng, ZERO_NONCE, ctr, rng + 40);
    store<u32>(rng, ctr + 1, 32);
    used = 0;
  }
  const v = load<u32>(rng + 40 + <usize>used);
  store<u32>(rng, used + 4, 104);
  return v;
}

export function rngWipe(rng: usize): void {
  wipe(rng, RNG_SIZE);
}

// Picks the next token from `vocab` float32 logits at `logits` (little-endian, possibly
// unaligned). temperatureMilli 0 is greedy; topK 0 means the whole vocabulary.
// NaN logits count as -infinity.
export function sample(logits: usize, vocab: u32, temperatureMilli: u32, topK: u32, rng: usize): u32 {
  // Greedy: a branch-free argmax.
  let best: f32 = -Infinity;
  let arg: u32 = 0;
  for (let j: u32 = 0; j < vocab; j++) {
    const x = clean(load<f32>(logits + <usize>j * 4));
    const gt = x > best;
    best = select<f32>(x, best, gt);
    arg = select<u32>(j, arg, gt);
  }
  if (temperatureMilli == 0) return arg;
  // Top-k threshold: the k-th largest logit, by k passes of a branch-free max below the
  // previous one (O(k·V), independent of the values).
  let threshold: f32 = -Infinity;
  if (topK != 0 && topK < vocab) {
    let ceiling: f32 = Infinity;
    for (let r: u32 = 0; r < topK; r++) {
      let m: f32 = -Infinity;
      for (let j: u32 = 0; j < vocab; j++) {
        const x = clean(load<f32>(logits + <usize>j * 4));
        m = select<f32>(x, m, x > m && x < ceiling);
      }
      ceiling = m;
    }
    threshold = ceiling;
  }
  // Softmax weights over the kept set, then one uniform draw against the cumulative sum.
  const invT: f32 = 1000.0 / <f32>temperatureMilli;
  let total: f64 = 0;
  for (let j: u32 = 0; j < vocab; j++) {
    const x = clean(load<f32>(logits + <usize>j * 4));
    const w = Math.exp(<f64>((x - best) * invT));
    total += select<f64>(w, 0, x >= threshold);
  }
  const u = <f64>(rngU32(rng) >>> 8) * (1.0 / 16777216.0);
  const target = u * total;
  let acc: f64 = 0;
  let pick: u32 = arg;
  let found: u32 = 0;
  for (let j: u32 = 0; j < vocab; j++) {
    const x = clean(load<f32>(logits + <usize>j * 4));
    acc += select<f64>(Math.exp(<f64>((x - best) * invT)), 0, x >= threshold);
    const hit = <u32>(acc > target) & <u32>(x >= threshold) & (found ^ 1);
    pick = select<u32>(j, pick, hit != 0);
    found |= hit;
  }
  return pick;
}

@inline function clean(x: f32): f32 {
  return select<f32>(x, -Infinity, x == x);
}
