// The broker's audit log (host/broker/README.md "Audit log"): one canonical JSON line per event,
// hash-chained, appended (O_APPEND) and fsynced before the broker answers. Only public facts are
// ever written: key ids, measurements, trust configuration hashes, nonces, outcomes, reasons.
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { BrokerError } from "./errors.ts";

export const GENESIS = "0".repeat(64);
export const AUDIT_EVENTS = ["release", "refusal", "key_added", "key_removed"] as const;
export type AuditEvent = (typeof AUDIT_EVENTS)[number];
export const AUDIT_OUTCOMES = ["released", "refused", "ok"] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export interface AuditEntry {
  seq: number;
  time: string;
  event: AuditEvent;
  keyId: string | null;
  measurement: string | null;
  trustConfigHash: string | null;
  nonce: string | null;
  outcome: AuditOutcome;
  reason: string | null;
  prev: string;
  hash: string;
}

export type AuditInput = {
  event: AuditEvent;
  outcome: AuditOutcome;
  keyId?: string | null;
  measurement?: string | null;
  trustConfigHash?: string | null;
  nonce?: string | null;
  reason?: string | null;
};

const FIELDS = ["event", "hash", "keyId", "measurement", "nonce", "outcome", "prev", "reason", "seq", "time", "trustConfigHash"] as const;
const HEX = /^[0-9a-f]*$/;
const HEX64 = /^[0-9a-f]{64}$/;
const REASON_MAX = 512;

/**
 * Canonical JSON of a flat object: keys sorted (they are ASCII), no whitespace, values only
 * strings, safe integers or null, each as JSON.stringify writes it.
 */
export function canonicalJson(o: Record<string, string | number | null>): string {
  const parts: string[] = [];
  for (const k of Object.keys(o).sort()) {
    const v = o[k];
    if (!(v === null || typeof v === "string" || (typeof v === "number" && Number.isSafeInteger(v))))
      throw new TypeError(`canonicalJson: field ${k} is not a string, safe integer or null`);
    parts.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
  }
  return `{${parts.join(",")}}`;
}

/** hash = SHA-256(prev as 32 bytes ‖ UTF-8 canonical JSON of the entry without `hash`), in hex. */
export function entryHash(entry: Omit<AuditEntry, "hash">): string {
  const { ...rest } = entry as AuditEntry;
  delete (rest as Partial<AuditEntry>).hash;
  return createHash("sha256")
    .update(Buffer.from(entry.prev, "hex"))
    .update(canonicalJson(rest as unknown as Record<string, string | number | null>), "utf8")
    .digest("hex");
}

const hexOrNull = (v: string | null | undefined, name: string, len?: number): string | null => {
  if (v === undefined || v === null) return null;
  if (typeof v !== "string" || !HEX.test(v) || (len !== undefined && v.length !== len)) throw new TypeError(`audit: ${name} must be lowercase hex${len ? ` of ${len} digits` : ""}`);
  return v;
};

export type AuditVerification =
  | { ok: true; entries: number; head: string }
  | { ok: false; entries: number; head: string; line: number; reason: string };

/** Checks one parsed line's shape; returns a problem or undefined. */
function shapeProblem(o: unknown): string | undefined {
  if (o === null || typeof o !== "object" || Array.isArray(o)) return "not a JSON object";
  const keys = Object.keys(o).sort();
  if (keys.length !== FIELDS.length || keys.some((k, i) => k !== FIELDS[i])) return `fields are ${keys.join(",")}, not ${FIELDS.join(",")}`;
  const e = o as AuditEntry;
  if (!Number.isSafeInteger(e.seq) || e.seq < 1) return "seq is not a positive integer";
  if (typeof e.time !== "string") return "time is not a string";
  if (!(AUDIT_EVENTS as readonly string[]).includes(e.event)) return `unknown event ${JSON.stringify(e.event)}`;
  if (!(AUDIT_OUTCOMES as readonly string[]).includes(e.outcome)) return `unknown outcome ${JSON.stringify(e.outcome)}`;
  for (const f of ["keyId", "measurement", "trustConfigHash", "nonce"] as const) {
    const v = e[f];
    if (v !== null && (typeof v !== "string" || !HEX.test(v))) return `${f} is not hex or null`;
  }
  if (e.reason !== null && typeof e.reason !== "string") return "reason is not a string or null";
  if (typeof e.prev !== "string" || !HEX64.test(e.prev)) return "prev is not 64 hex digits";
  if (typeof e.hash !== "string" || !HEX64.test(e.hash)) return "hash is not 64 hex digits";
  return undefined;
}

/** Verifies the chain of the log text; reports the first broken line (1-based). */
export function verifyAuditText(text: string, opts: { expectedHead?: string; expectedEntries?: number } = {}): AuditVerification {
  let head = GENESIS;
  let n = 0;
  const fail = (line: number, reason: string): AuditVerification => ({ ok: false, entries: n, head, line, reason });
  if (text.length > 0 && !text.endsWith("\n")) {
    const lastLine = text.split("\n").length;
    // The lines before the unterminated one are still checked below; report whichever breaks first.
    const r = verifyAuditText(text.slice(0, text.lastIndexOf("\n") + 1), {});
    if (!r.ok) return r;
    return { ok: false, entries: r.entries, head: r.head, line: lastLine, reason: "the last line is not terminated (a torn write or a truncation)" };
  }
  const lines = text.length === 0 ? [] : text.slice(0, -1).split("\n");
  for (let i = 0; i < lines.length; i++) {
    const ln = i + 1;
    let o: unknown;
    try {
      o = JSON.parse(lines[i]);
    } catch {
      return fail(ln, "not JSON");
    }
    const bad = shapeProblem(o);
    if (bad) return fail(ln, bad);
    const e = o as AuditEntry;
    if (canonicalJson(e as unknown as Record<string, string | number | null>) !== lines[i]) return fail(ln, "not in canonical form (the line was edited)");
    if (e.seq !== n + 1) return fail(ln, `seq ${e.seq} where ${n + 1} was expected (a line was deleted, inserted or moved)`);
    if (e.prev !== head) return fail(ln, "prev is not the hash of the line before (a line was deleted, inserted or moved)");
    if (entryHash(e) !== e.hash) return fail(ln, "hash does not match the entry (the line was edited)");
    head = e.hash;
    n++;
  }
  if (opts.expectedEntries !== undefined && n !== opts.expectedEntries)
    return fail(n + 1, `the log holds ${n} entries, ${opts.expectedEntries} were expected (lines were removed from the end, or added)`);
  if (opts.expectedHead !== undefined && head !== opts.expectedHead)
    return fail(n, "the last entry's hash is not the expected head (the end of the log was cut or rewritten)");
  return { ok: true, entries: n, head };
}

/** Verifies the audit log at `path`. A missing file is an empty log. */
export function verifyAuditLog(path: string, opts: { expectedHead?: string; expectedEntries?: number } = {}): AuditVerification {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    text = "";
  }
  return verifyAuditText(text, opts);
}

/** Appends hash-chained entries to one file. Single writer: one broker process per log. */
export class AuditLog {
  private fd: number | undefined;
  /** Set when a write or fsync failed: the file may end in a torn line, so nothing more is appended. */
  private failed: string | undefined;
  private seq: number;
  private last: string;

  private constructor(
    readonly path: string,
    fd: number,
    seq: number,
    head: string,
    private readonly now: () => Date,
  ) {
    this.fd = fd;
    this.seq = seq;
    this.last = head;
  }

  /** Opens (or creates, mode 0600) the log; refuses to append to a log whose chain is broken. */
  static open(path: string, opts: { now?: () => Date } = {}): AuditLog {
    const v = verifyAuditLog(path);
    if (!v.ok) throw new BrokerError("AUDIT_BROKEN", `${path} line ${v.line}: ${v.reason}`);
    const fd = openSync(path, "a", 0o600);
    return new AuditLog(path, fd, v.entries, v.head, opts.now ?? (() => new Date()));
  }

  /** The hash of the last entry (GENESIS for an empty log): anchor it elsewhere to detect truncation. */
  get head(): string {
    return this.last;
  }

  get entries(): number {
    return this.seq;
  }

  /** Appends one entry and fsyncs; throws when the entry cannot be made durable. */
  append(input: AuditInput): AuditEntry {
    if (this.fd === undefined) throw new BrokerError("BROKER_CLOSED", "the audit log is closed");
    if (this.failed) throw new BrokerError("AUDIT_BROKEN", `an earlier append to ${this.path} failed (${this.failed}); restart after checking the log`);
    if (!(AUDIT_EVENTS as readonly string[]).includes(input.event)) throw new TypeError(`audit: unknown event ${input.event}`);
    if (!(AUDIT_OUTCOMES as readonly string[]).includes(input.outcome)) throw new TypeError(`audit: unknown outcome ${input.outcome}`);
    const reason = input.reason === undefined || input.reason === null ? null : String(input.reason).slice(0, REASON_MAX);
    const body: Omit<AuditEntry, "hash"> = {
      seq: this.seq + 1,
      time: this.now().toISOString(),
      event: input.event,
      keyId: hexOrNull(input.keyId, "keyId", 32),
      measurement: hexOrNull(input.measurement, "measurement", 64),
      trustConfigHash: hexOrNull(input.trustConfigHash, "trustConfigHash", 64),
      nonce: hexOrNull(input.nonce, "nonce", 64),
      outcome: input.outcome,
      reason,
      prev: this.last,
    };
    const entry: AuditEntry = { ...body, hash: entryHash(body) };
    const line = Buffer.from(canonicalJson(entry as unknown as Record<string, string | number | null>) + "\n", "utf8");
    try {
      let off = 0;
      while (off < line.length) off += writeSync(this.fd, line, off, line.length - off);
      fsyncSync(this.fd);
    } catch (e) {
      this.failed = (e as NodeJS.ErrnoException).code ?? "write error";
      throw new BrokerError("AUDIT_BROKEN", `cannot append to ${this.path} (${this.failed})`, { cause: e });
    }
    this.seq = entry.seq;
    this.last = entry.hash;
    return entry;
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
