// Argument parsing and the error types of the `veil` CLI. UNTRUSTED host code: public data only.
import { parseArgs } from "node:util";

/** A failure the CLI reports as one line; `exitCode` 1 by default. */
export class CliError extends Error {
  override readonly name: string = "CliError";
  constructor(message: string, readonly exitCode = 1, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Bad command line: exit code 2, with a pointer to `--help`. */
export class UsageError extends CliError {
  override readonly name = "UsageError";
  constructor(message: string) {
    super(message, 2);
  }
}

/** The loader refused (SPEC §12 code): exit code 3. */
export const LOADER_REFUSED = 3;

export type OptionSpec = { type: "string" | "boolean"; multiple?: boolean; short?: string };

export interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export interface Context {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  io: Io;
  verbose: boolean;
  json: boolean;
  /** Writes a line to stdout. */
  out(line?: string): void;
  /** Writes a status line to stderr (suppressed by --quiet and --json). */
  note(line: string): void;
  /** A warning on stderr (always shown). */
  warn(line: string): void;
}

export interface Command {
  name: string;
  /** The full `veil <name> --help` text. */
  help: string;
  options: Record<string, OptionSpec>;
  /** Positional arguments: [min, max]. */
  positionals: [number, number];
  run(ctx: Context): Promise<void>;
}

/** Options every command takes. */
export const COMMON_OPTIONS: Record<string, OptionSpec> = {
  help: { type: "boolean", short: "h" },
  verbose: { type: "boolean" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
};

export const COMMON_HELP = `Common options:
  -h, --help       this help
  --json           machine-readable output on stdout (one JSON document)
  -q, --quiet      no status lines or progress on stderr
  --verbose        stack traces on errors; the worker's log lines on stderr`;

/** True when argv asks for help before any `--`. */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === "--") return false;
    if (a === "--help" || a === "-h") return true;
  }
  return false;
}

export function parseCommand(cmd: Command, argv: string[]): { values: Context["values"]; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...cmd.options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(parseArgsMessage(e));
  }
  const [min, max] = cmd.positionals;
  const n = parsed.positionals.length;
  if (n < min) throw new UsageError(`missing argument${min - n > 1 ? "s" : ""}`);
  if (n > max) throw new UsageError(`unexpected argument "${parsed.positionals[max]}"`);
  return { values: parsed.values as Context["values"], positionals: parsed.positionals };
}

/** node:util parseArgs messages, shortened to one plain line. */
function parseArgsMessage(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const msg = err.message ?? String(e);
  const opt = msg.match(/'(-[^' ]+)/)?.[1];
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${opt ?? msg}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return msg.includes("argument missing") ? `option ${opt} needs a value` : `option ${opt} takes no value`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${msg.match(/'([^']*)'/)?.[1] ?? ""}`.trim();
    default:
      return msg.split("\n")[0];
  }
}

// ---- typed option accessors ---------------------------------------------------------------

export function str(ctx: Context, name: string): string | undefined {
  const v = ctx.values[name];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new UsageError(`option --${name} needs a value`);
  return v;
}

export function required(ctx: Context, name: string, what = "a value"): string {
  const v = str(ctx, name);
  if (v === undefined || v === "") throw new UsageError(`--${name} is required (${what})`);
  return v;
}

export function list(ctx: Context, name: string): string[] {
  const v = ctx.values[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [String(v)];
}

export const flag = (ctx: Context, name: string): boolean => ctx.values[name] === true;

/** A decimal integer in [min, max]. */
export function intOption(ctx: Context, name: string, min: number, max: number, dflt?: number): number | undefined {
  const s = str(ctx, name);
  if (s === undefined) return dflt;
  if (!/^\d+$/.test(s)) throw new UsageError(`--${name} ${s}: not a whole number`);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} ${s}: not in ${min}..${max}`);
  return n;
}

/** A decimal number in [min, max]. */
export function numberOption(ctx: Context, name: string, min: number, max: number): number | undefined {
  const s = str(ctx, name);
  if (s === undefined) return undefined;
  const n = /^[+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s) ? Number(s) : NaN;
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} ${s}: not a number in ${min}..${max}`);
  return n;
}

/** A u64 as a bigint in [min, max]. */
export function bigOption(ctx: Context, name: string, min: bigint, max: bigint): bigint | undefined {
  const s = str(ctx, name);
  if (s === undefined) return undefined;
  if (!/^\d{1,20}$/.test(s)) throw new UsageError(`--${name} ${s}: not a whole number`);
  const n = BigInt(s);
  if (n < min || n > max) throw new UsageError(`--${name} ${s}: not in ${min}..${max}`);
  return n;
}

const UNITS: Record<string, number> = {
  "": 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
};

/** A byte size: "65536", "64KiB", "1MiB", "1.5MB" (K, M, G alone are binary). */
export function parseSize(s: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(s.trim());
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what} "${s}": not a byte size (e.g. 65536, 64KiB, 1MiB)`);
  return n;
}

// ---- formatting ---------------------------------------------------------------------------

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/** JSON with bigints as decimal strings and Uint8Arrays as hex. */
export function toJson(value: unknown, indent = 2): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? hex(v) : v), indent);
}
