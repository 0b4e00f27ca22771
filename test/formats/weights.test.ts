import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createDecipheriv, createHash, hkdfSync } from "node:crypto";
import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import v8 from "node:v8";
import vm from "node:vm";
import { sha256 } from "@noble/hashes/sha2.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { ascii, concat } from "../../host/formats/bytes.ts";
import { VeilFormatError } from "../../host/formats/errors.ts";
import { encodeManifest, decodeManifest } from "../../host/formats/manifest.ts";
import { buildManifest } from "../../host/formats/manifest-builder.ts";
import { decodeWeightsHeader, sealedStreamLength } from "../../host/formats/weights-header.ts";
import { WeightsOpener, openWeights, sealWeights, splitSealedWeights, type SealWeightsOptions } from "../../host/formats/weights.ts";

const SLOW = !!process.env.SLOW;
const runs = SLOW ? 40 : 8;
const KiB = 1024;
const MiB = 1024 * KiB;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "veil-weights-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e.code;
    throw e;
  }
  return "OK";
}
async function codeOfAsync(f: () => Promise<unknown>): Promise<string> {
  try {
    await f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e.code;
    throw e;
  }
  return "OK";
}

/** Fast equality for large buffers (deep equality on typed arrays is slow). */
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
const dataKey = new Uint8Array(32).fill(0x5a);
const keyId = new Uint8Array(16).fill(0x17);
const pattern = (n: number, seed: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return out;
};

/** Yields `bytes` in pieces of the given sizes (cycled). */
async function* pieces(bytes: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  let o = 0;
  for (let k = 0; o < bytes.length; k++) {
    const n = Math.max(1, sizes[k % sizes.length]);
    yield bytes.subarray(o, o + n);
    o += n;
  }
}

/** Seals in memory; returns the sealed bytes too. */
async function sealToMemory(opts: Omit<SealWeightsOptions, "out">) {
  const parts: Uint8Array[] = [];
  const res = await sealWeights({ ...opts, out: (b) => void parts.push(b) });
  return { ...res, sealed: concat(...parts) };
}

/** The loader's view: header then one piece per chunk. */
async function piecesOf(sealed: Uint8Array): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const p of splitSealedWeights([sealed])) out.push(p);
  return out;
}

function openPieces(ps: Uint8Array[], opts: ConstructorParameters<typeof WeightsOpener>[0]): Uint8Array {
  const o = new WeightsOpener(opts);
  const out: Uint8Array[] = [];
  for (const p of ps) {
    const pt = o.push(p);
    if (pt) out.push(pt);
  }
  o.finish();
  return concat(...out);
}

/** §9.1 on @noble, independent of the sealer: HMAC-SHA256(commit_key, SHA-256(plaintext)). */
const commitmentOf = (headerBytes: Uint8Array, plaintext: Uint8Array): Uint8Array =>
  hmac(sha256, hkdf(sha256, dataKey, headerBytes.subarray(24, 40), concat(ascii("veil weights commitment v1\0"), headerBytes), 32), sha256(plaintext));

describe("weights sealer and opener (§9)", () => {
  it("round-trips random multi-file sources in random pieces; the descriptor commits to the plaintext (§9.1)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 150 * KiB }), { minLength: 1, maxLength: 4 }),
        fc.array(fc.integer({ min: 1000, max: 90 * KiB }), { minLength: 1, maxLength: 5 }),
        fc.constantFrom(64 * KiB, 128 * KiB),
        async (sizes, split, chunkSize) => {
          const files = sizes.map((size, i) => ({ location: `part${i}.bin`, size, bytes: pattern(size, i) }));
          const { descriptor, header, sealed, sealedSize } = await sealToMemory({
            files: files.map((f) => ({ location: f.location, size: f.size, source: () => pieces(f.bytes, split) })),
            dataKey,
            keyId,
            chunkSize,
          });
          const total = sizes.reduce((a, b) => a + b, 0);
          expect(descriptor).toMatchObject({ plaintextSize: total, chunkSize, chunkCount: Math.ceil(total / chunkSize), keyId, streamId: header.streamId });
          expect(same(descriptor.streamId, sealed.subarray(24, 40))).toBe(true);
          expect(descriptor.files).toEqual(files.map((f) => ({ location: f.location, size: f.size })));
          expect(same(descriptor.commitment, commitmentOf(sealed.subarray(0, 60), concat(...files.map((f) => f.bytes))))).toBe(true);
          expect(sealed.length).toBe(sealedSize);
          expect(sealed.length).toBe(sealedStreamLength(header));
          expect(decodeWeightsHeader(sealed.subarray(0, 60))).toEqual(header);
          const plain = openPieces(await piecesOf(sealed), { dataKey, descriptor });
          expect(same(plain, concat(...files.map((f) => f.bytes)))).toBe(true);
        },
      ),
      { numRuns: runs },
    );
  });

  it("derives the payload key and nonces exactly as §9 writes them", async () => {
    const bytes = pattern(70 * KiB, 1);
    const { sealed, header } = await sealToMemory({ files: [{ location: "w", size: bytes.length, source: [bytes] }], dataKey, keyId, chunkSize: 64 * KiB });
    const hdr = sealed.subarray(0, 60);
    const key = new Uint8Array(hkdfSync("sha256", dataKey, header.streamId, concat(ascii("veil weights v1\0"), hdr), 32));
    const open = (ct: Uint8Array, i: number, f: number) => {
      const nonce = new Uint8Array(12);
      new DataView(nonce.buffer).setUint32(7, i);
      nonce[11] = f;
      const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
      d.setAuthTag(ct.subarray(ct.length - 16));
      return concat(d.update(ct.subarray(0, ct.length - 16)), d.final());
    };
    const c0 = sealed.subarray(60, 60 + 64 * KiB + 16);
    const c1 = sealed.subarray(60 + 64 * KiB + 16);
    expect(same(open(c0, 0, 0), bytes.subarray(0, 64 * KiB))).toBe(true);
    expect(same(open(c1, 1, 1), bytes.subarray(64 * KiB))).toBe(true);
    expect(() => open(c1, 1, 0)).toThrow();
  });

  it("handles an empty stream and an exact multiple of the chunk size", async () => {
    const empty = await sealToMemory({ files: [{ location: "empty", size: 0, source: [] }], dataKey, keyId, chunkSize: 64 * KiB });
    expect(empty.descriptor).toMatchObject({ plaintextSize: 0, chunkCount: 1 });
    expect(empty.sealed.length).toBe(60 + 16);
    expect(openPieces(await piecesOf(empty.sealed), { dataKey, descriptor: empty.descriptor })).toEqual(new Uint8Array(0));
    const exact = pattern(128 * KiB, 3);
    const two = await sealToMemory({ files: [{ location: "w", size: exact.length, source: [exact] }], dataKey, keyId, chunkSize: 64 * KiB });
    expect(two.descriptor.chunkCount).toBe(2);
    expect(two.sealed.length).toBe(60 + 2 * (64 * KiB + 16));
    expect(same(openPieces(await piecesOf(two.sealed), { dataKey, descriptor: two.descriptor }), exact)).toBe(true);
  });

  it("writes identical streams to a path, a Writable and a function", async () => {
    const bytes = pattern(200 * KiB, 9);
    const streamId = new Uint8Array(16).fill(3);
    const base = { files: [{ location: "w", size: bytes.length, source: () => pieces(bytes, [5000]) }], dataKey, keyId, chunkSize: 64 * KiB, streamId };
    const mem = await sealToMemory(base);
    const path = join(dir, "sink.sealed");
    await sealWeights({ ...base, out: path });
    const pass = new PassThrough();
    const got: Buffer[] = [];
    pass.on("data", (b: Buffer) => got.push(b));
    await sealWeights({ ...base, out: pass });
    expect(same(await readFile(path), mem.sealed)).toBe(true);
    expect(same(Buffer.concat(got), mem.sealed)).toBe(true);
  });

  it("the manifest builder takes the descriptor as it comes", async () => {
    const bytes = pattern(1000, 2);
    const { descriptor } = await sealToMemory({ files: [{ location: "model.onnx.data", size: 1000, source: [bytes] }], dataKey, keyId, chunkSize: 64 * KiB });
    const built = buildManifest({ name: "w", version: 1, graph: ascii("g"), inputs: [{ name: "x", dtype: 1, dims: [] }], outputs: [{ name: "y", dtype: 1, dims: [] }], weights: descriptor });
    expect(decodeManifest(encodeManifest(built.manifest)).weights).toEqual(descriptor);
  });

  it("reports progress monotonically, once per chunk, ending at the total", async () => {
    const sizes = [100 * KiB, 1, 50 * KiB];
    const seen: [number, number][] = [];
    const { descriptor } = await sealToMemory({
      files: sizes.map((s, i) => ({ location: `f${i}`, size: s, source: [pattern(s, i)] })),
      dataKey,
      keyId,
      chunkSize: 64 * KiB,
      onProgress: (d, t) => seen.push([d, t]),
    });
    const total = sizes.reduce((a, b) => a + b, 0);
    expect(seen.length).toBe(descriptor.chunkCount);
    expect(seen.every(([, t]) => t === total)).toBe(true);
    for (let i = 1; i < seen.length; i++) expect(seen[i][0]).toBeGreaterThanOrEqual(seen[i - 1][0]);
    expect(seen[seen.length - 1]).toEqual([total, total]);
    const empty: [number, number][] = [];
    await sealToMemory({ files: [{ location: "e", size: 0, source: [] }], dataKey, keyId, chunkSize: 64 * KiB, onProgress: (d, t) => empty.push([d, t]) });
    expect(empty).toEqual([[0, 0]]);
  });

  it("refuses bad options and sources that do not match their declared sizes", async () => {
    const one = (over: Partial<SealWeightsOptions> = {}) => sealToMemory({ files: [{ location: "w", size: 4, source: [Uint8Array.of(1, 2, 3, 4)] }], dataKey, keyId, ...over });
    expect(await codeOfAsync(() => one())).toBe("OK");
    for (const chunkSize of [12345, 32 * KiB, 32 * MiB, 3 * 64 * KiB]) expect(await codeOfAsync(() => one({ chunkSize }))).toBe("BAD_VALUE");
    expect(await codeOfAsync(() => one({ dataKey: new Uint8Array(31) }))).toBe("BAD_LENGTH");
    expect(await codeOfAsync(() => one({ keyId: new Uint8Array(17) }))).toBe("BAD_LENGTH");
    expect(await codeOfAsync(() => one({ files: [{ location: "w", size: 5, source: [Uint8Array.of(1, 2, 3, 4)] }] }))).toBe("BAD_VALUE");
    expect(await codeOfAsync(() => one({ files: [{ location: "w", size: 3, source: [Uint8Array.of(1, 2, 3, 4)] }] }))).toBe("BAD_VALUE");
    expect(await codeOfAsync(() => one({ files: [{ location: ".w", size: 4, source: [Uint8Array.of(1, 2, 3, 4)] }] }))).toBe("BAD_VALUE");
    expect(await codeOfAsync(() => one({ files: [{ location: "w", size: 2, source: [Uint8Array.of(1, 2)] }, { location: "w", size: 2, source: [Uint8Array.of(3, 4)] }] }))).toBe("BAD_VALUE");
    expect(await codeOfAsync(() => one({ files: [{ location: "w", size: 4, source: [Uint8Array.of(1, 2, 3, 4)] }, { location: "z", size: 0, source: [] }] }))).toBe("BAD_VALUE");
    expect(await codeOfAsync(() => one({ files: [] }))).toBe("BAD_LENGTH");
    const path = join(dir, "four.bin");
    await writeFile(path, Uint8Array.of(1, 2, 3, 4));
    expect(await codeOfAsync(() => one({ files: [{ location: "w", size: 4, path }] }))).toBe("OK");
    expect(await codeOfAsync(() => one({ files: [{ location: "w", size: 5, path }] }))).toBe("BAD_VALUE");
  });
});

describe("the opener rejects altered streams", () => {
  let sealed: Uint8Array;
  let ps: Uint8Array[];
  let descriptor: Awaited<ReturnType<typeof sealWeights>>["descriptor"];
  const plain = pattern(3 * 64 * KiB + 1000, 5);
  beforeAll(async () => {
    const r = await sealToMemory({ files: [{ location: "w", size: plain.length, source: [plain] }], dataKey, keyId, chunkSize: 64 * KiB });
    sealed = r.sealed;
    descriptor = r.descriptor;
    ps = await piecesOf(sealed);
    expect(ps.length).toBe(1 + 4);
  });
  const run = (pieces: Uint8Array[], opts = { dataKey, descriptor }) => codeOf(() => openPieces(pieces, opts));

  it("opens the original", () => {
    expect(same(openPieces(ps, { dataKey, descriptor }), plain)).toBe(true);
  });

  it("truncated, cut, reordered, duplicated and extended streams", () => {
    const [h, c0, c1, c2, c3] = ps;
    expect(run([h, c0, c1, c2])).toBe("WEIGHTS_INCOMPLETE");
    expect(run([h])).toBe("WEIGHTS_INCOMPLETE");
    expect(run([h, c0, c1, c2, c3.subarray(0, 100)])).toBe("WEIGHTS_ORDER");
    expect(run([h, c1, c0, c2, c3])).toBe("WEIGHTS_AUTH");
    expect(run([h, c0, c2, c1, c3])).toBe("WEIGHTS_AUTH");
    expect(run([h, c0, c0, c1, c2, c3])).toBe("WEIGHTS_AUTH");
    expect(run([h, c0, c1, c3])).toBe("WEIGHTS_ORDER"); // the final chunk is shorter than a full one
    expect(run([h, c0, c1, c2, c3, c3])).toBe("WEIGHTS_ORDER");
    expect(run([h, c0, c1, c2, c3, Uint8Array.of(0)])).toBe("WEIGHTS_ORDER");
    expect(run([h, h, c0, c1, c2, c3])).toBe("WEIGHTS_ORDER");
  });

  it("through the splitter too: cut and extended byte streams", async () => {
    const viaBytes = (b: Uint8Array) => codeOfAsync(() => openWeights({ source: [b], dataKey, descriptor }));
    expect(await viaBytes(sealed)).toBe("OK");
    expect(await viaBytes(sealed.subarray(0, sealed.length - 1))).toBe("WEIGHTS_ORDER");
    expect(await viaBytes(sealed.subarray(0, 60 + 64 * KiB + 16))).toBe("WEIGHTS_INCOMPLETE");
    expect(await viaBytes(concat(sealed, Uint8Array.of(9)))).toBe("WEIGHTS_ORDER");
    expect(await viaBytes(sealed.subarray(0, 30))).toBe("TRUNCATED");
  });

  it("single-byte flips: every header byte and sampled chunk bytes", () => {
    for (let i = 0; i < 60; i++) {
      const b = sealed.slice();
      b[i] ^= 0x01;
      expect([i, run(splitLike(b))]).not.toEqual([i, "OK"]);
    }
    fc.assert(
      fc.property(fc.integer({ min: 60, max: sealed.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const b = sealed.slice();
        b[i] ^= x;
        expect(run(splitLike(b))).toBe("WEIGHTS_AUTH");
      }),
      { numRuns: SLOW ? 300 : 40 },
    );
  });

  it("header fields: key_id and stream_id differing from the descriptor are WEIGHTS_MISMATCH at the header", () => {
    const fieldOf = (pieces: Uint8Array[], opts = { dataKey, descriptor }) => {
      const o = new WeightsOpener(opts);
      try {
        for (const p of pieces) o.push(p);
        o.finish();
      } catch (e) {
        if (e instanceof VeilFormatError) return [e.code, e.fieldId];
        throw e;
      }
      return ["OK"];
    };
    const b = sealed.slice();
    b[8] ^= 1; // key_id
    expect(fieldOf(splitLike(b))).toEqual(["WEIGHTS_MISMATCH", 0x0502]);
    for (const at of [24, 31, 39]) {
      const s = sealed.slice();
      s[at] ^= 1; // stream_id (bytes 24..39)
      expect(fieldOf(splitLike(s))).toEqual(["WEIGHTS_MISMATCH", 0x0503]);
      // The header alone is refused, before any chunk.
      expect(codeOf(() => new WeightsOpener({ dataKey, descriptor }).push(s.subarray(0, 60)))).toBe("WEIGHTS_MISMATCH");
      // Without a descriptor to compare with, stream_id is still bound into the payload key.
      expect(fieldOf(splitLike(s), { dataKey, descriptor: undefined as never })).toEqual(["WEIGHTS_AUTH", 0x0507]);
    }
  });

  it("weights sealed for another program (same data key and key id, another stream) are refused at the header", async () => {
    const other = await sealToMemory({ files: [{ location: "w", size: plain.length, source: [plain] }], dataKey, keyId, chunkSize: 64 * KiB });
    expect(other.descriptor.streamId).not.toEqual(descriptor.streamId);
    const otherPieces = await piecesOf(other.sealed);
    const o = new WeightsOpener({ dataKey, descriptor });
    let e: unknown;
    try {
      o.push(otherPieces[0]);
    } catch (x) {
      e = x;
    }
    expect(e).toMatchObject({ code: "WEIGHTS_MISMATCH", field: "weights_header.stream_id", fieldId: 0x0503, loaderCode: 0x05030022 });
    // Poisoned: nothing after it is taken.
    expect(codeOf(() => o.push(otherPieces[1]))).toBe("WEIGHTS_MISMATCH");
    // The same stream opens under its own descriptor.
    expect(same(openPieces(otherPieces, { dataKey, descriptor: other.descriptor }), plain)).toBe(true);
  });

  it("a wrong data key is WEIGHTS_AUTH; a key holder's re-sealing under the same stream_id is WEIGHTS_COMMITMENT", async () => {
    expect(run(ps, { dataKey: new Uint8Array(32), descriptor })).toBe("WEIGHTS_AUTH");
    // A key holder can reuse the manifest's stream_id, so the header matches; only the commitment catches it.
    const altered = plain.slice();
    altered[12345] ^= 1;
    const again = await sealToMemory({ files: [{ location: "w", size: altered.length, source: [altered] }], dataKey, keyId, chunkSize: 64 * KiB, streamId: descriptor.streamId });
    expect(again.descriptor.streamId).toEqual(descriptor.streamId);
    const o = new WeightsOpener({ dataKey, descriptor });
    const againPieces = await piecesOf(again.sealed);
    for (const p of againPieces.slice(0, -1)) o.push(p);
    let e: unknown;
    try {
      o.push(againPieces[againPieces.length - 1]);
    } catch (x) {
      e = x;
    }
    expect(e).toMatchObject({ code: "WEIGHTS_COMMITMENT", fieldId: 0x0507 });
    // Without a descriptor the opener still reports the commitment it computed.
    const free = new WeightsOpener({ dataKey });
    for (const p of againPieces) free.push(p);
    free.finish();
    expect(free.commitment).toEqual(again.descriptor.commitment);
  });

  it("a failure poisons the opener", () => {
    const o = new WeightsOpener({ dataKey, descriptor });
    o.push(ps[0]);
    expect(codeOf(() => o.push(ps[2]))).toBe("WEIGHTS_AUTH");
    expect(codeOf(() => o.push(ps[1]))).toBe("WEIGHTS_AUTH");
    expect(codeOf(() => o.finish())).toBe("WEIGHTS_AUTH");
  });

  /** Splits like the loader's caller would, using the original (trusted) chunk boundaries. */
  function splitLike(b: Uint8Array): Uint8Array[] {
    let o = 0;
    return ps.map((p) => b.subarray(o, (o += p.length)));
  }
});

describe("constant memory", () => {
  it(`seals a ${SLOW ? 256 : 64} MiB file with 1 MiB chunks while live buffers grow far less than the source`, async () => {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    const size = (SLOW ? 256 : 64) * MiB;
    const src = join(dir, "big.bin");
    const out = join(dir, "big.sealed");
    const plainHash = createHash("sha256");
    {
      const fh = await open(src, "w");
      const buf = new Uint8Array(MiB);
      for (let i = 0; i < size / MiB; i++) {
        buf.fill(i & 0xff);
        buf[0] = i >> 8;
        plainHash.update(buf);
        await fh.write(buf, 0, MiB);
      }
      await fh.close();
    }
    const expectedPlain = plainHash.digest();
    // Measure what stays alive: collect garbage before every sample.
    const live = () => {
      gc();
      const m = process.memoryUsage();
      return m.arrayBuffers + m.external;
    };
    const before = live();
    let peak = before;
    const progress: number[] = [];
    const samples: number[] = [];
    const res = await sealWeights({
      files: [{ location: "big.bin", size, path: src }],
      dataKey,
      keyId,
      out,
      onProgress: (done, total) => {
        expect(total).toBe(size);
        progress.push(done);
        const now = live();
        samples.push(now);
        peak = Math.max(peak, now);
      },
    });
    const growth = peak - before;
    expect(progress.length).toBe(size / MiB);
    expect(progress[progress.length - 1]).toBe(size);
    // A few chunk-sized buffers, independent of the source size…
    expect(growth).toBeLessThan(12 * MiB);
    expect(growth).toBeLessThan(size / 4);
    // …and flat: nothing accumulates per chunk after the first quarter.
    const q = Math.floor(samples.length / 4);
    expect(Math.max(...samples.slice(2 * q)) - Math.max(...samples.slice(0, q))).toBeLessThan(2 * MiB);
    expect((await stat(out)).size).toBe(res.sealedSize);
    // The stream opens back to the same plaintext and matches its commitment.
    const h = createHash("sha256");
    const opened = await openWeights({ source: out, dataKey, descriptor: res.descriptor, onPlaintext: (b) => void h.update(b) });
    expect(opened.commitment).toEqual(res.descriptor.commitment);
    expect(h.digest()).toEqual(expectedPlain);
  });
});
