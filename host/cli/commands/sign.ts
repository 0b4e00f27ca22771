// `veil sign`: a reviewer adds their signature over a program's manifest (SPEC §6). Trust
// status: runs on the reviewer's own machine with their secret key; writes only public bytes.
import { sha256 } from "@noble/hashes/sha2.js";
import { stat } from "node:fs/promises";
import { MAX_SIGNATURES } from "../../formats/bundle.ts";
import { equalBytes } from "../../formats/bytes.ts";
import { verifyStrict } from "../../formats/ed25519.ts";
import { assembleBundle, signManifest, signedMessage } from "../../formats/sign.ts";
import { CliError, hex, required, toJson, type Command } from "../args.ts";
import { readReviewerKey } from "../keyfile.ts";
import { PROGRAM_FILES, programPath, readNamed, readProgram, writeAtomic } from "../program.ts";

export const sign: Command = {
  name: "sign",
  help: `Usage:
  veil sign <program dir> --key <reviewer key file>

Checks that manifest.bin decodes strictly (SPEC §5) and, when graph.onnx is present, that it
is the graph the manifest names; then signs "veil manifest signature v1\\0" ‖ manifest with
the reviewer's Ed25519 key and writes signatures.bin (SPEC §6). An earlier signature by the
same key is replaced; others are kept in order. Review the program (veil inspect) before
signing: the signature says you accept this exact manifest.

Options:
  --key <file>     reviewer key file (veil keygen --reviewer)`,
  options: { key: { type: "string" } },
  positionals: [1, 1],
  async run(ctx) {
    const dir = ctx.positionals[0];
    const keyPath = required(ctx, "key", "the reviewer key file to sign with");
    const p = await readProgram(dir);
    const graphPath = programPath(dir, "graph");
    if (await stat(graphPath).then(() => true, () => false)) {
      const graph = await readNamed(graphPath, "graph");
      if (graph.length !== p.manifest.graphSize || !equalBytes(sha256(graph), p.manifest.graphSha256))
        throw new CliError(`${graphPath} is not the graph the manifest names (SHA-256 or size differ); refusing to sign`);
    }
    const key = await readReviewerKey(keyPath, (w) => ctx.warn(w));
    let entry;
    try {
      entry = signManifest(p.manifestBytes, key.secretKey);
    } finally {
      key.secretKey.fill(0);
    }
    if (!verifyStrict(entry.publicKey, signedMessage(p.manifestBytes), entry.signature)) throw new CliError("the new signature does not verify (internal error)");
    const entries = [...p.signatures];
    const at = entries.findIndex((e) => equalBytes(e.publicKey, entry.publicKey));
    const replaced = at >= 0;
    if (replaced) entries[at] = entry;
    else entries.push(entry);
    if (entries.length > MAX_SIGNATURES) throw new CliError(`${PROGRAM_FILES.signatures} already holds ${MAX_SIGNATURES} signatures, the most SPEC §6 allows`);
    await writeAtomic(programPath(dir, "signatures"), assembleBundle(entries));
    const m = p.manifest;
    if (ctx.json) {
      ctx.out(toJson({ dir, name: m.name, version: m.version.toString(), digest: hex(p.digest), public_key: hex(entry.publicKey), replaced, signatures: entries.map((e) => hex(e.publicKey)) }));
      return;
    }
    ctx.out(`signed ${m.name} v${m.version} (digest ${hex(p.digest)}) as ${hex(entry.publicKey)}${replaced ? ", replacing this key's earlier signature" : ""}`);
    ctx.out(`${programPath(dir, "signatures")} now holds ${entries.length} signature${entries.length > 1 ? "s" : ""}`);
  },
};
