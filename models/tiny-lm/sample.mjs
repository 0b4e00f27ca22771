#!/usr/bin/env node
// Generate text with models/tiny-lm/model.onnx + vocab.json on onnxruntime-node.
//
//   node models/tiny-lm/sample.mjs --prompt "Call me"                 # greedy
//   node models/tiny-lm/sample.mjs --prompt "Call me" --temperature 0.8 --seed 7
//   node models/tiny-lm/sample.mjs --length 400                       # empty prompt: start of a chapter
//
// Options: --prompt TEXT (default ""), --temperature T (default 0 = greedy argmax),
// --length N characters to generate (default 200), --seed N (sampling PRNG, default 1),
// --model PATH, --vocab PATH (default: next to this file).
// Generation stops early at the end token (id 0). Output: prompt + continuation.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';

const here = dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const opts = {
    prompt: '',
    temperature: 0,
    length: 200,
    seed: 1,
    model: join(here, 'model.onnx'),
    vocab: join(here, 'vocab.json'),
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const eq = key.indexOf('=');
    const name = (eq >= 0 ? key.slice(0, eq) : key).replace(/^--/, '');
    if (!(name in opts) || !key.startsWith('--')) {
      throw new Error(`unknown option ${key} (options: --prompt --temperature --length --seed --model --vocab)`);
    }
    const value = eq >= 0 ? key.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new Error(`${key} needs a value`);
    opts[name] = typeof opts[name] === 'number' ? Number(value) : value;
    if (typeof opts[name] === 'number' && !Number.isFinite(opts[name])) throw new Error(`${key}: not a number`);
  }
  return opts;
}

// mulberry32: small deterministic PRNG so --seed reproduces a sample.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Character tokenizer: every vocabulary entry except the end token is one character.
// The prompt gets the same light normalisation as the training text (CRLF -> LF,
// runs of spaces/tabs -> one space).
function encode(text, tokens, endToken) {
  const index = new Map();
  tokens.forEach((t, i) => { if (i !== endToken) index.set(t, i); });
  const ids = [];
  const unknown = new Set();
  for (const ch of text.replace(/\r\n?/g, '\n').replace(/[ \t]+/g, ' ')) {
    const id = index.get(ch);
    if (id === undefined) unknown.add(ch);
    else ids.push(id);
  }
  if (unknown.size) throw new Error(`prompt has characters outside the vocabulary: ${JSON.stringify([...unknown].join(''))}`);
  return ids;
}

function pick(logits, temperature, rand) {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (!(temperature > 0)) return best;
  const probs = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp((logits[i] - logits[best]) / temperature);
    sum += probs[i];
  }
  let r = rand() * sum;
  for (let i = 0; i < probs.length; i++) {
    r -= probs[i];
    if (r <= 0) return i;
  }
  return probs.length - 1;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const vocab = JSON.parse(readFileSync(opts.vocab, 'utf8'));
  const { tokens, end_token: endToken, context_length: context } = vocab;
  if (vocab.logits !== 'last') throw new Error('sample.mjs expects last-position logits');

  const session = await ort.InferenceSession.create(opts.model, {
    intraOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const rand = prng(opts.seed);
  const prompt = encode(opts.prompt, tokens, endToken);
  // An empty prompt starts right after an end token, i.e. at the start of a chapter.
  const ids = prompt.length ? [...prompt] : [endToken];
  let out = '';
  for (let n = 0; n < opts.length; n++) {
    const window = ids.slice(-context);
    const input = new ort.Tensor('int64', BigInt64Array.from(window, BigInt), [1, window.length]);
    const result = await session.run({ [vocab.input]: input });
    const logits = result[vocab.output].data; // Float32Array [1 * 1 * V]
    const next = pick(logits, opts.temperature, rand);
    if (next === endToken) break;
    ids.push(next);
    out += tokens[next];
  }
  process.stdout.write(opts.prompt + out + '\n');
}

main().catch((err) => {
  console.error(err.message ?? err);
  process.exit(1);
});
