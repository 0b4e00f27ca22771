// Tampering with every sealed or signed format the loader takes, with the exact SPEC §12 code:
// requests (§8), the weights stream (§9), manifests and signatures (§5, §6), wrapped keys (§10).
import { beforeAll, describe, expect, it } from "vitest";
import {
  E,
  F,
  SLOW,
  World,
  cat,
  describeErr,
  equal,
  errorOf,
  expectCode,
  expectNoTraps,
  flip,
  hex,
  hostOutcome,
  nameOf,
  outcome,
  prng,
  rand,
  sealStream,
  tensorProgram,
  tensorRequest,
  type Program,
  type SealedStream,
} from "./fixture.ts";

expectNoTraps();

/** A poisoned program (§9): dropped by the accelerator, not runnable, takes no more weights. */
function expectPoisoned(w: World, h: number, p: Program): void {
  expect(w.acc.programs.get(h)!.dropped, "drop-program after a weights failure").toBeGreaterThan(0);
  expect(w.acc.programs.get(h)!.finished).toBe(0);
  expectCode(() => w.L.infer(h, w.seal(p, tensorRequest([1])).bytes), "WEIGHTS_INCOMPLETE");
  const again = errorOf(() => w.L.loadWeights(h, p.weights.pieces[0]));
  expect(again.code).not.toBe(0);
}

/** Unloads a failed program and shows that loading it again with the right stream works. */
function expectReloadWorks(w: World, h: number, p: Program): void {
  w.L.unloadProgram(h);
  const h2 = w.load(p);
  w.feed(h2, p.weights.pieces);
  const out = w.ask(h2, p, tensorRequest([7]));
  expect(out.kind).toBe(1);
  w.L.unloadProgram(h2);
}

describe("sealed requests (§8.1, §8.2)", () => {
  let w: World;
  let p: Program;
  let h: number;
  beforeAll(async () => {
    w = new World();
    p = await tensorProgram();
    h = w.ready(p);
  });

  it("every single-byte change: header → KEY_ID / UNSUPPORTED_SUITE, enc and ct → REQUEST_AUTH", () => {
    const r = w.seal(p, tensorRequest([3]));
    const req = r.bytes;
    expect(req.length).toBe(39 + 22 + 16);
    const seen: Record<string, number> = {};
    for (let i = 0; i < req.length; i++) {
      for (const mask of [0xff, 0x01, 0x80]) {
        const e = errorOf(() => w.L.infer(h, flip(req, i, mask)));
        const want =
          i === 0 ? "KEY_ID@0x0701" : i <= 2 ? "UNSUPPORTED_SUITE@0x0702" : i <= 4 ? "UNSUPPORTED_SUITE@0x0703" : i <= 6 ? "UNSUPPORTED_SUITE@0x0704" : "REQUEST_AUTH";
        const got = want.includes("@") ? describeErr(e, true) : describeErr(e);
        expect(got, `byte ${i} ^ 0x${mask.toString(16)}`).toBe(want);
        seen[got] = (seen[got] ?? 0) + 1;
      }
    }
    expect(seen["REQUEST_AUTH"]).toBe(3 * (req.length - 7));
    // None of that consumed the request or hurt the loader.
    expect(r.response.openResponse(w.L.infer(h, req)).kind).toBe(1);
    expectCode(() => w.L.infer(h, req), "REPLAY", 0x0705);
  });

  it("truncated at every length and extended: TRUNCATED, BAD_LENGTH (ct < 16), REQUEST_AUTH", () => {
    const req = w.seal(p, tensorRequest([3])).bytes;
    for (let n = 0; n < req.length; n++) {
      const got = outcome(() => w.L.infer(h, req.subarray(0, n)), true);
      const want = n < 1 ? "TRUNCATED@0x0701" : n < 3 ? "TRUNCATED@0x0702" : n < 5 ? "TRUNCATED@0x0703" : n < 7 ? "TRUNCATED@0x0704" : n < 39 ? "TRUNCATED@0x0705" : n < 55 ? "BAD_LENGTH@0x0706" : "REQUEST_AUTH@0x0706";
      expect(got, `${n} bytes`).toBe(want);
    }
    expectCode(() => w.L.infer(h, cat(req, new Uint8Array(1))), "REQUEST_AUTH");
    expectCode(() => w.L.infer(h, cat(req.subarray(0, 39), req.subarray(40))), "REQUEST_AUTH");
  });

  it("a replayed request is REPLAY, also after a failure in between; another loader's request is KEY_ID or REQUEST_AUTH", async () => {
    const r = w.seal(p, tensorRequest([1, 2]));
    w.L.infer(h, r.bytes);
    expectCode(() => w.L.infer(h, r.bytes), "REPLAY", 0x0705);
    // The enc is what is remembered: the same enc with another ct is a replay too.
    expectCode(() => w.L.infer(h, flip(r.bytes, 50)), "REPLAY", 0x0705);
    // A request that failed to open is not remembered: it does not block its genuine twin.
    const fresh = w.seal(p, tensorRequest([9]));
    expectCode(() => w.L.infer(h, flip(fresh.bytes, 50)), "REQUEST_AUTH");
    expect(fresh.response.openResponse(w.L.infer(h, fresh.bytes)).kind).toBe(1);
    expectCode(() => w.L.infer(h, r.bytes), "REPLAY", 0x0705);
    // A request that opened but failed later (schema) was still opened: replaying it is REPLAY.
    const bad = w.seal(p, tensorRequest([1], "not-x"));
    expectCode(() => w.L.infer(h, bad.bytes), "SCHEMA_VIOLATION", 0x0803);
    expectCode(() => w.L.infer(h, bad.bytes), "REPLAY", 0x0705);
    // Sealed to another loader instance.
    const other = new World();
    const req = F.sealRequest({ loader: other.report, programDigest: p.digest, request: tensorRequest([1]) }).bytes;
    const want = other.rb.keyId === w.rb.keyId ? "REQUEST_AUTH" : "KEY_ID";
    expect(outcome(() => w.L.infer(h, req))).toBe(want);
    // Same key id byte, another loader: it must still fail to open.
    const forged = cat(new Uint8Array([w.rb.keyId]), req.subarray(1));
    expectCode(() => w.L.infer(h, forged), "REQUEST_AUTH");
  });

  it("a request routed to another program is REQUEST_AUTH, and is not consumed by the failure", async () => {
    const q = await tensorProgram({ name: "other" });
    const hq = w.ready(q);
    const r = w.seal(p, tensorRequest([5]));
    expectCode(() => w.L.infer(hq, r.bytes), "REQUEST_AUTH", 0x0706);
    expect(r.response.openResponse(w.L.infer(h, r.bytes)).kind).toBe(1);
    // Version 2 of the same name is another program: its digest differs.
    const p2 = await tensorProgram({ version: 2, weights: p.weights });
    const h2 = w.load(p2);
    w.feed(h2, p.weights.pieces);
    expectCode(() => w.L.infer(h2, w.seal(p, tensorRequest([5])).bytes), "REQUEST_AUTH");
    w.L.unloadProgram(hq);
    w.L.unloadProgram(h2);
  });

  it("a low-order enc is REQUEST_AUTH (all-zero shared secret, §2.2)", () => {
    const r = w.seal(p, tensorRequest([3])).bytes;
    const lowOrder = [
      new Uint8Array(32), // 0
      Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0)), // 1
      F.fromHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), // order 8
      F.fromHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), // p - 1
      F.fromHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), // p
    ];
    for (const enc of lowOrder) expectCode(() => w.L.infer(h, cat(r.subarray(0, 7), enc, r.subarray(39))), "REQUEST_AUTH");
  });
});

describe("the sealed weights stream (§9)", () => {
  let w: World;
  let small: Program; // one chunk
  let big: Program; // three chunks: 65536, 65536, 100
  beforeAll(async () => {
    w = new World();
    small = await tensorProgram({ name: "small", weightsSize: 100 });
    big = await tensorProgram({ name: "big", weightsSize: 2 * 65536 + 100 });
    w.giveKey(small.weights);
    w.giveKey(big.weights);
    expect(big.weights.pieces.map((x) => x.length)).toEqual([60, 65552, 65552, 116]);
  });

  /** Loads `p` fresh, feeds `pieces`, returns the handle and the first error (or undefined). */
  function attempt(p: Program, pieces: Uint8Array[]): { h: number; error?: InstanceType<typeof F.VeilFormatError> | ReturnType<typeof errorOf> } {
    const h = w.load(p);
    for (const piece of pieces) {
      try {
        w.L.loadWeights(h, piece);
      } catch (e) {
        return { h, error: errorOf(() => { throw e; }) };
      }
    }
    return { h };
  }

  const headerField = (i: number): number => (i < 8 ? 0x0501 : i < 24 ? 0x0502 : i < 40 ? 0x0503 : i < 44 ? 0x0504 : i < 52 ? 0x0505 : 0x0506);

  it("every header byte: WRONG_KIND / UNSUPPORTED_VERSION / WEIGHTS_MISMATCH at the field; the program is poisoned", () => {
    const p = big;
    const header = p.weights.pieces[0];
    for (let i = 0; i < 60; i++) {
      const bad = flip(header, i);
      const { h, error } = attempt(p, [bad]);
      expect(error, `header byte ${i}`).toBeDefined();
      const got = describeErr(error as ReturnType<typeof errorOf>, true);
      const field = `@0x${headerField(i).toString(16).padStart(4, "0")}`;
      if (i < 6) expect(got, `header byte ${i}`).toBe(`WRONG_KIND${field}`);
      else if (i < 8) expect(got, `header byte ${i}`).toBe(`UNSUPPORTED_VERSION${field}`);
      else if (i < 40) expect(got, `header byte ${i}`).toBe(`WEIGHTS_MISMATCH${field}`);
      else {
        // chunk_size, chunk_count, plaintext_size: §9 names WEIGHTS_MISMATCH; a strict parse of
        // the header alone (§1.3, as host/formats does it) may refuse the value first.
        const host = hostOutcome(() => F.decodeWeightsHeader(bad));
        const ok = got === `WEIGHTS_MISMATCH${field}` || (host !== "OK" && got.replace(/@.*/, "") === host);
        expect(ok, `header byte ${i}: ${got} (host decoder: ${host})`).toBe(true);
      }
      expectPoisoned(w, h, p);
      w.L.unloadProgram(h);
    }
    for (const bad of [header.subarray(0, 59), cat(header, new Uint8Array(1)), new Uint8Array(0)]) {
      const { h, error } = attempt(p, [bad]);
      expect(nameOf(error!.code as number)).toBe(bad.length > 60 ? "TRAILING_BYTES" : "TRUNCATED");
      expectPoisoned(w, h, p);
      w.L.unloadProgram(h);
    }
    const { h } = attempt(p, []);
    expectReloadWorks(w, h, p);
  });

  it("every byte of a one-chunk stream's chunk, and sampled bytes of a three-chunk stream: WEIGHTS_AUTH, poisoned", () => {
    const check = (p: Program, chunk: number, positions: Iterable<number>) => {
      for (const i of positions) {
        const pieces = p.weights.pieces.slice();
        pieces[chunk] = flip(pieces[chunk], i, 1 << (i % 8));
        const { h, error } = attempt(p, pieces);
        expect(error && describeErr(error as ReturnType<typeof errorOf>, true), `chunk ${chunk} byte ${i}`).toBe("WEIGHTS_AUTH@0x0507");
        const fp = w.acc.programs.get(h)!;
        expect(fp.uploads.length, "chunks before the bad one were released").toBe(chunk - 1);
        expectPoisoned(w, h, p);
        w.L.unloadProgram(h);
      }
    };
    check(small, 1, small.weights.pieces[1].keys());
    const r = prng(0xc0ffee);
    const sample = (len: number, n: number) => (SLOW ? [...Array(len).keys()].filter((i) => i % 16 === 0 || i >= len - 16) : [0, 1, len - 17, len - 16, len - 1, ...Array.from({ length: n }, () => r() % len)]);
    check(big, 1, sample(65552, 12));
    check(big, 2, sample(65552, 12));
    check(big, 3, big.weights.pieces[3].keys());
    const { h } = attempt(big, []);
    expectReloadWorks(w, h, big);
  });

  it("truncated: without its final chunk the program never runs (WEIGHTS_INCOMPLETE), and finish is never called", () => {
    const p = big;
    for (const n of [0, 1, 2, 3]) {
      const { h, error } = attempt(p, p.weights.pieces.slice(0, n));
      expect(error).toBeUndefined();
      expect(w.acc.programs.get(h)!.finished).toBe(0);
      const r = w.seal(p, tensorRequest([1]));
      expectCode(() => w.L.infer(h, r.bytes), "WEIGHTS_INCOMPLETE");
      if (n === 3) {
        w.L.loadWeights(h, p.weights.pieces[3]); // completing it later works,
        expect(r.response.openResponse(w.L.infer(h, r.bytes)).kind).toBe(1); // and the refused request was not consumed
      }
      w.L.unloadProgram(h);
    }
  });

  it("reordered, duplicated and wrong-length chunks: WEIGHTS_AUTH or WEIGHTS_ORDER, poisoned", () => {
    const [hd, c0, c1, c2] = big.weights.pieces;
    const cases: [string, Uint8Array[], string][] = [
      ["c1 before c0", [hd, c1, c0, c2], "WEIGHTS_AUTH"],
      ["c0 twice", [hd, c0, c0, c1, c2], "WEIGHTS_AUTH"],
      ["c1 twice", [hd, c0, c1, c1, c2], "WEIGHTS_ORDER"], // the last chunk is shorter
      ["c2 early", [hd, c0, c2, c1], "WEIGHTS_ORDER"],
      ["header twice", [hd, hd, c0, c1, c2], "WEIGHTS_ORDER"],
      ["c0 short", [hd, c0.subarray(1), c1, c2], "WEIGHTS_ORDER"],
      ["c0 long", [hd, cat(c0, new Uint8Array(1)), c1, c2], "WEIGHTS_ORDER"],
      ["c2 short", [hd, c0, c1, c2.subarray(0, 115)], "WEIGHTS_ORDER"],
      ["c2 long", [hd, c0, c1, cat(c2, new Uint8Array(1))], "WEIGHTS_ORDER"],
      ["empty piece", [hd, new Uint8Array(0)], "WEIGHTS_ORDER"],
      ["c0 and c1 in one piece", [hd, cat(c0, c1), c2], "WEIGHTS_ORDER"],
      // The last chunk sealed as non-final (flag byte of the nonce) cannot be forged: swap c1/c2 tags.
      ["c2 with c1's tag", [hd, c0, c1, cat(c2.subarray(0, 100), c1.subarray(-16))], "WEIGHTS_AUTH"],
    ];
    for (const [what, pieces, want] of cases) {
      const { h, error } = attempt(big, pieces);
      expect(error && nameOf(error.code as number), what).toBe(want);
      expectPoisoned(w, h, big);
      w.L.unloadProgram(h);
    }
  });

  it("extended: a piece after the final chunk is WEIGHTS_ORDER, and (any failure poisons, §9) the program cannot run", () => {
    const p = small;
    const { h } = attempt(p, p.weights.pieces);
    expect(w.ask(h, p, tensorRequest([1])).kind).toBe(1);
    expectCode(() => w.L.loadWeights(h, p.weights.pieces[1]), "WEIGHTS_ORDER", 0x0507);
    // SPEC §9: "A failure at any point poisons the program's weights: the accelerator is told to
    // drop what it received and the program cannot run until it is loaded again."
    expect(w.acc.programs.get(h)!.dropped, "drop-program after the extra piece").toBeGreaterThan(0);
    expectCode(() => w.L.infer(h, w.seal(p, tensorRequest([1])).bytes), "WEIGHTS_INCOMPLETE");
    for (const extra of [p.weights.pieces[0], new Uint8Array(0), rand(116)]) errorOf(() => w.L.loadWeights(h, extra));
    expectReloadWorks(w, h, p);
  });

  it("weights sealed for another program: another key id or another stream id is WEIGHTS_MISMATCH at the header", async () => {
    const p = small;
    const otherKey = await sealStream({ plaintext: p.weights.plaintext }); // other key id and key
    w.giveKey(otherKey);
    const resealed = await sealStream({ plaintext: p.weights.plaintext, dataKey: p.weights.dataKey, keyId: p.weights.keyId }); // fresh stream id
    for (const [what, s, field] of [
      ["other key id", otherKey, 0x0502],
      ["same key, other stream id", resealed, 0x0503],
    ] as [string, SealedStream, number][]) {
      const { h, error } = attempt(p, s.pieces);
      expect(error && describeErr(error as ReturnType<typeof errorOf>, true), what).toBe(`WEIGHTS_MISMATCH@0x${field.toString(16).padStart(4, "0")}`);
      expect(w.acc.programs.get(h)!.uploads.length).toBe(0);
      expectPoisoned(w, h, p);
      w.L.unloadProgram(h);
    }
    // The other stream's chunk after this stream's header: the chunk does not open.
    const { h, error } = attempt(p, [p.weights.pieces[0], resealed.pieces[1]]);
    expect(error && nameOf(error.code as number)).toBe("WEIGHTS_AUTH");
    expectPoisoned(w, h, p);
    expectReloadWorks(w, h, p);
  });

  it("a key holder re-sealing other plaintext under the same stream id: WEIGHTS_COMMITMENT at the end, dropped, not runnable", async () => {
    const p = big;
    const forged = await sealStream({
      plaintext: cat(p.weights.plaintext.subarray(0, 65536), rand(65536 + 100)),
      dataKey: p.weights.dataKey,
      keyId: p.weights.keyId,
      streamId: p.weights.descriptor.streamId,
    });
    expect(hex(forged.pieces[0])).toBe(hex(p.weights.pieces[0])); // identical header: it passes
    expect(hex(forged.pieces[1])).toBe(hex(p.weights.pieces[1])); // identical first chunk
    for (const pieces of [forged.pieces, [p.weights.pieces[0], p.weights.pieces[1], forged.pieces[2], p.weights.pieces[3]]]) {
      const { h, error } = attempt(p, pieces);
      expect(error && describeErr(error as ReturnType<typeof errorOf>, true)).toBe("WEIGHTS_COMMITMENT@0x0507");
      const fp = w.acc.programs.get(h)!;
      expect(fp.uploads.length).toBe(3); // every chunk opened and went to the accelerator,
      const log = w.acc.log.filter((l) => l.endsWith(` ${h}`) || l.includes(` ${h} `));
      // The accelerator measured what it got (SPEC §9.1); the loader refused the measurement
      // and told it to drop everything, before anything was built from it.
      expect(log.slice(-2)).toEqual([`measure ${h}`, `drop ${h}`]);
      expectPoisoned(w, h, p);
      w.L.unloadProgram(h);
    }
    const { h } = attempt(p, []);
    expectReloadWorks(w, h, p);
  });

  it("an accelerator measurement that differs in any one bit (§9.1): WEIGHTS_COMMITMENT, dropped, not runnable", () => {
    const p = big;
    try {
      for (const bit of [0, 7, 8 * 16 + 3, 255]) {
        w.acc.measurementOverride = (_h, honest) => {
          const m = honest.slice();
          m[bit >> 3] ^= 1 << (bit & 7);
          return m;
        };
        const { h, error } = attempt(p, p.weights.pieces);
        expect(error && describeErr(error as ReturnType<typeof errorOf>, true)).toBe("WEIGHTS_COMMITMENT@0x0507");
        const log = w.acc.log.filter((l) => l.endsWith(` ${h}`) || l.includes(` ${h} `));
        expect(log.slice(-2)).toEqual([`measure ${h}`, `drop ${h}`]);
        expectPoisoned(w, h, p);
        w.L.unloadProgram(h);
      }
    } finally {
      w.acc.measurementOverride = undefined;
    }
    const { h, error } = attempt(p, p.weights.pieces); // the honest measurement: runnable
    expect(error).toBeUndefined();
    expectReloadWorks(w, h, p);
  });

  it("an accelerator measurement that is not 32 bytes (§9.1): ACCELERATOR_FAILED, dropped", () => {
    const p = big;
    try {
      for (const len of [0, 1, 31, 33, 64]) {
        w.acc.measurementOverride = (_h, honest) => {
          const m = new Uint8Array(len);
          m.set(honest.subarray(0, Math.min(len, 32)));
          return m;
        };
        const { h, error } = attempt(p, p.weights.pieces);
        expect(error && describeErr(error as ReturnType<typeof errorOf>, true)).toBe("ACCELERATOR_FAILED@0x0900");
        expectPoisoned(w, h, p);
        w.L.unloadProgram(h);
      }
    } finally {
      w.acc.measurementOverride = undefined;
    }
  });
});

describe("manifests and signatures (§5, §6)", () => {
  let w: World;
  let p: Program;
  beforeAll(async () => {
    w = new World({ n: 3, k: 2 });
    p = await tensorProgram({ egressLimit: 1000, extensions: [{ type: 0x0010, data: rand(3) }] });
    w.giveKey(p.weights);
  });

  it("every single-byte change of a signed manifest is refused: SIGNATURE_THRESHOLD, or the parse error", () => {
    const bundle = w.sign(p.bytes);
    const counts: Record<string, number> = {};
    for (let i = 0; i < p.bytes.length; i++) {
      const bad = flip(p.bytes, i);
      const got = outcome(() => w.L.loadProgram(bad, bundle, p.graph));
      const host = hostOutcome(() => F.decodeManifest(bad));
      expect(["SIGNATURE_THRESHOLD", ...(host === "OK" ? [] : [host])], `manifest byte ${i}`).toContain(got);
      counts[got] = (counts[got] ?? 0) + 1;
    }
    expect(counts.OK).toBeUndefined();
    // Truncated and extended manifests.
    for (const bad of [p.bytes.subarray(0, p.bytes.length - 1), cat(p.bytes, new Uint8Array(1)), p.bytes.subarray(0, 8)]) {
      const got = outcome(() => w.L.loadProgram(bad, bundle, p.graph));
      expect(["SIGNATURE_THRESHOLD", hostOutcome(() => F.decodeManifest(bad))]).toContain(got);
    }
    // Nothing was registered by all that.
    const h = w.load(p, bundle);
    w.L.unloadProgram(h);
  });

  it("every single-byte change of a needed signature entry is SIGNATURE_THRESHOLD; of a spare one, harmless", () => {
    const needed = w.sign(p.bytes, [0, 2]);
    expect(needed.length).toBe(9 + 2 * 96);
    for (let i = 0; i < needed.length; i++) {
      const bad = flip(needed, i);
      const got = outcome(() => w.L.loadProgram(p.bytes, bad, p.graph), true);
      if (i >= 9) expect(got, `bundle byte ${i}`).toBe("SIGNATURE_THRESHOLD@0x0000");
      else {
        const host = hostOutcome(() => F.decodeSignatureBundle(bad));
        expect(got.replace(/@.*/, ""), `bundle byte ${i}`).toBe(host);
        expect(got.replace(/.*@/, "").slice(0, 4), `bundle byte ${i}`).toBe("0x04");
      }
    }
    const spare = w.sign(p.bytes, [0, 1, 2]);
    for (let i = 9; i < spare.length; i += 7) {
      const h = w.L.loadProgram(p.bytes, flip(spare, i), p.graph);
      w.L.unloadProgram(h);
    }
  });

  it("a signature over another manifest, or malleated (S + L), counts zero", () => {
    const other = F.signManifest(cat(p.bytes, new Uint8Array(1)), w.reviewers[1]);
    const good = F.signManifest(p.bytes, w.reviewers[0]);
    expectCode(() => w.L.loadProgram(p.bytes, F.assembleBundle([good, other]), p.graph), "SIGNATURE_THRESHOLD");
    const s1 = F.signManifest(p.bytes, w.reviewers[1]);
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    const S = BigInt("0x" + hex(s1.signature.slice(32).reverse()));
    const S2 = S + L;
    expect(S2 < 1n << 256n).toBe(true);
    const malleated = s1.signature.slice();
    malleated.set(Buffer.from(S2.toString(16).padStart(64, "0"), "hex").reverse(), 32);
    expectCode(() => w.L.loadProgram(p.bytes, F.assembleBundle([good, { publicKey: s1.publicKey, signature: malleated }]), p.graph), "SIGNATURE_THRESHOLD");
    const h = w.L.loadProgram(p.bytes, F.assembleBundle([good, s1]), p.graph);
    w.L.unloadProgram(h);
  });

  it("the label is part of the signed message: a signature over the bare manifest counts zero", async () => {
    const { ed25519 } = await import("@noble/curves/ed25519.js");
    const bare = (i: number) => ({ publicKey: w.reviewers[i].publicKey, signature: ed25519.sign(p.bytes, w.reviewers[i].secretKey) });
    expectCode(() => w.L.loadProgram(p.bytes, F.assembleBundle([bare(0), bare(1)]), p.graph), "SIGNATURE_THRESHOLD");
  });

  it("a graph other than the signed one is GRAPH_MISMATCH", () => {
    const bundle = w.sign(p.bytes);
    expectCode(() => w.L.loadProgram(p.bytes, bundle, flip(p.graph, 17)), "GRAPH_MISMATCH");
    expectCode(() => w.L.loadProgram(p.bytes, bundle, p.graph.subarray(1)), "GRAPH_MISMATCH");
    expectCode(() => w.L.loadProgram(p.bytes, bundle, cat(p.graph, new Uint8Array(1))), "GRAPH_MISMATCH");
    expectCode(() => w.L.loadProgram(p.bytes, bundle, new Uint8Array(0)), "GRAPH_MISMATCH");
  });
});

describe("wrapped keys (§10)", () => {
  it("every single-byte change: WRONG_KIND / UNSUPPORTED_VERSION in the magic, else KEY_UNWRAP; a held key survives", async () => {
    const w = new World();
    const p = await tensorProgram();
    const wrapped = F.wrapKey({ report: w.report, keyId: p.weights.keyId, dataKey: p.weights.dataKey });
    w.L.unwrapKey(wrapped);
    // The same key id, a different key: every tampered wrap of it must leave the held key alone.
    const decoy = F.wrapKey({ report: w.report, keyId: p.weights.keyId, dataKey: rand(32) });
    for (let i = 0; i < 136; i++) {
      const bad = flip(decoy, i, i & 1 ? 0x01 : 0xff);
      const got = outcome(() => w.L.unwrapKey(bad), true);
      const want = i < 6 ? "WRONG_KIND@0x0601" : i < 8 ? "UNSUPPORTED_VERSION@0x0601" : "KEY_UNWRAP@0x0605";
      expect(got, `wrapped key byte ${i}`).toBe(want);
      if (i < 8) expect(got.replace(/@.*/, "")).toBe(hostOutcome(() => F.decodeWrappedKey(bad)));
    }
    for (let n = 0; n < 136; n++) {
      const got = outcome(() => w.L.unwrapKey(wrapped.subarray(0, n)), true);
      const field = n < 8 ? "0x0601" : n < 24 ? "0x0602" : n < 56 ? "0x0603" : n < 88 ? "0x0604" : "0x0605";
      expect(got, `${n} bytes`).toBe(`TRUNCATED@${field}`);
    }
    expectCode(() => w.L.unwrapKey(cat(wrapped, new Uint8Array(1))), "TRAILING_BYTES", 0x0600); // §12.1: the structure's id
    expectCode(() => w.L.unwrapKey(cat(decoy.subarray(0, 88), wrapped.subarray(88))), "KEY_UNWRAP"); // enc of one, ct of another
    const h = w.load(p);
    w.feed(h, p.weights.pieces); // still the original key
    expect(equal(w.acc.weightsOf(h), p.weights.plaintext)).toBe(true);
    expect(E.KEY_UNWRAP).toBe(33);
  });
});
