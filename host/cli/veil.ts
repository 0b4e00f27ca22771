// `veil`: the command-line tool (host/cli/README.md). UNTRUSTED host code as a whole; the
// commands that touch secrets say so in their headers (keygen, seal, sign, run) and run on
// their owners' machines. Errors print as one line on stderr (the stack with --verbose); key
// material is never printed.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { COMMON_HELP, UsageError, parseCommand, wantsHelp, type Command, type Context, type Io } from "./args.ts";
import { describeError, verboseDetail } from "./errors.ts";

interface Entry {
  name: string;
  /** One line for `veil --help`. */
  summary: string;
  /** Commands load on use: `veil keygen` does not pay for ONNX and the worker client. */
  load: () => Promise<Command>;
}

export const COMMANDS: readonly Entry[] = [
  { name: "keygen", summary: "create a reviewer signing key or a model data key (key file, mode 0600)", load: async () => (await import("./commands/keygen.ts")).keygen },
  { name: "trust", summary: "write a trust configuration: k of these reviewers must sign a program", load: async () => (await import("./commands/trust.ts")).trust },
  { name: "seal", summary: "split an ONNX model into a program: graph, sealed weights, manifest", load: async () => (await import("./commands/seal.ts")).seal },
  { name: "sign", summary: "add a reviewer's signature to a program (signatures.bin)", load: async () => (await import("./commands/sign.ts")).sign },
  { name: "inspect", summary: "show a program's manifest, signatures and digest", load: async () => (await import("./commands/inspect.ts")).inspect },
  { name: "run", summary: "a local confidential run: attest a worker, release the key, load, infer", load: async () => (await import("./commands/run.ts")).run },
  { name: "gen-mlp", summary: "write a synthetic MLP with about N MiB of weights (tests, benchmarks)", load: async () => (await import("./commands/gen-mlp.ts")).genMlp },
];

/**
 * Commands implemented elsewhere, with their own parsing and help: they take the arguments
 * after the command name and resolve to an exit code.
 */
interface Delegate {
  name: string;
  summary: string;
  main: (argv: string[], io: Io) => Promise<number>;
}

export const DELEGATES: readonly Delegate[] = [
  {
    name: "infer",
    summary: "attest a veil server's workers, then stream a sealed completion from it",
    main: async (argv, io) => (await import("../client/cli.ts")).main(argv, io),
  },
  {
    name: "serve",
    summary: "the confidential inference server and its trusted worker pool",
    main: async (argv) => (await import("../server/main.ts")).serveMain(argv),
  },
  {
    name: "broker",
    summary: "the key broker: serve, add-key, verify-log, gen-key",
    main: async (argv) => (await import("../broker/main.ts")).brokerMain(argv),
  },
];

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { version?: string };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

export function mainHelp(): string {
  const all = [...COMMANDS, ...DELEGATES];
  const width = Math.max(...all.map((c) => c.name.length));
  return `veil ${version()}: confidential inference runtime

Usage: veil <command> [options]     (veil <command> --help for its options)

Commands:
${all.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}

A local run, end to end:
  veil keygen --reviewer alice.key                      # prints alice's public key
  veil keygen --data-key model.key
  veil trust --threshold 1 --reviewer alice.key --out trust.bin
  veil seal model.onnx --data-key model.key --name my-model --version 1 --out prog
  veil sign prog --key alice.key
  veil inspect prog
  veil run prog --trust trust.bin --data-key model.key --input tensors.json

${COMMON_HELP}

Exit status: 0 success, 1 error, 2 bad usage, 3 the loader refused (SPEC §12 code shown).`;
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = argv;
  const print = (s: string) => io.stdout.write(s.endsWith("\n") ? s : `${s}\n`);
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const sub = name === "help" ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    print(sub ? `${(await sub.load()).help}\n\n${COMMON_HELP}` : mainHelp());
    return 0;
  }
  if (name === "--version" || name === "-V") {
    print(version());
    return 0;
  }
  const delegate = DELEGATES.find((c) => c.name === name);
  if (delegate) return delegate.main(rest, io);
  const entry = COMMANDS.find((c) => c.name === name);
  const verbose = rest.includes("--verbose");
  if (!entry) {
    io.stderr.write(`veil: unknown command "${name}" (commands: ${[...COMMANDS, ...DELEGATES].map((c) => c.name).join(", ")}; veil --help)\n`);
    return 2;
  }
  const cmd = await entry.load();
  if (wantsHelp(rest)) {
    print(`${cmd.help}\n\n${COMMON_HELP}`);
    return 0;
  }
  try {
    const { values, positionals } = parseCommand(cmd, rest);
    const json = values.json === true;
    const quiet = values.quiet === true || json;
    const ctx: Context = {
      values, positionals, io, verbose, json,
      out: (line = "") => void io.stdout.write(`${line}\n`),
      note: (line) => void (quiet ? undefined : io.stderr.write(`${line}\n`)),
      warn: (line) => void io.stderr.write(`veil ${cmd.name}: ${line}\n`),
    };
    await cmd.run(ctx);
    return 0;
  } catch (e) {
    const d = describeError(e);
    if (verbose) io.stderr.write(`${verboseDetail(e)}\n`);
    io.stderr.write(`veil ${cmd.name}: ${d.line}${e instanceof UsageError ? ` (veil ${cmd.name} --help)` : ""}\n`);
    return d.exitCode;
  }
}

/** The process entry (host/cli/veil.mjs, or `tsx host/cli/veil.ts`): sets the exit code. */
export async function cli(): Promise<void> {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0); // `veil run … | head`
    throw e;
  });
  process.exitCode = await main(process.argv.slice(2));
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await cli();
