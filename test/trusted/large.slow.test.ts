// Slow suite (npm run test:slow): models larger than the loader could ever hold, through a real
// trusted worker. The loader is a 32-bit WebAssembly module (at most 4 GiB of linear memory) with
// a fixed memory plan (loader-wasm/layout.ts, ~111 MiB); weights only pass through it, one
// sealed chunk at a time, into the accelerator's staging buffers (host/trusted/README.md).
//
//   - > 4 GiB of float32 weights (4.3 GiB, three external-data locations each < 2 GiB);
//   - > 2 GiB of external data (2.2 GiB, two locations), the ONNX Runtime per-buffer limit.
//
// Each case: a synthetic MLP whose weights are generated lazily, sealed in constant memory to a
// temporary file, streamed piece by piece from that file through WorkerClient into the loader,
// the session built, sealed requests answered — and every output compared bit for bit with
// ONNX Runtime run directly on the unsealed model. Memory is read from /proc at each stage.
//
// Why the reference runs in a child process, after the worker has exited: plain ONNX Runtime
// on the 4.3 GiB model peaks at about 2.6 × weights (≈ 11 GiB: the in-memory external data, its
// own copy and pre-packing), and so does the worker; both at once would be ≈ 23 GiB on a 24 GiB
// machine. Run one after the other, the machine never holds more than one of them. The child
// rebuilds the same deterministic model and reports SHA-256 of its graph, of its weights stream
// and of each input, which must equal what this process sealed and sent, so the comparison is
// between the very same model and inputs — full model, full outputs, no slicing.
import { randomBytes } from "node:crypto";
import { rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { syntheticMlp, type MlpOptions } from "../../host/onnx/build.ts";
import { WorkerClient } from "../../host/worker/client.ts";
import { makeTrust, tmpDir } from "./helpers.ts";
import {
  GiB, MiB, feedInput, fmt, procMem, referenceInChild, say, sealMlpToFile, sha256Hex, wasmMemories,
  type ProcMem, type ReferenceParams,
} from "./large-helpers.ts";

const trust = makeTrust();
const tmp = tmpDir("veil-large-");
afterAll(() => tmp.cleanup());

/** Generous: each case seals, streams, builds two multi-GiB sessions (worker, reference). */
const CASE_TIMEOUT = 60 * 60_000;

interface Case {
  label: string;
  mlp: MlpOptions;
  /** Sealed chunk size: pieces of this size cross the channel and the loader's arena. */
  chunkSize: number;
  feeds: { batch: number; seed: number }[];
}

interface Figures {
  weights: number;
  started: ProcMem;
  staged: ProcMem;
  built: ProcMem;
  unloaded: ProcMem;
  loaderMemory: { afterInit: number; afterRun: number };
  finishMs: number;
  streamMs: number;
}

async function throughWorker(c: Case): Promise<void> {
  const m = syntheticMlp(c.mlp);
  const W = m.weightBytes;
  const sealedPath = join(tmp.dir, `${c.label}.sealed`);
  // The sealed file is the weights plus 16 bytes per chunk; leave room for the OS as well.
  const free = (() => {
    const s = statfsSync(tmpdir());
    return s.bavail * s.bsize;
  })();
  if (free < W + 2 * GiB) throw new Error(`${c.label}: ${fmt(free)} free under ${tmpdir()}, need ${fmt(W + 2 * GiB)} for the sealed weights`);
  say(`${c.label}: ${m.layers} layers, hidden ${m.hidden}, ${fmt(W)} of weights in ${m.files.length} locations (${m.files.map((f) => fmt(f.size)).join(", ")}), chunk ${fmt(c.chunkSize)}`);

  let client: WorkerClient | undefined;
  try {
    // ---- the model owner: seal to a file in constant memory
    const sealed = await sealMlpToFile(trust, m, c.label, sealedPath, c.chunkSize);
    say(`${c.label}: sealed ${fmt(sealed.sealedSize)} in ${(sealed.ms / 1000).toFixed(1)} s`);

    // ---- the untrusted host: a real worker, its key released, the program loaded
    const logs: Record<string, unknown>[] = [];
    client = WorkerClient.spawn({
      logLevel: "info",
      env: { ...process.env, TSX_DISABLE_CACHE: "1" },
      onLog: (e) => void (typeof e === "object" && logs.push(e)),
    });
    const pid = client.pid!;
    await client.hello(); // the loader is instantiated; it lays out its memory at its first call (init)
    const loaderBefore = wasmMemories(pid);
    const report = await client.init(trust.trustConfig, new Uint8Array(randomBytes(32)));
    await client.unwrapKey(F.wrapKey({ report, ...sealed.key }));
    // The loader's linear memory is the wasm memory that init grew to its fixed plan.
    const loaderAfterInit = wasmMemories(pid);
    const loader = loaderAfterInit.find((w) => loaderBefore.find((b) => b.start === w.start)?.size !== w.size);
    expect(loader, `no WebAssembly memory grew at init (before ${JSON.stringify(loaderBefore.map((w) => w.size))}, after ${JSON.stringify(loaderAfterInit.map((w) => w.size))})`).toBeDefined();
    expect(loader!.size).toBeGreaterThanOrEqual(96 * MiB); // the argument arena alone is 96 MiB
    expect(loader!.size).toBeLessThan(256 * MiB);
    const started = procMem(pid);
    const h = await client.loadProgram(sealed.manifest.bytes, sealed.bundle, sealed.graph);

    // ---- stream the sealed file, piece by piece, two in flight; hold back the final chunk so
    // the staged state can be measured before the session is built
    const total = 1 + sealed.manifest.manifest.weights.chunkCount;
    const t0 = Date.now();
    const window: Promise<void>[] = [];
    let sent = 0;
    let last: Uint8Array | undefined;
    let nextReport = 0.1;
    for await (const piece of F.splitSealedWeights(sealedPath)) {
      if (++sent === total) {
        last = piece;
        break;
      }
      const p = client.loadWeights(h, piece);
      p.catch(() => undefined); // observed below, in order; never an unhandled rejection meanwhile
      window.push(p);
      if (window.length >= 2) await window.shift();
      if (sent >= nextReport * total) {
        say(`${c.label}: streamed ${sent} of ${total} pieces (${((Date.now() - t0) / 1000).toFixed(0)} s), worker RSS ${fmt(procMem(pid).rss)}`);
        nextReport += 0.1;
      }
    }
    while (window.length) await window.shift();
    expect(last).toBeDefined();
    const staged = procMem(pid);
    const t1 = Date.now();
    await client.loadWeights(h, last!); // final chunk: commitment check, then finish-weights builds the session
    const finishMs = Date.now() - t1;
    const streamMs = Date.now() - t0;
    say(`${c.label}: all ${total} pieces in ${(streamMs / 1000).toFixed(1)} s; final chunk + session ${(finishMs / 1000).toFixed(1)} s`);

    // ---- sealed requests
    const got: { dims: number[]; bytes: Uint8Array; inputSha256: string }[] = [];
    for (const f of c.feeds) {
      const x = feedInput(m, f);
      const req = F.sealRequest({
        loader: report, programDigest: sealed.manifest.digest,
        request: { kind: 1, inputs: [{ name: "x", dtype: F.DTYPE.FLOAT32, dims: [f.batch, m.inputDim], data: new Uint8Array(x.buffer).slice() }] },
      });
      const res = req.response.openResponse(await client.infer(h, req.bytes));
      if (res.kind !== 1) throw new Error(`response kind ${res.kind}`);
      expect(res.outputs.map((o) => o.name)).toEqual(["y"]);
      got.push({ dims: res.outputs[0].dims, bytes: res.outputs[0].data, inputSha256: sha256Hex(new Uint8Array(x.buffer)) });
    }
    // The measurement thread wipes the staging after finish-weights has returned (SPEC §11.3);
    // its memory can go once the worker logs "staging wiped" and has collected it.
    const tw = Date.now();
    while (!logs.some((e) => e.event === "staging wiped") && Date.now() - tw < 120_000) await new Promise((r) => setTimeout(r, 50));
    expect(logs.some((e) => e.event === "staging wiped"), "the worker logged the staging wipe").toBe(true);
    // Giving GiBs back takes the kernel a while: sample until RSS stops falling.
    let built = procMem(pid);
    for (let prev = Infinity; prev - built.rss > 16 * MiB && Date.now() - tw < 120_000; ) {
      prev = built.rss;
      await new Promise((r) => setTimeout(r, 200));
      built = procMem(pid);
    }
    say(`${c.label}: staging wiped and released ${Date.now() - tw} ms after the last request was answered`);
    const loaderAfterRun = wasmMemories(pid).find((w) => w.start === loader!.start);
    await client.unloadProgram(h);
    const unloaded = procMem(pid);
    const exit = await client.close(60_000);
    expect(exit.code).toBe(0);
    client = undefined;
    const ready = logs.find((l) => l.event === "session ready");
    say(`${c.label}: worker closed; its log says the session took ${ready?.ms ?? "?"} ms`);

    // The sealed file is no longer needed: free the disk before the reference runs.
    rmSync(sealedPath, { force: true });

    // ---- the reference, in its own process, now that the worker is gone
    const params: ReferenceParams = { mlp: c.mlp, feeds: c.feeds };
    const ref = await referenceInChild(params, CASE_TIMEOUT);
    expect(ref.graphSha256).toBe(sha256Hex(sealed.graph));
    expect(ref.weightsSha256).toBe(sealed.weightsSha256);
    expect(ref.outputs.length).toBe(c.feeds.length);
    c.feeds.forEach((f, i) => {
      const want = ref.outputs[i];
      expect(got[i].inputSha256, `feed ${i}: same input`).toBe(want.inputSha256);
      expect(want.type).toBe("float32");
      expect(got[i].dims).toEqual([f.batch, m.outputDim]);
      expect(got[i].dims).toEqual(want.dims);
      const wantBytes = Buffer.from(want.bytesB64, "base64");
      expect(wantBytes.length).toBe(4 * f.batch * m.outputDim);
      expect(Buffer.from(got[i].bytes).equals(wantBytes), `feed ${i} (batch ${f.batch}): worker output differs from ONNX Runtime's`).toBe(true);
      // Not a degenerate model: finite, not all zero.
      const y = new Float32Array(new Uint8Array(wantBytes).buffer);
      expect(y.every(Number.isFinite)).toBe(true);
      expect(y.some((v) => v !== 0)).toBe(true);
    });

    // ---- memory
    const fig: Figures = {
      weights: W, started, staged, built, unloaded, finishMs, streamMs,
      loaderMemory: { afterInit: loader!.size, afterRun: loaderAfterRun?.size ?? -1 },
    };
    printFigures(c.label, fig, ref.hwm, ref.sessionMs);

    // The loader's linear memory is exactly what init laid out: not a page more for a model
    // 40 times its size (observed from outside through /proc/<pid>/maps, see wasmMemories).
    expect(loaderAfterRun, "the loader's memory mapping is gone").toBeDefined();
    expect(loaderAfterRun!.size).toBe(loader!.size);
    // Peak: staging (1×) + ONNX Runtime's copy (1×) + session-creation transients (≈ 0.6×) + baseline.
    expect(unloaded.hwm).toBeLessThanOrEqual(2.8 * W + 512 * MiB);
    // Staging before the final chunk: the weights once (the loader keeps none of them).
    expect(staged.rss - started.rss).toBeLessThanOrEqual(1.1 * W + 256 * MiB);
    expect(staged.rss - started.rss).toBeGreaterThanOrEqual(0.9 * W);
    // Serving: staging wiped and freed, so the growth is ONNX Runtime's own copy of the weights.
    expect(built.rss - started.rss).toBeLessThanOrEqual(1.3 * W + 256 * MiB);
    expect(built.rss - started.rss).toBeGreaterThanOrEqual(0.8 * W);
    // Unloading gives ONNX Runtime's copy back.
    expect(unloaded.rss - started.rss).toBeLessThanOrEqual(0.1 * W + 256 * MiB);
    // This process sealed and streamed in constant memory.
    const self = procMem();
    say(`${c.label}: test process VmHWM ${fmt(self.hwm)}, reference child VmHWM ${fmt(ref.hwm)}`);
    expect(self.hwm).toBeLessThan(1.5 * GiB);
  } finally {
    client?.kill();
    rmSync(sealedPath, { force: true });
  }
}

function printFigures(label: string, f: Figures, refHwm: number, refSessionMs: number): void {
  const W = f.weights;
  const x = (b: number) => `${(b / W).toFixed(2)}×W`;
  const lines = [
    `${label}: weights W = ${fmt(W)}`,
    `  worker started (after init)     RSS ${fmt(f.started.rss).padStart(9)}`,
    `  all but the final chunk staged  RSS ${fmt(f.staged.rss).padStart(9)}   (+${x(f.staged.rss - f.started.rss)})`,
    `  session built, requests served  RSS ${fmt(f.built.rss).padStart(9)}   (+${x(f.built.rss - f.started.rss)})`,
    `  program unloaded                RSS ${fmt(f.unloaded.rss).padStart(9)}`,
    `  worker peak (VmHWM)                 ${fmt(f.unloaded.hwm).padStart(9)}   (= ${fmt(f.started.rss)} + ${x(f.unloaded.hwm - f.started.rss)}; bound 2.8×W + 512 MiB = ${fmt(2.8 * W + 512 * MiB)})`,
    `  loader linear memory                ${fmt(f.loaderMemory.afterInit)} after init, ${fmt(f.loaderMemory.afterRun)} after load + run`,
    `  streaming ${(f.streamMs / 1000).toFixed(1)} s, final chunk + session ${(f.finishMs / 1000).toFixed(1)} s`,
    `  plain ONNX Runtime (child) peak     ${fmt(refHwm).padStart(9)}   (session ${(refSessionMs / 1000).toFixed(1)} s)`,
  ];
  say(lines.join("\n"));
}

describe("trusted worker: models larger than the loader's memory", () => {
  it("more weights than 4 GiB of wasm memory: 4.3 GiB over three < 2 GiB locations, bit-identical to ONNX Runtime", async () => {
    const m = syntheticMlp({ weightsMiB: 4400, seed: 71 });
    expect(m.weightBytes).toBeGreaterThan(4 * GiB);
    expect(m.files.length).toBeGreaterThanOrEqual(3);
    for (const f of m.files) expect(f.size).toBeLessThan(2 ** 31);
    await throughWorker({ label: "mlp-4.3g", mlp: { weightsMiB: 4400, seed: 71 }, chunkSize: 1 << 20, feeds: [{ batch: 1, seed: 7101 }, { batch: 5, seed: 7102 }] });
  }, CASE_TIMEOUT);

  it("more than 2 GiB of external data: 2.2 GiB over two locations, bit-identical to ONNX Runtime", async () => {
    const m = syntheticMlp({ weightsMiB: 2250, seed: 72 });
    expect(m.files.reduce((a, f) => a + f.size, 0)).toBeGreaterThan(2 * GiB);
    expect(m.files.length).toBeGreaterThanOrEqual(2);
    for (const f of m.files) expect(f.size).toBeLessThan(2 ** 31);
    // The largest chunk size §9 allows: 16 MiB pieces through the channel and the loader's arena.
    await throughWorker({ label: "mlp-2.2g", mlp: { weightsMiB: 2250, seed: 72 }, chunkSize: 1 << 24, feeds: [{ batch: 3, seed: 7201 }, { batch: 8, seed: 7202 }] });
  }, CASE_TIMEOUT);
});
