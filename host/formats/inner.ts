// Inner requests, inner responses and stream chunks (SPEC §7.4–§7.6, §8.4) codecs. Trust status: these are PLAINTEXT — encoded/decoded only by the client (data owner's machine) and the test server; error messages withhold their values.
import {
  GENERATE_LIMITS,
  KIND,
  LIMITS,
  STREAM_TEXT_MAX,
  TEMPERATURE_MILLI_MAX,
} from "./constants.ts";
import type { Manifest } from "./manifest.ts";
import { checkSchema, readTensorList, writeTensorList, type Tensor } from "./tensor.ts";
import { Reader, Writer, validated } from "./wire.ts";

export interface TensorRequest {
  kind: 1;
  inputs: Tensor[];
}

export interface GenerateRequest {
  kind: 2;
  /** UTF-8 bytes, 1..PROMPT_MAX. */
  prompt: Uint8Array;
  maxNewTokens: number;
  /** 0 = greedy; else temperature × 1000, ≤ 10000. */
  temperatureMilli: number;
  /** 0 = no limit; else ≤ vocab_size. */
  topK: number;
  /** Present exactly when has_seed = 1. */
  seed?: bigint;
}

export type InnerRequest = TensorRequest | GenerateRequest;

export type InnerResponse =
  | { kind: 1; outputs: Tensor[] }
  | { kind: 2; text: Uint8Array; tokens: number; stop: 1 | 2 };

export interface StreamChunk {
  tokens: number;
  text: Uint8Array;
  /** 0 in non-final chunks; 1 end, 2 limit in the final one. */
  stop: 0 | 1 | 2;
}

const REQ = "inner_request";
const RESP = "inner_response";
const CHUNK = "stream_chunk";
const U64_MAX = (1n << 64n) - 1n;

/**
 * Decodes an inner request. With `program`, also applies the checks that need the manifest:
 * the kind matches the mode, the §7.3 schema, max_new_tokens and top_k against the spec.
 */
export function decodeInnerRequest(bytes: Uint8Array, program?: Manifest): InnerRequest {
  const r: Reader = new Reader(bytes, REQ, { secret: true });
  r.magic(KIND.REQUEST);
  const kind = r.u8("kind");
  let req: InnerRequest;
  if (kind === 1) {
    req = { kind: 1, inputs: readTensorList(r, "inputs") };
    r.end();
  } else if (kind === 2) {
    const prompt = r.vec("prompt", 1, LIMITS.PROMPT_MAX);
    const maxNewTokens = r.ranged("max_new_tokens", "u32", 1, GENERATE_LIMITS.MAX_NEW_TOKENS);
    const temperatureMilli = r.ranged("temperature_milli", "u32", 0, TEMPERATURE_MILLI_MAX);
    const topK = r.ranged("top_k", "u32", 0, LIMITS.VOCAB_MAX);
    const hasSeed = r.ranged("has_seed", "u8", 0, 1);
    const seed = r.u64("seed");
    if (hasSeed === 0 && seed !== 0n) r.fail("BAD_VALUE", "seed", "must be 0 when has_seed = 0");
    r.end();
    req = { kind: 2, prompt, maxNewTokens, temperatureMilli, topK };
    if (hasSeed) req.seed = seed;
  } else r.fail("BAD_VALUE", "kind", "not 1 (tensor) or 2 (generate)");
  if (program) checkRequestAgainst(r, req, program);
  return req;
}

function checkRequestAgainst(r: Reader, req: InnerRequest, m: Manifest): void {
  if (req.kind !== m.mode) r.fail("SCHEMA_VIOLATION", "kind", `request kind does not match the program's mode ${m.mode}`);
  if (req.kind === 1) checkSchema(req.inputs, m.inputs);
  else if (m.generate) {
    if (req.maxNewTokens > m.generate.maxNewTokens) r.fail("BAD_VALUE", "max_new_tokens", "over the program's max_new_tokens");
    if (req.topK > m.generate.tokens.length) r.fail("BAD_VALUE", "top_k", "over the program's vocab_size");
  }
}

export function encodeInnerRequest(req: InnerRequest, opts: { validate?: boolean } = {}): Uint8Array {
  const w: Writer = new Writer(REQ).magic(KIND.REQUEST).u8(req.kind, "kind");
  if (req.kind === 1) writeTensorList(w, req.inputs, "inputs");
  else {
    const seed = req.seed ?? 0n;
    if (seed < 0n || seed > U64_MAX) w.fail("BAD_VALUE", "seed", "not a u64");
    w.vec(req.prompt, 1, LIMITS.PROMPT_MAX, "prompt")
      .u32(req.maxNewTokens, "max_new_tokens")
      .u32(req.temperatureMilli, "temperature_milli")
      .u32(req.topK, "top_k")
      .u8(req.seed === undefined ? 0 : 1, "has_seed")
      .u64(seed, "seed");
  }
  const out = w.finish();
  return opts.validate === false ? out : validated(out, (b) => decodeInnerRequest(b));
}

/** §7.6, §13: the whole InnerResponse plaintext is at most RESPONSE_MAX bytes (TOO_LARGE). */
export function decodeInnerResponse(bytes: Uint8Array): InnerResponse {
  const r: Reader = new Reader(bytes, RESP, { secret: true });
  if (bytes.length > LIMITS.RESPONSE_MAX) r.fail("TOO_LARGE", "", `${bytes.length} bytes exceed RESPONSE_MAX ${LIMITS.RESPONSE_MAX}`);
  r.magic(KIND.RESPONSE);
  const kind = r.u8("kind");
  let res: InnerResponse;
  if (kind === 1) res = { kind: 1, outputs: readTensorList(r, "outputs") };
  else if (kind === 2) {
    const text = r.vec("text", 0, LIMITS.RESPONSE_MAX);
    const tokens = r.u32("tokens");
    const stop = r.ranged("stop", "u8", 1, 2) as 1 | 2;
    res = { kind: 2, text, tokens, stop };
  } else r.fail("BAD_VALUE", "kind", "not 1 (tensors) or 2 (text)");
  r.end();
  return res;
}

export function encodeInnerResponse(res: InnerResponse, opts: { validate?: boolean } = {}): Uint8Array {
  const w: Writer = new Writer(RESP).magic(KIND.RESPONSE).u8(res.kind, "kind");
  if (res.kind === 1) writeTensorList(w, res.outputs, "outputs");
  else w.vec(res.text, 0, LIMITS.RESPONSE_MAX, "text").u32(res.tokens, "tokens").u8(res.stop, "stop");
  const out = w.finish();
  return opts.validate === false ? out : validated(out, decodeInnerResponse);
}

/**
 * §8.4 StreamChunk. `stop` is checked here only for its range (0..2); whether it must be 0 or
 * 1..2 depends on the chunk's final flag, which the stream opener knows.
 */
export function decodeStreamChunk(bytes: Uint8Array): StreamChunk {
  const r: Reader = new Reader(bytes, CHUNK, { secret: true });
  r.magic(KIND.STREAM_CHUNK);
  const tokens = r.u32("tokens");
  const text = r.vec("text", 0, STREAM_TEXT_MAX);
  const stop = r.ranged("stop", "u8", 0, 2) as 0 | 1 | 2;
  r.end();
  return { tokens, text, stop };
}

export function encodeStreamChunk(c: StreamChunk, opts: { validate?: boolean } = {}): Uint8Array {
  const out = new Writer(CHUNK)
    .magic(KIND.STREAM_CHUNK)
    .u32(c.tokens, "tokens")
    .vec(c.text, 0, STREAM_TEXT_MAX, "text")
    .u8(c.stop, "stop")
    .finish();
  return opts.validate === false ? out : validated(out, decodeStreamChunk);
}
