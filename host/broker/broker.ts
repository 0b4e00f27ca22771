// The key broker, in process (host/broker/README.md). HOLDS SECRETS: the broker key and, during
// a release, one plaintext data key. It releases a model's data key only to a loader whose
// evidence verifies against the broker's policy (host/attest verifyEvidence, SPEC §4.2), with a
// nonce this broker issued, wrapped to that loader (SPEC §10, host/formats wrapKey). Every
// release and refusal is appended to the audit log before the caller hears the answer.
import { join } from "node:path";
import { decodeEvidence, reportOf, type Evidence } from "../attest/evidence.ts";
import { AttestError } from "../attest/errors.ts";
import { readSecretKeyFile } from "../attest/secret-file.ts";
import { compilePolicy, verifyEvidence, type CompiledPolicy, type VerifyPolicy, type WarnLogger } from "../attest/verify.ts";
import { fromHex, reportKeyId, toHex, wipe, wrapKey } from "../formats/index.ts";
import { AuditLog, type AuditInput } from "./audit.ts";
import { BrokerError } from "./errors.ts";
import { NonceTracker, type NonceOptions } from "./nonces.ts";
import { FileKeyStore, checkKeyId, type KeyStore } from "./store.ts";

/** The broker's verification policy: a VerifyPolicy without the nonce (the broker supplies its own per release). */
export type BrokerPolicy = Omit<VerifyPolicy, "expectedNonce">;

/** Operational logger (pino-compatible). Receives only public facts. */
export interface BrokerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface BrokerOptions {
  /** Directory holding keys.json (the key store) and audit.log; created with mode 0700. */
  dir?: string;
  /** A key store to use instead of dir/keys.json. */
  store?: KeyStore;
  /** The audit log (path or open log); default dir/audit.log. Required when there is no dir. */
  audit?: string | AuditLog;
  /** The 32-byte broker key sealing the store at rest (with dir). */
  brokerKey?: Uint8Array;
  /** Or a file holding it (32 raw bytes or 64 hex digits, mode 0600). */
  brokerKeyFile?: string;
  policy: BrokerPolicy;
  log?: BrokerLogger;
  nonces?: NonceOptions;
}

export interface ReleaseRequest {
  /** 16-byte key id, as bytes or 32 hex digits. */
  keyId: Uint8Array | string;
  /** Evidence bytes (host/attest/README.md §1). */
  evidence: Uint8Array;
  /** The nonce this broker issued and the loader put in its report. */
  nonce: Uint8Array;
}

export interface Broker {
  /** 32 random bytes, valid once, for a short time (default 60 s). */
  issueNonce(): Uint8Array;
  /** The WrappedKey (SPEC §10, 136 bytes) for the verified loader, or a BrokerError. */
  release(req: ReleaseRequest): Promise<Uint8Array>;
  /**
   * Records a release request refused before it could be parsed (the HTTP layer's BAD_REQUEST),
   * so that the audit log holds every refusal. `keyId` and `nonce` are kept only when well formed.
   */
  recordRefusal(facts: { keyId?: string; nonce?: Uint8Array }, error: BrokerError): void;
  addKey(keyId: Uint8Array | string, dataKey: Uint8Array, opts?: { replace?: boolean }): void;
  removeKey(keyId: Uint8Array | string): boolean;
  keyIds(): string[];
  /** The audit log's head hash (anchor it elsewhere to detect a cut log). */
  auditHead(): string;
  close(): void;
}

const silentLogger: BrokerLogger = { info() {}, warn() {}, error() {} };

const parseKeyId = (k: Uint8Array | string): Uint8Array => {
  if (typeof k === "string") {
    if (!/^[0-9a-fA-F]{32}$/.test(k)) throw new BrokerError("BAD_REQUEST", "a key id is 32 hex digits (16 bytes)");
    return fromHex(k);
  }
  checkKeyId(k);
  return k;
};

/** Creates an embedded broker. */
export function createBroker(opts: BrokerOptions): Broker {
  const log = opts.log ?? silentLogger;
  const warn: WarnLogger = { warn: (m: string) => log.warn({ event: "attest_warning" }, m) };
  const policy: CompiledPolicy = compilePolicy({ ...opts.policy, logger: opts.policy.logger ?? warn });
  if (policy.skip.size > 0 || policy.allowUnverifiedQuote)
    log.warn({ skip: [...policy.skip], allowUnverifiedQuote: policy.allowUnverifiedQuote }, "key broker policy skips checks: releases will be recorded as such");

  let store: KeyStore;
  if (opts.store) store = opts.store;
  else {
    if (!opts.dir) throw new TypeError("createBroker: pass dir or store");
    let key: Uint8Array;
    if (opts.brokerKey) key = Uint8Array.from(opts.brokerKey);
    else if (opts.brokerKeyFile) key = readSecretKeyFile(opts.brokerKeyFile);
    else throw new TypeError("createBroker: pass brokerKey or brokerKeyFile with dir");
    try {
      store = FileKeyStore.open(join(opts.dir, "keys.json"), key);
    } finally {
      wipe(key);
    }
  }
  let audit: AuditLog;
  if (opts.audit instanceof AuditLog) audit = opts.audit;
  else {
    const path = opts.audit ?? (opts.dir ? join(opts.dir, "audit.log") : undefined);
    if (!path) throw new TypeError("createBroker: pass audit (a path) when there is no dir");
    try {
      audit = AuditLog.open(path);
    } catch (e) {
      if (!opts.store) store.close(); // wipes the broker key copy it holds
      throw e;
    }
  }
  const nonces = new NonceTracker(opts.nonces);
  let closed = false;
  const live = () => {
    if (closed) throw new BrokerError("BROKER_CLOSED", "the broker is closed");
  };

  const toBrokerError = (e: unknown): BrokerError => {
    if (e instanceof BrokerError) return e;
    if (e instanceof AttestError) return new BrokerError(e.code, e.message.slice(e.code.length + 2), { cause: e });
    log.error({ err: { type: (e as Error)?.name, message: (e as Error)?.message } }, "key broker internal error");
    return new BrokerError("INTERNAL", "internal error", { cause: e });
  };

  const refuse = (facts: AuditInput, be: BrokerError) => {
    audit.append({ ...facts, event: "refusal", outcome: "refused", reason: `${be.code}: ${be.detail}` });
    log.info({ event: "refusal", keyId: facts.keyId ?? null, code: be.code, measurement: facts.measurement ?? null }, "key release refused");
  };

  return {
    recordRefusal(f, error) {
      live();
      refuse(
        {
          event: "refusal",
          outcome: "refused",
          keyId: typeof f.keyId === "string" && /^[0-9a-fA-F]{32}$/.test(f.keyId) ? f.keyId.toLowerCase() : null,
          nonce: f.nonce instanceof Uint8Array && f.nonce.length === 32 ? toHex(f.nonce) : null,
        },
        error,
      );
    },

    issueNonce(): Uint8Array {
      live();
      return nonces.issue();
    },

    async release(req: ReleaseRequest): Promise<Uint8Array> {
      live();
      const facts: AuditInput = { event: "refusal", outcome: "refused" };
      let wrapped: Uint8Array;
      let skipped: string[] = [];
      try {
        if (req === null || typeof req !== "object") throw new BrokerError("BAD_REQUEST", "release needs { keyId, evidence, nonce }");
        if (typeof req.keyId === "string" && /^[0-9a-fA-F]{32}$/.test(req.keyId)) facts.keyId = req.keyId.toLowerCase();
        else if (req.keyId instanceof Uint8Array && req.keyId.length === 16) facts.keyId = toHex(req.keyId);
        if (req.nonce instanceof Uint8Array && req.nonce.length === 32) facts.nonce = toHex(req.nonce);
        if (req.evidence instanceof Uint8Array) {
          // Claimed facts, for the audit record of a refusal too; verification below decides.
          try {
            const ev: Evidence = decodeEvidence(req.evidence);
            facts.measurement = toHex(ev.measurement);
            facts.trustConfigHash = toHex(reportOf(ev).trustConfigHash);
          } catch {
            /* reported as MALFORMED by verifyEvidence */
          }
        }
        const keyId = parseKeyId(req.keyId);
        if (!(req.nonce instanceof Uint8Array) || req.nonce.length !== 32) throw new BrokerError("BAD_REQUEST", "a nonce is 32 bytes");
        if (!(req.evidence instanceof Uint8Array)) throw new BrokerError("BAD_REQUEST", "evidence must be bytes");
        nonces.consume(req.nonce);
        const v = verifyEvidence(req.evidence, policy, req.nonce);
        skipped = v.skipped;
        facts.measurement = v.measurement;
        facts.trustConfigHash = v.trustConfigHash;
        if (reportKeyId(v.hpkePublicKey) !== v.keyId) throw new BrokerError("INTERNAL", "unreachable: key_id rule");
        const dataKey = store.get(keyId);
        if (!dataKey) throw new BrokerError("KEY_UNKNOWN", `no data key with id ${toHex(keyId)}`);
        try {
          wrapped = wrapKey({ report: v.report, keyId, dataKey });
        } finally {
          wipe(dataKey);
        }
      } catch (e) {
        const be = toBrokerError(e);
        refuse(facts, be);
        throw be;
      }
      // The release is recorded before anyone sees the wrapped key; if it cannot be, nothing is released.
      audit.append({ ...facts, event: "release", outcome: "released", reason: skipped.length ? `released with checks skipped: ${skipped.join(", ")}` : null });
      log.info({ event: "release", keyId: facts.keyId, measurement: facts.measurement, trustConfigHash: facts.trustConfigHash, skipped }, "key released");
      return wrapped;
    },

    addKey(keyId, dataKey, o = {}) {
      live();
      const id = parseKeyId(keyId);
      store.add(id, dataKey, o);
      audit.append({ event: "key_added", outcome: "ok", keyId: toHex(id), reason: o.replace ? "replace" : null });
      log.info({ event: "key_added", keyId: toHex(id) }, "data key added");
    },

    removeKey(keyId) {
      live();
      const id = parseKeyId(keyId);
      const removed = store.remove(id);
      if (removed) {
        audit.append({ event: "key_removed", outcome: "ok", keyId: toHex(id) });
        log.info({ event: "key_removed", keyId: toHex(id) }, "data key removed");
      }
      return removed;
    },

    keyIds: () => {
      live();
      return store.keyIds();
    },

    auditHead: () => audit.head,

    close() {
      if (closed) return;
      closed = true;
      nonces.clear();
      store.close();
      audit.close();
    },
  };
}
