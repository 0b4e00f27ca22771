// Running ONNX models in onnxruntime-node for tests and benchmarks (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// Outputs come back as raw bytes, so "bitwise identical" is a byte comparison.

import * as ort from "onnxruntime-node";
import type { Feed } from "./graph.ts";
import { readAll, type WeightFile } from "./weights.ts";

export interface Output {
  type: string;
  dims: number[];
  bytes: Uint8Array;
}

export type ExternalData = { path: string; data: Uint8Array }[];

/**
 * Every weight file in memory, in the form SessionOptions.externalData takes. Empty files
 * are left out: nothing references them and ONNX Runtime rejects an empty buffer.
 */
export async function externalData(files: readonly WeightFile[]): Promise<ExternalData> {
  return Promise.all(files.filter((f) => f.size > 0).map(async (f) => ({ path: f.location, data: await readAll(f) })));
}

export function session(model: Uint8Array | string, external?: ExternalData): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "all", logSeverityLevel: 3 };
  if (external) options.externalData = external;
  return typeof model === "string" ? ort.InferenceSession.create(model, options) : ort.InferenceSession.create(model, options);
}

export function toTensor(f: Feed): ort.Tensor {
  return new ort.Tensor(f.type as ort.Tensor.Type, f.data as ort.Tensor.DataType, f.dims);
}

/** Run once; outputs by name, as bytes. */
export async function run(s: ort.InferenceSession, feeds: Record<string, Feed>): Promise<Record<string, Output>> {
  const inputs = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toTensor(v)]));
  const out = await s.run(inputs);
  return Object.fromEntries(Object.entries(out).map(([k, t]) => {
    const d = t.data as ArrayBufferView;
    return [k, { type: t.type, dims: [...t.dims], bytes: new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice() }];
  }));
}
