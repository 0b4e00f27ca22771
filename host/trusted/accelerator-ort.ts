// Trusted: the loader's accelerator import (SPEC §11.3) on ONNX Runtime. It receives
// plaintext weights (`uploadWeights`) and plaintext tensors (`run`) — what the loader decided
// to release — so it runs only inside the trusted worker. It measures the weights it loads
// (SPEC §9.1) on a second thread (measure.ts), whose hash state is derived from them.
// Plaintext lives here in exactly two places:
// the per-location staging buffers (shared with the measurement thread), from the program's
// creation until the session is built (then the measurement thread wipes them, off the thread
// that answers requests, and they are dropped), and, for the length of one `run`,
// any input copy made for alignment and ONNX Runtime's output arrays (wiped before returning;
// the returned TensorList is wiped as soon as the loader has copied it). Nothing is logged but
// public facts (handles, manifest names and sizes, timings).
import type { Accelerator } from "./loader-instance.ts";
import { silentLogger, type Logger } from "./log.ts";
import { ManifestReadError, readManifestFacts, type ManifestFacts } from "./manifest-facts.ts";
import { MeasureJob, warmMeasureThread } from "./measure.ts";
import { OrtRuntime, type OrtConfig, type SyncSession } from "./ort-runtime.ts";
import { DTYPES, DTYPE_BY_ORT, TENSOR_MAX, readTensorList, typedView, writeTensorList, type OutTensor, type TypedArray } from "./tensorlist.ts";

/** SPEC §12 ACCELERATOR_FAILED: what every failure here returns to the loader. */
export const ACCELERATOR_FAILED = 64;
/** ONNX Runtime takes one external-data buffer of at most 2^31 − 1 bytes. */
export const MAX_LOCATION_BYTES = 2 ** 31 - 1;

export interface OrtAcceleratorOptions {
  /** Session options; CPU and graph optimisation "all" by default. */
  config?: OrtConfig;
  /** An existing runtime (shares the provider decision); built from `config` otherwise. */
  runtime?: OrtRuntime;
  log?: Logger;
  /**
   * Tests only (the worker never sets it): called with each staging buffer when it is
   * allocated, so a test can check that it is all zeros after `finishWeights` (and `stagingWiped`).
   */
  observeStaging?: (program: number, location: string, buffer: Uint8Array) => void;
}

interface Program {
  facts: ManifestFacts;
  /** Public graph bytes, kept until the session exists. */
  graph?: Uint8Array;
  /** Per manifest file: its staging buffer (shared memory, pages touched as the stream nears them). */
  staging: Uint8Array[];
  /** The weights measurement in progress (SPEC §9.1). */
  measure?: MeasureJob;
  /** measure-weights answered: the loader may now ask for the session. */
  measured?: boolean;
  /** Bytes of the weights stream received so far (the next expected offset). */
  received: number;
  /** Index of the file holding offset `received`. */
  file: number;
  session?: SyncSession;
  /** Set when a call failed: the program takes no further weights (the loader drops it). */
  failed: boolean;
}

class Refusal extends Error {}

/** Zeroes a typed array through its bytes (BigInt64Array.fill(0) would throw). */
const wipeTyped = (a: ArrayBufferView): void => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).fill(0) as unknown as void;

export class OrtAccelerator implements Accelerator {
  readonly runtime: OrtRuntime;
  private readonly programs = new Map<number, Program>();
  /** Set by close(): no measurement thread is started for a next load. */
  private closing = false;
  private readonly log: Logger;
  private failure: string | undefined;
  private pendingOutput: Uint8Array | undefined;
  /** Staging being wiped by measurement threads, with what to wipe here if we close first. */
  private readonly wiping = new Map<Promise<void>, () => void>();

  constructor(private readonly options: OrtAcceleratorOptions = {}) {
    this.log = options.log ?? silentLogger;
    this.runtime = options.runtime ?? new OrtRuntime(options.config ?? {}, this.log);
    warmMeasureThread(); // ready before the first load
  }

  /**
   * The public reason of the most recent failure, once (cleared when read). The loader reports
   * every accelerator failure as ACCELERATOR_FAILED; the worker adds this text to its reply.
   */
  takeFailure(): string | undefined {
    const f = this.failure;
    this.failure = undefined;
    return f;
  }

  /** Number of programs with state here (for tests and the worker's accounting). */
  get programCount(): number {
    return this.programs.size;
  }

  private refuse(program: number, reason: string): never {
    this.failure = reason;
    this.log.warn("accelerator refused", { program, reason });
    throw new Refusal(reason);
  }

  /** Runs `f`; a refusal or any exception becomes ACCELERATOR_FAILED. */
  private guard<T>(op: string, program: number, f: () => T): T | number {
    try {
      return f();
    } catch (e) {
      if (!(e instanceof Refusal)) {
        // An exception's text may quote plaintext (ONNX Runtime's do): only its class is logged.
        this.failure = `${op} failed (${e instanceof Error ? e.name : typeof e}; details withheld)`;
        this.log.warn("accelerator error", { program, op, error: e instanceof Error ? e.name : typeof e });
      }
      const p = this.programs.get(program);
      if (p) p.failed = true;
      return ACCELERATOR_FAILED;
    }
  }

  createProgram(program: number, manifest: Uint8Array, graph: Uint8Array): void | number {
    return this.guard("create-program", program, () => {
      if (this.programs.has(program)) this.refuse(program, `program ${program} already exists`);
      let facts: ManifestFacts;
      try {
        facts = readManifestFacts(manifest);
      } catch (e) {
        if (e instanceof ManifestReadError) this.refuse(program, `manifest: ${e.message}`);
        throw e;
      }
      for (const f of facts.files) {
        if (f.size > MAX_LOCATION_BYTES) {
          this.refuse(program,
            `external-data location "${f.location}" is ${f.size} bytes; ONNX Runtime takes at most ${MAX_LOCATION_BYTES} ` +
            `bytes per location — seal the weights split into smaller files (host/onnx layoutTensors maxLocationSize)`);
        }
      }
      // Staging, sized exactly per location; a fresh SharedArrayBuffer holds zeros and takes
      // memory only as its pages are touched.
      let buffers: SharedArrayBuffer[];
      try {
        buffers = facts.files.map((f) => new SharedArrayBuffer(f.size));
      } catch {
        this.refuse(program, `could not allocate ${facts.plaintextSize} bytes of staging`);
      }
      const staging = buffers.map((b) => new Uint8Array(b));
      facts.files.forEach((f, i) => this.options.observeStaging?.(program, f.location, staging[i]));
      const measure = new MeasureJob(buffers);
      this.programs.set(program, { facts, graph: new Uint8Array(graph), staging, measure, received: 0, file: 0, failed: false });
      this.log.info("program created", {
        program, name: facts.name, version: String(facts.version), mode: facts.mode,
        graphBytes: graph.length, weightsBytes: facts.plaintextSize, files: facts.files.length,
      });
    });
  }

  uploadWeights(program: number, offset: bigint, data: Uint8Array): void | number {
    return this.guard("upload-weights", program, () => {
      const p = this.live(program);
      if (p.session || p.graph === undefined || p.measured) this.refuse(program, "weights after measure-weights");
      if (offset !== BigInt(p.received)) this.refuse(program, `weights at offset ${offset}, expected ${p.received} (in order, without gaps or overlap)`);
      const end = p.received + data.length;
      if (end > p.facts.plaintextSize) this.refuse(program, `weights run to ${end}, past plaintext_size ${p.facts.plaintextSize}`);
      p.measure!.claim(p.received, end);
      let from = 0;
      while (from < data.length) {
        // Skip files already full (or empty).
        while (p.facts.files[p.file].start + p.facts.files[p.file].size <= p.received) p.file++;
        const f = p.facts.files[p.file];
        const at = p.received - f.start;
        const n = Math.min(f.size - at, data.length - from);
        p.staging[p.file].set(data.subarray(from, from + n), at);
        from += n;
        p.received += n;
      }
      p.measure!.published(p.received);
    });
  }

  /**
   * SPEC §9.1: the measurement, SHA-256 of the staged weights stream, once every byte is in.
   * Nothing is built from the weights here: the loader decides first.
   */
  measureWeights(program: number): Uint8Array | number {
    return this.guard("measure-weights", program, () => {
      const p = this.live(program);
      if (p.session || p.graph === undefined || p.measured) this.refuse(program, "measure-weights after the weights were measured or built");
      if (p.received !== p.facts.plaintextSize) {
        this.wipeStaging(p); // this program will not get further: its weights go now
        this.refuse(program, `measure-weights after ${p.received} of ${p.facts.plaintextSize} bytes`);
      }
      const t0 = process.hrtime.bigint();
      const lagBytes = p.received - (p.measure?.hashedBytes ?? p.received);
      let measurement: Uint8Array;
      try {
        measurement = p.measure!.result();
      } catch (e) {
        this.wipeStaging(p);
        this.refuse(program, `weights measurement failed: ${(e as Error).message}`);
      }
      p.measured = true;
      // Public: how far the thread lagged when the last piece came, and how long that cost.
      this.log.info("weights measured", { program, waitMs: Number((process.hrtime.bigint() - t0) / 1_000_000n), lagBytes });
      // The loader copies it into its memory as soon as this returns; this copy goes after.
      this.pendingOutput = measurement;
      queueMicrotask(() => this.wipePendingOutput());
      return measurement;
    });
  }

  /** The loader accepted the measurement: builds the session and wipes the staging. */
  finishWeights(program: number): void | number {
    return this.guard("finish-weights", program, () => {
      const p = this.live(program);
      if (p.session || p.graph === undefined) this.refuse(program, "finish-weights called twice");
      try {
        if (!p.measured) this.refuse(program, "finish-weights before measure-weights");
        const externalData = p.facts.files
          .map((f, i) => ({ path: f.location, data: p.staging[i] }))
          .filter((e) => e.data.length > 0); // ONNX Runtime rejects an empty buffer
        const t0 = process.hrtime.bigint();
        const use0 = process.resourceUsage();
        let session: SyncSession;
        try {
          session = this.runtime.createSession(p.graph!, externalData);
        } catch {
          this.refuse(program, "ONNX Runtime could not build the session (its message is withheld: it may quote weights)");
        }
        try {
          this.checkSignature(program, p.facts, session);
        } catch (e) {
          session.dispose();
          throw e;
        }
        p.session = session;
        p.graph = undefined;
        const use1 = process.resourceUsage();
        this.log.info("session ready", {
          program, ms: Number((process.hrtime.bigint() - t0) / 1_000_000n), providers: this.runtime.providers.join(","),
          // Public: how much of building it was the kernel's (page faults of ONNX Runtime's own copy).
          minorFaults: use1.minorPageFault - use0.minorPageFault, sysMs: Math.round((use1.systemCPUTime - use0.systemCPUTime) / 1000),
        });
      } finally {
        // ONNX Runtime holds its own copy now (or failed): the staging plaintext goes either way.
        this.wipeStaging(p);
      }
    });
  }

  /** The graph's inputs and outputs must be the manifest's (names are public). */
  private checkSignature(program: number, facts: ManifestFacts, s: SyncSession): void {
    const graphIn = new Map(s.inputs.map((m) => [m.name, m]));
    const graphOut = new Map(s.outputs.map((m) => [m.name, m]));
    for (const t of facts.inputs) {
      const m = graphIn.get(t.name);
      if (!m) this.refuse(program, `manifest input "${t.name}" is not an input of the graph`);
      if (!m.isTensor || m.type !== t.dtype) this.refuse(program, `input "${t.name}": graph dtype ${m.type}, manifest ${t.dtype}`);
    }
    for (const m of s.inputs) {
      if (!facts.inputs.some((t) => t.name === m.name)) this.refuse(program, `graph input "${m.name}" is not in the manifest`);
    }
    for (const t of facts.outputs) {
      const m = graphOut.get(t.name);
      if (!m) this.refuse(program, `manifest output "${t.name}" is not an output of the graph`);
      if (!m.isTensor || m.type !== t.dtype) this.refuse(program, `output "${t.name}": graph dtype ${m.type}, manifest ${t.dtype}`);
    }
  }

  run(program: number, inputs: Uint8Array): Uint8Array | number {
    this.wipePendingOutput();
    const copies: TypedArray[] = [];
    const produced: TypedArray[] = [];
    try {
      return this.guard("run", program, () => {
        const p = this.programs.get(program);
        if (!p) this.refuse(program, `no program ${program}`);
        if (!p.session) this.refuse(program, "run before the session exists");
        let list;
        try {
          list = readTensorList(inputs);
        } catch {
          this.refuse(program, "inputs are not a well-formed tensor list");
        }
        const feeds: Record<string, InstanceType<OrtRuntime["Tensor"]>> = {};
        const Tensor = this.runtime.Tensor;
        list.forEach((t, i) => {
          const spec = p.facts.inputs[i];
          if (!spec || spec.name !== t.name || spec.dtype !== t.dtype) this.refuse(program, `input ${i} does not match the manifest`);
          const { array, copied } = typedView(t.dtype, t.data);
          if (copied) copies.push(array);
          feeds[t.name] = new Tensor(DTYPES[t.dtype].ort as never, array as never, t.dims);
        });
        if (list.length !== p.facts.inputs.length) this.refuse(program, "input count does not match the manifest");
        const fetches = Object.fromEntries(p.facts.outputs.map((o) => [o.name, null]));
        const t0 = this.log.debugEnabled ? process.hrtime.bigint() : 0n;
        const result = p.session.run(feeds, fetches);
        // Public: when ONNX Runtime ran (monotonic µs), for bench:infer --trace.
        if (this.log.debugEnabled) this.log.debug("run timing", { program, startUs: Number(t0 / 1000n), endUs: Number(process.hrtime.bigint() / 1000n) });
        const outs: OutTensor[] = [];
        for (const spec of p.facts.outputs) {
          const r = result[spec.name];
          if (!r) this.refuse(program, `ONNX Runtime returned no "${spec.name}"`);
          const data = r.data as TypedArray;
          if (!ArrayBuffer.isView(data)) this.refuse(program, `output "${spec.name}" is not a numeric tensor`);
          produced.push(data);
          const dtype = DTYPE_BY_ORT[r.type];
          if (dtype === undefined) this.refuse(program, `output "${spec.name}" has type ${r.type}, not a SPEC §5.2 dtype`);
          if (data.byteLength > TENSOR_MAX) this.refuse(program, `output "${spec.name}" is over TENSOR_MAX`);
          outs.push({ name: spec.name, dtype, dims: r.dims, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
        }
        for (const [k, r] of Object.entries(result)) {
          if (!p.facts.outputs.some((o) => o.name === k) && ArrayBuffer.isView(r.data)) produced.push(r.data as TypedArray);
        }
        let out: Uint8Array;
        try {
          out = writeTensorList(outs);
        } catch {
          this.refuse(program, "outputs do not fit a tensor list");
        }
        // The loader copies the list into its memory as soon as run returns; the copy here is
        // wiped at the next run or, at the latest, once the current call stack has unwound.
        this.pendingOutput = out;
        queueMicrotask(() => this.wipePendingOutput());
        return out;
      });
    } finally {
      for (const a of copies) wipeTyped(a);
      for (const a of produced) wipeTyped(a);
    }
  }

  dropProgram(program: number): void {
    const p = this.programs.get(program);
    if (!p) return;
    this.programs.delete(program);
    this.wipeStaging(p);
    p.graph = undefined;
    try {
      p.session?.dispose();
    } catch {
      // Nothing to report: the session is gone either way.
    }
    p.session = undefined;
    this.log.info("program dropped", { program });
  }

  /** Drops every program (worker shutdown), which also stops their measurement threads. */
  close(): void {
    this.closing = true;
    for (const h of [...this.programs.keys()]) this.dropProgram(h);
    // Wipes still running on other threads are done here too: the process may exit next.
    for (const here of this.wiping.values()) here();
    this.wiping.clear();
    this.wipePendingOutput();
  }

  /** Resolves once every staging wipe handed to a measurement thread is done. */
  async stagingWiped(): Promise<void> {
    await Promise.all([...this.wiping.keys()]);
  }

  private live(program: number): Program {
    const p = this.programs.get(program);
    if (!p) this.refuse(program, `no program ${program}`);
    if (p.failed) this.refuse(program, "program failed earlier; load it again");
    return p;
  }

  private wipeStaging(p: Program): void {
    // Plaintext is only in the stream's first `received` bytes; the rest was never written
    // (wiping it would only fault in untouched pages).
    const lengths = p.facts.files.map((f) => Math.min(f.size, Math.max(0, p.received - f.start)));
    const job = p.measure;
    p.measure = undefined;
    if (job && p.measured && !this.closing) {
      // Measured: its thread is idle and wipes the staging now, while this thread goes on
      // serving (tens of ms per GiB). Then it exits and the memory can go.
      const t0 = process.hrtime.bigint();
      const done = job.release(lengths);
      this.wiping.set(done, () => job.wipeHere(lengths));
      void done.then(() => {
        this.wiping.delete(done);
        this.log.info("staging wiped", { ms: Number((process.hrtime.bigint() - t0) / 1_000_000n) });
        // Give the staging memory back now rather than at V8's leisure (when run with --expose-gc).
        const gc = (globalThis as { gc?: () => void }).gc;
        if (gc) setImmediate(gc);
      });
    } else {
      // Staging and the job's buffers are the same memory (the job exists from create-program
      // until the staging goes).
      job?.cancel(!this.closing);
      job?.wipeHere(lengths);
    }
    p.staging = [];
  }

  private wipePendingOutput(): void {
    this.pendingOutput?.fill(0);
    this.pendingOutput = undefined;
  }
}
