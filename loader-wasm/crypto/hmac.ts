// Trusted: HMAC (RFC 2104) is the PRF inside HKDF, so every derived session key depends
// on it; a flaw here would leak or weaken keys.
// Constant time: branches depend only on key and message lengths (public).
import { wipe } from "./ct";
import { SHA256_CTX_SIZE, sha256Final, sha256Init, sha256Update } from "./sha256";
import { SHA512_CTX_SIZE, sha512Final, sha512Init, sha512Update } from "./sha512";

// Context layout: inner hash context | outer hash context, both already keyed.
export const HMAC_SHA256_CTX_SIZE: usize = 2 * SHA256_CTX_SIZE;
export const HMAC_SHA512_CTX_SIZE: usize = 2 * SHA512_CTX_SIZE;

const PAD = memory.data(128, 16); // K0, then K0 ^ ipad, then K0 ^ opad
const INNER = memory.data(64, 16); // inner digest
const ONE_SHOT = memory.data(<i32>HMAC_SHA512_CTX_SIZE, 16);

// The word type picks the hash: u32 is SHA-256 (block B = 64, digest L = 32), u64 is SHA-512
// (B = 128, L = 64). Resolved at compile time.
@inline function hInit<W>(c: usize): void { if (sizeof<W>() == 4) sha256Init(c); else sha512Init(c); }
@inline function hUpdate<W>(c: usize, p: usize, n: usize): void {
  if (sizeof<W>() == 4) sha256Update(c, p, n); else sha512Update(c, p, n);
}
@inline function hFinal<W>(c: usize, out: usize): void { if (sizeof<W>() == 4) sha256Final(c, out); else sha512Final(c, out); }
@inline function outer<W>(ctx: usize): usize { return ctx + (sizeof<W>() == 4 ? SHA256_CTX_SIZE : SHA512_CTX_SIZE); }

function init<W>(ctx: usize, key: usize, keyLen: usize): void {
  const B: usize = sizeof<W>() * 16;
  // RFC 2104 §2 step 1: a key longer than B is hashed first; K0 is the key zero-padded to B.
  memory.fill(PAD, 0, B);
  if (keyLen > B) { hInit<W>(ctx); hUpdate<W>(ctx, key, keyLen); hFinal<W>(ctx, PAD); }
  else memory.copy(PAD, key, keyLen);
  // RFC 2104 §2 steps 2 and 5: the inner hash starts with K0 ^ ipad, the outer with K0 ^ opad.
  for (let i: usize = 0; i < B; i += 8) store<u64>(PAD + i, load<u64>(PAD + i) ^ 0x3636363636363636);
  hInit<W>(ctx);
  hUpdate<W>(ctx, PAD, B);
  for (let i: usize = 0; i < B; i += 8) store<u64>(PAD + i, load<u64>(PAD + i) ^ 0x6a6a6a6a6a6a6a6a);
  hInit<W>(outer<W>(ctx));
  hUpdate<W>(outer<W>(ctx), PAD, B);
  wipe(PAD, B);
}

// RFC 2104 §2 steps 4-7: H(K0 ^ opad || H(K0 ^ ipad || text)). Both contexts are wiped.
function final<W>(ctx: usize, out: usize): void {
  const L: usize = sizeof<W>() * 8;
  hFinal<W>(ctx, INNER);
  hUpdate<W>(outer<W>(ctx), INNER, L);
  hFinal<W>(outer<W>(ctx), out);
  wipe(INNER, L);
}

export function hmacSha256Init(ctx: usize, key: usize, keyLen: usize): void { init<u32>(ctx, key, keyLen); }
export function hmacSha256Update(ctx: usize, p: usize, len: usize): void { sha256Update(ctx, p, len); }
export function hmacSha256Final(ctx: usize, out: usize): void { final<u32>(ctx, out); }
export function hmacSha512Init(ctx: usize, key: usize, keyLen: usize): void { init<u64>(ctx, key, keyLen); }
export function hmacSha512Update(ctx: usize, p: usize, len: usize): void { sha512Update(ctx, p, len); }
export function hmacSha512Final(ctx: usize, out: usize): void { final<u64>(ctx, out); }

// One-shot; `out` may alias the key or the message.
export function hmacSha256(key: usize, keyLen: usize, msg: usize, msgLen: usize, out: usize): void {
  init<u32>(ONE_SHOT, key, keyLen);
  sha256Update(ONE_SHOT, msg, msgLen);
  final<u32>(ONE_SHOT, out);
}
export function hmacSha512(key: usize, keyLen: usize, msg: usize, msgLen: usize, out: usize): void {
  init<u64>(ONE_SHOT, key, keyLen);
  sha512Update(ONE_SHOT, msg, msgLen);
  final<u64>(ONE_SHOT, out);
}
