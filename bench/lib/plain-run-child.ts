// bench:infer's process floor: ONNX Runtime alone in a child process that is spawned and framed
// exactly like the trusted worker (WorkerClient.spawn with `entry`, host/trusted/protocol.ts
// frames over stdin/stdout) but has no loader and no cryptography: raw tensor bytes in, raw
// output bytes out. What it costs over session.run in the parent is what any design with a
// separate worker process pays on this machine before veil does anything.
//
//   LOAD (0x70): JSON {graph, files: [{location, path}], input, inputDim, output}  → (empty)
//   RUN  (0x71): the input tensor's float32 bytes, [bytes / 4 / inputDim, inputDim] → the output's bytes
//   SHUTDOWN (the worker's 0x0f) → (empty), then it exits
// Session options: the worker's defaults (host/trusted/ort-runtime.ts OrtRuntime.sessionOptions).
import "../../host/trusted/no-telemetry.ts";
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { silentLogger } from "../../host/trusted/log.ts";
import { OrtRuntime } from "../../host/trusted/ort-runtime.ts";
import { FrameDecoder, Reply, Req, WorkerCode, errorPayload, writeFrame } from "../../host/trusted/protocol.ts";
import { PLAIN_CHILD } from "./plain-run-protocol.ts";

ort.env.logLevel = "fatal";
const OPTIONS = new OrtRuntime({}, silentLogger).sessionOptions as ort.InferenceSession.SessionOptions;
let loaded: { session: ort.InferenceSession; input: string; inputDim: number; output: string } | undefined;

const reply = (type: number, id: number, payload: readonly Uint8Array[]): void => writeFrame(process.stdout, type, id, payload);

async function handle(type: number, id: number, payload: Uint8Array): Promise<void> {
  if (type === PLAIN_CHILD.LOAD) {
    const cmd = JSON.parse(new TextDecoder().decode(payload)) as { graph: string; files: { location: string; path: string }[]; input: string; inputDim: number; output: string };
    const externalData = cmd.files.map((f) => ({ path: f.location, data: readFileSync(f.path) as Uint8Array }));
    await loaded?.session.release();
    loaded = { session: await ort.InferenceSession.create(readFileSync(cmd.graph), { ...OPTIONS, externalData }), input: cmd.input, inputDim: cmd.inputDim, output: cmd.output };
    return reply(Reply.OK, id, []);
  }
  if (type === PLAIN_CHILD.RUN && loaded) {
    // The payload may be a view of a stream chunk, and is not 4-aligned (the worker copies too).
    const x = new Float32Array(payload.slice().buffer);
    const out = await loaded.session.run({ [loaded.input]: new ort.Tensor("float32", x, [x.length / loaded.inputDim, loaded.inputDim]) });
    const y = out[loaded.output].data as Float32Array;
    return reply(Reply.OK, id, [new Uint8Array(y.buffer, y.byteOffset, y.byteLength)]);
  }
  if (type === Req.SHUTDOWN) {
    // As the worker answers WorkerClient.close(): OK, then exit.
    await loaded?.session.release();
    reply(Reply.OK, id, []);
    process.stdout.end(() => process.exit(0));
    return;
  }
  reply(Reply.WORKER_ERROR, id, errorPayload(WorkerCode.UNKNOWN_TYPE, `plain child: no op 0x${type.toString(16)}${loaded ? "" : " before a load"}`));
}

// One request at a time, in order, as the worker runs them.
const decoder = new FrameDecoder();
let chain = Promise.resolve();
process.stdin.on("data", (chunk: Buffer) => {
  for (const ev of decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))) {
    if (ev.kind !== "frame") process.exit(2);
    chain = chain.then(() => handle(ev.type, ev.id, ev.payload)).catch((e: Error) => {
      process.stderr.write(`plain child: ${e.message}\n`);
      process.exit(1);
    });
  }
});
process.stdin.on("end", () => void chain.then(() => process.exit(0)));
