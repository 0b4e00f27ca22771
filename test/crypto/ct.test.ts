import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { loadTestLoader } from "../helpers/wasm.ts";

describe("ct helpers", () => {
  const w = loadTestLoader();

  it("ct_equal agrees with byte equality at every length and offset", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.nat(7), fc.nat(7), fc.option(fc.nat()), (a, oa, ob, flip) => {
        w.reset();
        const b = a.slice();
        if (flip !== null && b.length > 0) b[flip % b.length] ^= 1 << (flip % 8);
        const pa = w.put(a, oa);
        const pb = w.put(b, ob);
        const same = a.every((x, i) => x === b[i]);
        expect(w.exports.ct_equal(pa, pb, a.length)).toBe(same ? 1 : 0);
      }),
    );
  });

  it("wipe zeroes exactly the range", () => {
    w.reset();
    const p = w.put(new Uint8Array(40).fill(0xaa));
    w.exports.wipe_bytes(p + 3, 33);
    const out = w.get(p, 40);
    expect(Array.from(out.subarray(0, 3))).toEqual([0xaa, 0xaa, 0xaa]);
    expect(out.subarray(3, 36).every((x) => x === 0)).toBe(true);
    expect(Array.from(out.subarray(36))).toEqual([0xaa, 0xaa, 0xaa, 0xaa]);
  });
});
