// ONNX tooling errors (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// One class with a machine-readable code and a message that carries its context chain,
// e.g. `failed to split model.onnx: initializer "w1": tensor over the location limit`.

export type OnnxErrorCode =
  | "MALFORMED" // not a valid protobuf / ONNX ModelProto
  | "UNSUPPORTED" // valid, but something this tooling refuses (with the reason)
  | "TOO_LARGE" // a size limit was hit (graph, tensor, location count)
  | "EXTERNAL_DATA" // an external-data reference is bad or its file is missing/short
  | "IO"; // file system failure

export class OnnxError extends Error {
  override readonly name = "OnnxError";
  constructor(
    readonly code: OnnxErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The same error with `prefix: ` in front, keeping code and cause. */
  within(prefix: string): OnnxError {
    const e = new OnnxError(this.code, `${prefix}: ${this.message}`, { cause: this.cause });
    e.stack = this.stack;
    return e;
  }
}

/** Re-throw anything as an OnnxError with `prefix` as context (IO for non-OnnxErrors). */
export function rethrowWithin(prefix: string, err: unknown): never {
  if (err instanceof OnnxError) throw err.within(prefix);
  const msg = err instanceof Error ? err.message : String(err);
  throw new OnnxError("IO", `${prefix}: ${msg}`, { cause: err });
}
