// Key files of the `veil` CLI: a reviewer's Ed25519 key and a model's data key, as small JSON
// documents written with mode 0600. Trust status: these files hold SECRETS; the functions here
// run on the reviewer's / model owner's own machine. Nothing here prints or logs key bytes:
// every error names the file and the problem, never its content.
//
//   reviewer key: {"type": "veil-reviewer-key", "version": 1,
//                  "public_key": "<64 hex>", "secret_key": "<64 hex: the RFC 8032 seed>"}
//   data key:     {"type": "veil-data-key", "version": 1,
//                  "key_id": "<32 hex>", "data_key": "<64 hex>"}
import { ed25519 } from "@noble/curves/ed25519.js";
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { link, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { equalBytes, fromHex } from "../formats/bytes.ts";
import { isAcceptableEd25519Key } from "../formats/ed25519.ts";
import { CliError } from "./args.ts";

export const REVIEWER_KEY_TYPE = "veil-reviewer-key";
export const DATA_KEY_TYPE = "veil-data-key";
export const KEY_FILE_MODE = 0o600;

export interface ReviewerKeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export interface DataKey {
  keyId: Uint8Array;
  dataKey: Uint8Array;
}

const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/**
 * Writes `text` to `path` with mode 0600, atomically: a temporary file in the same folder
 * (created 0600, never readable by others), then a no-clobber link (or a rename with `force`).
 */
export async function writeSecretFile(path: string, text: string, opts: { force?: boolean } = {}): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, KEY_FILE_MODE);
  try {
    await fh.chmod(KEY_FILE_MODE); // whatever the umask
    await fh.writeFile(text, "utf8");
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    if (opts.force) await rename(tmp, path);
    else {
      try {
        await link(tmp, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new CliError(`${path} already exists; pass --force to replace it`);
        throw e;
      }
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

export function newReviewerKey(): ReviewerKeyPair {
  const secretKey = ed25519.utils.randomSecretKey();
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

export function newDataKey(): DataKey {
  return { keyId: new Uint8Array(randomBytes(16)), dataKey: new Uint8Array(randomBytes(32)) };
}

export const reviewerKeyText = (k: ReviewerKeyPair): string =>
  JSON.stringify({ type: REVIEWER_KEY_TYPE, version: 1, public_key: toHex(k.publicKey), secret_key: toHex(k.secretKey) }, null, 2) + "\n";

export const dataKeyText = (k: DataKey): string =>
  JSON.stringify({ type: DATA_KEY_TYPE, version: 1, key_id: toHex(k.keyId), data_key: toHex(k.dataKey) }, null, 2) + "\n";

/** Reads a key file's JSON without ever quoting its content in an error. */
async function readKeyJson(path: string, what: string, onWarn?: (w: string) => void): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new CliError(`${what} ${path}: not a regular file`);
    if ((st.mode & 0o077) !== 0 && onWarn) onWarn(`warning: ${what} ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    text = await readFile(path, "utf8");
  } catch (e) {
    if (e instanceof CliError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read ${what} ${path}: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code ?? "error"}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new CliError(`${what} ${path}: not a veil key file (not JSON)`); // JSON.parse's message would quote the content
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new CliError(`${what} ${path}: not a veil key file`);
  return v as Record<string, unknown>;
}

function hexField(o: Record<string, unknown>, field: string, bytes: number, where: string): Uint8Array {
  const s = o[field];
  if (typeof s !== "string" || s.length !== 2 * bytes || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new CliError(`${where}: field "${field}" must be ${bytes} bytes of hex`);
  }
  return fromHex(s);
}

function checkType(o: Record<string, unknown>, type: string, where: string): void {
  if (o.type !== type) {
    const other = o.type === REVIEWER_KEY_TYPE ? "a reviewer key" : o.type === DATA_KEY_TYPE ? "a data key" : `type ${JSON.stringify(o.type)}`;
    throw new CliError(`${where}: this is ${other}, not a ${type === REVIEWER_KEY_TYPE ? "reviewer key (veil keygen --reviewer)" : "data key (veil keygen --data-key)"}`);
  }
  if (o.version !== 1) throw new CliError(`${where}: unsupported key file version ${JSON.stringify(o.version)}`);
}

export async function readReviewerKey(path: string, onWarn?: (w: string) => void): Promise<ReviewerKeyPair> {
  const where = `reviewer key ${path}`;
  const o = await readKeyJson(path, "reviewer key", onWarn);
  checkType(o, REVIEWER_KEY_TYPE, where);
  const publicKey = hexField(o, "public_key", 32, where);
  const secretKey = hexField(o, "secret_key", 32, where);
  if (!equalBytes(ed25519.getPublicKey(secretKey), publicKey)) throw new CliError(`${where}: public_key does not belong to secret_key (damaged file?)`);
  return { publicKey, secretKey };
}

export async function readDataKey(path: string, onWarn?: (w: string) => void): Promise<DataKey> {
  const where = `data key ${path}`;
  const o = await readKeyJson(path, "data key", onWarn);
  checkType(o, DATA_KEY_TYPE, where);
  return { keyId: hexField(o, "key_id", 16, where), dataKey: hexField(o, "data_key", 32, where) };
}

/**
 * A reviewer public key given on the command line: 64 hex digits, or a file holding either a
 * reviewer key (its public half is used) or the 64 hex digits `veil keygen --reviewer` printed.
 */
export async function reviewerPublicKey(arg: string): Promise<Uint8Array> {
  let key: Uint8Array;
  if (/^[0-9a-fA-F]{64}$/.test(arg)) key = fromHex(arg);
  else {
    let text: string;
    try {
      text = (await readFile(arg, "utf8")).trim();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new CliError(`--reviewer ${arg}: not 64 hex digits, and ${code === "ENOENT" ? "no such file" : `cannot read the file (${code})`}`);
    }
    if (/^[0-9a-fA-F]{64}$/.test(text)) key = fromHex(text);
    else key = (await readReviewerKey(arg)).publicKey;
  }
  if (!isAcceptableEd25519Key(key)) throw new CliError(`--reviewer ${arg}: not an acceptable Ed25519 public key (SPEC §2.3 rules 3-5)`);
  return key;
}
