// Bounds (SPEC §1.3, §11.4, §13): out-of-range lengths and counts in every format the loader
// reads get a clean error code and never a trap; oversized arguments are TOO_LARGE; memory
// does not grow per request, and the replay window holds.
import { beforeAll, describe, expect, it } from "vitest";
import {
  F,
  World,
  ascii,
  cat,
  equal,
  errorOf,
  expectCode,
  expectNoTraps,
  fastSeal,
  floatSpec,
  generateProgram,
  generateRequest,
  hostOutcome,
  nonLoaderErrors,
  outcome,
  rawGenerateRequest,
  rawTensorList,
  rawTensorRequest,
  sealStream,
  tensorProgram,
  tensorRequest,
  u32,
  u64,
  patch,
  type Program,
  type RawTensor,
} from "./fixture.ts";

expectNoTraps();

const MiB = 1 << 20;

/**
 * The binding's own RangeError (a copy past the end of linear memory) is what the tests of
 * arguments and outputs beyond the arena report themselves; anything else recorded since
 * `from` (a trap above all) stays for the file's afterAll check.
 */
function dropRangeErrors(from: number): void {
  const rest = nonLoaderErrors.splice(from).filter((e) => !e.error.startsWith("RangeError"));
  nonLoaderErrors.push(...rest);
}
const codeOf = (r: string) => r.replace(/@.*/, "");

describe("inner requests (§7.2–§7.5): every length and count, sealed", () => {
  let w: World;
  let t: Program; // x: float32 [1..8], k: int64 [2..2, 1..3]
  let g: Program;
  let ht: number;
  let hg: number;
  beforeAll(async () => {
    w = new World();
    t = await tensorProgram({
      inputs: [floatSpec("x"), { name: "k", dtype: 7, dims: [{ min: 2, max: 2 }, { min: 1, max: 3 }] }],
      outputs: [floatSpec("y")],
    });
    g = await generateProgram({ maxNewTokens: 10 });
    ht = w.ready(t);
    hg = w.ready(g);
  });
  const send = (p: Program, h: number, inner: Uint8Array) => {
    const s = fastSeal(w.rb, p.digest, inner);
    return outcome(() => s.open(w.L.infer(h, s.bytes)), true);
  };
  const x = (n: number, o: Partial<RawTensor> = {}): RawTensor => ({ name: ascii("x"), dtype: 1, dims: [n], data: new Uint8Array(4 * n), ...o });
  const k = (o: Partial<RawTensor> = {}): RawTensor => ({ name: ascii("k"), dtype: 7, dims: [2, 3], data: new Uint8Array(48), ...o });

  it("tensor lists: counts, names, ranks, dims and data lengths out of range are refused cleanly", () => {
    expect(send(t, ht, rawTensorRequest(rawTensorList([x(3), k()])))).toBe("OK");
    const cases: [string, Uint8Array][] = [
      ["count 0", rawTensorList([], 0)],
      ["count 1 of 2", rawTensorList([x(3)])],
      ["count 3", rawTensorList([x(3), k(), k()])],
      ["count 255", rawTensorList([x(3), k()], 255)],
      ["count 2, one tensor", rawTensorList([x(3)], 2)],
      ["count 1, two tensors", rawTensorList([x(3), k()], 1)],
      ["swapped", rawTensorList([k(), x(3)])],
      ["duplicate x", rawTensorList([x(3), x(3)])],
      ["unknown name", rawTensorList([x(3, { name: ascii("z") }), k()])],
      ["empty name", rawTensorList([x(3, { name: new Uint8Array(0) }), k()])],
      ["name of 255", rawTensorList([x(3, { name: new Uint8Array(255).fill(0x78) }), k()])],
      ["dtype 0", rawTensorList([x(3, { dtype: 0 }), k()])],
      ["dtype int32", rawTensorList([x(3, { dtype: 6 }), k()])],
      ["rank 0", rawTensorList([x(3, { dims: [], data: new Uint8Array(4) }), k()])],
      ["rank 2", rawTensorList([x(3, { dims: [3, 1] }), k()])],
      ["rank 255", rawTensorList([x(3, { rank: 255 }), k()])],
      ["dim 0", rawTensorList([x(0), k()])],
      ["dim 9 (over max)", rawTensorList([x(9), k()])],
      ["dim 2^32-1", rawTensorList([x(3, { dims: [0xffffffff] }), k()])],
      ["k dims [1, 3]", rawTensorList([x(3), k({ dims: [1, 3], data: new Uint8Array(24) })])],
      ["k dims [2, 2^31]", rawTensorList([x(3), k({ dims: [2, 0x80000000] })])],
      ["data short", rawTensorList([x(3, { data: new Uint8Array(11) }), k()])],
      ["data long", rawTensorList([x(3, { data: new Uint8Array(13) }), k()])],
      ["last data short", rawTensorList([x(3), k({ data: new Uint8Array(47) })])],
      ["trailing byte", cat(rawTensorList([x(3), k()]), new Uint8Array(1))],
      ["nothing", new Uint8Array(0)],
    ];
    for (const [what, list] of cases) {
      const inner = rawTensorRequest(list);
      const got = send(t, ht, inner);
      const host = hostOutcome(() => F.decodeInnerRequest(inner, t.manifest));
      expect(host, `host: ${what}`).not.toBe("OK");
      // §7.3 makes a list that does not match the schema SCHEMA_VIOLATION; a strict parse (§1.3)
      // may name the malformation first. Either way the field is the inputs (0x0803).
      expect(["SCHEMA_VIOLATION", host], `${what}: loader ${got}, host ${host}`).toContain(codeOf(got));
      expect(got.replace(/.*@/, ""), what).toBe(got.startsWith("TRAILING_BYTES") ? "0x0800" : "0x0803");
    }
    // The inner request's own header.
    const list = rawTensorList([x(3), k()]);
    expect(send(t, ht, cat(F.ascii("veilRX"), new Uint8Array([0, 1, 1]), list))).toBe("WRONG_KIND@0x0801");
    expect(send(t, ht, cat(F.ascii("veilRQ"), new Uint8Array([0, 2, 1]), list))).toBe("UNSUPPORTED_VERSION@0x0801");
    expect(send(t, ht, rawTensorRequest(list, 3))).toMatch(/^(SCHEMA_VIOLATION|BAD_VALUE)@0x0802$/);
    expect(send(t, ht, rawTensorRequest(list).subarray(0, 8))).toBe("TRUNCATED@0x0802");
    expect(send(t, ht, new Uint8Array(0))).toBe("TRUNCATED@0x0801");
  });

  it("bool elements are 0 or 1 (§7.1): other values are refused, in the request and from the accelerator", async () => {
    const b = await tensorProgram({ name: "bools", inputs: [{ name: "b", dtype: 9, dims: [{ min: 1, max: 4 }] }], outputs: [{ name: "o", dtype: 9, dims: [{ min: 1, max: 4 }] }] });
    const hb = w.ready(b);
    const req = (data: number[]) => rawTensorRequest(rawTensorList([{ name: ascii("b"), dtype: 9, dims: [data.length], data: Uint8Array.from(data) }]));
    expect(send(b, hb, req([0, 1, 1, 0]))).toBe("OK");
    expect(hostOutcome(() => F.decodeInnerRequest(req([0, 2]), b.manifest))).toBe("BAD_VALUE");
    const runs = w.acc.runs.length;
    const got = send(b, hb, req([0, 2]));
    expect.soft(["SCHEMA_VIOLATION@0x0803", "BAD_VALUE@0x0803"], "a request with bool 2").toContain(got);
    expect.soft(w.acc.runs.length - runs, "the accelerator was not given bool 2").toBe(0);
    // Output: the client's strict decoder refuses bool 2, so the loader must not seal it (§7.3).
    w.acc.onRun = () => rawTensorList([{ name: ascii("o"), dtype: 9, dims: [2], data: Uint8Array.from([1, 2]) }]);
    try {
      expect.soft(send(b, hb, req([1, 1])), "an output with bool 2").toBe("ACCELERATOR_FAILED@0x0900");
    } finally {
      w.acc.onRun = undefined;
    }
  });

  it("generate requests: prompt length, max_new_tokens, temperature, top_k, has_seed and seed at their bounds", () => {
    const base = { prompt: ascii("ab"), maxNew: 3, temperatureMilli: 0, topK: 0, hasSeed: 0, seed: 0n };
    expect(send(g, hg, rawGenerateRequest(base))).toBe("OK");
    const cases: [string, Partial<Parameters<typeof rawGenerateRequest>[0]>, string][] = [
      ["empty prompt", { prompt: new Uint8Array(0) }, "BAD_LENGTH@0x0803"],
      ["prompt length 2^32-1", { promptLen: 0xffffffff }, "BAD_LENGTH@0x0803"],
      ["prompt length PROMPT_MAX+1", { promptLen: 65537 }, "BAD_LENGTH@0x0803"],
      ["prompt length over the request", { promptLen: 1000 }, "TRUNCATED"],
      ["prompt length 2^31", { promptLen: 0x80000000 }, "BAD_LENGTH@0x0803"],
      ["prompt of PROMPT_MAX+1 bytes", { prompt: new Uint8Array(65537).fill(0x61) }, "BAD_LENGTH@0x0803"],
      ["max_new_tokens 0", { maxNew: 0 }, "BAD_VALUE@0x0804"],
      ["max_new_tokens over the manifest's 10", { maxNew: 11 }, "BAD_VALUE@0x0804"],
      ["max_new_tokens 2^32-1", { maxNew: 0xffffffff }, "BAD_VALUE@0x0804"],
      ["max_new_tokens = manifest's", { maxNew: 10 }, "OK"],
      ["temperature 10001", { temperatureMilli: 10001 }, "BAD_VALUE@0x0805"],
      ["temperature 2^32-1", { temperatureMilli: 0xffffffff }, "BAD_VALUE@0x0805"],
      ["temperature 10000", { temperatureMilli: 10000 }, "OK"],
      ["top_k vocab+1", { topK: 15 }, "BAD_VALUE@0x0806"],
      ["top_k 2^32-1", { topK: 0xffffffff }, "BAD_VALUE@0x0806"],
      ["top_k vocab", { topK: 14, temperatureMilli: 500 }, "OK"],
      ["has_seed 2", { hasSeed: 2 }, "BAD_VALUE@0x0807"],
      ["has_seed 255", { hasSeed: 255 }, "BAD_VALUE@0x0807"],
      ["seed without has_seed", { seed: 1n }, "BAD_VALUE@0x0808"],
      ["seed 2^64-1", { hasSeed: 1, seed: (1n << 64n) - 1n, temperatureMilli: 900 }, "OK"],
      ["trailing byte", { trailing: new Uint8Array(1) }, "TRAILING_BYTES@0x0800"],
      ["kind 1 to a generate program", { kind: 1 }, "SCHEMA_VIOLATION@0x0802"],
      ["kind 0", { kind: 0 }, "SCHEMA_VIOLATION@0x0802"],
    ];
    for (const [what, o, want] of cases) {
      const inner = rawGenerateRequest({ ...base, ...o });
      const got = send(g, hg, inner);
      if (want.includes("@")) expect(got, what).toBe(want);
      else expect(codeOf(got), what).toBe(want);
      const host = hostOutcome(() => F.decodeInnerRequest(inner, g.manifest));
      if (!what.startsWith("kind")) expect(host, `host: ${what}`).toBe(codeOf(want));
    }
    // Cut at every length.
    const inner = rawGenerateRequest(base);
    for (let n = 0; n < inner.length; n++) expect(codeOf(send(g, hg, inner.subarray(0, n))), `${n} bytes`).toBe("TRUNCATED");
  });

  it("a prompt of PROMPT_MAX bytes, longer than the context, keeps the last context_length tokens", () => {
    const prompt = new Uint8Array(65536).fill(0x61); // 65536 tokens "a"
    prompt.set(ascii("the cat"), 65536 - 7);
    const runs = w.acc.runs.length;
    expect(send(g, hg, rawGenerateRequest({ prompt, maxNew: 1, temperatureMilli: 0, topK: 0, hasSeed: 0, seed: 0n }))).toBe("OK");
    const first = F.decodeTensorList(w.acc.runs[runs].inputs, { secret: false })[0];
    expect(first.dims).toEqual([1, 16]);
  });
});

describe("the accelerator's outputs (§7.3, §11.3) are validated before they are sealed", () => {
  let w: World;
  let t: Program;
  let g: Program;
  let ht: number;
  let hg: number;
  beforeAll(async () => {
    w = new World();
    t = await tensorProgram({ outputs: [floatSpec("y"), { name: "u", dtype: 2, dims: [{ min: 1, max: 1 << 24 }] }] });
    g = await generateProgram({ positions: "all", contextLength: 8 });
    ht = w.ready(t);
    hg = w.ready(g);
  });
  /** The tensor program's outputs when a test does not say otherwise: y of 2 floats, u of 5 bytes. */
  const validT = () => rawTensorList([y(2), u(5)]);
  const y = (n: number, o: Partial<RawTensor> = {}): RawTensor => ({ name: ascii("y"), dtype: 1, dims: [n], data: new Uint8Array(4 * n), ...o });
  const u = (n: number, o: Partial<RawTensor> = {}): RawTensor => ({ name: ascii("u"), dtype: 2, dims: [n], data: new Uint8Array(n), ...o });
  const withOutput = (out: Uint8Array | number | (() => Uint8Array), f: () => unknown) => {
    w.acc.onRun = () => (typeof out === "function" ? out() : out);
    try {
      return outcome(f, true);
    } finally {
      w.acc.onRun = undefined;
    }
  };
  const askT = () => {
    const restore = w.acc.onRun;
    w.acc.onRun ??= (_p, _i, dflt) => (_p === ht ? validT() : dflt());
    try {
      return w.L.infer(ht, fastSeal(w.rb, t.digest, F.encodeInnerRequest(tensorRequest([1, 2]))).bytes);
    } finally {
      w.acc.onRun = restore;
    }
  };
  const askG = () => w.L.infer(hg, fastSeal(w.rb, g.digest, F.encodeInnerRequest(generateRequest("abc"))).bytes);

  it("tensor outputs: malformed or off-schema lists are ACCELERATOR_FAILED; an error code too", () => {
    expect(withOutput(rawTensorList([y(2), u(5)]), askT)).toBe("OK");
    const bad: [string, Uint8Array | number][] = [
      ["error code", 77],
      ["empty", new Uint8Array(0)],
      ["count 0", rawTensorList([], 0)],
      ["count 1", rawTensorList([y(2)])],
      ["count 255", rawTensorList([y(2), u(5)], 255)],
      ["order", rawTensorList([u(5), y(2)])],
      ["name", rawTensorList([y(2, { name: ascii("Y") }), u(5)])],
      ["dtype", rawTensorList([y(2, { dtype: 11 }), u(5)])],
      ["rank", rawTensorList([y(2, { rank: 2 }), u(5)])],
      ["rank 255", rawTensorList([y(2, { rank: 255 }), u(5)])],
      ["dim 0", rawTensorList([y(0), u(5)])],
      ["dim 9", rawTensorList([y(9), u(5)])],
      ["dim 2^32-1", rawTensorList([y(2), u(5, { dims: [0xffffffff] })])],
      ["short data", rawTensorList([y(2), u(5, { data: new Uint8Array(4) })])],
      ["long data", rawTensorList([y(2), u(5, { data: new Uint8Array(6) })])],
      ["trailing", cat(rawTensorList([y(2), u(5)]), new Uint8Array(1))],
    ];
    for (const [what, out] of bad) expect(withOutput(out, askT), what).toBe("ACCELERATOR_FAILED@0x0900");
    expect(withOutput(rawTensorList([y(2), u(5)]), askT)).toBe("OK");
  });

  it("a response over RESPONSE_MAX is TOO_LARGE (0x0900); at RESPONSE_MAX it is sealed", () => {
    // InnerResponse = 9 + (1 + [1+1+1+1+4 + 8]) + (1+1+1+1+4 + n) = 34 + n for y of 2 floats.
    const at = (n: number) => rawTensorList([y(2), u(n)]);
    expect(withOutput(at(16 * MiB - 34 + 1), askT)).toBe("TOO_LARGE@0x0900");
    let resp: Uint8Array | undefined;
    const s = fastSeal(w.rb, t.digest, F.encodeInnerRequest(tensorRequest([1, 2])));
    expect(withOutput(at(16 * MiB - 34), () => (resp = w.L.infer(ht, s.bytes)))).toBe("OK");
    expect(s.open(resp!).length).toBe(16 * MiB);
  });

  it("generate logits: wrong shapes are ACCELERATOR_FAILED; NaN and infinities are not a trap", () => {
    const V = g.manifest.generate!.tokens.length;
    const logits = (positions: number, v = V, fill: (i: number) => number = (i) => (i * 7) % 13) => {
      const f = new Float32Array(positions * v).map((_, i) => fill(i));
      return rawTensorList([{ name: ascii("logits"), dtype: 1, dims: [1, positions, v], data: new Uint8Array(f.buffer) }]);
    };
    // "abc" is one token and one step is asked for: the model sees exactly 1 position.
    const ask1 = () => w.L.infer(hg, fastSeal(w.rb, g.digest, F.encodeInnerRequest(generateRequest("abc", { maxNewTokens: 1 }))).bytes);
    expect(withOutput(() => logits(1), ask1)).toBe("OK");
    expect(withOutput(() => logits(2), ask1)).toBe("ACCELERATOR_FAILED@0x0900");
    expect(withOutput(() => logits(1, V - 1), ask1)).toBe("ACCELERATOR_FAILED@0x0900");
    expect(withOutput(() => logits(1, V + 1), ask1)).toBe("ACCELERATOR_FAILED@0x0900");
    expect(withOutput(() => logits(1).subarray(0, 30), ask1)).toBe("ACCELERATOR_FAILED@0x0900");
    expect(withOutput(() => rawTensorList([y(2)]), ask1)).toBe("ACCELERATOR_FAILED@0x0900");
    expect(withOutput(5, ask1)).toBe("ACCELERATOR_FAILED@0x0900");
    expect(withOutput(5, askG)).toBe("ACCELERATOR_FAILED@0x0900");
    for (const v of [NaN, Infinity, -Infinity, 3.4e38, -0]) {
      expect(withOutput(() => logits(1, V, () => v), ask1), `all logits ${v}`).toBe("OK");
      const r = fastSeal(w.rb, g.digest, F.encodeInnerRequest(generateRequest("abc", { maxNewTokens: 1, temperatureMilli: 700, seed: 3n })));
      expect(withOutput(() => logits(1, V, (i) => (i % 3 === 0 ? v : i)), () => w.L.infer(hg, r.bytes)), `mixed ${v}`).toBe("OK");
    }
  });

  it("a program with logits for every position gets them for every position (§5.3: n positions, not 1)", () => {
    const V = g.manifest.generate!.tokens.length;
    const ask = () => w.L.infer(hg, fastSeal(w.rb, g.digest, F.encodeInnerRequest(generateRequest("a b", { maxNewTokens: 1 }))).bytes);
    const last = (positions: number) => () => rawTensorList([{ name: ascii("logits"), dtype: 1, dims: [1, positions, V], data: new Uint8Array(4 * positions * V) }]);
    expect(withOutput(last(3), ask)).toBe("OK"); // "a b" is 3 tokens
    expect(withOutput(last(2), ask)).toBe("ACCELERATOR_FAILED@0x0900");
    // The manifest declares [1..1, 1..context_length, vocab]: "for an input of n tokens the
    // accelerator MUST return n positions, or 1 in the second form" — this is the first form.
    expect(withOutput(last(1), ask)).toBe("ACCELERATOR_FAILED@0x0900");
  });

  it("accelerator outputs larger than the loader's argument arena are refused cleanly (§11.4)", () => {
    const before = nonLoaderErrors.length;
    const huge = rawTensorList([y(2), u(1 << 24)]);
    const big = cat(huge, huge, huge, huge, huge, huge, huge); // 112 MiB: beyond the 96 MiB arena
    let first: string;
    w.acc.onRun = () => big;
    try {
      first = outcome(askT, true);
    } catch (e) {
      first = `${(e as Error).constructor.name}: ${(e as Error).message}`;
    } finally {
      w.acc.onRun = undefined;
    }
    dropRangeErrors(before); // this test reports its own failure
    const next = outcome(askT, true);
    expect.soft(first, "the call whose output did not fit").toMatch(/^(ACCELERATOR_FAILED|TOO_LARGE)@0x0900$/);
    expect.soft(next, "the call after it").toBe("OK");
    expect(outcome(askT)).toBe("OK");
  });
});

describe("oversized arguments (§13): TOO_LARGE, and the limits themselves pass", () => {
  it("a request of REQUEST_MAX bytes is served; one byte more is TOO_LARGE", async () => {
    const w = new World();
    const p = await tensorProgram({ inputs: [{ name: "x", dtype: 2, dims: [{ min: 1, max: 1 << 24 }] }], outputs: [{ name: "y", dtype: 2, dims: [{ min: 1, max: 1 << 24 }] }] });
    const h = w.ready(p);
    const n = 16 * MiB - 73;
    const data = new Uint8Array(n).fill(0xa5);
    const inner = rawTensorRequest(rawTensorList([{ name: ascii("x"), dtype: 2, dims: [n], data }]));
    const s = fastSeal(w.rb, p.digest, inner);
    expect(s.bytes.length).toBe(16 * MiB);
    const pt = s.open(w.L.infer(h, s.bytes));
    expect(equal(pt.subarray(pt.length - 64), data.subarray(0, 64))).toBe(true);
    const over = fastSeal(w.rb, p.digest, cat(inner, new Uint8Array(1)));
    expect(over.bytes.length).toBe(16 * MiB + 1);
    expectCode(() => w.L.infer(h, over.bytes), "TOO_LARGE", 0x0706);
  });

  it("a graph of GRAPH_MAX bytes loads; one byte more is TOO_LARGE; manifests over MANIFEST_MAX are TOO_LARGE", async () => {
    const w = new World();
    const weights = await sealStream();
    const graph = new Uint8Array(64 * MiB).fill(1);
    const p = await tensorProgram({ weights, graph });
    w.giveKey(weights);
    const h = w.load(p);
    expect(w.acc.programs.get(h)!.graph.length).toBe(64 * MiB);
    w.L.unloadProgram(h);
    const big = cat(graph, new Uint8Array(1));
    expectCode(() => w.L.loadProgram(p.bytes, w.sign(p.bytes), big), "TOO_LARGE", 0x0305);
    const huge = new Uint8Array(MiB + 1);
    huge.set(p.bytes);
    expectCode(() => w.L.loadProgram(huge, w.sign(huge), p.graph), "TOO_LARGE", 0x0301);
  });

  it("an argument larger than the loader's whole argument arena is TOO_LARGE, and the next call is not affected", async () => {
    const w = new World();
    const p = await tensorProgram();
    const before = nonLoaderErrors.length;
    const graph = new Uint8Array(100 * MiB);
    let first: string;
    try {
      first = outcome(() => w.L.loadProgram(p.bytes, w.sign(p.bytes), graph), true);
    } catch (e) {
      first = `${(e as Error).constructor.name}: ${(e as Error).message}`;
    }
    dropRangeErrors(before); // this test reports its own failure
    const next = outcome(() => w.L.attest(new Uint8Array(32)), true);
    // TOO_LARGE; its field may name the graph (0x0305) or nothing in particular.
    expect.soft(first, "the oversized call").toMatch(/^TOO_LARGE@0x0(305|000)$/);
    expect.soft(next, "the call after it").toBe("OK");
    expect(outcome(() => w.L.attest(new Uint8Array(32)))).toBe("OK");
  });
});

describe("the weights header's integer fields at their bounds (§9)", () => {
  it("chunk_size, chunk_count and plaintext_size: WEIGHTS_MISMATCH or the header's parse error, never a trap", async () => {
    const w = new World();
    const p = await tensorProgram();
    w.giveKey(p.weights);
    const header = p.weights.pieces[0];
    const u32s = [0, 1, 65535, 65536, 65537, 1 << 24, (1 << 24) + 1, 0x80000000, 0xffffffff];
    const u64s = [0n, 1n, 2n, 1000n, 1n << 32n, 1n << 46n, (1n << 46n) + 1n, 1n << 63n, (1n << 64n) - 1n];
    const variants: [string, Uint8Array][] = [
      ...u32s.map((v): [string, Uint8Array] => [`chunk_size ${v}`, patch(header, 40, u32(v))]),
      ...u64s.map((v): [string, Uint8Array] => [`chunk_count ${v}`, patch(header, 44, u64(v))]),
      ...u64s.map((v): [string, Uint8Array] => [`plaintext_size ${v}`, patch(header, 52, u64(v))]),
    ];
    for (const [what, h] of variants) {
      const handle = w.load(p);
      const got = outcome(() => w.L.loadWeights(handle, h), true);
      const same = equal(h, header);
      const host = hostOutcome(() => F.decodeWeightsHeader(h));
      if (same) expect(got, what).toBe("OK");
      else expect(got === `WEIGHTS_MISMATCH@0x050${what.startsWith("chunk_size") ? 4 : what.startsWith("chunk_count") ? 5 : 6}` || codeOf(got) === host, `${what}: loader ${got}, host ${host}`).toBe(true);
      w.L.unloadProgram(handle);
    }
  });
});

describe("memory and the replay window (§8.2, §11.4)", () => {
  it("10,000 requests: memory does not grow, the loader still answers correctly, the window still holds them", async () => {
    const w = new World();
    const p = await tensorProgram();
    const g = await generateProgram({ maxNewTokens: 4, tokensPerChunk: 2 });
    const h = w.ready(p);
    const hg = w.ready(g);
    w.acc.keepRuns = false;
    const inner = F.encodeInnerRequest(tensorRequest([1, 2, 3]));
    const first = fastSeal(w.rb, p.digest, inner);
    first.open(w.L.infer(h, first.bytes));
    const mem = w.L.memoryBytes();
    let last = first;
    for (let i = 1; i < 10_000; i++) {
      if (i % 250 === 0) {
        // A streamed generate request now and then, also cancelled half-way.
        const r = w.seal(g, generateRequest("ab", { maxNewTokens: 4 }));
        const s = w.L.inferBegin(hg, r.bytes);
        w.L.inferNext(s);
        if (i % 500 === 0) w.L.inferCancel(s);
        else for (;;) if (outcome(() => w.L.inferNext(s)) !== "OK") break;
        continue;
      }
      const s = fastSeal(w.rb, p.digest, inner);
      const resp = w.L.infer(h, s.bytes);
      if (i % 1000 === 0) expect(F.decodeInnerResponse(s.open(resp)).kind).toBe(1);
      last = s;
      if (w.acc.log.length > 1000) w.acc.log.length = 0;
    }
    expect(w.L.memoryBytes()).toBe(mem);
    expectCode(() => w.L.infer(h, last.bytes), "REPLAY", 0x0705); // the most recent
    expectCode(() => w.L.infer(h, first.bytes), "REPLAY", 0x0705); // 10,000 requests ago
    const final = fastSeal(w.rb, p.digest, inner);
    const out = F.decodeInnerResponse(final.open(w.L.infer(h, final.bytes)));
    expect(out.kind === 1 && Array.from(new Float32Array(out.outputs[0].data.slice().buffer))).toEqual([1, 2, 3]);
    expect(w.L.memoryBytes()).toBe(mem);
  });
});
