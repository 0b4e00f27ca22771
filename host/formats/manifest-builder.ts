// Builds a Manifest (SPEC §5) from its parts. Trust status: run by the release CI on its own machine; handles only public data (graph bytes, schema, weights descriptor).
import { sha256 } from "@noble/hashes/sha2.js";
import { DTYPE, POLICY_VERSION } from "./constants.ts";
import {
  egressLimitExtension,
  encodeManifest,
  programDigest,
  type Extension,
  type GenerateSpec,
  type Manifest,
  type TensorSpec,
  type WeightsDescriptor,
} from "./manifest.ts";

export interface ManifestParts {
  name: string;
  version: bigint | number;
  /** The ONNX graph bytes: hashed and sized here. */
  graph: Uint8Array;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Present for generate mode (2); absent for tensor mode (1). */
  generate?: GenerateSpec;
  weights: WeightsDescriptor;
  /** Sets the §5.5 egress-limit extension. */
  egressLimit?: number;
  /** Further extensions; sorted by type here. */
  extensions?: Extension[];
}

export interface BuiltManifest {
  manifest: Manifest;
  bytes: Uint8Array;
  /** §5.6 program digest, SHA-256 of `bytes`. */
  digest: Uint8Array;
}

export interface GenerateTensorOptions {
  /** Name of the int64 token-id input; "input_ids" by default. */
  inputName?: string;
  /** Name of the float32 logits output; "logits" by default. */
  outputName?: string;
  /**
   * §5.3: "all" gives logits for every position, [1..1, 1..context_length, vocab..vocab];
   * "last" only for the last one, [1..1, 1..1, vocab..vocab], which keeps large vocabularies
   * within TENSOR_MAX. "all" by default.
   */
  positions?: "all" | "last";
}

/** The one input and one output §5.3 requires of a generate-mode program with this spec. */
export function generateTensorSpecs(g: GenerateSpec, opts: GenerateTensorOptions = {}): { inputs: TensorSpec[]; outputs: TensorSpec[] } {
  const vocab = g.tokens.length;
  const positions = opts.positions === "last" ? { min: 1, max: 1 } : { min: 1, max: g.contextLength };
  return {
    inputs: [{ name: opts.inputName ?? "input_ids", dtype: DTYPE.INT64, dims: [{ min: 1, max: 1 }, { min: 1, max: g.contextLength }] }],
    outputs: [{ name: opts.outputName ?? "logits", dtype: DTYPE.FLOAT32, dims: [{ min: 1, max: 1 }, positions, { min: vocab, max: vocab }] }],
  };
}

export function buildManifest(parts: ManifestParts): BuiltManifest {
  const extensions = [...(parts.extensions ?? [])];
  if (parts.egressLimit !== undefined) extensions.push(egressLimitExtension(parts.egressLimit));
  extensions.sort((a, b) => a.type - b.type);
  const manifest: Manifest = {
    name: parts.name,
    version: BigInt(parts.version),
    graphSha256: sha256(parts.graph),
    graphSize: parts.graph.length,
    inputs: parts.inputs,
    outputs: parts.outputs,
    mode: parts.generate ? 2 : 1,
    weights: parts.weights,
    policy: { version: POLICY_VERSION, extensions },
  };
  if (parts.generate) manifest.generate = parts.generate;
  const bytes = encodeManifest(manifest);
  return { manifest, bytes, digest: programDigest(bytes) };
}
