// UNTRUSTED host code: the parent-side client of the trusted worker's channel
// (host/trusted/README.md). It spawns the worker (or connects to its Unix socket), speaks the
// framed protocol, and exposes the loader's entry points as async calls. It only ever holds
// what crosses the channel: ciphertext, public report bodies, manifests, graphs, handles and
// error codes. It imports the trusted protocol codec (pure framing, no secrets) so both sides
// agree on every byte.
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { connect, type Socket } from "node:net";
import { dirname, resolve } from "node:path";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describeLoaderError, type SpecErrorName } from "../formats/errors.ts";
import { WEIGHTS_HEADER_SIZE, decodeWeightsHeader, sealedStreamLength } from "../formats/weights-header.ts";
import { splitSealedWeights, type ByteSource } from "../formats/weights.ts";
import {
  DEFAULT_MAX_FRAME,
  FrameDecoder,
  MIN_FRAME_LENGTH,
  PayloadReader,
  REQ_NAMES,
  Reply,
  Req,
  WORKER_CODE_NAMES,
  decodeError,
  decodeHello,
  writeFrame,
  u32,
  vec16,
  vec32,
  type WorkerCodeName,
} from "../trusted/protocol.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository root: the worker is spawned from here, whatever the caller's cwd. */
export const REPO_ROOT = resolve(HERE, "../..");
export const WORKER_ENTRY = resolve(REPO_ROOT, "host/trusted/worker.ts");

export type WorkerErrorKind = "loader" | "worker" | "exited";

/**
 * A failed worker call. `kind` says who refused: the loader (a SPEC §12 code with its name and
 * field), the worker itself (a protocol-level code: BAD_FRAME, FRAME_TOO_LARGE, …), or nobody
 * because the worker process is gone (`retryable`: the same call may succeed on a new worker).
 */
export class WorkerError extends Error {
  override readonly name = "WorkerError";
  readonly kind: WorkerErrorKind;
  /** The request that failed ("load-program", …). */
  readonly op: string;
  /** Loader errors: the raw u32 (code | field << 16). Worker errors: the worker code. */
  readonly raw: number;
  /** SPEC §12 code (loader) or worker code. */
  readonly code: number;
  /** SPEC §12 name ("GRAPH_MISMATCH") or worker code name ("BAD_FRAME"); undefined when unknown. */
  readonly codeName: SpecErrorName | WorkerCodeName | "EXITED" | undefined;
  /** SPEC §12.1 field id and its label, for loader errors. */
  readonly fieldId: number;
  readonly field: string | undefined;
  readonly retryable: boolean;
  /** The worker's own short public message. */
  readonly detail: string;

  constructor(o: {
    kind: WorkerErrorKind; op: string; raw: number; code: number; codeName: WorkerError["codeName"];
    fieldId?: number; field?: string; retryable: boolean; detail: string; message: string;
  }) {
    super(o.message);
    this.kind = o.kind;
    this.op = o.op;
    this.raw = o.raw;
    this.code = o.code;
    this.codeName = o.codeName;
    this.fieldId = o.fieldId ?? 0;
    this.field = o.field;
    this.retryable = o.retryable;
    this.detail = o.detail;
  }

  static loader(op: string, raw: number, detail: string): WorkerError {
    const d = describeLoaderError(raw);
    const accel = detail.match(/\(accelerator: .*\)$/)?.[0];
    return new WorkerError({
      kind: "loader", op, raw: d.raw, code: d.code, codeName: d.name, fieldId: d.fieldId, field: d.field,
      retryable: false, detail, message: `${op}: ${d.message}${accel ? ` ${accel}` : ""}`,
    });
  }

  static worker(op: string, code: number, detail: string): WorkerError {
    const codeName = WORKER_CODE_NAMES[code];
    return new WorkerError({
      kind: "worker", op, raw: code, code, codeName, retryable: codeName === "SHUTTING_DOWN", detail,
      message: `${op}: worker error ${codeName ?? code}: ${detail}`,
    });
  }

  static exited(op: string, why: string): WorkerError {
    return new WorkerError({
      kind: "exited", op, raw: 0, code: 0, codeName: "EXITED", retryable: true, detail: why,
      message: `${op}: the veil worker is gone (${why}) before answering; the call may be retried on a new worker`,
    });
  }
}

export const isWorkerError = (e: unknown, codeName?: string): e is WorkerError =>
  e instanceof WorkerError && (codeName === undefined || e.codeName === codeName);

export interface Hello {
  /** SHA-256 of the exact loader.wasm bytes the worker instantiated (SPEC §4.1). */
  measurement: Uint8Array;
  measurementHex: string;
  /** SHA-256 over host/trusted/ (host/trusted/README.md, "Measurement"). */
  codeHash: Uint8Array;
  codeHashHex: string;
  protocol: number;
  /** Public versions and configuration: node, onnxruntime, execution providers, … */
  info: Record<string, unknown>;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  reason: string;
}

export interface WorkerOptions {
  /** The loader module the worker instantiates (default: build/loader.wasm of this checkout). */
  wasmPath?: string;
  /** Bound on one frame, both ways (default 80 MiB). */
  maxFrame?: number;
  /** ONNX Runtime session options for the worker (see host/trusted/ort-runtime.ts). */
  ort?: Record<string, unknown>;
  logLevel?: "quiet" | "error" | "warn" | "info" | "debug";
  /** Each stderr line of the worker: parsed JSON, or the raw text if it is not JSON. */
  onLog?: (entry: Record<string, unknown> | string) => void;
  /** Extra node flags (default ["--expose-gc"], which lets the worker free staging memory promptly). */
  nodeArgs?: string[];
  /** Serve a Unix socket at this path instead of stdin/stdout (use WorkerClient.connect to talk). */
  socketPath?: string;
  /** Directories whose sealed weights files the worker may read (loadWeightsFile); none: refused. */
  weightsDirs?: string[];
  env?: NodeJS.ProcessEnv;
  /**
   * A script to run instead of the worker (a path from the repository root), spawned and framed
   * the same way: for benchmark baselines that must pay exactly the worker's process costs.
   */
  entry?: string;
}

/** The command that starts the worker, independent of the caller's cwd. */
export function workerCommand(o: WorkerOptions = {}): { command: string; args: string[]; cwd: string } {
  let tsx = "tsx";
  try {
    tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  } catch {
    // resolved from cwd = REPO_ROOT below
  }
  const args = [...(o.nodeArgs ?? ["--expose-gc"]), "--import", tsx, o.entry ? resolve(REPO_ROOT, o.entry) : WORKER_ENTRY];
  if (o.wasmPath) args.push("--wasm", resolve(o.wasmPath));
  if (o.maxFrame !== undefined) args.push("--max-frame", String(o.maxFrame));
  if (o.ort) args.push("--ort", JSON.stringify(o.ort));
  if (o.logLevel) args.push("--log-level", o.logLevel);
  if (o.socketPath) args.push("--socket", resolve(o.socketPath));
  for (const d of o.weightsDirs ?? []) args.push("--weights-dir", resolve(d));
  return { command: process.execPath, args, cwd: REPO_ROOT };
}

interface Pending {
  op: string;
  resolve: (payload: Uint8Array) => void;
  reject: (e: WorkerError) => void;
}

/** Splits a stream of bytes into lines and hands each to `f`. */
function lines(stream: Readable, f: (line: string) => void): void {
  let rest = "";
  stream.setEncoding("utf8");
  stream.on("data", (s: string) => {
    rest += s;
    let i;
    while ((i = rest.indexOf("\n")) >= 0) {
      f(rest.slice(0, i));
      rest = rest.slice(i + 1);
    }
    if (rest.length > 65536) rest = rest.slice(-65536);
  });
  stream.on("end", () => rest && f(rest));
}

export class WorkerClient {
  /** The child process, when this client spawned the worker. */
  readonly child: ChildProcess | undefined;
  /** Resolves when the worker (or the connection) is gone. Never rejects. */
  readonly exited: Promise<ExitInfo>;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private gone: ExitInfo | undefined;
  private lastError: string | undefined;
  private readonly maxFrame: number;
  private markGone!: (info: ExitInfo) => void;

  private constructor(private readonly output: Writable, input: Readable, opts: { child?: ChildProcess; maxFrame?: number }) {
    this.child = opts.child;
    this.maxFrame = opts.maxFrame ?? DEFAULT_MAX_FRAME;
    this.exited = new Promise<ExitInfo>((res) => {
      this.markGone = (info) => {
        if (this.gone) return;
        this.gone = info;
        const why = `${info.reason}${this.lastError ? `; last worker error event: ${this.lastError}` : ""}`;
        for (const [id, p] of this.pending) {
          this.pending.delete(id);
          p.reject(WorkerError.exited(p.op, why));
        }
        res(info);
      };
    });
    const decoder = new FrameDecoder(this.maxFrame + 64 * 1024); // replies may exceed requests a little
    input.on("data", (chunk: Buffer) => {
      for (const ev of decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))) {
        if (ev.kind !== "frame") {
          this.markGone({ code: null, signal: null, reason: "the worker sent a malformed frame" });
          this.kill();
          return;
        }
        this.onFrame(ev.type, ev.id, ev.payload);
      }
    });
    input.on("close", () => {
      // A child's exit status says more than the closed pipe: wait for it, briefly.
      if (!opts.child) return this.markGone({ code: null, signal: null, reason: "channel closed" });
      setTimeout(() => this.markGone({ code: null, signal: null, reason: "worker closed the channel" }), 200).unref();
    });
    input.on("error", () => undefined);
    output.on("error", () => undefined); // EPIPE after the worker died: reported through `exited`
  }

  /** Spawns a worker on stdin/stdout (or on `socketPath`, then use connect()). */
  static spawn(opts: WorkerOptions = {}): WorkerClient {
    const cmd = workerCommand(opts);
    const child = spawn(cmd.command, cmd.args, { cwd: cmd.cwd, stdio: ["pipe", "pipe", "pipe"], env: opts.env ?? process.env });
    const client = new WorkerClient(child.stdin!, child.stdout!, { child, maxFrame: opts.maxFrame });
    lines(child.stderr!, (line) => {
      let entry: Record<string, unknown> | string = line;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        // not JSON: passed on as text
      }
      if (typeof entry === "object" && entry?.level === "error") client.lastError = String(entry.event);
      opts.onLog?.(entry);
    });
    child.on("exit", (code, signal) =>
      client.markGone({ code, signal, reason: signal ? `worker killed by ${signal}` : `worker exited with code ${code}` }));
    child.on("error", (e) => client.markGone({ code: null, signal: null, reason: `cannot run the worker: ${e.message}` }));
    return client;
  }

  /** Connects to a worker serving a Unix socket (`--socket PATH`). */
  static connect(path: string, opts: { maxFrame?: number } = {}): Promise<WorkerClient> {
    return new Promise((res, rej) => {
      const sock: Socket = connect(path);
      sock.once("error", rej);
      sock.once("connect", () => {
        sock.off("error", rej);
        res(new WorkerClient(sock, sock, { maxFrame: opts.maxFrame }));
      });
    });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** True once the worker or the connection is gone. */
  get closed(): boolean {
    return this.gone !== undefined;
  }

  private onFrame(type: number, id: number, payload: Uint8Array): void {
    const p = this.pending.get(id);
    if (!p) return; // id 0 (an unattributable complaint) or a call already given up on
    this.pending.delete(id);
    try {
      if (type === Reply.OK) return p.resolve(new Uint8Array(payload)); // a copy, detached from the stream chunk
      const { code, message } = decodeError(payload);
      if (type === Reply.LOADER_ERROR) return p.reject(WorkerError.loader(p.op, code, message));
      if (type === Reply.WORKER_ERROR) return p.reject(WorkerError.worker(p.op, code, message));
      p.reject(WorkerError.worker(p.op, 0, `unknown reply type 0x${type.toString(16)}`));
    } catch (e) {
      p.reject(WorkerError.worker(p.op, 0, `malformed reply: ${(e as Error).message}`));
    }
  }

  /**
   * Sends one request; resolves with the OK payload. The payload bytes are written as they are,
   * not copied: leave them unmodified until the call settles.
   */
  request(type: number, payload: readonly Uint8Array[] = []): Promise<Uint8Array> {
    const op = REQ_NAMES[type] ?? `type 0x${type.toString(16)}`;
    if (this.gone) return Promise.reject(WorkerError.exited(op, this.gone.reason));
    let size = MIN_FRAME_LENGTH;
    for (const p of payload) size += p.length;
    if (size > this.maxFrame) {
      return Promise.reject(WorkerError.worker(op, 3, `a ${size}-byte frame is over the ${this.maxFrame}-byte bound; not sent`));
    }
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { op, resolve, reject });
      writeFrame(this.output, type, id, payload);
    });
  }

  async hello(): Promise<Hello> {
    const h = decodeHello(await this.request(Req.HELLO));
    const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
    return { ...h, measurementHex: hex(h.measurement), codeHashHex: hex(h.codeHash) };
  }

  /** SPEC §11.2 init: returns the ReportBody. */
  init(trustConfig: Uint8Array, nonce: Uint8Array): Promise<Uint8Array> {
    return this.request(Req.INIT, [...vec32(trustConfig), ...vec32(nonce)]);
  }

  attest(nonce: Uint8Array): Promise<Uint8Array> {
    return this.request(Req.ATTEST, vec32(nonce));
  }

  /**
   * Evidence (host/attest/README.md §1) produced inside the worker for `nonce`: the loader's
   * ReportBody for that nonce, the worker's measurement and code hash, vouched for by the
   * worker's platform attester. Public bytes; verify them with host/attest verifyEvidence.
   */
  evidence(nonce: Uint8Array): Promise<Uint8Array> {
    return this.request(Req.EVIDENCE, vec32(nonce));
  }

  async unwrapKey(wrapped: Uint8Array): Promise<void> {
    await this.request(Req.UNWRAP_KEY, vec32(wrapped));
  }

  async loadProgram(manifest: Uint8Array, signatures: Uint8Array, graph: Uint8Array): Promise<number> {
    return readU32(await this.request(Req.LOAD_PROGRAM, [...vec32(manifest), ...vec32(signatures), ...vec32(graph)]), "program");
  }

  async loadWeights(program: number, piece: Uint8Array): Promise<void> {
    await this.request(Req.LOAD_WEIGHTS, [u32(program), ...vec32(piece)]);
  }

  /**
   * The worker reads the sealed weights stream itself from `path`, which must name a file it
   * can open (same machine): one read per piece straight into the loader, no channel traffic.
   * Resolves once the final chunk was accepted. The path is sent as given; resolve it first.
   */
  async loadWeightsFile(program: number, path: string): Promise<void> {
    const p = new TextEncoder().encode(path);
    if (p.length === 0 || p.length > 0xffff) throw new RangeError(`weights file path of ${p.length} bytes is not 1..65535`);
    await this.request(Req.LOAD_WEIGHTS_FILE, [u32(program), ...vec16(p)]);
  }

  async unloadProgram(program: number): Promise<void> {
    await this.request(Req.UNLOAD_PROGRAM, [u32(program)]);
  }

  /** SPEC §8.1–§8.3: an encapsulated request in, the encapsulated response out. */
  infer(program: number, request: Uint8Array): Promise<Uint8Array> {
    return this.request(Req.INFER, [u32(program), ...vec32(request)]);
  }

  async inferBegin(program: number, request: Uint8Array): Promise<number> {
    return readU32(await this.request(Req.INFER_BEGIN, [u32(program), ...vec32(request)]), "stream");
  }

  /** The 32-byte response nonce first, then one StreamRecord per call; STREAM_DONE after the final. */
  inferNext(stream: number): Promise<Uint8Array> {
    return this.request(Req.INFER_NEXT, [u32(stream)]);
  }

  async inferCancel(stream: number): Promise<void> {
    await this.request(Req.INFER_CANCEL, [u32(stream)]);
  }

  /** SPEC §8.5.1: an EncapsulatedRequest carrying a SessionOpen in, the encapsulated SessionAccept out. */
  sessionOpen(program: number, request: Uint8Array): Promise<Uint8Array> {
    return this.request(Req.SESSION_OPEN, [u32(program), ...vec32(request)]);
  }

  /**
   * SPEC §8.4 as an async iterator: yields the response nonce, then each StreamRecord, exactly
   * the pieces a client's stream opener takes in order. Ends at STREAM_DONE; leaving the loop
   * early (break, throw) cancels the stream in the loader.
   */
  async *stream(program: number, request: Uint8Array): AsyncGenerator<Uint8Array, void, undefined> {
    const s = await this.inferBegin(program, request);
    let ended = false;
    try {
      for (;;) {
        let piece: Uint8Array;
        try {
          piece = await this.inferNext(s);
        } catch (e) {
          if (isWorkerError(e, "STREAM_DONE")) {
            ended = true;
            return;
          }
          throw e;
        }
        yield piece;
      }
    } finally {
      if (!ended && !this.gone) await this.inferCancel(s).catch(() => undefined);
    }
  }

  /** Asks the worker to unload everything and exit; kills it after `timeoutMs`. */
  async close(timeoutMs = 5000): Promise<ExitInfo> {
    if (!this.gone) {
      const timer = setTimeout(() => this.kill(), timeoutMs);
      try {
        await this.request(Req.SHUTDOWN);
      } catch {
        // gone already, or shutting down: either way we wait for the exit below
      }
      if (!this.child) (this.output as Socket).end();
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }

  /** Ends the worker at once (SIGKILL by default); pending calls reject as retryable. */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.child) this.child.kill(signal);
    else (this.output as Socket).destroy();
  }
}

function readU32(payload: Uint8Array, what: string): number {
  const r = new PayloadReader(payload, what);
  const v = r.u32(what);
  r.end();
  return v;
}

export interface WeightsProgress {
  /** Pieces acknowledged by the worker (the header counts as one). */
  pieces: number;
  /** Header plus chunk_count, when the header parsed. */
  piecesTotal: number | undefined;
  bytes: number;
  /** The sealed stream's length implied by its header. */
  bytesTotal: number | undefined;
}

/**
 * Streams a sealed weights file (§9) into `load-weights`, one piece per call — the header,
 * then each chunk — with at most `inFlight` pieces unacknowledged. Stops at the first
 * refusal and throws it (the loader has then poisoned the program's weights).
 */
export async function loadSealedWeights(
  client: WorkerClient,
  program: number,
  source: string | ByteSource,
  opts: { onProgress?: (p: WeightsProgress) => void; inFlight?: number } = {},
): Promise<WeightsProgress> {
  const inFlight = Math.max(1, opts.inFlight ?? 2);
  const progress: WeightsProgress = { pieces: 0, piecesTotal: undefined, bytes: 0, bytesTotal: undefined };
  const window: Promise<void>[] = [];
  let failure: unknown;
  const settle = async () => {
    try {
      await window.shift();
    } catch (e) {
      failure ??= e;
    }
  };
  for await (const piece of splitSealedWeights(source)) {
    if (progress.pieces === 0 && progress.piecesTotal === undefined && piece.length === WEIGHTS_HEADER_SIZE) {
      try {
        const h = decodeWeightsHeader(piece);
        progress.piecesTotal = 1 + h.chunkCount;
        progress.bytesTotal = sealedStreamLength(h);
      } catch {
        // not a header: the loader will say so
      }
    }
    const n = piece.length;
    const sent = client.loadWeights(program, piece).then(() => {
      progress.pieces++;
      progress.bytes += n;
      opts.onProgress?.({ ...progress });
    });
    sent.catch(() => undefined); // observed in settle(); never an unhandled rejection meanwhile
    window.push(sent);
    while (window.length >= inFlight && failure === undefined) await settle();
    if (failure !== undefined) break;
  }
  while (window.length > 0) await settle();
  if (failure !== undefined) throw failure;
  return progress;
}
