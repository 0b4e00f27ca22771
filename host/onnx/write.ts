// Writing models with external weights to disk, embedded or beside the graph (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// Streams weights from WeightFiles piece by piece, so a multi-GiB model file is written
// in constant memory. Used by tests and benchmarks to make splitter inputs.

import { mkdir, open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { OnnxError } from "./errors.ts";
import { DataLocation, encodeMessage, type ModelProto, type TensorProto } from "./proto.ts";
import { readChunks, type WeightFile } from "./weights.ts";
import { concatBytes, lenPrefix, varintSize } from "./wire.ts";

const PIECE = 4 << 20;

interface ExternalRef { location: string; offset: number; length: number }

/** The external_data reference of a tensor, or undefined when its data is embedded. */
export function externalRef(t: TensorProto): ExternalRef | undefined {
  if (t.data_location !== DataLocation.EXTERNAL) return undefined;
  const kv = new Map((t.external_data ?? []).map((e) => [e.key, e.value]));
  const location = kv.get("location");
  const offset = Number(kv.get("offset") ?? 0);
  const length = Number(kv.get("length"));
  if (!location || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) {
    throw new OnnxError("EXTERNAL_DATA", `initializer "${t.name}": incomplete external_data`);
  }
  return { location, offset, length };
}

function fileFor(files: readonly WeightFile[], ref: ExternalRef, name?: string): WeightFile {
  const f = files.find((x) => x.location === ref.location);
  if (!f) throw new OnnxError("EXTERNAL_DATA", `initializer "${name}": no weight file for location "${ref.location}"`);
  return f;
}

function embeddedHeader(t: TensorProto): Uint8Array {
  const { external_data: _e, data_location: _d, ...rest } = t;
  return encodeMessage("TensorProto", rest);
}

/**
 * A self-contained model in memory (external initializers filled in as raw_data).
 * Small models only: it holds every weight byte.
 */
export async function inlineModel(model: ModelProto, files: readonly WeightFile[]): Promise<ModelProto> {
  const inits = await Promise.all((model.graph?.initializer ?? []).map(async (t) => {
    const ref = externalRef(t);
    if (!ref) return t;
    const { external_data: _e, data_location: _d, ...rest } = t;
    return { ...rest, raw_data: await fileFor(files, ref, t.name).read(ref.offset, ref.length) };
  }));
  return { ...model, graph: { ...model.graph, initializer: inits } };
}

/**
 * Write `model` as one self-contained file, copying each external initializer's bytes
 * from `files` into raw_data as a stream. Protobuf lets fields come in any order, so the
 * graph's other fields are written first and the initializers, with their data, last.
 * Returns the file size. (ONNX Runtime loads such a file only below 2 GiB.)
 */
export async function writeEmbeddedModel(path: string, model: ModelProto, files: readonly WeightFile[]): Promise<number> {
  const graph = model.graph ?? {};
  const inits = graph.initializer ?? [];
  const head = encodeMessage("ModelProto", { ...model, graph: undefined });
  const graphRest = encodeMessage("GraphProto", { ...graph, initializer: [] });
  const parts = inits.map((t) => {
    const ref = externalRef(t);
    const header = ref ? embeddedHeader(t) : encodeMessage("TensorProto", t);
    const dataLen = ref ? ref.length : 0;
    const body = header.length + (ref ? lenPrefix(9, dataLen).length + dataLen : 0);
    return { t, ref, header, dataLen, body };
  });
  const graphLen = graphRest.length + parts.reduce((n, p) => n + 1 + varintSize(p.body) + p.body, 0);

  await mkdir(dirname(path), { recursive: true });
  const fh = await open(path, "w");
  let pos = 0;
  const buf = new Uint8Array(PIECE); // reused: each piece is written before the next read
  const put = async (b: Uint8Array) => {
    await fh.write(b, 0, b.length, pos);
    pos += b.length;
  };
  try {
    await put(concatBytes([head, lenPrefix(7, graphLen), graphRest]));
    for (const p of parts) {
      await put(concatBytes([lenPrefix(5, p.body), p.header]));
      if (!p.ref) continue;
      await put(lenPrefix(9, p.dataLen));
      const file = fileFor(files, p.ref, p.t.name);
      for (let o = 0; o < p.dataLen; o += PIECE) {
        await put(await file.read(p.ref.offset + o, Math.min(PIECE, p.dataLen - o), buf));
      }
    }
  } finally {
    await fh.close();
  }
  return pos;
}

/** Write the graph as `dir/graphName` and each weight file as `dir/<location>`. */
export async function writeExternalModel(dir: string, graphName: string, graph: Uint8Array, files: readonly WeightFile[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeStream(join(dir, graphName), (async function* () { yield graph; })());
  for (const f of files) {
    await mkdir(dirname(join(dir, f.location)), { recursive: true });
    await writeStream(join(dir, f.location), readChunks(f, PIECE, true));
  }
}

async function writeStream(path: string, pieces: AsyncIterable<Uint8Array>): Promise<void> {
  const fh = await open(path, "w");
  try {
    for await (const p of pieces) await fh.write(p);
  } finally {
    await fh.close();
  }
}
