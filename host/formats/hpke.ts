// RFC 9180 HPKE base mode for exactly DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20Poly1305, on @noble primitives. Trust status: handles secrets — used by the client and the key broker on their own machines, and by test/reference servers; the untrusted host only ever sees `enc` and ciphertext.
import { createPrivateKey, createPublicKey, diffieHellman } from "node:crypto";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { randomBytes } from "node:crypto";
import { ascii, concat, wipe } from "./bytes.ts";
import { SUITE } from "./constants.ts";
import { VeilFormatError } from "./errors.ts";

const i2osp2 = (n: number): Uint8Array => new Uint8Array([n >>> 8, n & 0xff]);

/** RFC 9180 §4.1: suite_id of the KEM. */
export const KEM_SUITE_ID = concat(ascii("KEM"), i2osp2(SUITE.KEM));
/** RFC 9180 §5.1: suite_id of the whole HPKE suite. */
export const HPKE_SUITE_ID = concat(ascii("HPKE"), i2osp2(SUITE.KEM), i2osp2(SUITE.KDF), i2osp2(SUITE.AEAD));

const VERSION_LABEL = ascii("HPKE-v1");
const N_SECRET = 32;
const N_K = 32;
const N_N = 12;
const N_H = 32;
const EMPTY = new Uint8Array(0);

/** RFC 9180 §4: LabeledExtract(salt, label, ikm). */
export const labeledExtract = (suiteId: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Uint8Array =>
  extract(sha256, concat(VERSION_LABEL, suiteId, ascii(label), ikm), salt);

/** RFC 9180 §4: LabeledExpand(prk, label, info, L). */
export const labeledExpand = (suiteId: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, length: number): Uint8Array =>
  expand(sha256, prk, concat(i2osp2(length), VERSION_LABEL, suiteId, ascii(label), info), length);

export interface KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

// X25519 through node:crypto (OpenSSL): about 30× faster than a JS implementation, and the
// client seals one request per call. Raw keys go in as JWK (RFC 8037), which Node imports
// directly as raw keys; OpenSSL 3's DER decoders would cost hundreds of µs per key.
const b64u = (k: Uint8Array) => Buffer.from(k).toString("base64url");
const privateKeyObject = (k: Uint8Array) =>
  createPrivateKey({ key: { kty: "OKP", crv: "X25519", d: b64u(k), x: "" }, format: "jwk" });
const publicKeyObject = (k: Uint8Array) => createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64u(k) }, format: "jwk" });

/** SPEC §2.2: 32 bytes of entropy used as the scalar. */
export const publicKeyOf = (privateKey: Uint8Array): Uint8Array =>
  new Uint8Array(Buffer.from(createPublicKey(privateKeyObject(privateKey)).export({ format: "jwk" }).x!, "base64url"));

export function generateKeyPair(): KeyPair {
  const privateKey = new Uint8Array(randomBytes(32));
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** RFC 9180 §7.1.3 DeriveKeyPair for X25519 (used to check the RFC vectors). */
export function deriveKeyPair(ikm: Uint8Array): KeyPair {
  const prk = labeledExtract(KEM_SUITE_ID, EMPTY, "dkp_prk", ikm);
  const privateKey = labeledExpand(KEM_SUITE_ID, prk, "sk", EMPTY, 32);
  wipe(prk);
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** X25519 that rejects low-order inputs and an all-zero result (SPEC §2.2, RFC 9180 §7.1.4). */
function dh(privateKey: Uint8Array, publicKey: Uint8Array, field: string): Uint8Array {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) throw new VeilFormatError("BAD_KEY", "hpke", field, "not a 32-byte X25519 public key");
  let out: Uint8Array;
  try {
    out = new Uint8Array(diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey: publicKeyObject(publicKey) }));
  } catch {
    throw new VeilFormatError("BAD_KEY", "hpke", field, "X25519 shared secret is all zero (low-order key)");
  }
  if (out.every((b) => b === 0)) throw new VeilFormatError("BAD_KEY", "hpke", field, "X25519 shared secret is all zero");
  return out;
}

function extractAndExpand(dhValue: Uint8Array, kemContext: Uint8Array): Uint8Array {
  const prk = labeledExtract(KEM_SUITE_ID, EMPTY, "eae_prk", dhValue);
  const ss = labeledExpand(KEM_SUITE_ID, prk, "shared_secret", kemContext, N_SECRET);
  wipe(prk);
  return ss;
}

/** The intermediate values of a key schedule, for test vectors. */
export interface KeySchedule {
  sharedSecret: Uint8Array;
  keyScheduleContext: Uint8Array;
  secret: Uint8Array;
}

/** An HPKE context: Seal/Open with the sequence number, and Export (RFC 9180 §5.2, §5.3). */
export class HpkeContext {
  private seq = 0n;

  constructor(
    private readonly key: Uint8Array,
    private readonly baseNonce: Uint8Array,
    private readonly exporterSecret: Uint8Array,
    /** Populated only when the caller asked for the schedule (tests). */
    readonly schedule?: KeySchedule,
  ) {}

  get sequence(): bigint {
    return this.seq;
  }

  private nonce(): Uint8Array {
    if (this.seq >= (1n << 96n) - 1n) throw new Error("hpke: message limit reached");
    const n = Uint8Array.from(this.baseNonce);
    let s = this.seq;
    for (let i = N_N - 1; i >= 0 && s > 0n; i--) {
      n[i] ^= Number(s & 0xffn);
      s >>= 8n;
    }
    return n;
  }

  seal(aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const ct = chacha20poly1305(this.key, this.nonce(), aad).encrypt(plaintext);
    this.seq++;
    return ct;
  }

  /** Opens the next message; undefined when it fails to authenticate (the sequence does not advance). */
  open(aad: Uint8Array, ciphertext: Uint8Array): Uint8Array | undefined {
    if (ciphertext.length < 16) return undefined;
    let pt: Uint8Array;
    try {
      pt = chacha20poly1305(this.key, this.nonce(), aad).decrypt(ciphertext);
    } catch {
      return undefined;
    }
    this.seq++;
    return pt;
  }

  export(exporterContext: Uint8Array, length: number): Uint8Array {
    return labeledExpand(HPKE_SUITE_ID, this.exporterSecret, "sec", exporterContext, length);
  }

  /** Wipes the key, nonce and exporter secret. */
  dispose(): void {
    wipe(this.key, this.baseNonce, this.exporterSecret);
  }
}

function keySchedule(sharedSecret: Uint8Array, info: Uint8Array, keepSchedule: boolean): HpkeContext {
  const pskIdHash = labeledExtract(HPKE_SUITE_ID, EMPTY, "psk_id_hash", EMPTY);
  const infoHash = labeledExtract(HPKE_SUITE_ID, EMPTY, "info_hash", info);
  const context = concat(new Uint8Array([0x00]), pskIdHash, infoHash);
  const secret = labeledExtract(HPKE_SUITE_ID, sharedSecret, "secret", EMPTY);
  const key = labeledExpand(HPKE_SUITE_ID, secret, "key", context, N_K);
  const baseNonce = labeledExpand(HPKE_SUITE_ID, secret, "base_nonce", context, N_N);
  const exporterSecret = labeledExpand(HPKE_SUITE_ID, secret, "exp", context, N_H);
  const schedule = keepSchedule ? { sharedSecret: sharedSecret.slice(), keyScheduleContext: context, secret: secret.slice() } : undefined;
  wipe(secret, sharedSecret);
  return new HpkeContext(key, baseNonce, exporterSecret, schedule);
}

export interface SetupOptions {
  /** Injected ephemeral private key (test vectors); fresh random otherwise. */
  ephemeralPrivateKey?: Uint8Array;
  /** Keep shared_secret / key_schedule_context / secret on the context (tests only). */
  keepSchedule?: boolean;
}

/** RFC 9180 §5.1.1 SetupBaseS: returns enc and the sender context. */
export function setupBaseS(pkR: Uint8Array, info: Uint8Array, opts: SetupOptions = {}): { enc: Uint8Array; ctx: HpkeContext } {
  const skE = opts.ephemeralPrivateKey ? Uint8Array.from(opts.ephemeralPrivateKey) : new Uint8Array(randomBytes(32));
  const enc = publicKeyOf(skE);
  const dhValue = dh(skE, pkR, "pkR");
  const ss = extractAndExpand(dhValue, concat(enc, pkR));
  wipe(skE, dhValue);
  return { enc, ctx: keySchedule(ss, info, opts.keepSchedule ?? false) };
}

/** RFC 9180 §5.1.1 SetupBaseR. */
export function setupBaseR(enc: Uint8Array, skR: Uint8Array, info: Uint8Array, opts: { keepSchedule?: boolean } = {}): HpkeContext {
  const dhValue = dh(skR, enc, "enc");
  const ss = extractAndExpand(dhValue, concat(enc, publicKeyOf(skR)));
  wipe(dhValue);
  return keySchedule(ss, info, opts.keepSchedule ?? false);
}
