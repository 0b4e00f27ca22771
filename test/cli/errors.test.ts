// The `veil` CLI's failures, as real processes: every error is one line on stderr (no stack
// trace without --verbose) with a non-zero exit; the loader's refusals show their SPEC §12 code
// by name; key files are 0600 and their secrets never appear in any output; --help everywhere.
import { chmodSync, cpSync, readFileSync, statSync, truncateSync, writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { readChunks } from "../../host/onnx/build.ts";
import { splitModel } from "../../host/onnx/split.ts";
import { ok, tmpDir, veil, type Result } from "./helpers.ts";

const tmp = tmpDir();
const at = (...p: string[]) => join(tmp.dir, ...p);
const cwd = tmp.dir;
/** Every output of every command, to check that no secret ever appears in one. */
const seen: Result[] = [];
const v = async (args: string[], opts: Parameters<typeof veil>[1] = {}) => {
  const r = await veil(args, { cwd, ...opts });
  seen.push(r);
  return r;
};
const runArgs = (dir: string, ...more: string[]) => ["run", dir, "--trust", "trust.bin", "--data-key", "model.key", "--input", "in.json", "-q", ...more];

afterAll(() => tmp.cleanup());

beforeAll(async () => {
  await Promise.all([
    ok(["keygen", "--reviewer", "alice.key"], { cwd }),
    ok(["keygen", "--reviewer", "bob.key"], { cwd }),
    ok(["keygen", "--data-key", "model.key"], { cwd }),
    ok(["keygen", "--data-key", "other.key"], { cwd }),
    ok(["gen-mlp", "--mib", "0.25", "--out", "m.onnx", "--seed", "3"], { cwd }),
  ]);
  await ok(["trust", "--threshold", "2", "--reviewer", "alice.key", "--reviewer", "bob.key", "--out", "trust.bin"], { cwd });
  await ok(["seal", "m.onnx", "--data-key", "model.key", "--name", "m", "--version", "1", "--out", "prog", "--chunk-size", "64KiB", "--max-dim", "4"], { cwd });
  await ok(["sign", "prog", "--key", "alice.key"], { cwd });
  cpSync(at("prog"), at("one-sig"), { recursive: true });
  await ok(["sign", "prog", "--key", "bob.key"], { cwd });
  writeFileSync(at("in.json"), JSON.stringify([{ name: "x", dtype: "float32", dims: [1, 64], data: Array.from({ length: 64 }, (_, i) => i / 64) }]));
  // the same data key's key id with another key
  const model = JSON.parse(readFileSync(at("model.key"), "utf8"));
  const other = JSON.parse(readFileSync(at("other.key"), "utf8"));
  writeFileSync(at("same-id.key"), JSON.stringify({ ...other, key_id: model.key_id }), { mode: 0o600 });
});

/** The failure is exactly one line on stderr, starting "veil <command>: ", with no stack. */
function oneLine(r: Result, command: string, exit: number, pattern: RegExp): string {
  expect(r.code, r.stderr).toBe(exit);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^veil ${command}: `));
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  return lines[0];
}

describe("veil CLI: help", () => {
  const commands = ["keygen", "trust", "seal", "sign", "inspect", "run", "gen-mlp"];
  it("veil --help, veil help <command>, and --help / -h on every command", async () => {
    const all = await Promise.all([
      v(["--help"]), v([]), v(["help", "seal"]),
      ...commands.map((c) => v([c, "--help"])),
      v(["run", "-h", "--bogus"]), // help wins over a bad option
    ]);
    expect(all[0].stdout).toMatch(/^Usage: veil <command>/m);
    for (const c of commands) expect(all[0].stdout).toMatch(new RegExp(`^  ${c} `, "m"));
    expect(all[1].stdout).toBe(all[0].stdout);
    expect(all[2].stdout).toMatch(/^  veil seal <model\.onnx>/m);
    all.slice(3).forEach((r, i) => {
      expect(r.code).toBe(0);
      expect(r.stderr).toBe("");
      expect(r.stdout).toMatch(/^Usage:\n  veil /);
      expect(r.stdout).toMatch(/--verbose/);
      if (i < commands.length) expect(r.stdout).toContain(`veil ${commands[i]}`);
    });
  });
});

describe("veil CLI: usage and file errors", () => {
  it("bad command lines: exit 2, one line", async () => {
    const [unknown, opt, noValue, missing, noTrust, wrongMode, both, dim] = await Promise.all([
      v(["frobnicate"]),
      v(["inspect", "prog", "--frob"]),
      v(["seal", "m.onnx", "--name"]),
      v(["seal", "m.onnx", "--data-key", "model.key", "--version", "1"]),
      v(["run", "prog", "--data-key", "model.key", "--input", "in.json"]),
      v(["run", "prog", "--trust", "trust.bin", "--data-key", "model.key", "--prompt", "hello"]),
      v(["keygen", "--reviewer", "x.key", "--data-key", "y.key"]),
      v(["seal", "m.onnx", "--data-key", "model.key", "--name", "m", "--version", "1", "--out", "d", "--dim", "nosuch=4"]),
    ]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^veil: unknown command "frobnicate" \(commands: keygen, trust, seal, sign, inspect, run, gen-mlp, infer, serve, broker; veil --help\)\n$/);
    oneLine(opt, "inspect", 2, /unknown option --frob \(veil inspect --help\)$/);
    oneLine(noValue, "seal", 2, /option --name needs a value/);
    oneLine(missing, "seal", 2, /--name is required/);
    oneLine(noTrust, "run", 2, /--trust <trust\.bin> is required.*never trusts a program's signers by default/);
    oneLine(wrongMode, "run", 2, /m is a tensor program: give --input/);
    oneLine(both, "keygen", 2, /exactly one of --reviewer/);
    oneLine(dim, "seal", 2, /--dim nosuch: no dynamic dimension of the graph has this name/);
  });

  it("missing and wrong files: exit 1, one line naming the file", async () => {
    const [dir, model, trustFile, keyFile, exists, notKey, notProgram, input] = await Promise.all([
      v(["inspect", "nowhere"]),
      v(["seal", "nope.onnx", "--data-key", "model.key", "--name", "x", "--version", "1"]),
      v(["run", "prog", "--trust", "nope.bin", "--data-key", "model.key", "--input", "in.json"]),
      v(["sign", "prog", "--key", "nope.key"]),
      v(["keygen", "--reviewer", "alice.key"]),
      v(["sign", "prog", "--key", "model.key"]),
      v(["inspect", "m.onnx"]),
      v(["run", "prog", "--trust", "trust.bin", "--data-key", "model.key", "--input", "m.onnx"]),
    ]);
    oneLine(dir, "inspect", 1, /cannot open program directory nowhere: no such directory$/);
    oneLine(model, "seal", 1, /cannot read model nope\.onnx: no such file$/);
    oneLine(trustFile, "run", 1, /cannot read trust configuration nope\.bin: no such file$/);
    oneLine(keyFile, "sign", 1, /cannot read reviewer key nope\.key: no such file$/);
    oneLine(exists, "keygen", 1, /alice\.key already exists; pass --force to replace it$/);
    oneLine(notKey, "sign", 1, /model\.key: this is a data key, not a reviewer key/);
    oneLine(notProgram, "inspect", 1, /m\.onnx is not a program directory/);
    oneLine(input, "run", 1, /--input m\.onnx: not JSON/);
  });

  it("a malformed file is described by its SPEC field and code, and --verbose adds the stack", async () => {
    cpSync(at("prog"), at("bad-manifest"), { recursive: true });
    const mf = readFileSync(at("bad-manifest", "manifest.bin"));
    writeFileSync(at("bad-manifest", "manifest.bin"), mf.subarray(0, mf.length - 1));
    const r = await v(["inspect", "bad-manifest"]);
    oneLine(r, "inspect", 1, /failed to decode manifest: field .*\[TRUNCATED\]$/);
    const verbose = await v(["inspect", "bad-manifest", "--verbose"]);
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toMatch(/VeilFormatError: failed to decode manifest/);
    expect(verbose.stderr).toMatch(/\n\s+at /);
    expect(verbose.stderr.trimEnd().split("\n").at(-1)).toMatch(/^veil inspect: failed to decode manifest/);
  });

  it("key files are written 0600, a readable one is warned about, and a bad one is never quoted", async () => {
    for (const f of ["alice.key", "bob.key", "model.key", "other.key"]) expect(statSync(at(f)).mode & 0o777, f).toBe(0o600);
    const force = await v(["keygen", "--data-key", "model2.key"]);
    expect(force.code).toBe(0);
    chmodSync(at("model2.key"), 0o644);
    const again = await v(["keygen", "--data-key", "model2.key", "--force"]);
    expect(again.code).toBe(0);
    expect(statSync(at("model2.key")).mode & 0o777).toBe(0o600); // replaced, with mode 0600
    cpSync(at("alice.key"), at("loose.key"));
    chmodSync(at("loose.key"), 0o644);
    const warned = await v(["sign", "prog", "--key", "loose.key", "--json"]);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toMatch(/^veil sign: warning: reviewer key loose\.key is readable by others \(mode 644\); chmod 600 it$/m);
    const secret = JSON.parse(readFileSync(at("alice.key"), "utf8")).secret_key as string;
    writeFileSync(at("broken.key"), `{"type": "veil-reviewer-key", "secret_key": "${secret}",`, { mode: 0o600 });
    const broken = await v(["sign", "prog", "--key", "broken.key"]);
    oneLine(broken, "sign", 1, /reviewer key broken\.key: not a veil key file \(not JSON\)$/);
  });
});

describe.concurrent("veil CLI: the loader's refusals, by SPEC §12 name", () => {
  it("a loader measurement other than the expected one: refused before the key is released", async () => {
    const r = await v([...runArgs("prog"), "--measurement", "00".repeat(32)]);
    oneLine(r, "run", 1, /the worker runs loader sha256:[0-9a-f]{64}, not the expected sha256:0{64}; refusing to release the key$/);
    oneLine(await v([...runArgs("prog"), "--measurement", "abc"]), "run", 2, /--measurement: expected 64 hex digits/);
  });

  it("wrong data key (another key id): KEY_UNKNOWN at the weights header", async () => {
    const r = await v(["run", "prog", "--trust", "trust.bin", "--data-key", "other.key", "--input", "in.json", "-q"]);
    oneLine(r, "run", 3, /load-weights-file: loader error 0x05020020: KEY_UNKNOWN \(32\): no data key for the weights' key id; field WeightsHeader key_id \(0x0502\) \(the data key other\.key has key id [0-9a-f]{32}, but the weights are sealed under [0-9a-f]{32}\)$/);
  });

  it("wrong data key under the right key id: WEIGHTS_AUTH at the first chunk", async () => {
    const r = await v(["run", "prog", "--trust", "trust.bin", "--data-key", "same-id.key", "--input", "in.json", "-q"]);
    oneLine(r, "run", 3, /load-weights-file: loader error 0x05070023: WEIGHTS_AUTH \(35\)/);
  });

  it("too few signatures: SIGNATURE_THRESHOLD, with how many counted", async () => {
    const r = await v(runArgs("one-sig"));
    oneLine(r, "run", 3, /load-program: loader error 0x00000013: SIGNATURE_THRESHOLD \(19\): fewer than k valid reviewer signatures \(1 of the 2 required signatures count under trust\.bin; reviewers add theirs with veil sign\)$/);
    const ins = await v(["inspect", "one-sig", "--trust", "trust.bin"]);
    expect(ins.stdout).toMatch(/1 of 2 required signatures count → the loader would refuse \(SIGNATURE_THRESHOLD\)/);
  });

  it("no signatures at all: refused before any worker starts", async () => {
    cpSync(at("prog"), at("unsigned"), { recursive: true });
    writeFileSync(at("unsigned", "signatures.bin"), new Uint8Array(0));
    oneLine(await v(runArgs("unsigned")), "run", 1, /unsigned has no reviewer signatures \(signatures\.bin is empty\); reviewers add them with veil sign$/);
  });

  it("a manifest changed after signing: the signatures no longer count (SIGNATURE_THRESHOLD)", async () => {
    cpSync(at("prog"), at("edited"), { recursive: true });
    const mf = readFileSync(at("edited", "manifest.bin"));
    const commitment = F.decodeManifest(new Uint8Array(mf)).weights.commitment;
    mf[mf.indexOf(Buffer.from(commitment)) + 3] ^= 0x01; // still a well-formed manifest, no longer the signed one
    writeFileSync(at("edited", "manifest.bin"), mf);
    oneLine(await v(runArgs("edited")), "run", 3, /SIGNATURE_THRESHOLD \(19\).*\(0 of the 2 required signatures count/);
  });

  it("graph.onnx replaced: GRAPH_MISMATCH", async () => {
    cpSync(at("prog"), at("graph"), { recursive: true });
    appendFileSync(at("graph", "graph.onnx"), new Uint8Array([0x0a, 0x00]));
    oneLine(await v(runArgs("graph")), "run", 3, /load-program: loader error 0x00000014: GRAPH_MISMATCH \(20\).*\(graph\.onnx is not the graph the manifest names\)$/);
  });

  it("weights.sealed tampered: a flipped chunk byte is WEIGHTS_AUTH, a changed header WEIGHTS_MISMATCH", async () => {
    cpSync(at("prog"), at("flip"), { recursive: true });
    const w = readFileSync(at("flip", "weights.sealed"));
    w[60 + 65552 + 1234] ^= 0x01; // inside chunk 1
    writeFileSync(at("flip", "weights.sealed"), w);
    oneLine(await v(runArgs("flip")), "run", 3, /load-weights-file: loader error 0x05070023: WEIGHTS_AUTH \(35\): a weights chunk failed to open; field a weights chunk \(and the commitment\) \(0x0507\) \(flip\/weights\.sealed was altered/);

    cpSync(at("prog"), at("header"), { recursive: true });
    const h = readFileSync(at("header", "weights.sealed"));
    h[30] ^= 0x01; // stream_id
    writeFileSync(at("header", "weights.sealed"), h);
    oneLine(await v(runArgs("header")), "run", 3, /load-weights-file: loader error 0x05030022: WEIGHTS_MISMATCH \(34\).*field WeightsHeader stream_id \(0x0503\)/);
  });

  it("weights.sealed cut at a chunk boundary, or with bytes appended: refused before any of it is loaded (WEIGHTS_FILE)", async () => {
    cpSync(at("prog"), at("cut"), { recursive: true });
    truncateSync(at("cut", "weights.sealed"), 60 + 2 * 65552);
    oneLine(await v(runArgs("cut")), "run", 3, /load-weights-file: .*weights\.sealed: 131164 bytes, but its header describes a \d+-byte stream.*\(cut\/weights\.sealed is truncated or extended/);
    cpSync(at("prog"), at("long"), { recursive: true });
    appendFileSync(at("long", "weights.sealed"), new Uint8Array(100));
    oneLine(await v(runArgs("long")), "run", 3, /load-weights-file: .*weights\.sealed: \d+ bytes, but its header describes a \d+-byte stream.*\(long\/weights\.sealed is truncated or extended/);
  });

  it("weights re-sealed by a holder of the data key, with the manifest's stream id: WEIGHTS_COMMITMENT", async () => {
    cpSync(at("prog"), at("resealed"), { recursive: true });
    const m = F.decodeManifest(new Uint8Array(readFileSync(at("resealed", "manifest.bin"))));
    const key = JSON.parse(readFileSync(at("model.key"), "utf8"));
    const sp = await splitModel(at("m.onnx"));
    try {
      const f = sp.files[0];
      await F.sealWeights({
        files: [{
          location: f.location, size: f.size,
          source: async function* () {
            let first = true;
            for await (const piece of readChunks(f, 1 << 16)) {
              if (first) piece[7] ^= 0x40; // one weight changed
              first = false;
              yield piece;
            }
          },
        }],
        dataKey: F.fromHex(key.data_key), keyId: F.fromHex(key.key_id), chunkSize: m.weights.chunkSize, streamId: m.weights.streamId,
        out: at("resealed", "weights.sealed"),
      });
    } finally {
      await sp.close();
    }
    oneLine(await v(runArgs("resealed")), "run", 3, /load-weights-file: loader error 0x05070025: WEIGHTS_COMMITMENT \(37\).*\(resealed\/weights\.sealed is not the sealed stream the manifest commits to\)$/);
  });

  it("a request that does not fit the schema: SCHEMA_VIOLATION", async () => {
    writeFileSync(at("wide.json"), JSON.stringify([{ name: "x", dims: [5, 64], data: new Array(320).fill(0) }])); // --max-dim 4
    oneLine(await v(["run", "prog", "--trust", "trust.bin", "--data-key", "model.key", "--input", "wide.json", "-q"]), "run", 3, /infer: loader error 0x08030034: SCHEMA_VIOLATION \(52\)/);
  });
});

describe("veil CLI: secrets", () => {
  it("no command ever printed a secret key or a data key", () => {
    expect(seen.length).toBeGreaterThan(30);
    const secrets = ["alice.key", "bob.key", "model.key", "other.key"].map((f) => {
      const k = JSON.parse(readFileSync(at(f), "utf8"));
      return (k.secret_key ?? k.data_key) as string;
    });
    for (const r of seen) for (const s of secrets) {
      expect(r.stdout).not.toContain(s);
      expect(r.stderr).not.toContain(s);
    }
  });
});
