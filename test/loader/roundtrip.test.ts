// Round trips between the host implementation of SPEC.md (host/formats) and the loader
// (build/loader.wasm) for every format, in both directions, through every entry point.
import { describe, expect, it } from "vitest";
import {
  E,
  F,
  LoaderError,
  VOCAB,
  World,
  argmax,
  ascii,
  cat,
  equal,
  errorOf,
  expectCode,
  expectNoTraps,
  fakeLogits,
  floatSpec,
  generateProgram,
  generateRequest,
  greedy,
  hex,
  int64s,
  latin1,
  loaderMemory,
  outcome,
  rand,
  sealStream,
  sha256,
  tensorProgram,
  tensorRequest,
  x25519Public,
  entropyStream,
  type Program,
} from "./fixture.ts";

expectNoTraps();

describe("init and attest: ReportBody (§4)", () => {
  it("init returns a ReportBody the host decodes, bound to the key, the trust configuration and the nonce", () => {
    const nonce = rand(32);
    const w = new World({ entropySeed: "report", nonce });
    expect(w.report.length).toBe(105);
    const rb = F.decodeReportBody(w.report); // strict: magic, lengths, key_id rule
    expect(rb.keyId).toBe(sha256(rb.hpkePublicKey)[0]);
    expect(hex(rb.trustConfigHash)).toBe(hex(sha256(w.trustConfig)));
    expect(hex(rb.nonce)).toBe(hex(nonce));
    // §2.2, §4: the key pair is 32 entropy bytes used as the scalar; the first 32 the loader drew.
    const first = new Uint8Array(32);
    entropyStream("report")(first);
    expect(hex(rb.hpkePublicKey)).toBe(hex(x25519Public(first)));
    // Byte layout, independently of the host decoder.
    expect(hex(w.report.subarray(0, 8))).toBe(hex(cat(ascii("veilRB"), new Uint8Array([0, 1]))));
    expect(w.report[8]).toBe(rb.keyId);
  });

  it("attest: same key and trust hash, the new nonce echoed; the report is what a broker wraps to", () => {
    const w = new World();
    const n2 = rand(32);
    const r2 = w.L.attest(n2);
    const rb2 = F.decodeReportBody(r2);
    expect(hex(rb2.hpkePublicKey)).toBe(hex(w.rb.hpkePublicKey));
    expect(rb2.keyId).toBe(w.rb.keyId);
    expect(hex(rb2.trustConfigHash)).toBe(hex(w.rb.trustConfigHash));
    expect(hex(rb2.nonce)).toBe(hex(n2));
    expect(hex(r2.subarray(0, 73))).toBe(hex(w.report.subarray(0, 73)));
    // A key wrapped against the attest report (its nonce) unwraps: the loader rebuilds it.
    const dataKey = rand(32);
    const keyId = rand(16);
    w.L.unwrapKey(F.wrapKey({ report: r2, keyId, dataKey }));
  });

  it("init is once per instance; attest before init is STATE; nonces are exactly 32 bytes", () => {
    const w = new World({ noInit: true });
    expectCode(() => w.L.attest(rand(32)), "STATE");
    expectCode(() => w.L.unwrapKey(new Uint8Array(136)), "STATE");
    expectCode(() => w.L.loadProgram(new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)), "STATE");
    for (const n of [0, 31, 33, 64]) expectCode(() => w.L.init(w.trustConfig, rand(n)), "BAD_LENGTH", 0x0205);
    w.init(rand(32));
    expectCode(() => w.L.init(w.trustConfig, rand(32)), "STATE");
    for (const n of [0, 31, 33]) expectCode(() => w.L.attest(rand(n)), "BAD_LENGTH", 0x0205);
    expect(F.decodeReportBody(w.L.attest(rand(32))).keyId).toBe(w.rb.keyId);
  });

  it("two instances have different keys", () => {
    const a = new World();
    const b = new World();
    expect(hex(a.rb.hpkePublicKey)).not.toBe(hex(b.rb.hpkePublicKey));
  });
});

describe("key release (§10): host wrapKey → loader unwrap-key", () => {
  it("a wrapped key unwraps, and weights sealed under it then open", async () => {
    const w = new World();
    const p = await tensorProgram({ weightsSize: 5000 });
    w.giveKey(p.weights);
    const h = w.load(p);
    w.feed(h, p.weights.pieces);
    expect(hex(w.acc.weightsOf(h))).toBe(hex(p.weights.plaintext));
  });

  it("a key wrapped for another loader, or for the same key under another trust configuration, is KEY_UNWRAP", () => {
    const a = new World({ entropySeed: "same key" });
    const b = new World();
    // Same entropy, so the same HPKE key pair, but a different trust configuration.
    const c = new World({ entropySeed: "same key", k: 3 });
    expect(hex(c.rb.hpkePublicKey)).toBe(hex(a.rb.hpkePublicKey));
    const wrapped = F.wrapKey({ report: a.report, keyId: rand(16), dataKey: rand(32) });
    a.L.unwrapKey(wrapped);
    expectCode(() => b.L.unwrapKey(wrapped), "KEY_UNWRAP", 0x0605);
    expectCode(() => c.L.unwrapKey(wrapped), "KEY_UNWRAP", 0x0605);
  });

  it("unwrapping a key id again replaces the key (§10)", async () => {
    const w = new World();
    const keyId = rand(16);
    const first = await tensorProgram({ keyId, name: "first" });
    const second = await tensorProgram({ keyId, name: "second" });
    w.giveKey(first.weights);
    w.giveKey(second.weights); // same key id, other key: replaces
    const h2 = w.load(second);
    w.feed(h2, second.weights.pieces);
    const h1 = w.load(first);
    w.L.loadWeights(h1, first.weights.pieces[0]); // the header names the key id only
    expectCode(() => w.L.loadWeights(h1, first.weights.pieces[1]), "WEIGHTS_AUTH", 0x0507);
  });

  it("KEYS_MAX = 16 keys; a 17th distinct key id is CAPACITY, a replaced one is not", () => {
    const w = new World();
    const ids = Array.from({ length: 16 }, () => rand(16));
    for (const keyId of ids) w.giveKey({ keyId, dataKey: rand(32) });
    expectCode(() => w.giveKey({ keyId: rand(16), dataKey: rand(32) }), "CAPACITY");
    w.giveKey({ keyId: ids[7], dataKey: rand(32) });
  });

  it("weights before their key is unwrapped: KEY_UNKNOWN at the header", async () => {
    const w = new World();
    const p = await tensorProgram();
    const h = w.load(p);
    expectCode(() => w.L.loadWeights(h, p.weights.pieces[0]), "KEY_UNKNOWN");
  });
});

describe("load-program and load-weights (§6.1, §9)", () => {
  it("the accelerator receives exactly the manifest and graph, then the plaintext at its offsets, then finish", async () => {
    const w = new World();
    const p = await tensorProgram({ weightsSize: 3 * 65536 + 1234 });
    w.giveKey(p.weights);
    const h = w.load(p);
    const fp = w.acc.programs.get(h)!;
    expect(hex(fp.manifest)).toBe(hex(p.bytes));
    expect(hex(fp.graph)).toBe(hex(p.graph));
    expect(w.acc.log).toEqual([`create ${h}`]);
    w.L.loadWeights(h, p.weights.pieces[0]);
    expect(fp.uploads.length).toBe(0); // the header releases nothing
    for (let i = 1; i < p.weights.pieces.length; i++) {
      w.L.loadWeights(h, p.weights.pieces[i]);
      expect(fp.uploads.length).toBe(i);
      expect(fp.finished).toBe(i === p.weights.pieces.length - 1 ? 1 : 0);
    }
    expect(fp.uploads.map((u) => [Number(u.offset), u.data.length])).toEqual([
      [0, 65536],
      [65536, 65536],
      [131072, 65536],
      [196608, 1234],
    ]);
    expect(hex(w.acc.weightsOf(h))).toBe(hex(p.weights.plaintext));
    // SPEC §9.1: measured, then built only once the loader accepted the measurement.
    expect(w.acc.log.slice(-3)).toEqual([`upload ${h} 196608 1234`, `measure ${h}`, `finish ${h}`]);
    expect(w.ask(h, p, tensorRequest([1])).kind).toBe(1);
  });

  it("several external files form one stream (§5.4); an empty stream runs without any upload", async () => {
    const w = new World();
    const files = [
      { location: "a.bin", size: 70000 },
      { location: "dir/b.bin", size: 1 },
      { location: "c.bin", size: 999 },
    ];
    const weights = await sealStream({ size: 71000, files });
    const p = await tensorProgram({ weights });
    const h = w.ready(p);
    expect(hex(w.acc.weightsOf(h))).toBe(hex(weights.plaintext));

    const empty = await sealStream({ plaintext: new Uint8Array(0) });
    expect(empty.pieces.map((x) => x.length)).toEqual([60, 16]);
    const q = await tensorProgram({ weights: empty, name: "empty" });
    const h2 = w.ready(q);
    const fq = w.acc.programs.get(h2)!;
    expect(fq.uploads.reduce((n, u) => n + u.data.length, 0)).toBe(0);
    expect(fq.finished).toBe(1);
    expect(w.ask(h2, q, tensorRequest([2, 3])).kind).toBe(1);
  });

  it("the largest chunk size (16 MiB) streams", async () => {
    const w = new World();
    const weights = await sealStream({ size: (1 << 24) + 5, chunkSize: 1 << 24 });
    const p = await tensorProgram({ weights });
    const h = w.ready(p);
    expect(w.acc.programs.get(h)!.uploads.map((u) => u.data.length)).toEqual([1 << 24, 5]);
    expect(equal(w.acc.weightsOf(h), weights.plaintext)).toBe(true);
  });

  it("handles: unknown or stale handles are NO_PROGRAM; unload drops the program; PROGRAMS_MAX = 8", async () => {
    const w = new World();
    const p = await tensorProgram();
    const h = w.ready(p);
    w.L.unloadProgram(h);
    expect(w.acc.log.at(-1)).toBe(`drop ${h}`);
    const r = w.seal(p, tensorRequest([1]));
    expectCode(() => w.L.infer(h, r.bytes), "NO_PROGRAM");
    expectCode(() => w.L.loadWeights(h, p.weights.pieces[0]), "NO_PROGRAM");
    expectCode(() => w.L.unloadProgram(h), "NO_PROGRAM");
    for (const bad of [0, 8, 15, 0xffffffff, h + 16]) expectCode(() => w.L.infer(bad, r.bytes), "NO_PROGRAM");
    const h2 = w.load(p);
    expect(h2).not.toBe(h); // a reused slot gets a new handle
    w.feed(h2, p.weights.pieces);
    expect(w.ask(h2, p, tensorRequest([1])).kind).toBe(1);
    const handles = [h2];
    for (let i = 1; i < 8; i++) handles.push(w.load(p));
    expect(new Set(handles).size).toBe(8);
    expectCode(() => w.load(p), "CAPACITY");
    w.L.unloadProgram(handles[3]);
    w.load(p);
  });

  it("the accelerator's failures surface as ACCELERATOR_FAILED and leave nothing runnable", async () => {
    const w = new World();
    const p = await tensorProgram();
    w.giveKey(p.weights);
    w.acc.failCreate = 7;
    expectCode(() => w.load(p), "ACCELERATOR_FAILED");
    w.acc.failCreate = undefined;
    const h = w.load(p);
    w.acc.failFinish = 9;
    expectCode(() => w.feed(h, p.weights.pieces), "ACCELERATOR_FAILED");
    w.acc.failFinish = undefined;
    expect(w.acc.programs.get(h)!.dropped).toBeGreaterThan(0);
    expectCode(() => w.L.infer(h, w.seal(p, tensorRequest([1])).bytes), "WEIGHTS_INCOMPLETE");
    w.L.unloadProgram(h);
    const h2 = w.load(p);
    w.acc.failUpload = 3;
    expectCode(() => w.feed(h2, p.weights.pieces), "ACCELERATOR_FAILED");
    w.acc.failUpload = undefined;
    expectCode(() => w.L.infer(h2, w.seal(p, tensorRequest([1])).bytes), "WEIGHTS_INCOMPLETE");
  });
});

describe("tensor requests (§7.4, §8.1–§8.3): host sealRequest → infer → host openResponse", () => {
  it("the response is exactly what the accelerator returned, and it ran exactly the request's inputs", async () => {
    const w = new World();
    const p = await tensorProgram();
    const h = w.ready(p);
    const req = tensorRequest([1.5, -2, 3e30, Number.NaN]);
    const r = w.seal(p, req);
    const resp = w.L.infer(h, r.bytes);
    const run = w.acc.runs.at(-1)!;
    expect(hex(run.inputs)).toBe(hex(F.encodeTensorList((req as F.TensorRequest).inputs)));
    const opened = r.response.openResponse(resp);
    expect(opened.kind).toBe(1);
    if (opened.kind !== 1) return;
    expect(hex(F.encodeTensorList(opened.outputs))).toBe(hex(run.output!));
    expect(opened.outputs[0].name).toBe("y");
    expect(resp.length).toBe(32 + 9 + run.output!.length + 16);
  });

  it("many inputs and outputs, every dtype, rank 0 and rank 8", async () => {
    const w = new World();
    const inputs: F.TensorSpec[] = [
      { name: "f32", dtype: 1, dims: [{ min: 1, max: 4 }, { min: 2, max: 2 }] },
      { name: "u8", dtype: 2, dims: [{ min: 0 + 1, max: 16 }] },
      { name: "i8", dtype: 3, dims: [] },
      { name: "i16", dtype: 5, dims: [{ min: 3, max: 3 }] },
      { name: "i32", dtype: 6, dims: Array.from({ length: 8 }, () => ({ min: 1, max: 2 })) },
      { name: "i64", dtype: 7, dims: [{ min: 1, max: 3 }] },
      { name: "bool", dtype: 9, dims: [{ min: 1, max: 5 }] },
      { name: "f16", dtype: 10, dims: [{ min: 2, max: 2 }] },
      { name: "f64", dtype: 11, dims: [{ min: 1, max: 1 }] },
    ];
    const outputs = [...inputs.map((s) => ({ ...s, name: `out.${s.name}` })), { ...inputs[0], name: "again/f32" }];
    const p = await tensorProgram({ inputs, outputs });
    const h = w.ready(p);
    const tensors: F.Tensor[] = inputs.map((s, i) => {
      const dims = s.dims.map((d) => d.max);
      const n = dims.reduce((a, b) => a * b, 1) * F.dtypeSize(s.dtype)!;
      const data = s.dtype === 9 ? Uint8Array.from({ length: n }, (_, j) => j & 1) : rand(n);
      return { name: s.name, dtype: s.dtype, dims, data };
    });
    const out = w.ask(h, p, { kind: 1, inputs: tensors });
    expect(out.kind).toBe(1);
    if (out.kind !== 1) return;
    expect(out.outputs.map((t) => t.name)).toEqual(outputs.map((s) => s.name));
    out.outputs.forEach((t, i) => {
      const src = tensors[i % tensors.length];
      expect(t.dims).toEqual(src.dims);
      expect(hex(t.data)).toBe(hex(src.data));
    });
  });

  it("fields of the response: a fresh response nonce each time, the same plaintext for the same input", async () => {
    const w = new World();
    const p = await tensorProgram();
    const h = w.ready(p);
    const a = w.seal(p, tensorRequest([4]));
    const b = w.seal(p, tensorRequest([4]));
    const ra = w.L.infer(h, a.bytes);
    const rb = w.L.infer(h, b.bytes);
    expect(hex(ra.subarray(0, 32))).not.toBe(hex(rb.subarray(0, 32)));
    expect(JSON.stringify(a.response.openResponse(ra))).toBe(JSON.stringify(b.response.openResponse(rb)));
    // The response opens only with its own request's context.
    expect(() => b.response.openResponse(ra)).toThrow(/failed to open/);
  });

  it("the egress limit (§5.5) bounds the InnerResponse plaintext exactly", async () => {
    const w = new World();
    const weights = await sealStream();
    // y of n floats: InnerResponse = 9 + (1 + 1+1 + 1 + 1 + 4 + 4n) = 21 + 4n bytes.
    const p = await tensorProgram({ weights, egressLimit: 21 + 4 * 3 });
    const h = w.ready(p);
    expect(w.ask(h, p, tensorRequest([1, 2, 3])).kind).toBe(1);
    expectCode(() => w.ask(h, p, tensorRequest([1, 2, 3, 4])), "EGRESS_LIMIT");
    // An unknown non-critical extension is ignored (§5.5).
    const q = await tensorProgram({ weights, name: "ext", extensions: [{ type: 0x0042, data: rand(5) }, { type: 0x7fff, data: new Uint8Array(0) }] });
    const hq = w.ready(q);
    expect(w.ask(hq, q, tensorRequest([1, 2, 3, 4])).kind).toBe(1);
  });
});

describe("generate mode (§5.3, §7.5, §7.6, §8.4)", () => {
  const prompts = ["abc", "the cat", "abab c", "\xffa", "t", "cat cat cat the abc abc ab a b c"];

  it("greedy decoding is the argmax of the accelerator's logits, single-shot (kind 2)", async () => {
    const w = new World();
    for (const positions of ["last", "all"] as const) {
      const p = await generateProgram({ positions, name: `lm-${positions}`, maxNewTokens: 20, contextLength: 6 });
      const h = w.ready(p);
      const g = p.manifest.generate!;
      const stops = new Set<number>();
      for (const prompt of prompts) {
        for (const maxNew of [1, 5, 20]) {
          const want = greedy(g, latin1(prompt), maxNew);
          const runs = w.acc.runs.length;
          const out = w.ask(h, p, generateRequest(prompt, { maxNewTokens: maxNew }));
          expect(out.kind).toBe(2);
          if (out.kind !== 2) continue;
          expect(Buffer.from(out.text).toString("latin1"), `${positions} ${prompt} ${maxNew}`).toBe(Buffer.from(want.text).toString("latin1"));
          expect(out.tokens).toBe(want.ids.length);
          expect(out.stop).toBe(want.stop);
          stops.add(out.stop);
          // The model saw the last context_length tokens, one run per step.
          const seen = w.acc.runs.slice(runs).map((r) => int64s(F.decodeTensorList(r.inputs, { secret: false })[0].data));
          expect(seen).toEqual(want.contexts);
        }
      }
      expect(stops).toEqual(new Set([1, 2]));
    }
  });

  it("streamed: response nonce first, then records with the counter and final flag, then STREAM_DONE", async () => {
    const w = new World();
    const p = await generateProgram({ maxNewTokens: 20, tokensPerChunk: 3 });
    const h = w.ready(p);
    const g = p.manifest.generate!;
    for (const prompt of prompts) {
      for (const maxNew of [1, 3, 7, 20]) {
        const want = greedy(g, latin1(prompt), maxNew);
        const { chunks, wire } = w.stream(h, p, generateRequest(prompt, { maxNewTokens: maxNew }));
        expect(wire[0].length).toBe(32);
        for (const rec of wire.slice(1)) {
          expect(new DataView(rec.buffer, rec.byteOffset).getUint32(0)).toBe(rec.length - 4);
        }
        expect(chunks.length).toBe(wire.length - 1);
        const text = cat(...chunks.map((c) => c.text));
        expect(Buffer.from(text).toString("latin1")).toBe(Buffer.from(want.text).toString("latin1"));
        expect(chunks.reduce((n, c) => n + c.tokens, 0)).toBe(want.ids.length);
        chunks.slice(0, -1).forEach((c) => {
          expect(c.stop).toBe(0);
          expect(c.tokens).toBe(3); // tokens_per_chunk
        });
        expect(chunks.at(-1)!.stop).toBe(want.stop);
        expect(chunks.at(-1)!.tokens).toBeLessThanOrEqual(3);
        // The single-shot answer is the same text.
        const single = w.ask(h, p, generateRequest(prompt, { maxNewTokens: maxNew }));
        expect(single.kind === 2 && hex(single.text)).toBe(hex(text));
      }
    }
  });

  it("the client detects a dropped, reordered, duplicated or cut stream of the loader's", async () => {
    const w = new World();
    const p = await generateProgram({ maxNewTokens: 12, tokensPerChunk: 2, endToken: 13 }); // "\xff" ends rarely
    const h = w.ready(p);
    const r = w.seal(p, generateRequest("abc", { maxNewTokens: 12 }));
    const s = w.L.inferBegin(h, r.bytes);
    const wire: Uint8Array[] = [];
    for (;;) {
      try {
        wire.push(w.L.inferNext(s));
      } catch (e) {
        expect((e as LoaderError).code).toBe(E.STREAM_DONE);
        break;
      }
    }
    expect(wire.length).toBeGreaterThanOrEqual(4);
    const tryOpen = (pieces: Uint8Array[]) => () => {
      const o = r.response.openStream();
      for (const x of pieces) o.push(x);
      o.end();
    };
    expect(tryOpen(wire)).not.toThrow();
    expect(tryOpen([wire[0], ...wire.slice(2)])).toThrow(); // dropped
    expect(tryOpen([wire[0], wire[2], wire[1], ...wire.slice(3)])).toThrow(); // reordered
    expect(tryOpen([wire[0], wire[1], ...wire.slice(1)])).toThrow(); // duplicated
    expect(tryOpen(wire.slice(0, -1))).toThrow(); // cut
    expect(tryOpen([...wire, wire.at(-1)!])).toThrow(); // extended
  });

  it("seeded sampling is reproducible across loaders, single-shot and streamed", async () => {
    const a = new World();
    const b = new World();
    const p = await generateProgram({ maxNewTokens: 24, tokensPerChunk: 5, endToken: 13 });
    const ha = a.ready(p);
    const hb = b.ready(p);
    const texts = new Set<string>();
    for (const seed of [0n, 1n, 42n, 0xffffffffffffffffn, 0x8000000000000000n]) {
      const req = generateRequest("the cat", { maxNewTokens: 24, temperatureMilli: 1500, topK: 0, seed });
      const x = a.ask(ha, p, req);
      const y = b.ask(hb, p, req);
      const z = cat(...b.stream(hb, p, req).chunks.map((c) => c.text));
      expect(x.kind === 2 && y.kind === 2).toBe(true);
      if (x.kind !== 2 || y.kind !== 2) continue;
      expect(hex(y.text)).toBe(hex(x.text));
      expect(hex(z)).toBe(hex(x.text));
      texts.add(hex(x.text));
    }
    expect(texts.size, "different seeds give different samples").toBeGreaterThan(2);
  });

  it("sampling stays within top_k of the accelerator's logits; top_k = 1 is greedy", async () => {
    const w = new World();
    const p = await generateProgram({ maxNewTokens: 30, endToken: 13 });
    const h = w.ready(p);
    const g = p.manifest.generate!;
    const V = g.tokens.length;
    for (const topK of [1, 2, 3]) {
      for (let trial = 0; trial < 4; trial++) {
        const runs = w.acc.runs.length;
        const out = w.ask(h, p, generateRequest("ab", { maxNewTokens: 30, temperatureMilli: 10000, topK }));
        if (out.kind !== 2) throw new Error("kind");
        const ctxs = w.acc.runs.slice(runs).map((r) => int64s(F.decodeTensorList(r.inputs, { secret: false })[0].data));
        // The token chosen at step i is the last of the context of step i+1.
        for (let i = 0; i + 1 < ctxs.length; i++) {
          const logits = fakeLogits(ctxs[i], V);
          const order = [...logits.keys()].sort((x, y) => logits[y] - logits[x]);
          const chosen = ctxs[i + 1].at(-1)!;
          expect(order.slice(0, topK)).toContain(chosen);
        }
        if (topK === 1) expect(hex(out.text)).toBe(hex(greedy(g, ascii("ab"), 30).text));
      }
    }
    expect(argmax(fakeLogits([1], V))).toBeGreaterThanOrEqual(0);
  });

  it("infer-cancel ends a stream; STREAMS_MAX = 16 open streams, a cancelled slot is reusable", async () => {
    const w = new World();
    const p = await generateProgram({ maxNewTokens: 12, tokensPerChunk: 2, endToken: 13 });
    const h = w.ready(p);
    const s = w.L.inferBegin(h, w.seal(p, generateRequest("abc", { maxNewTokens: 12 })).bytes);
    expect(w.L.inferNext(s).length).toBe(32);
    w.L.inferNext(s);
    w.L.inferCancel(s);
    expectCode(() => w.L.inferNext(s), "STREAM_DONE");
    expectCode(() => w.L.inferCancel(s), "STREAM_DONE");
    expectCode(() => w.L.inferNext(0xdeadbeef), "STREAM_DONE");

    const open = Array.from({ length: 16 }, () => w.L.inferBegin(h, w.seal(p, generateRequest("a")).bytes));
    expect(new Set(open).size).toBe(16);
    const extra = w.seal(p, generateRequest("b"));
    expectCode(() => w.L.inferBegin(h, extra.bytes), "CAPACITY");
    w.L.inferCancel(open[5]);
    const s2 = w.L.inferBegin(h, extra.bytes); // the refused request was not consumed
    expect(open).not.toContain(s2);
    const o = extra.response.openStream();
    for (;;) {
      try {
        o.push(w.L.inferNext(s2));
      } catch (e) {
        expect((e as LoaderError).code).toBe(E.STREAM_DONE);
        break;
      }
    }
    o.end();
    for (const x of open) if (x !== open[5]) w.L.inferCancel(x);
  });

  it("a single-shot generate request refused while every stream slot is open can be sent again", async () => {
    const w = new World();
    const p = await generateProgram({ maxNewTokens: 12, tokensPerChunk: 2, endToken: 13 });
    const h = w.ready(p);
    const open = Array.from({ length: 16 }, () => w.L.inferBegin(h, w.seal(p, generateRequest("a")).bytes));
    const r = w.seal(p, generateRequest("ab"));
    const first = outcome(() => w.L.infer(h, r.bytes), true);
    w.L.inferCancel(open[0]);
    // Either infer does not need a stream slot, or (like infer-begin) it refuses before it
    // opens the request, so the client's request is not used up by a refusal it cannot avoid.
    if (first !== "OK") {
      expect(first).toBe("CAPACITY@0x0000");
      expect(outcome(() => w.L.infer(h, r.bytes), true), "the same request once a slot is free").toBe("OK");
    }
    for (const s of open.slice(1)) w.L.inferCancel(s);
  });

  it("a program unloaded mid-stream ends the stream; tensor programs have no streams", async () => {
    const w = new World();
    const p = await generateProgram();
    const h = w.ready(p);
    const s = w.L.inferBegin(h, w.seal(p, generateRequest("abc")).bytes);
    w.L.inferNext(s);
    w.L.unloadProgram(h);
    const e = errorOf(() => w.L.inferNext(s));
    expect(["NO_PROGRAM", "STREAM_DONE"]).toContain(F.describeLoaderError(e.raw).name);
    expectCode(() => w.L.inferNext(s), "STREAM_DONE");
    const t = await tensorProgram();
    const ht = w.ready(t);
    expectCode(() => w.L.inferBegin(ht, w.seal(t, tensorRequest([1])).bytes), "SCHEMA_VIOLATION");
  });

  it("kind mismatch: a generate request to a tensor program and vice versa is SCHEMA_VIOLATION", async () => {
    const w = new World();
    const t = await tensorProgram();
    const g = await generateProgram();
    const ht = w.ready(t);
    const hg = w.ready(g);
    expectCode(() => w.ask(ht, t, generateRequest("abc")), "SCHEMA_VIOLATION", 0x0802);
    expectCode(() => w.ask(hg, g, tensorRequest([1])), "SCHEMA_VIOLATION", 0x0802);
    expectCode(() => w.ask(hg, g, generateRequest("abz")), "SCHEMA_VIOLATION", 0x0803); // 'z' is no token
  });

  it("the vocabulary's tokens need not be UTF-8 and the prompt is not validated as UTF-8", async () => {
    const w = new World();
    const p = await generateProgram();
    const h = w.ready(p);
    const out = w.ask(h, p, generateRequest("\xff\xffab"));
    expect(out.kind).toBe(2);
    expect(VOCAB[13][0]).toBe(0xff);
  });
});

describe("no plaintext stays in loader memory (§2.4)", () => {
  it("weights, request inputs and accelerator outputs are wiped after each call", async () => {
    const w = new World();
    const marker = (tag: string) => sha256(ascii(tag)); // 32 distinctive bytes
    const weightsPlain = cat(marker("weights-1"), rand(2000), marker("weights-2"));
    const weights = await sealStream({ plaintext: weightsPlain });
    const p = await tensorProgram({ weights, inputs: [{ name: "x", dtype: 2, dims: [{ min: 1, max: 64 }] }], outputs: [{ name: "y", dtype: 2, dims: [{ min: 1, max: 64 }] }] });
    const h = w.ready(p);
    const mem = () => Buffer.from(loaderMemory(w.L));
    for (const tag of ["weights-1", "weights-2"]) expect(mem().indexOf(Buffer.from(marker(tag))), tag).toBe(-1);
    const input = cat(marker("input"), marker("input-2"));
    w.acc.onRun = (_p, _in, dflt) => {
      const out = F.decodeTensorList(dflt(), { secret: false });
      out[0].data = cat(marker("output"), marker("output-2"));
      return F.encodeTensorList(out);
    };
    const out = w.ask(h, p, { kind: 1, inputs: [{ name: "x", dtype: 2, dims: [64], data: input }] });
    expect(out.kind === 1 && hex(out.outputs[0].data)).toBe(hex(cat(marker("output"), marker("output-2"))));
    for (const tag of ["input", "input-2", "output", "output-2"]) expect(mem().indexOf(Buffer.from(marker(tag))), tag).toBe(-1);
  });
});

// Keeps the imported names used in type positions honest.
export type _P = Program;
void floatSpec;
