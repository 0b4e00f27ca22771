// npm run bench:request [-- --json]
// Per-request cost of the loader's request path — open an encapsulated request (HPKE
// SetupBaseR + open, SPEC §8.1), check it, and seal the response (RFC 9458 §4.4, SPEC §8.3)
// — beside a plain @hpke/core open and seal of the same sizes, in one process; and the same
// path for a request in a session (SPEC §8.5), which skips the key exchange.
// The loader runs a tensor program whose accelerator echoes its input, so the accelerator
// costs next to nothing; the canonical-ABI copies in and out are included.
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import * as F from "../host/formats/index.ts";
import { LoaderInstance } from "../host/trusted/loader-instance.ts";
import { WeightsMeasure } from "../test/helpers/measure.ts";
import { median } from "./harness.ts";

const json = process.argv.includes("--json");
const ROUNDS = 15;
const PER_ROUND = 200;
const PAYLOAD = 1024; // bytes of tensor data per request

const measure = new WeightsMeasure();
const acc = {
  createProgram() {},
  uploadWeights: (program: number, _offset: bigint, data: Uint8Array) => measure.upload(program, data),
  measureWeights: (program: number) => measure.finish(program),
  finishWeights() {},
  run: (_p: number, inputs: Uint8Array) => {
    const list = F.decodeTensorList(inputs);
    return F.encodeTensorList([{ ...list[0], name: "y" }]);
  },
  dropProgram() {},
};

// One loader with one tensor program, ready to serve.
const loader = LoaderInstance.create(readFileSync("build/loader.wasm"), { accelerator: acc });
const reviewer = F.generateReviewerKey();
const report = loader.init(F.encodeTrustConfig({ threshold: 1, reviewers: [reviewer.publicKey] }), randomBytes(32));
const dataKey = randomBytes(32);
const keyId = randomBytes(16);
const sealed: Uint8Array[] = [];
const weights = randomBytes(1024);
const sw = await F.sealWeights({ files: [{ location: "w.bin", size: weights.length, source: [weights] }], dataKey, keyId, out: (b) => void sealed.push(b.slice()) });
const graph = randomBytes(256);
const n = PAYLOAD / 4;
const m = F.buildManifest({
  name: "echo",
  version: 1,
  graph,
  inputs: [{ name: "x", dtype: 1, dims: [{ min: n, max: n }] }],
  outputs: [{ name: "y", dtype: 1, dims: [{ min: n, max: n }] }],
  weights: sw.descriptor,
});
loader.unwrapKey(F.wrapKey({ report, keyId, dataKey }));
const program = loader.loadProgram(m.bytes, F.assembleBundle([F.signManifest(m.bytes, reviewer)]), graph);
for await (const piece of F.splitSealedWeights([Buffer.concat(sealed)])) loader.loadWeights(program, piece);

const inner = F.encodeInnerRequest({ kind: 1, inputs: [{ name: "x", dtype: 1, dims: [n], data: randomBytes(PAYLOAD) }] });
const fresh = () => F.sealRequest({ loader: report, programDigest: m.digest, request: inner });
// A session (SPEC §8.5), opened once: its requests skip the key exchange.
const opening = F.openSession({ loader: report, programDigest: m.digest });
const session = opening.accept(loader.sessionOpen(program, opening.bytes));

// @hpke/core with the same suite and sizes.
const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
const rkp = await suite.kem.generateKeyPair();
const info = randomBytes(55);
const hpkeSeal = async () => {
  const s = await suite.createSenderContext({ recipientPublicKey: rkp.publicKey, info });
  return { enc: s.enc, ct: await s.seal(inner) };
};
const hpkeOpen = async (enc: ArrayBuffer, ct: ArrayBuffer) => {
  const r = await suite.createRecipientContext({ recipientKey: rkp.privateKey, enc, info });
  return r.open(ct);
};

const us = (t0: bigint, count: number) => Number(process.hrtime.bigint() - t0) / 1e3 / count;
const loaderUs: number[] = [];
const sessionUs: number[] = [];
const sealUs: number[] = [];
const openUs: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const reqs = Array.from({ length: PER_ROUND }, fresh); // unique enc each: no replays
  let t0 = process.hrtime.bigint();
  for (const q of reqs) loader.infer(program, q.bytes);
  loaderUs.push(us(t0, PER_ROUND));
  const sreqs = Array.from({ length: PER_ROUND }, () => session.seal(inner).bytes);
  t0 = process.hrtime.bigint();
  for (const q of sreqs) loader.infer(program, q);
  sessionUs.push(us(t0, PER_ROUND));
  t0 = process.hrtime.bigint();
  const made = [];
  for (let i = 0; i < PER_ROUND; i++) made.push(await hpkeSeal());
  sealUs.push(us(t0, PER_ROUND));
  t0 = process.hrtime.bigint();
  for (const { enc, ct } of made) await hpkeOpen(enc, ct);
  openUs.push(us(t0, PER_ROUND));
}
// Check the last response really opens, so the bench measures working requests.
const check = fresh();
const res = check.response.openResponse(loader.infer(program, check.bytes));
if (res.kind !== 1 || res.outputs[0].data.length !== PAYLOAD) throw new Error("bench response did not open");
const scheck = session.seal(inner);
const sres = scheck.openResponse(loader.infer(program, scheck.bytes));
if (sres.kind !== 1 || sres.outputs[0].data.length !== PAYLOAD) throw new Error("bench session response did not open");

const ratios = loaderUs.map((l, i) => l / (openUs[i] + sealUs[i]));
const row = (name: string, v: number[]) => `| ${name.padEnd(52)} | ${median(v).toFixed(1).padStart(8)} |`;
console.log(`per-request cost, ${PAYLOAD}-byte tensor, median of ${ROUNDS} rounds × ${PER_ROUND} requests`);
console.log(`| ${"path".padEnd(52)} | ${"µs".padStart(8)} |`);
console.log(`|${"-".repeat(54)}|${"-".repeat(10)}|`);
console.log(row("loader: open request + check + seal response (infer)", loaderUs));
console.log(row("loader: the same for a session request (§8.5)", sessionUs));
console.log(row("@hpke/core: open (SetupBaseR + Open)", openUs));
console.log(row("@hpke/core: seal (SetupBaseS + Seal)", sealUs));
console.log(`loader / (@hpke/core open + seal), median of paired rounds: ${median(ratios).toFixed(2)}×`);
if (json) {
  console.log(
    JSON.stringify({
      request_open_seal_us_p50: Number(median(loaderUs).toFixed(1)),
      session_request_open_seal_us_p50: Number(median(sessionUs).toFixed(1)),
      hpke_core_open_us_p50: Number(median(openUs).toFixed(1)),
      hpke_core_seal_us_p50: Number(median(sealUs).toFixed(1)),
      request_vs_hpke_core_open_plus_seal: Number(median(ratios).toFixed(3)),
    }),
  );
}
