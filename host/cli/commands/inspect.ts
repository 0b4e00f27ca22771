// `veil inspect`: everything public about a program directory. UNTRUSTED host code: reads only
// public files (manifest, signatures, graph) and the sealed stream's public header.
import { sha256 } from "@noble/hashes/sha2.js";
import { open, stat } from "node:fs/promises";
import { equalBytes } from "../../formats/bytes.ts";
import { verifyStrict } from "../../formats/ed25519.ts";
import { egressLimit } from "../../formats/manifest.ts";
import { checkThreshold, signedMessage } from "../../formats/sign.ts";
import { decodeTrustConfig, trustConfigHash } from "../../formats/trust.ts";
import { WEIGHTS_HEADER_SIZE, checkHeaderMatches, decodeWeightsHeader, sealedStreamLength } from "../../formats/weights-header.ts";
import { VeilFormatError } from "../../formats/errors.ts";
import { formatBytes, hex, str, toJson, type Command } from "../args.ts";
import { PROGRAM_FILES, programPath, readNamed, readProgram } from "../program.ts";
import { dtypeName, showSpec } from "../schema.ts";

async function graphStatus(path: string, size: number, sha: Uint8Array): Promise<string> {
  if (!(await stat(path).then(() => true, () => false))) return "missing";
  const g = await readNamed(path, "graph");
  return g.length === size && equalBytes(sha256(g), sha) ? "matches the manifest" : "DIFFERS from the manifest (the loader refuses: GRAPH_MISMATCH)";
}

async function weightsStatus(path: string, p: Awaited<ReturnType<typeof readProgram>>): Promise<string> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return "missing";
  }
  try {
    const size = (await fh.stat()).size;
    const buf = new Uint8Array(WEIGHTS_HEADER_SIZE);
    const { bytesRead } = await fh.read(buf, 0, WEIGHTS_HEADER_SIZE, 0);
    if (bytesRead < WEIGHTS_HEADER_SIZE) return `${formatBytes(size)}, too short for a header`;
    const h = decodeWeightsHeader(buf);
    checkHeaderMatches(h, p.manifest.weights);
    const want = sealedStreamLength(h);
    return size === want ? `${formatBytes(size)}, header matches the manifest` : `${formatBytes(size)}, but the header implies ${want} bytes (truncated or extended)`;
  } catch (e) {
    return e instanceof VeilFormatError ? `header does not match the manifest: ${e.message} [${e.code}]` : `unreadable: ${(e as Error).message}`;
  } finally {
    await fh.close();
  }
}

export const inspect: Command = {
  name: "inspect",
  help: `Usage:
  veil inspect <program dir> [--trust <trust.bin>]

Prints the public manifest (name, version, I/O schema, generate spec, weights descriptor,
policy), which keys signed it (each signature checked under SPEC §2.3), whether graph.onnx and
the weights.sealed header match the manifest, and the program digest. With --trust, also the
SPEC §6.1 threshold decision the loader would make (a diagnostic: only the loader decides).

Options:
  --trust <file>   a trust configuration (veil trust) to count the signatures against`,
  options: { trust: { type: "string" } },
  positionals: [1, 1],
  async run(ctx) {
    const dir = ctx.positionals[0];
    const p = await readProgram(dir);
    const m = p.manifest;
    const msg = signedMessage(p.manifestBytes);
    const sigs = p.signatures.map((e) => ({ public_key: hex(e.publicKey), valid: verifyStrict(e.publicKey, msg, e.signature) }));
    const trustPath = str(ctx, "trust");
    let threshold: ReturnType<typeof checkThreshold> | undefined;
    let trustHash: string | undefined;
    if (trustPath) {
      const tb = await readNamed(trustPath, "trust configuration");
      const tc = decodeTrustConfig(tb);
      trustHash = hex(trustConfigHash(tb));
      threshold = p.signatures.length > 0
        ? checkThreshold(tc, p.signatures, p.manifestBytes)
        : { ok: false, threshold: tc.threshold, counted: 0, entries: [] };
    }
    const graph = await graphStatus(programPath(dir, "graph"), m.graphSize, m.graphSha256);
    const weights = await weightsStatus(programPath(dir, "weights"), p);
    const w = m.weights;
    const egress = egressLimit(m.policy);
    const digest = hex(p.digest);

    if (ctx.json) {
      ctx.out(toJson({
        dir, digest, name: m.name, version: m.version.toString(), mode: m.mode === 2 ? "generate" : "tensor",
        graph: { sha256: hex(m.graphSha256), size: m.graphSize, status: graph },
        inputs: m.inputs.map((s) => ({ ...s, dtype: dtypeName(s.dtype) })),
        outputs: m.outputs.map((s) => ({ ...s, dtype: dtypeName(s.dtype) })),
        generate: m.generate ? {
          vocab_size: m.generate.tokens.length, tokens: m.generate.tokens.map((t) => new TextDecoder().decode(t)), end_token: m.generate.endToken,
          max_new_tokens: m.generate.maxNewTokens, context_length: m.generate.contextLength, tokens_per_chunk: m.generate.tokensPerChunk,
        } : null,
        weights: { key_id: hex(w.keyId), stream_id: hex(w.streamId), plaintext_size: w.plaintextSize, chunk_size: w.chunkSize, chunk_count: w.chunkCount, commitment: hex(w.commitment), files: w.files, status: weights },
        policy: { version: m.policy.version, egress_limit: egress ?? null, extensions: m.policy.extensions.map((e) => ({ type: e.type, data: hex(e.data) })) },
        signatures: sigs,
        trust: threshold ? { path: trustPath, sha256: trustHash, threshold: threshold.threshold, counted: threshold.counted, ok: threshold.ok, entries: threshold.entries } : null,
      }));
      return;
    }
    const row = (k: string, v: string) => ctx.out(`${k.padEnd(12)} ${v}`);
    row("program", `${m.name} v${m.version}`);
    row("mode", m.mode === 2 ? "generate" : "tensor");
    row("graph", `sha256 ${hex(m.graphSha256)}, ${m.graphSize} bytes; ${PROGRAM_FILES.graph} ${graph}`);
    for (const s of m.inputs) row("input", showSpec(s));
    for (const s of m.outputs) row("output", showSpec(s));
    if (m.generate) {
      const g = m.generate;
      const dec = new TextDecoder();
      const sample = g.tokens.slice(0, 16).map((t) => JSON.stringify(dec.decode(t))).join(" ");
      row("generate", `${g.tokens.length} tokens (${sample}${g.tokens.length > 16 ? " …" : ""}), end token ${g.endToken} ${JSON.stringify(dec.decode(g.tokens[g.endToken]))}`);
      row("", `context ${g.contextLength}, up to ${g.maxNewTokens} new tokens, ${g.tokensPerChunk} per stream chunk`);
    }
    row("weights", `${formatBytes(w.plaintextSize)} (${w.plaintextSize} bytes) in ${w.chunkCount} chunk${w.chunkCount > 1 ? "s" : ""} of ${formatBytes(w.chunkSize)}`);
    row("", `key id ${hex(w.keyId)}, stream id ${hex(w.streamId)}`);
    row("", `commitment ${hex(w.commitment)}`);
    row("", `files ${w.files.map((f) => `${f.location} (${f.size} bytes)`).join(", ")}`);
    row("", `${PROGRAM_FILES.weights} ${weights}`);
    row("policy", `version ${m.policy.version}${egress !== undefined ? `, egress limit ${egress} bytes` : ", no egress limit"}${m.policy.extensions.filter((e) => e.type !== 0x8001).map((e) => `, extension 0x${e.type.toString(16)}`).join("")}`);
    if (sigs.length === 0) row("signatures", "none");
    for (const s of sigs) row("signature", `${s.public_key} ${s.valid ? "valid" : "INVALID"}`);
    if (threshold) {
      const who = new Map(threshold.entries.map((e) => [e.publicKey, e.status]));
      row("trust", `${trustPath} (sha256 ${trustHash}): ${threshold.counted} of ${threshold.threshold} required signatures count → the loader would ${threshold.ok ? "accept" : "refuse (SIGNATURE_THRESHOLD)"}`);
      for (const s of sigs) if (who.get(s.public_key) !== "counted") row("", `${s.public_key}: ${who.get(s.public_key)}`);
    }
    ctx.out(`program digest ${digest}`);
  },
};
