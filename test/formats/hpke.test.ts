import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CipherSuite } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { HkdfSha256 } from "@hpke/core";
import vector from "../vectors/rfc9180-a2.json" with { type: "json" };
import { fromHex, toHex } from "../../host/formats/bytes.ts";
import {
  HPKE_SUITE_ID,
  KEM_SUITE_ID,
  deriveKeyPair,
  generateKeyPair,
  publicKeyOf,
  setupBaseR,
  setupBaseS,
} from "../../host/formats/hpke.ts";
import { isVeilError } from "../../host/formats/errors.ts";

const runs = process.env.SLOW ? 200 : 20;
const suite = () => new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
const ab = (b: Uint8Array) => b.slice().buffer;

describe("HPKE suite identifiers", () => {
  it("are RFC 9180 §4.1 / §5.1 for 0x0020, 0x0001, 0x0003", () => {
    expect(toHex(KEM_SUITE_ID)).toBe("4b454d0020");
    expect(toHex(HPKE_SUITE_ID)).toBe("48504b45002000010003");
  });
});

describe("RFC 9180 A.2.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base)", () => {
  const v = vector;
  it("is the suite and mode we implement", () => {
    expect([v.mode, v.kem_id, v.kdf_id, v.aead_id]).toEqual([0, 32, 1, 3]);
  });

  it("DeriveKeyPair reproduces skEm/pkEm and skRm/pkRm", () => {
    const e = deriveKeyPair(fromHex(v.ikmE));
    const r = deriveKeyPair(fromHex(v.ikmR));
    expect(toHex(e.privateKey)).toBe(v.skEm);
    expect(toHex(e.publicKey)).toBe(v.pkEm);
    expect(toHex(r.privateKey)).toBe(v.skRm);
    expect(toHex(r.publicKey)).toBe(v.pkRm);
  });

  it("SetupBaseS with the injected ephemeral key gives enc and the whole key schedule", () => {
    const { enc, ctx } = setupBaseS(fromHex(v.pkRm), fromHex(v.info), { ephemeralPrivateKey: fromHex(v.skEm), keepSchedule: true });
    expect(toHex(enc)).toBe(v.enc);
    expect(toHex(ctx.schedule!.sharedSecret)).toBe(v.shared_secret);
    expect(toHex(ctx.schedule!.keyScheduleContext)).toBe(v.key_schedule_context);
    expect(toHex(ctx.schedule!.secret)).toBe(v.secret);
  });

  it("sender encryptions at sequence numbers 0, 1, 2, 4, 255, 256 match", () => {
    const { ctx } = setupBaseS(fromHex(v.pkRm), fromHex(v.info), { ephemeralPrivateKey: fromHex(v.skEm) });
    let seq = 0;
    for (const e of v.encryptions) {
      while (seq < e.seq) {
        ctx.seal(new Uint8Array(0), new Uint8Array(0));
        seq++;
      }
      expect(toHex(ctx.seal(fromHex(e.aad), fromHex(e.pt)))).toBe(e.ct);
      seq++;
    }
    expect(ctx.sequence).toBe(257n);
  });

  it("SetupBaseR opens every encryption in order and exports the listed values", () => {
    const ctx = setupBaseR(fromHex(v.enc), fromHex(v.skRm), fromHex(v.info), { keepSchedule: true });
    expect(toHex(ctx.schedule!.sharedSecret)).toBe(v.shared_secret);
    const sender = setupBaseS(fromHex(v.pkRm), fromHex(v.info), { ephemeralPrivateKey: fromHex(v.skEm) }).ctx;
    let seq = 0;
    for (const e of v.encryptions) {
      while (seq < e.seq) {
        expect(ctx.open(new Uint8Array(0), sender.seal(new Uint8Array(0), new Uint8Array(0)))).toEqual(new Uint8Array(0));
        seq++;
      }
      sender.seal(fromHex(e.aad), fromHex(e.pt));
      expect(toHex(ctx.open(fromHex(e.aad), fromHex(e.ct))!)).toBe(e.pt);
      seq++;
    }
    for (const x of v.exports) expect(toHex(ctx.export(fromHex(x.exporter_context), x.L))).toBe(x.exported_value);
  });

  it("a wrong aad, sequence or flipped byte does not open and does not advance", () => {
    const ctx = setupBaseR(fromHex(v.enc), fromHex(v.skRm), fromHex(v.info));
    const e0 = v.encryptions[0];
    const ct = fromHex(e0.ct);
    expect(ctx.open(fromHex(v.encryptions[1].aad), ct)).toBeUndefined();
    for (let i = 0; i < ct.length; i++) {
      const bad = ct.slice();
      bad[i] ^= 0x01;
      expect(ctx.open(fromHex(e0.aad), bad)).toBeUndefined();
    }
    expect(ctx.sequence).toBe(0n);
    expect(toHex(ctx.open(fromHex(e0.aad), ct)!)).toBe(e0.pt);
    expect(ctx.open(fromHex(e0.aad), ct)).toBeUndefined(); // replay at seq 1
  });
});

describe("HPKE interop with @hpke/core", () => {
  it("ours seals, @hpke/core opens; exported secrets agree", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 }), async (pt, aad, info) => {
        const s = suite();
        const kp = generateKeyPair();
        const { enc, ctx } = setupBaseS(kp.publicKey, info);
        const c1 = ctx.seal(aad, pt);
        const c2 = ctx.seal(new Uint8Array(0), pt);
        const recipient = await s.createRecipientContext({
          recipientKey: await s.kem.deserializePrivateKey(ab(kp.privateKey)),
          enc: ab(enc),
          info: ab(info),
        });
        expect(new Uint8Array(await recipient.open(ab(c1), ab(aad)))).toEqual(pt);
        expect(new Uint8Array(await recipient.open(ab(c2)))).toEqual(pt);
        const theirs = new Uint8Array(await recipient.export(ab(aad), 32));
        expect(ctx.export(aad, 32)).toEqual(theirs);
      }),
      { numRuns: runs },
    );
  });

  it("@hpke/core seals, ours opens; exported secrets agree", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 }), async (pt, aad, info) => {
        const s = suite();
        const kp = generateKeyPair();
        const sender = await s.createSenderContext({ recipientPublicKey: await s.kem.deserializePublicKey(ab(kp.publicKey)), info: ab(info) });
        const c1 = new Uint8Array(await sender.seal(ab(pt), ab(aad)));
        const c2 = new Uint8Array(await sender.seal(ab(pt)));
        const ctx = setupBaseR(new Uint8Array(sender.enc), kp.privateKey, info);
        expect(ctx.open(aad, c1)).toEqual(pt);
        expect(ctx.open(new Uint8Array(0), c2)).toEqual(pt);
        expect(ctx.export(info, 45)).toEqual(new Uint8Array(await sender.export(ab(info), 45)));
      }),
      { numRuns: runs },
    );
  });

  it("@hpke/core's DeriveKeyPair agrees with ours", async () => {
    const s = suite();
    const ikm = fromHex(vector.ikmR);
    const theirs = await s.kem.deriveKeyPair(ab(ikm));
    const pub = new Uint8Array(await s.kem.serializePublicKey(theirs.publicKey));
    expect(pub).toEqual(deriveKeyPair(ikm).publicKey);
  });
});

describe("X25519 edge cases (SPEC §2.2)", () => {
  it("rejects low-order public keys (all-zero shared secret) with BAD_KEY", () => {
    const lowOrder = [new Uint8Array(32), Uint8Array.from([1, ...new Uint8Array(31)])];
    for (const pk of lowOrder) {
      expect(() => setupBaseS(pk, new Uint8Array(0))).toThrow(expect.objectContaining({ code: "BAD_KEY" }));
      try {
        setupBaseR(pk, generateKeyPair().privateKey, new Uint8Array(0));
        expect.unreachable();
      } catch (e) {
        expect(isVeilError(e, "BAD_KEY")).toBe(true);
      }
    }
  });

  it("accepts u ≥ p and the top bit set, reduced as RFC 7748 §5 prescribes", () => {
    const kp = generateKeyPair();
    const pk = kp.publicKey.slice();
    const withTop = pk.slice();
    withTop[31] |= 0x80;
    const a = setupBaseS(pk, new Uint8Array(0), { ephemeralPrivateKey: new Uint8Array(32).fill(7) });
    const b = setupBaseS(withTop, new Uint8Array(0), { ephemeralPrivateKey: new Uint8Array(32).fill(7), keepSchedule: true });
    expect(a.enc).toEqual(b.enc);
    // kem_context uses the bytes as given, so the shared secrets differ but both are computed.
    expect(b.ctx.schedule!.sharedSecret.length).toBe(32);
    expect(publicKeyOf(kp.privateKey)).toEqual(pk);
  });
});
