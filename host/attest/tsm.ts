// ConfigfsTsmAttester (host/attest/README.md §4): asks the Linux configfs-tsm report interface
// (Documentation/ABI/testing/configfs-tsm-report) for a hardware attestation report whose
// REPORT_DATA is the 64-byte evidence binding. It runs inside the confidential guest. It parses
// nothing of the vendor report except the REPORT_DATA location, to check its own result.
import { randomBytes } from "node:crypto";
import { access, mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { equalBytes } from "../formats/index.ts";
import { checkAttestInputs, type Attester } from "./attester.ts";
import { BINDING_LEN, PLATFORM_KIND, TSM_BLOB_MAX, type Evidence, type TsmPlatform } from "./evidence.ts";
import { AttestError } from "./errors.ts";
import { reportDataOf } from "./quote.ts";

export const DEFAULT_TSM_ROOT = "/sys/kernel/config/tsm/report";
/** Linux TSM_REPORT_PRIVLEVEL_MAX. */
export const TSM_PRIVLEVEL_MAX = 3;

/** The few file-system operations the attester uses, so tests can run it against a fake configfs. */
export interface TsmFs {
  mkdir(path: string): Promise<void>;
  /** Removes a report entry (configfs: rmdir of the item directory). */
  rmdir(path: string): Promise<void>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  exists(path: string): Promise<boolean>;
}

/** The real file system (configfs is a file system: mkdir, one write per attribute, read, rmdir). */
export const nodeTsmFs: TsmFs = {
  mkdir: async (p) => void (await mkdir(p)),
  rmdir: (p) => rmdir(p),
  writeFile: (p, d) => writeFile(p, d),
  readFile: async (p) => new Uint8Array(await readFile(p)),
  exists: async (p) => {
    try {
      await access(p);
      return true;
    } catch {
      return false;
    }
  },
};

const KIND_OF_PROVIDER: Readonly<Record<string, TsmPlatform["kind"]>> = {
  sev_guest: PLATFORM_KIND.SEV_SNP_TSM,
  tdx_guest: PLATFORM_KIND.TDX_TSM,
};

export interface ConfigfsTsmOptions {
  /** The report group directory; default /sys/kernel/config/tsm/report. */
  root?: string;
  /** Written to `privlevel` when set (SEV-SNP VMPL); 0..3, at least the provider's privlevel_floor. */
  privlevel?: number;
  fs?: TsmFs;
  /**
   * Attempts when `generation` shows another writer touched our entry between our write and our
   * read (each attempt uses a fresh entry); default 3, after which attest fails with TSM_GENERATION.
   */
  maxAttempts?: number;
  /** Entry names; default "veil-" + 16 random hex digits. */
  entryName?: () => string;
}

const parseGeneration = (b: Uint8Array, path: string): number => {
  const s = Buffer.from(b).toString("latin1").trim();
  if (!/^[0-9]{1,15}$/.test(s)) throw new AttestError("TSM_IO", `${path}: "${s.slice(0, 32)}" is not a generation number`);
  return Number(s);
};

class GenerationConflict extends Error {}

export class ConfigfsTsmAttester implements Attester {
  private readonly root: string;
  private readonly fs: TsmFs;
  private readonly maxAttempts: number;
  private readonly entryName: () => string;
  private readonly privlevel: number | undefined;
  /** Learnt from the first report entry's `provider`. */
  private providerKind: TsmPlatform["kind"] | undefined;

  constructor(opts: ConfigfsTsmOptions = {}) {
    this.root = opts.root ?? DEFAULT_TSM_ROOT;
    this.fs = opts.fs ?? nodeTsmFs;
    this.maxAttempts = opts.maxAttempts ?? 3;
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) throw new TypeError("maxAttempts must be a positive integer");
    this.entryName = opts.entryName ?? (() => `veil-${randomBytes(8).toString("hex")}`);
    if (opts.privlevel !== undefined && !(Number.isInteger(opts.privlevel) && opts.privlevel >= 0 && opts.privlevel <= TSM_PRIVLEVEL_MAX))
      throw new TypeError(`privlevel must be an integer in 0..${TSM_PRIVLEVEL_MAX}`);
    this.privlevel = opts.privlevel;
  }

  /** The platform kind, known once a report entry has shown its provider (after the first attest). */
  get kind(): TsmPlatform["kind"] | undefined {
    return this.providerKind;
  }

  private async io<T>(what: string, path: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof AttestError) throw e;
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new AttestError("TSM_IO", `${what} ${path} failed (${code})`, undefined, { cause: e });
    }
  }

  async attest(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Promise<Evidence> {
    const binding = checkAttestInputs(report, measurement, workerCodeHash);
    if (binding.length !== BINDING_LEN) throw new Error("unreachable: binding is 64 bytes");
    for (let attempt = 1; ; attempt++) {
      try {
        const platform = await this.once(binding);
        return {
          report: Uint8Array.from(report),
          measurement: Uint8Array.from(measurement),
          workerCodeHash: Uint8Array.from(workerCodeHash),
          platform,
        };
      } catch (e) {
        if (!(e instanceof GenerationConflict)) throw e;
        if (attempt >= this.maxAttempts)
          throw new AttestError("TSM_GENERATION", `${e.message}; gave up after ${attempt} attempt(s): another writer is using our report entries`);
      }
    }
  }

  /** One report entry: mkdir, read provider and generation, write, read, re-check generation, rmdir. */
  private async once(binding: Uint8Array): Promise<TsmPlatform> {
    const dir = join(this.root, this.entryName());
    const at = (f: string) => join(dir, f);
    await this.io("mkdir", dir, () => this.fs.mkdir(dir));
    let pending: unknown;
    try {
      const providerPath = at("provider");
      const provider = Buffer.from(await this.io("read", providerPath, () => this.fs.readFile(providerPath))).toString("latin1").trim();
      const kind = KIND_OF_PROVIDER[provider];
      if (kind === undefined) throw new AttestError("TSM_PROVIDER", `configfs-tsm provider "${provider.slice(0, 32)}" is not sev_guest or tdx_guest`);
      this.providerKind = kind;

      const genPath = at("generation");
      const g0 = parseGeneration(await this.io("read", genPath, () => this.fs.readFile(genPath)), genPath);
      let writes = 0;
      if (this.privlevel !== undefined) {
        const p = at("privlevel");
        await this.io("write", p, () => this.fs.writeFile(p, Buffer.from(`${this.privlevel}\n`, "latin1")));
        writes++;
      }
      const inblob = at("inblob");
      await this.io("write", inblob, () => this.fs.writeFile(inblob, binding));
      writes++;

      const outPath = at("outblob");
      const outblob = await this.io("read", outPath, () => this.fs.readFile(outPath));
      const auxPath = at("auxblob");
      const auxblob = (await this.fs.exists(auxPath)) ? await this.io("read", auxPath, () => this.fs.readFile(auxPath)) : new Uint8Array(0);
      const g1 = parseGeneration(await this.io("read", genPath, () => this.fs.readFile(genPath)), genPath);
      // configfs-tsm ABI: "making sure the number of writes matches expectations after reading @outblob".
      if (g1 !== g0 + writes) throw new GenerationConflict(`report entry generation went from ${g0} to ${g1} across our ${writes} write(s)`);

      if (outblob.length < 1 || outblob.length > TSM_BLOB_MAX) throw new AttestError("TSM_IO", `outblob is ${outblob.length} bytes, not 1..${TSM_BLOB_MAX}`);
      if (auxblob.length > TSM_BLOB_MAX) throw new AttestError("TSM_IO", `auxblob is ${auxblob.length} bytes, over ${TSM_BLOB_MAX}`);
      // Self-check: the hardware report must carry our binding where a verifier will look for it.
      if (!equalBytes(reportDataOf(kind, outblob), binding))
        throw new AttestError("QUOTE_BINDING", `the ${provider} report's REPORT_DATA is not the binding this attester wrote`);
      return { kind, provider, outblob: Uint8Array.from(outblob), auxblob: Uint8Array.from(auxblob) };
    } catch (e) {
      pending = e;
      throw e;
    } finally {
      try {
        await this.io("rmdir", dir, () => this.fs.rmdir(dir));
      } catch (e) {
        // The first failure wins; an entry we could not remove is reported when nothing else failed.
        if (pending === undefined) throw e;
      }
    }
  }
}
