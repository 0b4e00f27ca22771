// What a real accelerator returns from measure-weights (SPEC §9.1), for the stand-in
// accelerators of tests and benchmarks: SHA-256 over the weights each program received.
import { createHash, type Hash } from "node:crypto";

export class WeightsMeasure {
  private readonly hashes = new Map<number, Hash>();

  upload(program: number, data: Uint8Array): void {
    let h = this.hashes.get(program);
    if (!h) this.hashes.set(program, (h = createHash("sha256")));
    h.update(data);
  }

  /** The measurement of everything uploaded for `program` (of nothing, if nothing was). */
  finish(program: number): Uint8Array {
    const h = this.hashes.get(program) ?? createHash("sha256");
    this.hashes.delete(program);
    return new Uint8Array(h.digest());
  }

  drop(program: number): void {
    this.hashes.delete(program);
  }
}
