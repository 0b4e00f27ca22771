// SHA-256, SHA-512, HMAC-SHA-256/512 and HKDF-SHA-256 of the loader's crypto core:
// FIPS 180-4, RFC 4231 and RFC 5869 known answers, every Wycheproof case, differential
// properties against node:crypto (OpenSSL) and @noble/hashes, aliasing, unaligned
// pointers, chunked updates, single-bit tampering and wiping of every scratch buffer.
// SLOW=1 runs more cases and bigger inputs.
import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { createHash, createHmac, hkdfSync, randomBytes } from "node:crypto";
import { sha256 as nobleSha256, sha512 as nobleSha512 } from "@noble/hashes/sha2.js";
import { hmac as nobleHmac } from "@noble/hashes/hmac.js";
import { expand as nobleExpand, hkdf as nobleHkdf } from "@noble/hashes/hkdf.js";
import { loadTestLoader, hex, unhex } from "../helpers/wasm.ts";

const SLOW = process.env.SLOW === "1";
const runs = (n: number) => (SLOW ? n * 20 : n);
const MiB = 1 << 20;

const w = loadTestLoader();
const x = w.exports;

type Alg = "sha256" | "sha512";
const ALGS: Alg[] = ["sha256", "sha512"];
const DIGEST = { sha256: 32, sha512: 64 } as const;
const BLOCK = { sha256: 64, sha512: 128 } as const;
const NOBLE = { sha256: nobleSha256, sha512: nobleSha512 } as const;
const HKDF_MAX = 255 * 32;
const BAD_LENGTH = 3; // SPEC §12

const vectors = (name: string) => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), "utf8"));
const node = (alg: Alg, m: Uint8Array) => hex(createHash(alg).update(m).digest());
const nodeHmac = (alg: Alg, k: Uint8Array, m: Uint8Array) => hex(createHmac(alg, k).update(m).digest());
const bytes = (n: number) => new Uint8Array(randomBytes(n));

// Lengths around the block, padding and length-field boundaries of both hashes.
const EDGE_LENGTHS = [0, 1, 31, 32, 33, 55, 56, 57, 63, 64, 65, 111, 112, 113, 119, 120, 127, 128, 129];
for (let k = 2; k <= 8; k++) for (const d of [-1, 0, 1]) EDGE_LENGTHS.push(64 * k + d, 128 * k + d);
const lengthArb = (max: number) => fc.oneof(fc.constantFrom(...EDGE_LENGTHS), fc.nat(max));
const misalign = fc.integer({ min: 0, max: 15 });

function digest(alg: Alg, m: Uint8Array, mis = 0): string {
  w.reset();
  const p = w.put(m, mis);
  const out = w.alloc(64, (mis * 7) & 15);
  x[alg](p, m.length, out);
  return hex(w.get(out, DIGEST[alg]));
}

// Incremental hash over the given chunk sizes (the remainder goes in a final update).
function digestChunked(alg: Alg, m: Uint8Array, chunks: number[], mis = 0): string {
  w.reset();
  const ctx = w.alloc(x[`${alg}_ctx_size`](), mis);
  const p = w.put(m, mis);
  const out = w.alloc(64);
  x[`${alg}_init`](ctx);
  let off = 0;
  for (const c of chunks) {
    const n = Math.min(c, m.length - off);
    x[`${alg}_update`](ctx, p + off, n);
    off += n;
  }
  x[`${alg}_update`](ctx, p + off, m.length - off);
  x[`${alg}_final`](ctx, out);
  expect(w.get(ctx, x[`${alg}_ctx_size`]()).every((b) => b === 0)).toBe(true); // final wipes ctx
  return hex(w.get(out, DIGEST[alg]));
}

function hmac(alg: Alg, key: Uint8Array, m: Uint8Array, mis = 0): string {
  w.reset();
  const kp = w.put(key, mis);
  const mp = w.put(m, (mis + 5) & 15);
  const out = w.alloc(64, (mis + 3) & 15);
  x[`hmac_${alg}`](kp, key.length, mp, m.length, out);
  return hex(w.get(out, DIGEST[alg]));
}

function hmacChunked(alg: Alg, key: Uint8Array, m: Uint8Array, chunks: number[]): string {
  w.reset();
  const size = x[`hmac_${alg}_ctx_size`]();
  const ctx = w.alloc(size, 3);
  const kp = w.put(key);
  const mp = w.put(m, 9);
  const out = w.alloc(64);
  x[`hmac_${alg}_init`](ctx, kp, key.length);
  let off = 0;
  for (const c of chunks) {
    const n = Math.min(c, m.length - off);
    x[`hmac_${alg}_update`](ctx, mp + off, n);
    off += n;
  }
  x[`hmac_${alg}_update`](ctx, mp + off, m.length - off);
  x[`hmac_${alg}_final`](ctx, out);
  expect(w.get(ctx, size).every((b) => b === 0)).toBe(true); // final wipes both contexts
  return hex(w.get(out, DIGEST[alg]));
}

const SENTINEL = 0xa5;

// HKDF one-shot. Returns the return code and the output buffer (pre-filled with SENTINEL,
// so a failed call can be checked to have written nothing).
function hkdf(salt: Uint8Array, ikm: Uint8Array, info: Uint8Array, L: number, mis = 0) {
  w.reset();
  const sp = w.put(salt, mis);
  const ip = w.put(ikm, (mis + 1) & 15);
  const np = w.put(info, (mis + 2) & 15);
  const out = w.put(new Uint8Array(L).fill(SENTINEL), (mis + 3) & 15);
  const rc = x.hkdf_sha256(sp, salt.length, ip, ikm.length, np, info.length, out, L);
  return { rc, okm: w.get(out, L) };
}

function expandWasm(prk: Uint8Array, info: Uint8Array, L: number) {
  w.reset();
  const pp = w.put(prk, 1);
  const np = w.put(info, 2);
  const out = w.put(new Uint8Array(L).fill(SENTINEL), 3);
  const rc = x.hkdf_sha256_expand(pp, prk.length, np, info.length, out, L);
  return { rc, okm: w.get(out, L) };
}

// Static scratch (one-shot contexts, W+K schedules, HMAC pads, HKDF blocks) lives below the
// heap base. After any operation it must be exactly as it was at load time.
const staticRegion = () => w.get(0, Number(x.heap_base()));
const pristine = staticRegion();

describe("context sizes", () => {
  it("match the documented layouts", () => {
    expect(x.sha256_ctx_size()).toBe(104);
    expect(x.sha512_ctx_size()).toBe(200);
    expect(x.hmac_sha256_ctx_size()).toBe(208);
    expect(x.hmac_sha512_ctx_size()).toBe(400);
  });
});

describe("FIPS 180-4 known answers", () => {
  const data = vectors("sha2.json");
  const msg = (v: any) => new Uint8Array(Buffer.from(v.message.repeat(v.repeat ?? 1), "latin1"));

  for (const v of data.vectors) {
    for (const alg of ALGS) {
      it(`${alg}: ${v.name}`, () => {
        const m = msg(v);
        expect(digest(alg, m)).toBe(v[alg]);
        expect(digest(alg, m, 7)).toBe(v[alg]);
        // Incremental: one byte at a time for short messages, odd chunks for long ones.
        const chunks = m.length <= 1000 ? Array(m.length).fill(1) : Array(Math.ceil(m.length / 9973)).fill(9973);
        expect(digestChunked(alg, m, chunks)).toBe(v[alg]);
      });
    }
  }
  it("ran every vector", () => expect(data.vectors.length).toBe(5));
});

describe("RFC 4231 HMAC known answers", () => {
  const data = vectors("rfc4231.json");
  for (const v of data.vectors) {
    for (const alg of ALGS) {
      it(`hmac-${alg}: ${v.name}`, () => {
        const want: string = alg === "sha256" ? v.hmacSha256 : v.hmacSha512;
        const key = unhex(v.key);
        const m = unhex(v.data);
        expect(hmac(alg, key, m).slice(0, want.length)).toBe(want);
        expect(hmacChunked(alg, key, m, [1, 2, 3, 5, 8, 13]).slice(0, want.length)).toBe(want);
      });
    }
  }
  it("ran every vector", () => expect(data.vectors.length).toBe(7));
});

describe("RFC 5869 HKDF-SHA-256 known answers", () => {
  const data = vectors("rfc5869.json");
  for (const v of data.vectors) {
    it(v.name, () => {
      const [salt, ikm, info] = [unhex(v.salt), unhex(v.ikm), unhex(v.info)];
      w.reset();
      const sp = w.put(salt);
      const ip = w.put(ikm);
      const prk = w.alloc(32, 5);
      x.hkdf_sha256_extract(sp, salt.length, ip, ikm.length, prk);
      expect(hex(w.get(prk, 32))).toBe(v.prk);
      expect(hex(expandWasm(unhex(v.prk), info, v.L).okm)).toBe(v.okm);
      expect(expandWasm(unhex(v.prk), info, v.L).rc).toBe(0);
      const r = hkdf(salt, ikm, info, v.L, 9);
      expect(r.rc).toBe(0);
      expect(hex(r.okm)).toBe(v.okm);
    });
  }
  it("ran every vector", () => expect(data.vectors.length).toBe(3));
});

describe("Wycheproof", () => {
  // Policy: "valid" must reproduce the tag / OKM exactly; "invalid" must be rejected (a
  // modified tag must not verify; an over-long HKDF output must return nonzero and write
  // nothing). These files have no "acceptable" cases; the count is asserted below.
  for (const [file, alg] of [["hmac_sha256_test.json", "sha256"], ["hmac_sha512_test.json", "sha512"]] as const) {
    it(`${file}: every case`, () => {
      const data = vectors(`wycheproof/${file}`);
      const seen = { valid: 0, invalid: 0, acceptable: 0 } as Record<string, number>;
      for (const g of data.testGroups) {
        const tagLen = g.tagSize / 8;
        for (const t of g.tests) {
          w.reset();
          const key = unhex(t.key);
          const msg = unhex(t.msg);
          const tag = unhex(t.tag);
          expect(tag.length, `tcId ${t.tcId}`).toBe(tagLen);
          const kp = w.put(key);
          const mp = w.put(msg, 3);
          const out = w.alloc(64);
          const tp = w.put(tag, 1);
          x[`hmac_${alg}`](kp, key.length, mp, msg.length, out);
          // Truncated tags (RFC 2104 §5): compare the leftmost tagSize bits, in constant time.
          const ok = x.ct_equal(out, tp, tagLen);
          expect(ok, `tcId ${t.tcId} ${t.comment}`).toBe(t.result === "invalid" ? 0 : 1);
          if (t.result !== "invalid") expect(hex(w.get(out, tagLen))).toBe(t.tag);
          seen[t.result]++;
        }
      }
      expect(seen.valid + seen.invalid + seen.acceptable).toBe(data.numberOfTests);
      expect(seen).toEqual({ valid: 66, invalid: 108, acceptable: 0 });
    });
  }

  it("hkdf_sha256_test.json: every case", () => {
    const data = vectors("wycheproof/hkdf_sha256_test.json");
    const seen = { valid: 0, invalid: 0, acceptable: 0 } as Record<string, number>;
    for (const g of data.testGroups) {
      for (const t of g.tests) {
        const r = hkdf(unhex(t.salt), unhex(t.ikm), unhex(t.info), t.size, t.tcId & 15);
        if (t.result === "invalid") {
          expect(r.rc, `tcId ${t.tcId} ${t.comment}`).toBe(BAD_LENGTH);
          expect(r.okm.every((b) => b === SENTINEL)).toBe(true);
        } else {
          expect(r.rc, `tcId ${t.tcId}`).toBe(0);
          expect(hex(r.okm), `tcId ${t.tcId} ${t.comment}`).toBe(t.okm);
        }
        seen[t.result]++;
      }
    }
    expect(seen.valid + seen.invalid + seen.acceptable).toBe(data.numberOfTests);
    expect(seen).toEqual({ valid: 83, invalid: 3, acceptable: 0 });
  });
});

describe("SHA-2 against node:crypto and @noble/hashes", () => {
  for (const alg of ALGS) {
    it(`${alg}: random messages at block edges and random lengths, unaligned`, () => {
      fc.assert(
        fc.property(lengthArb(SLOW ? 64 << 10 : 4096), misalign, fc.nat(), (len, mis, seed) => {
          const m = bytes(len);
          m[0] ^= seed & 0xff;
          const want = node(alg, m);
          expect(hex(NOBLE[alg](m))).toBe(want);
          expect(digest(alg, m, mis)).toBe(want);
        }),
        { numRuns: runs(300) },
      );
    });

    it(`${alg}: multi-MiB messages`, () => {
      fc.assert(
        fc.property(fc.integer({ min: MiB - 300, max: (SLOW ? 48 : 5) * MiB }), misalign, (len, mis) => {
          const m = bytes(len);
          const want = node(alg, m);
          expect(digest(alg, m, mis)).toBe(want);
        }),
        { numRuns: runs(3) },
      );
      const m = bytes(3 * MiB + 7);
      expect(digest(alg, m)).toBe(hex(NOBLE[alg](m)));
    });

    it(`${alg}: chunked updates equal the one-shot digest`, () => {
      fc.assert(
        fc.property(
          lengthArb(SLOW ? 32 << 10 : 3000),
          fc.array(fc.oneof(fc.nat(2 * BLOCK[alg] + 1), fc.constantFrom(0, 1, BLOCK[alg] - 1, BLOCK[alg])), { maxLength: 40 }),
          misalign,
          (len, chunks, mis) => {
            const m = bytes(len);
            expect(digestChunked(alg, m, chunks, mis)).toBe(node(alg, m));
          },
        ),
        { numRuns: runs(200) },
      );
    });

    it(`${alg}: one-shot with out == in`, () => {
      fc.assert(
        fc.property(lengthArb(1000), misalign, (len, mis) => {
          const m = bytes(Math.max(len, DIGEST[alg]));
          w.reset();
          const p = w.put(m, mis);
          x[alg](p, m.length, p);
          expect(hex(w.get(p, DIGEST[alg]))).toBe(node(alg, m));
          expect(w.get(p + DIGEST[alg], m.length - DIGEST[alg])).toEqual(m.subarray(DIGEST[alg]));
        }),
        { numRuns: runs(100) },
      );
    });
  }

  it("every flipped input bit changes the digest", () => {
    const m = unhex("6162636465666768"); // "abcdefgh"
    for (const alg of ALGS) {
      const ref = digest(alg, m);
      for (let bit = 0; bit < m.length * 8; bit++) {
        const t = m.slice();
        t[bit >> 3] ^= 1 << (bit & 7);
        expect(digest(alg, t)).not.toBe(ref);
      }
    }
  });
});

describe("HMAC against node:crypto and @noble/hashes", () => {
  const keyLen = fc.oneof(fc.constantFrom(0, 1, 31, 32, 63, 64, 65, 127, 128, 129, 200), fc.nat(300));

  for (const alg of ALGS) {
    it(`hmac-${alg}: random keys and messages, unaligned`, () => {
      fc.assert(
        fc.property(keyLen, lengthArb(SLOW ? 16 << 10 : 2000), misalign, (kl, ml, mis) => {
          const key = bytes(kl);
          const m = bytes(ml);
          const want = nodeHmac(alg, key, m);
          expect(hex(nobleHmac(NOBLE[alg], key, m))).toBe(want);
          expect(hmac(alg, key, m, mis)).toBe(want);
        }),
        { numRuns: runs(200) },
      );
    });

    it(`hmac-${alg}: chunked updates equal the one-shot tag`, () => {
      fc.assert(
        fc.property(keyLen, lengthArb(1500), fc.array(fc.nat(300), { maxLength: 12 }), (kl, ml, chunks) => {
          const key = bytes(kl);
          const m = bytes(ml);
          expect(hmacChunked(alg, key, m, chunks)).toBe(nodeHmac(alg, key, m));
        }),
        { numRuns: runs(100) },
      );
    });

    it(`hmac-${alg}: multi-MiB message`, () => {
      const key = bytes(77);
      const m = bytes((SLOW ? 20 : 2) * MiB + 13);
      expect(hmac(alg, key, m, 5)).toBe(nodeHmac(alg, key, m));
    });

    it(`hmac-${alg}: out may alias the key or the message`, () => {
      fc.assert(
        fc.property(fc.integer({ min: 64, max: 300 }), fc.integer({ min: 64, max: 600 }), misalign, (kl, ml, mis) => {
          const key = bytes(kl);
          const m = bytes(ml);
          const want = nodeHmac(alg, key, m);
          w.reset();
          let kp = w.put(key, mis);
          let mp = w.put(m, mis);
          x[`hmac_${alg}`](kp, kl, mp, ml, mp);
          expect(hex(w.get(mp, DIGEST[alg]))).toBe(want);
          w.reset();
          kp = w.put(key, mis);
          mp = w.put(m, mis);
          x[`hmac_${alg}`](kp, kl, mp, ml, kp);
          expect(hex(w.get(kp, DIGEST[alg]))).toBe(want);
        }),
        { numRuns: runs(50) },
      );
    });

    it(`hmac-${alg}: every flipped bit of key, message or tag is rejected`, () => {
      const key = unhex("4a656665"); // RFC 4231 test case 2
      const m = new TextEncoder().encode("what do ya want for nothing?");
      const L = DIGEST[alg];
      const check = (k: Uint8Array, msg: Uint8Array, tag: Uint8Array) => {
        w.reset();
        const out = w.alloc(L);
        const tp = w.put(tag);
        x[`hmac_${alg}`](w.put(k), k.length, w.put(msg), msg.length, out);
        return x.ct_equal(out, tp, L);
      };
      const tag = unhex(nodeHmac(alg, key, m));
      expect(check(key, m, tag)).toBe(1);
      let rejected = 0;
      for (const [which, buf] of [["key", key], ["msg", m], ["tag", tag]] as const) {
        for (let bit = 0; bit < buf.length * 8; bit++) {
          const t = buf.slice();
          t[bit >> 3] ^= 1 << (bit & 7);
          const r = which === "key" ? check(t, m, tag) : which === "msg" ? check(key, t, tag) : check(key, m, t);
          expect(r, `${which} bit ${bit}`).toBe(0);
          rejected++;
        }
      }
      expect(rejected).toBe((key.length + m.length + L) * 8);
    });
  }
});

describe("HKDF-SHA-256 against node:crypto and @noble/hashes", () => {
  const blob = (max: number) => fc.nat(max).map(bytes);

  it("random salt, IKM, info and output lengths up to 255 * HashLen", () => {
    fc.assert(
      fc.property(
        blob(100),
        blob(200),
        blob(300),
        fc.oneof(fc.constantFrom(0, 1, 31, 32, 33, 63, 64, 65, HKDF_MAX - 1, HKDF_MAX), fc.nat(HKDF_MAX)),
        misalign,
        (salt, ikm, info, L, mis) => {
          const want = hex(new Uint8Array(hkdfSync("sha256", ikm, salt, info, L)));
          expect(hex(nobleHkdf(nobleSha256, ikm, salt, info, L))).toBe(want);
          const r = hkdf(salt, ikm, info, L, mis);
          expect(r.rc).toBe(0);
          expect(hex(r.okm)).toBe(want);
        },
      ),
      { numRuns: runs(150) },
    );
  });

  it("outputs longer than 255 * HashLen are rejected and write nothing (RFC 5869 §2.3)", () => {
    for (const L of [HKDF_MAX + 1, HKDF_MAX + 32, 10_000, 1 << 20]) {
      const r = hkdf(bytes(16), bytes(32), bytes(8), L);
      expect(r.rc).toBe(BAD_LENGTH);
      expect(r.okm.every((b) => b === SENTINEL)).toBe(true);
      const e = expandWasm(bytes(32), bytes(8), L);
      expect(e.rc).toBe(BAD_LENGTH);
      expect(e.okm.every((b) => b === SENTINEL)).toBe(true);
    }
    expect(x.hkdf_sha256_expand(0, 32, 0, 0, 0, 0xffffffff)).toBe(BAD_LENGTH);
  });

  it("expand: a PRK shorter than HashLen is rejected; longer PRKs are HMAC keys as given", () => {
    for (let n = 0; n < 32; n++) {
      const e = expandWasm(bytes(n), bytes(5), 40);
      expect(e.rc).toBe(BAD_LENGTH);
      expect(e.okm.every((b) => b === SENTINEL)).toBe(true);
    }
    fc.assert(
      fc.property(fc.integer({ min: 32, max: 200 }), blob(100), fc.nat(1000), (n, info, L) => {
        const prk = bytes(n);
        const e = expandWasm(prk, info, L);
        expect(e.rc).toBe(0);
        expect(hex(e.okm)).toBe(hex(nobleExpand(nobleSha256, prk, info, L)));
      }),
      { numRuns: runs(50) },
    );
  });

  it("out may alias the PRK (expand), the salt or the IKM (one-shot)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 600 }), blob(50), (L, info) => {
        const prk = bytes(32);
        w.reset();
        const buf = w.alloc(Math.max(L, 32), 3);
        w.view(buf, 32).set(prk);
        const np = w.put(info);
        expect(x.hkdf_sha256_expand(buf, 32, np, info.length, buf, L)).toBe(0);
        expect(hex(w.get(buf, L))).toBe(hex(nobleExpand(nobleSha256, prk, info, L)));

        const salt = bytes(40);
        const ikm = bytes(40);
        const want = hex(new Uint8Array(hkdfSync("sha256", ikm, salt, info, L)));
        for (const target of ["salt", "ikm"]) {
          w.reset();
          const sp = w.put(salt.length >= L ? salt : Uint8Array.from([...salt, ...new Uint8Array(L - salt.length)]));
          const ip = w.put(ikm.length >= L ? ikm : Uint8Array.from([...ikm, ...new Uint8Array(L - ikm.length)]));
          const ni = w.put(info);
          const out = target === "salt" ? sp : ip;
          expect(x.hkdf_sha256(sp, salt.length, ip, ikm.length, ni, info.length, out, L)).toBe(0);
          expect(hex(w.get(out, L))).toBe(want);
        }
      }),
      { numRuns: runs(40) },
    );
  });

  it("every flipped bit of salt, IKM or info changes the output", () => {
    const v = vectors("rfc5869.json").vectors[0];
    const parts = [unhex(v.salt), unhex(v.ikm), unhex(v.info)];
    let changed = 0;
    for (let i = 0; i < 3; i++) {
      for (let bit = 0; bit < parts[i].length * 8; bit++) {
        const p = parts.map((b) => b.slice());
        p[i][bit >> 3] ^= 1 << (bit & 7);
        const r = hkdf(p[0], p[1], p[2], v.L);
        expect(r.rc).toBe(0);
        expect(hex(r.okm)).not.toBe(v.okm);
        changed++;
      }
    }
    expect(changed).toBe((13 + 22 + 10) * 8);
  });
});

describe("wiping", () => {
  it("leaves no secret in static scratch after any operation, success or failure", () => {
    const key = bytes(150);
    const m = bytes(1000);
    for (const alg of ALGS) {
      digest(alg, m, 3);
      expect(staticRegion()).toEqual(pristine);
      hmac(alg, key, m);
      hmac(alg, key.subarray(0, 20), m);
      expect(staticRegion()).toEqual(pristine);
      hmacChunked(alg, key, m, [7, 100]);
      expect(staticRegion()).toEqual(pristine);
    }
    expect(hkdf(key.subarray(0, 16), key, m.subarray(0, 30), 1000).rc).toBe(0);
    expect(staticRegion()).toEqual(pristine);
    expect(hkdf(key.subarray(0, 16), key, m.subarray(0, 30), HKDF_MAX + 1).rc).toBe(BAD_LENGTH);
    expect(staticRegion()).toEqual(pristine);
    expect(expandWasm(key.subarray(0, 31), m, 10).rc).toBe(BAD_LENGTH);
    expect(expandWasm(key.subarray(0, 64), m, 100).rc).toBe(0);
    expect(staticRegion()).toEqual(pristine);
    w.reset();
    const prk = w.alloc(32);
    x.hkdf_sha256_extract(w.put(key), 10, w.put(m), 50, prk);
    expect(staticRegion()).toEqual(pristine);
  });
});
