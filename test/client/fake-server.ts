// A fake veil server for the client SDK tests: node:http on 127.0.0.1 (ephemeral port)
// implementing the HTTP API v1 contract over REAL loaders — LoaderInstance over
// build/loader.wasm, a scripted fake accelerator, software evidence from host/attest's
// SoftwareAttester — with knobs to misbehave: replayed, foreign or forged evidence, wrong
// measurements, lying program listings, 503/504 with Retry-After, worker restarts (new loader
// key), and streams that drop, reorder, duplicate, alter, cut or pad their records.
import http from "node:http";
import { randomBytes, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as F from "../../host/formats/index.ts";
import { LoaderError, LoaderInstance, type Accelerator } from "../../host/trusted/loader-instance.ts";
import { WeightsMeasure } from "../helpers/measure.ts";
import { codeHash } from "../../host/trusted/identity.ts";
import { SoftwareAttester, encodeEvidence } from "../../host/attest/index.ts";

export const WASM_PATH = fileURLToPath(new URL("../../build/loader.wasm", import.meta.url));
export const WASM = new Uint8Array(readFileSync(WASM_PATH));
export const MEASUREMENT = new Uint8Array(createHash("sha256").update(WASM).digest());
export const WORKER_CODE_HASH = codeHash(fileURLToPath(new URL("../../host/trusted", import.meta.url)));
export const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const hex = F.toHex;
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

// ------------------------------------------------------------------------------------------
// programs: "echo" (tensor, y = x) and "tiny-lm" (generate, scripted)
// ------------------------------------------------------------------------------------------

/**
 * The vocabulary of tiny-lm, as byte strings: "é" (c3 a9) and "€" (e2 82 ac) are each split over
 * two tokens, so that with tokens_per_chunk = 1 a character spans two stream records.
 */
export const VOCAB = ["<end>", "S", "ay", ":", " ", "h", "\xc3", "\xa9", "llo", " w", "\xe2\x82", "\xac", "rld", "!"].map(bytes);
/** The next token after each token (greedy decoding follows it): "Say: " → "héllo w€rld!" then <end>. */
const NEXT: Record<number, number> = { 4: 5, 5: 6, 6: 7, 7: 8, 8: 9, 9: 10, 10: 11, 11: 12, 12: 13, 13: 0 };
export const PROMPT = "Say: ";
export const COMPLETION = "héllo w€rld!";
export const COMPLETION_TOKENS = 9;
/** Text pieces a stream yields, one record per token, multi-byte characters whole. */
export const PIECES = ["h", "é", "llo", " w", "€", "rld", "!"];

class ScriptedAccelerator implements Accelerator {
  readonly manifests = new Map<number, F.Manifest>();
  runs = 0;
  createProgram(program: number, manifest: Uint8Array): void {
    this.manifests.set(program, F.decodeManifest(manifest));
  }
  private readonly measure = new WeightsMeasure();
  uploadWeights(program: number, _offset: bigint, data: Uint8Array): void {
    this.measure.upload(program, data);
  }
  measureWeights(program: number): Uint8Array {
    return this.measure.finish(program);
  }
  finishWeights(): void {}
  run(program: number, inputs: Uint8Array): Uint8Array {
    this.runs++;
    const m = this.manifests.get(program)!;
    const list = F.decodeTensorList(inputs);
    if (m.mode === 2) {
      const t = list[0];
      const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      const last = Number(dv.getBigInt64(t.data.length - 8, true));
      const V = m.generate!.tokens.length;
      const logits = new Float32Array(V);
      logits[NEXT[last] ?? 0] = 10;
      return F.encodeTensorList([{ name: m.outputs[0].name, dtype: 1, dims: [1, 1, V], data: new Uint8Array(logits.buffer) }]);
    }
    return F.encodeTensorList([{ ...list[0], name: m.outputs[0].name }]);
  }
  dropProgram(): void {}
}

export interface FakeProgram {
  name: string;
  bytes: Uint8Array;
  digest: Uint8Array;
  graph: Uint8Array;
  bundle: Uint8Array;
  pieces: Uint8Array[];
  keyId: Uint8Array;
  dataKey: Uint8Array;
}

async function sealed(size: number): Promise<{ descriptor: F.WeightsDescriptor; pieces: Uint8Array[]; keyId: Uint8Array; dataKey: Uint8Array }> {
  const keyId = rand(16);
  const dataKey = rand(32);
  const out: Uint8Array[] = [];
  const sw = await F.sealWeights({ files: [{ location: "weights.bin", size, source: [rand(size)] }], dataKey, keyId, chunkSize: 65536, out: (b) => void out.push(b.slice()) });
  const pieces: Uint8Array[] = [];
  for await (const p of F.splitSealedWeights([F.concat(...out)])) pieces.push(p);
  return { descriptor: sw.descriptor, pieces, keyId, dataKey };
}

// ------------------------------------------------------------------------------------------
// workers
// ------------------------------------------------------------------------------------------

export class FakeWorker {
  L!: LoaderInstance;
  acc!: ScriptedAccelerator;
  report!: Uint8Array;
  handles = new Map<string, number>();
  boots = 0;
  firstEvidence?: Uint8Array;

  constructor(
    readonly id: string,
    readonly server: FakeVeilServer,
    /** What the platform claims: the measurement and worker code hash put in the evidence. */
    readonly claims: { measurement: Uint8Array; workerCodeHash: Uint8Array },
    readonly attester: SoftwareAttester,
  ) {
    this.boot();
  }

  /** (Re)starts the loader: a fresh instance, hence a fresh HPKE key; programs loaded again. */
  boot(): void {
    this.acc = new ScriptedAccelerator();
    this.L = LoaderInstance.create(WASM, { accelerator: this.acc });
    this.report = this.L.init(this.server.trustConfig, rand(32));
    this.handles.clear();
    for (const p of this.server.programs) {
      this.L.unwrapKey(F.wrapKey({ report: this.report, keyId: p.keyId, dataKey: p.dataKey }));
      const h = this.L.loadProgram(p.bytes, p.bundle, p.graph);
      for (const piece of p.pieces) this.L.loadWeights(h, piece);
      this.handles.set(p.name, h);
    }
    this.boots++;
  }

  get keyId(): number {
    return F.decodeReportBody(this.report).keyId;
  }

  async evidence(nonce: Uint8Array): Promise<Uint8Array> {
    const report = this.L.attest(nonce);
    const ev = await this.attester.attest(report, this.claims.measurement, this.claims.workerCodeHash);
    const out = encodeEvidence(ev);
    this.firstEvidence ??= out;
    return out;
  }
}

// ------------------------------------------------------------------------------------------
// the server
// ------------------------------------------------------------------------------------------

export type EvidenceMode = "fresh" | "replay" | "foreign" | "bad-signature";
export type StreamMode = "normal" | "drop" | "reorder" | "duplicate" | "flip" | "cut" | "trailing" | "abort" | "split";

export interface Failure {
  status: number;
  code: string;
  retryAfter?: string;
  retryable?: boolean;
  /** Runs when the failure is served (e.g. restart the worker). */
  then?: () => void;
}

export interface Hit {
  method: string;
  path: string;
  worker?: string;
  status?: number;
  /** A POST body that is a SessionRequest (SPEC §8.5.2). */
  sessionRequest?: boolean;
}

const STREAM_GAP_MS = 3;
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class FakeVeilServer {
  readonly attester = SoftwareAttester.generate();
  readonly reviewers = [F.generateReviewerKey(), F.generateReviewerKey(), F.generateReviewerKey()];
  readonly trustConfig = F.encodeTrustConfig({ threshold: 2, reviewers: this.reviewers.map((r) => r.publicKey) }, { sort: true });
  programs: FakeProgram[] = [];
  workers: FakeWorker[] = [];
  readonly hits: Hit[] = [];
  url = "";

  // knobs (reset() restores them)
  evidenceMode: EvidenceMode = "fresh";
  streamMode: StreamMode = "normal";
  /** Served, in order, instead of running infer/stream POSTs. */
  failures: Failure[] = [];
  /** The stream handler waits for this after the first record. */
  streamGate?: Promise<void>;
  /** Program listing lies. */
  listing: { badDigest?: string; weakSignatures?: string; renamed?: string } = {};
  streamClosed = 0;
  /** Serve session-open (SPEC §8.5.1); off, the server is one that predates sessions (404). */
  sessions = false;

  private server?: http.Server;

  static async start(workers: { id: string; measurement?: Uint8Array; workerCodeHash?: Uint8Array; attester?: SoftwareAttester }[] = [{ id: "w0" }]): Promise<FakeVeilServer> {
    const s = new FakeVeilServer();
    await s.buildPrograms();
    for (const w of workers)
      s.workers.push(
        new FakeWorker(w.id, s, { measurement: w.measurement ?? MEASUREMENT, workerCodeHash: w.workerCodeHash ?? WORKER_CODE_HASH }, w.attester ?? s.attester),
      );
    await s.listen();
    return s;
  }

  reset(): void {
    this.evidenceMode = "fresh";
    this.streamMode = "normal";
    this.failures = [];
    this.streamGate = undefined;
    this.listing = {};
    this.hits.length = 0;
    this.streamClosed = 0;
    this.sessions = false;
  }

  count(path: string | RegExp, method?: string): number {
    return this.hits.filter((h) => (typeof path === "string" ? h.path === path : path.test(h.path)) && (!method || h.method === method)).length;
  }

  /** POSTs to any infer or stream route. */
  get posts(): number {
    return this.count(/^\/v1\/programs\/[^/]+\/(infer|stream)$/, "POST");
  }

  sign(bytes: Uint8Array, who: number[]): Uint8Array {
    return F.assembleBundle(who.map((i) => F.signManifest(bytes, this.reviewers[i])));
  }

  private async buildPrograms(): Promise<void> {
    const w1 = await sealed(64);
    const echoGraph = rand(300);
    const echo = F.buildManifest({
      name: "echo",
      version: 3,
      graph: echoGraph,
      inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }] }],
      outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }] }],
      weights: w1.descriptor,
    });
    const w2 = await sealed(32);
    const gen: F.GenerateSpec = { tokens: VOCAB, endToken: 0, maxNewTokens: 32, contextLength: 64, tokensPerChunk: 1 };
    const lmGraph = rand(200);
    const lm = F.buildManifest({ name: "tiny-lm", version: 1, graph: lmGraph, ...F.generateTensorSpecs(gen, { positions: "last" }), generate: gen, weights: w2.descriptor });
    this.programs = [
      { name: "echo", bytes: echo.bytes, digest: echo.digest, graph: echoGraph, bundle: this.sign(echo.bytes, [0, 1]), ...w1 },
      { name: "tiny-lm", bytes: lm.bytes, digest: lm.digest, graph: lmGraph, bundle: this.sign(lm.bytes, [2, 0]), ...w2 },
    ];
  }

  worker(id: string): FakeWorker {
    return this.workers.find((w) => w.id === id)!;
  }

  private listen(): Promise<void> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) this.json(res, 500, { code: "SERVER_INTERNAL", number: 0, field: null, message: String((e as Error).message), retryable: false });
        else res.destroy();
      });
    });
    return new Promise((resolve) =>
      this.server!.listen(0, "127.0.0.1", () => {
        const a = this.server!.address() as { port: number };
        this.url = `http://127.0.0.1:${a.port}`;
        resolve();
      }),
    );
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  private json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const b = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(b), ...headers });
    res.end(b);
  }

  private error(res: http.ServerResponse, status: number, code: string, message: string, o: { retryable?: boolean; retryAfter?: string; number?: number; field?: string | null } = {}): void {
    this.json(
      res,
      status,
      { code, number: o.number ?? 0, field: o.field ?? null, message, retryable: o.retryable ?? (status === 503 || status === 504) },
      o.retryAfter !== undefined ? { "retry-after": o.retryAfter } : {},
    );
  }

  private loaderError(res: http.ServerResponse, e: LoaderError): void {
    const d = F.describeLoaderError(e.raw);
    this.error(res, 400, d.name ?? "SERVER_LOADER_ERROR", d.message, { number: d.code, field: d.field ?? null, retryable: false });
  }

  private async body(req: http.IncomingMessage): Promise<Uint8Array> {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    return new Uint8Array(Buffer.concat(parts));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const u = new URL(req.url ?? "/", "http://x");
    const hit: Hit = { method: req.method ?? "", path: u.pathname, worker: u.searchParams.get("worker") ?? undefined };
    this.hits.push(hit);
    res.on("finish", () => (hit.status = res.statusCode));

    if (req.method === "GET" && u.pathname === "/v1/attestation") {
      const raw = u.searchParams.get("nonce") ?? "";
      const nonce = new Uint8Array(Buffer.from(raw, "base64url"));
      if (nonce.length !== 32 || Buffer.from(nonce).toString("base64url") !== raw) return this.error(res, 400, "SERVER_BAD_NONCE", "nonce must be 32 bytes of base64url");
      const workers = [];
      for (const w of this.workers) {
        let ev: Uint8Array;
        if (this.evidenceMode === "replay" && w.firstEvidence) ev = w.firstEvidence;
        else if (this.evidenceMode === "foreign") ev = await w.evidence(rand(32));
        else ev = await w.evidence(nonce);
        if (this.evidenceMode === "bad-signature") {
          ev = ev.slice();
          ev[ev.length - 1] ^= 0x01; // the last byte of the Ed25519 signature
        }
        workers.push({ id: w.id, evidence: Buffer.from(ev).toString("base64url"), programs: [...w.handles.keys()] });
      }
      return this.json(res, 200, { workers });
    }

    if (req.method === "GET" && u.pathname === "/v1/programs") {
      return this.json(res, 200, {
        programs: this.programs.map((p) => {
          const manifest = p.bytes;
          let bundle = p.bundle;
          let digest = hex(p.digest);
          if (this.listing.badDigest === p.name) digest = hex(rand(32));
          if (this.listing.weakSignatures === p.name) bundle = this.sign(p.bytes, [1]);
          return {
            name: this.listing.renamed === p.name ? `${p.name}-x` : p.name,
            version: F.decodeManifest(p.bytes).version.toString(),
            digest,
            manifest: Buffer.from(manifest).toString("base64url"),
            signatures: Buffer.from(bundle).toString("base64url"),
            workers: this.workers.filter((w) => w.handles.has(p.name)).map((w) => w.id),
          };
        }),
      });
    }

    if (req.method === "GET" && u.pathname === "/healthz") return this.json(res, 200, { ok: true });

    const m = /^\/v1\/programs\/([^/]+)\/(infer|stream|session)$/.exec(u.pathname);
    if (req.method === "POST" && m && (m[2] !== "session" || this.sessions)) {
      const name = decodeURIComponent(m[1]);
      const body = await this.body(req);
      hit.sessionRequest = F.isSessionRequest(body);
      const f = this.failures.shift();
      if (f) {
        f.then?.();
        return this.error(res, f.status, f.code, `fake failure ${f.code}`, { retryAfter: f.retryAfter, retryable: f.retryable });
      }
      const program = this.programs.find((p) => p.name === name);
      if (!program) return this.error(res, 404, "SERVER_UNKNOWN_PROGRAM", "no such program");
      let w: FakeWorker | undefined;
      if (hit.worker !== undefined) {
        w = this.workers.find((x) => x.id === hit.worker);
        if (!w) return this.error(res, 404, "SERVER_UNKNOWN_WORKER", "no such worker");
      } else {
        const c = this.workers.filter((x) => x.keyId === body[0] && x.handles.has(name));
        if (c.length !== 1) return this.error(res, 409, "SERVER_AMBIGUOUS_WORKER", "route by key id is ambiguous");
        w = c[0];
      }
      const h = w.handles.get(name)!;
      if (m[2] === "infer" || m[2] === "session") {
        let out: Uint8Array;
        try {
          out = m[2] === "infer" ? w.L.infer(h, body) : w.L.sessionOpen(h, body);
        } catch (e) {
          if (e instanceof LoaderError) return this.loaderError(res, e);
          throw e;
        }
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": out.length });
        return void res.end(out);
      }
      let stream: number;
      try {
        stream = w.L.inferBegin(h, body);
      } catch (e) {
        if (e instanceof LoaderError) return this.loaderError(res, e);
        throw e;
      }
      const pieces: Uint8Array[] = [];
      for (;;) {
        try {
          pieces.push(w.L.inferNext(stream));
        } catch (e) {
          if (e instanceof LoaderError && e.code === F.ERROR_CODES.STREAM_DONE) break;
          throw e;
        }
      }
      return this.writeStream(res, pieces);
    }
    this.error(res, 404, "SERVER_NOT_FOUND", "no such route");
  }

  /** pieces[0] is the response nonce, then one StreamRecord each; the mode tampers with them. */
  private async writeStream(res: http.ServerResponse, pieces: Uint8Array[]): Promise<void> {
    let closed = false;
    res.on("close", () => {
      closed = true;
      this.streamClosed++;
    });
    const p = pieces.slice();
    switch (this.streamMode) {
      case "drop":
        p.splice(3, 1);
        break;
      case "reorder":
        [p[3], p[4]] = [p[4], p[3]];
        break;
      case "duplicate":
        p.splice(3, 0, p[3]);
        break;
      case "flip":
        p[3] = p[3].slice();
        p[3][10] ^= 0x40;
        break;
      case "cut":
        p.pop();
        break;
      case "trailing":
        p.push(Uint8Array.of(0, 0, 0));
        break;
      case "abort":
        p.splice(4, p.length, p[4].subarray(0, 12));
        break;
    }
    let writes = p;
    if (this.streamMode === "split") {
      const all = F.concat(...p);
      writes = [];
      for (let i = 0; i < all.length; i += 3) writes.push(all.subarray(i, i + 3));
    }
    res.writeHead(200, { "content-type": "application/octet-stream" });
    for (let i = 0; i < writes.length && !closed; i++) {
      res.write(writes[i]);
      if (i === 1 && this.streamGate) await this.streamGate;
      await delay(this.streamMode === "split" ? 0 : STREAM_GAP_MS);
    }
    if (closed) return;
    if (this.streamMode === "abort") return void res.socket?.destroy();
    res.end();
  }
}
