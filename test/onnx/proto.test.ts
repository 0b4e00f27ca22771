// Tests of the vendored-schema codec and the wire-format primitives (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
import { describe, expect, it } from "vitest";
import { OnnxError } from "../../host/onnx/errors.ts";
import { GraphBuilder } from "../../host/onnx/graph.ts";
import { DataType, decodeModel, dtypeSize, encodeModel, int64 } from "../../host/onnx/proto.ts";
import { decodeVarintFrom, encodeVarint, varintSize } from "../../host/onnx/wire.ts";

describe("onnx.proto codec", () => {
  it("round-trips a model with snake_case fields and 64-bit values", () => {
    const g = new GraphBuilder("g");
    g.initTensor({ name: "big", data_type: DataType.INT64, dims: [1], int64_data: [int64(2n ** 62n + 5n)] });
    g.op("Identity", [g.input("x", "float32", ["n"])], {}, "y");
    g.output("y", "float32", ["n"]);
    const bytes = g.bytes({ opset: 17 });
    const m = decodeModel(bytes);
    expect(m.ir_version).toBe(8);
    expect(m.opset_import).toEqual([{ domain: "", version: 17 }]);
    expect(m.graph!.input![0].type!.tensor_type!.shape!.dim).toEqual([{ dim_param: "n" }]);
    expect(encodeModel(m).length).toBe(bytes.length);
  });

  it("rejects bytes that are not a ModelProto with a typed error", () => {
    const err = (() => { try { decodeModel(new Uint8Array([0x0a, 0xff])); } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(OnnxError);
    expect((err as OnnxError).code).toBe("MALFORMED");
    expect(() => encodeModel({ ir_version: "eight" as unknown as number })).toThrow(/cannot encode ModelProto/);
  });

  it("knows the element sizes of SPEC §5.2 dtypes", () => {
    expect([1, 2, 3, 5, 6, 7, 9, 10, 11].map(dtypeSize)).toEqual([4, 1, 1, 2, 4, 8, 1, 2, 8]);
    expect(dtypeSize(DataType.STRING)).toBeUndefined();
  });
});

describe("wire varints", () => {
  it("round-trip at the 7-bit boundaries and 2^53 − 1", () => {
    for (const v of [0, 1, 127, 128, 16383, 16384, 2 ** 31, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER]) {
      const b = encodeVarint(v);
      expect(b.length).toBe(varintSize(v));
      expect(decodeVarintFrom((i) => b[i], 0, b.length)).toEqual({ value: v, next: b.length });
    }
  });

  it("refuse values past 2^53 and truncated input", () => {
    const big = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    expect(() => decodeVarintFrom((i) => big[i], 0, big.length)).toThrow(/over 2\^53/);
    expect(() => decodeVarintFrom((i) => big[i], 0, 3)).toThrow(/truncated varint/);
    expect(() => encodeVarint(-1)).toThrow(RangeError);
  });
});
