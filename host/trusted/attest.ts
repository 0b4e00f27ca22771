// Trusted: the evidence PRODUCER of the trusted worker (host/attest/README.md §1–§4; SPEC §4.1).
// The platform layer binds the loader's ReportBody to what it measured — the loader measurement
// and this worker's code hash — and has the platform vouch for that binding: a software platform
// key (Ed25519, development and tests only) held here, inside the worker, or a hardware report
// from Linux configfs-tsm (SEV-SNP or TDX) requested from inside the confidential guest.
//
// Why trusted: it holds the software platform key (whoever has it can vouch for any loader), and
// it decides which 64 bytes the hardware binds into its report. It is self-contained (Node
// built-ins only) and independent of host/attest, which keeps the strict decoder and
// verifyEvidence for verifiers: the two are separate implementations of host/attest/README.md §1.
//
//   binding  = SHA-512("veil platform evidence v1\0" ‖ SHA-256(report) ‖ measurement ‖ worker_code_hash)
//   Evidence = "veil" "EV" 0x0001 ‖ report[105] ‖ measurement[32] ‖ worker_code_hash[32] ‖ u8 platform_kind ‖
//              (1: platform_public_key[32] ‖ signature[64])
//              (2, 3: u8 n ‖ provider[n] ‖ u16 n ‖ outblob[n] ‖ u16 n ‖ auxblob[n])
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign as edSign,
  type KeyObject,
} from "node:crypto";
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmdirSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";

export const PLATFORM_KIND = { SOFTWARE: 1, SEV_SNP_TSM: 2, TDX_TSM: 3 } as const;
export type PlatformKind = (typeof PLATFORM_KIND)[keyof typeof PLATFORM_KIND];

export const REPORT_BODY_LEN = 105;
export const HASH_LEN = 32;
export const BINDING_LEN = 64;
/** Linux TSM_REPORT_OUTBLOB_MAX: the kernel never returns a larger outblob or auxblob. */
export const TSM_BLOB_MAX = 32 * 1024;
export const TSM_PROVIDER_MAX = 32;
export const DEFAULT_TSM_ROOT = "/sys/kernel/config/tsm/report";
export const TSM_PRIVLEVEL_MAX = 3;

export interface SoftwarePlatform {
  kind: typeof PLATFORM_KIND.SOFTWARE;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

export interface TsmPlatform {
  kind: typeof PLATFORM_KIND.SEV_SNP_TSM | typeof PLATFORM_KIND.TDX_TSM;
  provider: string;
  outblob: Uint8Array;
  auxblob: Uint8Array;
}

export interface Evidence {
  report: Uint8Array;
  measurement: Uint8Array;
  workerCodeHash: Uint8Array;
  platform: SoftwarePlatform | TsmPlatform;
}

/**
 * Why the worker could not produce evidence. Messages are public facts only (paths, errno
 * codes, provider names, sizes) — never key bytes.
 */
export class AttestFailure extends Error {
  override readonly name = "AttestFailure";
  constructor(
    readonly code: "BAD_INPUT" | "TSM_PROVIDER" | "TSM_GENERATION" | "TSM_IO" | "QUOTE_BINDING",
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** A 32-byte secret key file that is missing, too open, or not a key. Names the path and mode only. */
export class SecretFileError extends Error {
  override readonly name = "SecretFileError";
}

const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash("sha256").update(b).digest());
const LABEL = Buffer.from("veil platform evidence v1\0", "latin1");
const MAGIC = Uint8Array.of(0x76, 0x65, 0x69, 0x6c, 0x45, 0x56, 0x00, 0x01); // "veil" "EV" 0x0001

function checkInputs(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): void {
  if (!(report instanceof Uint8Array) || report.length !== REPORT_BODY_LEN) throw new AttestFailure("BAD_INPUT", `report must be ${REPORT_BODY_LEN} bytes`);
  // "veil" "RB" 0x0001: the loader's ReportBody, nothing else, is what a platform vouches for.
  if (Buffer.compare(Buffer.from(report.subarray(0, 8)), Buffer.from("veilRB\0\x01", "latin1")) !== 0)
    throw new AttestFailure("BAD_INPUT", "report is not a ReportBody (magic)");
  if (!(measurement instanceof Uint8Array) || measurement.length !== HASH_LEN) throw new AttestFailure("BAD_INPUT", "measurement must be 32 bytes");
  if (!(workerCodeHash instanceof Uint8Array) || workerCodeHash.length !== HASH_LEN) throw new AttestFailure("BAD_INPUT", "worker code hash must be 32 bytes");
}

/** host/attest/README.md §1.1: the 64 bytes the platform signs or places in REPORT_DATA. */
export function evidenceBinding(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Uint8Array {
  checkInputs(report, measurement, workerCodeHash);
  return new Uint8Array(createHash("sha512").update(LABEL).update(sha256(report)).update(measurement).update(workerCodeHash).digest());
}

const PROVIDER_OF_KIND: Readonly<Record<number, string>> = { 2: "sev_guest", 3: "tdx_guest" };

/** host/attest/README.md §1.2: the canonical bytes of evidence this side produced. */
export function encodeEvidence(ev: Evidence): Uint8Array {
  checkInputs(ev.report, ev.measurement, ev.workerCodeHash);
  const parts: Uint8Array[] = [MAGIC, ev.report, ev.measurement, ev.workerCodeHash];
  const p = ev.platform;
  if (p.kind === PLATFORM_KIND.SOFTWARE) {
    if (p.publicKey.length !== 32 || p.signature.length !== 64) throw new AttestFailure("BAD_INPUT", "software platform: 32-byte key and 64-byte signature");
    parts.push(Uint8Array.of(p.kind), p.publicKey, p.signature);
  } else if (p.kind === PLATFORM_KIND.SEV_SNP_TSM || p.kind === PLATFORM_KIND.TDX_TSM) {
    if (p.provider !== PROVIDER_OF_KIND[p.kind]) throw new AttestFailure("BAD_INPUT", `provider ${JSON.stringify(p.provider)} does not match platform kind ${p.kind}`);
    if (p.outblob.length < 1 || p.outblob.length > TSM_BLOB_MAX) throw new AttestFailure("BAD_INPUT", `outblob is ${p.outblob.length} bytes, not 1..${TSM_BLOB_MAX}`);
    if (p.auxblob.length > TSM_BLOB_MAX) throw new AttestFailure("BAD_INPUT", `auxblob is ${p.auxblob.length} bytes, over ${TSM_BLOB_MAX}`);
    const provider = Buffer.from(p.provider, "latin1");
    const u16 = (n: number) => Uint8Array.of(n >>> 8, n & 0xff);
    parts.push(Uint8Array.of(p.kind, provider.length), provider, u16(p.outblob.length), p.outblob, u16(p.auxblob.length), p.auxblob);
  } else {
    throw new AttestFailure("BAD_INPUT", "unknown platform kind");
  }
  return new Uint8Array(Buffer.concat(parts));
}

export interface Attester {
  /** The platform kind of the evidence this attester produces, once known. */
  readonly kind: PlatformKind | undefined;
  /** Evidence for the loader's ReportBody, the loader measurement and the worker code hash. */
  attest(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Evidence;
}

// ---- secret key files (the software platform key) ----

const HEX64 = /^[0-9a-fA-F]{64}$/;

function parseKey(buf: Buffer, path: string): Uint8Array {
  if (buf.length === 32) return new Uint8Array(buf);
  const text = buf.toString("latin1").replace(/\r?\n$/, "");
  if (HEX64.test(text)) return new Uint8Array(Buffer.from(text, "hex"));
  throw new SecretFileError(`${path}: not a 32-byte key (expected 32 raw bytes or 64 hex digits, found ${buf.length} bytes)`);
}

/** A 32-byte key from `path`: a regular file owned by this user, mode without group/other access. */
export function readSecretKeyFile(path: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new SecretFileError(`${path}: cannot open key file (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SecretFileError(`${path}: not a regular file`);
    if ((st.mode & 0o077) !== 0)
      throw new SecretFileError(`${path}: key file mode is 0${(st.mode & 0o777).toString(8)}; it must not be accessible to group or others (chmod 600)`);
    if (typeof process.getuid === "function" && st.uid !== process.getuid())
      throw new SecretFileError(`${path}: key file is owned by uid ${st.uid}, not by this process (uid ${process.getuid()})`);
    const buf = readFileSync(fd);
    try {
      return parseKey(buf, path);
    } finally {
      buf.fill(0);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Creates `path` holding `key` (default: 32 fresh random bytes), mode 0600, atomically and without
 * replacing anything: the bytes go to a 0600 temporary file beside it, which is then hard-linked
 * to `path` (EEXIST if it exists), so a concurrent reader never sees a partial file.
 */
export function createSecretKeyFile(path: string, key: Uint8Array = new Uint8Array(randomBytes(32))): Uint8Array {
  if (key.length !== 32) throw new SecretFileError("a key file holds exactly 32 bytes");
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", 0o600);
  try {
    try {
      writeSync(fd, key);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SecretFileError(`${path}: cannot create key file (${code ?? "error"})`);
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
  return key;
}

// ---- the software attester ----

const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

function ed25519Key(seed: Uint8Array): { priv: KeyObject; pub: Uint8Array } {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new TypeError("platform key seed must be 32 bytes");
  const der = Buffer.concat([PKCS8_ED25519, seed]);
  try {
    const priv = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
    const spki = createPublicKey(priv).export({ format: "der", type: "spki" });
    return { priv, pub: new Uint8Array(spki.subarray(spki.length - 32)) };
  } finally {
    der.fill(0);
  }
}

/**
 * Signs the binding with an Ed25519 platform key held by this worker. DEVELOPMENT AND TESTS ONLY
 * (host/attest/README.md §3): whoever can read the key file can vouch for any loader.
 */
export class SoftwareAttester implements Attester {
  readonly kind = PLATFORM_KIND.SOFTWARE;
  readonly publicKey: Uint8Array;
  #key: KeyObject | undefined;

  /** `seed`: the 32-byte Ed25519 private key (RFC 8032). The caller keeps (and wipes) its copy. */
  constructor(seed: Uint8Array) {
    const k = ed25519Key(seed);
    this.#key = k.priv;
    this.publicKey = k.pub;
  }

  static generate(): SoftwareAttester {
    const seed = new Uint8Array(randomBytes(32));
    try {
      return new SoftwareAttester(seed);
    } finally {
      seed.fill(0);
    }
  }

  /** The platform key in `path` (mode 0600); with `create`, a missing file is created first. */
  static fromKeyFile(path: string, opts: { create?: boolean } = {}): SoftwareAttester {
    if (opts.create && !existsSync(path)) {
      try {
        createSecretKeyFile(path).fill(0);
      } catch (e) {
        if (!(e instanceof SecretFileError) || !/EEXIST/.test(e.message)) throw e; // a concurrent creator won
      }
    }
    const seed = readSecretKeyFile(path);
    try {
      return new SoftwareAttester(seed);
    } finally {
      seed.fill(0);
    }
  }

  /** Writes a fresh platform key to `path` (no replace, mode 0600) and returns its attester. */
  static createKeyFile(path: string): SoftwareAttester {
    const seed = createSecretKeyFile(path);
    try {
      return new SoftwareAttester(seed);
    } finally {
      seed.fill(0);
    }
  }

  get publicKeyHex(): string {
    return Buffer.from(this.publicKey).toString("hex");
  }

  attest(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Evidence {
    if (!this.#key) throw new AttestFailure("BAD_INPUT", "the platform key was disposed");
    const binding = evidenceBinding(report, measurement, workerCodeHash);
    const signature = new Uint8Array(edSign(null, binding, this.#key));
    return {
      report: Uint8Array.from(report),
      measurement: Uint8Array.from(measurement),
      workerCodeHash: Uint8Array.from(workerCodeHash),
      platform: { kind: PLATFORM_KIND.SOFTWARE, publicKey: Uint8Array.from(this.publicKey), signature },
    };
  }

  dispose(): void {
    this.#key = undefined;
  }

  /** Never print the key. */
  toJSON(): object {
    return { kind: "software", publicKey: this.publicKeyHex };
  }
}

/**
 * Provisions a development platform key: creates `path` (mode 0600, never replacing a file) and
 * returns only its PUBLIC key, for verifiers' policies. The seed is wiped before returning.
 */
export function createPlatformKeyFile(path: string): Uint8Array {
  const a = SoftwareAttester.createKeyFile(path);
  const pub = Uint8Array.from(a.publicKey);
  a.dispose();
  return pub;
}

// ---- REPORT_DATA in vendor reports (host/attest/README.md §4.3), for the attester's self-check ----

const u16le = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
const u32le = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;

/**
 * The 64-byte REPORT_DATA of a SEV-SNP ATTESTATION_REPORT (AMD 56860 Table 22: at 0x50, report
 * 0x4A0 bytes, VERSION 2..5) or a TDX DCAP quote (v4: at 568; v5: at 574, body type 2/584 or
 * 3/648), or undefined when the blob has another shape.
 */
export function reportDataOf(kind: 2 | 3, blob: Uint8Array): Uint8Array | undefined {
  let off: number | undefined;
  if (kind === PLATFORM_KIND.SEV_SNP_TSM) {
    const v = blob.length >= 0x4a0 ? u32le(blob, 0) : 0;
    if (v >= 2 && v <= 5) off = 0x50;
  } else if (blob.length >= 48 && u32le(blob, 4) === 0x81) {
    const version = u16le(blob, 0);
    if (version === 4 && blob.length >= 48 + 584 + 4) off = 568;
    if (version === 5 && blob.length >= 54) {
      const type = u16le(blob, 48);
      const size = u32le(blob, 50);
      const want = type === 2 ? 584 : type === 3 ? 648 : -1;
      if (size === want && blob.length >= 54 + size + 4) off = 574;
    }
  }
  return off === undefined ? undefined : blob.slice(off, off + 64);
}

// ---- the configfs-tsm attester ----

/** The file operations the attester uses (synchronous: the worker runs one request at a time). */
export interface TsmFs {
  mkdir(path: string): void;
  rmdir(path: string): void;
  writeFile(path: string, data: Uint8Array): void;
  readFile(path: string): Uint8Array;
  exists(path: string): boolean;
}

export const nodeTsmFs: TsmFs = {
  mkdir: (p) => void mkdirSync(p),
  rmdir: (p) => rmdirSync(p),
  writeFile: (p, d) => writeFileSync(p, d),
  readFile: (p) => new Uint8Array(readFileSync(p)),
  exists: (p) => existsSync(p),
};

export interface ConfigfsTsmOptions {
  /** The report group directory; default /sys/kernel/config/tsm/report. */
  root?: string;
  /** Written to `privlevel` when set (SEV-SNP VMPL), 0..3. */
  privlevel?: number;
  fs?: TsmFs;
  /** Attempts when another writer touched our entry (generation moved); default 3. */
  maxAttempts?: number;
  /** Entry names; default "veil-" + 16 random hex digits. */
  entryName?: () => string;
}

const KIND_OF_PROVIDER: Readonly<Record<string, TsmPlatform["kind"]>> = { sev_guest: 2, tdx_guest: 3 };

class GenerationConflict extends Error {}

/**
 * Asks Linux configfs-tsm (Documentation/ABI/testing/configfs-tsm-report) for a hardware report
 * whose REPORT_DATA is the binding: mkdir a private entry, read provider and generation, write
 * privlevel (optional) and inblob, read outblob (and auxblob), re-read generation (it must have
 * moved by exactly our writes, else retry with a fresh entry), self-check REPORT_DATA, rmdir —
 * always, on every path.
 */
export class ConfigfsTsmAttester implements Attester {
  private readonly root: string;
  private readonly fs: TsmFs;
  private readonly maxAttempts: number;
  private readonly entryName: () => string;
  private readonly privlevel: number | undefined;
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

  get kind(): TsmPlatform["kind"] | undefined {
    return this.providerKind;
  }

  private io<T>(what: string, path: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof AttestFailure) throw e;
      throw new AttestFailure("TSM_IO", `${what} ${path} failed (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
  }

  attest(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Evidence {
    const binding = evidenceBinding(report, measurement, workerCodeHash);
    for (let attempt = 1; ; attempt++) {
      try {
        const platform = this.once(binding);
        return { report: Uint8Array.from(report), measurement: Uint8Array.from(measurement), workerCodeHash: Uint8Array.from(workerCodeHash), platform };
      } catch (e) {
        if (!(e instanceof GenerationConflict)) throw e;
        if (attempt >= this.maxAttempts)
          throw new AttestFailure("TSM_GENERATION", `${e.message}; gave up after ${attempt} attempt(s): another writer is using our report entries`);
      }
    }
  }

  private generation(path: string): number {
    const s = Buffer.from(this.io("read", path, () => this.fs.readFile(path))).toString("latin1").trim();
    if (!/^[0-9]{1,15}$/.test(s)) throw new AttestFailure("TSM_IO", `${path}: not a generation number`);
    return Number(s);
  }

  private once(binding: Uint8Array): TsmPlatform {
    const dir = join(this.root, this.entryName());
    const at = (f: string) => join(dir, f);
    this.io("mkdir", dir, () => this.fs.mkdir(dir));
    let failed = false;
    try {
      const providerPath = at("provider");
      const provider = Buffer.from(this.io("read", providerPath, () => this.fs.readFile(providerPath))).toString("latin1").trim();
      const kind = KIND_OF_PROVIDER[provider];
      if (kind === undefined) throw new AttestFailure("TSM_PROVIDER", `configfs-tsm provider "${provider.slice(0, TSM_PROVIDER_MAX).replace(/[^a-z0-9_]/g, "?")}" is not sev_guest or tdx_guest`);
      this.providerKind = kind;
      const genPath = at("generation");
      const g0 = this.generation(genPath);
      let writes = 0;
      if (this.privlevel !== undefined) {
        const p = at("privlevel");
        this.io("write", p, () => this.fs.writeFile(p, Buffer.from(`${this.privlevel}\n`, "latin1")));
        writes++;
      }
      const inblob = at("inblob");
      this.io("write", inblob, () => this.fs.writeFile(inblob, binding));
      writes++;
      const outPath = at("outblob");
      const outblob = this.io("read", outPath, () => this.fs.readFile(outPath));
      const auxPath = at("auxblob");
      const auxblob = this.fs.exists(auxPath) ? this.io("read", auxPath, () => this.fs.readFile(auxPath)) : new Uint8Array(0);
      const g1 = this.generation(genPath);
      if (g1 !== g0 + writes) throw new GenerationConflict(`report entry generation went from ${g0} to ${g1} across our ${writes} write(s)`);
      if (outblob.length < 1 || outblob.length > TSM_BLOB_MAX) throw new AttestFailure("TSM_IO", `outblob is ${outblob.length} bytes, not 1..${TSM_BLOB_MAX}`);
      if (auxblob.length > TSM_BLOB_MAX) throw new AttestFailure("TSM_IO", `auxblob is ${auxblob.length} bytes, over ${TSM_BLOB_MAX}`);
      const rd = reportDataOf(kind, outblob);
      if (!rd || Buffer.compare(Buffer.from(rd), Buffer.from(binding)) !== 0)
        throw new AttestFailure("QUOTE_BINDING", `the ${provider} report's REPORT_DATA is not the binding this attester wrote`);
      return { kind, provider, outblob: Uint8Array.from(outblob), auxblob: Uint8Array.from(auxblob) };
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      try {
        this.io("rmdir", dir, () => this.fs.rmdir(dir));
      } catch (e) {
        if (!failed) throw e; // the first failure wins
      }
    }
  }
}

// ---- what the worker uses ----

/**
 * The worker's evidence source: its attester, bound to its own measurement and code hash. Only
 * the report (from the loader) varies per call.
 */
export class WorkerEvidence {
  constructor(
    private readonly attester: Attester,
    private readonly measurement: Uint8Array,
    private readonly codeHash: Uint8Array,
  ) {}

  /** Public facts for hello: the attester's kind and, for software, its public key. */
  describe(): Record<string, string> {
    if (this.attester instanceof SoftwareAttester) return { attester: "software", platformKey: this.attester.publicKeyHex };
    return { attester: "tsm" };
  }

  evidence(report: Uint8Array): Uint8Array {
    return encodeEvidence(this.attester.attest(report, this.measurement, this.codeHash));
  }
}
