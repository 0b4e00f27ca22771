// Manifests changed field by field and signed again, so that the loader's parser (not the
// signature check) decides: the exact SPEC §12 code and §12.1 field for each targeted field
// (§1.3, §1.4, §5), the same code as the host decoder, and a sweep of boundary values through
// every integer and length field of §5.
import { beforeAll, describe, expect, it } from "vitest";
import {
  F,
  SLOW,
  World,
  ascii,
  cat,
  encodeRawManifest,
  expectNoTraps,
  generateProgram,
  hostOutcome,
  magic,
  outcome,
  rawFromManifest,
  sha256,
  tensorProgram,
  u32,
  type Program,
  type RawManifest,
} from "./fixture.ts";

expectNoTraps();

type Mutation = (m: RawManifest) => void;
const clone = (m: RawManifest): RawManifest => structuredClone(m);
const MiB = 1 << 20;

let w: World;
let T: RawManifest; // a tensor program
let G: RawManifest; // a generate program
let graphT: Uint8Array;
let graphG: Uint8Array;

beforeAll(async () => {
  w = new World({ n: 3, k: 1 });
  const t: Program = await tensorProgram({ egressLimit: 4096, extensions: [{ type: 0x0010, data: ascii("note") }] });
  const g: Program = await generateProgram({ contextLength: 16 });
  T = rawFromManifest(t.manifest);
  G = rawFromManifest(g.manifest);
  graphT = t.graph;
  graphG = g.graph;
  // The raw encoder writes exactly what the host encoder writes.
  expect(F.toHex(encodeRawManifest(T))).toBe(F.toHex(t.bytes));
  expect(F.toHex(encodeRawManifest(G))).toBe(F.toHex(g.bytes));
});

/**
 * Signs and loads `bytes`; "OK" (unloaded again) or "CODE@0xffff". A manifest that raises the
 * version floor of its name (§5.6) is loaded into a loader of its own, so that it does not turn
 * the next case into a ROLLBACK.
 */
function load(bytes: Uint8Array, graph: Uint8Array): string {
  let into = w;
  try {
    if (F.decodeManifest(bytes).version > 1n) into = new World({ reviewers: w.reviewers, k: 1 });
  } catch {
    // not decodable: the loader must refuse it too
  }
  const bundle = into.sign(bytes, [0]);
  let h = -1;
  const r = outcome(() => (h = into.L.loadProgram(bytes, bundle, graph)), true);
  if (r === "OK") into.L.unloadProgram(h);
  return r;
}

const fieldOf = (r: string) => r.replace(/^[A-Z_]+@?/, "");
const codeOf = (r: string) => r.replace(/@.*/, "");

function check(base: "T" | "G", what: string, mutate: Mutation, want: string): void {
  const m = clone(base === "T" ? T : G);
  mutate(m);
  const bytes = encodeRawManifest(m);
  const got = load(bytes, base === "T" ? graphT : graphG);
  expect(got, what).toBe(want);
  // The host's strict decoder (an independent reading of §5) gives the same code.
  const host = hostOutcome(() => F.decodeManifest(bytes));
  if (!["GRAPH_MISMATCH", "TOO_LARGE@0x0301"].some((x) => want.startsWith(x))) expect(host, `host decoder: ${what}`).toBe(codeOf(want));
}

const spec = (name: string, dtype = 1, dims: [number, number][] = [[1, 8]]) => ({ name: ascii(name), dtype, dims });

describe("targeted fields, signed again (§5)", () => {
  const cases: [("T" | "G"), string, Mutation, string][] = [
    // magic (§1.2)
    ["T", "kind MG", (m) => (m.magic = magic("MG")), "WRONG_KIND@0x0301"],
    ["T", "family veiL", (m) => (m.magic = cat(ascii("veiL"), ascii("MF"), new Uint8Array([0, 1]))), "WRONG_KIND@0x0301"],
    ["T", "version 0", (m) => (m.magic = magic("MF", 0)), "UNSUPPORTED_VERSION@0x0301"],
    ["T", "version 2", (m) => (m.magic = magic("MF", 2)), "UNSUPPORTED_VERSION@0x0301"],
    // name (§1.4)
    ["T", "empty name", (m) => (m.name = new Uint8Array(0)), "BAD_LENGTH@0x0302"],
    ["T", "name of 65", (m) => (m.name = ascii("a".repeat(65))), "BAD_LENGTH@0x0302"],
    ["T", "name of 64", (m) => (m.name = ascii("a".repeat(64))), "OK"],
    ["T", "upper case", (m) => (m.name = ascii("Echo")), "BAD_VALUE@0x0302"],
    ["T", "slash", (m) => (m.name = ascii("a/b")), "BAD_VALUE@0x0302"],
    ["T", "leading dot", (m) => (m.name = ascii(".a")), "BAD_VALUE@0x0302"],
    ["T", "space", (m) => (m.name = ascii("a b")), "BAD_VALUE@0x0302"],
    ["T", "byte 0xe9", (m) => (m.name = new Uint8Array([0x61, 0xe9])), "BAD_VALUE@0x0302"],
    ["T", "NUL", (m) => (m.name = new Uint8Array([0x61, 0])), "BAD_VALUE@0x0302"],
    ["T", "leading dash and digits", (m) => (m.name = ascii("-9_a.b")), "OK"],
    // version (§5)
    ["T", "version 0", (m) => (m.version = 0n), "BAD_VALUE@0x0303"],
    ["T", "version 2^63", (m) => (m.version = 1n << 63n), "BAD_VALUE@0x0303"],
    ["T", "version 2^64-1", (m) => (m.version = (1n << 64n) - 1n), "BAD_VALUE@0x0303"],
    // graph (§5, §6.1 step 4)
    ["T", "graph_size 0", (m) => (m.graphSize = 0n), "BAD_VALUE@0x0305"],
    ["T", "graph_size GRAPH_MAX+1", (m) => (m.graphSize = BigInt(64 * MiB + 1)), "TOO_LARGE@0x0305"],
    ["T", "graph_size 2^64-1", (m) => (m.graphSize = (1n << 64n) - 1n), "TOO_LARGE@0x0305"],
    ["T", "graph_size one more", (m) => (m.graphSize += 1n), "GRAPH_MISMATCH@0x0000"],
    ["T", "graph_sha256 of other bytes", (m) => (m.graphSha = sha256(ascii("other"))), "GRAPH_MISMATCH@0x0000"],
    // tensor specs (§5.1, §5.2)
    ["T", "no inputs", (m) => (m.inputs = []), "BAD_LENGTH@0x0306"],
    ["T", "17 inputs", (m) => (m.inputs = Array.from({ length: 17 }, (_, i) => spec(`x${i}`))), "BAD_LENGTH@0x0306"],
    ["T", "16 inputs and outputs", (m) => ((m.inputs = Array.from({ length: 16 }, (_, i) => spec(`x${i}`))), (m.outputs = Array.from({ length: 16 }, (_, i) => spec(`y${i}`)))), "OK"],
    ["T", "no outputs", (m) => (m.outputs = []), "BAD_LENGTH@0x0307"],
    ["T", "17 outputs", (m) => (m.outputs = Array.from({ length: 17 }, (_, i) => spec(`y${i}`))), "BAD_LENGTH@0x0307"],
    ...[0, 4, 8, 12, 13, 16, 255].map((d): ["T", string, Mutation, string] => ["T", `input dtype ${d}`, (m) => (m.inputs[0].dtype = d), "BAD_VALUE@0x0306"]),
    ["T", "output dtype 4", (m) => (m.outputs[0].dtype = 4), "BAD_VALUE@0x0307"],
    ["T", "rank 9", (m) => (m.inputs[0].dims = Array(9).fill([1, 1])), "BAD_LENGTH@0x0306"],
    ["T", "rank 255", (m) => (m.inputs[0].rank = 255), "BAD_LENGTH@0x0306"],
    ["T", "rank 8", (m) => (m.inputs[0].dims = Array(8).fill([1, 2])), "OK"],
    ["T", "rank 0", (m) => (m.inputs[0].dims = []), "OK"],
    ["T", "dim min 0", (m) => (m.inputs[0].dims = [[0, 4]]), "BAD_VALUE@0x0306"],
    ["T", "dim min > max", (m) => (m.inputs[0].dims = [[5, 4]]), "BAD_VALUE@0x0306"],
    ["T", "dim max 2^24+1", (m) => (m.inputs[0].dims = [[1, (1 << 24) + 1]]), "BAD_VALUE@0x0306"],
    ["T", "dim 2^32-1", (m) => (m.outputs[0].dims = [[0xffffffff, 0xffffffff]]), "BAD_VALUE@0x0307"],
    ["T", "uint8 [2^24] is TENSOR_MAX exactly", (m) => (m.inputs[0] = spec("x", 2, [[1, 1 << 24]])), "OK"],
    ["T", "float32 [2^24] over TENSOR_MAX", (m) => (m.inputs[0].dims = [[1, 1 << 24]]), "TOO_LARGE@0x0306"],
    ["T", "uint8 [2^24, 2] over", (m) => (m.inputs[0] = spec("x", 2, [[1, 1 << 24], [2, 2]])), "TOO_LARGE@0x0306"],
    ["T", "8 × 2^24 dims (overflow)", (m) => (m.outputs[0].dims = Array(8).fill([1, 1 << 24])), "TOO_LARGE@0x0307"],
    ["T", "duplicate input names", (m) => (m.inputs = [spec("x"), spec("z"), spec("x")]), "NOT_CANONICAL@0x0306"],
    ["T", "duplicate output names", (m) => (m.outputs = [spec("y"), spec("y")]), "NOT_CANONICAL@0x0307"],
    // §5.1: the repeat is refused as its name is read, before its (bad) dtype or dims.
    ["T", "duplicate output name, then a bad dtype", (m) => (m.outputs = [spec("y"), spec("y", 0)]), "NOT_CANONICAL@0x0307"],
    ["T", "duplicate input name, then a bad dim", (m) => (m.inputs = [spec("x"), spec("x", 1, [[0, 1]])]), "NOT_CANONICAL@0x0306"],
    ["T", "an input and an output share a name", (m) => (m.outputs = [spec("x")]), "OK"],
    ["T", "tensor names may hold / and upper case", (m) => (m.inputs = [spec("Dir/X.in-1")]), "OK"],
    ["T", "tensor name with leading /", (m) => (m.inputs = [spec("/x")]), "BAD_VALUE@0x0306"],
    ["T", "tensor name empty", (m) => (m.outputs = [spec("")]), "BAD_LENGTH@0x0307"],
    // mode (§5)
    ["T", "mode 0", (m) => (m.mode = 0), "BAD_VALUE@0x0308"],
    ["T", "mode 3", (m) => (m.mode = 3), "BAD_VALUE@0x0308"],
    // generate spec (§5.3)
    ["G", "vocab 1", (m) => (m.generate!.tokens = m.generate!.tokens.slice(0, 1)), "BAD_LENGTH@0x0309"],
    ["G", "vocab 0", (m) => (m.generate!.vocab = 0), "BAD_LENGTH@0x0309"],
    ["G", "vocab 65537", (m) => (m.generate!.vocab = 65537), "BAD_LENGTH@0x0309"],
    ["G", "vocab 2^32-1", (m) => (m.generate!.vocab = 0xffffffff), "BAD_LENGTH@0x0309"],
    ["G", "empty token", (m) => (m.generate!.tokens[3] = new Uint8Array(0)), "BAD_LENGTH@0x030a"],
    ["G", "token of 65 bytes", (m) => (m.generate!.tokens[3] = new Uint8Array(65).fill(0x41)), "BAD_LENGTH@0x030a"],
    ["G", "duplicate tokens are allowed", (m) => (m.generate!.tokens[3] = m.generate!.tokens[2]), "OK"],
    ["G", "end_token = vocab", (m) => (m.generate!.endToken = m.generate!.tokens.length), "BAD_VALUE@0x030b"],
    ["G", "end_token 2^32-1", (m) => (m.generate!.endToken = 0xffffffff), "BAD_VALUE@0x030b"],
    ["G", "end_token = vocab - 1", (m) => (m.generate!.endToken = m.generate!.tokens.length - 1), "OK"],
    ["G", "max_new_tokens 0", (m) => (m.generate!.maxNew = 0), "BAD_VALUE@0x030c"],
    ["G", "max_new_tokens 4097", (m) => (m.generate!.maxNew = 4097), "BAD_VALUE@0x030c"],
    ["G", "max_new_tokens 4096", (m) => (m.generate!.maxNew = 4096), "OK"],
    ["G", "context_length 0", (m) => (m.generate!.context = 0), "BAD_VALUE@0x030d"],
    ["G", "context_length 65537", (m) => (m.generate!.context = 65537), "BAD_VALUE@0x030d"],
    ["G", "tokens_per_chunk 0", (m) => (m.generate!.perChunk = 0), "BAD_VALUE@0x030e"],
    ["G", "tokens_per_chunk 257", (m) => (m.generate!.perChunk = 257), "BAD_VALUE@0x030e"],
    ["G", "tokens_per_chunk 256", (m) => (m.generate!.perChunk = 256), "OK"],
    ["G", "input int32", (m) => (m.inputs[0].dtype = 6), "BAD_VALUE@0x0306"],
    ["G", "input [1..2, 1..ctx]", (m) => (m.inputs[0].dims[0] = [1, 2]), "BAD_VALUE@0x0306"],
    ["G", "input [1, 1..ctx-1]", (m) => (m.inputs[0].dims[1] = [1, 15]), "BAD_VALUE@0x0306"],
    ["G", "input [1, 2..ctx]", (m) => (m.inputs[0].dims[1] = [2, 16]), "BAD_VALUE@0x0306"],
    ["G", "input rank 3", (m) => m.inputs[0].dims.push([1, 1]), "BAD_VALUE@0x0306"],
    ["G", "two inputs", (m) => m.inputs.push(spec("mask", 7, [[1, 1], [1, 16]])), "BAD_VALUE@0x0306"],
    ["G", "output float16", (m) => (m.outputs[0].dtype = 10), "BAD_VALUE@0x0307"],
    ["G", "output vocab-1", (m) => (m.outputs[0].dims[2] = [13, 13]), "BAD_VALUE@0x0307"],
    ["G", "output positions 1..2", (m) => (m.outputs[0].dims[1] = [1, 2]), "BAD_VALUE@0x0307"],
    ["G", "output positions 1..ctx (every position)", (m) => (m.outputs[0].dims[1] = [1, 16]), "OK"],
    ["G", "two outputs", (m) => m.outputs.push(spec("extra")), "BAD_VALUE@0x0307"],
    ["G", "context_length 8, shapes 1..16", (m) => (m.generate!.context = 8), "BAD_VALUE@0x0306"],
    // weights descriptor (§5.4)
    ["T", "plaintext_size WEIGHTS_MAX+1", (m) => (m.plaintextSize = (1n << 46n) + 1n), "TOO_LARGE@0x0311"],
    ["T", "plaintext_size 2^64-1", (m) => (m.plaintextSize = (1n << 64n) - 1n), "TOO_LARGE@0x0311"],
    ["T", "plaintext_size WEIGHTS_MAX", (m) => ((m.plaintextSize = 1n << 46n), (m.chunkSize = 1 << 24), (m.chunkCount = 1n << 22n), (m.files = [{ location: ascii("w"), size: 1n << 46n }])), "OK"],
    ...[0, 1, 1 << 15, (1 << 16) - 1, (1 << 16) + 1, 3 << 16, 1 << 25, 0x80000000, 0xffffffff].map(
      (c): ["T", string, Mutation, string] => ["T", `chunk_size ${c}`, (m) => (m.chunkSize = c), "BAD_VALUE@0x0312"],
    ),
    ["T", "chunk_size 2^24", (m) => (m.chunkSize = 1 << 24), "OK"],
    ["T", "chunk_count + 1", (m) => (m.chunkCount += 1n), "NOT_CANONICAL@0x0313"],
    ["T", "chunk_count 0", (m) => (m.chunkCount = 0n), "NOT_CANONICAL@0x0313"],
    ["T", "chunk_count 2^64-1", (m) => (m.chunkCount = (1n << 64n) - 1n), "NOT_CANONICAL@0x0313"],
    ["T", "empty stream, chunk_count 0", (m) => ((m.plaintextSize = 0n), (m.chunkCount = 0n), (m.files = [{ location: ascii("w"), size: 0n }])), "NOT_CANONICAL@0x0313"],
    ["T", "empty stream, one empty file", (m) => ((m.plaintextSize = 0n), (m.chunkCount = 1n), (m.files = [{ location: ascii("w"), size: 0n }])), "OK"],
    ["T", "empty stream, two empty files", (m) => ((m.plaintextSize = 0n), (m.chunkCount = 1n), (m.files = [{ location: ascii("w"), size: 0n }, { location: ascii("v"), size: 0n }])), "BAD_VALUE@0x0315"],
    ["T", "no files", (m) => (m.files = []), "BAD_LENGTH@0x0315"],
    ["T", "65 files", (m) => (m.files = Array.from({ length: 65 }, (_, i) => ({ location: ascii(`f${i}`), size: 1n }))), "BAD_LENGTH@0x0315"],
    ["T", "64 files", (m) => ((m.files = Array.from({ length: 64 }, (_, i) => ({ location: ascii(`f${i}`), size: i < 63 ? 1n : m.plaintextSize - 63n })))), "OK"],
    ["T", "file sizes short of plaintext_size", (m) => (m.files[0].size -= 1n), "BAD_VALUE@0x0315"],
    ["T", "file sizes over plaintext_size", (m) => (m.files = [...m.files, { location: ascii("more"), size: 1n }]), "BAD_VALUE@0x0315"],
    ["T", "an empty file among others", (m) => (m.files = [...m.files, { location: ascii("more"), size: 0n }]), "BAD_VALUE@0x0315"],
    ["T", "file size 2^64-1 (sum overflows)", (m) => (m.files = [{ location: ascii("a"), size: (1n << 64n) - 1n }, { location: ascii("b"), size: m.plaintextSize + 1n }]), "BAD_VALUE@0x0315"],
    ["T", "duplicate locations", (m) => (m.files = [{ location: ascii("a"), size: 1n }, { location: ascii("a"), size: m.plaintextSize - 1n }]), "BAD_VALUE@0x0315"],
    ["T", "location with leading /", (m) => (m.files[0].location = ascii("/etc/w")), "BAD_VALUE@0x0315"],
    ["T", "location with ..", (m) => (m.files[0].location = ascii("../w")), "BAD_VALUE@0x0315"],
    ["T", "empty location", (m) => (m.files[0].location = new Uint8Array(0)), "BAD_LENGTH@0x0315"],
    ["T", "location of 65", (m) => (m.files[0].location = ascii("w".repeat(65))), "BAD_LENGTH@0x0315"],
    ["T", "location with / and upper case", (m) => (m.files[0].location = ascii("Dir/W.bin")), "OK"],
    // policy (§5.5)
    ["T", "policy_version 0", (m) => (m.policyVersion = 0), "UNSUPPORTED_VERSION@0x0316"],
    ["T", "policy_version 2", (m) => (m.policyVersion = 2), "UNSUPPORTED_VERSION@0x0316"],
    ["T", "extensions out of order", (m) => m.extensions.reverse(), "NOT_CANONICAL@0x0317"],
    ["T", "duplicate extension", (m) => (m.extensions = [m.extensions[0], m.extensions[0]]), "NOT_CANONICAL@0x0317"],
    ["T", "unknown critical 0x8002", (m) => m.extensions.push({ type: 0x8002, data: new Uint8Array(0) }), "UNKNOWN_CRITICAL@0x0317"],
    ["T", "unknown critical 0xffff", (m) => m.extensions.push({ type: 0xffff, data: new Uint8Array(3) }), "UNKNOWN_CRITICAL@0x0317"],
    ["T", "unknown non-critical 0x7fff", (m) => m.extensions.splice(1, 0, { type: 0x7fff, data: new Uint8Array(300) }), "OK"],
    ["T", "no extensions", (m) => (m.extensions = []), "OK"],
    ["T", "egress data of 3 bytes", (m) => (m.extensions[1].data = new Uint8Array(3)), "BAD_LENGTH@0x0317"],
    ["T", "egress data of 5 bytes", (m) => (m.extensions[1].data = new Uint8Array(5)), "BAD_LENGTH@0x0317"],
    ["T", "egress 0", (m) => (m.extensions[1].data = u32(0)), "BAD_VALUE@0x0317"],
    ["T", "egress RESPONSE_MAX+1", (m) => (m.extensions[1].data = u32(16 * MiB + 1)), "BAD_VALUE@0x0317"],
    ["T", "egress RESPONSE_MAX", (m) => (m.extensions[1].data = u32(16 * MiB)), "OK"],
    ["T", "egress 1", (m) => (m.extensions[1].data = u32(1)), "OK"],
    ["T", "extensions longer than the manifest", (m) => (m.extLen = 0xffff), "TRUNCATED@0x0317"],
    ["T", "an extension runs past the list", (m) => ((m.extLen = 4 + 4 + 4 + 3), (m.trailing = new Uint8Array(1))), "TRUNCATED@0x0317"],
    ["T", "extension data past the end", (m) => (m.extensions[1].dataLen = 0xffff), "TRUNCATED@0x0317"],
    ["T", "a one-byte extension list", (m) => ((m.extensions = []), (m.extLen = 1), (m.trailing = new Uint8Array(1))), "TRUNCATED@0x0317"],
    // the structure (§1.3)
    ["T", "a trailing byte", (m) => (m.trailing = new Uint8Array(1)), "TRAILING_BYTES@0x0300"],
    ["G", "trailing bytes", (m) => (m.trailing = ascii("more")), "TRAILING_BYTES@0x0300"],
  ];

  for (const [base, what, mutate, want] of cases) it(`${base === "T" ? "tensor" : "generate"}: ${what} → ${want}`, () => check(base, what, mutate, want));

  it("truncated at every length: TRUNCATED (never a success, never another code)", () => {
    const bytes = encodeRawManifest(T);
    for (let n = 0; n < bytes.length; n++) {
      const cut = bytes.subarray(0, n);
      const got = load(cut, graphT);
      expect(codeOf(got), `${n} bytes`).toBe("TRUNCATED");
      expect(codeOf(got)).toBe(hostOutcome(() => F.decodeManifest(cut)));
    }
  });

  it("MANIFEST_MAX: a manifest of exactly 1 MiB loads, one byte more is TOO_LARGE", () => {
    // A generate manifest padded to the byte with its token table.
    const m = clone(G);
    const vocab = 16384;
    const tokens = Array.from({ length: vocab }, (_, i) => new Uint8Array(63).fill(0x61 + (i % 26)).map((b, j) => (j < 2 ? [i & 0xff, i >> 8][j] : b)));
    m.generate!.tokens = tokens;
    m.outputs[0].dims[2] = [vocab, vocab];
    const size = () => encodeRawManifest(m).length;
    let excess = size() - MiB;
    for (let i = 0; excess > 0; i++) {
      const cut = Math.min(excess, 62);
      m.generate!.tokens[i] = m.generate!.tokens[i].subarray(0, 63 - cut);
      excess -= cut;
    }
    expect(size()).toBe(MiB);
    expect(load(encodeRawManifest(m), graphG)).toBe("OK");
    m.trailing = new Uint8Array(1);
    expect(load(encodeRawManifest(m), graphG)).toBe("TOO_LARGE@0x0301");
  });
});

describe("boundary values in every integer and length field, signed again: the loader and the host agree", () => {
  const u8s = [0, 1, 2, 8, 9, 16, 17, 32, 33, 63, 64, 65, 127, 128, 254, 255];
  const u16s = [0, 1, 255, 256, 257, 4096, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff];
  const u32s = [0, 1, 2, 13, 14, 255, 256, 4096, 4097, 65535, 65536, 65537, 1 << 24, (1 << 24) + 1, 0x7fffffff, 0x80000000, 0xffffffff];
  const u64s = [0n, 1n, 2n, 1000n, 1n << 32n, (1n << 46n) - 1n, 1n << 46n, (1n << 46n) + 1n, 1n << 53n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n];
  const fields: ["T" | "G", string, number[] | bigint[], (m: RawManifest, v: any) => void][] = [
    ["T", "name length", u8s, (m, v) => (m.nameLen = v)],
    ["T", "version", u64s, (m, v) => (m.version = v)],
    ["T", "graph_size", u64s, (m, v) => (m.graphSize = v)],
    ["T", "input_count", u8s, (m, v) => (m.inputCount = v)],
    ["T", "input name length", u8s, (m, v) => (m.inputs[0].name = new Uint8Array(v).fill(0x78))],
    ["T", "input dtype", u8s, (m, v) => (m.inputs[0].dtype = v)],
    ["T", "input rank", u8s, (m, v) => (m.inputs[0].rank = v)],
    ["T", "input dim min", u32s, (m, v) => (m.inputs[0].dims[0][0] = v)],
    ["T", "input dim max", u32s, (m, v) => (m.inputs[0].dims[0][1] = v)],
    ["T", "output_count", u8s, (m, v) => (m.outputCount = v)],
    ["T", "output rank", u8s, (m, v) => (m.outputs[0].rank = v)],
    ["T", "output dim max", u32s, (m, v) => (m.outputs[0].dims[0][1] = v)],
    ["T", "mode", u8s, (m, v) => (m.mode = v)],
    ["G", "vocab_size", u32s, (m, v) => (m.generate!.vocab = v)],
    ["G", "token length", u8s, (m, v) => (m.generate!.tokens[1] = new Uint8Array(v).fill(0x7a))],
    ["G", "end_token", u32s, (m, v) => (m.generate!.endToken = v)],
    ["G", "max_new_tokens", u32s, (m, v) => (m.generate!.maxNew = v)],
    ["G", "context_length", u32s, (m, v) => (m.generate!.context = v)],
    ["G", "tokens_per_chunk", u16s, (m, v) => (m.generate!.perChunk = v)],
    ["G", "logits positions max", u32s, (m, v) => (m.outputs[0].dims[1][1] = v)],
    ["T", "plaintext_size", u64s, (m, v) => (m.plaintextSize = v)],
    ["T", "chunk_size", u32s, (m, v) => (m.chunkSize = v)],
    ["T", "chunk_count", u64s, (m, v) => (m.chunkCount = v)],
    ["T", "file_count", u8s, (m, v) => (m.fileCount = v)],
    ["T", "location length", u8s, (m, v) => (m.files[0].location = new Uint8Array(v).fill(0x77))],
    ["T", "file size", u64s, (m, v) => (m.files[0].size = v)],
    ["T", "policy_version", u16s, (m, v) => (m.policyVersion = v)],
    ["T", "extensions length", u16s, (m, v) => (m.extLen = v)],
    ["T", "extension type", u16s, (m, v) => (m.extensions[0].type = v)],
    ["T", "extension data length", [...u16s, 3, 4, 5], (m, v) => (m.extensions[0].dataLen = v)],
    ["T", "egress data length", [...u16s, 3, 4, 5], (m, v) => (m.extensions[1].dataLen = v)],
  ];

  for (const [base, field, values, set] of fields) {
    it(`${field}`, () => {
      const seen = new Set<string>();
      for (const v of values) {
        const m = clone(base === "T" ? T : G);
        set(m, v);
        const bytes = encodeRawManifest(m);
        const got = load(bytes, base === "T" ? graphT : graphG);
        const host = hostOutcome(() => F.decodeManifest(bytes));
        seen.add(got);
        // GRAPH_MISMATCH is decided after parsing, by the loader alone.
        if (got !== "GRAPH_MISMATCH@0x0000") expect(codeOf(got), `${field} = ${v} (loader ${got}, host ${host})`).toBe(host);
        else expect(host, `${field} = ${v}`).toBe("OK");
      }
      expect(seen.size, `the sweep reaches more than one outcome: ${[...seen]}`).toBeGreaterThan(1);
      void fieldOf;
    });
  }

  it("random byte values in each field position keep the loader and the host in agreement", () => {
    const bytes = encodeRawManifest(T);
    const runs = SLOW ? 4 : 1;
    for (let round = 0; round < runs; round++) {
      for (let i = 8; i < bytes.length; i++) {
        const b = bytes.slice();
        b[i] = (b[i] + 1 + ((i * 131 + round * 71) % 255)) & 0xff;
        const got = load(b, graphT);
        const host = hostOutcome(() => F.decodeManifest(b));
        if (got === "GRAPH_MISMATCH@0x0000") expect(host, `byte ${i} = ${b[i]}`).toBe("OK");
        else expect(codeOf(got), `byte ${i} = ${b[i]}: loader ${got}, host ${host}`).toBe(host);
      }
    }
  });
});
