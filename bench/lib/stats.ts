// Statistics and table printing shared by bench:load and bench:infer (medians, percentiles,
// aligned markdown tables). No timing here.
export { median } from "../harness.ts";

/** Nearest-rank percentile (p in 0..100) of an unsorted sample. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const k = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[k];
}

export const round = (x: number, digits: number): number => Number(x.toFixed(digits));

/** Prints an aligned markdown table; numbers are right-aligned. */
export function table(header: string[], rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[], isNum: boolean[]) =>
    "| " + r.map((c, i) => (isNum[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(" | ") + " |";
  console.log(line(header, header.map(() => false)));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const [j, r] of cells.entries()) console.log(line(r, rows[j].map((c) => typeof c === "number")));
}

export const nowNs = (): bigint => process.hrtime.bigint();
export const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
export const usSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e3;
