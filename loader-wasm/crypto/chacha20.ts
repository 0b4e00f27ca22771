// Trusted: ChaCha20 (RFC 8439 §2.1–2.4) makes every key stream that hides model weights and
// requests, and the one-time Poly1305 keys of the AEAD; a flaw here leaks plaintext.
import { wipe } from "./ct";
import { poly1305Blocks, poly1305BlocksWith, poly1305Mul } from "./poly1305";

// Key-derived state, one v128 per state word with the word splatted to all four lanes.
const STATE = memory.data(256, 16);
// Four blocks of key stream for partial groups and chacha20Block.
const TAIL = memory.data(256, 16);

// Rotation by 16 swaps 16-bit halves (two 16-bit shuffles in V8, cheaper than shifts); the
// others use shifts: V8 lowers a byte shuffle for rotation by 8 to more instructions.
@inline function rotl16(x: v128): v128 {
  return i8x16.shuffle(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
}
@inline function rotl(x: v128, n: i32): v128 {
  return v128.or(i32x4.shl(x, n), i32x4.shr_u(x, 32 - n));
}

// RFC 8439 §2.3: words 0-3 constants, 4-11 key, 12 block counter, 13-15 nonce (little-endian).
function setup(key: usize, nonce: usize): void {
  v128.store(STATE, i32x4.splat(0x61707865), 0);
  v128.store(STATE, i32x4.splat(0x3320646e), 16);
  v128.store(STATE, i32x4.splat(0x79622d32), 32);
  v128.store(STATE, i32x4.splat(0x6b206574), 48);
  for (let i: usize = 0; i < 8; i++) v128.store(STATE + 64 + (i << 4), v128.load32_splat(key + (i << 2)));
  for (let i: usize = 0; i < 3; i++) v128.store(STATE + 208 + (i << 4), v128.load32_splat(nonce + (i << 2)));
}

// Transposes words w..w+3 of the four blocks and XORs them into 16 bytes of each block.
@inline function out4(src: usize, dst: usize, a: v128, b: v128, c: v128, d: v128): void {
  const t0 = i32x4.shuffle(a, b, 0, 4, 1, 5);
  const t1 = i32x4.shuffle(c, d, 0, 4, 1, 5);
  const t2 = i32x4.shuffle(a, b, 2, 6, 3, 7);
  const t3 = i32x4.shuffle(c, d, 2, 6, 3, 7);
  v128.store(dst, v128.xor(v128.load(src), i64x2.shuffle(t0, t1, 0, 2)));
  v128.store(dst, v128.xor(v128.load(src, 64), i64x2.shuffle(t0, t1, 1, 3)), 64);
  v128.store(dst, v128.xor(v128.load(src, 128), i64x2.shuffle(t2, t3, 0, 2)), 128);
  v128.store(dst, v128.xor(v128.load(src, 192), i64x2.shuffle(t2, t3, 1, 3)), 192);
}

// Four blocks (counters ctr..ctr+3, one per lane) XORed over 256 bytes. Lanes past 2^32-1
// wrap, but callers only ever release blocks below the limit (see chacha20Xor).
// If mac, Poly1305 (context pctx) absorbs the 256 bytes at macp during the rounds: scalar
// multiplies then run in the integer units while the vector units do ChaCha20.
function blocks4(ctr: u32, src: usize, dst: usize, mac: bool = false, pctx: usize = 0, macp: usize = 0): void {
  let x0 = v128.load(STATE, 0), x1 = v128.load(STATE, 16), x2 = v128.load(STATE, 32), x3 = v128.load(STATE, 48);
  let x4 = v128.load(STATE, 64), x5 = v128.load(STATE, 80), x6 = v128.load(STATE, 96), x7 = v128.load(STATE, 112);
  let x8 = v128.load(STATE, 128), x9 = v128.load(STATE, 144), x10 = v128.load(STATE, 160), x11 = v128.load(STATE, 176);
  const c12 = i32x4.add(i32x4.splat(ctr), i32x4(0, 1, 2, 3));
  let x12 = c12, x13 = v128.load(STATE, 208), x14 = v128.load(STATE, 224), x15 = v128.load(STATE, 240);
  // Poly1305's r and s, read once per call (and unused without mac).
  const r0 = poly1305Mul(pctx, 0), r1 = poly1305Mul(pctx, 1), r2 = poly1305Mul(pctx, 2), r3 = poly1305Mul(pctx, 3);
  const s1 = poly1305Mul(pctx, 4), s2 = poly1305Mul(pctx, 5), s3 = poly1305Mul(pctx, 6);
  // RFC 8439 §2.1, §2.3: 10 double rounds; column rounds, then diagonal rounds.
  for (let i = 0; i < 10; i++) {
    // Variable time: inputs are public.
    if (mac) {
      const n: usize = i < 6 ? 2 : 1;
      poly1305BlocksWith(pctx, macp, n, 1, r0, r1, r2, r3, s1, s2, s3);
      macp += n << 4;
    }
    x0 = i32x4.add(x0, x4); x12 = rotl16(v128.xor(x12, x0)); x1 = i32x4.add(x1, x5); x13 = rotl16(v128.xor(x13, x1));
    x2 = i32x4.add(x2, x6); x14 = rotl16(v128.xor(x14, x2)); x3 = i32x4.add(x3, x7); x15 = rotl16(v128.xor(x15, x3));
    x8 = i32x4.add(x8, x12); x4 = rotl(v128.xor(x4, x8), 12); x9 = i32x4.add(x9, x13); x5 = rotl(v128.xor(x5, x9), 12);
    x10 = i32x4.add(x10, x14); x6 = rotl(v128.xor(x6, x10), 12); x11 = i32x4.add(x11, x15); x7 = rotl(v128.xor(x7, x11), 12);
    x0 = i32x4.add(x0, x4); x12 = rotl(v128.xor(x12, x0), 8); x1 = i32x4.add(x1, x5); x13 = rotl(v128.xor(x13, x1), 8);
    x2 = i32x4.add(x2, x6); x14 = rotl(v128.xor(x14, x2), 8); x3 = i32x4.add(x3, x7); x15 = rotl(v128.xor(x15, x3), 8);
    x8 = i32x4.add(x8, x12); x4 = rotl(v128.xor(x4, x8), 7); x9 = i32x4.add(x9, x13); x5 = rotl(v128.xor(x5, x9), 7);
    x10 = i32x4.add(x10, x14); x6 = rotl(v128.xor(x6, x10), 7); x11 = i32x4.add(x11, x15); x7 = rotl(v128.xor(x7, x11), 7);

    x0 = i32x4.add(x0, x5); x15 = rotl16(v128.xor(x15, x0)); x1 = i32x4.add(x1, x6); x12 = rotl16(v128.xor(x12, x1));
    x2 = i32x4.add(x2, x7); x13 = rotl16(v128.xor(x13, x2)); x3 = i32x4.add(x3, x4); x14 = rotl16(v128.xor(x14, x3));
    x10 = i32x4.add(x10, x15); x5 = rotl(v128.xor(x5, x10), 12); x11 = i32x4.add(x11, x12); x6 = rotl(v128.xor(x6, x11), 12);
    x8 = i32x4.add(x8, x13); x7 = rotl(v128.xor(x7, x8), 12); x9 = i32x4.add(x9, x14); x4 = rotl(v128.xor(x4, x9), 12);
    x0 = i32x4.add(x0, x5); x15 = rotl(v128.xor(x15, x0), 8); x1 = i32x4.add(x1, x6); x12 = rotl(v128.xor(x12, x1), 8);
    x2 = i32x4.add(x2, x7); x13 = rotl(v128.xor(x13, x2), 8); x3 = i32x4.add(x3, x4); x14 = rotl(v128.xor(x14, x3), 8);
    x10 = i32x4.add(x10, x15); x5 = rotl(v128.xor(x5, x10), 7); x11 = i32x4.add(x11, x12); x6 = rotl(v128.xor(x6, x11), 7);
    x8 = i32x4.add(x8, x13); x7 = rotl(v128.xor(x7, x8), 7); x9 = i32x4.add(x9, x14); x4 = rotl(v128.xor(x4, x9), 7);
  }
  // RFC 8439 §2.3: add the input state, serialize little-endian; §2.4: XOR with the input.
  out4(src, dst, i32x4.add(x0, v128.load(STATE, 0)), i32x4.add(x1, v128.load(STATE, 16)),
    i32x4.add(x2, v128.load(STATE, 32)), i32x4.add(x3, v128.load(STATE, 48)));
  out4(src + 16, dst + 16, i32x4.add(x4, v128.load(STATE, 64)), i32x4.add(x5, v128.load(STATE, 80)),
    i32x4.add(x6, v128.load(STATE, 96)), i32x4.add(x7, v128.load(STATE, 112)));
  out4(src + 32, dst + 32, i32x4.add(x8, v128.load(STATE, 128)), i32x4.add(x9, v128.load(STATE, 144)),
    i32x4.add(x10, v128.load(STATE, 160)), i32x4.add(x11, v128.load(STATE, 176)));
  out4(src + 48, dst + 48, i32x4.add(x12, c12), i32x4.add(x13, v128.load(STATE, 208)),
    i32x4.add(x14, v128.load(STATE, 224)), i32x4.add(x15, v128.load(STATE, 240)));
}

// XORs the key stream starting at block `counter` over len bytes (src == dst allowed, any
// alignment). Returns 1 and writes nothing if the 32-bit block counter would wrap
// (RFC 8439 §2.3, §2.8 note 1: at most 2^32 blocks per key and nonce); 0 otherwise.
export function chacha20Xor(key: usize, nonce: usize, counter: u32, src: usize, dst: usize, len: usize): i32 {
  // Variable time: inputs are public.
  if (<u64>counter + ((<u64>len + 63) >> 6) > 0x100000000) return 1;
  setup(key, nonce);
  const full = len & ~255;
  let i: usize = 0;
  for (; i < full; i += 256) blocks4(counter + <u32>(i >> 6), src + i, dst + i);
  const rest = len - full;
  if (rest != 0) {
    memory.copy(TAIL, src + i, rest);
    blocks4(counter + <u32>(i >> 6), TAIL, TAIL);
    memory.copy(dst + i, TAIL, rest);
    wipe(TAIL, 256);
  }
  wipe(STATE, 256);
  return 0;
}

// RFC 8439 §2.8 in one pass: ChaCha20 from block 1 over len bytes (a multiple of 256), while
// Poly1305 (context pctx) absorbs the ciphertext: src if opening; if sealing, dst one
// 256-byte group behind, once it is written. The caller MACs the rest and wipes pctx.
export function chacha20Poly1305Xor(key: usize, nonce: usize, src: usize, dst: usize, len: usize,
  pctx: usize, open: bool): void {
  // Variable time: inputs are public.
  setup(key, nonce);
  for (let i: usize = 0; i < len; i += 256) {
    if (open) blocks4(1 + <u32>(i >> 6), src + i, dst + i, true, pctx, src + i);
    else blocks4(1 + <u32>(i >> 6), src + i, dst + i, i != 0, pctx, dst + i - 256);
  }
  if (!open && len != 0) poly1305Blocks(pctx, dst + len - 256, 16);
  wipe(STATE, 256);
}

// One 64-byte key stream block (RFC 8439 §2.3), e.g. the Poly1305 key of §2.6.
export function chacha20Block(key: usize, nonce: usize, counter: u32, out64: usize): void {
  setup(key, nonce);
  blocks4(counter, TAIL, TAIL);
  memory.copy(out64, TAIL, 64);
  wipe(TAIL, 256);
  wipe(STATE, 256);
}
