// Leak canary: the whole system runs with canary strings in the prompts AND in a model's weights,
// and every byte the untrusted side handles is captured — HTTP bodies both ways, the worker-channel
// frames in both directions (tapped on each WorkerClient's pipes), the workers' stderr, the
// server's pino logs, /metrics, every file under the test's directories — and searched for each
// canary raw, as hex and as base64/base64url at every alignment. The trusted workers must write
// no file: their TMPDIR and HOME stay empty, they hold no file open for writing, and no file in
// the checkout changed during the run carries a canary. Positive controls show the capture saw
// the traffic, and the client (the only plaintext holder outside the workers) sees the canaries.
import { randomInt } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as F from "../../host/formats/index.ts";
import { GraphBuilder } from "../../host/onnx/build.ts";
import type { VeilServer } from "../../host/server/index.ts";
import { REPO_ROOT, type WorkerClient } from "../../host/worker/client.ts";
import { LM_CHARS, attest, fixture, generateRequest, infer, post, serve, text, writeProgram, type Fixture, type Written } from "./helpers.ts";

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const randomString = (n: number, alphabet: string) => Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join("");

/** Weights canary: 64 ASCII bytes, as 16 little-endian float32 (uppercase/digit high bytes: normal floats). */
const WEIGHTS_CANARY = Buffer.from(`WCANARY${randomString(57, ALNUM)}`, "latin1");
/** Prompt canary: only characters the generate program's vocabulary covers. */
const PROMPT_CANARY = `PCANARY${randomString(33, ALNUM)}`;

/** Every encoding of `secret` a careless writer might leave: raw, hex (both cases), base64 and base64url at each of the three alignments. */
export function encodingsOf(secret: Uint8Array): Buffer[] {
  const b = Buffer.from(secret);
  const out = [b, Buffer.from(b.toString("hex")), Buffer.from(b.toString("hex").toUpperCase())];
  for (let k = 0; k < 3; k++) {
    // base64 of secret[k..] is stable except for its last (partial) group; search the stable prefix.
    const part = b.subarray(k);
    const whole = part.subarray(0, part.length - (part.length % 3));
    for (const enc of ["base64", "base64url"] as const) out.push(Buffer.from(whole.toString(enc).replace(/=+$/, "")));
  }
  return out;
}

const found = (hay: Uint8Array, secret: Uint8Array): string | undefined => {
  const h = Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength);
  return encodingsOf(secret).find((n) => h.includes(n))?.toString("latin1").slice(0, 16);
};

function canaryModel(): { model: Uint8Array; inputs: F.TensorSpec[]; outputs: F.TensorSpec[] } {
  const g = new GraphBuilder("canary");
  const x = g.input("x", "float32", [16]);
  const w = g.init("w", "float32", [16], new Float32Array(WEIGHTS_CANARY.buffer.slice(WEIGHTS_CANARY.byteOffset, WEIGHTS_CANARY.byteOffset + 64)));
  g.op("Add", [x, w], {}, "y");
  g.output("y", "float32", [16]);
  return { model: g.bytes(), inputs: [{ name: "x", dtype: 1, dims: [{ min: 16, max: 16 }] }], outputs: [{ name: "y", dtype: 1, dims: [{ min: 16, max: 16 }] }] };
}

function filesUnder(dir: string, skip: (p: string) => boolean = () => false): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (skip(p)) continue;
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Regular files a live process holds open for writing (from /proc/<pid>/fd and fdinfo). */
function filesOpenForWriting(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (!target.startsWith("/") || target.startsWith("/dev/") || target.startsWith("/proc/")) continue;
    const flags = Number.parseInt(/flags:\s+([0-7]+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))?.[1] ?? "0", 8);
    if ((flags & 3) !== 0) out.push(target);
  }
  return out;
}

let fx: Fixture;
let srv: VeilServer;
let canary: Written;
const captured: { what: string; bytes: Uint8Array[] }[] = [];
const capture = (what: string) => {
  const c = { what, bytes: [] as Uint8Array[] };
  captured.push(c);
  return (b: Uint8Array | string) => void c.bytes.push(typeof b === "string" ? Buffer.from(b) : Uint8Array.from(b));
};
const http = capture("HTTP bodies (both ways)");
const logs = capture("server logs (pino, debug)");
const workerDirs: string[] = [];
const pids = new Set<number>();
const openForWriting: string[] = [];
let t0 = 0;

beforeAll(async () => {
  t0 = Date.now() - 1000;
  fx = await fixture({ programs: ["lm"] });
  canary = await writeProgram(fx.modelsDir, fx.trust, fx.key, { name: "canary", ...canaryModel() });
  const wtmp = join(fx.dir, "worker-tmp");
  const whome = join(fx.dir, "worker-home");
  mkdirSync(wtmp);
  mkdirSync(whome);
  workerDirs.push(wtmp, whome);
  const onWorker = (id: string, c: WorkerClient) => {
    const child = c.child!;
    pids.add(child.pid!);
    const toWorker = capture(`channel frames to ${id}`);
    const fromWorker = capture(`channel frames from ${id}`);
    const stderr = capture(`stderr of ${id}`);
    const write = child.stdin!.write.bind(child.stdin!) as (...a: unknown[]) => boolean;
    (child.stdin as unknown as { write: (...a: unknown[]) => boolean }).write = (chunk: unknown, ...rest: unknown[]) => {
      if (chunk instanceof Uint8Array || typeof chunk === "string") toWorker(chunk);
      return write(chunk, ...rest);
    };
    child.stdout!.on("data", (b: Buffer) => fromWorker(b));
    child.stderr!.on("data", (b: Buffer | string) => stderr(b));
  };
  srv = await serve(fx, {
    workers: 2,
    logLevel: "debug",
    logStream: new Writable({ write: (chunk, _enc, cb) => (logs(chunk as Buffer), cb()) }),
    onWorker,
    worker: { env: { ...process.env, TMPDIR: wtmp, HOME: whome }, logLevel: "debug" },
  });
});

afterAll(async () => {
  await srv?.close();
  fx?.cleanup();
});

describe("leak canary", () => {
  it("runs prompts and weights carrying canaries through every route; no untrusted byte carries a canary in any encoding", async () => {
    const tracked = async (url: string, body: Uint8Array) => {
      http(body);
      const r = await post(url, body);
      http(r.body);
      return r;
    };
    const trackedGet = async (url: string) => {
      const r = await fetch(url);
      const b = new Uint8Array(await r.arrayBuffer());
      http(b);
      return { status: r.status, body: b };
    };
    await trackedGet(`${srv.url}/v1/programs`);
    const workers = await attest(srv.url, fx);
    const seen: string[] = [];
    for (const w of workers) {
      // The tensor program whose weights are the canary: x = 0, so y = w — the client sees the weights canary.
      const reqT = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: canary.manifest.digest, request: { kind: 1, inputs: [{ name: "x", dtype: 1, dims: [16], data: new Uint8Array(64) }] } });
      const rt = await tracked(`${srv.url}/v1/programs/canary/infer?worker=${w.id}`, reqT.bytes);
      expect(rt.status).toBe(200);
      const out = reqT.response.openResponse(rt.body);
      if (out.kind !== 1) throw new Error("not tensors");
      expect(Buffer.from(out.outputs[0].data).equals(WEIGHTS_CANARY)).toBe(true); // positive control: only the client sees it

      // The generate program with the canary in the prompt: single-shot and streamed.
      for (const route of ["infer", "stream"] as const) {
        const sealed = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest, request: generateRequest(`Secret ${PROMPT_CANARY} is`, 12) });
        const r = await tracked(`${srv.url}/v1/programs/lm/${route}?worker=${w.id}`, sealed.bytes);
        expect(r.status).toBe(200);
        const completion = route === "infer" ? text((sealed.response.openResponse(r.body) as { text: Uint8Array }).text) : F.openStreamBytes(sealed.response, r.body).map((c) => text(c.text)).join("");
        expect(completion.length).toBe(12);
        seen.push(completion);
      }
      // A refused request whose prompt holds the canary and a byte no token covers: the error says nothing of it.
      const bad = F.sealRequest({ loader: { keyId: w.loader.keyId, publicKey: w.loader.hpkePublicKey }, programDigest: fx.programs.lm.manifest.digest, request: generateRequest(`${PROMPT_CANARY}{`, 4) });
      const rb = await tracked(`${srv.url}/v1/programs/lm/infer?worker=${w.id}`, bad.bytes);
      expect(rb.json?.code).toBe("SCHEMA_VIOLATION");
      // Snapshot the worker's open files while it is live.
      for (const pid of pids) {
        try {
          openForWriting.push(...filesOpenForWriting(pid));
        } catch {
          // a worker that already exited
        }
      }
    }
    expect(LM_CHARS.includes("{")).toBe(false);
    const metrics = capture("/metrics");
    metrics((await trackedGet(`${srv.url}/metrics`)).body);
    const readyz = capture("/readyz");
    readyz((await trackedGet(`${srv.url}/readyz`)).body);
    await srv.close(); // the workers' exit lines are captured too

    const files = capture("files under the test directories");
    for (const f of filesUnder(fx.dir)) files(readFileSync(f));

    // The canaries: the weights, the prompt, and the completions the workers produced (plaintext only the client holds).
    const secrets: [string, Uint8Array][] = [
      ["weights canary", WEIGHTS_CANARY],
      ["prompt canary", Buffer.from(PROMPT_CANARY)],
      ...seen.map((s, i) => [`completion ${i}`, Buffer.from(s)] as [string, Uint8Array]),
    ];
    // Sensitivity: the search finds every encoding it claims to.
    for (const enc of encodingsOf(WEIGHTS_CANARY)) expect(found(Buffer.concat([Buffer.from("xx"), enc, Buffer.from("yy")]), WEIGHTS_CANARY)).toBeDefined();
    expect(found(Buffer.from(`{"k":"${Buffer.from(PROMPT_CANARY).subarray(1).toString("base64")}"}`), Buffer.from(PROMPT_CANARY))).toBeDefined();

    const leaks: string[] = [];
    for (const c of captured) {
      const all = Buffer.concat(c.bytes);
      for (const [name, s] of secrets) {
        const hit = found(all, s);
        if (hit) leaks.push(`${name} in ${c.what} (as ${JSON.stringify(hit)}…)`);
      }
    }
    expect(leaks).toEqual([]);

    // Positive controls: the capture saw real traffic everywhere.
    const size = (what: string) => Buffer.concat(captured.filter((c) => c.what.startsWith(what)).flatMap((c) => c.bytes)).length;
    expect(size("channel frames to")).toBeGreaterThan(5_000); // graphs, requests (the worker reads weights.sealed itself: "files under")
    expect(size("channel frames from")).toBeGreaterThan(1_000);
    expect(size("stderr of")).toBeGreaterThan(100);
    expect(size("server logs")).toBeGreaterThan(1_000);
    expect(size("HTTP bodies")).toBeGreaterThan(1_000);
    expect(size("files under")).toBeGreaterThan(1_000);
    const logText = Buffer.concat(captured.find((c) => c.what.startsWith("server logs"))!.bytes).toString("utf8");
    expect(logText).toContain('"route":"/v1/programs/:name/stream"');
    expect(logText).toContain('"code":"SCHEMA_VIOLATION"');
  });

  it("the trusted workers wrote no file: TMPDIR and HOME stay empty, no file held open for writing, nothing in the checkout carries a canary", () => {
    for (const d of workerDirs) expect(readdirSync(d), d).toEqual([]);
    expect(openForWriting).toEqual([]);
    expect(pids.size).toBe(2);
    const changed = filesUnder(REPO_ROOT, (p) => /\/(node_modules|\.git)$/.test(p)).filter((f) => {
      try {
        return statSync(f).mtimeMs >= t0;
      } catch {
        return false;
      }
    });
    const leaks = changed.filter((f) => {
      const b = readFileSync(f);
      return found(b, WEIGHTS_CANARY) !== undefined || found(b, Buffer.from(PROMPT_CANARY)) !== undefined;
    });
    expect(leaks.map((f) => relative(REPO_ROOT, f))).toEqual([]);
  });
});
