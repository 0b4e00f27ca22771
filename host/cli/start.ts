// `npm start`: the whole confidential inference system on this machine, from a fresh clone.
//
// One process plays, for the demo, parties that are separate in production — each with only its
// own secrets, in its own temporary files:
//   - the model owner and release CI (`veil keygen`, `veil trust`, `veil seal`, `veil sign` by two
//     of three reviewers): the shipped model models/tiny-lm/ sealed into a program;
//   - the platform provider: a software platform key for the workers (development only;
//     host/attest/README.md §3) — created inside host/trusted code, only its public key is seen here;
//   - the key broker (embedded, DEVELOPMENT ONLY: host/server/README.md): holds the data key and
//     releases it to each worker whose evidence verifies, with an audit log;
//   - the untrusted server (host/server) with two trusted workers (host/trusted);
//   - a client (host/client): attests every worker, checks the program's signatures, seals one
//     prompt, and opens the streamed completion over the real HTTP API.
// Then it keeps serving until Ctrl-C (graceful shutdown) and removes its temporary directory.
//
//   PORT=8080 (default; any free port if taken)   VEIL_START_PROMPT="..."   VEIL_START_TOKENS=120
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { connect, type ClientPolicy } from "../client/index.ts";
import { createBroker, verifyAuditLog, type AuditEntry } from "../broker/index.ts";
import { toHex, trustConfigHash } from "../formats/index.ts";
import { GraphBuilder } from "../onnx/build.ts";
import { startServer, type VeilServer } from "../server/index.ts";
import { createPlatformKeyFile } from "../trusted/attest.ts";
import { codeHash } from "../trusted/identity.ts";
import { REPO_ROOT } from "../worker/client.ts";
import { readDataKey } from "./keyfile.ts";
import { main as veil } from "./veil.ts";

const PROGRAM = "tiny-lm";
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);
const say = (s = "") => void process.stdout.write(`${s}\n`);
const step = (s: string) => say(`${bold("▸")} ${s}`);

/** Runs one `veil` CLI command in process; returns its stdout, or throws with its stderr. */
async function run(args: string[]): Promise<string> {
  let out = "";
  let err = "";
  const io = {
    stdout: { write: (s: string) => ((out += s), true) },
    stderr: { write: (s: string) => ((err += s), true) },
  } as unknown as Parameters<typeof veil>[1];
  const code = await veil(args, io);
  if (code !== 0) throw new Error(`veil ${args[0]} failed (exit ${code}): ${err.trim()}`);
  return out.trim();
}

/**
 * The stand-in when models/tiny-lm/model.onnx is not there yet: a generate model built with
 * host/onnx GraphBuilder whose logits spell a fixed sentence by position (token at position n is
 * sentence[n mod length]); its only weights are that table, sealed like any other.
 */
function standInModel(dir: string): { model: string; vocab: string } {
  const sentence = "only the loader sees this sentence in plaintext; the server relays ciphertext. ";
  const chars = [...new Set(" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:'!?-")];
  const tokens = ["<|end|>", ...chars];
  const V = tokens.length;
  const L = sentence.length;
  const table = new Float32Array(L * V);
  for (let i = 0; i < L; i++) table[i * V + tokens.indexOf(sentence[i])] = 8;
  const g = new GraphBuilder("sentence_lm");
  const ids = g.input("input_ids", "int64", [1, "seq"]);
  const n = g.op("Gather", [g.op("Shape", [ids]), g.init("one", "int64", [], new BigInt64Array([1n]))], { axis: 0 });
  const pos = g.op("Mod", [n, g.init("len", "int64", [], new BigInt64Array([BigInt(L)]))]);
  const row = g.op("Gather", [g.init("sentence.logits", "float32", [L, V], table), pos], { axis: 0 });
  g.op("Reshape", [row, g.init("shape", "int64", [3], new BigInt64Array([1n, 1n, BigInt(V)]))], {}, "logits");
  g.output("logits", "float32", [1, 1, V]);
  const model = join(dir, "stand-in.onnx");
  const vocab = join(dir, "stand-in.vocab.json");
  writeFileSync(model, g.bytes());
  writeFileSync(vocab, JSON.stringify({ tokens, end_token: 0, context_length: 256, input: "input_ids", output: "logits", logits: "last", max_new_tokens: 256, tokens_per_chunk: 4 }));
  return { model, vocab };
}

async function freePort(preferred: number): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(0));
    s.listen(preferred, "127.0.0.1", () => s.close(() => resolve(preferred)));
  });
}

async function start(): Promise<void> {
  const t0 = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), "veil-start-"));
  let server: VeilServer | undefined;
  let closeBroker: (() => void) | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (why: string) =>
    (stopping ??= (async () => {
      if (why) say(`\n${bold("▸")} ${why}: finishing in-flight requests, then closing the workers (Ctrl-C again to force)`);
      try {
        await server?.close();
      } finally {
        closeBroker?.();
        rmSync(tmp, { recursive: true, force: true });
      }
      if (why) say(`${bold("▸")} stopped; removed ${tmp}`);
    })());
  let firstSignal = 0;
  const onSignal = (sig: string) => {
    // Ctrl-C reaches this process directly and again through tsx and npm, which pass signals on:
    // the copies within a second are one request to stop gracefully; a later Ctrl-C forces.
    if (stopping) {
      if (sig === "SIGINT" && Date.now() - firstSignal > 1000) {
        rmSync(tmp, { recursive: true, force: true });
        process.exit(130);
      }
      return;
    }
    firstSignal = Date.now();
    void stop(sig).then(() => process.exit(0), () => process.exit(1));
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  try {
    say(bold("veil — confidential inference, all parties on this machine (development setup)"));
    say(dim(`  working directory ${tmp} (removed at exit)`));
    say();

    // 1. The model owner and release CI: reviewers, trust configuration, data key, sealed and signed program.
    const lm = join(REPO_ROOT, "models", "tiny-lm");
    let model = join(lm, "model.onnx");
    let vocab = join(lm, "vocab.json");
    let source = "models/tiny-lm (model.onnx + vocab.json)";
    if (!existsSync(model) || !existsSync(vocab)) {
      ({ model, vocab } = standInModel(tmp));
      source = "a stand-in generate model built with host/onnx GraphBuilder (models/tiny-lm/model.onnx is not in this checkout yet)";
    }
    const keys = join(tmp, "keys");
    mkdirSync(keys, { mode: 0o700 });
    const reviewers = ["alice", "bob", "carol"];
    const reviewerPub: string[] = [];
    for (const r of reviewers) reviewerPub.push(await run(["keygen", "--reviewer", join(keys, `${r}.key`)]));
    const trustPath = join(tmp, "trust.bin");
    await run(["trust", "--threshold", "2", ...reviewers.flatMap((r) => ["--reviewer", join(keys, `${r}.key`)]), "--out", trustPath]);
    const trust = new Uint8Array(readFileSync(trustPath));
    const dataKeyPath = join(keys, "tiny-lm.data.key");
    await run(["keygen", "--data-key", dataKeyPath]);
    const models = join(tmp, "models");
    const programDir = join(models, PROGRAM);
    step(`sealing ${source}`);
    await run(["seal", model, "--data-key", dataKeyPath, "--name", PROGRAM, "--version", "1", "--out", programDir, "--generate", vocab, "--no-progress"]);
    await run(["sign", programDir, "--key", join(keys, "alice.key")]);
    await run(["sign", programDir, "--key", join(keys, "carol.key")]);
    const manifest = new Uint8Array(readFileSync(join(programDir, "manifest.bin")));
    say(`  program ${PROGRAM} v1, digest ${toHex(createHash("sha256").update(manifest).digest())}`);
    say(`  trust configuration: 2 of 3 reviewers (alice, bob, carol); signed by alice and carol`);

    // 2. The platform: a software platform key file for the workers (mode 0600). Development only.
    const platformKeyFile = join(keys, "platform.key");
    const platformKey = toHex(createPlatformKeyFile(platformKeyFile));

    // 3. The key broker (embedded here): what it accepts, and the model's data key.
    const measurement = createHash("sha256").update(readFileSync(join(REPO_ROOT, "build", "loader.wasm"))).digest("hex");
    const workerCode = toHex(codeHash(join(REPO_ROOT, "host", "trusted")));
    const tcHash = toHex(trustConfigHash(trust));
    const policy = { trustedPlatformKeys: [platformKey], acceptedMeasurements: [measurement], acceptedWorkerCodeHashes: [workerCode], acceptedTrustConfigHashes: [tcHash] };
    const logPath = join(tmp, "server.log");
    const log = pino({ name: "veil", level: "info" }, pino.destination({ dest: logPath, sync: false }));
    const brokerDir = join(tmp, "broker");
    const broker = createBroker({ dir: brokerDir, brokerKey: new Uint8Array(randomBytes(32)), policy: { ...policy, logger: { warn: (m) => log.warn(m) } }, log });
    closeBroker = () => broker.close();
    const dk = await readDataKey(dataKeyPath);
    broker.addKey(dk.keyId, dk.dataKey);
    dk.dataKey.fill(0);
    rmSync(dataKeyPath); // the broker's sealed store holds it now

    // 4. The untrusted server and its trusted workers: each is attested by the broker and gets the key.
    step("starting the server with 2 trusted workers (each: attested by the key broker, key released, program loaded)");
    const port = await freePort(Number(process.env.PORT ?? 8080));
    server = await startServer({ models, trust, broker, workers: 2, port, platformKeyFile, logger: log });
    say(`  listening on ${server.url}   ${dim(`(logs: ${logPath})`)}`);

    // 5. A client, over the real HTTP API: attest, check the program, seal, stream.
    const clientPolicy: ClientPolicy = { trustedPlatformKeys: [platformKey], acceptedMeasurements: [measurement], acceptedWorkerCodeHashes: [workerCode] };
    const client = await connect({ url: server.url, policy: clientPolicy, trustConfig: trust, logger: { warn: (m) => log.warn(m) } });
    const prompt = process.env.VEIL_START_PROMPT ?? (source.startsWith("models/") ? "Call me Ishmael. Some years ago, " : "Who sees the prompt? ");
    const maxTokens = Number(process.env.VEIL_START_TOKENS ?? 120);
    step(`one confidential completion through the client SDK (prompt sealed to an attested loader key)`);
    say();
    process.stdout.write(`  ${dim(prompt)}`);
    // Seeded sampling (SPEC §7.5): reproducible, and less repetitive than greedy decoding.
    const it = client.stream(PROGRAM, prompt, { maxTokens, temperature: 0.8, topK: 20, seed: 7n });
    let r = await it.next();
    while (!r.done) {
      process.stdout.write(r.value.replace(/\n/g, "\n  "));
      r = await it.next();
    }
    const summary = r.value;
    say();
    say();

    // 6. What was checked, and by whom.
    const workers = client.workers();
    const prog = client.programs().find((p) => p.name === PROGRAM)!;
    const auditPath = join(brokerDir, "audit.log");
    const audit = verifyAuditLog(auditPath);
    const releases = readFileSync(auditPath, "utf8").trim().split("\n").map((l) => JSON.parse(l) as AuditEntry).filter((e) => e.event === "release");
    say(bold("trust summary"));
    say(`  loader measurement   sha256:${measurement}  (= build/loader.wasm; every worker's evidence states it)`);
    say(`  worker code hash     ${workerCode}  (= host/trusted of this checkout)`);
    if (prog.signatures.checked)
      say(`  reviewer signatures  ${prog.signatures.counted} of ${reviewers.length} valid, threshold ${prog.signatures.threshold}: checked by the client (host/formats checkThreshold) and by each loader at load-program`);
    for (const w of workers)
      say(
        `  attestation ${w.id}       verified by the client with a fresh nonce: platform signature (software key ${w.platformKey?.slice(0, 16)}…), measurement, worker code hash, ` +
          `trust config hash, nonce${w.skipped.length ? `; SKIPPED: ${w.skipped.join(", ")}` : "; nothing skipped"}; loader key id ${w.keyId}`,
      );
    for (const e of releases)
      say(`  key release          broker audit log seq ${e.seq}, hash ${e.hash.slice(0, 16)}…: the data key with key id ${e.keyId} released to a loader with measurement ${String(e.measurement).slice(0, 16)}…`);
    say(`  audit log            ${audit.ok ? `hash chain verified, ${audit.entries} entries, head ${audit.head}` : `BROKEN at line ${audit.line}: ${audit.reason}`}`);
    say(`  completion           ${summary.tokens} tokens in ${summary.chunks} sealed records from worker ${summary.worker}, stop: ${summary.stop}; everything above took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    say();
    say(bold(`serving on ${server.url} — Ctrl-C stops it gracefully`));
    say(`  npx veil infer --server ${server.url} --program ${PROGRAM} --prompt "Call me" --platform-key ${platformKey} --trust ${trustPath}`);
    say(dim(`  (veil infer attests the workers itself: --platform-key is the development platform key's public half;`));
    say(dim(`   the loader measurement and worker code hash default to this checkout's)`));
  } catch (e) {
    process.stderr.write(`veil start: ${(e as Error).message}\n`);
    await stop("");
    process.exit(1);
  }
}

await start();
