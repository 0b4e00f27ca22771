// Shared helpers of the splitter tests (untrusted host code over public graphs).
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect } from "vitest";
import { readChunks, type Feed, type WeightFile } from "../../host/onnx/build.ts";
import { OnnxError } from "../../host/onnx/errors.ts";
import { decodeModel } from "../../host/onnx/proto.ts";
import { externalData, run, session, type Output } from "../../host/onnx/run.ts";
import { splitModel, type SplitOptions } from "../../host/onnx/split.ts";

export const tmp = mkdtempSync(join(tmpdir(), "veil-onnx-split-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let dirs = 0;
export function freshDir(): string {
  const d = join(tmp, `case-${dirs++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

export function expectSame(a: Record<string, Output>, b: Record<string, Output>): void {
  expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
  for (const k of Object.keys(a)) {
    expect(b[k].dims).toEqual(a[k].dims);
    expect(Buffer.from(b[k].bytes).equals(Buffer.from(a[k].bytes)), `output ${k} differs`).toBe(true);
  }
}

/** Split `path`, check the graph is weight-free, and run the split model on each feed. */
export async function splitAndRun(path: string, feeds: Record<string, Feed>[], options?: SplitOptions) {
  const sp = await splitModel(path, options);
  try {
    const g = decodeModel(sp.graph);
    for (const t of (g.graph!.initializer ?? []).filter((t) => !sp.kept.includes(t.name!))) {
      expect(t.raw_data?.length ?? 0).toBe(0);
      expect(t.float_data?.length ?? 0).toBe(0);
      expect(t.int64_data?.length ?? 0).toBe(0);
    }
    const s = await session(sp.graph, await externalData(sp.files));
    const outs = [];
    for (const f of feeds) outs.push(await run(s, f));
    return { sp, outs, hash: await digest(sp.files) };
  } finally {
    await sp.close();
  }
}

export async function expectSplitError(path: string, code: string, pattern: RegExp, options?: SplitOptions): Promise<void> {
  const err = await splitModel(path, options).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(OnnxError);
  expect((err as OnnxError).code).toBe(code);
  expect((err as OnnxError).message).toMatch(pattern);
}

export async function digest(files: readonly WeightFile[]): Promise<string> {
  const h = createHash("sha256");
  for (const f of files) for await (const c of readChunks(f, 4 << 20, true)) h.update(c);
  return h.digest("hex");
}

