// Property tests (fast-check): random and mutated bytes into every entry point, sealed mutated
// inner requests, and mutated accelerator outputs. Every call either succeeds or fails with a
// LoaderError (SPEC §11.4: no input makes the loader trap), and the loader keeps working.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  F,
  LoaderError,
  SLOW,
  World,
  equal,
  expectNoTraps,
  fastSeal,
  generateProgram,
  generateRequest,
  rand,
  tensorProgram,
  tensorRequest,
  type Program,
} from "./fixture.ts";

expectNoTraps();

const RUNS = SLOW ? 3000 : 120;

// ---- mutations ----------------------------------------------------------------------------------

type Op =
  | { op: "flip"; at: number; mask: number }
  | { op: "set"; at: number; v: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "delete"; at: number; n: number }
  | { op: "truncate"; at: number }
  | { op: "int"; at: number; width: 1 | 2 | 4 | 8; v: bigint };

const BOUNDARY = [0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 1n << 46n, 1n << 63n, (1n << 64n) - 1n];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ op: fc.constant("set" as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("int" as const), at: fc.nat(), width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const), v: fc.constantFrom(...BOUNDARY) }),
);
const opsArb = fc.array(opArb, { minLength: 1, maxLength: 4 });

function mutate(base: Uint8Array, ops: Op[]): Uint8Array {
  let b: Uint8Array = base.slice();
  for (const o of ops) {
    const at = b.length === 0 ? 0 : o.at % (b.length + (o.op === "insert" ? 1 : 0));
    switch (o.op) {
      case "flip":
        if (b.length) b[at] ^= o.mask;
        break;
      case "set":
        if (b.length) b[at] = o.v;
        break;
      case "insert":
        b = F.concat(b.subarray(0, at), o.bytes, b.subarray(at));
        break;
      case "delete":
        b = F.concat(b.subarray(0, at), b.subarray(at + o.n));
        break;
      case "truncate":
        b = b.subarray(0, at).slice();
        break;
      case "int": {
        const v = BigInt.asUintN(o.width * 8, o.v);
        for (let i = 0; i < o.width && at + i < b.length; i++) b[at + i] = Number((v >> BigInt(8 * (o.width - 1 - i))) & 0xffn);
        break;
      }
    }
  }
  return b;
}

/** Runs `f`: true when it succeeded, false when it failed with a LoaderError; anything else fails the property. */
function clean(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch (e) {
    if (e instanceof LoaderError) {
      expect(e.code, e.message).toBeGreaterThan(0);
      expect(e.code, e.message).toBeLessThan(66); // RESPONSE_AUTH (66) is client-only
      return false;
    }
    throw e;
  }
}

// ---- the fixture --------------------------------------------------------------------------------

let w: World;
let t: Program;
let g: Program;
let ht: number;
let hg: number;
let wrapped: Uint8Array;

beforeAll(async () => {
  w = new World();
  t = await tensorProgram({ weightsSize: 70000, egressLimit: 5000 });
  g = await generateProgram({ maxNewTokens: 6, tokensPerChunk: 2, positions: "all" });
  ht = w.ready(t);
  hg = w.ready(g);
  wrapped = F.wrapKey({ report: w.report, keyId: t.weights.keyId, dataKey: t.weights.dataKey });
  w.acc.keepRuns = false;
});

/** The loader still does its job: a tensor and a generate request round trip. */
function stillWorks(): void {
  const r = w.seal(t, tensorRequest([1, 2]));
  const out = r.response.openResponse(w.L.infer(ht, r.bytes));
  expect(out.kind).toBe(1);
  const { chunks } = w.stream(hg, g, generateRequest("abc", { maxNewTokens: 4 }));
  expect(chunks.at(-1)!.stop).not.toBe(0);
  if (w.acc.log.length > 10000) w.acc.log.length = 0;
}

describe("fuzz: every entry point takes any bytes", () => {
  it("init: random and mutated trust configurations and nonces, on fresh loaders", () => {
    const good = w.trustConfig;
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1100 }), opsArb.map((ops) => mutate(good, ops))), fc.uint8Array({ maxLength: 40 }), (tc, nonce) => {
        const fresh = new World({ noInit: true, trustConfig: tc });
        const ok = clean(() => fresh.L.init(tc, nonce));
        if (ok) expect(F.decodeReportBody(fresh.L.attest(rand(32))).trustConfigHash).toEqual(F.trustConfigHash(tc));
        else clean(() => fresh.L.init(good, rand(32))); // refused: still uninitialized, takes a good one
      }),
      { numRuns: Math.ceil(RUNS / 2) },
    );
  });

  it("attest, unwrap-key and unload-program: random and mutated bytes and handles", () => {
    const before = w.L.memoryBytes();
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.oneof(fc.uint8Array({ maxLength: 200 }), opsArb.map((ops) => mutate(wrapped, ops))),
        fc.integer({ min: 0, max: 0xffffffff }),
        (nonce, wk, handle) => {
          clean(() => w.L.attest(nonce));
          clean(() => w.L.unwrapKey(wk));
          if (handle !== ht && handle !== hg) expect(clean(() => w.L.unloadProgram(handle))).toBe(false);
          expect(clean(() => w.L.inferNext(handle))).toBe(false);
          expect(clean(() => w.L.inferCancel(handle))).toBe(false);
        },
      ),
      { numRuns: RUNS },
    );
    // A mutated wrap that opened would have to be the same key: the weights still open.
    w.L.unwrapKey(wrapped);
    expect(w.L.memoryBytes()).toBe(before);
    stillWorks();
  });

  it("load-program: mutated manifests (signed again, so the parser sees them), bundles and graphs", async () => {
    // A loader of its own: a mutated version that loads raises that name's floor (§5.6).
    const v = new World();
    const bundle = v.sign(t.bytes);
    fc.assert(
      fc.property(opsArb, fc.constantFrom("manifest", "signed", "bundle", "graph"), (ops, which) => {
        const m = which === "manifest" || which === "signed" ? mutate(t.bytes, ops) : t.bytes;
        const b = which === "bundle" ? mutate(bundle, ops) : which === "signed" ? v.sign(m) : bundle;
        const gr = which === "graph" ? mutate(t.graph, ops) : t.graph;
        let h = -1;
        if (clean(() => (h = v.L.loadProgram(m, b, gr)))) v.L.unloadProgram(h);
      }),
      { numRuns: RUNS },
    );
    // Afterwards it still loads programs (a name the fuzz cannot have touched).
    const fresh = await tensorProgram({ name: "after-fuzz", weights: t.weights });
    v.L.unloadProgram(v.load(fresh));
  });

  it("load-weights: mutated headers and chunks, on fresh programs", () => {
    const pieces = t.weights.pieces;
    fc.assert(
      fc.property(opsArb, fc.integer({ min: 0, max: pieces.length - 1 }), fc.integer({ min: 0, max: 2 }), (ops, at, extra) => {
        const h = w.load(t);
        try {
          let ok = true;
          for (let i = 0; i < pieces.length + extra && ok; i++) {
            const piece = i === at ? mutate(pieces[i % pieces.length], ops) : pieces[i % pieces.length];
            ok = clean(() => w.L.loadWeights(h, piece));
          }
        } finally {
          w.L.unloadProgram(h);
        }
      }),
      { numRuns: Math.ceil(RUNS / 2) },
    );
    stillWorks();
  });

  it("infer and infer-begin: random bytes and mutated sealed requests", () => {
    const sealed = w.seal(t, tensorRequest([3])).bytes;
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), opsArb.map((ops) => mutate(sealed, ops))), fc.boolean(), (req, stream) => {
        // A mutation can leave the bytes as they were (a byte set to its own value): that one
        // request is genuine and may be served once.
        const genuine = equal(req, sealed);
        if (stream) expect(clean(() => w.L.inferBegin(hg, req))).toBe(false);
        else if (genuine) clean(() => w.L.infer(ht, req));
        else expect(clean(() => w.L.infer(ht, req))).toBe(false);
      }),
      { numRuns: RUNS },
    );
    stillWorks();
  });

  it("sealed mutated inner requests reach the inner parsers of both modes", () => {
    const tensorInner = F.encodeInnerRequest(tensorRequest([1, 2, 3, 4]));
    const genInner = F.encodeInnerRequest(generateRequest("the cat", { maxNewTokens: 5, temperatureMilli: 800, topK: 3, seed: 9n }));
    const seen = new Set<string>();
    fc.assert(
      fc.property(opsArb, fc.constantFrom("tensor", "generate", "stream"), (ops, mode) => {
        if (mode === "tensor") {
          const s = fastSeal(w.rb, t.digest, mutate(tensorInner, ops));
          let resp: Uint8Array | undefined;
          if (clean(() => (resp = w.L.infer(ht, s.bytes)))) F.decodeInnerResponse(s.open(resp!));
          seen.add(`${mode} ${resp ? "ok" : "refused"}`);
        } else {
          const s = fastSeal(w.rb, g.digest, mutate(genInner, ops));
          if (mode === "generate") {
            let resp: Uint8Array | undefined;
            if (clean(() => (resp = w.L.infer(hg, s.bytes)))) expect(F.decodeInnerResponse(s.open(resp!)).kind).toBe(2);
            seen.add(`${mode} ${resp ? "ok" : "refused"}`);
          } else {
            let st = 0;
            if (clean(() => (st = w.L.inferBegin(hg, s.bytes)))) {
              let n = 0;
              while (clean(() => w.L.inferNext(st))) expect(++n).toBeLessThan(10);
            }
          }
        }
      }),
      { numRuns: RUNS },
    );
    expect(seen.has("tensor refused") && seen.has("generate refused")).toBe(true);
    stillWorks();
  });

  it("mutated accelerator outputs, tensor and generate", () => {
    const tensorOut = F.encodeTensorList([F.tensorFromArray("y", 1, [2], new Float32Array([1, 2]))]);
    fc.assert(
      fc.property(opsArb, fc.boolean(), (ops, gen) => {
        w.acc.onRun = (_p, _in, dflt) => mutate(gen ? dflt() : tensorOut, ops);
        try {
          if (gen) {
            const s = fastSeal(w.rb, g.digest, F.encodeInnerRequest(generateRequest("ab", { maxNewTokens: 3 })));
            let resp: Uint8Array | undefined;
            if (clean(() => (resp = w.L.infer(hg, s.bytes)))) F.decodeInnerResponse(s.open(resp!));
          } else {
            const s = fastSeal(w.rb, t.digest, F.encodeInnerRequest(tensorRequest([1, 2])));
            let resp: Uint8Array | undefined;
            if (clean(() => (resp = w.L.infer(ht, s.bytes)))) {
              // Whatever the loader sealed matches the program's outputs.
              const out = F.decodeInnerResponse(s.open(resp!));
              expect(out.kind === 1 && out.outputs.map((o) => o.name)).toEqual(["y"]);
            }
          }
        } finally {
          w.acc.onRun = undefined;
        }
      }),
      { numRuns: RUNS },
    );
    stillWorks();
  });
});
