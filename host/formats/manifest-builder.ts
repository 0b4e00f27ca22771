// Builds a Manifest (SPEC §5) from its parts. Trust status: run by the release CI on its own machine; handles only public data (graph bytes, schema, weights descriptor).
import { sha256 } from "@noble/hashes/sha2.js";
import { POLICY_VERSION } from "./constants.ts";
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
