// Trusted: HPKE (RFC 9180) receiver for the one suite veil uses — DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base mode. It turns the loader's private
// key and a sender's `enc` into the keys that open requests and wrapped data keys.
import { hmacSha256Init, hmacSha256Update, hmacSha256Final, HMAC_SHA256_CTX_SIZE } from "./crypto/hmac";
import { x25519 } from "./crypto/x25519";
import { aeadOpen } from "./crypto/aead";
import { wipe } from "./crypto/ct";
import {
  HPKE_V1, HPKE_V1_LEN, SUITE_KEM, SUITE_KEM_LEN, SUITE_HPKE, SUITE_HPKE_LEN, EAE_PRK, EAE_PRK_LEN,
  SHARED_SECRET, SHARED_SECRET_LEN, PSK_ID_HASH, PSK_ID_HASH_LEN, INFO_HASH, INFO_HASH_LEN, SECRET,
  SECRET_LEN, KEY, KEY_LEN, BASE_NONCE, BASE_NONCE_LEN, EXP, EXP_LEN, SEC, SEC_LEN,
} from "./labels";

// Context: key (32) | base_nonce (12) | pad (4) | exporter_secret (32).
export const HPKE_CTX_SIZE: usize = 80;
const CTX_KEY: usize = 0;
const CTX_NONCE: usize = 32;
const CTX_EXP: usize = 48;

const MAC = memory.data(<i32>HMAC_SHA256_CTX_SIZE, 16);
const T = memory.data(32, 16);
const DH = memory.data(32, 16);
const PRK = memory.data(32, 16);
const SHARED = memory.data(32, 16);
const KSC = memory.data(65, 16); // mode ‖ psk_id_hash ‖ info_hash
const KEM_CONTEXT = memory.data(64, 16);
const LEN2 = memory.data(2, 4);
const ONE = memory.data<u8>([1]);

// RFC 9180 §4: LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" ‖ suite_id ‖ label ‖ ikm).
// An empty salt is HashLen zero bytes (RFC 5869 §2.2), which as an HMAC key equals the empty key.
function labeledExtract(
  salt: usize, saltLen: usize, suite: usize, suiteLen: usize,
  label: usize, labelLen: usize, ikm: usize, ikmLen: usize, out: usize,
): void {
  hmacSha256Init(MAC, salt, saltLen);
  hmacSha256Update(MAC, HPKE_V1, HPKE_V1_LEN);
  hmacSha256Update(MAC, suite, suiteLen);
  hmacSha256Update(MAC, label, labelLen);
  hmacSha256Update(MAC, ikm, ikmLen);
  hmacSha256Final(MAC, out);
}

// RFC 9180 §4: LabeledExpand(prk, label, info, L) = Expand(prk, I2OSP(L, 2) ‖ "HPKE-v1" ‖
// suite_id ‖ label ‖ info, L). Every L veil uses is at most HashLen, so Expand is the one
// block T(1) = HMAC(prk, info' ‖ 0x01) (RFC 5869 §2.3).
function labeledExpand(
  prk: usize, suite: usize, suiteLen: usize, label: usize, labelLen: usize,
  info: usize, infoLen: usize, out: usize, outLen: usize,
): void {
  store<u16>(LEN2, bswap<u16>(<u16>outLen));
  hmacSha256Init(MAC, prk, 32);
  hmacSha256Update(MAC, LEN2, 2);
  hmacSha256Update(MAC, HPKE_V1, HPKE_V1_LEN);
  hmacSha256Update(MAC, suite, suiteLen);
  hmacSha256Update(MAC, label, labelLen);
  hmacSha256Update(MAC, info, infoLen);
  hmacSha256Update(MAC, ONE, 1);
  hmacSha256Final(MAC, T);
  memory.copy(out, T, outLen);
  wipe(T, 32);
}

// RFC 9180 §4.1 Decap + §5.1 KeySchedule (mode_base, empty psk) into `ctx`.
// Returns false if the DH output is all zero (§7.1.4), with nothing derived.
export function setupBaseR(ctx: usize, enc: usize, skR: usize, pkR: usize, info: usize, infoLen: usize): bool {
  if (x25519(DH, skR, enc) != 0) return false; // RFC 7748 §6.1 / RFC 9180 §7.1.4
  memory.copy(KEM_CONTEXT, enc, 32); // kem_context = enc ‖ pkRm
  memory.copy(KEM_CONTEXT + 32, pkR, 32);
  labeledExtract(0, 0, SUITE_KEM, SUITE_KEM_LEN, EAE_PRK, EAE_PRK_LEN, DH, 32, PRK);
  labeledExpand(PRK, SUITE_KEM, SUITE_KEM_LEN, SHARED_SECRET, SHARED_SECRET_LEN, KEM_CONTEXT, 64, SHARED, 32);
  wipe(DH, 32);

  store<u8>(KSC, 0); // mode_base
  labeledExtract(0, 0, SUITE_HPKE, SUITE_HPKE_LEN, PSK_ID_HASH, PSK_ID_HASH_LEN, 0, 0, KSC + 1);
  labeledExtract(0, 0, SUITE_HPKE, SUITE_HPKE_LEN, INFO_HASH, INFO_HASH_LEN, info, infoLen, KSC + 33);
  labeledExtract(SHARED, 32, SUITE_HPKE, SUITE_HPKE_LEN, SECRET, SECRET_LEN, 0, 0, PRK);
  labeledExpand(PRK, SUITE_HPKE, SUITE_HPKE_LEN, KEY, KEY_LEN, KSC, 65, ctx + CTX_KEY, 32);
  labeledExpand(PRK, SUITE_HPKE, SUITE_HPKE_LEN, BASE_NONCE, BASE_NONCE_LEN, KSC, 65, ctx + CTX_NONCE, 12);
  labeledExpand(PRK, SUITE_HPKE, SUITE_HPKE_LEN, EXP, EXP_LEN, KSC, 65, ctx + CTX_EXP, 32);
  wipe(PRK, 32);
  wipe(SHARED, 32);
  wipe(MAC, HMAC_SHA256_CTX_SIZE);
  return true;
}

// RFC 9180 §5.2 Open with sequence number 0 (veil opens one message per context):
// nonce = base_nonce XOR I2OSP(0, Nn) = base_nonce. `ct` ends with the 16-byte tag.
// Returns true and writes ctLen-16 bytes to dst only if the tag verifies.
export function open0(ctx: usize, aad: usize, aadLen: usize, ct: usize, ctLen: usize, dst: usize): bool {
  if (ctLen < 16) return false;
  const n = ctLen - 16;
  return aeadOpen(ctx + CTX_KEY, ctx + CTX_NONCE, aad, aadLen, ct, n, ct + n, dst) == 0;
}

// RFC 9180 §5.3 Export: LabeledExpand(exporter_secret, "sec", exporter_context, L), L ≤ 32.
export function exportSecret(ctx: usize, context: usize, contextLen: usize, out: usize, outLen: usize): void {
  labeledExpand(ctx + CTX_EXP, SUITE_HPKE, SUITE_HPKE_LEN, SEC, SEC_LEN, context, contextLen, out, outLen);
}

