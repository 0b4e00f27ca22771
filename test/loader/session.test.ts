// Sessions (SPEC §8.5) against the loader: the host client (host/formats/session.ts) and an
// independent node:crypto client written here from the SPEC text, tamper and truncation of
// every byte, the anti-replay window at its edges, capacity and LRU eviction, expiry on an
// injected clock, unload, binding to the program, streams, and a fast-check fuzz of the export.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  E,
  F,
  World,
  aeadOpen,
  aeadSeal,
  ascii,
  cat,
  errorOf,
  expectCode,
  expectNoTraps,
  fastSeal,
  flip,
  generateProgram,
  generateRequest,
  greedy,
  hex,
  hkdfExpand,
  hkdfExtract,
  loaderMemory,
  magic,
  nameOf,
  sha256,
  tensorProgram,
  tensorRequest,
  u64,
  u8,
  type Program,
} from "./fixture.ts";

expectNoTraps();

const WINDOW = 128;
const HOUR_NS = 3600n * 1_000_000_000n;

async function tensorWorld(): Promise<{ w: World; p: Program; h: number }> {
  const w = new World();
  const p = await tensorProgram();
  return { w, p, h: w.ready(p) };
}

const open = (w: World, p: Program, h: number): F.ClientSession => {
  const o = F.openSession({ loader: w.report, programDigest: p.digest });
  return o.accept(w.L.sessionOpen(h, o.bytes));
};

const floats = (r: F.InnerResponse): number[] => (r.kind === 1 ? Array.from(new Float32Array(r.outputs[0].data.slice().buffer)) : []);

/** §8.5 from the SPEC text alone: fixture HPKE (node:crypto), HMAC-based HKDF, node AEAD. */
class RawSession {
  prk!: Uint8Array;
  reqKey!: Uint8Array;
  reqNonce!: Uint8Array;
  resKey!: Uint8Array;
  resNonce!: Uint8Array;
  id!: Uint8Array;
  accept!: Uint8Array;
  constructor(readonly w: World) {}
  static open(w: World, p: Program, h: number, inner: Uint8Array = magic("SO")): RawSession {
    const s = new RawSession(w);
    const sealed = fastSeal(w.rb, p.digest, inner);
    s.accept = sealed.open(w.L.sessionOpen(h, sealed.bytes));
    s.id = s.accept.subarray(8, 24);
    const secret = sealed.ctx.export(ascii("veil session v1"), 32);
    s.prk = hkdfExtract(cat(sealed.enc, s.id), secret);
    s.reqKey = hkdfExpand(s.prk, ascii("veil session request key"), 32);
    s.reqNonce = hkdfExpand(s.prk, ascii("veil session request nonce"), 12);
    s.resKey = hkdfExpand(s.prk, ascii("veil session response key"), 32);
    s.resNonce = hkdfExpand(s.prk, ascii("veil session response nonce"), 12);
    return s;
  }
  nonce(base: Uint8Array, seq: bigint): Uint8Array {
    return Uint8Array.from(base, (b, i) => (i < 4 ? b : b ^ u64(seq)[i - 4]));
  }
  header(seq: bigint, id = this.id): Uint8Array {
    return cat(u8(this.w.rb.keyId), magic("SQ"), id, u64(seq));
  }
  seal(seq: bigint, inner: Uint8Array): Uint8Array {
    const header = this.header(seq);
    return cat(header, aeadSeal(this.reqKey, this.nonce(this.reqNonce, seq), header, inner));
  }
  openResponse(seq: bigint, res: Uint8Array): Uint8Array | undefined {
    return aeadOpen(this.resKey, this.nonce(this.resNonce, seq), this.header(seq), res);
  }
}

describe("session-open (§8.5.1)", () => {
  it("the host client opens a session and its requests round-trip, each answer only to its own request", async () => {
    const { w, p, h } = await tensorWorld();
    const s = open(w, p, h);
    expect(s.accept.lifetimeSeconds).toBe(3600);
    expect(s.accept.window).toBe(WINDOW);
    for (let i = 0; i < 5; i++) {
      const r = s.seal(tensorRequest([i, i + 1, 2.5]));
      const res = w.L.infer(h, r.bytes);
      expect(res.length, "no response nonce in front: InnerResponse plus the tag").toBe(F.encodeInnerResponse(r.openResponse(res)).length + 16);
      expect(floats(r.openResponse(res))).toEqual([i, i + 1, 2.5]);
    }
  });

  it("an independent client from the SPEC text interoperates: SessionAccept bytes, keys, request and response", async () => {
    const { w, p, h } = await tensorWorld();
    const s = RawSession.open(w, p, h);
    expect(hex(s.accept.subarray(0, 8))).toBe(hex(magic("SA")));
    expect(s.accept.length).toBe(32);
    expect(new DataView(s.accept.buffer, s.accept.byteOffset).getUint32(24)).toBe(3600);
    expect(new DataView(s.accept.buffer, s.accept.byteOffset).getUint32(28)).toBe(WINDOW);
    const inner = F.encodeInnerRequest(tensorRequest([7, 8]));
    const res = s.openResponse(1n, w.L.infer(h, s.seal(1n, inner)));
    expect(res && floats(F.decodeInnerResponse(res))).toEqual([7, 8]);
    // A response opens only under its own seq's nonce and header.
    const res2 = w.L.infer(h, s.seal(2n, inner));
    expect(s.openResponse(1n, res2)).toBeUndefined();
    expect(s.openResponse(2n, res2)).toBeDefined();
  });

  it("SessionOpen is strict: other kind, version, trailing or short plaintext are refused, and no session opens", async () => {
    const { w, p, h } = await tensorWorld();
    const cases: [Uint8Array, string, number][] = [
      [magic("RQ"), "WRONG_KIND", 0x0b01],
      [magic("SO", 2), "UNSUPPORTED_VERSION", 0x0b01],
      [cat(magic("SO"), u8(0)), "TRAILING_BYTES", 0x0b00],
      [magic("SO").subarray(0, 7), "TRUNCATED", 0x0b01],
      [new Uint8Array(0), "TRUNCATED", 0x0b01],
    ];
    for (const [inner, code, field] of cases) expectCode(() => w.L.sessionOpen(h, fastSeal(w.rb, p.digest, inner).bytes), code as never, field);
  });

  it("follows §8.1 and §8.2: program-bound info, replayed enc, key id, unknown handle, weights incomplete", async () => {
    const { w, p, h } = await tensorWorld();
    const other = await tensorProgram({ name: "other" });
    const sealed = F.openSession({ loader: w.report, programDigest: other.digest });
    expectCode(() => w.L.sessionOpen(h, sealed.bytes), "REQUEST_AUTH");
    const ok = F.openSession({ loader: w.report, programDigest: p.digest });
    ok.accept(w.L.sessionOpen(h, ok.bytes));
    expectCode(() => w.L.sessionOpen(h, ok.bytes), "REPLAY");
    expectCode(() => w.L.sessionOpen(h, flip(ok.bytes, 0)), "KEY_ID");
    expectCode(() => w.L.sessionOpen(h + 16, ok.bytes), "NO_PROGRAM");
    // A program whose weights are not all in cannot have sessions.
    w.giveKey(other.weights);
    const h2 = w.load(other);
    expectCode(() => w.L.sessionOpen(h2, F.openSession({ loader: w.report, programDigest: other.digest }).bytes), "WEIGHTS_INCOMPLETE");
  });

  it("a SessionOpen sent to infer is refused as an inner request (WRONG_KIND), and infer's RQ to session-open likewise", async () => {
    const { w, p, h } = await tensorWorld();
    expectCode(() => w.L.infer(h, F.openSession({ loader: w.report, programDigest: p.digest }).bytes), "WRONG_KIND", 0x0801);
    expectCode(() => w.L.sessionOpen(h, w.seal(p, tensorRequest([1])).bytes), "WRONG_KIND", 0x0b01);
  });

  it("the host decoders are strict too", () => {
    const a = { sessionId: new Uint8Array(16).fill(9), lifetimeSeconds: 3600, window: 128 };
    const bytes = F.encodeSessionAccept(a);
    expect(F.decodeSessionAccept(bytes)).toEqual(a);
    const code = (f: () => unknown) => {
      try {
        f();
        return "OK";
      } catch (e) {
        return (e as F.VeilFormatError).code;
      }
    };
    expect(code(() => F.decodeSessionAccept(cat(bytes, u8(0))))).toBe("TRAILING_BYTES");
    expect(code(() => F.decodeSessionAccept(bytes.subarray(0, 31)))).toBe("TRUNCATED");
    expect(code(() => F.decodeSessionAccept(flip(bytes, 5)))).toBe("WRONG_KIND");
    expect(code(() => F.decodeSessionOpen(cat(magic("SO"), u8(1))))).toBe("TRAILING_BYTES");
    expect(code(() => F.decodeSessionRequest(cat(u8(1), magic("SQ"), new Uint8Array(16), u64(0), new Uint8Array(16))))).toBe("BAD_VALUE");
    expect(code(() => F.decodeSessionRequest(cat(u8(1), magic("SQ"), new Uint8Array(16), u64(1), new Uint8Array(15))))).toBe("BAD_LENGTH");
  });
});

describe("session requests: tamper, truncation, binding (§8.5.2)", () => {
  it("every byte of a session request flipped is refused with the code of the check it breaks, and the session survives", async () => {
    const { w, p, h } = await tensorWorld();
    const s = open(w, p, h);
    const r = s.seal(tensorRequest([1, 2, 3, 4]));
    const want = (i: number): string => {
      if (i === 0) return "KEY_ID";
      if (i <= 8) return "UNSUPPORTED_SUITE"; // not the magic any more: parsed as §8.1, kem_id "ve" is no suite
      if (i <= 24) return "SESSION_UNKNOWN";
      if (i === 32) return "BAD_VALUE"; // seq 1 becomes 0
      if (i <= 31) return "REQUEST_AUTH"; // another seq: the header is the AAD and the nonce changes
      return "REQUEST_AUTH";
    };
    for (let i = 0; i < r.bytes.length; i++) {
      const e = errorOf(() => w.L.infer(h, flip(r.bytes, i, 0x01)));
      expect(`${i}:${nameOf(e.code)}`).toBe(`${i}:${want(i)}`);
    }
    // Bytes 1..2 in particular: "veil" changed to something else (key_id is fine, suite is not).
    expect(r.openResponse(w.L.infer(h, r.bytes)).kind).toBe(1);
  });

  it("truncation at every length is refused with the field it ends in", async () => {
    const { w, p, h } = await tensorWorld();
    const s = open(w, p, h);
    const r = s.seal(tensorRequest([1]));
    for (let n = 0; n < r.bytes.length; n++) {
      const e = errorOf(() => w.L.infer(h, r.bytes.subarray(0, n)));
      const got = `${nameOf(e.code)}@0x${e.fieldId.toString(16)}`;
      if (n < 9) continue; // not a session request: §8.1's framing decides
      const want = n < 25 ? "TRUNCATED@0xa03" : n < 33 ? "TRUNCATED@0xa04" : n < 49 ? "BAD_LENGTH@0xa05" : "REQUEST_AUTH@0xa05";
      expect(`${n}:${got}`).toBe(`${n}:${want}`);
    }
    const extended = cat(r.bytes, u8(0));
    expectCode(() => w.L.infer(h, extended), "REQUEST_AUTH", 0x0a05);
    expect(r.openResponse(w.L.infer(h, r.bytes)).kind).toBe(1);
  });

  it("seq 0 is BAD_VALUE, an unknown session_id SESSION_UNKNOWN", async () => {
    const { w, p, h } = await tensorWorld();
    const s = RawSession.open(w, p, h);
    const inner = F.encodeInnerRequest(tensorRequest([1]));
    expectCode(() => w.L.infer(h, s.seal(0n, inner)), "BAD_VALUE", 0x0a04);
    const wrongId = cat(s.header(1n, new Uint8Array(16).fill(1)), new Uint8Array(32));
    expectCode(() => w.L.infer(h, wrongId), "SESSION_UNKNOWN", 0x0a03);
  });

  it("a session is bound to its program: another loaded program refuses it with REQUEST_AUTH, before any open", async () => {
    const { w, p, h } = await tensorWorld();
    const q = await tensorProgram({ name: "other" });
    const h2 = w.ready(q);
    const s = open(w, p, h);
    const r = s.seal(tensorRequest([1]));
    expectCode(() => w.L.infer(h2, r.bytes), "REQUEST_AUTH", 0x0a03);
    expect(w.acc.runs.filter((x) => x.program === h2)).toHaveLength(0);
    expect(floats(r.openResponse(w.L.infer(h, r.bytes)))).toEqual([1]); // still unused at its own program
  });

  it("a response moved to another request (another seq or session) fails to open", async () => {
    const { w, p, h } = await tensorWorld();
    const s = open(w, p, h);
    const t = open(w, p, h);
    const a = s.seal(tensorRequest([1]));
    const b = s.seal(tensorRequest([2]));
    const c = t.seal(tensorRequest([3]));
    const ra = w.L.infer(h, a.bytes);
    const rb = w.L.infer(h, b.bytes);
    const rc = w.L.infer(h, c.bytes);
    const fails = (f: () => unknown) => expect(f).toThrow(/failed to open/);
    fails(() => a.openResponse(rb));
    fails(() => b.openResponse(ra));
    fails(() => a.openResponse(rc));
    fails(() => a.openResponse(flip(ra, ra.length - 1)));
    expect(floats(a.openResponse(ra))).toEqual([1]);
    expect(floats(c.openResponse(rc))).toEqual([3]);
  });

  it("a session request that opened consumes its seq even if the inner request is refused", async () => {
    const { w, p, h } = await tensorWorld();
    const s = RawSession.open(w, p, h);
    const bad = F.encodeInnerRequest(tensorRequest([1], "not-x"), { validate: false });
    const req = s.seal(1n, bad);
    expectCode(() => w.L.infer(h, req), "SCHEMA_VIOLATION");
    expectCode(() => w.L.infer(h, req), "REPLAY", 0x0a04);
  });
});

describe("anti-replay window (§8.5.3, RFC 4303 §3.4.3)", () => {
  it("duplicates are REPLAY; reordered within the window accepted; edges exactly at the window and one past", async () => {
    const { w, p, h } = await tensorWorld();
    const s = RawSession.open(w, p, h);
    const inner = F.encodeInnerRequest(tensorRequest([1]));
    const send = (seq: bigint) => {
      try {
        const res = w.L.infer(h, s.seal(seq, inner));
        return s.openResponse(seq, res) ? "OK" : "BAD RESPONSE";
      } catch (e) {
        return nameOf(errorOf(() => { throw e; }).code);
      }
    };
    expect(send(5n)).toBe("OK");
    expect(send(5n)).toBe("REPLAY");
    expect(send(3n)).toBe("OK"); // reordered, within the window
    expect(send(4n)).toBe("OK");
    expect(send(3n)).toBe("REPLAY");
    expect(send(1000n)).toBe("OK"); // highest = 1000
    expect(send(1000n - BigInt(WINDOW))).toBe("REPLAY"); // d = 128: too old
    expect(send(1000n - BigInt(WINDOW) + 1n)).toBe("OK"); // d = 127: the oldest still in the window
    expect(send(1000n - BigInt(WINDOW) + 1n)).toBe("REPLAY");
    expect(send(1000n - 64n)).toBe("OK"); // d = 64: the first bit of the high word
    expect(send(1000n - 63n)).toBe("OK"); // d = 63: the last of the low word
    expect(send(1000n - 64n)).toBe("REPLAY");
    expect(send(1000n - 63n)).toBe("REPLAY");
    // Slides of exactly 64 and 128 keep (or drop) the marks they must.
    expect(send(1064n)).toBe("OK");
    expect(send(1000n)).toBe("REPLAY"); // d = 64 after a slide of 64
    expect(send(1000n - 63n)).toBe("REPLAY"); // d = 127, marked before the slide
    expect(send(1001n)).toBe("OK");
    expect(send(1192n)).toBe("OK"); // a slide of 128: everything before is too old
    expect(send(1064n)).toBe("REPLAY");
    expect(send(1065n)).toBe("OK"); // d = 127, never seen
  });

  it("a forged request does not advance or mark the window", async () => {
    const { w, p, h } = await tensorWorld();
    const s = RawSession.open(w, p, h);
    const inner = F.encodeInnerRequest(tensorRequest([1]));
    const forged = flip(s.seal(500n, inner), 40);
    expectCode(() => w.L.infer(h, forged), "REQUEST_AUTH");
    expect(s.openResponse(1n, w.L.infer(h, s.seal(1n, inner)))).toBeDefined(); // 1 is not too old: 500 never counted
    expect(s.openResponse(500n, w.L.infer(h, s.seal(500n, inner)))).toBeDefined();
  });

  it("the window matches a plain model of RFC 4303 §3.4.3 on random sequences", async () => {
    const { w, p, h } = await tensorWorld();
    const inner = F.encodeInnerRequest(tensorRequest([1]));
    await fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 40 })), { minLength: 1, maxLength: 60 }), (seqs) => {
        const s = RawSession.open(w, p, h);
        const seen = new Set<number>();
        let highest = 0;
        for (const q of seqs) {
          const model = seen.has(q) || highest - q >= WINDOW ? "REPLAY" : "OK";
          let got = "OK";
          try {
            w.L.infer(h, s.seal(BigInt(q), inner));
          } catch (e) {
            got = nameOf(errorOf(() => { throw e; }).code);
          }
          expect(`${q}:${got}`).toBe(`${q}:${model}`);
          if (model === "OK") {
            seen.add(q);
            highest = Math.max(highest, q);
          }
        }
      }),
      { numRuns: 40 },
    );
  });

  it("seq 2^64 − 1 is the last: after it only unseen seqs inside the window open", async () => {
    const { w, p, h } = await tensorWorld();
    const s = RawSession.open(w, p, h);
    const inner = F.encodeInnerRequest(tensorRequest([1]));
    const max = 2n ** 64n - 1n;
    expect(s.openResponse(max, w.L.infer(h, s.seal(max, inner)))).toBeDefined();
    expectCode(() => w.L.infer(h, s.seal(max, inner)), "REPLAY");
    // Only the unseen seqs inside the window remain; none above it exists.
    expect(s.openResponse(max - 1n, w.L.infer(h, s.seal(max - 1n, inner)))).toBeDefined();
    expectCode(() => w.L.infer(h, s.seal(max - BigInt(WINDOW), inner)), "REPLAY");
  });
});

describe("lifetime, capacity and unload (§8.5.4)", () => {
  it("a session expires SESSION_LIFETIME after opening on the loader's clock, and is then SESSION_UNKNOWN", async () => {
    const { w, p, h } = await tensorWorld();
    const s = open(w, p, h);
    w.clock.now += HOUR_NS - 1n;
    const r = s.seal(tensorRequest([1]));
    expect(r.openResponse(w.L.infer(h, r.bytes)).kind).toBe(1);
    w.clock.now += 1n;
    expectCode(() => w.L.infer(h, s.seal(tensorRequest([1])).bytes), "SESSION_UNKNOWN", 0x0a03);
    // A clock that reads earlier than the opening also ends it.
    const t = open(w, p, h);
    w.clock.now -= 1n;
    expectCode(() => w.L.infer(h, t.seal(tensorRequest([1])).bytes), "SESSION_UNKNOWN");
  });

  it("SESSIONS_MAX sessions at once; one more evicts the least recently used", async () => {
    const { w, p, h } = await tensorWorld();
    const sessions: F.ClientSession[] = [];
    for (let i = 0; i < F.LIMITS.SESSIONS_MAX; i++) {
      w.clock.now += 1000n;
      sessions.push(open(w, p, h));
    }
    w.clock.now += 1000n;
    // Use session 0 so session 1 becomes the least recently used.
    const r0 = sessions[0].seal(tensorRequest([1]));
    r0.openResponse(w.L.infer(h, r0.bytes));
    w.clock.now += 1000n;
    const extra = open(w, p, h);
    expectCode(() => w.L.infer(h, sessions[1].seal(tensorRequest([1])).bytes), "SESSION_UNKNOWN");
    for (const s of [sessions[0], ...sessions.slice(2), extra]) {
      const r = s.seal(tensorRequest([2]));
      expect(floats(r.openResponse(w.L.infer(h, r.bytes)))).toEqual([2]);
    }
  });

  it("unload-program ends the program's sessions only, and a reloaded program does not inherit them", async () => {
    const { w, p, h } = await tensorWorld();
    const q = await tensorProgram({ name: "other" });
    const h2 = w.ready(q);
    const s = open(w, p, h);
    const t = open(w, q, h2);
    w.L.unloadProgram(h);
    const h3 = w.load(p);
    w.feed(h3, p.weights.pieces);
    expectCode(() => w.L.infer(h3, s.seal(tensorRequest([1])).bytes), "SESSION_UNKNOWN");
    const r = t.seal(tensorRequest([5]));
    expect(floats(r.openResponse(w.L.infer(h2, r.bytes)))).toEqual([5]);
  });

  it("session keys and request plaintext leave no trace in loader memory after unload, expiry and eviction", async () => {
    const { w, p, h } = await tensorWorld();
    const mem = () => Buffer.from(loaderMemory(w.L).buffer); // a view, not a copy
    const s1 = RawSession.open(w, p, h);
    const s2 = RawSession.open(w, p, h);
    const marker = sha256(ascii("session-input-marker"));
    const inner = F.encodeInnerRequest({ kind: 1, inputs: [F.tensorFromArray("x", 1, [8], new Float32Array(marker.buffer.slice(0)))] });
    expect(s1.openResponse(1n, w.L.infer(h, s1.seal(1n, inner)))).toBeDefined();
    expect(mem().indexOf(Buffer.from(marker))).toBe(-1);
    const secrets = (s: RawSession) => [s.prk, s.reqKey, s.resKey, s.reqNonce, s.resNonce, s.id];
    for (const k of secrets(s1)) expect(mem().indexOf(Buffer.from(k)), "a live session's keys are in its slot").toBeGreaterThanOrEqual(0);
    // Expiry wipes s1 when it is next named.
    w.clock.now += HOUR_NS;
    expectCode(() => w.L.infer(h, s1.seal(2n, inner)), "SESSION_UNKNOWN");
    for (const k of secrets(s1)) expect(mem().indexOf(Buffer.from(k)), "expired").toBe(-1);
    w.clock.now -= HOUR_NS;
    // Eviction: s2 is the least recently used once SESSIONS_MAX newer sessions open.
    for (let i = 0; i < F.LIMITS.SESSIONS_MAX; i++) {
      w.clock.now += 1n;
      open(w, p, h);
    }
    for (const k of secrets(s2)) expect(mem().indexOf(Buffer.from(k)), "evicted").toBe(-1);
    const s3 = RawSession.open(w, p, h);
    w.L.unloadProgram(h);
    for (const k of secrets(s3)) expect(mem().indexOf(Buffer.from(k)), "unloaded").toBe(-1);
  });
});

describe("streams in a session (§8.5.2)", () => {
  it("infer-begin with a session request streams records from the first infer-next, keyed per seq; text matches greedy", async () => {
    const w = new World();
    const p = await generateProgram();
    const h = w.ready(p);
    const s = open(w, p, h);
    for (let round = 0; round < 2; round++) {
      const req = s.seal(generateRequest("abc", { maxNewTokens: 5 }));
      const st = w.L.inferBegin(h, req.bytes);
      const opener = req.openStream();
      const chunks: F.StreamChunk[] = [];
      for (;;) {
        let piece: Uint8Array;
        try {
          piece = w.L.inferNext(st);
        } catch (e) {
          expect(nameOf(errorOf(() => { throw e; }).code)).toBe("STREAM_DONE");
          break;
        }
        chunks.push(...opener.push(piece));
      }
      opener.end();
      const want = greedy(p.manifest.generate!, ascii("abc"), 5);
      expect(hex(cat(...chunks.map((c) => c.text)))).toBe(hex(want.text));
      // The same stream does not open under another seq's keys.
      const other = s.seal(generateRequest("abc", { maxNewTokens: 5 }));
      const st2 = w.L.inferBegin(h, other.bytes);
      const first = w.L.inferNext(st2);
      expect(() => req.openStream().push(first)).toThrow(/failed to open/);
      w.L.inferCancel(st2);
    }
    // A single-shot generate request in the session returns the whole text.
    const one = s.seal(generateRequest("abc", { maxNewTokens: 3 }));
    const res = one.openResponse(w.L.infer(h, one.bytes));
    const g3 = greedy(p.manifest.generate!, ascii("abc"), 3);
    expect(res.kind === 2 && [hex(res.text), res.tokens, res.stop]).toEqual([hex(g3.text), g3.ids.length, g3.stop]);
  });
});

describe("fuzz (fast-check): session-open and session requests never trap", () => {
  it("random and mutated inputs to session-open and to infer with the SQ magic return loader errors only", async () => {
    const { w, p, h } = await tensorWorld();
    const s = open(w, p, h);
    const base = s.seal(tensorRequest([1, 2])).bytes;
    const openBase = F.openSession({ loader: w.report, programDigest: p.digest }).bytes;
    await fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.nat({ max: 80 }), (junk, at, mask, cut) => {
        const mutated = flip(base, at % base.length, mask).subarray(0, Math.max(0, base.length - cut));
        for (const [f, arg] of [
          [(b: Uint8Array) => w.L.sessionOpen(h, b), junk],
          [(b: Uint8Array) => w.L.sessionOpen(h, b), flip(openBase, at % openBase.length, mask)],
          [(b: Uint8Array) => w.L.infer(h, b), cat(u8(w.rb.keyId), magic("SQ"), junk)],
          [(b: Uint8Array) => w.L.infer(h, b), mutated],
          [(b: Uint8Array) => w.L.inferBegin(h, b), mutated],
        ] as const) {
          try {
            f(arg);
          } catch (e) {
            errorOf(() => { throw e; });
          }
        }
      }),
      { numRuns: 300 },
    );
    void E;
  });
});
