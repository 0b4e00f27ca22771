// ChaCha20, Poly1305 and ChaCha20-Poly1305 (RFC 8439) of the trusted loader: RFC 8439
// examples, every Wycheproof case, differential properties against node:crypto and
// @noble/ciphers, counter limit, tampering, failure hygiene and scratch wiping.
import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { createCipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { chacha20 as nobleChacha20, chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { poly1305 as noblePoly1305 } from "@noble/ciphers/_poly1305.js";
import { loadTestLoader, hex, unhex } from "../helpers/wasm.ts";

const SLOW = process.env.SLOW === "1";
const w = loadTestLoader();
const x = w.exports;
const json = (name: string) => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), "utf8"));
const rfc = json("rfc8439.json");
const wycheproof = json("wycheproof/chacha20_poly1305_test.json");

// Static memory (below the heap base, where the scratch buffers live) must be exactly as
// loaded after our calls: every scratch buffer that held a secret was wiped.
const staticAtLoad = new Uint8Array(x.memory.buffer, 0, Number(x.heap_base())).slice();
function expectScratchWiped(): void {
  const now = new Uint8Array(x.memory.buffer, 0, staticAtLoad.length);
  expect(Buffer.compare(now, staticAtLoad)).toBe(0);
}

function seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, msg: Uint8Array, mis = 0): Uint8Array {
  w.reset();
  const pk = w.put(key), pn = w.put(nonce), pa = w.put(aad, mis);
  const ps = w.put(msg, (mis * 3) & 15), pd = w.alloc(msg.length + 16, (mis * 7) & 15);
  x.aead_seal(pk, pn, pa, aad.length, ps, msg.length, pd);
  return w.get(pd, msg.length + 16);
}

// Opens ct‖tag into a zeroed separate buffer, or in place; returns the code and dst bytes.
function open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ctTag: Uint8Array, inPlace = false, mis = 0) {
  w.reset();
  const pk = w.put(key), pn = w.put(nonce), pa = w.put(aad, mis), pc = w.put(ctTag, (mis * 5) & 15);
  const len = Math.max(ctTag.length - 16, 0);
  const pd = inPlace ? pc : w.alloc(len, (mis * 11) & 15);
  if (!inPlace) w.view(pd, len).fill(0);
  const code = x.aead_open(pk, pn, pa, aad.length, pc, ctTag.length, pd);
  return { code, dst: w.get(pd, len), buf: w.get(pc, ctTag.length) };
}

function chacha(key: Uint8Array, nonce: Uint8Array, counter: number, msg: Uint8Array, inPlace = false, mis = 0) {
  w.reset();
  const pk = w.put(key), pn = w.put(nonce), ps = w.put(msg, mis);
  const pd = inPlace ? ps : w.alloc(msg.length, (mis * 7) & 15);
  const code = x.chacha20(pk, pn, counter >>> 0, ps, pd, msg.length);
  return { code, out: w.get(pd, msg.length) };
}

function mac(key: Uint8Array, msg: Uint8Array, mis = 0): Uint8Array {
  w.reset();
  const pk = w.put(key), pm = w.put(msg, mis), pt = w.alloc(16);
  x.poly1305(pk, pm, msg.length, pt);
  return w.get(pt, 16);
}

function block(key: Uint8Array, nonce: Uint8Array, counter: number): Uint8Array {
  w.reset();
  const pk = w.put(key), pn = w.put(nonce), po = w.alloc(64);
  x.chacha20_block(pk, pn, counter >>> 0, po);
  return w.get(po, 64);
}

const nodeSeal = (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, msg: Uint8Array) => {
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: msg.length });
  return new Uint8Array(Buffer.concat([c.update(msg), c.final(), c.getAuthTag()]));
};
// node:crypto's chacha20 takes counter‖nonce as a 16-byte IV.
const nodeChacha = (key: Uint8Array, nonce: Uint8Array, counter: number, msg: Uint8Array) => {
  const iv = Buffer.alloc(16);
  iv.writeUInt32LE(counter >>> 0);
  iv.set(nonce, 4);
  const c = createCipheriv("chacha20", key, iv);
  return new Uint8Array(Buffer.concat([c.update(msg), c.final()]));
};
const words = (b: Uint8Array) => Array.from(new Uint32Array(b.slice().buffer));
const wordHex = (ws: number[]) => ws.map((v) => (v >>> 0).toString(16).padStart(8, "0"));

// Lengths with extra weight at block (16/64), group (256) and chunk (64 KiB, 1 MiB) edges.
const edgeLengths = [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257, 511, 512, 513, 767, 768, 769, 1023, 1024, 1025];
const bigEdges = [65535, 65536, 65537, 65536 + 255, 65536 + 256];
const hugeEdges = [(1 << 20) - 1, 1 << 20, (1 << 20) + 1, (1 << 20) + 257];
const msgLength = fc.oneof(
  { arbitrary: fc.constantFrom(...edgeLengths), weight: 4 },
  { arbitrary: fc.integer({ min: 0, max: 4096 }), weight: 4 },
  { arbitrary: fc.constantFrom(...bigEdges), weight: 1 },
  { arbitrary: fc.constantFrom(...hugeEdges), weight: SLOW ? 2 : 1 },
);
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

describe("RFC 8439 examples (test/vectors/rfc8439.json)", () => {
  it("quarter round examples §2.1.1 and §2.2.1 are consistent (data self-check)", () => {
    // The kernel runs quarter rounds four lanes at a time and exposes none alone; its quarter
    // round is checked through §2.3.2's state after 20 rounds below. This pins the data.
    const rotl = (v: number, k: number) => ((v << k) | (v >>> (32 - k))) >>> 0;
    const qr = (s: number[], a: number, b: number, c: number, d: number) => {
      s[a] = (s[a] + s[b]) >>> 0; s[d] = rotl(s[d] ^ s[a], 16);
      s[c] = (s[c] + s[d]) >>> 0; s[b] = rotl(s[b] ^ s[c], 12);
      s[a] = (s[a] + s[b]) >>> 0; s[d] = rotl(s[d] ^ s[a], 8);
      s[c] = (s[c] + s[d]) >>> 0; s[b] = rotl(s[b] ^ s[c], 7);
    };
    const [t] = rfc.quarterRound;
    const s = ["a", "b", "c", "d"].map((k) => parseInt(t.in[k], 16));
    qr(s, 0, 1, 2, 3);
    expect(wordHex(s)).toEqual(["a", "b", "c", "d"].map((k) => t.out[k]));
    const [u] = rfc.quarterRoundOnState;
    const st = u.state.map((v: string) => parseInt(v, 16));
    qr(st, ...(u.indices as [number, number, number, number]));
    expect(wordHex(st)).toEqual(u.out);
  });

  it("block function §2.3.2 and A.1", () => {
    for (const t of rfc.block) {
      const out = block(unhex(t.key), unhex(t.nonce), t.counter);
      expect(hex(out), t.section).toBe(t.keystream);
      expect(wordHex(words(out)), t.section).toEqual(t.stateAtEnd);
      if (t.stateAfterRounds) {
        const rounds = words(out).map((v, i) => v - parseInt(t.setupState[i], 16));
        expect(wordHex(rounds), t.section).toEqual(t.stateAfterRounds);
      }
    }
    expect(rfc.block.length).toBe(6);
    expectScratchWiped();
  });

  it("encryption §2.4.2 and A.2 (and the §2.4.2 key stream)", () => {
    for (const t of rfc.encrypt) {
      const r = chacha(unhex(t.key), unhex(t.nonce), t.counter, unhex(t.plaintext));
      expect(r.code).toBe(0);
      expect(hex(r.out), t.section).toBe(t.ciphertext);
      if (t.keystream) {
        expect(hex(chacha(unhex(t.key), unhex(t.nonce), t.counter, new Uint8Array(t.keystream.length / 2)).out)).toBe(t.keystream);
      }
    }
    expect(rfc.encrypt.length).toBe(4);
    expectScratchWiped();
  });

  it("Poly1305 §2.5.2 and A.3 (including the edge cases #5-#11), one-shot and incremental", () => {
    for (const t of rfc.poly1305) {
      const key = unhex(t.key), msg = unhex(t.message);
      expect(hex(mac(key, msg)), t.section).toBe(t.tag);
      w.reset();
      const ctx = w.alloc(Number(x.poly1305_ctx_size())), pk = w.put(key), pm = w.put(msg), pt = w.alloc(16);
      x.poly1305_init(ctx, pk);
      for (let i = 0; i < msg.length; i += 7) x.poly1305_update(ctx, pm + i, Math.min(7, msg.length - i));
      x.poly1305_final(ctx, pt);
      expect(hex(w.get(pt, 16)), t.section).toBe(t.tag);
    }
    expect(rfc.poly1305.length).toBe(12);
    expectScratchWiped();
  });

  it("Poly1305 key generation §2.6.2 and A.4", () => {
    for (const t of rfc.poly1305KeyGen) {
      const out = block(unhex(t.key), unhex(t.nonce), 0);
      expect(hex(out.subarray(0, 32)), t.section).toBe(t.oneTimeKey);
      if (t.stateAtEnd) expect(wordHex(words(out))).toEqual(t.stateAtEnd);
    }
    expect(rfc.poly1305KeyGen.length).toBe(4);
  });

  it("AEAD §2.8.2 and decryption A.5, with their one-time keys, key stream and MAC input", () => {
    for (const t of rfc.aead) {
      const key = unhex(t.key), nonce = unhex(t.nonce), aad = unhex(t.aad);
      expect(hex(seal(key, nonce, aad, unhex(t.plaintext))), t.section).toBe(t.ciphertext + t.tag);
      const r = open(key, nonce, aad, unhex(t.ciphertext + t.tag));
      expect(r.code).toBe(0);
      expect(hex(r.dst), t.section).toBe(t.plaintext);
      expect(hex(block(key, nonce, 0).subarray(0, 32)), t.section).toBe(t.oneTimeKey);
      expect(hex(mac(unhex(t.oneTimeKey), unhex(t.macData))), t.section).toBe(t.tag);
      if (t.keystream) {
        expect(hex(chacha(key, nonce, 1, new Uint8Array(t.keystream.length / 2)).out)).toBe(t.keystream);
      }
    }
    expect(rfc.aead.length).toBe(2);
    expectScratchWiped();
  });
});

describe("Wycheproof chacha20_poly1305_test.json", () => {
  // Policy: the API has fixed sizes (key 32, nonce 12, tag 16 bytes); the binding rejects any
  // other size as invalid input before the call. "acceptable" would be treated as valid
  // (strict RFC 8439); this file has none.
  it("runs every case: valid opens and seals exactly, invalid is rejected and releases nothing", () => {
    const counts = { valid: 0, invalid: 0, acceptable: 0, sizeRejected: 0 };
    for (const g of wycheproof.testGroups) {
      const sizesOk = g.keySize === 256 && g.ivSize === 96 && g.tagSize === 128;
      for (const t of g.tests) {
        counts[t.result as "valid" | "invalid" | "acceptable"]++;
        const id = `tcId ${t.tcId} ${t.comment}`;
        if (!sizesOk) {
          expect(t.result, id).toBe("invalid");
          counts.sizeRejected++;
          continue;
        }
        const key = unhex(t.key), nonce = unhex(t.iv), aad = unhex(t.aad);
        const r = open(key, nonce, aad, unhex(t.ct + t.tag), false, t.tcId & 15);
        if (t.result === "invalid") {
          expect(r.code, id).not.toBe(0);
          expect(r.dst.every((b) => b === 0), id).toBe(true);
          const ip = open(key, nonce, aad, unhex(t.ct + t.tag), true);
          expect(ip.code, id).not.toBe(0);
          expect(hex(ip.buf), id).toBe(t.ct + t.tag);
        } else {
          expect(r.code, id).toBe(0);
          expect(hex(r.dst), id).toBe(t.msg);
          expect(hex(seal(key, nonce, aad, unhex(t.msg), t.tcId & 15)), id).toBe(t.ct + t.tag);
        }
      }
    }
    expect(counts.valid + counts.invalid + counts.acceptable).toBe(wycheproof.numberOfTests);
    expect(counts).toEqual({ valid: 256, invalid: 69, acceptable: 0, sizeRejected: 9 });
    expectScratchWiped();
  });
});

describe("differential properties", () => {
  const runs = SLOW ? 1500 : 150;

  it("seal and open agree with node:crypto and @noble/ciphers (aligned, unaligned, in place)", () => {
    fc.assert(
      fc.property(bytes(32), bytes(12), fc.uint8Array({ maxLength: 300 }), msgLength, fc.nat(15), fc.boolean(),
        (key, nonce, aad, len, mis, inPlace) => {
          const msg = randomBytes(len);
          const expected = nodeSeal(key, nonce, aad, msg);
          expect(hex(chacha20poly1305(key, nonce, aad).encrypt(msg))).toBe(hex(expected));
          let sealed: Uint8Array;
          if (inPlace) {
            w.reset();
            const pk = w.put(key), pn = w.put(nonce), pa = w.put(aad), pb = w.alloc(len + 16, mis);
            w.view(pb, len).set(msg);
            x.aead_seal(pk, pn, pa, aad.length, pb, len, pb);
            sealed = w.get(pb, len + 16);
          } else sealed = seal(key, nonce, aad, msg, mis);
          expect(hex(sealed)).toBe(hex(expected));
          const r = open(key, nonce, aad, expected, inPlace, mis);
          expect(r.code).toBe(0);
          expect(hex(r.dst)).toBe(hex(msg));
        }),
      { numRuns: runs },
    );
    expectScratchWiped();
  });

  it("ChaCha20 agrees with node:crypto and @noble/ciphers for any counter, length, offset", () => {
    fc.assert(
      fc.property(bytes(32), bytes(12), fc.integer({ min: 0, max: 2 ** 32 - 2 ** 15 }), msgLength, fc.nat(15), fc.boolean(),
        (key, nonce, counter, len, mis, inPlace) => {
          const msg = randomBytes(len);
          const expected = nodeChacha(key, nonce, counter, msg);
          expect(hex(nobleChacha20(key, nonce, msg, undefined, counter))).toBe(hex(expected));
          const r = chacha(key, nonce, counter, msg, inPlace, mis);
          expect(r.code).toBe(0);
          expect(hex(r.out)).toBe(hex(expected));
        }),
      { numRuns: runs },
    );
    expectScratchWiped();
  });

  it("Poly1305 agrees with @noble/ciphers, one-shot and with random chunking", () => {
    fc.assert(
      fc.property(bytes(32), msgLength, fc.nat(15), fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 12 }),
        (key, len, mis, chunks) => {
          const msg = randomBytes(len);
          const expected = hex(noblePoly1305(msg, key));
          expect(hex(mac(key, msg, mis))).toBe(expected);
          w.reset();
          const ctx = w.alloc(Number(x.poly1305_ctx_size()), mis), pk = w.put(key), pm = w.put(msg, mis), pt = w.alloc(16);
          x.poly1305_init(ctx, pk);
          for (let i = 0, c = 0; i < len; c++) {
            const n = Math.min(chunks[c % chunks.length], len - i);
            if (c % 3 === 0) x.poly1305_update(ctx, pm + i, 0);
            x.poly1305_update(ctx, pm + i, n);
            i += n;
          }
          x.poly1305_final(ctx, pt);
          expect(hex(w.get(pt, 16))).toBe(expected);
          expect(w.get(ctx, Number(x.poly1305_ctx_size())).every((b) => b === 0)).toBe(true);
        }),
      { numRuns: runs },
    );
    expectScratchWiped();
  });

  it("multi-MiB seal/open and ChaCha20 match node:crypto", () => {
    const sizes = SLOW ? [3 << 20, (5 << 20) + 77, 9 << 20] : [(2 << 20) + 33];
    for (const len of sizes) {
      const key = randomBytes(32), nonce = randomBytes(12), aad = randomBytes(20), msg = randomBytes(len);
      const expected = nodeSeal(key, nonce, aad, msg);
      expect(hex(seal(key, nonce, aad, msg, 3)) === hex(expected)).toBe(true);
      const r = open(key, nonce, aad, expected, true);
      expect(r.code).toBe(0);
      expect(Buffer.compare(r.dst, msg)).toBe(0);
      expect(Buffer.compare(chacha(key, nonce, 7, msg, false, 5).out, nodeChacha(key, nonce, 7, msg))).toBe(0);
    }
  });
});

describe("block counter limit (RFC 8439 §2.3: 32-bit counter, never wraps)", () => {
  const key = randomBytes(32), nonce = randomBytes(12);

  it("uses blocks up to 2^32-1 and matches node:crypto there", () => {
    for (const [counter, len] of [[0xffffffff, 64], [0xffffffff, 1], [0xfffffffe, 128], [0xfffffffc, 256], [0xfffffff0, 1024]]) {
      const msg = randomBytes(len);
      const r = chacha(key, nonce, counter, msg);
      expect(r.code).toBe(0);
      expect(hex(r.out)).toBe(hex(nodeChacha(key, nonce, counter, msg)));
    }
    expect(hex(chacha(key, nonce, 0xffffffff, new Uint8Array(0)).out)).toBe("");
  });

  it("refuses (code 1, output untouched) any request that would need block 2^32", () => {
    for (const [counter, len] of [[0xffffffff, 65], [0xfffffffe, 129], [0xfffffffc, 257], [0xfffffff0, 1025], [0xffffff00, 16385], [0xffffffff, 0xffffffff]]) {
      w.reset();
      const pk = w.put(key), pn = w.put(nonce), p = w.alloc(Math.min(len, 1 << 16));
      w.view(p, Math.min(len, 1 << 16)).fill(0x5a);
      expect(x.chacha20(pk, pn, counter >>> 0, p, p, len)).toBe(1);
      expect(w.get(p, Math.min(len, 1 << 16)).every((b) => b === 0x5a)).toBe(true);
    }
    expectScratchWiped();
  });
});

describe("tampering and failure hygiene", () => {
  const flipEach = (b: Uint8Array, f: (t: Uint8Array) => void) => {
    for (let i = 0; i < b.length * 8; i++) {
      const t = b.slice();
      t[i >> 3] ^= 1 << (i & 7);
      f(t);
    }
  };

  it("rejects every single flipped bit in key, nonce, AAD, ciphertext and tag", () => {
    // 300 bytes covers the stitched 256-byte group and the tail.
    for (const [aadLen, len] of [[0, 0], [5, 1], [16, 33], [3, 300]]) {
      const key = randomBytes(32), nonce = randomBytes(12), aad = randomBytes(aadLen), msg = randomBytes(len);
      const sealed = nodeSeal(key, nonce, aad, msg);
      let checked = 0;
      const reject = (r: { code: number; dst: Uint8Array }) => {
        expect(r.code).toBe(1);
        expect(r.dst.every((b) => b === 0)).toBe(true);
        checked++;
      };
      flipEach(key, (k) => reject(open(k, nonce, aad, sealed)));
      flipEach(nonce, (n) => reject(open(key, n, aad, sealed)));
      flipEach(aad, (a) => reject(open(key, nonce, a, sealed)));
      flipEach(sealed, (s) => reject(open(key, nonce, aad, s)));
      expect(checked).toBe(8 * (32 + 12 + aadLen + len + 16));
    }
    expectScratchWiped();
  });

  it("in-place failure leaves the ciphertext exactly as it was (releases nothing, loses nothing)", () => {
    for (const len of [0, 17, 256, 300, 4096 + 5]) {
      const key = randomBytes(32), nonce = randomBytes(12), aad = randomBytes(9);
      const sealed = nodeSeal(key, nonce, aad, randomBytes(len));
      for (const at of [0, len >> 1, len + 15]) {
        const bad = sealed.slice();
        bad[Math.min(at, bad.length - 1)] ^= 0x80;
        const r = open(key, nonce, aad, bad, true);
        expect(r.code).toBe(1);
        expect(hex(r.buf)).toBe(hex(bad));
      }
    }
    expectScratchWiped();
  });

  it("rejects truncated and extended ciphertexts and inputs shorter than a tag", () => {
    const key = randomBytes(32), nonce = randomBytes(12), aad = randomBytes(7);
    const sealed = nodeSeal(key, nonce, aad, randomBytes(70));
    expect(open(key, nonce, aad, sealed.subarray(0, sealed.length - 1)).code).toBe(1);
    expect(open(key, nonce, aad, sealed.subarray(1)).code).toBe(1);
    expect(open(key, nonce, aad, Uint8Array.from([...sealed, 0])).code).toBe(1);
    expect(open(key, nonce, aad, Uint8Array.from([0, ...sealed])).code).toBe(1);
    for (let n = 0; n < 16; n++) expect(open(key, nonce, aad, sealed.subarray(0, n)).code).toBe(2);
    expect(open(key, nonce, new Uint8Array(0), nodeSeal(key, nonce, new Uint8Array(0), new Uint8Array(0))).code).toBe(0);
  });

  it("refuses (code 2, nothing written) a dst that partly overlaps src, key, nonce or tag", () => {
    const key = randomBytes(32), nonce = randomBytes(12), msg = randomBytes(600);
    const sealed = nodeSeal(key, nonce, new Uint8Array(0), msg);
    w.reset();
    const pk = w.put(key), pn = w.put(nonce), pc = w.put(sealed);
    const len = msg.length;
    for (const pd of [pc + 1, pc - 100, pc + 20, pk - 10, pn - len + 1, pc + len - 1]) {
      const before = w.get(Math.min(pd, pc) - 64, len + 400);
      expect(x.aead_open(pk, pn, pk, 0, pc, sealed.length, pd)).toBe(2);
      expect(hex(w.get(Math.min(pd, pc) - 64, len + 400))).toBe(hex(before));
    }
  });
});
