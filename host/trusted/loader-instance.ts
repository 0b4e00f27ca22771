// Trusted: instantiates loader.wasm and carries its calls under the canonical ABI of
// loader-wasm/wit/loader.wit. Its accelerator import receives plaintext weights and
// tensors, so this file runs only inside the trusted worker process (and in tests).
import { createHash, randomFillSync } from "node:crypto";

/** The accelerator capability (SPEC §11.3). Throwing, or returning a number, is an error. */
export interface Accelerator {
  createProgram(program: number, manifest: Uint8Array, graph: Uint8Array): void | number;
  /** `data` is a view of the loader's memory, valid only during the call: copy what you keep. */
  uploadWeights(program: number, offset: bigint, data: Uint8Array): void | number;
  /** The measurement, SHA-256 of the weights received (SPEC §9.1); nothing built yet. */
  measureWeights(program: number): Uint8Array | number;
  /** The loader accepted the measurement: build the session. */
  finishWeights(program: number): void | number;
  /** `inputs` is a view of the loader's memory, valid only during the call. */
  run(program: number, inputs: Uint8Array): Uint8Array | number;
  dropProgram(program: number): void;
}

export interface Capabilities {
  accelerator: Accelerator;
  /** Defaults to the OS CSPRNG. */
  entropy?: (out: Uint8Array) => void;
  /** Monotonic nanoseconds; defaults to process.hrtime. */
  clock?: () => bigint;
}

/**
 * A loader error: the SPEC §12 code (low 16 bits) and §12.1 field (high 16 bits), never any
 * secret. Untrusted code turns it into words (host/formats/errors.ts describeLoaderError),
 * so the trusted worker depends on nothing outside host/trusted/.
 */
export class LoaderError extends Error {
  readonly raw: number;
  readonly code: number;
  readonly fieldId: number;
  constructor(op: string, raw: number) {
    const u = raw >>> 0;
    super(`${op}: loader error 0x${u.toString(16).padStart(8, "0")}`);
    this.name = "LoaderError";
    this.raw = u;
    this.code = u & 0xffff;
    this.fieldId = u >>> 16;
  }
}

const ACC = "veil:loader/accelerator@0.1.0";
const ERROR_OF = (e: unknown): number => (typeof e === "number" && e > 0 ? e >>> 0 : 64); // ACCELERATOR_FAILED

interface CoreExports {
  memory: WebAssembly.Memory;
  cabi_realloc(oldPtr: number, oldSize: number, align: number, newSize: number): number;
  [name: string]: unknown;
}

export class LoaderInstance {
  readonly measurement: string;
  private readonly x: CoreExports;

  private constructor(instance: WebAssembly.Instance, measurement: string) {
    this.x = instance.exports as unknown as CoreExports;
    this.measurement = measurement;
  }

  /** Instantiates the exact `wasm` bytes; `measurement` is their SHA-256. */
  static create(wasm: Uint8Array, caps: Capabilities): LoaderInstance {
    const measurement = createHash("sha256").update(wasm).digest("hex");
    const module = new WebAssembly.Module(new Uint8Array(wasm));
    let self: LoaderInstance | undefined;
    const mem = () => new Uint8Array(self!.x.memory.buffer);
    const dv = () => new DataView(self!.x.memory.buffer);
    const view = (p: number, n: number) => new Uint8Array(self!.x.memory.buffer, p, n);
    const setResult = (ret: number, err: number | undefined) => {
      const d = dv();
      d.setUint8(ret, err === undefined ? 0 : 1);
      d.setUint32(ret + 4, err ?? 0, true);
    };
    const status = (ret: number, f: () => void | number) => {
      try {
        const r = f();
        setResult(ret, typeof r === "number" ? ERROR_OF(r) : undefined);
      } catch (e) {
        setResult(ret, ERROR_OF(e));
      }
    };
    // result<list<u8>, error-code> back to the loader: the list goes into its arena.
    const returnList = (ret: number, f: () => Uint8Array | number) => {
      let out: Uint8Array | number;
      try {
        out = f();
        // Anything but a byte list is the accelerator's failure, never an exception through the loader.
        if (typeof out !== "number" && !(out instanceof Uint8Array)) out = ERROR_OF(undefined);
      } catch (e) {
        out = ERROR_OF(e);
      }
      if (typeof out === "number") return setResult(ret, ERROR_OF(out));
      const q = self!.x.cabi_realloc(0, 0, 8, out.length);
      // A list the arena cannot hold: the loader refuses it itself.
      if (q + out.length <= self!.x.memory.buffer.byteLength) mem().set(out, q);
      const d = dv();
      d.setUint8(ret, 0);
      d.setUint32(ret + 4, q, true);
      d.setUint32(ret + 8, out.length, true);
    };
    const entropy = caps.entropy ?? ((out: Uint8Array) => void randomFillSync(out));
    const clock = caps.clock ?? (() => process.hrtime.bigint());
    const acc = caps.accelerator;
    const imports = {
      [ACC]: {
        "create-program": (program: number, mp: number, ml: number, gp: number, gl: number, ret: number) =>
          status(ret, () => acc.createProgram(program >>> 0, view(mp, ml), view(gp, gl))),
        "upload-weights": (program: number, offset: bigint, p: number, n: number, ret: number) =>
          status(ret, () => acc.uploadWeights(program >>> 0, BigInt.asUintN(64, offset), view(p, n))),
        "measure-weights": (program: number, ret: number) => returnList(ret, () => acc.measureWeights(program >>> 0)),
        "finish-weights": (program: number, ret: number) => status(ret, () => acc.finishWeights(program >>> 0)),
        run: (program: number, p: number, n: number, ret: number) => returnList(ret, () => acc.run(program >>> 0, view(p, n))),
        "drop-program": (program: number) => acc.dropProgram(program >>> 0),
      },
      "veil:loader/entropy@0.1.0": {
        fill: (len: number, ret: number) => {
          const q = self!.x.cabi_realloc(0, 0, 1, len);
          let ok = true;
          try {
            entropy(view(q, len));
          } catch {
            ok = false; // an empty list: the loader answers ENTROPY_FAILED
          }
          const d = dv();
          d.setUint32(ret, q, true);
          d.setUint32(ret + 4, ok ? len : 0, true);
        },
      },
      "veil:loader/clock@0.1.0": { now: () => BigInt.asIntN(64, clock()) },
    };
    const instance = new WebAssembly.Instance(module, imports);
    self = new LoaderInstance(instance, measurement);
    return self;
  }

  /** Copies `bytes` into the loader's argument arena. */
  private put(bytes: Uint8Array): [number, number] {
    const p = this.x.cabi_realloc(0, 0, 1, bytes.length);
    // An argument the arena cannot hold is not copied; the call still goes through and the
    // loader refuses it (SPEC §11.4), which also clears its overflow state.
    if (p + bytes.length <= this.x.memory.buffer.byteLength) new Uint8Array(this.x.memory.buffer).set(bytes, p);
    return [p, bytes.length];
  }

  /** Calls an export that returns result<T, error-code>, reads T, then runs its post-return. */
  private call<T>(name: string, args: number[], read: (d: DataView, ret: number) => T): T {
    const fn = this.x[name] as (...a: number[]) => number;
    const ret = fn(...args);
    const d = new DataView(this.x.memory.buffer);
    try {
      if (d.getUint8(ret) !== 0) throw new LoaderError(name, d.getUint32(ret + 4, true));
      return read(d, ret);
    } finally {
      (this.x[`cabi_post_${name}`] as (r: number) => void)(ret);
    }
  }

  private list(d: DataView, ret: number): Uint8Array {
    const p = d.getUint32(ret + 4, true);
    const n = d.getUint32(ret + 8, true);
    return new Uint8Array(this.x.memory.buffer, p, n).slice();
  }

  private u32 = (d: DataView, ret: number): number => d.getUint32(ret + 4, true);

  /** SPEC §11.2 init: returns the ReportBody. */
  init(trustConfig: Uint8Array, nonce: Uint8Array): Uint8Array {
    return this.call("init", [...this.put(trustConfig), ...this.put(nonce)], (d, r) => this.list(d, r));
  }

  attest(nonce: Uint8Array): Uint8Array {
    return this.call("attest", [...this.put(nonce)], (d, r) => this.list(d, r));
  }

  unwrapKey(wrapped: Uint8Array): void {
    this.call("unwrap-key", [...this.put(wrapped)], () => undefined);
  }

  loadProgram(manifest: Uint8Array, signatures: Uint8Array, graph: Uint8Array): number {
    return this.call("load-program", [...this.put(manifest), ...this.put(signatures), ...this.put(graph)], this.u32);
  }

  loadWeights(program: number, piece: Uint8Array): void {
    this.call("load-weights", [program, ...this.put(piece)], () => undefined);
  }

  /**
   * load-weights with a piece of `len` bytes that `fill` writes straight into the argument
   * arena (a file read lands there with no copy in between). `fill` must fill the whole view.
   */
  loadWeightsFrom(program: number, len: number, fill: (arena: Uint8Array) => void): void {
    const p = this.x.cabi_realloc(0, 0, 1, len);
    // As in put(): a piece the arena cannot hold is not written, and the loader refuses it.
    if (p + len <= this.x.memory.buffer.byteLength) fill(new Uint8Array(this.x.memory.buffer, p, len));
    this.call("load-weights", [program, p, len], () => undefined);
  }

  unloadProgram(program: number): void {
    this.call("unload-program", [program], () => undefined);
  }

  infer(program: number, request: Uint8Array): Uint8Array {
    return this.call("infer", [program, ...this.put(request)], (d, r) => this.list(d, r));
  }

  inferBegin(program: number, request: Uint8Array): number {
    return this.call("infer-begin", [program, ...this.put(request)], this.u32);
  }

  /** The 32-byte response nonce first, then one StreamRecord per call; throws STREAM_DONE after the final. */
  inferNext(stream: number): Uint8Array {
    return this.call("infer-next", [stream], (d, r) => this.list(d, r));
  }

  inferCancel(stream: number): void {
    this.call("infer-cancel", [stream], () => undefined);
  }

  /** SPEC §8.5.1: an EncapsulatedRequest carrying a SessionOpen in, the encapsulated SessionAccept out. */
  sessionOpen(program: number, request: Uint8Array): Uint8Array {
    return this.call("session-open", [program, ...this.put(request)], (d, r) => this.list(d, r));
  }

  /** Bytes of linear memory, for bounded-memory checks. */
  memoryBytes(): number {
    return this.x.memory.buffer.byteLength;
  }
}
