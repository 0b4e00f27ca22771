// Deterministic pseudo-random test values (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// Counter-based (value i = hash(key, i)), so any slice of a multi-GiB synthetic tensor can
// be produced on its own, in any order, with the same bytes every time.

/** 32-bit finalizer (murmur3-style): good enough spread for test weights. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** A per-stream key from a seed and a stream index (e.g. a tensor's number). */
export function streamKey(seed: number, stream: number): number {
  return mix32(mix32(seed >>> 0) ^ Math.imul(stream + 1, 0x9e3779b9));
}

/** Fill `out` with values i = start.. of stream `key`, uniform in [-scale, scale). */
export function fillUniform(out: Float32Array, key: number, start: number, scale: number): void {
  const k = scale / 2 ** 31;
  for (let j = 0; j < out.length; j++) {
    out[j] = ((mix32(key ^ Math.imul(start + j, 0x9e3779b9)) | 0) * k);
  }
}

export function uniform(n: number, seed: number, scale = 1, stream = 0): Float32Array {
  const out = new Float32Array(n);
  fillUniform(out, streamKey(seed, stream), 0, scale);
  return out;
}

/** Integers in [0, bound). */
export function randomInts(n: number, bound: number, seed: number, stream = 0): number[] {
  const key = streamKey(seed, stream);
  return Array.from({ length: n }, (_, i) => mix32(key ^ Math.imul(i, 0x9e3779b9)) % bound);
}

/** IEEE half bits of x (round to nearest even; subnormals flushed; for test data). */
export function float16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  let mant = u & 0x7fffff;
  if (exp <= 0) return sign;
  if (exp >= 31) return sign | 0x7c00;
  let h = sign | (exp << 10) | (mant >>> 13);
  mant &= 0x1fff;
  if (mant > 0x1000 || (mant === 0x1000 && (h & 1))) h++;
  return h;
}
