// A program directory, as `veil seal` writes it and `sign`, `inspect` and `run` read it.
// UNTRUSTED host code: every file here is public (manifest, signatures, graph) or ciphertext
// (weights.sealed).
//
//   manifest.bin     SPEC §5 manifest
//   signatures.bin   SPEC §6 signature bundle; 0 bytes until the first `veil sign`
//                    (a §6 bundle holds 1..32 entries, so "no signatures" has no encoding)
//   graph.onnx       the ONNX graph without its weights (SHA-256 and size in the manifest)
//   weights.sealed   SPEC §9 sealed weights stream
import { randomBytes } from "node:crypto";
import { open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { decodeSignatureBundle, type SignatureBundle } from "../formats/bundle.ts";
import { decodeManifest, programDigest, type Manifest } from "../formats/manifest.ts";
import { CliError } from "./args.ts";

export const PROGRAM_FILES = {
  manifest: "manifest.bin",
  signatures: "signatures.bin",
  graph: "graph.onnx",
  weights: "weights.sealed",
} as const;

export interface ProgramDir {
  dir: string;
  manifestBytes: Uint8Array;
  manifest: Manifest;
  digest: Uint8Array;
  signaturesBytes: Uint8Array;
  signatures: SignatureBundle;
}

export const programPath = (dir: string, f: keyof typeof PROGRAM_FILES): string => join(dir, PROGRAM_FILES[f]);

/** Reads a file, or fails with one line naming what it is. */
export async function readNamed(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "permission denied" : `${code ?? (e as Error).message}`;
    throw new CliError(`cannot read ${what} ${path}: ${why}`);
  }
}

/** Manifest (decoded strictly, SPEC §5) and signature bundle of a program directory. */
export async function readProgram(dir: string): Promise<ProgramDir> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new CliError(`${dir} is not a program directory (made by veil seal)`);
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`cannot open program directory ${dir}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (e as Error).message}`);
  }
  const manifestBytes = await readNamed(programPath(dir, "manifest"), "manifest");
  const manifest = decodeManifest(manifestBytes);
  let signaturesBytes = new Uint8Array(0);
  try {
    signaturesBytes = new Uint8Array(await readFile(programPath(dir, "signatures")));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const signatures = signaturesBytes.length === 0 ? [] : decodeSignatureBundle(signaturesBytes);
  return { dir, manifestBytes, manifest, digest: programDigest(manifestBytes), signaturesBytes, signatures };
}

/** Writes `bytes` to `path` through a temporary file in the same folder and a rename. */
export async function writeAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = tempPath(path);
  try {
    const fh = await open(tmp, "wx");
    try {
      await fh.writeFile(bytes);
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

export const tempPath = (path: string): string => join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
