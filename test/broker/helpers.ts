// Shared helpers of the broker tests: a REAL loader (build/loader.wasm through LoaderInstance)
// with a trivial accelerator, a software attester, and a broker in a temp directory.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SoftwareAttester, encodeEvidence } from "../../host/attest/index.ts";
import { createBroker, type Broker, type BrokerOptions, type BrokerPolicy } from "../../host/broker/index.ts";
import * as F from "../../host/formats/index.ts";
import { LoaderInstance, type Accelerator } from "../../host/trusted/loader-instance.ts";
import { WeightsMeasure } from "../helpers/measure.ts";

export const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
export const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash("sha256").update(b).digest());
export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

export const WASM_PATH = fileURLToPath(new URL("../../build/loader.wasm", import.meta.url));
let wasmBytes: Uint8Array | undefined;
export const wasm = (): Uint8Array => (wasmBytes ??= new Uint8Array(readFileSync(WASM_PATH)));
/** The loader measurement: SHA-256 of the exact loader.wasm bytes. */
export const measurement = (): Uint8Array => sha256(wasm());
/** Stands in for the trusted worker's code hash (host/trusted's identity is another engineer's). */
export const WORKER_CODE_HASH = sha256(new TextEncoder().encode("veil test worker code"));

/** Key release needs no accelerator work: every call succeeds, run has nothing to return. */
const measure = new WeightsMeasure();
export const nullAccelerator: Accelerator = {
  createProgram() {},
  uploadWeights: (program, _offset, data) => measure.upload(program, data),
  measureWeights: (program) => measure.finish(program),
  finishWeights() {},
  run: () => 64,
  dropProgram: (program) => measure.drop(program),
};

export interface Loader {
  L: LoaderInstance;
  trustConfig: Uint8Array;
  trustConfigHash: Uint8Array;
}

export function makeTrustConfig(): Uint8Array {
  const reviewers = [F.generateReviewerKey(), F.generateReviewerKey()];
  return F.encodeTrustConfig({ threshold: 1, reviewers: reviewers.map((r) => r.publicKey) }, { sort: true });
}

/** A real loader instance, initialised with `trustConfig`. */
export function makeLoader(trustConfig = makeTrustConfig()): Loader {
  const L = LoaderInstance.create(wasm(), { accelerator: nullAccelerator });
  L.init(trustConfig, rand(32));
  return { L, trustConfig, trustConfigHash: F.trustConfigHash(trustConfig) };
}

export const platform = SoftwareAttester.generate();

/** Evidence bytes for the loader's report on `nonce`. */
export async function evidenceFor(loader: Loader, nonce: Uint8Array, opts: { attester?: SoftwareAttester; measurement?: Uint8Array; workerCodeHash?: Uint8Array } = {}) {
  const report = loader.L.attest(nonce);
  const ev = await (opts.attester ?? platform).attest(report, opts.measurement ?? measurement(), opts.workerCodeHash ?? WORKER_CODE_HASH);
  return encodeEvidence(ev);
}

export function policyFor(trustConfigHashes: Uint8Array[], extra: Partial<BrokerPolicy> = {}): BrokerPolicy {
  return {
    trustedPlatformKeys: [platform.publicKey],
    acceptedMeasurements: [measurement()],
    acceptedWorkerCodeHashes: [WORKER_CODE_HASH],
    acceptedTrustConfigHashes: trustConfigHashes,
    logger: { warn: () => {} },
    ...extra,
  };
}

export function tmp(prefix = "veil-broker-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Fixture {
  dir: string;
  brokerKey: Uint8Array;
  broker: Broker;
  loader: Loader;
  keyId: Uint8Array;
  dataKey: Uint8Array;
  reopen(extra?: Partial<BrokerOptions>): Broker;
  cleanup(): void;
}

/** A broker in a temp dir holding one data key, and a loader its policy accepts. */
export function fixture(extra: Partial<BrokerOptions> = {}): Fixture {
  const { dir, cleanup } = tmp();
  const brokerKey = rand(32);
  const loader = makeLoader();
  const opts = (): BrokerOptions => ({ dir, brokerKey, policy: policyFor([loader.trustConfigHash]), ...extra });
  const broker = createBroker(opts());
  const keyId = rand(16);
  const dataKey = rand(32);
  broker.addKey(keyId, dataKey);
  const f: Fixture = {
    dir,
    brokerKey,
    broker,
    loader,
    keyId,
    dataKey,
    reopen: (more = {}) => createBroker({ ...opts(), ...more }),
    cleanup: () => {
      f.broker.close();
      cleanup();
    },
  };
  return f;
}

/** Every encoding of `secret` a careless writer might leave in a file. */
export function encodingsOf(secret: Uint8Array): Buffer[] {
  const b = Buffer.from(secret);
  return [b, Buffer.from(b.toString("hex")), Buffer.from(b.toString("hex").toUpperCase()), Buffer.from(b.toString("base64")), Buffer.from(b.toString("base64url"))];
}

export const contains = (hay: Uint8Array, secret: Uint8Array): boolean => encodingsOf(secret).some((n) => Buffer.from(hay).includes(n));
