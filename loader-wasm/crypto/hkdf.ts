// Trusted: HKDF-SHA-256 (RFC 5869) is the key schedule of HPKE and of the weights payload
// keys; every session key the loader uses comes out of this file.
// Constant time: branches depend only on lengths (public).
import { wipe } from "./ct";
import { HMAC_SHA256_CTX_SIZE, hmacSha256, hmacSha256Final, hmacSha256Init, hmacSha256Update } from "./hmac";

const HASH_LEN: usize = 32;
const BAD_LENGTH: i32 = 3; // SPEC §12

const KEYED = memory.data(<i32>HMAC_SHA256_CTX_SIZE, 16); // HMAC keyed with PRK
const WORK = memory.data(<i32>HMAC_SHA256_CTX_SIZE, 16); // copy of KEYED for one T(i)
const T = memory.data(33, 16); // T(i) | counter byte
const PRK = memory.data(32, 16); // one-shot PRK

// RFC 5869 §2.2: PRK = HMAC(salt, IKM). An absent salt means HashLen zero bytes; HMAC pads its
// key with zeros to the block (RFC 2104 §2), so an empty salt gives that PRK as it is.
export function hkdfSha256Extract(salt: usize, saltLen: usize, ikm: usize, ikmLen: usize, prkOut: usize): void {
  hmacSha256(salt, saltLen, ikm, ikmLen, prkOut);
}

// RFC 5869 §2.3: T(i) = HMAC(PRK, T(i-1) | info | i), output the first outLen bytes of
// T(1) | T(2) | ... Returns 0, or BAD_LENGTH (nothing written) if outLen > 255 * HashLen or
// prkLen < HashLen. `out` may alias `prk` (PRK is absorbed first) but must not overlap `info`.
export function hkdfSha256Expand(prk: usize, prkLen: usize, info: usize, infoLen: usize, out: usize, outLen: usize): i32 {
  if (outLen > 255 * HASH_LEN) return BAD_LENGTH; // RFC 5869 §2.3: L <= 255 * HashLen
  if (prkLen < HASH_LEN) return BAD_LENGTH; // §2.3: PRK of at least HashLen octets
  hmacSha256Init(KEYED, prk, prkLen);
  for (let i: usize = 0; i < outLen; i += HASH_LEN) {
    memory.copy(WORK, KEYED, HMAC_SHA256_CTX_SIZE);
    if (i) hmacSha256Update(WORK, T, HASH_LEN); // T(0) is empty
    hmacSha256Update(WORK, info, infoLen);
    store<u8>(T, <u8>(i / HASH_LEN + 1), HASH_LEN);
    hmacSha256Update(WORK, T + HASH_LEN, 1);
    hmacSha256Final(WORK, T);
    memory.copy(out + i, T, min<usize>(HASH_LEN, outLen - i));
  }
  wipe(KEYED, HMAC_SHA256_CTX_SIZE);
  wipe(T, HASH_LEN + 1);
  return 0;
}

// Extract then Expand; `out` may alias `salt` or `ikm` but must not overlap `info`.
export function hkdfSha256(
  salt: usize, saltLen: usize, ikm: usize, ikmLen: usize, info: usize, infoLen: usize, out: usize, outLen: usize,
): i32 {
  hkdfSha256Extract(salt, saltLen, ikm, ikmLen, PRK);
  const r = hkdfSha256Expand(PRK, HASH_LEN, info, infoLen, out, outLen);
  wipe(PRK, HASH_LEN);
  return r;
}
