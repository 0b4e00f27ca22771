// Broker nonces (host/broker/README.md "Nonces"): 32 random bytes per attestation, single use,
// valid for a short lifetime, in a bounded map. Nonces are public values; they make a release
// fresh (SPEC §4.2 rule 4), so an old report and evidence cannot be replayed to get a key again.
import { randomBytes } from "node:crypto";
import { toHex } from "../formats/index.ts";
import { BrokerError } from "./errors.ts";

export interface NonceOptions {
  /** Lifetime of an issued nonce in ms; default 60 000. */
  ttlMs?: number;
  /** Most nonces tracked at once (issued and used-but-unexpired); default 10 000. */
  max?: number;
  /** Milliseconds clock; default Date.now. */
  now?: () => number;
}

interface Entry {
  expires: number;
  used: boolean;
}

/**
 * Issued nonces in insertion order. When full, expired entries are dropped first, then the oldest
 * entries (those nearest to expiry): a flood of nonce requests can push out a legitimate client's
 * nonce (it then gets NONCE_UNKNOWN and retries), but memory stays bounded.
 */
export class NonceTracker {
  private readonly map = new Map<string, Entry>();
  readonly ttlMs: number;
  readonly max: number;
  private readonly now: () => number;
  evicted = 0;

  constructor(opts: NonceOptions = {}) {
    this.ttlMs = opts.ttlMs ?? 60_000;
    this.max = opts.max ?? 10_000;
    this.now = opts.now ?? Date.now;
    if (!(this.ttlMs > 0) || !Number.isInteger(this.max) || this.max < 1) throw new TypeError("nonce ttlMs and max must be positive");
  }

  get size(): number {
    return this.map.size;
  }

  private sweep(t: number): void {
    // Entries are in issue order and all share one lifetime, so the expired ones are at the front.
    // An expired nonce is kept one more lifetime so that a late client hears NONCE_EXPIRED.
    for (const [k, e] of this.map) {
      if (e.expires + this.ttlMs > t) break;
      this.map.delete(k);
    }
  }

  issue(): Uint8Array {
    const t = this.now();
    this.sweep(t);
    while (this.map.size >= this.max) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
      this.evicted++;
    }
    const nonce = new Uint8Array(randomBytes(32));
    this.map.set(toHex(nonce), { expires: t + this.ttlMs, used: false });
    return nonce;
  }

  /**
   * Marks `nonce` used, whatever the outcome of the release it comes with; throws NONCE_UNKNOWN,
   * NONCE_EXPIRED or NONCE_REUSED. A nonce is remembered (used or not) for two lifetimes after
   * issue, or until evicted, then forgotten: NONCE_UNKNOWN.
   */
  consume(nonce: Uint8Array): void {
    if (!(nonce instanceof Uint8Array) || nonce.length !== 32) throw new BrokerError("BAD_REQUEST", "a nonce is 32 bytes");
    const k = toHex(nonce);
    const e = this.map.get(k);
    const t = this.now();
    if (!e) throw new BrokerError("NONCE_UNKNOWN", "this broker did not issue this nonce (or no longer remembers it)");
    if (e.used) throw new BrokerError("NONCE_REUSED", "this nonce was already used; ask for a new one");
    e.used = true;
    if (e.expires <= t) throw new BrokerError("NONCE_EXPIRED", `this nonce expired (nonces live ${this.ttlMs} ms); ask for a new one`);
  }

  clear(): void {
    this.map.clear();
  }
}
