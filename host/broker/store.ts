// The broker's key store (host/broker/README.md "Key store"): model data keys (32 bytes) under
// their 16-byte key ids, kept at rest sealed with XChaCha20-Poly1305 under the broker key
// (random 24-byte nonce per seal, AAD = key id). One JSON file, replaced atomically (temp file,
// fsync, rename, fsync of the directory). HOLDS SECRETS: plaintext data keys exist only briefly,
// in memory, during a release, and are wiped after.
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ascii, equalBytes, toHex, wipe } from "../formats/index.ts";
import { BrokerError } from "./errors.ts";

export const STORE_FORMAT = "veil-broker-keystore";
export const STORE_VERSION = 1;
const NONCE_LEN = 24;
const TAG_LEN = 16;
/** Sealed under the broker key with this AAD so a wrong broker key is caught at open (it is 24 bytes: never a 16-byte key id). */
const CHECK_AAD = ascii("veil broker key check v1");
const CHECK_PLAINTEXT = new Uint8Array(32);

/** Where data keys live. `get` returns a fresh copy the caller must wipe. */
export interface KeyStore {
  has(keyId: Uint8Array): boolean;
  get(keyId: Uint8Array): Uint8Array | undefined;
  add(keyId: Uint8Array, dataKey: Uint8Array, opts?: { replace?: boolean }): void;
  remove(keyId: Uint8Array): boolean;
  /** Hex key ids, sorted. */
  keyIds(): string[];
  close(): void;
}

interface StoredKey {
  /** base64url(nonce[24] ‖ ciphertext[32] ‖ tag[16]). */
  sealed: string;
  added: string;
}
interface StoreFile {
  format: string;
  version: number;
  aead: "xchacha20poly1305";
  check: string;
  keys: Record<string, StoredKey>;
}

const b64u = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString("base64url");
const unb64u = (s: unknown, what: string): Uint8Array => {
  if (typeof s !== "string" || !/^[A-Za-z0-9_-]*$/.test(s)) throw new BrokerError("STORE_CORRUPT", `${what} is not base64url`);
  return new Uint8Array(Buffer.from(s, "base64url"));
};

export const checkKeyId = (keyId: Uint8Array): string => {
  if (!(keyId instanceof Uint8Array) || keyId.length !== 16) throw new BrokerError("BAD_REQUEST", "a key id is 16 bytes");
  return toHex(keyId);
};

function checkBrokerKey(k: Uint8Array): Uint8Array {
  if (!(k instanceof Uint8Array) || k.length !== 32) throw new TypeError("the broker key is 32 bytes");
  return Uint8Array.from(k);
}

/** Writes `data` to `path` atomically: a 0600 temp file in the same directory, fsync, rename, fsync of the directory. */
export function atomicWriteFile(path: string, data: Uint8Array | string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data, "utf8") : data);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), "r");
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

function seal(brokerKey: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const nonce = new Uint8Array(randomBytes(NONCE_LEN));
  const ct = xchacha20poly1305(brokerKey, nonce, aad).encrypt(plaintext);
  const out = new Uint8Array(NONCE_LEN + ct.length);
  out.set(nonce);
  out.set(ct, NONCE_LEN);
  return out;
}

/** Opens nonce ‖ ct; undefined on authentication failure. */
function open(brokerKey: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | undefined {
  if (sealed.length < NONCE_LEN + TAG_LEN) return undefined;
  try {
    return xchacha20poly1305(brokerKey, sealed.subarray(0, NONCE_LEN), aad).decrypt(sealed.subarray(NONCE_LEN));
  } catch {
    return undefined;
  }
}

/** The key store in one JSON file (see the file header). */
export class FileKeyStore implements KeyStore {
  #brokerKey: Uint8Array;
  #file: StoreFile;
  private closed = false;

  private constructor(
    readonly path: string,
    brokerKey: Uint8Array,
    file: StoreFile,
  ) {
    this.#brokerKey = brokerKey;
    this.#file = file;
  }

  /** Opens `path`, or creates an empty store there (its directory with mode 0700). Checks the broker key. */
  static open(path: string, brokerKey: Uint8Array): FileKeyStore {
    const key = checkBrokerKey(brokerKey);
    let text: string | undefined;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    if (text === undefined) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const file: StoreFile = { format: STORE_FORMAT, version: STORE_VERSION, aead: "xchacha20poly1305", check: b64u(seal(key, CHECK_AAD, CHECK_PLAINTEXT)), keys: {} };
      const s = new FileKeyStore(path, key, file);
      s.flush();
      return s;
    }
    let parsed: StoreFile;
    try {
      parsed = JSON.parse(text) as StoreFile;
    } catch {
      throw new BrokerError("STORE_CORRUPT", `${path} is not JSON`);
    }
    if (parsed?.format !== STORE_FORMAT || parsed.version !== STORE_VERSION || parsed.aead !== "xchacha20poly1305" || typeof parsed.keys !== "object" || parsed.keys === null)
      throw new BrokerError("STORE_CORRUPT", `${path} is not a version ${STORE_VERSION} ${STORE_FORMAT}`);
    const check = open(key, CHECK_AAD, unb64u(parsed.check, "check"));
    if (!check || !equalBytes(check, CHECK_PLAINTEXT)) throw new BrokerError("WRONG_BROKER_KEY", `the broker key does not open ${path}`);
    for (const [id, v] of Object.entries(parsed.keys)) {
      if (!/^[0-9a-f]{32}$/.test(id) || typeof v?.sealed !== "string" || typeof v.added !== "string")
        throw new BrokerError("STORE_CORRUPT", `${path}: entry ${id.slice(0, 40)} is malformed`);
      if (unb64u(v.sealed, `entry ${id}`).length !== NONCE_LEN + 32 + TAG_LEN) throw new BrokerError("STORE_CORRUPT", `${path}: entry ${id} has the wrong size`);
    }
    return new FileKeyStore(path, key, parsed);
  }

  private live(): void {
    if (this.closed) throw new BrokerError("BROKER_CLOSED", "the key store is closed");
  }

  private flush(): void {
    const keys: Record<string, StoredKey> = {};
    for (const id of Object.keys(this.#file.keys).sort()) keys[id] = this.#file.keys[id];
    this.#file = { ...this.#file, keys };
    atomicWriteFile(this.path, JSON.stringify(this.#file, null, 2) + "\n");
  }

  has(keyId: Uint8Array): boolean {
    this.live();
    return Object.hasOwn(this.#file.keys, checkKeyId(keyId));
  }

  get(keyId: Uint8Array): Uint8Array | undefined {
    this.live();
    const id = checkKeyId(keyId);
    if (!Object.hasOwn(this.#file.keys, id)) return undefined;
    const dataKey = open(this.#brokerKey, keyId, unb64u(this.#file.keys[id].sealed, `entry ${id}`));
    if (!dataKey || dataKey.length !== 32) throw new BrokerError("STORE_CORRUPT", `stored key ${id} fails to open under the broker key`);
    return dataKey;
  }

  add(keyId: Uint8Array, dataKey: Uint8Array, opts: { replace?: boolean } = {}): void {
    this.live();
    const id = checkKeyId(keyId);
    if (!(dataKey instanceof Uint8Array) || dataKey.length !== 32) throw new BrokerError("BAD_REQUEST", "a data key is 32 bytes");
    if (Object.hasOwn(this.#file.keys, id) && !opts.replace) throw new BrokerError("KEY_EXISTS", `key ${id} is already stored`);
    const previous = this.#file;
    this.#file = { ...previous, keys: { ...previous.keys, [id]: { sealed: b64u(seal(this.#brokerKey, keyId, dataKey)), added: new Date().toISOString() } } };
    try {
      this.flush();
    } catch (e) {
      this.#file = previous;
      throw e;
    }
  }

  remove(keyId: Uint8Array): boolean {
    this.live();
    const id = checkKeyId(keyId);
    if (!Object.hasOwn(this.#file.keys, id)) return false;
    const previous = this.#file;
    const keys = { ...previous.keys };
    delete keys[id];
    this.#file = { ...previous, keys };
    try {
      this.flush();
    } catch (e) {
      this.#file = previous;
      throw e;
    }
    return true;
  }

  keyIds(): string[] {
    this.live();
    return Object.keys(this.#file.keys).sort();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    wipe(this.#brokerKey);
  }

  /** Never serialise the broker key. */
  toJSON(): object {
    return { path: this.path, keys: this.closed ? [] : this.keyIds() };
  }
}
