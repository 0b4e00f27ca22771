// Trusted: ChaCha20-Poly1305 (RFC 8439 §2.8) seals and opens every model weight chunk and
// request; it decides what the loader accepts as authentic.
import { ctEqual, wipe } from "./ct";
import { chacha20Xor, chacha20Block, chacha20Poly1305Xor } from "./chacha20";
import { POLY1305_CTX_SIZE, poly1305Init, poly1305Blocks, poly1305Final } from "./poly1305";

const PCTX = memory.data(<i32>POLY1305_CTX_SIZE, 16);
const BLOCK = memory.data(64, 16); // key stream block 0, padded MAC blocks, computed tag

// RFC 8439 §2.8: the MAC input is AAD and ciphertext, each zero-padded to 16 bytes.
function macPadded(p: usize, len: usize): void {
  // Variable time: inputs are public.
  poly1305Blocks(PCTX, p, len >> 4);
  const rest = len & 15;
  if (rest != 0) {
    memory.copy(BLOCK, p + (len & ~15), rest);
    memory.fill(BLOCK + rest, 0, 16 - rest);
    poly1305Blocks(PCTX, BLOCK, 1);
  }
}

// RFC 8439 §2.6: the one-time Poly1305 key is the first 32 bytes of key stream block 0.
function begin(key: usize, nonce: usize, aad: usize, aadLen: usize): void {
  chacha20Block(key, nonce, 0, BLOCK);
  poly1305Init(PCTX, BLOCK);
  wipe(BLOCK, 64);
  macPadded(aad, aadLen);
}

// RFC 8439 §2.8: the MAC input ends with both lengths as 64-bit little-endian integers.
// Leaves the tag in BLOCK for the caller to use and wipe.
function finish(aadLen: usize, len: usize): void {
  store<u64>(BLOCK, <u64>aadLen);
  store<u64>(BLOCK, <u64>len, 8);
  poly1305Blocks(PCTX, BLOCK, 1);
  poly1305Final(PCTX, BLOCK);
}

// Ciphertext to dst (dst == src, or not overlapping it), then the tag to `tag` (outside dst).
// Lengths below 2^32 keep the block counter far from its 2^32 limit (RFC 8439 §2.8 note 1),
// so nothing can fail.
export function aeadSeal(key: usize, nonce: usize, aad: usize, aadLen: usize, src: usize, len: usize,
  dst: usize, tag: usize): void {
  begin(key, nonce, aad, aadLen);
  const full = len & ~255;
  chacha20Poly1305Xor(key, nonce, src, dst, full, PCTX, false);
  chacha20Xor(key, nonce, 1 + <u32>(full >> 6), src + full, dst + full, len - full);
  macPadded(dst + full, len - full);
  finish(aadLen, len);
  memory.copy(tag, BLOCK, 16);
  wipe(BLOCK, 16);
}

@inline function overlaps(a: usize, alen: usize, b: usize, blen: usize): bool {
  return <u64>a < <u64>b + blen && <u64>b < <u64>a + alen;
}

// Returns 0 and the plaintext in dst if the tag verifies; 1 if it does not; 2 if dst
// overlaps key, nonce, tag or (other than exactly) src. Full 256-byte groups are decrypted
// while they are MACed; on failure they are re-encrypted in place or wiped, so a failure
// releases no plaintext and loses no ciphertext.
export function aeadOpen(key: usize, nonce: usize, aad: usize, aadLen: usize, src: usize, len: usize,
  tag: usize, dst: usize): i32 {
  // Variable time: inputs are public.
  if ((dst != src && overlaps(dst, len, src, len)) || overlaps(dst, len, key, 32) ||
    overlaps(dst, len, nonce, 12) || overlaps(dst, len, tag, 16)) return 2;
  begin(key, nonce, aad, aadLen);
  const full = len & ~255;
  chacha20Poly1305Xor(key, nonce, src, dst, full, PCTX, true);
  macPadded(src + full, len - full);
  finish(aadLen, len);
  // RFC 8439 §4: constant-time tag comparison.
  const ok = ctEqual(BLOCK, tag, 16);
  wipe(BLOCK, 16);
  if (ok) {
    chacha20Xor(key, nonce, 1 + <u32>(full >> 6), src + full, dst + full, len - full);
    return 0;
  }
  if (dst == src) chacha20Xor(key, nonce, 1, dst, dst, full);
  else wipe(dst, full);
  return 1;
}
