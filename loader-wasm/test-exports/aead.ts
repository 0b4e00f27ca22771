// Test build only: exports ChaCha20, Poly1305 and the ChaCha20-Poly1305 AEAD (RFC 8439).
// Keys are 32 bytes, nonces 12, tags 16; all pointers are into linear memory, any alignment.
import { chacha20Xor, chacha20Block } from "../crypto/chacha20";
import { POLY1305_CTX_SIZE, poly1305Init, poly1305Update, poly1305Final, poly1305 as poly1305Mac } from "../crypto/poly1305";
import { aeadSeal, aeadOpen } from "../crypto/aead";

// 0 ok; 1 if the 32-bit block counter would pass 2^32-1 (nothing written). src == dst allowed.
export function chacha20(key: usize, nonce: usize, counter: u32, src: usize, dst: usize, len: usize): i32 {
  return chacha20Xor(key, nonce, counter, src, dst, len);
}

export function chacha20_block(key: usize, nonce: usize, counter: u32, out: usize): void {
  chacha20Block(key, nonce, counter, out);
}

export function poly1305(key: usize, msg: usize, len: usize, tag: usize): void {
  poly1305Mac(key, msg, len, tag);
}
export function poly1305_ctx_size(): usize {
  return POLY1305_CTX_SIZE;
}
export function poly1305_init(ctx: usize, key: usize): void {
  poly1305Init(ctx, key);
}
export function poly1305_update(ctx: usize, p: usize, len: usize): void {
  poly1305Update(ctx, p, len);
}
export function poly1305_final(ctx: usize, tag: usize): void {
  poly1305Final(ctx, tag);
}

// Writes len bytes of ciphertext to dst and the tag at dst + len. dst == src allowed.
export function aead_seal(key: usize, nonce: usize, aad: usize, aadLen: usize, src: usize, len: usize, dst: usize): void {
  aeadSeal(key, nonce, aad, aadLen, src, len, dst, dst + len);
}

// src is ciphertext‖tag. 0: plaintext (srcLen - 16 bytes) in dst; 1: authentication failed,
// dst holds no plaintext (and src == dst is left as it was); 2: srcLen < 16 or dst partly
// overlaps src, key, nonce or the tag.
export function aead_open(key: usize, nonce: usize, aad: usize, aadLen: usize, src: usize, srcLen: usize, dst: usize): i32 {
  // Variable time: inputs are public.
  if (srcLen < 16) return 2;
  return aeadOpen(key, nonce, aad, aadLen, src, srcLen - 16, src + srcLen - 16, dst);
}
