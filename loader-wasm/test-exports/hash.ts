// Test build only: exports for the hash primitives (owned by the hash work). Pointers are
// into linear memory; lengths in bytes. ABI: loader-wasm/README.md.
import * as s256 from "../crypto/sha256";
import * as s512 from "../crypto/sha512";
import * as hmac from "../crypto/hmac";
import * as hkdf from "../crypto/hkdf";

export function sha256(p: usize, len: usize, out: usize): void { s256.sha256(p, len, out); }
export function sha256_ctx_size(): usize { return s256.SHA256_CTX_SIZE; }
export function sha256_init(ctx: usize): void { s256.sha256Init(ctx); }
export function sha256_update(ctx: usize, p: usize, len: usize): void { s256.sha256Update(ctx, p, len); }
export function sha256_final(ctx: usize, out: usize): void { s256.sha256Final(ctx, out); }

export function sha512(p: usize, len: usize, out: usize): void { s512.sha512(p, len, out); }
export function sha512_ctx_size(): usize { return s512.SHA512_CTX_SIZE; }
export function sha512_init(ctx: usize): void { s512.sha512Init(ctx); }
export function sha512_update(ctx: usize, p: usize, len: usize): void { s512.sha512Update(ctx, p, len); }
export function sha512_final(ctx: usize, out: usize): void { s512.sha512Final(ctx, out); }

export function hmac_sha256(key: usize, keyLen: usize, msg: usize, msgLen: usize, out: usize): void {
  hmac.hmacSha256(key, keyLen, msg, msgLen, out);
}
export function hmac_sha256_ctx_size(): usize { return hmac.HMAC_SHA256_CTX_SIZE; }
export function hmac_sha256_init(ctx: usize, key: usize, keyLen: usize): void { hmac.hmacSha256Init(ctx, key, keyLen); }
export function hmac_sha256_update(ctx: usize, p: usize, len: usize): void { hmac.hmacSha256Update(ctx, p, len); }
export function hmac_sha256_final(ctx: usize, out: usize): void { hmac.hmacSha256Final(ctx, out); }

export function hmac_sha512(key: usize, keyLen: usize, msg: usize, msgLen: usize, out: usize): void {
  hmac.hmacSha512(key, keyLen, msg, msgLen, out);
}
export function hmac_sha512_ctx_size(): usize { return hmac.HMAC_SHA512_CTX_SIZE; }
export function hmac_sha512_init(ctx: usize, key: usize, keyLen: usize): void { hmac.hmacSha512Init(ctx, key, keyLen); }
export function hmac_sha512_update(ctx: usize, p: usize, len: usize): void { hmac.hmacSha512Update(ctx, p, len); }
export function hmac_sha512_final(ctx: usize, out: usize): void { hmac.hmacSha512Final(ctx, out); }

export function hkdf_sha256(
  salt: usize, saltLen: usize, ikm: usize, ikmLen: usize, info: usize, infoLen: usize, out: usize, outLen: usize,
): i32 {
  return hkdf.hkdfSha256(salt, saltLen, ikm, ikmLen, info, infoLen, out, outLen);
}
export function hkdf_sha256_extract(salt: usize, saltLen: usize, ikm: usize, ikmLen: usize, prk: usize): void {
  hkdf.hkdfSha256Extract(salt, saltLen, ikm, ikmLen, prk);
}
export function hkdf_sha256_expand(prk: usize, prkLen: usize, info: usize, infoLen: usize, out: usize, outLen: usize): i32 {
  return hkdf.hkdfSha256Expand(prk, prkLen, info, infoLen, out, outLen);
}
