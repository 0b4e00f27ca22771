// Attesters (host/attest/README.md §2, §3): wrap a loader's ReportBody, the loader measurement and
// the worker code hash into Evidence. The SoftwareAttester holds an Ed25519 platform key ON THE
// HOST: it protects against nothing an operator with root can do (README §3) and exists to run
// the protocol in development and tests.
import { ed25519 } from "@noble/curves/ed25519.js";
import { decodeReportBody, toHex, wipe } from "../formats/index.ts";
import { HASH_LEN, PLATFORM_KIND, evidenceBinding, type Evidence, type PlatformKind } from "./evidence.ts";
import { createSecretKeyFile, loadOrCreateSecretKeyFile, readSecretKeyFile } from "./secret-file.ts";

export interface Attester {
  /** The platform_kind of the evidence this attester produces, once known. */
  readonly kind: PlatformKind | undefined;
  /**
   * Evidence for `report` (the loader's ReportBody bytes, §4), the loader measurement and the
   * worker code hash (32 bytes each). The attester checks the lengths and the ReportBody's
   * well-formedness, nothing else: it vouches only that this platform produced the binding.
   */
  attest(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Promise<Evidence>;
}

/** Shared input checks of every attester (the binding re-checks lengths). */
export function checkAttestInputs(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Uint8Array {
  decodeReportBody(report);
  if (measurement.length !== HASH_LEN || workerCodeHash.length !== HASH_LEN) throw new TypeError("measurement and worker code hash must be 32 bytes each");
  return evidenceBinding(report, measurement, workerCodeHash);
}

/**
 * Signs the binding with a local Ed25519 platform key. DEVELOPMENT AND TESTS ONLY: anyone who can
 * read the key (any root operator on this host) can sign any measurement for any report.
 */
export class SoftwareAttester implements Attester {
  readonly kind = PLATFORM_KIND.SOFTWARE;
  readonly publicKey: Uint8Array;
  #seed: Uint8Array;

  /** `seed` is a 32-byte Ed25519 private key (RFC 8032); the attester keeps its own copy. */
  constructor(seed: Uint8Array) {
    if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new TypeError("platform key seed must be 32 bytes");
    this.#seed = Uint8Array.from(seed);
    this.publicKey = ed25519.getPublicKey(this.#seed);
  }

  /** A fresh in-memory platform key. */
  static generate(): SoftwareAttester {
    const seed = ed25519.utils.randomSecretKey();
    try {
      return new SoftwareAttester(seed);
    } finally {
      wipe(seed);
    }
  }

  /**
   * The platform key in `path` (32 raw bytes or 64 hex digits, mode 0600, owned by this user).
   * With `create: true` a missing file is created with a fresh key (mode 0600).
   */
  static fromKeyFile(path: string, opts: { create?: boolean } = {}): SoftwareAttester {
    const seed = opts.create ? loadOrCreateSecretKeyFile(path) : readSecretKeyFile(path);
    try {
      return new SoftwareAttester(seed);
    } finally {
      wipe(seed);
    }
  }

  /** Writes a fresh platform key to `path` (exclusive create, mode 0600) and returns its attester. */
  static createKeyFile(path: string): SoftwareAttester {
    const seed = createSecretKeyFile(path, ed25519.utils.randomSecretKey());
    try {
      return new SoftwareAttester(seed);
    } finally {
      wipe(seed);
    }
  }

  get publicKeyHex(): string {
    return toHex(this.publicKey);
  }

  async attest(report: Uint8Array, measurement: Uint8Array, workerCodeHash: Uint8Array): Promise<Evidence> {
    const binding = checkAttestInputs(report, measurement, workerCodeHash);
    const signature = ed25519.sign(binding, this.#seed);
    return {
      report: Uint8Array.from(report),
      measurement: Uint8Array.from(measurement),
      workerCodeHash: Uint8Array.from(workerCodeHash),
      platform: { kind: PLATFORM_KIND.SOFTWARE, publicKey: Uint8Array.from(this.publicKey), signature },
    };
  }

  /** Wipes the key; later attest calls fail. */
  dispose(): void {
    wipe(this.#seed);
    this.#seed = new Uint8Array(0);
  }

  /** Never print the key. */
  toJSON(): object {
    return { kind: "software", publicKey: this.publicKeyHex };
  }
}
