// The models directory the server serves (README.md, "Models directory"): program directories as
// `veil seal` writes them (host/cli/program.ts), each holding
//
//   manifest.bin     SPEC §5 manifest (public)
//   signatures.bin   SPEC §6 signature bundle (public; must hold at least one entry to be served)
//   graph.onnx       the ONNX graph without its weights (public)
//   weights.sealed   SPEC §9 sealed weights stream (ciphertext)
//
// `--models DIR` is either one program directory or a directory of them (one level). UNTRUSTED
// host code: it reads public files and the sealed stream's public header, never a key. Data keys
// are not here: they live with the key broker.
import { createHash } from "node:crypto";
import { open, readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  WEIGHTS_HEADER_SIZE,
  checkHeaderMatches,
  decodeManifest,
  decodeSignatureBundle,
  decodeWeightsHeader,
  programDigest,
  sealedStreamLength,
  toHex,
  type Manifest,
} from "../formats/index.ts";
// The directory layout is `veil seal`'s (host/cli/program.ts owns it).
import { PROGRAM_FILES } from "../cli/program.ts";

export { PROGRAM_FILES };

/** One servable program: public bytes in memory, the sealed weights as a path (streamed at load). */
export interface Program {
  name: string;
  dir: string;
  manifestBytes: Uint8Array;
  manifest: Manifest;
  /** SHA-256 of manifest.bin (SPEC §5.6). */
  digest: Uint8Array;
  digestHex: string;
  signatures: Uint8Array;
  graph: Uint8Array;
  weightsPath: string;
  weightsSize: number;
  /** The weights' data key id (32 hex digits): the key the broker must release to each worker. */
  keyIdHex: string;
}

export class ModelsError extends Error {
  override readonly name = "ModelsError";
}

async function readOne(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new ModelsError(`cannot read ${what} ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Reads and checks one program directory: strict manifest, signatures present, graph and weights header agreeing with it. */
export async function readProgramDir(dir: string): Promise<Program> {
  const manifestBytes = await readOne(join(dir, PROGRAM_FILES.manifest), "manifest");
  let manifest: Manifest;
  try {
    manifest = decodeManifest(manifestBytes);
  } catch (e) {
    throw new ModelsError(`${join(dir, PROGRAM_FILES.manifest)}: not a valid manifest (${(e as Error).message})`);
  }
  const signatures = await readOne(join(dir, PROGRAM_FILES.signatures), "signatures").catch((e: unknown) => {
    throw new ModelsError(`${(e as Error).message}; reviewers add signatures with veil sign`);
  });
  if (signatures.length === 0) throw new ModelsError(`${join(dir, PROGRAM_FILES.signatures)} is empty: program ${manifest.name} has no reviewer signature (veil sign)`);
  try {
    decodeSignatureBundle(signatures);
  } catch (e) {
    throw new ModelsError(`${join(dir, PROGRAM_FILES.signatures)}: not a valid signature bundle (${(e as Error).message})`);
  }
  const graph = await readOne(join(dir, PROGRAM_FILES.graph), "graph");
  const graphHash = createHash("sha256").update(graph).digest();
  if (BigInt(graph.length) !== BigInt(manifest.graphSize) || toHex(graphHash) !== toHex(manifest.graphSha256))
    throw new ModelsError(`${join(dir, PROGRAM_FILES.graph)} is not the graph manifest ${manifest.name} names (size or SHA-256 differ)`);

  const weightsPath = join(dir, PROGRAM_FILES.weights);
  let weightsSize: number;
  const head = new Uint8Array(WEIGHTS_HEADER_SIZE);
  try {
    weightsSize = (await stat(weightsPath)).size;
    const fh = await open(weightsPath, "r");
    try {
      await fh.read(head, 0, WEIGHTS_HEADER_SIZE, 0);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw new ModelsError(`cannot read sealed weights ${weightsPath} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const h = decodeWeightsHeader(head);
    checkHeaderMatches(h, manifest.weights);
    if (sealedStreamLength(h) !== weightsSize) throw new Error(`${weightsSize} bytes, the header implies ${sealedStreamLength(h)}`);
  } catch (e) {
    throw new ModelsError(`${weightsPath} is not the sealed weights manifest ${manifest.name} names (${(e as Error).message})`);
  }
  const digest = programDigest(manifestBytes);
  return {
    name: manifest.name,
    dir,
    manifestBytes,
    manifest,
    digest,
    digestHex: toHex(digest),
    signatures,
    graph,
    weightsPath,
    weightsSize,
    keyIdHex: toHex(manifest.weights.keyId),
  };
}

/**
 * The programs under `dir`: `dir` itself when it holds a manifest.bin, else every subdirectory
 * that does (sorted by name). Program names must be unique.
 */
export async function loadModels(dir: string): Promise<Program[]> {
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    throw new ModelsError(`models directory ${dir}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (e as Error).message}`);
  }
  if (!st.isDirectory()) throw new ModelsError(`models directory ${dir} is not a directory`);
  const isProgram = async (d: string) => stat(join(d, PROGRAM_FILES.manifest)).then((s) => s.isFile(), () => false);
  const dirs: string[] = [];
  if (await isProgram(dir)) dirs.push(dir);
  else {
    for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isDirectory() && (await isProgram(join(dir, e.name)))) dirs.push(join(dir, e.name));
    }
  }
  if (dirs.length === 0) throw new ModelsError(`models directory ${dir} holds no program (a directory with ${PROGRAM_FILES.manifest}, as veil seal writes)`);
  const programs: Program[] = [];
  for (const d of dirs) {
    const p = await readProgramDir(d);
    const dup = programs.find((q) => q.name === p.name);
    if (dup) throw new ModelsError(`program name ${p.name} appears twice (${dup.dir} and ${d})`);
    programs.push(p);
  }
  if (programs.length > 8) throw new ModelsError(`${programs.length} programs: a loader holds at most 8 (SPEC §13 PROGRAMS_MAX)`);
  const keyIds = new Set(programs.map((p) => p.keyIdHex));
  if (keyIds.size > 16) throw new ModelsError(`${keyIds.size} data keys: a loader holds at most 16 (SPEC §13 KEYS_MAX)`);
  return programs;
}
