// Peak-RSS probe of the trusted worker (not a test: `npx tsx test/trusted/rss-probe.ts [MiB] [--no-gc]`).
// Seals a synthetic MLP of the given size to a temporary file, streams it into a real worker
// and reads the worker's VmRSS and VmHWM (peak) from /proc at each stage, so README.md's
// "Where plaintext lives" can state what staging and ONNX Runtime's own copy cost.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as F from "../../host/formats/index.ts";
import { syntheticMlp } from "../../host/onnx/build.ts";
import { WorkerClient } from "../../host/worker/client.ts";
import { makeTrust, sealProgram, tensorRequest, tmpDir } from "./helpers.ts";

const mib = Number(process.argv[2] ?? 256);
const gc = !process.argv.includes("--no-gc");
const MiB = 2 ** 20;

function mem(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)![1]) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

const tmp = tmpDir("veil-rss-");
try {
  const trust = makeTrust();
  const mlp = syntheticMlp({ weightsMiB: mib, seed: 1 });
  const key = { keyId: new Uint8Array(randomBytes(16)), dataKey: new Uint8Array(randomBytes(32)) };
  const t0 = Date.now();
  const p = await sealProgram(trust, {
    name: "rss", graph: mlp.graph, files: mlp.files, key, chunkSize: 1 << 20,
    inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 64, max: 64 }] }],
    outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }, { min: 16, max: 16 }] }],
  });
  const sealedPath = join(tmp.dir, "sealed.bin");
  const { writeFileSync } = await import("node:fs");
  writeFileSync(sealedPath, Buffer.concat(p.sealed));
  p.sealed.length = 0;
  console.log(`sealed ${mlp.files.length} file(s), ${(mlp.weightBytes / MiB).toFixed(1)} MiB of weights in ${Date.now() - t0} ms`);

  const c = WorkerClient.spawn({ logLevel: "warn", nodeArgs: gc ? ["--expose-gc"] : [] });
  const report = await c.init(trust.trustConfig, new Uint8Array(32));
  await c.unwrapKey(F.wrapKey({ report, ...key }));
  const pid = c.pid!;
  const rows: [string, { rss: number; hwm: number }][] = [["started", mem(pid)]];
  const h = await c.loadProgram(p.manifest.bytes, p.bundle, p.graph);
  const pieces: Uint8Array[] = [];
  let sent = 0;
  const total = p.manifest.manifest.weights.chunkCount + 1;
  for await (const piece of F.splitSealedWeights(sealedPath)) {
    if (++sent === total) { pieces.push(piece); break; }
    await c.loadWeights(h, piece);
  }
  rows.push(["all but the last chunk staged", mem(pid)]);
  const t1 = Date.now();
  await c.loadWeights(h, pieces[0]);
  const finishMs = Date.now() - t1;
  rows.push(["session built, staging wiped", mem(pid)]);
  const req = tensorRequest(report, p.manifest, { x: { type: "float32", dims: [2, 64], data: mlp.sampleInput(2) } });
  req.response.openResponse(await c.infer(h, req.bytes));
  rows.push(["after one inference", mem(pid)]);
  await c.unloadProgram(h);
  rows.push(["program unloaded", mem(pid)]);
  await c.close();
  console.log(`weights ${mib} MiB, worker ${gc ? "with" : "without"} --expose-gc, last chunk + session ${finishMs} ms`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(32)} RSS ${(v.rss / MiB).toFixed(0).padStart(6)} MiB   peak ${(v.hwm / MiB).toFixed(0).padStart(6)} MiB`);
} finally {
  tmp.cleanup();
}
