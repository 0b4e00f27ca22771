// Slow suite (npm run test:slow): models over ONNX Runtime's and protobuf's 2 GiB limits.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { syntheticMlp, writeEmbeddedModel } from "../../host/onnx/build.ts";
import { externalData, run, session } from "../../host/onnx/run.ts";
import { expectSame, freshDir, splitAndRun } from "./helpers.ts";

describe("over 2 GiB", () => {
  it("an embedded model above protobuf's 2 GiB splits into several < 2 GiB locations that ORT loads", async () => {
    const m = syntheticMlp({ weightsMiB: 2200, seed: 41 });
    const feeds = { x: { type: "float32" as const, dims: [2, m.inputDim], data: m.sampleInput(2) } };
    const refSession = await session(m.graph, await externalData(m.files));
    const ref = await run(refSession, feeds);
    await refSession.release();
    const path = join(freshDir(), "huge.onnx");
    await writeEmbeddedModel(path, m.model, m.files);
    const { sp, outs } = await splitAndRun(path, [feeds]);
    expect(sp.weightsSize).toBeGreaterThan(2 ** 31);
    expect(sp.files.length).toBeGreaterThan(1);
    for (const f of sp.files) expect(f.size).toBeLessThan(2 ** 31);
    expectSame(ref, outs[0]);
    rmSync(path);
  }, 900_000);

  it("ONNX Runtime takes one location just under the 2 GiB default limit", async () => {
    const m = syntheticMlp({ weightsMiB: 1990, layers: 3, seed: 43 });
    expect(m.files.length).toBe(1);
    expect(m.files[0].size).toBeGreaterThan(2 ** 31 - 64 * 2 ** 20);
    expect(m.files[0].size).toBeLessThan(2 ** 31);
    const s = await session(m.graph, await externalData(m.files));
    const out = await run(s, { x: { type: "float32", dims: [1, m.inputDim], data: m.sampleInput(1) } });
    await s.release();
    expect(out.y.dims).toEqual([1, m.outputDim]);
  }, 600_000);
});
