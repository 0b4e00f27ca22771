// Trusted: the worker's only log sink — one JSON object per line on stderr. It runs beside
// plaintext, so it is deliberately narrow: a field is a number, a boolean or a short string
// (≤ 200 characters, cut beyond); anything else (bytes, objects, errors) is dropped and
// replaced by a marker, so a careless call site cannot print a buffer or an exception
// message that might quote plaintext. Callers pass public facts only: program handles,
// sizes, names from the public manifest, timings, error codes.

export type LogLevel = "quiet" | "error" | "warn" | "info" | "debug";
export type LogValue = string | number | boolean | undefined;
export type LogFields = Record<string, LogValue>;

export interface Logger {
  error(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  debug(event: string, fields?: LogFields): void;
  /** Debug lines are written: per-request call sites build their fields only then. */
  readonly debugEnabled: boolean;
}

const RANK: Record<LogLevel, number> = { quiet: 0, error: 1, warn: 2, info: 3, debug: 4 };
const MAX_STRING = 200;

export function isLogLevel(s: string): s is LogLevel {
  return Object.hasOwn(RANK, s);
}

function clean(fields: LogFields | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  if (!fields) return out;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    if (typeof v === "number" || typeof v === "boolean") out[k] = v;
    else if (typeof v === "string") out[k] = v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…` : v;
    else out[k] = "[dropped: not a public scalar]";
  }
  return out;
}

export function jsonLogger(level: LogLevel, write: (line: string) => void = (l) => void process.stderr.write(l)): Logger {
  const at = RANK[level];
  const emit = (lvl: Exclude<LogLevel, "quiet">, event: string, fields?: LogFields) => {
    if (RANK[lvl] > at) return;
    const line = { t: new Date().toISOString(), level: lvl, src: "veil-worker", pid: process.pid, event, ...clean(fields) };
    write(`${JSON.stringify(line)}\n`);
  };
  return {
    error: (e, f) => emit("error", e, f),
    warn: (e, f) => emit("warn", e, f),
    info: (e, f) => emit("info", e, f),
    debug: (e, f) => emit("debug", e, f),
    debugEnabled: at >= RANK.debug,
  };
}

export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {}, debugEnabled: false };
