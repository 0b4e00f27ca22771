// Trusted: holds the models' data keys, released to this loader by the key broker as
// WrappedKeys (SPEC §10), and nothing else ever sees them.
import { wipe } from "./crypto/ct";
import { sha256 } from "./crypto/sha256";
import * as wire from "./wire";
import { err, F_KEYWRAP, KEY_UNWRAP, CAPACITY } from "./errors";
import { setupBaseR, open0, HPKE_CTX_SIZE } from "./hpke";
import { SK, PK, writeReport, REPORT_LEN } from "./trust";
import { KEY_RELEASE_INFO, KEY_RELEASE_INFO_LEN } from "./labels";
import { KEYS_MAX } from "./layout";

// key_id (16) | data key (32) | used (u32) | pad → 64 bytes a slot.
const KEYS = memory.data(<i32>(KEYS_MAX * 64), 16);
const CTX = memory.data(<i32>HPKE_CTX_SIZE, 16);
const REPORT = memory.data(<i32>REPORT_LEN, 16);
const INFO = memory.data(20 + 16 + 32, 16);
const DATA_KEY = memory.data(32, 16);

// Variable time: inputs are public. (Key ids are public.)
export function findKey(keyId: usize): usize {
  for (let i: u32 = 0; i < KEYS_MAX; i++) {
    const k = KEYS + <usize>i * 64;
    if (load<u32>(k, 48) != 0 && memory.compare(k, keyId, 16) == 0) return k + 16;
  }
  return 0;
}

const K_MAGIC = F_KEYWRAP | 1, K_KEY_ID = F_KEYWRAP | 2, K_NONCE = F_KEYWRAP | 3, K_ENC = F_KEYWRAP | 4, K_CT = F_KEYWRAP | 5;

// SPEC §10: opens a WrappedKey addressed to this loader and stores the data key.
export function unwrapKey(p: usize, len: usize): u32 {
  wire.begin(p, len);
  wire.magic(wire.kind(0x4b, 0x57), K_MAGIC); // "KW"
  const keyId = wire.bytesAt(16, K_KEY_ID);
  const nonce = wire.bytesAt(32, K_NONCE);
  const enc = wire.bytesAt(32, K_ENC);
  const ct = wire.bytesAt(48, K_CT);
  wire.finish(F_KEYWRAP);
  if (wire.failed()) return wire.errorCode();
  // info = "veil key release v1\0" ‖ key_id ‖ SHA-256(the report this loader emits for report_nonce)
  writeReport(REPORT, nonce);
  memory.copy(INFO, KEY_RELEASE_INFO, KEY_RELEASE_INFO_LEN);
  memory.copy(INFO + KEY_RELEASE_INFO_LEN, keyId, 16);
  sha256(REPORT, REPORT_LEN, INFO + KEY_RELEASE_INFO_LEN + 16);
  let ok = setupBaseR(CTX, enc, SK, PK, INFO, KEY_RELEASE_INFO_LEN + 48);
  // aad = magic ‖ key_id ‖ report_nonce (the first 56 bytes)
  ok = ok && open0(CTX, p, 56, ct, 48, DATA_KEY);
  wipe(CTX, HPKE_CTX_SIZE);
  if (!ok) return err(KEY_UNWRAP, K_CT);
  // Replace the key with this id, else take a free slot (SPEC §10).
  let slot = findKey(keyId);
  if (slot == 0) {
    for (let i: u32 = 0; i < KEYS_MAX && slot == 0; i++) {
      const k = KEYS + <usize>i * 64;
      if (load<u32>(k, 48) == 0) {
        memory.copy(k, keyId, 16);
        store<u32>(k, 1, 48);
        slot = k + 16;
      }
    }
  }
  if (slot == 0) {
    wipe(DATA_KEY, 32);
    return err(CAPACITY, K_KEY_ID);
  }
  memory.copy(slot, DATA_KEY, 32);
  wipe(DATA_KEY, 32);
  return 0;
}
