// A progress display on stderr for long byte streams (sealing, loading, writing weights).
// UNTRUSTED host code: shows sizes and rates only.
//
// On a TTY: one line redrawn in place, at most ~12 times a second:
//   sealing weights  [██████████░░░░░░░░░░]  52%  532.0 / 1024 MiB  410.3 MiB/s  ETA 1s
// Otherwise (a pipe, a log file, CI): a plain line every `intervalMs` (2 s), and a last one:
//   sealing weights: 52% (532.0 of 1024 MiB, 410.3 MiB/s)
//   sealing weights: done, 1024 MiB in 2.5 s (410.3 MiB/s)
import { formatBytes } from "./args.ts";

export interface ProgressOptions {
  label: string;
  total: number;
  stream: NodeJS.WriteStream;
  /** false: print nothing at all. */
  enabled: boolean;
  /** Plain-line period when the stream is not a TTY (default 2000 ms). */
  intervalMs?: number;
}

const MiB = 1024 * 1024;

/** Shown by default only for streams at least this big (smaller ones finish too fast to matter). */
export const PROGRESS_THRESHOLD = 16 * MiB;

/** --progress forces the display, --no-progress / --quiet / --json hide it; else by size. */
export function progressWanted(values: Record<string, unknown>, total: number): boolean {
  if (values["no-progress"] === true || values.quiet === true || values.json === true) return false;
  if (values.progress === true) return true;
  return total >= PROGRESS_THRESHOLD;
}

export class Progress {
  private readonly started = performance.now();
  private lastDraw = 0;
  private lastLine: number;
  private done = 0;
  private finished = false;
  private readonly tty: boolean;

  constructor(private readonly o: ProgressOptions) {
    this.tty = o.stream.isTTY === true;
    this.lastLine = this.started;
  }

  update(done: number): void {
    if (!this.o.enabled || this.finished) return;
    this.done = done;
    const now = performance.now();
    if (this.tty) {
      if (now - this.lastDraw < 80 && done < this.o.total) return;
      this.lastDraw = now;
      this.o.stream.write(`\r\x1b[K${this.barLine(now)}`);
    } else if (now - this.lastLine >= (this.o.intervalMs ?? 2000)) {
      this.lastLine = now;
      this.o.stream.write(`${this.o.label}: ${this.pct()}% (${this.mib(this.done)} of ${formatBytes(this.o.total)}, ${this.rate(now)})\n`);
    }
  }

  /** The final state; `ok` false leaves the bar where it stopped (an error follows). */
  finish(ok = true): void {
    if (!this.o.enabled || this.finished) return;
    this.finished = true;
    const now = performance.now();
    if (this.tty) {
      this.o.stream.write(`\r\x1b[K${this.barLine(now)}\n`);
    } else if (ok) {
      const secs = (now - this.started) / 1000;
      this.o.stream.write(`${this.o.label}: done, ${formatBytes(this.o.total)} in ${secs.toFixed(1)} s (${this.rate(now)})\n`);
    }
  }

  private pct(): number {
    return this.o.total === 0 ? 100 : Math.floor((100 * this.done) / this.o.total);
  }

  private mib(n: number): string {
    return (n / MiB).toFixed(1);
  }

  private rate(now: number): string {
    const secs = Math.max(1e-3, (now - this.started) / 1000);
    return `${(this.done / MiB / secs).toFixed(1)} MiB/s`;
  }

  private barLine(now: number): string {
    const cols = this.o.stream.columns ?? 80;
    const secs = (now - this.started) / 1000;
    const speed = this.done / Math.max(1e-3, secs);
    const left = speed > 0 && this.done < this.o.total ? Math.ceil((this.o.total - this.done) / speed) : 0;
    const tail = `${String(this.pct()).padStart(3)}%  ${this.mib(this.done)} / ${this.mib(this.o.total)} MiB  ${this.rate(now)}${left > 0 ? `  ETA ${left}s` : ""}`;
    const width = Math.max(10, Math.min(30, cols - this.o.label.length - tail.length - 8));
    const fill = this.o.total === 0 ? width : Math.round((width * this.done) / this.o.total);
    return `${this.o.label}  [${"█".repeat(fill)}${"░".repeat(width - fill)}]  ${tail}`;
  }
}
