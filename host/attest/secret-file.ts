// 32-byte secret key files (the software platform key, the broker key): created with mode 0600
// by an exclusive create, refused when readable or writable by group or others. The bytes are
// never logged; errors name only the path and the mode.
import { randomBytes } from "node:crypto";
import { closeSync, fstatSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";

export class SecretFileError extends Error {
  override readonly name = "SecretFileError";
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

/** A file holds either exactly 32 raw bytes, or 64 hex digits with an optional trailing newline. */
function parseKey(buf: Buffer, path: string): Uint8Array {
  if (buf.length === 32) return new Uint8Array(buf);
  const text = buf.toString("latin1").replace(/\r?\n$/, "");
  if (HEX64.test(text)) return new Uint8Array(Buffer.from(text, "hex"));
  throw new SecretFileError(`${path}: not a 32-byte key (expected 32 raw bytes or 64 hex digits, found ${buf.length} bytes)`);
}

/** Reads a 32-byte key from `path`; refuses a file whose mode grants any access to group or others. */
export function readSecretKeyFile(path: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new SecretFileError(`${path}: cannot open key file (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SecretFileError(`${path}: not a regular file`);
    if ((st.mode & 0o077) !== 0)
      throw new SecretFileError(`${path}: key file mode is 0${(st.mode & 0o777).toString(8)}; it must not be accessible to group or others (chmod 600)`);
    if (typeof process.getuid === "function" && st.uid !== process.getuid())
      throw new SecretFileError(`${path}: key file is owned by uid ${st.uid}, not by this process (uid ${process.getuid()})`);
    const buf = readFileSync(fd);
    try {
      return parseKey(buf, path);
    } finally {
      buf.fill(0);
    }
  } finally {
    closeSync(fd);
  }
}

/** Creates `path` (exclusively, mode 0600) holding 32 fresh random bytes, and returns them. */
export function createSecretKeyFile(path: string, key: Uint8Array = new Uint8Array(randomBytes(32))): Uint8Array {
  if (key.length !== 32) throw new SecretFileError("a key file holds exactly 32 bytes");
  const fd = openSync(path, "wx", 0o600);
  try {
    writeSync(fd, key);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return key;
}

/** Reads the key at `path`, or creates it (mode 0600) when the file does not exist. */
export function loadOrCreateSecretKeyFile(path: string): Uint8Array {
  try {
    return createSecretKeyFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  return readSecretKeyFile(path);
}
