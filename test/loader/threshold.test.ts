// The trust decision (SPEC §6.1), the trust configuration init adopts (§3) and rollback (§5.6).
import { beforeAll, describe, expect, it } from "vitest";
import { ed25519 } from "@noble/curves/ed25519.js";
import {
  F,
  World,
  cat,
  expectCode,
  expectNoTraps,
  flip,
  hex,
  hostOutcome,
  magic,
  outcome,
  rand,
  reviewer,
  tensorProgram,
  u8,
  type Program,
} from "./fixture.ts";

expectNoTraps();

const sig = (p: Program, r: F.ReviewerKey): F.SignatureEntry => F.signManifest(p.bytes, r);
const broken = (e: F.SignatureEntry, at = 40): F.SignatureEntry => ({ publicKey: e.publicKey, signature: flip(e.signature, at, 0x01) });

describe("threshold k of n (§6.1)", () => {
  let w: World;
  let p: Program;
  beforeAll(async () => {
    w = new World({ n: 3, k: 2 });
    p = await tensorProgram();
  });
  const verdict = (entries: F.SignatureEntry[]) => {
    const r = outcome(() => w.L.loadProgram(p.bytes, F.assembleBundle(entries), p.graph), true);
    if (r === "OK") w.L.unloadProgram(w.acc.log.filter((l) => l.startsWith("create")).map((l) => Number(l.split(" ")[1])).at(-1)!);
    return r;
  };

  it("n = 3, k = 2: k − 1 valid signatures fail, k pass, in any order", () => {
    const [s0, s1, s2] = w.reviewers.map((r) => sig(p, r));
    const TH = "SIGNATURE_THRESHOLD@0x0000";
    expect(verdict([s0])).toBe(TH);
    expect(verdict([s1])).toBe(TH);
    expect(verdict([s2])).toBe(TH);
    expect(verdict([s0, s1])).toBe("OK");
    expect(verdict([s1, s0])).toBe("OK");
    expect(verdict([s2, s0])).toBe("OK");
    expect(verdict([s1, s2])).toBe("OK");
    expect(verdict([s0, s1, s2])).toBe("OK");
  });

  it("the same signer twice counts once; an unknown key counts zero; an invalid signature of a known key counts zero", () => {
    const [s0, s1, s2] = w.reviewers.map((r) => sig(p, r));
    const TH = "SIGNATURE_THRESHOLD@0x0000";
    const stranger = sig(p, reviewer(100));
    expect(verdict([s0, s0])).toBe(TH);
    expect(verdict(Array(32).fill(s2))).toBe(TH);
    expect(verdict([s0, stranger])).toBe(TH);
    expect(verdict([stranger, sig(p, reviewer(101)), s1])).toBe(TH);
    expect(verdict([s0, broken(s1)])).toBe(TH);
    expect(verdict([broken(s0, 0), broken(s1, 63)])).toBe(TH);
    // A reviewer's key with another reviewer's signature, and the reverse.
    expect(verdict([s0, { publicKey: s1.publicKey, signature: s2.signature }])).toBe(TH);
    // Zero-valued counts do not block the entries after them.
    expect(verdict([stranger, s0, s1])).toBe("OK");
    expect(verdict([broken(s1), s1, s0])).toBe("OK"); // an invalid entry did not count, so the valid one does
    expect(verdict([s0, s0, broken(s2), s2])).toBe("OK");
    expect(verdict([...Array(30).fill(stranger), s2, s1])).toBe("OK");
  });

  it("bundle framing: count 1..32 (BAD_LENGTH), entries exactly as counted", () => {
    const [s0, s1] = w.reviewers.map((r) => sig(p, r));
    const good = F.assembleBundle([s0, s1]);
    const entries = good.subarray(9);
    expect(verdict([s0, s1])).toBe("OK");
    const load = (b: Uint8Array) => outcome(() => w.L.loadProgram(p.bytes, b, p.graph), true);
    expect(load(cat(magic("SG"), u8(0)))).toBe("BAD_LENGTH@0x0402");
    expect(load(cat(magic("SG"), u8(33), ...Array(33).fill(entries.subarray(0, 96))))).toBe("BAD_LENGTH@0x0402");
    expect(load(cat(magic("SG"), u8(255), entries))).toBe("BAD_LENGTH@0x0402");
    expect(load(cat(magic("SG"), u8(3), entries))).toBe("TRUNCATED@0x0403");
    expect(load(cat(magic("SG"), u8(1), entries))).toBe("TRAILING_BYTES@0x0400");
    expect(load(cat(magic("SG"), u8(2), entries, u8(0)))).toBe("TRAILING_BYTES@0x0400");
    expect(load(cat(magic("SG"), u8(2), entries.subarray(0, 191)))).toBe("TRUNCATED@0x0403");
    expect(load(cat(magic("SG"), u8(2)))).toBe("TRUNCATED@0x0403");
    expect(load(magic("SG"))).toBe("TRUNCATED@0x0402");
    expect(load(new Uint8Array(0))).toBe("TRUNCATED@0x0401");
    expect(load(cat(magic("SX"), u8(2), entries))).toBe("WRONG_KIND@0x0401");
    expect(load(cat(magic("SG", 2), u8(2), entries))).toBe("UNSUPPORTED_VERSION@0x0401");
    expect(load(cat(magic("SG"), u8(32), ...Array(16).fill(entries)))).toBe("OK");
    for (const b of [cat(magic("SG"), u8(0)), cat(magic("SG"), u8(3), entries), cat(magic("SG"), u8(1), entries)])
      expect(load(b).replace(/@.*/, "")).toBe(hostOutcome(() => F.decodeSignatureBundle(b)));
    w.L.unloadProgram(w.acc.log.filter((l) => l.startsWith("create")).map((l) => Number(l.split(" ")[1])).at(-1)!);
  });

  it("k = n = 1", async () => {
    const one = new World({ n: 1, k: 1 });
    const q = await tensorProgram();
    expectCode(() => one.L.loadProgram(q.bytes, F.assembleBundle([sig(q, reviewer(7))]), q.graph), "SIGNATURE_THRESHOLD");
    expectCode(() => one.L.loadProgram(q.bytes, F.assembleBundle([broken(sig(q, one.reviewers[0]))]), q.graph), "SIGNATURE_THRESHOLD");
    one.L.loadProgram(q.bytes, F.assembleBundle([sig(q, one.reviewers[0])]), q.graph);
  });

  it("n = 32: k = 32 needs every reviewer; k = 1 accepts the last reviewer in key order", async () => {
    const all = Array.from({ length: 32 }, (_, i) => reviewer(200 + i));
    const q = await tensorProgram();
    const entries = all.map((r) => sig(q, r));
    const full = new World({ reviewers: all, k: 32 });
    expectCode(() => full.L.loadProgram(q.bytes, F.assembleBundle(entries.slice(1)), q.graph), "SIGNATURE_THRESHOLD");
    expectCode(() => full.L.loadProgram(q.bytes, F.assembleBundle([entries[0], ...entries.slice(0, 31)]), q.graph), "SIGNATURE_THRESHOLD");
    expectCode(() => full.L.loadProgram(q.bytes, F.assembleBundle([...entries.slice(0, 31), broken(entries[31])]), q.graph), "SIGNATURE_THRESHOLD");
    full.L.loadProgram(q.bytes, F.assembleBundle(entries.slice().reverse()), q.graph);

    const byKey = all.slice().sort((a, b) => F.compareBytes(a.publicKey, b.publicKey));
    const any = new World({ reviewers: all, k: 1 });
    for (const r of [byKey[31], byKey[0], byKey[30]]) {
      const h = any.L.loadProgram(q.bytes, F.assembleBundle([sig(q, r)]), q.graph);
      any.L.unloadProgram(h);
    }
    const mid = new World({ reviewers: all, k: 17 });
    expectCode(() => mid.L.loadProgram(q.bytes, F.assembleBundle(byKey.slice(16).map((r) => sig(q, r))), q.graph), "SIGNATURE_THRESHOLD");
    mid.L.loadProgram(q.bytes, F.assembleBundle(byKey.slice(16).concat(byKey[0]).map((r) => sig(q, r))), q.graph);
  });
});

describe("the trust configuration init adopts (§3)", () => {
  const keys = [reviewer(1), reviewer(2), reviewer(3)].map((r) => r.publicKey).sort(F.compareBytes);
  const tc = (k: number, ks: Uint8Array[], o: { count?: number; magic?: Uint8Array } = {}) => cat(o.magic ?? magic("TC"), u8(k), u8(o.count ?? ks.length), ...ks);
  const init = (bytes: Uint8Array) => {
    const w = new World({ trustConfig: bytes, noInit: true });
    const r = outcome(() => w.L.init(bytes, rand(32)), true);
    if (r !== "OK") {
      // A refused configuration leaves the loader uninitialized: a good one is still taken.
      expectCode(() => w.L.attest(rand(32)), "STATE");
      w.L.init(tc(1, keys), rand(32));
    }
    return r;
  };
  // Points that are not acceptable reviewer keys (§2.3 rules 3–5).
  const identity = F.fromHex("0100000000000000000000000000000000000000000000000000000000000000");
  const order2 = F.fromHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"); // y = −1
  const order8 = F.fromHex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a");
  const yIsP = F.fromHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"); // y = p: non-canonical
  const yIsP1 = F.fromHex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"); // y = p + 1 ≡ 1
  const negZero = F.fromHex("0100000000000000000000000000000000000000000000000000000000000080"); // x = 0, sign set
  let notOnCurve = new Uint8Array(32);
  for (let y = 2; ; y++) {
    notOnCurve = new Uint8Array(32);
    notOnCurve[0] = y;
    try {
      ed25519.Point.fromBytes(notOnCurve, false);
    } catch {
      break;
    }
  }

  it("well-formed configurations are adopted; the report carries their hash", () => {
    for (const [k, ks] of [[1, keys.slice(0, 1)], [2, keys], [3, keys]] as [number, Uint8Array[]][]) expect(init(tc(k, ks))).toBe("OK");
  });

  it("unsorted or duplicate keys are NOT_CANONICAL; unacceptable keys are BAD_KEY; k = 0 or k > n is BAD_VALUE", () => {
    const cases: [string, Uint8Array, string][] = [
      ["descending", tc(2, keys.slice().reverse()), "NOT_CANONICAL@0x0104"],
      ["one pair swapped", tc(2, [keys[0], keys[2], keys[1]]), "NOT_CANONICAL@0x0104"],
      ["duplicate", tc(2, [keys[0], keys[0], keys[1]]), "NOT_CANONICAL@0x0104"],
      ["duplicate last", tc(2, [keys[0], keys[2], keys[2]]), "NOT_CANONICAL@0x0104"],
      ["identity", tc(1, [identity, ...keys].sort(F.compareBytes)), "BAD_KEY@0x0104"],
      ["order 2", tc(1, [order2]), "BAD_KEY@0x0104"],
      ["order 8", tc(1, [order8]), "BAD_KEY@0x0104"],
      ["y = p", tc(1, [yIsP]), "BAD_KEY@0x0104"],
      ["y = p + 1", tc(1, [keys[0], yIsP1]), "BAD_KEY@0x0104"],
      ["x = 0 with the sign bit", tc(1, [negZero]), "BAD_KEY@0x0104"],
      ["not on the curve", tc(1, [notOnCurve]), "BAD_KEY@0x0104"],
      ["k = 0", tc(0, keys), "BAD_VALUE@0x0102"],
      ["k > n", tc(4, keys), "BAD_VALUE@0x0102"],
      ["k = 255", tc(255, keys), "BAD_VALUE@0x0102"],
      ["n = 0", tc(1, []), "BAD_LENGTH@0x0103"],
      ["n = 33 (keys for 31)", tc(1, Array.from({ length: 31 }, (_, i) => reviewer(300 + i).publicKey).sort(F.compareBytes), { count: 33 }), "BAD_LENGTH@0x0103"],
      ["count over the keys", tc(1, keys, { count: 4 }), "TRUNCATED@0x0104"],
      ["count under the keys", tc(1, keys, { count: 2 }), "TRAILING_BYTES@0x0100"],
      ["wrong kind", tc(1, keys, { magic: magic("TK") }), "WRONG_KIND@0x0101"],
      ["wrong family", tc(1, keys, { magic: cat(F.ascii("vail"), F.ascii("TC"), new Uint8Array([0, 1])) }), "WRONG_KIND@0x0101"],
      ["version 2", tc(1, keys, { magic: magic("TC", 2) }), "UNSUPPORTED_VERSION@0x0101"],
      ["empty", new Uint8Array(0), "TRUNCATED@0x0101"],
      ["magic only", magic("TC"), "TRUNCATED@0x0102"],
      ["one key byte short", tc(1, keys).subarray(0, 8 + 2 + 95), "TRUNCATED@0x0104"],
      ["over TRUST_CONFIG_MAX", cat(tc(1, Array.from({ length: 32 }, (_, i) => reviewer(300 + i).publicKey).sort(F.compareBytes)), u8(0)), "TOO_LARGE@0x0101"],
    ];
    for (const [what, bytes, want] of cases) {
      expect(init(bytes), what).toBe(want);
      expect(hostOutcome(() => F.decodeTrustConfig(bytes)), `host: ${what}`).toBe(want.replace(/@.*/, ""));
    }
  });

  it("the order of checks: a key is checked for order before its own acceptability", () => {
    // [good, identity] sorted descending: both NOT_CANONICAL (key 1 < key 0) and BAD_KEY apply to key 1;
    // §3 lists ascending order first; what matters is that it is refused, as by the host.
    const bytes = tc(1, [keys[2], identity]);
    const got = init(bytes);
    expect(["NOT_CANONICAL@0x0104", "BAD_KEY@0x0104"]).toContain(got);
    expect(got.replace(/@.*/, "")).toBe(hostOutcome(() => F.decodeTrustConfig(bytes)));
  });
});

describe("rollback (§5.6)", () => {
  it("a lower version of a name loaded before is ROLLBACK, also after unload; equal and higher versions load", async () => {
    const w = new World();
    const v = async (version: number | bigint, name = "model") => tensorProgram({ name, version });
    const [v1, v2, v3] = [await v(1), await v(2), await v(3)];
    const h2 = w.load(v2);
    expectCode(() => w.load(v1), "ROLLBACK", 0);
    const h2b = w.load(v2);
    const h3 = w.load(v3);
    expectCode(() => w.load(v2), "ROLLBACK");
    for (const h of [h2, h2b, h3]) w.L.unloadProgram(h);
    expectCode(() => w.load(v2), "ROLLBACK");
    expectCode(() => w.load(v1), "ROLLBACK");
    w.L.unloadProgram(w.load(await v(1, "other")));
    w.L.unloadProgram(w.load(await v(1, "model2")));
    const max = await v((1n << 63n) - 1n);
    w.L.unloadProgram(w.load(max));
    expectCode(() => w.load(v3), "ROLLBACK");
    const below = await v((1n << 63n) - 2n);
    expectCode(() => w.load(below), "ROLLBACK");
  });

  it("only a program that was registered raises the floor; checks run in the order of §6.1", async () => {
    const w = new World();
    const v = async (version: number) => tensorProgram({ name: "floor", version });
    w.L.unloadProgram(w.load(await v(5)));
    const v9 = await v(9);
    // Refused for its signatures, its graph, or by the accelerator: v9 never counted.
    expectCode(() => w.L.loadProgram(v9.bytes, w.sign(v9.bytes, [0]), v9.graph), "SIGNATURE_THRESHOLD");
    expectCode(() => w.L.loadProgram(v9.bytes, w.sign(v9.bytes), rand(10)), "GRAPH_MISMATCH");
    w.acc.failCreate = 1;
    expectCode(() => w.load(v9), "ACCELERATOR_FAILED");
    w.acc.failCreate = undefined;
    const v6 = await v(6);
    w.L.unloadProgram(w.load(v6));
    // §6.1: signatures (step 3) and the graph (step 4) are checked before rollback (step 5).
    const v1 = await v(1);
    expectCode(() => w.L.loadProgram(v1.bytes, w.sign(v1.bytes, [1]), v1.graph), "SIGNATURE_THRESHOLD");
    expectCode(() => w.L.loadProgram(v1.bytes, w.sign(v1.bytes), flip(v1.graph, 0)), "GRAPH_MISMATCH");
    expectCode(() => w.load(v1), "ROLLBACK");
  });

  it("the rollback memory never forgets a name to make room: a name it cannot remember is refused", async () => {
    const w = new World();
    const names = Array.from({ length: 40 }, (_, i) => `n${i}`);
    let refusedFrom = -1;
    for (let i = 0; i < names.length; i++) {
      const p = await tensorProgram({ name: names[i], version: 5 });
      const r = outcome(() => w.L.unloadProgram(w.load(p)));
      if (r !== "OK") {
        expect(r).toBe("CAPACITY");
        if (refusedFrom < 0) refusedFrom = i;
      } else expect(refusedFrom, "once full, it stays full").toBe(-1);
    }
    // Every name it accepted still has its floor.
    const last = refusedFrom < 0 ? names.length : refusedFrom;
    for (let i = 0; i < last; i++) expectCode(() => w.load(tensorProgramSync(names[i], 4)), "ROLLBACK");
    expect(last).toBeGreaterThanOrEqual(8);
  });
});

// A program whose weights do not matter (rollback is decided before weights).
const syncWeights = await (async () => (await tensorProgram()).weights)();
function tensorProgramSync(name: string, version: number): Program {
  const graph = new Uint8Array(64).fill(3);
  const b = F.buildManifest({ name, version, graph, inputs: [{ name: "x", dtype: 1, dims: [{ min: 1, max: 8 }] }], outputs: [{ name: "y", dtype: 1, dims: [{ min: 1, max: 8 }] }], weights: syncWeights.descriptor });
  return { manifest: b.manifest, bytes: b.bytes, digest: b.digest, graph, weights: syncWeights };
}
void hex;
