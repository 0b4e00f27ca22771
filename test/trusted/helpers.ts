// Shared helpers of the trusted-worker tests: a model owner's and a client's side of the flow
// (split, seal, sign, wrap, seal requests) built from host/formats and host/onnx, and the
// direct ONNX Runtime reference the worker's outputs are compared with.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as F from "../../host/formats/index.ts";
import { readChunks, type Feed, type WeightFile } from "../../host/onnx/build.ts";
import type { ModelProto, ValueInfoProto } from "../../host/onnx/proto.ts";
import { run, session, type Output } from "../../host/onnx/run.ts";
import { splitModel } from "../../host/onnx/split.ts";

export const MAX_DYNAMIC = 256;

export function tmpDir(prefix = "veil-trusted-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function spec(v: ValueInfoProto, maxDynamic: number): F.TensorSpec {
  const t = v.type!.tensor_type!;
  return {
    name: v.name!,
    dtype: t.elem_type!,
    dims: (t.shape?.dim ?? []).map((d) => (d.dim_value !== undefined && d.dim_value > 0
      ? { min: Number(d.dim_value), max: Number(d.dim_value) }
      : { min: 1, max: maxDynamic })),
  };
}

/** Manifest TensorSpecs from a model's graph inputs and outputs (symbolic dims: 1..maxDynamic). */
export function specsOf(model: ModelProto, maxDynamic = MAX_DYNAMIC): { inputs: F.TensorSpec[]; outputs: F.TensorSpec[] } {
  return {
    inputs: (model.graph!.input ?? []).map((v) => spec(v, maxDynamic)),
    outputs: (model.graph!.output ?? []).map((v) => spec(v, maxDynamic)),
  };
}

export interface Trust {
  reviewers: F.ReviewerKey[];
  trustConfig: Uint8Array;
}

export function makeTrust(): Trust {
  const reviewers = [F.generateReviewerKey(), F.generateReviewerKey(), F.generateReviewerKey()];
  const trustConfig = F.encodeTrustConfig({ threshold: 2, reviewers: reviewers.map((r) => r.publicKey) }, { sort: true });
  return { reviewers, trustConfig };
}

export interface SealedProgram {
  name: string;
  manifest: F.BuiltManifest;
  bundle: Uint8Array;
  graph: Uint8Array;
  /** The sealed weights stream, as the sealer wrote it. */
  sealed: Uint8Array[];
  keyId: Uint8Array;
  dataKey: Uint8Array;
}

export interface ProgramInput {
  name: string;
  graph: Uint8Array;
  files: readonly WeightFile[];
  inputs: F.TensorSpec[];
  outputs: F.TensorSpec[];
  generate?: F.GenerateSpec;
  chunkSize?: number;
  version?: number;
  /** Reuse a data key (several programs under one key). */
  key?: { keyId: Uint8Array; dataKey: Uint8Array };
}

/** The model owner and the release CI: seal the weights, build and sign the manifest. */
export async function sealProgram(trust: Trust, p: ProgramInput): Promise<SealedProgram> {
  const keyId = p.key?.keyId ?? new Uint8Array(randomBytes(16));
  const dataKey = p.key?.dataKey ?? new Uint8Array(randomBytes(32));
  const sealed: Uint8Array[] = [];
  const sw = await F.sealWeights({
    files: p.files.map((f) => ({ location: f.location, size: f.size, source: () => readChunks(f, 1 << 20) })),
    dataKey,
    keyId,
    chunkSize: p.chunkSize ?? 1 << 16,
    out: (b) => void sealed.push(b),
  });
  const manifest = F.buildManifest({
    name: p.name, version: p.version ?? 1, graph: p.graph, inputs: p.inputs, outputs: p.outputs,
    generate: p.generate, weights: sw.descriptor,
  });
  const bundle = F.assembleBundle([F.signManifest(manifest.bytes, trust.reviewers[2]), F.signManifest(manifest.bytes, trust.reviewers[0])]);
  return { name: p.name, manifest, bundle, graph: p.graph, sealed, keyId, dataKey };
}

/** Split a self-contained model (bytes) into graph + weight files, via a temporary file. */
export async function splitBytes(bytes: Uint8Array, dir: string, name: string) {
  const path = join(dir, `${name}.onnx`);
  writeFileSync(path, bytes);
  return splitModel(path);
}

export function tensorOf(name: string, f: Feed): F.Tensor {
  const d = f.data as ArrayBufferView;
  return { name, dtype: F.DTYPE[f.type.toUpperCase() as keyof typeof F.DTYPE], dims: [...f.dims], data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice() };
}

/** A client's sealed tensor request for the manifest's inputs, in the manifest's order. */
export function tensorRequest(report: Uint8Array, m: F.BuiltManifest, feed: Record<string, Feed>) {
  const inputs = m.manifest.inputs.map((s) => tensorOf(s.name, feed[s.name]));
  return F.sealRequest({ loader: report, programDigest: m.digest, request: { kind: 1, inputs } });
}

/** ONNX Runtime run directly (in this process) on the unsealed model. */
export async function reference(model: Uint8Array | { graph: Uint8Array; files: readonly WeightFile[] }, feeds: Record<string, Feed>[]): Promise<Record<string, Output>[]> {
  let s;
  if (model instanceof Uint8Array) s = await session(model);
  else {
    const { externalData } = await import("../../host/onnx/run.ts");
    s = await session(model.graph, await externalData(model.files));
  }
  try {
    const out = [];
    for (const f of feeds) out.push(await run(s, f));
    return out;
  } finally {
    await s.release();
  }
}

/** Compares an opened tensor response with ONNX Runtime's outputs, bit for bit, in manifest order. */
export function sameOutputs(got: F.InnerResponse, m: F.BuiltManifest, want: Record<string, Output>): string | undefined {
  if (got.kind !== 1) return `response kind ${got.kind}`;
  const names = m.manifest.outputs.map((o) => o.name);
  if (got.outputs.map((t) => t.name).join() !== names.join()) return `output order ${got.outputs.map((t) => t.name).join()} vs ${names.join()}`;
  for (const t of got.outputs) {
    const w = want[t.name];
    if (!w) return `unexpected output ${t.name}`;
    if (t.dims.join() !== w.dims.join()) return `${t.name}: dims ${t.dims} vs ${w.dims}`;
    if (!Buffer.from(t.data).equals(Buffer.from(w.bytes))) return `${t.name}: bytes differ`;
  }
  return undefined;
}

export const concatAll = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
