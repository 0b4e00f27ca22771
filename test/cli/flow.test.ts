// The `veil` CLI end to end, as real processes in a temporary folder: keygen → trust → seal →
// sign (twice) → inspect → run, with run's outputs compared bit for bit with ONNX Runtime run
// directly on the original model; a generate program streaming readable text; gen-mlp.
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { multiIoModel, dynamicModel, type Feed } from "../../host/onnx/build.ts";
import { run as ortRun, session, type Output } from "../../host/onnx/run.ts";
import { REPO, ok, tmpDir, writeBigramModel } from "./helpers.ts";

const tmp = tmpDir();
const at = (...p: string[]) => join(tmp.dir, ...p);
const keys: Record<string, string> = {};

afterAll(() => tmp.cleanup());

beforeAll(async () => {
  const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => ok(["keygen", "--reviewer", `${n}.key`], { cwd: tmp.dir })));
  keys.alice = alice.stdout.trim();
  keys.bob = bob.stdout.trim();
  keys.carol = carol.stdout.trim();
  await ok(["keygen", "--data-key", "model.key"], { cwd: tmp.dir });
  // alice and bob by key file, carol by the hex keygen printed
  await ok(["trust", "--threshold", "2", "--reviewer", "alice.key", "--reviewer", "bob.key", "--reviewer", keys.carol, "--out", "trust.bin"], { cwd: tmp.dir });
});

/** A Feed as the --input JSON entry. */
function feedJson(name: string, f: Feed) {
  const data = Array.from(f.data as ArrayLike<number | bigint>, (v) => (typeof v === "bigint" ? Number(v) : v));
  return { name, dtype: f.type, dims: f.dims, data };
}

/** Back to little-endian bytes, independently of the CLI's own converter. */
function jsonBytes(t: { dtype: string; data: (number | string)[] }): Uint8Array {
  const num = (v: number | string) => (typeof v === "number" ? v : v === "-0" ? -0 : Number(v));
  const arr = (() => {
    switch (t.dtype) {
      case "float32": return Float32Array.from(t.data, num);
      case "float64": return Float64Array.from(t.data, num);
      case "int64": return BigInt64Array.from(t.data, (v) => BigInt(v));
      case "int32": return Int32Array.from(t.data, num);
      case "bool": case "uint8": return Uint8Array.from(t.data, num);
      default: throw new Error(`test: dtype ${t.dtype}`);
    }
  })();
  return new Uint8Array(arr.buffer);
}

async function reference(model: string, feeds: Record<string, Feed>[]): Promise<Record<string, Output>[]> {
  const s = await session(model);
  try {
    const out = [];
    for (const f of feeds) out.push(await ortRun(s, f));
    return out;
  } finally {
    await s.release();
  }
}

function expectSame(stdout: string, want: Record<string, Output>, manifestOrder: string[]): void {
  const got = JSON.parse(stdout) as { name: string; dtype: string; dims: number[]; data: (number | string)[] }[];
  expect(got.map((t) => t.name)).toEqual(manifestOrder);
  for (const t of got) {
    expect(t.dims, t.name).toEqual(want[t.name].dims);
    expect(Buffer.from(jsonBytes(t)).equals(Buffer.from(want[t.name].bytes)), `${t.name}: bytes differ from ONNX Runtime`).toBe(true);
  }
}

describe("veil CLI: keygen, trust, seal, sign, inspect, run", () => {
  it("keygen: key files are mode 0600, the printed public key is the file's, the secret is never printed", () => {
    for (const f of ["alice.key", "bob.key", "carol.key", "model.key"]) expect(statSync(at(f)).mode & 0o777, f).toBe(0o600);
    const alice = JSON.parse(readFileSync(at("alice.key"), "utf8"));
    expect(alice).toMatchObject({ type: "veil-reviewer-key", version: 1, public_key: keys.alice });
    expect(alice.secret_key).toMatch(/^[0-9a-f]{64}$/);
    const data = JSON.parse(readFileSync(at("model.key"), "utf8"));
    expect(data).toMatchObject({ type: "veil-data-key", version: 1 });
    expect(data.key_id).toMatch(/^[0-9a-f]{32}$/);
    expect(data.data_key).toMatch(/^[0-9a-f]{64}$/);
    // trust.bin: SPEC §3, sorted keys
    const tc = readFileSync(at("trust.bin"));
    expect(tc.subarray(0, 8).toString("latin1")).toBe("veilTC\x00\x01");
    expect([tc[8], tc[9]]).toEqual([2, 3]);
    const listed = [0, 1, 2].map((i) => tc.subarray(10 + 32 * i, 42 + 32 * i).toString("hex"));
    expect(listed).toEqual([keys.alice, keys.bob, keys.carol].sort());
  });

  it("multi_io (5 outputs, 4 dtypes): sealed, signed twice, inspected, run — outputs equal ONNX Runtime's", async () => {
    const m = multiIoModel();
    writeFileSync(at("multi.onnx"), m.bytes);
    const sealed = await ok(["seal", "multi.onnx", "--data-key", "model.key", "--name", "multi-io", "--version", "2", "--out", "multi", "--chunk-size", "64KiB", "--egress-limit", "1MiB"], { cwd: tmp.dir });
    const digest = sealed.stdout.match(/^program digest ([0-9a-f]{64})$/m)?.[1];
    expect(digest).toBeDefined();
    expect(sealed.stdout).toMatch(/^kept .*offset/m); // the small int64 tensor stays in the graph
    expect(sealed.stdout).toMatch(/^input +a float32 \[2, 3\]$/m);
    expect(sealed.stdout).toMatch(/^output +positive bool \[2, 3\]$/m);
    expect(readFileSync(at("multi", "signatures.bin")).length).toBe(0);
    expect(readFileSync(at("multi", "manifest.bin")).subarray(0, 6).toString()).toBe("veilMF");

    const s1 = await ok(["sign", "multi", "--key", "carol.key"], { cwd: tmp.dir });
    expect(s1.stdout).toContain(`as ${keys.carol}`);
    await ok(["sign", "multi", "--key", "alice.key"], { cwd: tmp.dir });
    const again = await ok(["sign", "multi", "--key", "carol.key"], { cwd: tmp.dir }); // replaces, does not add
    expect(again.stdout).toMatch(/holds 2 signatures/);

    const ins = await ok(["inspect", "multi", "--trust", "trust.bin"], { cwd: tmp.dir });
    expect(ins.stdout).toContain(`program digest ${digest}`);
    expect(ins.stdout).toMatch(new RegExp(`^signature +${keys.carol} valid$`, "m"));
    expect(ins.stdout).toMatch(new RegExp(`^signature +${keys.alice} valid$`, "m"));
    expect(ins.stdout).toMatch(/egress limit 1048576 bytes/);
    expect(ins.stdout).toMatch(/graph.onnx matches the manifest/);
    expect(ins.stdout).toMatch(/2 of 2 required signatures count → the loader would accept/);
    const insJson = JSON.parse((await ok(["inspect", "multi", "--json"], { cwd: tmp.dir })).stdout);
    expect(insJson).toMatchObject({ digest, name: "multi-io", version: "2", mode: "tensor" });
    expect(insJson.signatures.map((s: { public_key: string }) => s.public_key)).toEqual([keys.carol, keys.alice]);

    writeFileSync(at("multi-in.json"), JSON.stringify(Object.entries(m.feeds[0]).reverse().map(([k, f]) => feedJson(k, f)))); // any order
    const r = await ok(["run", "multi", "--trust", "trust.bin", "--data-key", "model.key", "--input", "multi-in.json", "--json"], { cwd: tmp.dir });
    expect(r.stderr).toBe(""); // --json: no status lines
    const wasmSha = (await import("node:crypto")).createHash("sha256").update(readFileSync(join(REPO, "build", "loader.wasm"))).digest("hex");
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ program: "multi-io", version: "2", digest, measurement: wasmSha });
    expect(j.code_hash).toMatch(/^[0-9a-f]{64}$/);
    const [want] = await reference(at("multi.onnx"), m.feeds);
    expectSame(JSON.stringify(j.outputs), want, insJson.outputs.map((o: { name: string }) => o.name));
  });

  it("dynamic dims: --dim ranges in the manifest, and two input shapes run like ONNX Runtime", async () => {
    const m = dynamicModel();
    writeFileSync(at("dynamic.onnx"), m.bytes);
    const sealed = await ok(["seal", "dynamic.onnx", "--data-key", "model.key", "--name", "dynamic", "--version", "1", "--out", "dyn",
      "--dim", "batch=1..4", "--dim", "seq=16", "--dim", "rows=64"], { cwd: tmp.dir });
    expect(sealed.stdout).toMatch(/^input +x float32 \[1\.\.4, 1\.\.16, 4\]$/m);
    expect(sealed.stdout).toMatch(/^output +flat float32 \[1\.\.64, 6\]$/m);
    await ok(["sign", "dyn", "--key", "alice.key"], { cwd: tmp.dir });
    await ok(["sign", "dyn", "--key", "bob.key"], { cwd: tmp.dir });
    const want = await reference(at("dynamic.onnx"), m.feeds);
    for (const [i, feed] of m.feeds.entries()) {
      writeFileSync(at(`dyn-${i}.json`), JSON.stringify([feedJson("x", feed.x)]));
      const r = await ok(["run", "dyn", "--trust", "trust.bin", "--data-key", "model.key", "--input", `dyn-${i}.json`], { cwd: tmp.dir });
      // the status lines: measurement (checked against build/loader.wasm), report, key release, program, weights
      expect(r.stderr).toMatch(/^measurement +sha256:[0-9a-f]{64} \(= build\/loader\.wasm\)$/m);
      expect(r.stderr).toMatch(/^report +key id \d+, loader key [0-9a-f]{64}; trust config 2 of 3, nonce fresh: checked$/m);
      expect(r.stderr).toMatch(/^program +dynamic v1, digest [0-9a-f]{64}: signatures accepted$/m);
      expectSame(r.stdout, want[i], ["pooled", "flat"]); // plain output: the tensors as JSON
    }
  });

  it("gen-mlp --external → seal → run: a synthetic MLP from external data, like ONNX Runtime", async () => {
    const g = await ok(["gen-mlp", "--mib", "3", "--out", "mlp/mlp.onnx", "--external", "--seed", "7"], { cwd: tmp.dir });
    expect(g.stdout).toMatch(/^wrote mlp\/mlp\.onnx: synthetic MLP, \d+ layers, hidden \d+, 3\.00 MiB/m);
    expect(existsSync(at("mlp", "mlp.weights-0.bin"))).toBe(true);
    // the same seed gives the same model
    await ok(["gen-mlp", "--mib", "3", "--out", "mlp2/mlp.onnx", "--external", "--seed", "7"], { cwd: tmp.dir });
    expect(readFileSync(at("mlp2", "mlp.weights-0.bin")).equals(readFileSync(at("mlp", "mlp.weights-0.bin")))).toBe(true);

    const sealed = await ok(["seal", "mlp/mlp.onnx", "--data-key", "model.key", "--name", "mlp", "--version", "1", "--out", "mlp.veil", "--max-dim", "8", "--chunk-size", "256KiB", "--progress"], { cwd: tmp.dir });
    expect(sealed.stdout).toMatch(/weights\.sealed, 3\.00 MiB in 13 chunks of 256 KiB/);
    expect(sealed.stderr).toMatch(/^sealing weights: done, 3\.00 MiB in [\d.]+ s \([\d.]+ MiB\/s\)$/m); // plain lines: not a TTY
    await ok(["sign", "mlp.veil", "--key", "bob.key"], { cwd: tmp.dir });
    await ok(["sign", "mlp.veil", "--key", "carol.key"], { cwd: tmp.dir });
    const x: Feed = { type: "float32", dims: [3, 64], data: Float32Array.from({ length: 192 }, (_, i) => Math.sin(i)) };
    writeFileSync(at("mlp-in.json"), JSON.stringify([feedJson("x", x)]));
    const r = await ok(["run", "mlp.veil", "--trust", "trust.bin", "--data-key", "model.key", "--input", "mlp-in.json", "--progress"], { cwd: tmp.dir });
    expect(r.stderr).toMatch(/^loading weights: done/m);
    const [want] = await reference(at("mlp", "mlp.onnx"), [{ x }]);
    expectSame(r.stdout, want, ["y"]);
  });
});

describe("veil CLI: generate programs", () => {
  it("run --prompt streams the completion of a bigram model as readable text", async () => {
    const b = writeBigramModel(tmp.dir);
    const sealed = await ok(["seal", b.model, "--generate", b.vocab, "--data-key", "model.key", "--name", "bigram", "--version", "1", "--out", "bigram.veil", "--tokens-per-chunk", "2"], { cwd: tmp.dir });
    expect(sealed.stdout).toMatch(/^mode +generate: 10 tokens, end token 0, context 32, up to 256 new tokens, 2 per stream chunk$/m);
    expect(sealed.stdout).toMatch(/^input +input_ids int64 \[1, 1\.\.32\]$/m);
    expect(sealed.stdout).toMatch(/^output +logits float32 \[1, 1, 10\]$/m);
    await ok(["sign", "bigram.veil", "--key", "alice.key"], { cwd: tmp.dir });
    await ok(["sign", "bigram.veil", "--key", "carol.key"], { cwd: tmp.dir });
    const r = await ok(["run", "bigram.veil", "--trust", "trust.bin", "--data-key", "model.key", "--prompt", b.prompt], { cwd: tmp.dir });
    expect(r.stdout).toBe(`${b.completion}\n`);
    expect(r.stderr).toMatch(/^done +6 tokens, stopped at the end token$/m);
    // --json, the prompt from stdin, a token limit
    const j = await ok(["run", "bigram.veil", "--trust", "trust.bin", "--data-key", "model.key", "--prompt", "-", "--max-tokens", "3", "--json"], { cwd: tmp.dir, input: "veil " });
    expect(JSON.parse(j.stdout)).toMatchObject({ program: "bigram", text: "keeps weights and ", tokens: 3, stop: "limit" });
    expect(j.stderr).toBe("");
  });

  // models/tiny-lm once it is trained (VEIL_TINY_LM points at another export of it)
  const tiny = process.env.VEIL_TINY_LM ?? join(REPO, "models", "tiny-lm");
  if (existsSync(join(tiny, "model.onnx")) && existsSync(join(tiny, "vocab.json"))) {
    it("run --prompt on models/tiny-lm prints readable text, the same streamed and as JSON for one seed", async () => {
      await ok(["seal", join(tiny, "model.onnx"), "--generate", join(tiny, "vocab.json"), "--data-key", "model.key", "--name", "tiny-lm", "--version", "1", "--out", "tiny.veil"], { cwd: tmp.dir });
      await ok(["sign", "tiny.veil", "--key", "alice.key"], { cwd: tmp.dir });
      await ok(["sign", "tiny.veil", "--key", "bob.key"], { cwd: tmp.dir });
      const args = ["run", "tiny.veil", "--trust", "trust.bin", "--data-key", "model.key", "--prompt", "Call me Ishmael. ", "--max-tokens", "60", "--temperature", "0.7", "--seed", "42"];
      const [streamed, json] = await Promise.all([ok(args, { cwd: tmp.dir }), ok([...args, "--json"], { cwd: tmp.dir })]);
      const text = JSON.parse(json.stdout).text as string;
      expect(text.length).toBeGreaterThan(20);
      expect(text).not.toMatch(/[\ufffd\x00-\x09\x0b-\x1f]/); // valid UTF-8, no control characters
      expect(text).toMatch(/[a-z]{2,} [a-z]{2,}/i); // words
      expect(streamed.stdout.replace(/\n$/, "")).toBe(text.replace(/\n$/, ""));
    });
  }
});
