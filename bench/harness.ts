// Paired-round benchmarking for a shared, noisy 2-core machine: every contender of a case
// runs in the same round, in rotating order, and a ratio is taken per round. Reports are
// medians over rounds, never single timings.

export interface Contender {
  name: string;
  /** Runs one operation. */
  run: () => void;
}

export interface Case {
  name: string;
  /** Bytes processed per operation, for MB/s; omit for ops/s. */
  bytes?: number;
  contenders: Contender[];
}

export interface CaseResult {
  name: string;
  bytes?: number;
  /** Median seconds per operation, by contender. */
  perOp: Map<string, number>;
  /** Per-round seconds per operation, by contender (same round index across contenders). */
  rounds: Map<string, number[]>;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e9;

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Iterations that take about `target` seconds. */
function calibrate(run: () => void, target: number): number {
  let n = 1;
  for (;;) {
    const t0 = now();
    for (let i = 0; i < n; i++) run();
    const dt = now() - t0;
    if (dt >= target / 4 || n >= 1 << 24) return Math.max(1, Math.ceil((n * target) / Math.max(dt, 1e-9)));
    n *= 4;
  }
}

export function runCase(c: Case, rounds: number, target = 0.05): CaseResult {
  const iters = new Map<string, number>();
  for (const k of c.contenders) {
    k.run(); // warm up
    iters.set(k.name, calibrate(k.run, target));
  }
  const perRound = new Map<string, number[]>(c.contenders.map((k) => [k.name, []]));
  for (let r = 0; r < rounds; r++) {
    const order = c.contenders.map((_, i) => c.contenders[(i + r) % c.contenders.length]);
    for (const k of order) {
      const n = iters.get(k.name)!;
      const t0 = now();
      for (let i = 0; i < n; i++) k.run();
      perRound.get(k.name)!.push((now() - t0) / n);
    }
  }
  const perOp = new Map([...perRound].map(([k, v]) => [k, median(v)]));
  return { name: c.name, bytes: c.bytes, perOp, rounds: perRound };
}

/** Median over rounds of (anchor time / ours time): >1 means ours is faster. */
export function pairedRatio(res: CaseResult, ours: string, anchor: string): number {
  const a = res.rounds.get(anchor)!;
  const o = res.rounds.get(ours)!;
  return median(a.map((t, i) => t / o[i]));
}

export function formatRate(res: CaseResult, name: string): string {
  const t = res.perOp.get(name);
  if (t === undefined) return "—";
  if (res.bytes) return `${(res.bytes / t / 1e6).toFixed(0)} MB/s`;
  return `${(1 / t).toFixed(0)} ops/s`;
}

export function printTable(results: CaseResult[], columns: string[], ours: string): void {
  const header = ["case", ...columns, ...columns.filter((c) => c !== ours).map((c) => `${ours}/${c}`)];
  const rows = results.map((r) => [
    r.name,
    ...columns.map((c) => formatRate(r, c)),
    ...columns
      .filter((c) => c !== ours)
      .map((c) => (r.rounds.has(c) && r.rounds.has(ours) ? `${pairedRatio(r, ours, c).toFixed(2)}×` : "—")),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
  console.log(line(header));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const row of rows) console.log(line(row));
}
