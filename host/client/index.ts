// The veil client SDK (host/client/README.md): the code a data owner runs on their own machine.
// It attests the server's workers (SPEC §4.2) before it seals anything, checks every program's
// manifest itself, seals requests to a verified loader key bound to the program digest
// (SPEC §8.1), and opens responses and streams (SPEC §8.3, §8.4) with its own HPKE context.
// It holds plaintext (prompts, tensors, completions) and HPKE secrets; the server, its logs and
// the network only ever see ciphertext. Nothing it logs or puts in an error contains plaintext.
import { randomBytes } from "node:crypto";
import { sha256 } from "@noble/hashes/sha2.js";
import {
  AttestError,
  EVIDENCE_MAX,
  compilePolicy,
  verifyEvidence,
  type CompiledPolicy,
  type SkipName,
  type VerifiedLoader,
} from "../attest/index.ts";
import {
  LIMITS,
  MODE,
  RESPONSE_NONCE_LEN,
  TEMPERATURE_MILLI_MAX,
  VeilFormatError,
  checkSchema,
  checkThreshold,
  decodeManifest,
  decodeSignatureBundle,
  decodeTrustConfig,
  egressLimit,
  toHex,
  openSession,
  sealRequest,
  trustConfigHash,
  wipe,
  type GenerateRequest,
  type InnerRequest,
  type InnerResponse,
  type Manifest,
  type ClientSession,
  type StreamOpener,
  type Tensor,
  type TensorSpec,
  type TrustConfig,
} from "../formats/index.ts";
import { ClientError, type Rejection } from "./errors.ts";
import {
  callSignal,
  errorFromResponse,
  fromBase64url,
  readBounded,
  readJson,
  toBase64url,
  transportError,
  type CallContext,
  type FetchLike,
} from "./http.ts";

export { ClientError, CLIENT_ERROR_CODES, isClientError, type ClientErrorCode, type Rejection } from "./errors.ts";
export type { Tensor, TensorSpec } from "../formats/index.ts";
export { SKIP_NAMES, type SkipName } from "../attest/index.ts";

// ---------------------------------------------------------------------------------------------
// public types
// ---------------------------------------------------------------------------------------------

/** A 32-byte value as bytes or 64 hex digits. */
export type HashLike = Uint8Array | string;

/**
 * What the client accepts (SPEC §4.2). Nothing is trusted by default: a platform key (or an
 * explicit `allowUnverifiedQuote` for SEV-SNP/TDX, or an explicit skip of "platform") and the
 * accepted measurements and worker code hashes are required; the accepted trust configuration
 * hashes come from `acceptedTrustConfigHashes`, from `connect`'s `trustConfig`, or both.
 */
export interface ClientPolicy {
  /** Ed25519 platform keys whose software evidence is trusted (development only: host/attest/README.md §3). */
  trustedPlatformKeys?: Iterable<HashLike>;
  /** Accept SEV-SNP/TDX evidence whose vendor signature, chain, TCB and launch measurement are NOT verified. Logged on every use. */
  allowUnverifiedQuote?: boolean;
  /** SHA-256 of the loader.wasm builds the client accepts. */
  acceptedMeasurements?: Iterable<HashLike>;
  /** Trusted-worker code hashes (host/trusted/identity.ts) the client accepts. */
  acceptedWorkerCodeHashes?: Iterable<HashLike>;
  /** SHA-256 of accepted TrustConfig bytes; the hash of `connect`'s `trustConfig` is added to them. */
  acceptedTrustConfigHashes?: Iterable<HashLike>;
  /** Checks to skip, by name (host/attest SKIP_NAMES). Each skip logs a warning on every verification. */
  skip?: readonly SkipName[];
}

export interface ClientLogger {
  /** Warning lines: every skipped check, every unverified quote. */
  warn(msg: string): void;
  /** Progress lines (retries, re-attestations); optional. */
  info?(msg: string): void;
}

export interface RetryOptions {
  /** Retries after the first attempt on a retryable error (503, 504, network); default 3. */
  retries?: number;
  /** First backoff; doubles each retry, with jitter; default 200 ms. */
  baseDelayMs?: number;
  /** Upper bound of any wait, Retry-After included; default 30 s. */
  maxDelayMs?: number;
}

export interface ConnectOptions {
  /** The server's base URL (http or https). */
  url: string | URL;
  policy: ClientPolicy;
  /**
   * The TrustConfig (SPEC §3) the client expects the loaders to enforce. When given, its hash is
   * accepted in reports, and each program's reviewer signatures must meet its threshold.
   */
  trustConfig?: Uint8Array;
  /** Default: the global fetch. */
  fetch?: FetchLike;
  /** Default: warnings to console.warn, no info. */
  logger?: ClientLogger;
  retry?: RetryOptions;
  /** Deadline of each attestation and program-list call; default 30 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Authenticated sessions (SPEC §8.5), on by default: the first request to a program on a
   * worker opens a session with one HPKE request, later ones are sealed under its keys; a
   * session the loader no longer knows (SESSION_UNKNOWN) is re-opened transparently. `false`
   * seals every request with its own HPKE key exchange (§8.1).
   */
  sessions?: boolean;
}

export interface WorkerInfo {
  id: string;
  /** The loader's key id (SPEC §4) and HPKE public key (hex). */
  keyId: number;
  hpkePublicKey: string;
  measurement: string;
  workerCodeHash: string;
  trustConfigHash: string;
  platform: VerifiedLoader["platform"];
  platformKey?: string;
  /** Checks NOT performed for this worker (empty for a full verification). */
  skipped: string[];
}

export interface ProgramSchema {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Generate programs: the decoding limits (the token table stays inside the manifest). */
  generate?: { vocabSize: number; endToken: number; maxNewTokens: number; contextLength: number; tokensPerChunk: number };
  /** §5.5 egress limit, bytes, when the policy sets one. */
  egressLimit?: number;
}

export interface ProgramInfo {
  name: string;
  version: bigint;
  /** §5.6 program digest (hex SHA-256 of the manifest), checked by the client. */
  digest: string;
  mode: "tensor" | "generate";
  schema: ProgramSchema;
  /** Verified workers that hold the program. */
  workers: string[];
  /** Reviewer signatures checked against `connect`'s trustConfig (§6.1), or not checked (no trustConfig). */
  signatures: { checked: true; counted: number; threshold: number } | { checked: false };
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Deadline of one attempt (for a stream: of the whole stream); none by default. */
  timeoutMs?: number;
  /** Overrides the client's retry count for this call. */
  retries?: number;
}

export interface GenerateOptions extends CallOptions {
  /** 1..the program's max_new_tokens; default that maximum. */
  maxTokens?: number;
  /** 0 (greedy, the default) .. 10. */
  temperature?: number;
  /** 0 (no limit, the default) .. vocab size. */
  topK?: number;
  /** A seed makes sampling reproducible (SPEC §7.5). */
  seed?: number | bigint;
}

export type StopReason = "end" | "limit";

export interface Completion {
  /** The completion as UTF-8 text (invalid sequences become U+FFFD). */
  text: string;
  /** The exact bytes of the generated tokens. */
  bytes: Uint8Array;
  tokens: number;
  stop: StopReason;
}

/** The value a stream's iterator returns when it completes. */
export interface StreamSummary {
  tokens: number;
  stop: StopReason;
  /** Records opened. */
  chunks: number;
  worker: string;
}

// ---------------------------------------------------------------------------------------------
// limits of what the client will read
// ---------------------------------------------------------------------------------------------

const ATTESTATION_BODY_MAX = 64 << 20;
const PROGRAMS_BODY_MAX = 256 << 20;
const SIGNATURES_MAX = 8 + 1 + 32 * 96;
/** An encapsulated response: nonce, an InnerResponse of at most RESPONSE_MAX, tag. */
const RESPONSE_BODY_MAX = RESPONSE_NONCE_LEN + LIMITS.RESPONSE_MAX + 16;
const ID = /^[A-Za-z0-9._:-]{1,64}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const DECIMAL = /^[1-9][0-9]{0,18}$/;

const show = (s: unknown): string => (typeof s === "string" ? JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s) : typeof s);

// ---------------------------------------------------------------------------------------------
// internal state
// ---------------------------------------------------------------------------------------------

interface WorkerState {
  id: string;
  loader: VerifiedLoader;
  info: WorkerInfo;
}

interface ProgramState {
  info: ProgramInfo;
  manifest: Manifest;
  digest: Uint8Array;
}

interface State {
  generation: number;
  workers: Map<string, WorkerState>;
  programs: Map<string, ProgramState>;
  rejected: Rejection[];
}

interface Config {
  url: string;
  fetch: FetchLike;
  logger: ClientLogger;
  compiled: CompiledPolicy;
  trustConfig?: TrustConfig;
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
  sessions: boolean;
}

/** What answers one sealed request: a §8.1 ResponseContext, or a session request's (§8.5.2). */
interface ResponseOpener {
  openResponse(bytes: Uint8Array): InnerResponse;
  openStream(): StreamOpener;
  dispose(): void;
}

function checkInt(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw new ClientError("POLICY_INVALID", `${name} must be an integer in ${min}..${max}`);
  return v;
}

function buildConfig(opts: ConnectOptions): Config {
  if (!opts || typeof opts !== "object") throw new ClientError("POLICY_INVALID", "connect needs { url, policy }");
  let url: URL;
  try {
    url = new URL(String(opts.url));
  } catch {
    throw new ClientError("POLICY_INVALID", "url is not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ClientError("POLICY_INVALID", "url must be http or https");
  if (url.search || url.hash) throw new ClientError("POLICY_INVALID", "url must not carry a query or fragment");
  const policy = opts.policy;
  if (!policy || typeof policy !== "object") throw new ClientError("POLICY_INVALID", "policy is required: nothing is trusted by default");
  const logger: ClientLogger = opts.logger ?? { warn: (m) => console.warn(m) };
  if (typeof logger.warn !== "function") throw new ClientError("POLICY_INVALID", "logger must have a warn(msg) method");

  const skip = policy.skip ?? [];
  const platformKeys = policy.trustedPlatformKeys ? [...policy.trustedPlatformKeys] : [];
  if (platformKeys.length === 0 && policy.allowUnverifiedQuote !== true && !skip.includes("platform"))
    throw new ClientError(
      "POLICY_INVALID",
      "no platform is trusted: give trustedPlatformKeys, or set allowUnverifiedQuote for SEV-SNP/TDX quotes (unverified), or skip \"platform\" explicitly",
    );

  let trustConfig: TrustConfig | undefined;
  const tcHashes: HashLike[] = policy.acceptedTrustConfigHashes ? [...policy.acceptedTrustConfigHashes] : [];
  if (opts.trustConfig !== undefined) {
    if (!(opts.trustConfig instanceof Uint8Array)) throw new ClientError("POLICY_INVALID", "trustConfig must be the TrustConfig bytes");
    try {
      trustConfig = decodeTrustConfig(opts.trustConfig);
    } catch (e) {
      throw new ClientError("POLICY_INVALID", `trustConfig: ${(e as Error).message}`, { cause: e });
    }
    tcHashes.push(trustConfigHash(opts.trustConfig));
  }

  let compiled: CompiledPolicy;
  try {
    compiled = compilePolicy({
      trustedPlatformKeys: platformKeys,
      allowUnverifiedQuote: policy.allowUnverifiedQuote,
      acceptedMeasurements: policy.acceptedMeasurements as Iterable<HashLike>,
      acceptedWorkerCodeHashes: policy.acceptedWorkerCodeHashes as Iterable<HashLike>,
      acceptedTrustConfigHashes: tcHashes,
      skip,
      logger: { warn: (m) => logger.warn(m) },
    });
  } catch (e) {
    if (e instanceof AttestError) throw new ClientError("POLICY_INVALID", e.message.replace(/^POLICY_INVALID: /, ""), { cause: e });
    throw e;
  }
  // compilePolicy accepts empty sets (which accept nothing); say so up front instead of failing every worker.
  const empty = (
    [
      ["acceptedMeasurements", compiled.measurements, "measurement"],
      ["acceptedWorkerCodeHashes", compiled.workerCodeHashes, "worker_code_hash"],
      ["acceptedTrustConfigHashes (or trustConfig)", compiled.trustConfigHashes, "trust_config_hash"],
    ] as const
  ).find(([, set, name]) => set.size === 0 && !compiled.skip.has(name));
  if (empty) throw new ClientError("POLICY_INVALID", `policy.${empty[0]} is empty: it would accept no worker`);

  const r = opts.retry ?? {};
  return {
    url: url.href.replace(/\/+$/, ""),
    fetch: opts.fetch ?? fetch,
    logger,
    compiled,
    trustConfig,
    retries: checkInt(r.retries ?? 3, "retry.retries", 0, 100),
    baseDelayMs: checkInt(r.baseDelayMs ?? 200, "retry.baseDelayMs", 0, 600_000),
    maxDelayMs: checkInt(r.maxDelayMs ?? 30_000, "retry.maxDelayMs", 0, 3_600_000),
    sessions: opts.sessions !== false,
    timeoutMs: checkInt(opts.timeoutMs ?? 30_000, "timeoutMs", 1, 3_600_000),
  };
}

const aborted = (signal: AbortSignal | undefined, what: string): void => {
  if (signal?.aborted) throw new ClientError("ABORTED", `${what}: cancelled by the caller`);
};

function sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ClientError("ABORTED", `${what}: cancelled by the caller`));
    const onAbort = () => {
      clearTimeout(t);
      reject(new ClientError("ABORTED", `${what}: cancelled by the caller`));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Backoff before retry `attempt` (0-based): exponential with jitter, at least what Retry-After asked, at most maxDelayMs. */
function backoff(cfg: Config, attempt: number, retryAfterMs: number | undefined): number {
  const exp = Math.min(cfg.maxDelayMs, cfg.baseDelayMs * 2 ** attempt);
  const jittered = exp / 2 + Math.random() * (exp / 2);
  return Math.round(Math.min(cfg.maxDelayMs, Math.max(retryAfterMs ?? 0, jittered)));
}

/** A format error from host/formats as a ClientError (its SPEC name, number and field). */
function fromFormat(e: unknown, worker?: string): ClientError {
  if (e instanceof ClientError) return e;
  if (e instanceof VeilFormatError) return new ClientError(e.code, e.message, { field: e.field, worker, cause: e });
  return new ClientError("BAD_RESPONSE", (e as Error)?.message ?? String(e), { worker, cause: e });
}

/** What an error says about the worker we sealed to: its key changed (re-attest now) or it is restarting (re-attest after waiting). */
function restartSignal(e: ClientError): "key" | "restart" | undefined {
  if (e.code === "KEY_ID" || e.code === "REQUEST_AUTH") return "key";
  if (e.status === 404 && /WORKER/.test(e.code)) return "key";
  if (/RESTART/.test(e.code)) return "restart";
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// attestation and the program list
// ---------------------------------------------------------------------------------------------

async function getJson(cfg: Config, path: string, max: number, what: string, signal: AbortSignal | undefined): Promise<unknown> {
  const ctx: CallContext = { signal, timeoutMs: cfg.timeoutMs };
  const s = callSignal(ctx);
  let res: Response;
  try {
    res = await cfg.fetch(`${cfg.url}${path}`, { method: "GET", headers: { accept: "application/json" }, signal: s.signal });
  } catch (e) {
    throw transportError(e, what, s.why());
  }
  if (!res.ok) throw await errorFromResponse(res, what);
  try {
    return await readJson(res, max, what);
  } catch (e) {
    throw transportError(e, what, s.why());
  }
}

/** Runs `fn` with the client's retry policy (GETs, which are idempotent). */
async function retrying<T>(cfg: Config, what: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    aborted(signal, what);
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof ClientError) || !e.retryable || attempt >= cfg.retries) throw e;
      const ms = backoff(cfg, attempt, e.retryAfterMs);
      cfg.logger.info?.(`veil client: ${what} failed (${e.code}); retry ${attempt + 1}/${cfg.retries} in ${ms} ms`);
      await sleep(ms, signal, what);
    }
  }
}

function verifyWorkers(cfg: Config, body: unknown, nonce: Uint8Array): { workers: Map<string, WorkerState>; rejected: Rejection[] } {
  const list = (body as { workers?: unknown } | null)?.workers;
  if (!Array.isArray(list)) throw new ClientError("BAD_RESPONSE", "attestation: the answer has no workers array");
  const rejected: Rejection[] = [];
  const workers = new Map<string, WorkerState>();
  const ids = list.map((w) => (w as { id?: unknown } | null)?.id);
  list.forEach((entry, i) => {
    const id = ids[i];
    const name = typeof id === "string" ? id.slice(0, 64) : `#${i}`;
    const reject = (code: string, message: string, field?: string) => rejected.push({ kind: "worker", id: name, code, message, field });
    if (typeof id !== "string" || !ID.test(id)) return reject("BAD_RESPONSE", `worker id ${show(id)} is not 1..64 of [A-Za-z0-9._:-]`);
    if (ids.indexOf(id) !== i || ids.lastIndexOf(id) !== i) return reject("BAD_RESPONSE", "the server lists this worker id more than once");
    const evidence = fromBase64url((entry as { evidence?: unknown }).evidence, EVIDENCE_MAX);
    if (!evidence) return reject("BAD_RESPONSE", "evidence is not base64url of at most EVIDENCE_MAX bytes");
    try {
      const loader = verifyEvidence(evidence, cfg.compiled, nonce);
      workers.set(id, {
        id,
        loader,
        info: {
          id,
          keyId: loader.keyId,
          hpkePublicKey: toHex(loader.hpkePublicKey),
          measurement: loader.measurement,
          workerCodeHash: loader.workerCodeHash,
          trustConfigHash: loader.trustConfigHash,
          platform: loader.platform,
          platformKey: loader.platformKey,
          skipped: [...loader.skipped],
        },
      });
    } catch (e) {
      if (e instanceof AttestError) return reject(e.code, e.message, e.field);
      throw e;
    }
  });
  return { workers, rejected };
}

function checkPrograms(
  cfg: Config,
  body: unknown,
  workers: Map<string, WorkerState>,
  versions: Map<string, bigint>,
): { programs: Map<string, ProgramState>; rejected: Rejection[] } {
  const list = (body as { programs?: unknown } | null)?.programs;
  if (!Array.isArray(list)) throw new ClientError("BAD_RESPONSE", "programs: the answer has no programs array");
  const programs = new Map<string, ProgramState>();
  const rejected: Rejection[] = [];
  const names = list.map((p) => (p as { name?: unknown } | null)?.name);
  list.forEach((entry, i) => {
    const e = (entry ?? {}) as Record<string, unknown>;
    const name = names[i];
    const label = typeof name === "string" ? name.slice(0, 64) : `#${i}`;
    const reject = (code: string, message: string, field?: string) => rejected.push({ kind: "program", id: label, code, message, field });
    if (typeof name !== "string" || name.length === 0 || name.length > 64) return reject("BAD_RESPONSE", `program name ${show(name)} is not a name`);
    if (names.indexOf(name) !== i || names.lastIndexOf(name) !== i) return reject("BAD_RESPONSE", "the server lists this program more than once");
    const digestHex = typeof e.digest === "string" ? e.digest.toLowerCase() : undefined;
    if (!digestHex || !HEX64.test(digestHex)) return reject("BAD_RESPONSE", "digest is not 64 hex digits");
    if (typeof e.version !== "string" || !DECIMAL.test(e.version)) return reject("BAD_RESPONSE", "version is not a decimal string");
    const manifestBytes = fromBase64url(e.manifest, LIMITS.MANIFEST_MAX);
    if (!manifestBytes) return reject("BAD_RESPONSE", "manifest is not base64url of at most MANIFEST_MAX bytes");
    const signatures = fromBase64url(e.signatures, SIGNATURES_MAX);
    if (!signatures) return reject("BAD_RESPONSE", "signatures is not base64url of a SignatureBundle");
    if (!Array.isArray(e.workers) || !e.workers.every((w) => typeof w === "string")) return reject("BAD_RESPONSE", "workers is not an array of worker ids");

    // §5.6: the digest requests will be bound to is the one the client computes itself.
    const digest = sha256(manifestBytes);
    if (toHex(digest) !== digestHex) return reject("DIGEST_MISMATCH", `the manifest's SHA-256 is ${toHex(digest)}, the server says ${digestHex}`);
    let manifest: Manifest;
    try {
      manifest = decodeManifest(manifestBytes);
      decodeSignatureBundle(signatures);
    } catch (err) {
      if (err instanceof VeilFormatError) return reject(err.code, err.message, err.field);
      throw err;
    }
    if (manifest.name !== name) return reject("NAME_MISMATCH", `the manifest names ${show(manifest.name)}`);
    if (manifest.version.toString() !== e.version) return reject("VERSION_MISMATCH", `the manifest says version ${manifest.version}, the server ${e.version}`);
    const seen = versions.get(name);
    if (seen !== undefined && manifest.version < seen) return reject("ROLLBACK", `version ${manifest.version} is lower than version ${seen} this client saw before`);
    let sig: ProgramInfo["signatures"] = { checked: false };
    if (cfg.trustConfig) {
      const t = checkThreshold(cfg.trustConfig, signatures, manifestBytes);
      if (!t.ok)
        return reject("SIGNATURE_THRESHOLD", `${t.counted} valid reviewer signature(s) of the trust configuration, ${t.threshold} needed (${t.entries.map((x) => x.status).join(", ")})`);
      sig = { checked: true, counted: t.counted, threshold: t.threshold };
    }
    const holders = (e.workers as string[]).filter((w, j, a) => workers.has(w) && a.indexOf(w) === j);
    const g = manifest.generate;
    const limit = egressLimit(manifest.policy);
    programs.set(name, {
      manifest,
      digest,
      info: {
        name,
        version: manifest.version,
        digest: digestHex,
        mode: manifest.mode === MODE.GENERATE ? "generate" : "tensor",
        schema: {
          inputs: manifest.inputs,
          outputs: manifest.outputs,
          ...(g
            ? {
                generate: {
                  vocabSize: g.tokens.length,
                  endToken: g.endToken,
                  maxNewTokens: g.maxNewTokens,
                  contextLength: g.contextLength,
                  tokensPerChunk: g.tokensPerChunk,
                },
              }
            : {}),
          ...(limit !== undefined ? { egressLimit: limit } : {}),
        },
        workers: holders,
        signatures: sig,
      },
    });
  });
  for (const [name, p] of programs) if ((versions.get(name) ?? 0n) < p.manifest.version) versions.set(name, p.manifest.version);
  return { programs, rejected };
}

async function attest(cfg: Config, versions: Map<string, bigint>, generation: number, signal: AbortSignal | undefined): Promise<State> {
  // A fresh nonce for every attempt (SPEC §4.2 item 4): the client never reuses one.
  const { workers, rejected } = await retrying(cfg, "attestation", signal, async () => {
    const nonce = new Uint8Array(randomBytes(32));
    const body = await getJson(cfg, `/v1/attestation?nonce=${toBase64url(nonce)}`, ATTESTATION_BODY_MAX, "attestation", signal);
    return verifyWorkers(cfg, body, nonce);
  });
  if (workers.size === 0) {
    const why = rejected.length === 0 ? "the server lists no workers" : rejected.map((r) => `${r.id}: ${r.code}`).join("; ");
    throw new ClientError("ATTESTATION_FAILED", `no worker's evidence verified (${why})`, { reasons: rejected });
  }
  const body = await retrying(cfg, "programs", signal, () => getJson(cfg, "/v1/programs", PROGRAMS_BODY_MAX, "programs", signal));
  const p = checkPrograms(cfg, body, workers, versions);
  return { generation, workers, programs: p.programs, rejected: [...rejected, ...p.rejected] };
}

// ---------------------------------------------------------------------------------------------
// requests
// ---------------------------------------------------------------------------------------------

const isTensorList = (x: unknown): x is Tensor[] =>
  Array.isArray(x) && x.every((t) => t && typeof t === "object" && typeof (t as Tensor).name === "string" && (t as Tensor).data instanceof Uint8Array);

function generateRequest(m: Manifest, prompt: Uint8Array, o: GenerateOptions): GenerateRequest {
  const g = m.generate!;
  const bad = (field: string, detail: string): never => {
    throw new ClientError("BAD_VALUE", `${field} ${detail}`, { field });
  };
  if (prompt.length < 1) bad("prompt", "is empty");
  if (prompt.length > LIMITS.PROMPT_MAX) throw new ClientError("TOO_LARGE", `the prompt is ${prompt.length} bytes, over PROMPT_MAX ${LIMITS.PROMPT_MAX}`, { field: "prompt" });
  const maxTokens = o.maxTokens ?? g.maxNewTokens;
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > g.maxNewTokens) bad("maxTokens", `must be an integer in 1..${g.maxNewTokens} (the program's max_new_tokens)`);
  const temperature = o.temperature ?? 0;
  if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0 || Math.round(temperature * 1000) > TEMPERATURE_MILLI_MAX)
    bad("temperature", `must be a number in 0..${TEMPERATURE_MILLI_MAX / 1000}`);
  const topK = o.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0 || topK > g.tokens.length) bad("topK", `must be an integer in 0..${g.tokens.length} (the vocabulary size)`);
  const req: GenerateRequest = { kind: 2, prompt, maxNewTokens: maxTokens, temperatureMilli: Math.round(temperature * 1000), topK };
  if (o.seed !== undefined) {
    const s = typeof o.seed === "number" && Number.isSafeInteger(o.seed) ? BigInt(o.seed) : o.seed;
    if (typeof s !== "bigint" || s < 0n || s >= 1n << 64n) bad("seed", "must be an integer in 0..2^64-1");
    req.seed = s as bigint;
  }
  return req;
}

const stopOf = (stop: number): StopReason => (stop === 1 ? "end" : "limit");

/** A connected client: verified workers, checked programs. Create with `connect`. */
export class Client {
  readonly #cfg: Config;
  #state: State;
  #refreshing: Promise<State> | undefined;
  readonly #rr = new Map<string, number>();
  readonly #versions: Map<string, bigint>;
  /** SPEC §8.5 sessions by worker, loader key, program and digest; each opened once, shared by concurrent calls. */
  readonly #sessions = new Map<string, Promise<ClientSession | undefined>>();
  /** Worker-and-program keys that had a request already: the second one opens the session. */
  readonly #seen = new Set<string>();

  private constructor(cfg: Config, state: State, versions: Map<string, bigint>) {
    this.#cfg = cfg;
    this.#state = state;
    this.#versions = versions;
  }

  /** Attests the server's workers and checks its programs; fails unless at least one worker verifies. */
  static async connect(opts: ConnectOptions): Promise<Client> {
    const cfg = buildConfig(opts);
    const versions = new Map<string, bigint>();
    const state = await attest(cfg, versions, 1, opts.signal);
    return new Client(cfg, state, versions);
  }

  get url(): string {
    return this.#cfg.url;
  }

  /** Workers and programs the last attestation excluded, and why. */
  get rejected(): readonly Rejection[] {
    return this.#state.rejected.map((r) => ({ ...r }));
  }

  /** The verified workers of the last attestation. */
  workers(): WorkerInfo[] {
    return [...this.#state.workers.values()].map((w) => ({ ...w.info, skipped: [...w.info.skipped] }));
  }

  /** The programs that passed the client's checks. */
  programs(): ProgramInfo[] {
    return [...this.#state.programs.values()].map((p) => ({ ...p.info, workers: [...p.info.workers] }));
  }

  /** Attests again with a fresh nonce and reloads the program list (concurrent callers share one run). */
  async refresh(signal?: AbortSignal): Promise<void> {
    await this.#refresh(this.#state.generation, signal);
  }

  async #refresh(seenGeneration: number, signal: AbortSignal | undefined): Promise<State> {
    if (this.#state.generation !== seenGeneration) return this.#state; // someone re-attested since
    this.#refreshing ??= attest(this.#cfg, this.#versions, this.#state.generation + 1, signal).finally(() => (this.#refreshing = undefined));
    this.#state = await this.#refreshing;
    // Sessions with a worker key the new attestation no longer lists can never be used again.
    const live = new Set([...this.#state.workers.values()].map((w) => `${w.id}|${toHex(w.loader.hpkePublicKey)}|`));
    const gone = (k: string) => ![...live].some((prefix) => k.startsWith(prefix));
    for (const [k, held] of this.#sessions) if (gone(k)) {
      this.#sessions.delete(k);
      void held.then((s) => s?.close());
    }
    for (const k of this.#seen) if (gone(k)) this.#seen.delete(k);
    return this.#state;
  }

  #program(name: string): ProgramState {
    const p = this.#state.programs.get(name);
    if (p) return p;
    const why = this.#state.rejected.filter((r) => r.kind === "program" && r.id === name);
    if (why.length > 0)
      throw new ClientError("PROGRAM_REJECTED", `program ${show(name)} failed the client's checks: ${why.map((r) => r.code).join(", ")}`, { reasons: why });
    throw new ClientError("UNKNOWN_PROGRAM", `the server lists no program ${show(name)}`);
  }

  #pick(p: ProgramState): WorkerState {
    const ids = p.info.workers;
    if (ids.length === 0) throw new ClientError("NO_VERIFIED_WORKER", `no verified worker holds program ${show(p.info.name)}`);
    const i = this.#rr.get(p.info.name) ?? 0;
    this.#rr.set(p.info.name, (i + 1) % ids.length);
    return this.#state.workers.get(ids[i % ids.length])!;
  }

  /**
   * One sealed request with retries: picks a verified worker (round-robin), seals `build(program)`
   * to its loader key bound to the program digest, POSTs it, and hands a 200 answer to `finish`
   * (which owns the response context). Retries retryable errors with backoff, and re-attests when
   * the answer says the worker's key changed or it is restarting.
   */
  async #call<T>(
    name: string,
    route: "infer" | "stream",
    opts: CallOptions,
    build: (p: ProgramState) => InnerRequest,
    finish: (res: Response, ctx: ResponseOpener, worker: string, p: ProgramState, s: { why(): "ABORTED" | "TIMEOUT" | undefined }) => Promise<T>,
  ): Promise<T> {
    const cfg = this.#cfg;
    const retries = opts.retries === undefined ? cfg.retries : checkInt(opts.retries, "retries", 0, 100);
    const what = `${route} ${show(name)}`;
    let keyReattested = false;
    let sessionReopened = false;
    for (let attempt = 0; ; attempt++) {
      aborted(opts.signal, what);
      const generation = this.#state.generation;
      const p = this.#program(name);
      let sealed: { bytes: Uint8Array; response: ResponseOpener };
      let w: WorkerState;
      let request: InnerRequest;
      try {
        request = build(p); // local checks first: a refused request takes no worker's turn
        w = this.#pick(p);
      } catch (e) {
        throw fromFormat(e);
      }
      const sessionKey = `${w.id}|${toHex(w.loader.hpkePublicKey)}|${name}|${toHex(p.digest)}`;
      // A single request pays no session-open; repeated ones to the same worker and program do once.
      const repeated = this.#sessions.has(sessionKey) || this.#seen.has(sessionKey);
      this.#seen.add(sessionKey);
      const session = cfg.sessions && repeated ? await this.#session(sessionKey, w, p, name, opts.signal) : undefined;
      try {
        if (session) {
          const r = session.seal(request);
          sealed = { bytes: r.bytes, response: { openResponse: r.openResponse, openStream: r.openStream, dispose: () => undefined } };
        } else sealed = sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: p.digest, request });
      } catch (e) {
        throw fromFormat(e);
      }
      let err: ClientError;
      let owned = true; // the response context is ours to dispose until `finish` takes it
      const s = callSignal({ signal: opts.signal, timeoutMs: opts.timeoutMs });
      try {
        let res: Response;
        try {
          res = await cfg.fetch(`${cfg.url}/v1/programs/${encodeURIComponent(name)}/${route}?worker=${encodeURIComponent(w.id)}`, {
            method: "POST",
            headers: { "content-type": "application/octet-stream", accept: "application/octet-stream, application/json" },
            body: sealed.bytes as Uint8Array<ArrayBuffer>,
            signal: s.signal,
          });
        } catch (e) {
          throw transportError(e, `${what} on worker ${w.id}`, s.why(), w.id);
        }
        if (res.ok) {
          owned = false;
          return await finish(res, sealed.response, w.id, p, s);
        }
        err = await errorFromResponse(res, `${what} on worker ${w.id}`, w.id);
      } catch (e) {
        if (!(e instanceof ClientError)) throw e;
        err = e;
      } finally {
        if (owned) sealed.response.dispose();
      }
      if (err.code === "ABORTED") throw err;
      // SPEC §8.5.4: the loader forgot the session (evicted, expired, unloaded): nothing ran; open a new one.
      if (session && err.code === "SESSION_UNKNOWN") {
        session.close();
        this.#sessions.delete(sessionKey);
        if (!sessionReopened) {
          sessionReopened = true;
          cfg.logger.info?.(`veil client: worker ${w.id} no longer knows the session for ${show(name)}; opening a new one`);
          attempt--;
          continue;
        }
      }
      if (attempt >= retries) throw err;
      const signalled = restartSignal(err);
      if (signalled === "key" && !keyReattested) {
        keyReattested = true;
        cfg.logger.info?.(`veil client: worker ${w.id} answered ${err.code}: its loader key changed; attesting again`);
        await this.#refresh(generation, opts.signal);
        continue;
      }
      if (!err.retryable) throw err;
      const ms = backoff(cfg, attempt, err.retryAfterMs);
      cfg.logger.info?.(`veil client: ${what} on worker ${w.id} failed (${err.code}); retry ${attempt + 1}/${retries} in ${ms} ms`);
      await sleep(ms, opts.signal, what);
      if (signalled === "restart") {
        cfg.logger.info?.(`veil client: worker ${w.id} is restarting; attesting again`);
        await this.#refresh(generation, opts.signal);
      }
    }
  }

  /**
   * The session for `key`, opened on first use (SPEC §8.5.1) and shared by concurrent callers;
   * undefined when it cannot be opened (an older server, a refusal): the call then seals with
   * HPKE as §8.1, and this worker is not asked again until the next attestation.
   */
  async #session(key: string, w: WorkerState, p: ProgramState, name: string, signal: AbortSignal | undefined): Promise<ClientSession | undefined> {
    const held = this.#sessions.get(key);
    if (held) {
      const s = await held;
      if (!s || s.usable()) return s;
      s.close();
      this.#sessions.delete(key);
    }
    let lasting = false; // a refusal that will not change by retrying (no route, not supported)
    const opening = (async (): Promise<ClientSession | undefined> => {
      const what = `session ${show(name)} on worker ${w.id}`;
      try {
        const o = openSession({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: p.digest });
        const s = callSignal({ signal, timeoutMs: this.#cfg.timeoutMs });
        const res = await this.#cfg.fetch(`${this.#cfg.url}/v1/programs/${encodeURIComponent(name)}/session?worker=${encodeURIComponent(w.id)}`, {
          method: "POST",
          headers: { "content-type": "application/octet-stream", accept: "application/octet-stream, application/json" },
          body: o.bytes as Uint8Array<ArrayBuffer>,
          signal: s.signal,
        });
        if (!res.ok) throw await errorFromResponse(res, what, w.id);
        return o.accept(await readBounded(res, RESPONSE_BODY_MAX, what));
      } catch (e) {
        lasting = e instanceof ClientError && !e.retryable && e.code !== "ABORTED" && e.code !== "TIMEOUT";
        this.#cfg.logger.info?.(`veil client: ${what} could not be opened (${e instanceof ClientError || e instanceof VeilFormatError ? e.code : (e as Error)?.name}); sealing each request with HPKE`);
        return undefined;
      }
    })();
    this.#sessions.set(key, opening);
    const s = await opening;
    // A lasting refusal is remembered (for this worker key and program); a passing one is not.
    if (!s && !lasting && this.#sessions.get(key) === opening) this.#sessions.delete(key);
    return s;
  }

  /** Wipes the keys of every session this client holds; later calls open new ones. */
  closeSessions(): void {
    for (const held of this.#sessions.values()) void held.then((s) => s?.close());
    this.#sessions.clear();
  }

  /** A tensor program: the output tensors. */
  infer(program: string, input: Tensor[], opts?: CallOptions): Promise<Tensor[]>;
  /** A generate program: the completion of `prompt` (UTF-8 encoded, or bytes). */
  infer(program: string, prompt: string | Uint8Array, opts?: GenerateOptions): Promise<Completion>;
  async infer(program: string, input: Tensor[] | string | Uint8Array, opts: GenerateOptions = {}): Promise<Tensor[] | Completion> {
    const p0 = this.#program(program);
    const generate = p0.manifest.mode === MODE.GENERATE;
    let prompt: Uint8Array | undefined;
    if (generate) {
      if (typeof input !== "string" && !(input instanceof Uint8Array))
        throw new ClientError("WRONG_MODE", `program ${show(program)} is a generate program: give a prompt`);
      prompt = typeof input === "string" ? new TextEncoder().encode(input) : Uint8Array.from(input);
    } else if (!isTensorList(input)) throw new ClientError("WRONG_MODE", `program ${show(program)} is a tensor program: give its input tensors`);
    try {
      return await this.#call(
        program,
        "infer",
        opts,
        (p) => {
          if (p.manifest.mode !== p0.manifest.mode) throw new ClientError("WRONG_MODE", `program ${show(program)} changed mode at re-attestation`);
          if (prompt) return generateRequest(p.manifest, prompt, opts);
          try {
            checkSchema(input as Tensor[], p.manifest.inputs);
          } catch (e) {
            throw fromFormat(e);
          }
          return { kind: 1, inputs: input as Tensor[] };
        },
        async (res, ctx, worker, p, s) => {
          try {
            let bytes: Uint8Array;
            try {
              bytes = await readBounded(res, RESPONSE_BODY_MAX, `infer ${show(program)} on worker ${worker}`);
            } catch (e) {
              throw transportError(e, `infer ${show(program)} on worker ${worker}`, s.why(), worker);
            }
            let out: InnerResponse;
            try {
              out = ctx.openResponse(bytes);
            } catch (e) {
              throw fromFormat(e, worker);
            }
            if (out.kind === 1 && !prompt) {
              try {
                checkSchema(out.outputs, p.manifest.outputs, { structure: "inner_response", prefix: "outputs", code: "ACCELERATOR_FAILED" });
              } catch (e) {
                throw fromFormat(e, worker);
              }
              return out.outputs;
            }
            if (out.kind === 2 && prompt) return { text: new TextDecoder().decode(out.text), bytes: out.text, tokens: out.tokens, stop: stopOf(out.stop) };
            throw new ClientError("BAD_RESPONSE", `the response kind ${out.kind} does not match the program's mode`, { worker });
          } finally {
            ctx.dispose();
          }
        },
      );
    } finally {
      wipe(prompt);
    }
  }

  /**
   * A generate program's completion as it is produced: an async iterator of text pieces (UTF-8
   * decoded incrementally, so a character split across records comes out whole). A dropped,
   * reordered, duplicated, altered or cut stream throws a ClientError (RESPONSE_AUTH, TRUNCATED,
   * TRAILING_BYTES, …) — it never ends silently short. `opts.signal` cancels (ABORTED); leaving the
   * loop early closes the connection. The iterator's return value is a StreamSummary.
   */
  stream(program: string, prompt: string | Uint8Array, opts: GenerateOptions = {}): AsyncGenerator<string, StreamSummary, undefined> {
    return this.#stream(program, prompt, opts);
  }

  async *#stream(program: string, input: string | Uint8Array, opts: GenerateOptions): AsyncGenerator<string, StreamSummary, undefined> {
    const p0 = this.#program(program);
    if (p0.manifest.mode !== MODE.GENERATE) throw new ClientError("WRONG_MODE", `program ${show(program)} is a tensor program: it does not stream`);
    if (typeof input !== "string" && !(input instanceof Uint8Array)) throw new ClientError("WRONG_MODE", "stream takes a prompt");
    const prompt = typeof input === "string" ? new TextEncoder().encode(input) : Uint8Array.from(input);
    // Our own controller closes the connection when the consumer stops early.
    const local = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, local.signal]) : local.signal;
    let opened: { res: Response; ctx: ResponseOpener; worker: string; why: () => "ABORTED" | "TIMEOUT" | undefined };
    try {
      opened = await this.#call(
        program,
        "stream",
        { ...opts, signal },
        (p) => {
          if (p.manifest.mode !== MODE.GENERATE) throw new ClientError("WRONG_MODE", `program ${show(program)} changed mode at re-attestation`);
          return generateRequest(p.manifest, prompt, opts);
        },
        async (res, ctx, worker, _p, s) => ({ res, ctx, worker, why: s.why }),
      );
    } finally {
      wipe(prompt);
    }
    const { res, worker } = opened;
    const what = `stream ${show(program)} on worker ${worker}`;
    const opener = opened.ctx.openStream();
    opened.ctx.dispose();
    const decoder = new TextDecoder("utf-8");
    let tokens = 0;
    let chunks = 0;
    let stop = 0;
    if (!res.body) throw new ClientError("BAD_RESPONSE", `${what}: no body`, { worker });
    const reader = res.body.getReader();
    try {
      for (;;) {
        let r: ReadableStreamReadResult<Uint8Array>;
        try {
          r = await reader.read();
        } catch (e) {
          const why = opts.signal?.aborted ? "ABORTED" : opened.why();
          if (why) throw transportError(e, what, why, worker);
          if (opener.done) break; // the connection broke after the final record: nothing is missing
          throw new ClientError("TRUNCATED", `${what}: the connection broke off after ${chunks} record(s), before the final one`, { worker, cause: e });
        }
        if (r.done) break;
        let got;
        try {
          got = opener.push(r.value);
        } catch (e) {
          throw fromFormat(e, worker);
        }
        for (const c of got) {
          chunks++;
          tokens += c.tokens;
          if (c.stop !== 0) stop = c.stop;
          const piece = decoder.decode(c.text, { stream: true });
          wipe(c.text);
          if (piece) yield piece;
        }
      }
      try {
        opener.end();
      } catch (e) {
        throw fromFormat(e, worker);
      }
      const tail = decoder.decode();
      if (tail) yield tail;
      return { tokens, stop: stopOf(stop), chunks, worker };
    } finally {
      local.abort();
      reader.cancel().catch(() => undefined);
    }
  }
}

/** Connects to a veil server: attests its workers against `policy` before anything is sealed. */
export const connect = (opts: ConnectOptions): Promise<Client> => Client.connect(opts);
