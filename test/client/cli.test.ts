// `veil infer` (host/client/cli.ts) against the fake server over real loaders: in process through
// main(argv), and standalone (`node --import tsx host/client/cli.ts …`) with the default policy
// taken from this checkout (build/loader.wasm's SHA-256, host/trusted/'s code hash).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { HELP, main } from "../../host/client/cli.ts";
import { COMPLETION, FakeVeilServer, MEASUREMENT, PROMPT, rand } from "./fake-server.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let s: FakeVeilServer;
let dir: string;
let trustFile: string;

beforeAll(async () => {
  s = await FakeVeilServer.start([{ id: "w0" }]);
  dir = mkdtempSync(join(tmpdir(), "veil-client-cli-"));
  trustFile = join(dir, "trust.bin");
  writeFileSync(trustFile, s.trustConfig);
});
afterAll(async () => {
  await s?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => s.reset());

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (x: string) => out.push(x) }, stderr: { write: (x: string) => err.push(x) } },
    out: () => out.join(""),
    writes: out,
    err: () => err.join(""),
  };
}

const base = () => ["--server", s.url, "--program", "tiny-lm", "--platform-key", F.toHex(s.attester.publicKey), "--trust", trustFile];

describe("veil infer", () => {
  it("streams the completion to stdout as it arrives", async () => {
    const c = capture();
    const code = await main([...base(), "--prompt", PROMPT, "--measurement", F.toHex(MEASUREMENT)], c.io);
    expect(c.err()).toBe("");
    expect(code).toBe(0);
    expect(c.out()).toBe(`${COMPLETION}\n`);
    expect(c.writes.length).toBeGreaterThan(5); // piece by piece, not one write at the end
  });

  it("reads the prompt from stdin with --prompt -, and passes the sampling options", async () => {
    const c = capture();
    const stdin = (async function* () {
      yield Buffer.from("Say");
      yield Buffer.from(": ");
    })();
    const code = await main([...base(), "--prompt", "-", "--max-tokens", "3", "--temperature", "0", "--top-k", "2", "--seed", "7"], { ...c.io, stdin });
    expect([code, c.out(), c.err()]).toEqual([0, "hé\n", ""]);
  });

  it("errors are one line on stderr with a non-zero exit, and nothing is sent to an unverified worker", async () => {
    const wrong = capture();
    expect(await main([...base(), "--prompt", PROMPT, "--measurement", F.toHex(rand(32))], wrong.io)).toBe(1);
    expect(wrong.out()).toBe("");
    expect(wrong.err()).toMatch(/^veil infer: ATTESTATION_FAILED: .*MEASUREMENT_UNKNOWN.*\n$/);
    expect(wrong.err().split("\n")).toHaveLength(2);
    expect(s.posts).toBe(0);

    const refused = capture(); // the loader refuses bytes no token covers: exit 3, the §12 code
    expect(await main([...base(), "--prompt", "Say: ?"], refused.io)).toBe(3);
    expect(refused.err()).toMatch(/^veil infer: SCHEMA_VIOLATION \(52\): .*\n$/);
    expect(refused.err()).not.toContain("Say");

    s.streamMode = "cut"; // partial output, then the error on its own line
    const cut = capture();
    expect(await main([...base(), "--prompt", PROMPT], cut.io)).toBe(1);
    expect(cut.out().endsWith("\n")).toBe(true);
    expect(COMPLETION.startsWith(cut.out().trimEnd())).toBe(true);
    expect(cut.err()).toMatch(/^veil infer: TRUNCATED/);
  });

  it("refuses to run without a platform key, and explains the flags", async () => {
    const c = capture();
    expect(await main(["--server", s.url, "--program", "tiny-lm", "--prompt", "x", "--trust", trustFile], c.io)).toBe(2);
    expect(c.err()).toMatch(/no platform is trusted.*--platform-key.*--allow-unverified-quote/);
    const bad = capture();
    expect(await main([...base(), "--prompt", "x", "--insecure-skip", "everything"], bad.io)).toBe(2);
    expect(await main([...base(), "--prompt", "x", "--bogus"], bad.io)).toBe(2);
    expect(s.hits).toEqual([]);
    const h = capture();
    expect(await main(["--help"], h.io)).toBe(0);
    expect(h.out()).toBe(`${HELP}\n`);
    expect(HELP).toMatch(/Default, when no --measurement is given: the SHA-256 of this\s+checkout's build\/loader.wasm/);
  });

  it("skipping a check is explicit and warned", async () => {
    const c = capture();
    const code = await main([...base(), "--prompt", PROMPT, "--measurement", F.toHex(rand(32)), "--insecure-skip", "measurement"], c.io);
    expect(code).toBe(0);
    expect(c.out()).toBe(`${COMPLETION}\n`);
    expect(c.err()).toMatch(/^veil infer: veil attest: WARNING: SKIPPING the measurement check by explicit policy/);
  });

  it("runs standalone with the checkout's default measurement and worker code hash", async () => {
    const keyFile = join(dir, "platform.pub");
    writeFileSync(keyFile, `${F.toHex(s.attester.publicKey)}\n`);
    const child = spawn(process.execPath, ["--import", "tsx", "host/client/cli.ts", "--server", s.url, "--program", "tiny-lm", "--prompt", "-", "--platform-key", keyFile, "--trust", trustFile], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    });
    child.stdin.end(PROMPT);
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.on("close", r));
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toBe(`${COMPLETION}\n`);
  });
});
