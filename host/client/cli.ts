// `veil infer`: stream a completion from a veil server through the client SDK. Runs on the data
// owner's machine: it holds the prompt and the completion, and prints the completion (what the
// caller asked for) to stdout and nothing else. Status and errors go to stderr, one line each,
// and carry public facts only. `main(argv)` is what `veil infer` dispatches to;
// `tsx host/client/cli.ts …` runs it standalone.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { codeHash } from "../trusted/identity.ts";
import { SKIP_NAMES, type SkipName } from "../attest/index.ts";
import { ClientError, connect, type ClientPolicy, type GenerateOptions } from "./index.ts";

export interface CliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** Read by `--prompt -`; default process.stdin. */
  stdin?: AsyncIterable<Uint8Array | string>;
}

export interface CliOptions {
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

const LOCAL_WASM = fileURLToPath(new URL("../../build/loader.wasm", import.meta.url));
const LOCAL_TRUSTED = fileURLToPath(new URL("../trusted", import.meta.url));

/** SHA-256 of this checkout's build/loader.wasm, when it exists. */
export function localMeasurement(): string | undefined {
  if (!existsSync(LOCAL_WASM)) return undefined;
  return createHash("sha256").update(readFileSync(LOCAL_WASM)).digest("hex");
}

/** The code hash (host/trusted/identity.ts) of this checkout's host/trusted/, when it exists. */
export function localWorkerCodeHash(): string | undefined {
  if (!existsSync(LOCAL_TRUSTED)) return undefined;
  try {
    return Buffer.from(codeHash(LOCAL_TRUSTED)).toString("hex");
  } catch {
    return undefined;
  }
}

export const HELP = `Usage: veil infer --server URL --program NAME --prompt TEXT [options]

Streams a completion from a generate program on a veil server. Before anything is sent the
client attests every worker (SPEC §4.2: platform signature, loader measurement, worker code,
trust configuration, its own fresh nonce) and checks every program's manifest digest (and,
with --trust, its reviewer signatures). The prompt is sealed to a verified loader's key;
tokens are printed to stdout as they arrive. A dropped, reordered, duplicated or cut stream
is an error, never a short answer.

Request:
  --server URL                 the server's base URL (http or https)
  --program NAME               a generate program the server lists
  --prompt TEXT                the prompt; "-" reads it from stdin (arguments are visible
                               to other users of this machine: prefer "-" for secrets)
  --max-tokens N               1..the program's max_new_tokens (default: that maximum)
  --temperature T              0 (greedy, default) .. 10
  --top-k K                    0 (no limit, default) .. vocabulary size
  --seed S                     0..2^64-1: reproducible sampling

Trust policy (nothing is trusted by default):
  --measurement HEX            accepted loader measurement, SHA-256 of loader.wasm; repeatable.
                               Default, when no --measurement is given: the SHA-256 of this
                               checkout's build/loader.wasm, if that file exists.
  --worker-code-hash HEX       accepted trusted-worker code hash; repeatable. Default: the code
                               hash of this checkout's host/trusted/ (host/trusted/README.md).
  --platform-key KEY           trusted software platform key: 64 hex digits, or a file holding
                               them (or the 32 raw bytes); repeatable. Required unless
                               --allow-unverified-quote. Software platform keys are for
                               development only (host/attest/README.md §3).
  --allow-unverified-quote     accept SEV-SNP/TDX evidence whose vendor signature, certificate
                               chain, TCB and launch measurement are NOT verified (warned on
                               every use)
  --trust FILE                 the expected trust configuration (trust.bin): its hash is
                               accepted, and programs must carry k of its reviewers' signatures
  --trust-config-hash HEX      an accepted trust configuration hash, without the file; repeatable
  --insecure-skip CHECK        skip a check (${SKIP_NAMES.join(", ")}); repeatable; warned
                               on every verification
  --retries N                  retries of a retryable failure (503, 504, network); default 3

Other:
  --verbose                    retries and re-attestations on stderr
  -h, --help                   this help

Exit status: 0 success, 1 error, 2 bad usage, 3 the loader refused the request (SPEC §12 code).`;

class UsageError extends Error {}

const HEX64 = /^[0-9a-fA-F]{64}$/;

function hexList(values: string[] | undefined, flag: string): string[] {
  return (values ?? []).map((v) => {
    if (!HEX64.test(v)) throw new UsageError(`${flag} takes 64 hex digits`);
    return v.toLowerCase();
  });
}

function platformKey(v: string): string {
  if (HEX64.test(v)) return v.toLowerCase();
  let b: Buffer;
  try {
    b = readFileSync(v);
  } catch {
    throw new UsageError(`--platform-key ${JSON.stringify(v)} is neither 64 hex digits nor a readable file`);
  }
  const text = b.toString("utf8").trim();
  if (HEX64.test(text)) return text.toLowerCase();
  if (b.length === 32) return b.toString("hex");
  throw new UsageError(`--platform-key file ${JSON.stringify(v)} holds neither 64 hex digits nor 32 raw bytes`);
}

function int(v: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${flag} takes an integer in ${min}..${max}`);
  return Number(v);
}

async function readAll(input: AsyncIterable<Uint8Array | string>): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const c of input) parts.push(typeof c === "string" ? Buffer.from(c, "utf8") : Buffer.from(c));
  const all = Buffer.concat(parts);
  parts.forEach((p) => p.fill(0));
  return new Uint8Array(all.buffer, all.byteOffset, all.length);
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, "; ").trim();

/** Runs `veil infer` with `argv` (the arguments after "infer"); resolves to the exit code. */
export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }, opts: CliOptions = {}): Promise<number> {
  const err = (line: string) => void io.stderr.write(`veil infer: ${oneLine(line)}\n`);
  let printed = false;
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: argv,
        allowPositionals: false,
        strict: true,
        options: {
          server: { type: "string" },
          program: { type: "string" },
          prompt: { type: "string" },
          "max-tokens": { type: "string" },
          temperature: { type: "string" },
          "top-k": { type: "string" },
          seed: { type: "string" },
          measurement: { type: "string", multiple: true },
          "worker-code-hash": { type: "string", multiple: true },
          "platform-key": { type: "string", multiple: true },
          "allow-unverified-quote": { type: "boolean" },
          trust: { type: "string" },
          "trust-config-hash": { type: "string", multiple: true },
          "insecure-skip": { type: "string", multiple: true },
          retries: { type: "string" },
          verbose: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
      });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const v = parsed.values;
    if (v.help) {
      io.stdout.write(`${HELP}\n`);
      return 0;
    }
    for (const f of ["server", "program", "prompt"] as const) if (v[f] === undefined) throw new UsageError(`--${f} is required`);

    const skip = (v["insecure-skip"] ?? []).map((s) => {
      if (!(SKIP_NAMES as readonly string[]).includes(s)) throw new UsageError(`--insecure-skip takes one of ${SKIP_NAMES.join(", ")}`);
      return s as SkipName;
    });
    let measurements = hexList(v.measurement, "--measurement");
    if (measurements.length === 0 && !skip.includes("measurement")) {
      const local = localMeasurement();
      if (!local) throw new UsageError(`no --measurement given and ${LOCAL_WASM} does not exist (npm run build)`);
      measurements = [local];
    }
    let workerHashes = hexList(v["worker-code-hash"], "--worker-code-hash");
    if (workerHashes.length === 0 && !skip.includes("worker_code_hash")) {
      const local = localWorkerCodeHash();
      if (!local) throw new UsageError("no --worker-code-hash given and this checkout has no host/trusted/ to hash");
      workerHashes = [local];
    }
    const platformKeys = (v["platform-key"] ?? []).map(platformKey);
    if (platformKeys.length === 0 && !v["allow-unverified-quote"] && !skip.includes("platform"))
      throw new UsageError("no platform is trusted: give --platform-key, or --allow-unverified-quote for SEV-SNP/TDX quotes");
    let trustConfig: Uint8Array | undefined;
    if (v.trust !== undefined) {
      try {
        trustConfig = new Uint8Array(readFileSync(v.trust));
      } catch {
        throw new UsageError(`--trust ${JSON.stringify(v.trust)} is not a readable file`);
      }
    }
    const tcHashes = hexList(v["trust-config-hash"], "--trust-config-hash");
    if (!trustConfig && tcHashes.length === 0 && !skip.includes("trust_config_hash"))
      throw new UsageError("no trust configuration: give --trust trust.bin (or --trust-config-hash)");

    const gen: GenerateOptions = {};
    gen.maxTokens = int(v["max-tokens"], "--max-tokens", 1, 4096);
    if (v.temperature !== undefined) {
      const t = Number(v.temperature);
      if (!/^\d+(\.\d+)?$/.test(v.temperature) || !(t >= 0 && t <= 10)) throw new UsageError("--temperature takes a number in 0..10");
      gen.temperature = t;
    }
    gen.topK = int(v["top-k"], "--top-k", 0, 65536);
    if (v.seed !== undefined) {
      if (!/^\d{1,20}$/.test(v.seed) || BigInt(v.seed) >= 1n << 64n) throw new UsageError("--seed takes an integer in 0..2^64-1");
      gen.seed = BigInt(v.seed);
    }
    const retries = int(v.retries, "--retries", 0, 100);

    const policy: ClientPolicy = {
      trustedPlatformKeys: platformKeys,
      allowUnverifiedQuote: v["allow-unverified-quote"] === true,
      acceptedMeasurements: measurements,
      acceptedWorkerCodeHashes: workerHashes,
      acceptedTrustConfigHashes: tcHashes,
      skip,
    };
    const logger = { warn: (m: string) => err(m), info: v.verbose ? (m: string) => err(m) : undefined };

    let prompt: Uint8Array | string = v.prompt!;
    if (prompt === "-") prompt = await readAll(io.stdin ?? process.stdin);
    try {
      const client = await connect({ url: v.server!, policy, trustConfig, logger, fetch: opts.fetch, retry: retries === undefined ? undefined : { retries } });
      for (const r of client.rejected) err(`${r.kind} ${r.id} excluded: ${r.code}: ${r.message.replace(/^[A-Z_]+: /, "")}`);
      const info = client.programs().find((p) => p.name === v.program);
      if (info && info.mode !== "generate") throw new UsageError(`program ${JSON.stringify(v.program)} is a tensor program; veil infer streams generate programs`);
      for await (const piece of client.stream(v.program!, prompt, gen)) {
        io.stdout.write(piece);
        printed = true;
      }
      io.stdout.write("\n");
      printed = false;
    } finally {
      if (prompt instanceof Uint8Array) prompt.fill(0);
    }
    return 0;
  } catch (e) {
    if (printed) io.stdout.write("\n");
    if (e instanceof UsageError) {
      err(`${e.message} (veil infer --help)`);
      return 2;
    }
    if (e instanceof ClientError) {
      err(e.message);
      return e.status === 400 && e.number !== 0 ? 3 : 1;
    }
    err(e instanceof Error ? e.message || e.name : String(e));
    return 1;
  }
}

/** Standalone entry: `tsx host/client/cli.ts …`. */
export async function cli(): Promise<void> {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
  const args = process.argv.slice(2);
  process.exitCode = await main(args[0] === "infer" ? args.slice(1) : args);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await cli();
