// Turns any error into the one line the `veil` CLI prints, and its exit code. UNTRUSTED host
// code: messages carry public facts only (paths, codes, field names), never key material.
// Error classes are recognised by name, so that this module (loaded by every command) does not
// pull in the formats, ONNX and worker modules.
import { CliError, LOADER_REFUSED } from "./args.ts";

type Named = Error & { code?: unknown; kind?: unknown };
const named = (e: unknown, name: string): e is Named => e instanceof Error && e.name === name;

export interface Described {
  line: string;
  exitCode: number;
}

const FS_REASONS: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
  EEXIST: "already exists",
  ENOSPC: "no space left on device",
  EROFS: "read-only file system",
};

/** One line, no stack: the message with newlines folded. */
const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, "; ").trim();

export function describeError(e: unknown): Described {
  if (e instanceof CliError) return { line: oneLine(e.message), exitCode: e.exitCode };
  if (named(e, "WorkerError")) return { line: oneLine(e.message), exitCode: e.kind === "loader" ? LOADER_REFUSED : 1 };
  // host/formats VeilFormatError (SPEC §12 name) and host/onnx OnnxError: the code after the message
  if (named(e, "VeilFormatError") || named(e, "OnnxError")) return { line: oneLine(`${e.message} [${String(e.code)}]`), exitCode: 1 };
  const sys = e as NodeJS.ErrnoException;
  if (sys && typeof sys.code === "string" && FS_REASONS[sys.code] && sys.path) {
    const verb = sys.syscall === "open" || sys.syscall === "read" ? "cannot open" : `cannot ${sys.syscall ?? "access"}`;
    return { line: `${verb} ${sys.path}: ${FS_REASONS[sys.code]}`, exitCode: 1 };
  }
  if (e instanceof Error) return { line: oneLine(e.message || e.name), exitCode: 1 };
  return { line: oneLine(String(e)), exitCode: 1 };
}

/** The stack and cause chain, for --verbose. */
export function verboseDetail(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur !== undefined && depth < 5; depth++) {
    parts.push(cur instanceof Error ? (cur.stack ?? `${cur.name}: ${cur.message}`) : String(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
    if (cur !== undefined) parts.push("caused by:");
  }
  return parts.join("\n");
}
