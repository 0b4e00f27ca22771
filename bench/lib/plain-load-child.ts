// The baseline of bench:load, as its own process: reads plain weight files into memory and
// builds an ONNX Runtime session from the graph and those buffers (SessionOptions.externalData),
// with the session options the trusted worker uses (host/trusted/ort-runtime.ts
// OrtRuntime.sessionOptions). One JSON command per stdin line, one JSON reply per stdout line;
// it times itself and reports its VmRSS/VmHWM.
//
//   {"op":"load","graph":PATH,"files":[{"location":L,"path":P}],"input":{...}?}
//     → {"readMs","createMs","createFaults","createSysMs","rssBefore","hwmBefore","rss","hwm"}   (bytes)
//   {"op":"run","feeds":{name:{type,dims,data: base64}}} → {"outputs":{name:{type,dims,data: base64}}}
// The first line it prints is {"ready":true}, once ONNX Runtime is imported.
// As the worker does (host/trusted/no-telemetry.ts), before ONNX Runtime loads: the two sides
// then run the same library in the same way.
import "../../host/trusted/no-telemetry.ts";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import * as ort from "onnxruntime-node";
import { silentLogger } from "../../host/trusted/log.ts";
import { OrtRuntime } from "../../host/trusted/ort-runtime.ts";
import { procMem } from "./proc.ts";

ort.env.logLevel = "fatal";
const SESSION_OPTIONS = new OrtRuntime({}, silentLogger).sessionOptions as ort.InferenceSession.SessionOptions;

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const sessions: ort.InferenceSession[] = [];

process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as {
    op: string; graph: string; files: { location: string; path: string }[];
    feeds: Record<string, { type: string; dims: number[]; data: string }>;
  };
  if (cmd.op === "run") {
    const feeds = Object.fromEntries(Object.entries(cmd.feeds).map(([k, f]) => {
      const b = Buffer.from(f.data, "base64");
      const data = f.type === "float32" ? new Float32Array(b.buffer, b.byteOffset, b.length / 4) : new BigInt64Array(b.buffer, b.byteOffset, b.length / 8);
      return [k, new ort.Tensor(f.type as "float32", data as Float32Array, f.dims)];
    }));
    const out = await sessions.at(-1)!.run(feeds);
    const outputs = Object.fromEntries(Object.entries(out).map(([k, t]) => {
      const d = t.data as ArrayBufferView;
      return [k, { type: t.type, dims: [...t.dims], data: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString("base64") }];
    }));
    process.stdout.write(`${JSON.stringify({ outputs })}\n`);
    continue;
  }
  if (cmd.op !== "load") {
    process.stdout.write(`${JSON.stringify({ error: `unknown op ${cmd.op}` })}\n`);
    continue;
  }
  const before = procMem("self");
  const t0 = process.hrtime.bigint();
  const graph = readFileSync(cmd.graph);
  const externalData = cmd.files.map((f) => ({ path: f.location, data: readFileSync(f.path) as Uint8Array }));
  const readMs = ms(t0);
  const t1 = process.hrtime.bigint();
  const use0 = process.resourceUsage();
  const session = await ort.InferenceSession.create(graph, { ...SESSION_OPTIONS, externalData });
  const createMs = ms(t1);
  const use1 = process.resourceUsage();
  const createFaults = use1.minorPageFault - use0.minorPageFault;
  const createSysMs = (use1.systemCPUTime - use0.systemCPUTime) / 1000;
  const after = procMem("self");
  sessions.push(session); // kept, as the worker keeps its session
  process.stdout.write(`${JSON.stringify({ readMs, createMs, createFaults, createSysMs, rssBefore: before.rss, hwmBefore: before.hwm, rss: after.rss, hwm: after.hwm })}\n`);
}
for (const s of sessions) await s.release();
