// The worker channel's framing and payload codecs (host/trusted/protocol.ts), byte by byte.
import { describe, expect, it } from "vitest";
import {
  FrameDecoder, PayloadReader, ProtocolError, Reply, Req, concatParts, decodeError, decodeHello, encodeFrame,
  encodeHello, errorPayload, u32, vec32,
} from "../../host/trusted/protocol.ts";

describe("frames", () => {
  it("lays out u32 length ‖ u8 type ‖ u32 id ‖ payload, big-endian, length counting type and id", () => {
    const f = encodeFrame(Req.LOAD_WEIGHTS, 0x01020304, [u32(7), ...vec32(Uint8Array.of(0xaa, 0xbb))]);
    expect(Array.from(f)).toEqual([0, 0, 0, 15, 0x06, 1, 2, 3, 4, 0, 0, 0, 7, 0, 0, 0, 2, 0xaa, 0xbb]);
  });

  it("decodes frames split at every byte and several frames in one chunk", () => {
    const frames = [encodeFrame(Req.HELLO, 1), encodeFrame(Req.INFER, 2, [u32(9), ...vec32(new Uint8Array(300).fill(5))]), encodeFrame(Req.SHUTDOWN, 3)];
    const all = concatParts(frames);
    for (const step of [1, 2, 3, 7, 64, all.length]) {
      const d = new FrameDecoder(1024);
      const got = [];
      for (let o = 0; o < all.length; o += step) got.push(...d.push(all.slice(o, o + step)));
      expect(got.map((e) => e.kind === "frame" && [e.type, e.id, e.payload.length])).toEqual([[Req.HELLO, 1, 0], [Req.INFER, 2, 308], [Req.SHUTDOWN, 3, 0]]);
      expect(d.pending).toBe(0);
    }
  });

  it("skips an oversize frame as it streams by, reports its id, and resynchronises", () => {
    const d = new FrameDecoder(100);
    const big = encodeFrame(Req.LOAD_PROGRAM, 77, [new Uint8Array(1000).fill(1)]);
    const next = encodeFrame(Req.HELLO, 78);
    const events = [...d.push(big.subarray(0, 20)), ...d.push(big.subarray(20, 500)), ...d.push(concatParts([big.subarray(500), next]))];
    expect(events).toEqual([
      { kind: "too-large", type: Req.LOAD_PROGRAM, id: 77, length: 1005 },
      { kind: "frame", type: Req.HELLO, id: 78, payload: new Uint8Array(0) },
    ]);
    expect(d.pending).toBe(0);
  });

  it("consumes a frame whose length is below 5 and carries on", () => {
    const d = new FrameDecoder(100);
    const events = d.push(concatParts([Uint8Array.of(0, 0, 0, 3, 9, 9, 9), encodeFrame(Req.HELLO, 5), Uint8Array.of(0, 0, 0, 0)]));
    expect(events.map((e) => e.kind)).toEqual(["bad-length", "frame", "bad-length"]);
  });
});

describe("payloads", () => {
  it("reads strictly: truncation and trailing bytes are ProtocolErrors naming the field", () => {
    const p = concatParts([u32(3), ...vec32(Uint8Array.of(1, 2))]);
    const r = new PayloadReader(p, "load-weights");
    expect(r.u32("program")).toBe(3);
    expect(Array.from(r.vec32("piece"))).toEqual([1, 2]);
    r.end();
    const cut = new PayloadReader(p.subarray(0, 9), "load-weights");
    cut.u32("program");
    expect(() => cut.vec32("piece")).toThrow(ProtocolError);
    const t = new PayloadReader(concatParts([p, Uint8Array.of(0)]), "x");
    t.u32("a");
    t.vec32("b");
    expect(() => t.end()).toThrow(/1 bytes after the last field/);
    expect(() => new PayloadReader(u32(0xffffffff), "x").vec32("piece")).toThrow(/ends inside piece/);
  });

  it("round-trips hello and error replies", () => {
    const h = { measurement: new Uint8Array(32).fill(1), codeHash: new Uint8Array(32).fill(2), protocol: 1, info: { node: "v20" } };
    expect(decodeHello(concatParts(encodeHello(h)))).toEqual(h);
    expect(decodeError(concatParts(errorPayload(0x00140000 | 20, "graph")))).toEqual({ code: 0x00140014, message: "graph" });
    expect(decodeError(concatParts(errorPayload(1, "é".repeat(2000)))).message.length).toBeLessThanOrEqual(1024);
    expect(Reply.OK).toBe(0x80);
  });
});
