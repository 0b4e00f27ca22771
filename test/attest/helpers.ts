// Shared helpers of the attestation tests: ReportBodies, synthetic vendor reports and quotes laid
// out per the offsets host/attest/quote.ts cites, and a fake configfs-tsm "kernel".
import { createHash, randomBytes } from "node:crypto";
import { dirname, basename } from "node:path";
import * as F from "../../host/formats/index.ts";
import { SNP, TDX } from "../../host/attest/quote.ts";
import type { TsmFs } from "../../host/trusted/attest.ts";

export const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
export const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash("sha256").update(b).digest());
export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** A well-formed ReportBody for a random loader key. */
export function makeReport(opts: { trustConfigHash?: Uint8Array; nonce?: Uint8Array } = {}): Uint8Array {
  const kp = F.generateKeyPair();
  return F.encodeReportBody(F.buildReportBody(kp.publicKey, opts.trustConfigHash ?? rand(32), opts.nonce ?? rand(32)));
}

const le32 = (b: Uint8Array, o: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(o, v, true);
const le16 = (b: Uint8Array, o: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint16(o, v, true);

/** A SEV-SNP ATTESTATION_REPORT-shaped blob (0x4A0 bytes) with `reportData` at 0x50; other fields random. */
export function snpReport(reportData: Uint8Array, version = 2): Uint8Array {
  const r = rand(SNP.REPORT_SIZE);
  le32(r, 0, version);
  r.set(reportData, SNP.REPORT_DATA_OFFSET);
  return r;
}

/** A TDX DCAP quote v4 (header 48, TD report body 584, signature_data_len, signature data). */
export function tdxQuoteV4(reportData: Uint8Array, sigLen = 64): Uint8Array {
  const q = rand(48 + 584 + 4 + sigLen);
  le16(q, 0, 4);
  le16(q, 2, 2);
  le32(q, 4, TDX.TEE_TYPE_TDX);
  q.set(reportData, 48 + 520);
  le32(q, 48 + 584, sigLen);
  return q;
}

/** A TDX DCAP quote v5 (header 48, type u16, size u32, body, signature_data_len, signature data). */
export function tdxQuoteV5(reportData: Uint8Array, bodyType: 2 | 3 = 3, sigLen = 64): Uint8Array {
  const size = bodyType === 2 ? 584 : 648;
  const q = rand(54 + size + 4 + sigLen);
  le16(q, 0, 5);
  le16(q, 2, 2);
  le32(q, 4, TDX.TEE_TYPE_TDX);
  le16(q, 48, bodyType);
  le32(q, 50, size);
  q.set(reportData, 54 + 520);
  le32(q, 54 + size, sigLen);
  return q;
}

export interface FakeEntry {
  inblob?: Uint8Array;
  privlevel?: string;
  generation: number;
  outblob?: Uint8Array;
  auxblob?: Uint8Array;
  readGeneration: number;
}

/**
 * An in-memory configfs-tsm (synchronous, as the worker-side attester calls it) following drivers/virt/coco/guest/report.c: mkdir creates an entry;
 * each write to inblob or privlevel increments `generation`; reading outblob (or auxblob)
 * regenerates the report when the write generation moved; rmdir drops the entry.
 */
export class FakeConfigfs implements TsmFs {
  readonly entries = new Map<string, FakeEntry>();
  readonly removed: string[] = [];
  readonly log: string[] = [];
  /** Called after every successful operation, to inject concurrent writers. */
  after?: (op: string, path: string, fs: FakeConfigfs) => void;
  auxblob: Uint8Array | undefined;

  constructor(
    readonly root: string,
    public provider: string,
    /** The "hardware": builds the outblob for an inblob. */
    public makeOutblob: (inblob: Uint8Array, privlevel: string | undefined) => Uint8Array,
  ) {}

  private entry(path: string): [FakeEntry, string] {
    const dir = dirname(path);
    const e = this.entries.get(dir);
    if (!e) throw Object.assign(new Error(`ENOENT ${path}`), { code: "ENOENT" });
    return [e, basename(path)];
  }

  mkdir(path: string) {
    if (dirname(path) !== this.root) throw Object.assign(new Error(`ENOENT ${path}`), { code: "ENOENT" });
    if (this.entries.has(path)) throw Object.assign(new Error(`EEXIST ${path}`), { code: "EEXIST" });
    this.entries.set(path, { generation: 0, readGeneration: 0 });
    this.log.push(`mkdir ${basename(path)}`);
    this.after?.("mkdir", path, this);
  }

  rmdir(path: string) {
    if (!this.entries.delete(path)) throw Object.assign(new Error(`ENOENT ${path}`), { code: "ENOENT" });
    this.removed.push(path);
    this.log.push(`rmdir ${basename(path)}`);
    this.after?.("rmdir", path, this);
  }

  writeFile(path: string, data: Uint8Array) {
    const [e, f] = this.entry(path);
    if (f === "inblob") {
      if (data.length > 64) throw Object.assign(new Error("EINVAL"), { code: "EINVAL" });
      e.inblob = Uint8Array.from(data);
    } else if (f === "privlevel") e.privlevel = Buffer.from(data).toString("latin1");
    else throw Object.assign(new Error(`EACCES ${path}`), { code: "EACCES" });
    e.generation++;
    this.log.push(`write ${f}`);
    this.after?.("write", path, this);
  }

  readFile(path: string): Uint8Array {
    const [e, f] = this.entry(path);
    let out: Uint8Array;
    if (f === "provider") out = Buffer.from(`${this.provider}\n`);
    else if (f === "generation") out = Buffer.from(`${e.generation}\n`);
    else if (f === "outblob" || f === "auxblob") {
      if (!e.inblob) throw Object.assign(new Error("EINVAL"), { code: "EINVAL" });
      if (!e.outblob || e.readGeneration !== e.generation) {
        e.outblob = this.makeOutblob(e.inblob, e.privlevel);
        e.auxblob = this.auxblob ?? new Uint8Array(0);
        e.readGeneration = e.generation;
      }
      out = f === "outblob" ? e.outblob : e.auxblob!;
    } else throw Object.assign(new Error(`ENOENT ${path}`), { code: "ENOENT" });
    this.log.push(`read ${f}`);
    this.after?.("read", path, this);
    return Uint8Array.from(out);
  }

  exists(path: string): boolean {
    const e = this.entries.get(dirname(path));
    if (!e) return false;
    const f = basename(path);
    return ["provider", "generation", "inblob", "outblob", "privlevel"].includes(f) || (f === "auxblob" && this.auxblob !== undefined);
  }
}
