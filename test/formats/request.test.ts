import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { createDecipheriv, hkdfSync } from "node:crypto";
import { CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { ascii, concat } from "../../host/formats/bytes.ts";
import { generateKeyPair } from "../../host/formats/hpke.ts";
import { decodeInnerResponse, type InnerRequest, type InnerResponse, type StreamChunk } from "../../host/formats/inner.ts";
import { buildReportBody, encodeReportBody } from "../../host/formats/report.ts";
import { ReplayWindow, openRequest, openStreamBytes, sealRequest, type OpenedRequest } from "../../host/formats/request.ts";
import { tensorFromArray } from "../../host/formats/tensor.ts";
import { LIMITS } from "../../host/formats/constants.ts";
import { egressLimitExtension, type Manifest } from "../../host/formats/manifest.ts";
import { sha256 } from "@noble/hashes/sha2.js";
import { codeOf, errOf } from "./helpers.ts";

const runs = process.env.SLOW ? 100 : 15;


const server = generateKeyPair();
const report = encodeReportBody(buildReportBody(server.publicKey, new Uint8Array(32).fill(7), new Uint8Array(32).fill(9)));
const digest = sha256(ascii("the manifest"));
const otherDigest = sha256(ascii("another manifest"));
const tensorReq: InnerRequest = { kind: 1, inputs: [tensorFromArray("x", 1, [3], new Float32Array([1, 2, 3]))] };
const genReq: InnerRequest = { kind: 2, prompt: ascii("Once upon a time"), maxNewTokens: 16, temperatureMilli: 0, topK: 0 };
const open = (bytes: Uint8Array, extra: Partial<Parameters<typeof openRequest>[1]> = {}) =>
  openRequest(bytes, { key: server, programDigest: digest, ...extra });

const chunks: StreamChunk[] = [
  { tokens: 2, text: ascii("Hello"), stop: 0 },
  { tokens: 1, text: ascii(", "), stop: 0 },
  { tokens: 0, text: new Uint8Array(0), stop: 0 },
  { tokens: 3, text: ascii("world!"), stop: 1 },
];
/** A whole stream as [nonce, record…] pieces; `validate: false` lets the sealer emit streams §8.4 forbids. */
function streamPieces(opened: OpenedRequest, cs: StreamChunk[] = chunks, validate = true): Uint8Array[] {
  const s = opened.stream();
  return [s.head, ...cs.map((c, i) => s.record(c, i === cs.length - 1, { validate }))];
}

describe("requests (§8.1)", () => {
  it("a tensor request round-trips through seal and open, and the response back", () => {
    const { bytes, response } = sealRequest({ loader: report, programDigest: digest, request: tensorReq });
    expect(Array.from(bytes.subarray(0, 7))).toEqual([sha256(server.publicKey)[0], 0x00, 0x20, 0x00, 0x01, 0x00, 0x03]);
    const opened = open(bytes);
    expect(opened.request).toEqual(tensorReq);
    const res: InnerResponse = { kind: 1, outputs: [tensorFromArray("y", 1, [1], new Float32Array([6]))] };
    expect(response.openResponse(opened.respond(res))).toEqual(res);
  });

  it("@hpke/core opens our request with the §8.1 info, and our client opens a response keyed as §8.3 says", async () => {
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
    const { bytes, response } = sealRequest({ loader: report, programDigest: digest, request: genReq });
    const info = concat(ascii("veil request v1"), Uint8Array.of(0), bytes.subarray(0, 7), digest);
    const enc = bytes.subarray(7, 39);
    const rc = await suite.createRecipientContext({
      recipientKey: await suite.kem.deserializePrivateKey(server.privateKey.slice().buffer),
      enc: enc.slice().buffer,
      info: info.buffer,
    });
    const inner = new Uint8Array(await rc.open(bytes.subarray(39).slice().buffer));
    expect(inner.subarray(0, 9)).toEqual(concat(ascii("veilRQ"), Uint8Array.of(0, 1, 2)));
    // An independent §8.3: node's HKDF (Extract then Expand) over @hpke/core's exported secret.
    const secret = new Uint8Array(await rc.export(ascii("veil response v1").buffer as ArrayBuffer, 32));
    const opened = open(bytes);
    const resBytes = opened.respond({ kind: 2, text: ascii("The end."), tokens: 3, stop: 1 });
    const rn = resBytes.subarray(0, 32);
    const salt = concat(enc, rn);
    const key = new Uint8Array(hkdfSync("sha256", secret, salt, "key", 32));
    const nonce = new Uint8Array(hkdfSync("sha256", secret, salt, "nonce", 12));
    const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
    d.setAuthTag(resBytes.subarray(resBytes.length - 16));
    const pt = concat(d.update(resBytes.subarray(32, resBytes.length - 16)), d.final());
    expect(decodeInnerResponse(pt)).toEqual({ kind: 2, text: ascii("The end."), tokens: 3, stop: 1 });
    expect(response.openResponse(resBytes)).toEqual({ kind: 2, text: ascii("The end."), tokens: 3, stop: 1 });
  });

  it("is bound to the program digest: routed to another program it is REQUEST_AUTH", () => {
    const { bytes } = sealRequest({ loader: report, programDigest: digest, request: tensorReq });
    expect(codeOf(() => open(bytes, { programDigest: otherDigest }))).toBe("REQUEST_AUTH");
  });

  it("checks key_id first, then the suite", () => {
    const { bytes } = sealRequest({ loader: report, programDigest: digest, request: tensorReq });
    const k = bytes.slice();
    k[0] ^= 1;
    expect(codeOf(() => open(k))).toBe("KEY_ID");
    for (const at of [2, 4, 6]) {
      const s = bytes.slice();
      s[at] ^= 0x10;
      expect(codeOf(() => open(s))).toBe("UNSUPPORTED_SUITE");
    }
    const other = generateKeyPair();
    expect(codeOf(() => openRequest(bytes, { key: other, programDigest: digest }))).toMatch(/KEY_ID|REQUEST_AUTH/);
  });

  it("every single-byte flip of a sealed request is rejected", () => {
    const { bytes } = sealRequest({ loader: report, programDigest: digest, request: genReq });
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes.slice();
      b[i] ^= 1 << (i % 8);
      const code = codeOf(() => open(b));
      expect([i, code]).toEqual([i, i === 0 ? "KEY_ID" : i < 7 ? "UNSUPPORTED_SUITE" : "REQUEST_AUTH"]);
    }
    for (let i = 39; i < bytes.length; i++) expect(codeOf(() => open(bytes.subarray(0, i)))).toMatch(/BAD_LENGTH|REQUEST_AUTH/);
  });

  it("remembers opened encs (§8.2): a replay is REPLAY, within the window", () => {
    const replay = new ReplayWindow(3);
    const sealed = Array.from({ length: 5 }, () => sealRequest({ loader: report, programDigest: digest, request: tensorReq }).bytes);
    open(sealed[0], { replay });
    expect(codeOf(() => open(sealed[0], { replay }))).toBe("REPLAY");
    // A request that fails to open is not remembered.
    const bad = sealed[1].slice();
    bad[bad.length - 1] ^= 1;
    expect(codeOf(() => open(bad, { replay }))).toBe("REQUEST_AUTH");
    expect(codeOf(() => open(sealed[1], { replay }))).toBe("OK");
    open(sealed[2], { replay });
    open(sealed[3], { replay });
    expect(codeOf(() => open(sealed[0], { replay }))).toBe("OK"); // fell out of a window of 3
    expect(codeOf(() => open(sealed[3], { replay }))).toBe("REPLAY");
  });

  it("checks the inner request against the program when given one", () => {
    const program = { mode: 2, generate: { maxNewTokens: 4, tokens: [ascii("a"), ascii("b")] } } as never;
    const { bytes } = sealRequest({ loader: report, programDigest: digest, request: genReq });
    expect(codeOf(() => open(bytes, { program }))).toBe("BAD_VALUE");
    const t = sealRequest({ loader: report, programDigest: digest, request: tensorReq }).bytes;
    expect(codeOf(() => open(t, { program }))).toBe("SCHEMA_VIOLATION");
  });

  it("is deterministic given the ephemeral key and response nonce", () => {
    const eph = new Uint8Array(32).fill(0x42);
    const a = sealRequest({ loader: report, programDigest: digest, request: genReq, ephemeralPrivateKey: eph });
    const b = sealRequest({ loader: report, programDigest: digest, request: genReq, ephemeralPrivateKey: eph });
    expect(a.bytes).toEqual(b.bytes);
    const rn = new Uint8Array(32).fill(5);
    const res: InnerResponse = { kind: 2, text: ascii("x"), tokens: 1, stop: 2 };
    expect(open(a.bytes).respond(res, rn)).toEqual(open(b.bytes).respond(res, rn));
  });
});

describe("egress limit (§5.5) on the reference server", () => {
  const program = (limit: number) => ({ mode: 2, generate: { maxNewTokens: 64, tokens: [ascii("a"), ascii("b")] }, policy: { version: 1, extensions: [egressLimitExtension(limit)] } }) as unknown as Manifest;

  it("an InnerResponse whose whole plaintext exceeds the limit is EGRESS_LIMIT", () => {
    // kind 2 with text of n bytes is 18 + n bytes of plaintext.
    const res = (n: number): InnerResponse => ({ kind: 2, text: new Uint8Array(n), tokens: 1, stop: 1 });
    const { bytes, response } = sealRequest({ loader: report, programDigest: digest, request: genReq });
    const opened = open(bytes, { program: program(100) });
    expect(response.openResponse(opened.respond(res(82)))).toEqual(res(82));
    expect(errOf(() => opened.respond(res(83)))).toMatchObject({ code: "EGRESS_LIMIT", number: 53 });
    // Without a program there is no egress limit, only RESPONSE_MAX.
    const free = open(sealRequest({ loader: report, programDigest: digest, request: genReq }).bytes);
    expect(codeOf(() => free.respond(res(83)))).toBe("OK");
    expect(codeOf(() => free.respond(res(LIMITS.RESPONSE_MAX - 17)))).toBe("TOO_LARGE");
  });

  it("a stream whose chunk plaintexts sum past the limit is EGRESS_LIMIT, counting whole chunks", () => {
    const { bytes, response } = sealRequest({ loader: report, programDigest: digest, request: genReq });
    const s = open(bytes, { program: program(17 * 3 + 10) }).stream();
    const out = [s.head, s.record({ tokens: 1, text: ascii("abcde"), stop: 0 }, false), s.record({ tokens: 1, text: ascii("fghij"), stop: 0 }, false)];
    // 17 + 5, 17 + 5: 44 of 61 bytes used; a third chunk of 17 + 1 would make 62.
    expect(errOf(() => s.record({ tokens: 1, text: ascii("k"), stop: 1 }, true))).toMatchObject({ code: "EGRESS_LIMIT", field: "stream.record[2]" });
    expect(codeOf(() => s.record({ tokens: 0, text: ascii(""), stop: 1 }, true))).toBe("STREAM_DONE");
    // Exactly at the limit is fine.
    const t = open(sealRequest({ loader: report, programDigest: digest, request: genReq }).bytes, { program: program(17 * 3 + 10) }).stream();
    t.record({ tokens: 1, text: ascii("abcde"), stop: 0 }, false);
    t.record({ tokens: 1, text: ascii("fghij"), stop: 0 }, false);
    expect(codeOf(() => t.record({ tokens: 0, text: new Uint8Array(0), stop: 1 }, true))).toBe("OK");
    // The client cannot tell the stream ended early except by its missing final chunk.
    const c = response.openStream();
    expect(c.push(concat(...out))).toHaveLength(2);
    expect(codeOf(() => c.end())).toBe("TRUNCATED");
  });
});

describe("single-shot responses (§8.3)", () => {
  it("every single-byte flip and every truncation is rejected", () => {
    const { bytes, response } = sealRequest({ loader: report, programDigest: digest, request: genReq });
    const res = open(bytes).respond({ kind: 2, text: ascii("ok"), tokens: 1, stop: 1 });
    for (let i = 0; i < res.length; i++) {
      const b = res.slice();
      b[i] ^= 0x80;
      expect(codeOf(() => response.openResponse(b))).toBe("RESPONSE_AUTH");
    }
    const b = res.slice();
    b[40] ^= 1;
    // §12: RESPONSE_AUTH is code 66, client only.
    expect(errOf(() => response.openResponse(b))).toMatchObject({ code: "RESPONSE_AUTH", number: 66, loaderCode: 66 });
    for (let i = 0; i < res.length; i++) expect(codeOf(() => response.openResponse(res.subarray(0, i)))).toMatch(/TRUNCATED|RESPONSE_AUTH/);
    expect(codeOf(() => response.openResponse(concat(res, Uint8Array.of(0))))).toBe("RESPONSE_AUTH");
  });

  it("a response to another request does not open", () => {
    const a = sealRequest({ loader: report, programDigest: digest, request: genReq });
    const b = sealRequest({ loader: report, programDigest: digest, request: genReq });
    const res = open(b.bytes).respond({ kind: 2, text: ascii("ok"), tokens: 1, stop: 1 });
    expect(codeOf(() => a.response.openResponse(res))).toBe("RESPONSE_AUTH");
  });
});

describe("streamed responses (§8.4)", () => {
  const setup = () => {
    const { bytes, response } = sealRequest({ loader: report, programDigest: digest, request: genReq });
    return { response, opened: open(bytes) };
  };

  it("opens a stream fed in any split", () => {
    const { response, opened } = setup();
    const whole = concat(...streamPieces(opened));
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: whole.length - 1 }), { maxLength: 12 }), (cuts) => {
        const s = response.openStream();
        const got: StreamChunk[] = [];
        const points = [0, ...cuts.sort((x, y) => x - y), whole.length];
        for (let i = 1; i < points.length; i++) got.push(...s.push(whole.subarray(points[i - 1], points[i])));
        s.end();
        expect(got).toEqual(chunks);
        expect(s.done).toBe(true);
      }),
      { numRuns: runs },
    );
  });

  it("detects a dropped, reordered or duplicated chunk", () => {
    const { response, opened } = setup();
    const [head, ...recs] = streamPieces(opened);
    const variants = {
      dropped: [head, recs[0], recs[2], recs[3]],
      droppedFirst: [head, recs[1], recs[2], recs[3]],
      reordered: [head, recs[1], recs[0], recs[2], recs[3]],
      duplicated: [head, recs[0], recs[0], recs[1], recs[2], recs[3]],
    };
    for (const [name, pieces] of Object.entries(variants)) expect([name, codeOf(() => openStreamBytes(response, concat(...pieces)))]).toEqual([name, "RESPONSE_AUTH"]);
  });

  it("detects a cut stream (final chunk missing, or cut inside a record)", () => {
    const { response, opened } = setup();
    const pieces = streamPieces(opened);
    expect(codeOf(() => openStreamBytes(response, concat(...pieces.slice(0, -1))))).toBe("TRUNCATED");
    const whole = concat(...pieces);
    for (const cut of [0, 10, 32, 35, whole.length - 1]) expect(codeOf(() => openStreamBytes(response, whole.subarray(0, cut)))).toBe("TRUNCATED");
  });

  it("rejects any byte after the final record", () => {
    const { response, opened } = setup();
    const pieces = streamPieces(opened);
    expect(codeOf(() => openStreamBytes(response, concat(...pieces, Uint8Array.of(0))))).toBe("TRAILING_BYTES");
    expect(codeOf(() => openStreamBytes(response, concat(...pieces, pieces[pieces.length - 1])))).toBe("TRAILING_BYTES");
    const s = response.openStream();
    s.push(concat(...pieces));
    expect(codeOf(() => s.push(Uint8Array.of(1)))).toBe("TRAILING_BYTES");
    expect(codeOf(() => s.end())).toBe("TRAILING_BYTES"); // the opener stays failed
  });

  it("rejects flipped bytes anywhere and out-of-range record lengths", () => {
    const { response, opened } = setup();
    const whole = concat(...streamPieces(opened));
    for (let i = 0; i < whole.length; i++) {
      const b = whole.slice();
      b[i] ^= 0x04;
      expect([i, codeOf(() => openStreamBytes(response, b))]).not.toEqual([i, "OK"]);
    }
    const tiny = concat(whole.subarray(0, 32), Uint8Array.of(0, 0, 0, 16), new Uint8Array(16));
    expect(codeOf(() => openStreamBytes(response, tiny))).toBe("BAD_LENGTH");
    const huge = concat(whole.subarray(0, 32), Uint8Array.of(0x01, 0, 0, 1));
    expect(codeOf(() => response.openStream().push(huge))).toBe("BAD_LENGTH");
  });

  it("sealed_chunk<33..2^24> (§8.4): a record shorter than an empty chunk and its tag is BAD_LENGTH", () => {
    const { response, opened } = setup();
    const [head, ...recs] = streamPieces(opened, [{ tokens: 0, text: new Uint8Array(0), stop: 1 }]);
    // The smallest real record: a StreamChunk with empty text (17 bytes) plus the tag.
    expect(Array.from(recs[0].subarray(0, 4))).toEqual([0, 0, 0, 33]);
    expect(openStreamBytes(response, concat(head, ...recs))).toEqual([{ tokens: 0, text: new Uint8Array(0), stop: 1 }]);
    const withLength = (n: number) => concat(head, Uint8Array.of(0, 0, 0, n), new Uint8Array(n));
    expect(codeOf(() => openStreamBytes(setup().response, withLength(32)))).toBe("BAD_LENGTH");
    expect(codeOf(() => openStreamBytes(setup().response, withLength(17)))).toBe("BAD_LENGTH");
    const r = setup();
    const h = streamPieces(r.opened, [{ tokens: 0, text: new Uint8Array(0), stop: 1 }])[0];
    expect(codeOf(() => openStreamBytes(r.response, concat(h, Uint8Array.of(0, 0, 0, 33), new Uint8Array(33))))).toBe("RESPONSE_AUTH");
    const top = concat(h, Uint8Array.of(0x01, 0, 0, 0));
    expect(codeOf(() => r.response.openStream().push(top))).toBe("OK"); // 2^24 is a valid length: waits for the bytes
  });

  it("enforces stop values on the client: 0 before the final chunk, 1 or 2 in it (BAD_VALUE)", () => {
    const a = setup();
    const badFinal = streamPieces(a.opened, [{ tokens: 1, text: ascii("x"), stop: 0 }], false);
    expect(errOf(() => openStreamBytes(a.response, concat(...badFinal)))).toMatchObject({ code: "BAD_VALUE", field: "stream.record[0].stop" });
    const b = setup();
    const badMid = streamPieces(b.opened, [{ tokens: 1, text: ascii("x"), stop: 2 }, { tokens: 0, text: ascii(""), stop: 1 }], false);
    expect(errOf(() => openStreamBytes(b.response, concat(...badMid)))).toMatchObject({ code: "BAD_VALUE", field: "stream.record[0].stop" });
    const c = setup();
    const badLater = streamPieces(c.opened, [{ tokens: 1, text: ascii("x"), stop: 0 }, { tokens: 1, text: ascii("y"), stop: 1 }, { tokens: 0, text: ascii(""), stop: 2 }], false);
    expect(errOf(() => openStreamBytes(c.response, concat(...badLater)))).toMatchObject({ code: "BAD_VALUE", field: "stream.record[1].stop" });
    for (const stop of [1, 2] as const) {
      const d = setup();
      expect(openStreamBytes(d.response, concat(...streamPieces(d.opened, [{ tokens: 1, text: ascii("x"), stop: 0 }, { tokens: 0, text: ascii(""), stop }])))).toHaveLength(2);
    }
  });

  it("the reference sealer refuses a stop that does not match the final flag", () => {
    const { opened } = setup();
    const s = opened.stream();
    expect(errOf(() => s.record({ tokens: 1, text: ascii("x"), stop: 1 }, false))).toMatchObject({ code: "BAD_VALUE", field: "stream.record[0].stop" });
    expect(errOf(() => s.record({ tokens: 1, text: ascii("x"), stop: 0 }, true))).toMatchObject({ code: "BAD_VALUE", field: "stream.record[0].stop" });
    // Refusals seal nothing: chunk 0 is still next.
    expect(s.record({ tokens: 1, text: ascii("x"), stop: 0 }, false).length).toBe(4 + 18 + 16);
  });

  it("RESPONSE_MAX bounds the sum of whole StreamChunk plaintexts, not only their text (§13)", () => {
    // Two chunks carry 17 bytes each around their text: texts summing to RESPONSE_MAX − 34 fit exactly.
    const half = (LIMITS.RESPONSE_MAX - 34) / 2;
    const fits: StreamChunk[] = [
      { tokens: 1, text: new Uint8Array(half), stop: 0 },
      { tokens: 1, text: new Uint8Array(half), stop: 2 },
    ];
    const a = setup();
    const got = openStreamBytes(a.response, concat(...streamPieces(a.opened, fits)));
    expect(got.map((c) => c.text.length)).toEqual([half, half]);
    // One more text byte: the texts are still far below RESPONSE_MAX, the plaintexts are not.
    const over: StreamChunk[] = [fits[0], { ...fits[1], text: new Uint8Array(half + 1) }];
    const b = setup();
    expect(errOf(() => openStreamBytes(b.response, concat(...streamPieces(b.opened, over, false))))).toMatchObject({ code: "TOO_LARGE", field: "stream.record[1]" });
    // The reference sealer refuses to produce it, and the stream is over.
    const s = setup().opened.stream();
    s.record(over[0], false);
    expect(errOf(() => s.record(over[1], true))).toMatchObject({ code: "TOO_LARGE", field: "stream.record[1]" });
    expect(codeOf(() => s.record({ tokens: 0, text: ascii(""), stop: 1 }, true))).toBe("STREAM_DONE");
  });

  it("a stream sealer refuses chunks after the final one (STREAM_DONE)", () => {
    const { opened } = setup();
    const s = opened.stream();
    s.record({ tokens: 0, text: ascii(""), stop: 1 }, true);
    expect(codeOf(() => s.record({ tokens: 0, text: ascii(""), stop: 1 }, true))).toBe("STREAM_DONE");
  });

  it("a stream is not a single-shot response and vice versa", () => {
    const { response, opened } = setup();
    const single = opened.respond({ kind: 2, text: ascii("hi"), tokens: 1, stop: 1 }, new Uint8Array(32));
    expect(codeOf(() => openStreamBytes(response, single))).toMatch(/RESPONSE_AUTH|BAD_LENGTH|TRUNCATED/);
    const stream = concat(...streamPieces(opened));
    expect(codeOf(() => response.openResponse(stream))).toBe("RESPONSE_AUTH");
  });
});
