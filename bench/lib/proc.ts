// Process plumbing for the benchmarks: /proc memory readings, temporary directories and
// child processes that are always cleaned up (normal end, exception, Ctrl-C).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync, type ChildProcess } from "node:child_process";

export const MiB = 2 ** 20;

export interface Mem {
  /** Current resident set, bytes. */
  rss: number;
  /** Peak resident set since the process started (VmHWM), bytes. */
  hwm: number;
}

/** VmRSS and VmHWM of a live process, from /proc/<pid>/status. */
export function procMem(pid: number | "self"): Mem {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

const cleanups = new Set<() => void>();
let hooked = false;

function hook(): void {
  if (hooked) return;
  hooked = true;
  const runAll = () => {
    for (const f of [...cleanups]) {
      try {
        f();
      } catch {
        // best effort at exit
      }
    }
    cleanups.clear();
  };
  process.on("exit", runAll);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      runAll();
      process.exit(130);
    });
  }
}

/** Registers `f` to run at exit (also on Ctrl-C); returns a function that runs it now, once. */
export function atExit(f: () => void): () => void {
  hook();
  let done = false;
  const once = () => {
    if (done) return;
    done = true;
    cleanups.delete(once);
    f();
  };
  cleanups.add(once);
  return once;
}

/** A temporary directory removed at exit (or earlier by calling cleanup). */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: atExit(() => rmSync(dir, { recursive: true, force: true })) };
}

/** Kills `child` (by its pid) at exit unless it has exited by then. */
export function ownChild(child: ChildProcess): void {
  const stop = atExit(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  child.once("exit", stop);
}

let clkTck: number | undefined;

/** CPU time (user + system, all threads) a live process has used so far, in ms. */
export function procCpuMs(pid: number | "self"): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / clkTck;
}
