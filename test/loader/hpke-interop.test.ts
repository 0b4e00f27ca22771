// HPKE interop: requests and wrapped keys produced by @hpke/core (an implementation of RFC 9180
// unrelated to veil's) open in the loader, and the loader's responses open with the secrets
// @hpke/core's sender context exports, keyed per RFC 9458 §4.4 with node:crypto.
import { describe, expect, it } from "vitest";
import { CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import {
  F,
  World,
  aeadOpen,
  ascii,
  cat,
  expectCode,
  expectNoTraps,
  fastSeal,
  generateProgram,
  generateRequest,
  hex,
  hpkeSender,
  outcome,
  rand,
  requestHeader,
  responseKeys,
  sealStream,
  sha256,
  tensorProgram,
  tensorRequest,
  u8,
  x25519Public,
} from "./fixture.ts";

expectNoTraps();

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
const EMPTY = new Uint8Array(0);
const bytes = (b: ArrayBuffer) => new Uint8Array(b);

async function hpkeCoreSender(pkR: Uint8Array, info: Uint8Array) {
  const recipientPublicKey = await suite.kem.deserializePublicKey(pkR);
  return suite.createSenderContext({ recipientPublicKey, info });
}

/** §8.1 with @hpke/core: hdr ‖ enc ‖ Seal(aad = "", inner). */
async function sealWithHpkeCore(report: F.ReportBody, digest: Uint8Array, inner: Uint8Array) {
  const hdr = requestHeader(report.keyId);
  const sender = await hpkeCoreSender(report.hpkePublicKey, cat(ascii("veil request v1\0"), hdr, digest));
  const ct = bytes(await sender.seal(inner));
  const enc = bytes(sender.enc);
  return { bytes: cat(hdr, enc, ct), enc, sender };
}

/** §8.3 with node:crypto from the @hpke/core exporter secret. */
async function openResponse(sender: Awaited<ReturnType<typeof hpkeCoreSender>>, enc: Uint8Array, response: Uint8Array): Promise<Uint8Array> {
  const secret = bytes(await sender.export(ascii("veil response v1"), 32));
  const { key, nonce } = responseKeys(secret, enc, response.subarray(0, 32));
  const pt = aeadOpen(key, nonce, EMPTY, response.subarray(32));
  if (!pt) throw new Error("the loader's response does not open with @hpke/core's exported secret");
  return pt;
}

describe("HPKE interop with @hpke/core (RFC 9180, RFC 9458 §4.4)", () => {
  it("the node:crypto sender in the fixture agrees with @hpke/core and with host/formats", async () => {
    // Same ephemeral key in all three: same enc, same ciphertext, same exported secret.
    const skR = rand(32);
    const pkR = x25519Public(skR);
    const info = rand(40);
    const skE = rand(32);
    const a = hpkeSender(pkR, info, skE);
    const { enc, ctx } = F.setupBaseS(pkR, info, { ephemeralPrivateKey: skE });
    expect(hex(a.enc)).toBe(hex(enc));
    const msg = rand(77);
    expect(hex(a.seal(EMPTY, msg))).toBe(hex(ctx.seal(EMPTY, msg)));
    expect(hex(a.export(ascii("veil response v1"), 32))).toBe(hex(ctx.export(ascii("veil response v1"), 32)));
    // @hpke/core as the recipient of the fixture's sender.
    const recipient = await suite.createRecipientContext({
      recipientKey: await suite.kem.importKey("raw", skR.slice().buffer as ArrayBuffer, false),
      enc: a.enc.slice().buffer as ArrayBuffer,
      info,
    });
    const b = hpkeSender(pkR, info, skE);
    expect(hex(bytes(await recipient.open(b.seal(EMPTY, msg))))).toBe(hex(msg));
    expect(hex(bytes(await recipient.export(ascii("veil response v1"), 32)))).toBe(hex(a.export(ascii("veil response v1"), 32)));
  });

  it("(a) a tensor request sealed by @hpke/core opens in the loader; its response opens with @hpke/core's export", async () => {
    const w = new World();
    const p = await tensorProgram();
    const h = w.ready(p);
    for (let i = 0; i < 5; i++) {
      const req = tensorRequest([i, i + 0.5, -i]);
      const inner = F.encodeInnerRequest(req);
      const s = await sealWithHpkeCore(w.rb, p.digest, inner);
      const response = w.L.infer(h, s.bytes);
      const run = w.acc.runs.at(-1)!;
      expect(hex(run.inputs)).toBe(hex(inner.subarray(9))); // the loader opened exactly what was sealed
      const pt = await openResponse(s.sender, s.enc, response);
      const decoded = F.decodeInnerResponse(pt);
      expect(decoded.kind).toBe(1);
      expect(hex(pt)).toBe(hex(cat(ascii("veilRP"), new Uint8Array([0, 1, 1]), run.output!)));
      // And the host client's opener agrees on the same bytes.
      expectCode(() => w.L.infer(h, s.bytes), "REPLAY", 0x0705);
    }
  });

  it("(a) a generate request sealed by @hpke/core: single-shot and streamed responses open", async () => {
    const w = new World();
    const p = await generateProgram({ maxNewTokens: 10, tokensPerChunk: 4, endToken: 13 });
    const h = w.ready(p);
    const inner = F.encodeInnerRequest(generateRequest("the cat", { maxNewTokens: 10 }));
    const s = await sealWithHpkeCore(w.rb, p.digest, inner);
    const single = F.decodeInnerResponse(await openResponse(s.sender, s.enc, w.L.infer(h, s.bytes)));
    expect(single.kind).toBe(2);

    const t = await sealWithHpkeCore(w.rb, p.digest, inner);
    const stream = w.L.inferBegin(h, t.bytes);
    const responseNonce = w.L.inferNext(stream);
    expect(responseNonce.length).toBe(32);
    const secret = bytes(await t.sender.export(ascii("veil stream v1"), 32));
    const { key, nonce } = responseKeys(secret, t.enc, responseNonce);
    const texts: Uint8Array[] = [];
    for (let i = 0; ; i++) {
      const rec = w.L.inferNext(stream);
      const len = new DataView(rec.buffer, rec.byteOffset).getUint32(0);
      expect(len).toBe(rec.length - 4);
      // N XOR (i as 11 bytes ‖ f): try f = 0, then f = 1 (SPEC §8.4).
      let final = false;
      let pt: Uint8Array | undefined;
      for (const f of [0, 1]) {
        const n = nonce.slice();
        new DataView(n.buffer).setUint32(7, new DataView(n.buffer).getUint32(7) ^ i);
        n[11] ^= f;
        pt = aeadOpen(key, n, EMPTY, rec.subarray(4));
        if (pt) {
          final = f === 1;
          break;
        }
      }
      expect(pt, `record ${i} opens`).toBeDefined();
      const chunk = F.decodeStreamChunk(pt!);
      texts.push(chunk.text);
      expect(chunk.stop === 0).toBe(!final);
      if (final) break;
    }
    expectCode(() => w.L.inferNext(stream), "STREAM_DONE");
    expect(single.kind === 2 && hex(single.text)).toBe(hex(cat(...texts)));
  });

  it("(a) @hpke/core requests bound to another program digest, or with aad, do not open (REQUEST_AUTH)", async () => {
    const w = new World();
    const p = await tensorProgram();
    const h = w.ready(p);
    const inner = F.encodeInnerRequest(tensorRequest([1]));
    const other = await sealWithHpkeCore(w.rb, sha256(ascii("another manifest")), inner);
    expectCode(() => w.L.infer(h, other.bytes), "REQUEST_AUTH", 0x0706);
    const hdr = requestHeader(w.rb.keyId);
    const sender = await hpkeCoreSender(w.rb.hpkePublicKey, cat(ascii("veil request v1\0"), hdr, p.digest));
    const withAad = cat(hdr, bytes(sender.enc), bytes(await sender.seal(inner, u8(0))));
    expectCode(() => w.L.infer(h, withAad), "REQUEST_AUTH", 0x0706);
    // The label without its terminating zero byte is another info: it does not open either.
    const sender2 = await hpkeCoreSender(w.rb.hpkePublicKey, cat(ascii("veil request v1"), hdr, p.digest));
    const noZero = cat(hdr, bytes(sender2.enc), bytes(await sender2.seal(inner)));
    expectCode(() => w.L.infer(h, noZero), "REQUEST_AUTH", 0x0706);
  });

  it("(b) a data key wrapped with @hpke/core per §10 unwraps in the loader and opens its weights", async () => {
    const w = new World();
    const weights = await sealStream({ size: 70000 });
    const p = await tensorProgram({ weights });
    for (const report of [w.report, w.L.attest(rand(32))]) {
      const rb = F.decodeReportBody(report);
      const aad = cat(ascii("veilKW"), new Uint8Array([0, 1]), weights.keyId, rb.nonce);
      expect(aad.length).toBe(56);
      const sender = await hpkeCoreSender(rb.hpkePublicKey, cat(ascii("veil key release v1\0"), weights.keyId, sha256(report)));
      const ct = bytes(await sender.seal(weights.dataKey, aad));
      expect(ct.length).toBe(48);
      const wrapped = cat(aad, bytes(sender.enc), ct);
      expect(wrapped.length).toBe(136);
      expect(hex(F.encodeWrappedKey(F.decodeWrappedKey(wrapped)))).toBe(hex(wrapped));
      w.L.unwrapKey(wrapped);
      const h = w.load(p);
      w.feed(h, weights.pieces);
      expect(hex(w.acc.weightsOf(h))).toBe(hex(weights.plaintext));
      w.L.unloadProgram(h);
    }
  });

  it("(b) @hpke/core wraps bound to the wrong report, key id or aad are KEY_UNWRAP", async () => {
    const w = new World();
    const keyId = rand(16);
    const dataKey = rand(32);
    const build = async (o: { reportBytes?: Uint8Array; infoKeyId?: Uint8Array; aadKeyId?: Uint8Array; nonce?: Uint8Array }) => {
      const nonce = o.nonce ?? w.rb.nonce;
      const aad = cat(ascii("veilKW"), new Uint8Array([0, 1]), o.aadKeyId ?? keyId, nonce);
      const sender = await hpkeCoreSender(w.rb.hpkePublicKey, cat(ascii("veil key release v1\0"), o.infoKeyId ?? keyId, sha256(o.reportBytes ?? w.report)));
      return cat(aad, bytes(sender.enc), bytes(await sender.seal(dataKey, aad)));
    };
    w.L.unwrapKey(await build({}));
    const other = w.L.attest(rand(32));
    const cases: [string, Uint8Array][] = [
      // info bound to the report of another nonce, while the wrap names this report's nonce
      ["report of another nonce", await build({ reportBytes: other })],
      // the nonce of the other report in the aad, info bound to this one
      ["aad names another nonce", await build({ nonce: F.decodeReportBody(other).nonce })],
      ["info names another key id", await build({ infoKeyId: rand(16) })],
      ["aad names another key id", await build({ aadKeyId: rand(16) })],
    ];
    for (const [what, wrapped] of cases) expect(outcome(() => w.L.unwrapKey(wrapped), true), what).toBe("KEY_UNWRAP@0x0605");
  });
});
