import { describe, it, expect } from "vitest";
import fc from "fast-check";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { ed25519, x25519 as nobleX25519 } from "@noble/curves/ed25519.js";
import * as nobleEd from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import { loadTestLoader, hex, unhex } from "../helpers/wasm.ts";

nobleEd.hashes.sha512 = sha512;

const SLOW = process.env.SLOW === "1";
const runs = (fast: number, slow: number) => (SLOW ? slow : fast);
const vectors = (name: string) => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), "utf8"));

const w = loadTestLoader();
const x = w.exports;

// Result codes of ed25519_verify (loader-wasm/crypto/ed25519.ts).
const ED = { OK: 0, BAD_S: 1, BAD_A: 2, BAD_R: 3, SMALL_A: 4, SMALL_R: 5, MISMATCH: 6 };
const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const le = (b: Uint8Array) => BigInt("0x" + (hex(b.slice().reverse()) || "0"));
const toLE = (n: bigint) => unhex(n.toString(16).padStart(64, "0")).reverse();

function x25519(scalar: Uint8Array, point: Uint8Array, ms = 0, mp = 0, mo = 0): { rc: number; out: Uint8Array } {
  w.reset();
  const sp = w.put(scalar, ms);
  const pp = w.put(point, mp);
  const op = w.alloc(32, mo);
  w.view(op, 32).fill(0xaa);
  const rc = x.x25519(op, sp, pp);
  return { rc, out: w.get(op, 32) };
}

function x25519Base(scalar: Uint8Array): Uint8Array {
  w.reset();
  const sp = w.put(scalar);
  const op = w.alloc(32);
  x.x25519_base(op, sp);
  return w.get(op, 32);
}

// The API takes a 32-byte key and a 64-byte signature by pointer: a wrong length never
// reaches it (SPEC.md §2.3 rule 1 is enforced by the caller), so this wrapper rejects it.
function verify(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array, ma = 0, mm = 0, msig = 0): number | "length" {
  if (pk.length !== 32 || sig.length !== 64) return "length";
  w.reset();
  const pp = w.put(pk, ma);
  const mp = w.put(msg, mm);
  const sp = w.put(sig, msig);
  return x.ed25519_verify(pp, mp, msg.length, sp);
}

/** Where `needle` occurs in the module's static data (below the heap base). */
function inStatic(needle: Uint8Array): boolean {
  const mem = new Uint8Array(x.memory.buffer, 0, Number(x.heap_base()));
  outer: for (let i = 0; i + needle.length <= mem.length; i++) {
    for (let j = 0; j < needle.length; j++) if (mem[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

const clamp = (k: Uint8Array) => {
  const c = k.slice();
  c[0] &= 248;
  c[31] = (c[31] & 127) | 64;
  return c;
};

describe("X25519 (RFC 7748)", () => {
  const rfc = vectors("rfc7748.json");

  it("RFC 7748 §5.2 scalar multiplication vectors", () => {
    expect(rfc.scalarMult.length).toBe(2);
    for (const t of rfc.scalarMult) {
      const { rc, out } = x25519(unhex(t.scalar), unhex(t.u));
      expect(rc).toBe(0);
      expect(hex(out)).toBe(t.output);
    }
  });

  it(`RFC 7748 §5.2 iterated vectors (1, 1,000${SLOW ? ", 1,000,000" : ""} iterations)`, () => {
    const want = new Map<number, string>(rfc.iterated.results.map((r: any) => [r.iterations, r.k]));
    const last = SLOW ? 1_000_000 : 1000;
    w.reset();
    // k and u live in wasm memory; each step writes the new k over the old u (in-place buffers).
    let kp = w.put(unhex(rfc.iterated.start));
    let up = w.put(unhex(rfc.iterated.start));
    let checked = 0;
    let nonzero = 0;
    for (let i = 1; i <= last; i++) {
      nonzero += x.x25519(up, kp, up); // new k into u's buffer
      [kp, up] = [up, kp];
      if (want.has(i)) {
        expect(hex(w.get(kp, 32))).toBe(want.get(i));
        checked++;
      }
    }
    expect(checked).toBe(SLOW ? 3 : 2);
    expect(nonzero).toBe(0);
  }, SLOW ? 1_800_000 : undefined);

  it("RFC 7748 §6.1 Diffie-Hellman: public keys, keygen and the shared secret", () => {
    const d = rfc.diffieHellman;
    expect(hex(x25519Base(unhex(d.alicePrivate)))).toBe(d.alicePublic);
    expect(hex(x25519Base(unhex(d.bobPrivate)))).toBe(d.bobPublic);
    w.reset();
    const ep = w.put(unhex(d.bobPrivate));
    const skp = w.alloc(32);
    const pkp = w.alloc(32);
    x.x25519_keygen(ep, skp, pkp);
    expect(hex(w.get(skp, 32))).toBe(d.bobPrivate);
    expect(hex(w.get(pkp, 32))).toBe(d.bobPublic);
    for (const [sk, pk] of [[d.alicePrivate, d.bobPublic], [d.bobPrivate, d.alicePublic]]) {
      const { rc, out } = x25519(unhex(sk), unhex(pk));
      expect(rc).toBe(0);
      expect(hex(out)).toBe(d.shared);
    }
  });

  it("Wycheproof x25519_test.json: every case, all-zero shared secrets rejected", () => {
    const file = vectors("wycheproof/x25519_test.json");
    const counts = { valid: 0, acceptedAcceptable: 0, rejectedZero: 0 };
    const perFlag = new Map<string, number>();
    for (const g of file.testGroups) {
      for (const t of g.tests) {
        const { rc, out } = x25519(unhex(t.private), unhex(t.public));
        const zero = /^(00)+$/.test(t.shared);
        expect(zero, `tcId ${t.tcId}`).toBe(t.flags.includes("ZeroSharedSecret"));
        for (const f of t.flags) perFlag.set(`${f}:${t.result}:${zero ? "rejected" : "accepted"}`, (perFlag.get(`${f}:${t.result}:${zero ? "rejected" : "accepted"}`) ?? 0) + 1);
        if (t.result === "valid") {
          expect(zero, `tcId ${t.tcId}`).toBe(false);
          expect(rc, `tcId ${t.tcId}`).toBe(0);
          expect(hex(out), `tcId ${t.tcId}`).toBe(t.shared);
          counts.valid++;
        } else {
          // Policy (SPEC.md §2.2): "acceptable" cases whose shared secret is all zero (low-order
          // public keys) are rejected by the RFC 7748 §6.1 check, with out wiped; every other
          // acceptable case (twist points, u >= p, bit 255 set) gets the RFC 7748 §5 output.
          expect(t.result, `tcId ${t.tcId}`).toBe("acceptable");
          if (zero) {
            expect(rc, `tcId ${t.tcId}`).toBe(1);
            expect(hex(out), `tcId ${t.tcId}`).toBe(t.shared);
            counts.rejectedZero++;
          } else {
            expect(rc, `tcId ${t.tcId}`).toBe(0);
            expect(hex(out), `tcId ${t.tcId}`).toBe(t.shared);
            counts.acceptedAcceptable++;
          }
        }
      }
    }
    expect(counts.valid + counts.acceptedAcceptable + counts.rejectedZero).toBe(file.numberOfTests);
    expect(counts).toEqual({ valid: 264, acceptedAcceptable: 223, rejectedZero: 31 });
    // Per flag (flag:result:outcome): exactly the all-zero shared secrets (ZeroSharedSecret; their
    // keys are LowOrderPublic, SmallPublicKey and some others) are rejected; twist points, u >= p
    // (NonCanonicalPublic) and bit 255 set are computed per RFC 7748 §5 and accepted.
    expect(Object.fromEntries([...perFlag].sort())).toEqual({
      "EdgeCaseMultiplication:acceptable:accepted": 170,
      "EdgeCaseMultiplication:acceptable:rejected": 5,
      "EdgeCaseMultiplication:valid:accepted": 219,
      "EdgeCasePrivateKey:valid:accepted": 7,
      "EdgeCaseShared:acceptable:accepted": 8,
      "EdgeCaseShared:valid:accepted": 6,
      "Ktv:acceptable:accepted": 1,
      "Ktv:valid:accepted": 2,
      "LowOrderPublic:acceptable:rejected": 31,
      "NonCanonicalPublic:acceptable:accepted": 13,
      "NonCanonicalPublic:acceptable:rejected": 6,
      "Normal:valid:accepted": 1,
      "SmallPublicKey:acceptable:rejected": 8,
      "SpecialPublicKey:acceptable:accepted": 38,
      "SpecialPublicKey:acceptable:rejected": 12,
      "SpecialPublicKey:valid:accepted": 29,
      "Twist:acceptable:accepted": 216,
      "Twist:acceptable:rejected": 5,
      "ZeroSharedSecret:acceptable:rejected": 31,
    });
  });

  it("agrees with @noble/curves and node:crypto on random keys, aligned or not, in place", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat(15), fc.nat(15), fc.nat(15), fc.nat(2),
        (sk, point, ms, mp, mo, alias) => {
          let want: string;
          try {
            want = hex(nobleX25519.getSharedSecret(sk, point));
          } catch {
            want = "00".repeat(32); // noble refuses an all-zero result
          }
          w.reset();
          const sp = w.put(sk, ms);
          const pp = w.put(point, mp);
          const op = alias === 0 ? w.alloc(32, mo) : alias === 1 ? sp : pp;
          const rc = x.x25519(op, sp, pp);
          expect(hex(w.get(op, 32))).toBe(want);
          expect(rc).toBe(want === "00".repeat(32) ? 1 : 0);
        },
      ),
      { numRuns: runs(60, 1000) },
    );
  });

  it("public keys agree with node:crypto and @noble/curves", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (sk) => {
        const pk = x25519Base(sk);
        expect(hex(pk)).toBe(hex(nobleX25519.getPublicKey(sk)));
        const jwk = crypto
          .createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), sk]), format: "der", type: "pkcs8" })
          .export({ format: "jwk" });
        expect(hex(pk)).toBe(hex(new Uint8Array(Buffer.from(jwk.x!, "base64url"))));
        // Shared secrets agree with OpenSSL too.
        const peer = crypto.generateKeyPairSync("x25519");
        const peerPub = new Uint8Array(Buffer.from(peer.publicKey.export({ format: "jwk" }).x!, "base64url"));
        const ours = x25519(sk, peerPub);
        const theirs = crypto.diffieHellman({
          privateKey: peer.privateKey,
          publicKey: crypto.createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(pk).toString("base64url") }, format: "jwk" }),
        });
        expect(ours.rc).toBe(0);
        expect(hex(ours.out)).toBe(theirs.toString("hex"));
      }),
      { numRuns: runs(20, 300) },
    );
  });

  it("keygen: the secret key is the entropy, the public key its base multiple, even in place", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(15), (e, m) => {
        w.reset();
        const ep = w.put(e, m);
        const pkp = w.alloc(32, m);
        x.x25519_keygen(ep, ep, pkp);
        expect(hex(w.get(ep, 32))).toBe(hex(e));
        expect(hex(w.get(pkp, 32))).toBe(hex(nobleX25519.getPublicKey(e)));
      }),
      { numRuns: runs(10, 200) },
    );
  });

  it("leaves no copy of the scalar or the result in the module's static memory", () => {
    const sk = new Uint8Array(crypto.randomBytes(32));
    const peer = nobleX25519.getPublicKey(new Uint8Array(crypto.randomBytes(32)));
    const { rc, out } = x25519(sk, peer);
    expect(rc).toBe(0);
    x25519Base(sk);
    for (const secret of [sk, clamp(sk), out]) {
      expect(inStatic(secret)).toBe(false);
      expect(inStatic(secret.subarray(0, 16))).toBe(false);
    }
  });
});

// Small-order points (order dividing 8): the 8 canonical encodings and non-canonical variants.
const SMALL_ORDER_CANONICAL = [
  "0100000000000000000000000000000000000000000000000000000000000000", // identity (0, 1)
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // (0, -1), order 2
  "0000000000000000000000000000000000000000000000000000000000000000", // (sqrt(-1), 0), order 4
  "0000000000000000000000000000000000000000000000000000000000000080", // (-sqrt(-1), 0), order 4
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
];
const SMALL_ORDER_NONCANONICAL = [
  "0100000000000000000000000000000000000000000000000000000000000080", // x = 0 with the sign bit
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // x = 0 with the sign bit
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p (= 0)
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = p, sign bit
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1 (= 1)
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = p + 1, sign bit
];

describe("Ed25519 strict verification (RFC 8032 §5.1.7, SPEC.md §2.3)", () => {
  const rfc = vectors("rfc8032.json");
  const keyPair = (seed = new Uint8Array(crypto.randomBytes(32))) => ({ sk: seed, pk: ed25519.getPublicKey(seed) });

  it("RFC 8032 §7.1 TEST 1, 2, 3, 1024 and SHA(abc)", () => {
    expect(rfc.tests.map((t: any) => t.name)).toEqual(["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]);
    for (const t of rfc.tests) {
      expect(verify(unhex(t.publicKey), unhex(t.message), unhex(t.signature)), t.name).toBe(ED.OK);
    }
  });

  it("every single flipped bit of key, signature and (short) message is rejected", () => {
    const cases = rfc.tests.slice(0, 3).map((t: any) => [unhex(t.publicKey), unhex(t.message), unhex(t.signature)]);
    const { sk, pk } = keyPair();
    const msg = new Uint8Array(crypto.randomBytes(7));
    cases.push([pk, msg, ed25519.sign(msg, sk)]);
    let flips = 0;
    for (const [pk, msg, sig] of cases) {
      for (const which of [0, 1, 2]) {
        const target = [pk, msg, sig][which];
        for (let bit = 0; bit < target.length * 8; bit++) {
          const t = target.slice();
          t[bit >> 3] ^= 1 << (bit & 7);
          const args = [pk, msg, sig];
          args[which] = t;
          expect(verify(args[0], args[1], args[2]), `input ${which} bit ${bit}`).not.toBe(ED.OK);
          flips++;
        }
      }
    }
    expect(flips).toBe(3 * (256 + 512) + 8 * (0 + 1 + 2) + 256 + 512 + 56);
  });

  it("Wycheproof ed25519_test.json: every case; no valid case conflicts with the strict policy", () => {
    const file = vectors("wycheproof/ed25519_test.json");
    const counts = { valid: 0, invalid: 0, wrongLength: 0 };
    for (const g of file.testGroups) {
      for (const t of g.tests) {
        const rc = verify(unhex(g.publicKey.pk), unhex(t.msg), unhex(t.sig));
        if (t.result === "valid") {
          expect(rc, `tcId ${t.tcId} ${t.comment}`).toBe(ED.OK);
          counts.valid++;
        } else {
          expect(t.result).toBe("invalid");
          expect(rc, `tcId ${t.tcId} ${t.comment}`).not.toBe(ED.OK);
          if (rc === "length") counts.wrongLength++;
          else counts.invalid++;
        }
      }
    }
    expect(counts.valid + counts.invalid + counts.wrongLength).toBe(file.numberOfTests);
    expect(counts).toEqual({ valid: 88, invalid: 51, wrongLength: 12 });
  });

  it("accepts signatures by @noble/curves, @noble/ed25519 and node:crypto (messages 0..4 KiB, unaligned)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 4096 }),
        fc.nat(15), fc.nat(15), fc.nat(15),
        (seed, msg, ma, mm, ms) => {
          const { pk } = keyPair(seed);
          expect(verify(pk, msg, ed25519.sign(msg, seed), ma, mm, ms)).toBe(ED.OK);
          expect(hex(nobleEd.getPublicKey(seed))).toBe(hex(pk));
          expect(verify(pk, msg, nobleEd.sign(msg, seed), ms, ma, mm)).toBe(ED.OK);
        },
      ),
      { numRuns: runs(40, 500) },
    );
    for (let i = 0; i < runs(10, 100); i++) {
      const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519");
      const pk = new Uint8Array(Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url"));
      const msg = new Uint8Array(crypto.randomBytes(i * 409));
      expect(verify(pk, msg, new Uint8Array(crypto.sign(null, msg, privateKey)))).toBe(ED.OK);
    }
  });

  it("rejects random and mutated signatures exactly when strict noble (zip215: false) does", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.constantFrom("R", "A", "S", "randomS", "random"),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat(31),
        (seed, msg, what, noise, at) => {
          const { pk: pk0 } = keyPair(seed);
          const sig = ed25519.sign(msg, seed).slice();
          let pk = pk0.slice();
          if (what === "R") sig[at] ^= noise[0] | 1;
          if (what === "A") pk[at] ^= noise[0] | 1;
          if (what === "S") sig[32 + at] ^= noise[0] | 1;
          if (what === "randomS") sig.set(toLE(le(noise) % L), 32);
          if (what === "random") {
            sig.set(noise, 0);
            pk = noise.slice().reverse();
          }
          const ours = verify(pk, msg, sig);
          expect(ours).not.toBe(ED.OK);
          expect(ed25519.verify(sig, msg, pk, { zip215: false })).toBe(false);
        },
      ),
      { numRuns: runs(100, 2000) },
    );
  });

  it("S >= L is rejected: S = L, L + 1, 2^253 - 1, high bits set", () => {
    const { sk, pk } = keyPair();
    const msg = new Uint8Array([1, 2, 3]);
    const sig = ed25519.sign(msg, sk);
    const s = le(sig.subarray(32));
    for (const bad of [L, L + 1n, s + L, 2n ** 253n - 1n, s | (2n ** 255n), s | (2n ** 253n), 2n ** 256n - 1n]) {
      const forged = sig.slice();
      forged.set(toLE(bad), 32);
      expect(verify(pk, msg, forged), bad.toString(16)).toBe(ED.BAD_S);
      expect(ed25519.verify(forged, msg, pk, { zip215: false })).toBe(false);
    }
    // S = L - 1 is in range (and then fails the equation).
    const edge = sig.slice();
    edge.set(toLE(L - 1n), 32);
    expect(verify(pk, msg, edge)).toBe(ED.MISMATCH);
  });

  it("small-order and non-canonical A are rejected", () => {
    for (const h of SMALL_ORDER_CANONICAL) expect(ed25519.Point.fromHex(h).isSmallOrder()).toBe(true);
    expect(new Set(SMALL_ORDER_CANONICAL.map((h) => ed25519.Point.fromHex(h).toHex())).size).toBe(8);
    const { sk } = keyPair();
    const msg = new Uint8Array(crypto.randomBytes(20));
    const sig = ed25519.sign(msg, sk);
    for (const h of SMALL_ORDER_CANONICAL) expect(verify(unhex(h), msg, sig), h).toBe(ED.SMALL_A);
    for (const h of SMALL_ORDER_NONCANONICAL) expect(verify(unhex(h), msg, sig), h).toBe(ED.BAD_A);
    // A point whose y is 2 is not on the curve (2^2 - 1 over 4d + 1 is no square).
    const offCurve = toLE(2n);
    expect(() => ed25519.Point.fromBytes(offCurve)).toThrow();
    expect(verify(offCurve, msg, sig)).toBe(ED.BAD_A);
    // y >= p for an ordinary point: y + p still fits 255 bits only when y < 19.
    for (let y = 0n; y < 19n; y++) {
      const enc = toLE(y + P);
      expect(verify(enc, msg, sig)).toBe(ED.BAD_A);
    }
  });

  it("small-order and non-canonical R are rejected, even where the equation holds", () => {
    const { sk, pk } = keyPair();
    const msg = new Uint8Array(crypto.randomBytes(33));
    const sig = ed25519.sign(msg, sk);
    for (const h of SMALL_ORDER_CANONICAL) {
      const forged = sig.slice();
      forged.set(unhex(h), 0);
      expect(verify(pk, msg, forged), h).toBe(ED.SMALL_R);
    }
    for (const h of SMALL_ORDER_NONCANONICAL) {
      const forged = sig.slice();
      forged.set(unhex(h), 0);
      expect(verify(pk, msg, forged), h).toBe(ED.BAD_R);
    }
    const forged = sig.slice();
    forged.set(toLE(2n), 0); // not on the curve
    expect(verify(pk, msg, forged)).toBe(ED.BAD_R);
    // R = identity with S = k a: [S]B = R + [k]A holds, but R has small order. Strict noble
    // (zip215: false) accepts this one: it checks small order only for A (documented difference).
    const a = ed25519.utils.getExtendedPublicKey(sk).scalar;
    const rBytes = unhex(SMALL_ORDER_CANONICAL[0]);
    const k = le(sha512(new Uint8Array([...rBytes, ...pk, ...msg]))) % L;
    const sig2 = new Uint8Array([...rBytes, ...toLE((k * a) % L)]);
    expect(verify(pk, msg, sig2)).toBe(ED.SMALL_R);
    expect(ed25519.verify(sig2, msg, pk, { zip215: false })).toBe(true);
  });

  it("checks the cofactorless equation: a torsion component in A is not forgiven", () => {
    // A = [a]B + T8 (T8 of order 8) is not of small order; S = r + k a satisfies the cofactored
    // equation (strict noble accepts) but [S]B = R + [k]A fails unless 8 divides k.
    const G = ed25519.Point.BASE;
    const T8 = ed25519.Point.fromHex(SMALL_ORDER_CANONICAL[4]);
    let rejected = 0;
    for (let i = 0; i < 8; i++) {
      const a = le(crypto.randomBytes(32)) % L;
      const r = le(crypto.randomBytes(32)) % L;
      const pk = G.multiply(a).add(T8).toBytes();
      const R = G.multiply(r).toBytes();
      const msg = new Uint8Array(crypto.randomBytes(16));
      const k = le(sha512(new Uint8Array([...R, ...pk, ...msg]))) % L;
      const sig = new Uint8Array([...R, ...toLE((r + k * a) % L)]);
      expect(ed25519.verify(sig, msg, pk, { zip215: false })).toBe(true);
      const want = k % 8n === 0n ? ED.OK : ED.MISMATCH;
      expect(verify(pk, msg, sig)).toBe(want);
      if (want === ED.MISMATCH) rejected++;
    }
    expect(rejected).toBeGreaterThan(0);
  });
});
