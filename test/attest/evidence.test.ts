// Evidence (host/attest/README.md §1): binding, round trips and strict rejections.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  EVIDENCE_MAX,
  PLATFORM_KIND,
  TSM_BLOB_MAX,
  decodeEvidence,
  encodeEvidence,
  evidenceBinding,
  type Evidence,
} from "../../host/attest/index.ts";
import { SoftwareAttester } from "../../host/trusted/attest.ts";
import { VeilFormatError } from "../../host/formats/index.ts";
import { makeReport, rand, snpReport, tdxQuoteV4 } from "./helpers.ts";

const err = (f: () => unknown): VeilFormatError => {
  try {
    f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e;
    throw e;
  }
  throw new Error("expected a VeilFormatError");
};

function software(): Evidence {
  return {
    report: makeReport(),
    measurement: rand(32),
    workerCodeHash: rand(32),
    platform: { kind: PLATFORM_KIND.SOFTWARE, publicKey: rand(32), signature: rand(64) },
  };
}
function sev(aux = rand(100)): Evidence {
  return {
    report: makeReport(),
    measurement: rand(32),
    workerCodeHash: rand(32),
    platform: { kind: PLATFORM_KIND.SEV_SNP_TSM, provider: "sev_guest", outblob: snpReport(rand(64)), auxblob: aux },
  };
}
function tdx(): Evidence {
  return {
    report: makeReport(),
    measurement: rand(32),
    workerCodeHash: rand(32),
    platform: { kind: PLATFORM_KIND.TDX_TSM, provider: "tdx_guest", outblob: tdxQuoteV4(rand(64)), auxblob: new Uint8Array(0) },
  };
}

describe("evidence binding", () => {
  it("is SHA-512 of the label, SHA-256(report), measurement and worker code hash (64 bytes, REPORT_DATA size)", () => {
    const report = makeReport();
    const m = rand(32);
    const w = rand(32);
    const sha256 = createHash("sha256").update(report).digest();
    const expected = createHash("sha512").update(Buffer.from("veil platform evidence v1\0", "latin1")).update(sha256).update(m).update(w).digest();
    const b = evidenceBinding(report, m, w);
    expect(b.length).toBe(64);
    expect(Buffer.from(b).equals(expected)).toBe(true);
  });

  it("changes with every input", () => {
    const report = makeReport();
    const m = rand(32);
    const w = rand(32);
    const b = Buffer.from(evidenceBinding(report, m, w)).toString("hex");
    const r2 = report.slice();
    r2[104] ^= 1;
    const m2 = m.slice();
    m2[0] ^= 1;
    const w2 = w.slice();
    w2[31] ^= 1;
    for (const [a, c, d] of [
      [r2, m, w],
      [report, m2, w],
      [report, m, w2],
      [report, w, m],
    ])
      expect(Buffer.from(evidenceBinding(a, c, d)).toString("hex")).not.toBe(b);
  });

  it("refuses wrong lengths", () => {
    expect(err(() => evidenceBinding(rand(104), rand(32), rand(32))).field).toBe("evidence.report");
    expect(err(() => evidenceBinding(makeReport(), rand(31), rand(32))).field).toBe("evidence.measurement");
    expect(err(() => evidenceBinding(makeReport(), rand(32), rand(33))).field).toBe("evidence.worker_code_hash");
  });
});

describe("evidence encoding", () => {
  it("round-trips software, SEV-SNP and TDX evidence byte for byte", () => {
    for (const ev of [software(), sev(), sev(new Uint8Array(0)), tdx()]) {
      const bytes = encodeEvidence(ev);
      const back = decodeEvidence(bytes);
      expect(back).toEqual(ev);
      expect(Buffer.from(encodeEvidence(back)).equals(Buffer.from(bytes))).toBe(true);
    }
  });

  it("has the documented layout", () => {
    const ev = software();
    const b = encodeEvidence(ev);
    expect(b.length).toBe(8 + 105 + 32 + 32 + 1 + 32 + 64);
    expect(Buffer.from(b.subarray(0, 8)).toString("latin1")).toBe("veilEV\0\x01");
    expect(Buffer.from(b.subarray(8, 113)).equals(Buffer.from(ev.report))).toBe(true);
    expect(b[177]).toBe(1);
    const t = encodeEvidence(sev(new Uint8Array(0)));
    expect(t[177]).toBe(2);
    expect(t[178]).toBe(9); // provider<1..32>, u8 length
    expect(Buffer.from(t.subarray(179, 188)).toString("latin1")).toBe("sev_guest");
    expect((t[188] << 8) | t[189]).toBe(0x4a0); // outblob<1..32768>, u16 length
    expect(t.length).toBe(190 + 0x4a0 + 2);
  });

  it("the real software attester's output round-trips", async () => {
    const ev = await SoftwareAttester.generate().attest(makeReport(), rand(32), rand(32));
    expect(decodeEvidence(encodeEvidence(ev))).toEqual(ev);
  });

  it("rejects truncation at every byte with TRUNCATED", () => {
    for (const ev of [software(), sev(rand(40)), tdx()]) {
      const b = encodeEvidence(ev);
      for (let n = 0; n < b.length; n++) {
        const e = err(() => decodeEvidence(b.subarray(0, n)));
        expect(e.code, `prefix of ${n} bytes`).toBe("TRUNCATED");
      }
    }
  });

  it("rejects trailing bytes", () => {
    for (const ev of [software(), sev()]) {
      const b = encodeEvidence(ev);
      for (const extra of [1, 2, 64]) {
        const e = err(() => decodeEvidence(new Uint8Array([...b, ...new Uint8Array(extra)])));
        expect(e.code).toBe("TRAILING_BYTES");
        expect(e.field).toBe("evidence");
      }
    }
  });

  it("rejects another family, kind or version", () => {
    const b = encodeEvidence(software());
    const at = (i: number, v: number) => {
      const c = b.slice();
      c[i] = v;
      return c;
    };
    expect(err(() => decodeEvidence(at(0, 0x56))).code).toBe("WRONG_KIND");
    expect(err(() => decodeEvidence(at(5, 0x42))).code).toBe("WRONG_KIND"); // "EB"
    expect(err(() => decodeEvidence(at(7, 2))).code).toBe("UNSUPPORTED_VERSION");
    expect(err(() => decodeEvidence(at(6, 1))).code).toBe("UNSUPPORTED_VERSION");
    expect(err(() => decodeEvidence(at(7, 2))).field).toBe("evidence.magic");
  });

  it("rejects an unknown platform kind, naming the field", () => {
    const b = encodeEvidence(software());
    for (const k of [0, 4, 5, 0x81, 255]) {
      const c = b.slice();
      c[177] = k;
      const e = err(() => decodeEvidence(c));
      expect(e.code).toBe("BAD_VALUE");
      expect(e.field).toBe("evidence.platform_kind");
    }
  });

  it("checks the ReportBody inside (the key_id rule)", () => {
    const b = encodeEvidence(software());
    const c = b.slice();
    c[8 + 8] ^= 1; // key_id
    const e = err(() => decodeEvidence(c));
    expect(e.code).toBe("BAD_VALUE");
    expect(e.field).toBe("evidence.report.key_id");
    const d = b.slice();
    d[8 + 5] = 0x43; // "veilRC"
    expect(err(() => decodeEvidence(d)).field).toBe("evidence.report.magic");
  });

  it("requires the provider of the platform kind", () => {
    const b = encodeEvidence(sev());
    const c = b.slice();
    c.set(Buffer.from("tdx_guest"), 179);
    let e = err(() => decodeEvidence(c));
    expect([e.code, e.field]).toEqual(["BAD_VALUE", "evidence.platform.provider"]);
    const d = b.slice();
    d[179] = 0x53; // "Sev_guest"
    e = err(() => decodeEvidence(d));
    expect([e.code, e.field]).toEqual(["BAD_VALUE", "evidence.platform.provider"]);
    const k = b.slice();
    k[177] = 3; // kind tdx, provider sev_guest
    expect(err(() => decodeEvidence(k)).field).toBe("evidence.platform.provider");
    expect(() => encodeEvidence({ ...sev(), platform: { ...(sev().platform as any), provider: "tdx_guest" } })).toThrow(VeilFormatError);
  });

  it("bounds the provider and the blobs", () => {
    const b = encodeEvidence(sev(new Uint8Array(0)));
    const zeroProvider = b.slice();
    zeroProvider[178] = 0;
    expect([err(() => decodeEvidence(zeroProvider)).code, err(() => decodeEvidence(zeroProvider)).field]).toEqual(["BAD_LENGTH", "evidence.platform.provider"]);
    const longProvider = b.slice();
    longProvider[178] = 33;
    expect(err(() => decodeEvidence(longProvider)).code).toBe("BAD_LENGTH");
    const emptyOut = b.slice();
    emptyOut[188] = 0;
    emptyOut[189] = 0;
    expect([err(() => decodeEvidence(emptyOut)).code, err(() => decodeEvidence(emptyOut)).field]).toEqual(["BAD_LENGTH", "evidence.platform.outblob"]);
    const hugeOut = b.slice();
    hugeOut[188] = 0x80;
    hugeOut[189] = 0x01; // 32769
    expect(err(() => decodeEvidence(hugeOut)).code).toBe("BAD_LENGTH");
    const hugeAux = b.slice();
    hugeAux[hugeAux.length - 2] = 0xff;
    hugeAux[hugeAux.length - 1] = 0xff;
    expect([err(() => decodeEvidence(hugeAux)).code, err(() => decodeEvidence(hugeAux)).field]).toEqual(["BAD_LENGTH", "evidence.platform.auxblob"]);
    // The largest evidence is accepted; one byte more is TOO_LARGE before any parsing.
    const max: Evidence = { ...sev(), platform: { kind: 2, provider: "sev_guest", outblob: rand(TSM_BLOB_MAX), auxblob: rand(TSM_BLOB_MAX) } };
    const mb = encodeEvidence(max);
    expect(mb.length).toBe(EVIDENCE_MAX - (32 - 9));
    expect(err(() => decodeEvidence(new Uint8Array(EVIDENCE_MAX + 1))).code).toBe("TOO_LARGE");
  });

  it("the encoder refuses what the decoder would", () => {
    const ev = software();
    expect(() => encodeEvidence({ ...ev, measurement: rand(31) })).toThrow(/measurement/);
    expect(() => encodeEvidence({ ...ev, platform: { ...ev.platform, kind: 9 } as any })).toThrow(/platform_kind/);
    expect(() => encodeEvidence({ ...ev, report: rand(105) })).toThrow(VeilFormatError);
  });
});
