// npm run bench:crypto [-- --json] [--rounds N]
// The loader's crypto core (the test build of loader.wasm: same sources, same asc options,
// with each primitive exported) side by side with OpenSSL (node:crypto), libsodium
// (libsodium-wrappers, libsodium compiled to WebAssembly) and @noble/*, in one process.
// Ours runs with data already in wasm memory, as the loader does.
import crypto from "node:crypto";
import sodium from "libsodium-wrappers";
// The standard build lacks crypto_hash_sha256; the sumo build is the same libsodium with it.
import sodiumSumo from "libsodium-wrappers-sumo";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { sha256 as nobleSha256, sha512 as nobleSha512 } from "@noble/hashes/sha2.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { loadTestLoader } from "../test/helpers/wasm.ts";
import { type Case, type CaseResult, pairedRatio, printTable, runCase } from "./harness.ts";

const args = process.argv.slice(2);
const json = args.includes("--json");
const roundsArg = args.indexOf("--rounds");
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : 9;

await sodium.ready;
await sodiumSumo.ready;
const w = loadTestLoader();
const x = w.exports;
const rnd = (n: number) => new Uint8Array(crypto.randomBytes(n));

const KiB = 1024;
const MiB = 1024 * KiB;

function aeadCase(size: number, withSlow: boolean): Case {
  w.reset();
  const key = rnd(32);
  const nonce = rnd(12);
  const pt = rnd(size);
  const sealed = new Uint8Array(chacha20poly1305(key, nonce).encrypt(pt));
  const ct = sealed.subarray(0, size);
  const tag = sealed.subarray(size);
  const kp = w.put(key);
  const np = w.put(nonce);
  const src = w.put(sealed);
  const dst = w.alloc(size); // allocated once; every open streams into it
  const keyObj = Buffer.from(key);
  const nonceBuf = Buffer.from(nonce);
  const contenders = [
    {
      name: "loader",
      run: () => {
        if (x.aead_open(kp, np, 0, 0, src, size + 16, dst) !== 0) throw new Error("loader open failed");
      },
    },
    {
      name: "openssl",
      run: () => {
        const d = crypto.createDecipheriv("chacha20-poly1305", keyObj, nonceBuf, { authTagLength: 16 });
        d.setAuthTag(tag);
        d.update(ct);
        d.final();
      },
    },
  ];
  if (withSlow) {
    contenders.push(
      { name: "libsodium", run: () => void sodium.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed, null, nonce, key) },
      { name: "noble", run: () => void chacha20poly1305(key, nonce).decrypt(sealed) },
    );
  }
  const label = size >= MiB ? `${size / MiB} MiB` : `${size / KiB} KiB`;
  return { name: `chacha20-poly1305 open ${label}`, bytes: size, contenders };
}

function hashCase(name: "sha256" | "sha512"): Case {
  w.reset();
  const size = MiB;
  const msg = rnd(size);
  const p = w.put(msg);
  const out = w.alloc(64);
  const noble = name === "sha256" ? nobleSha256 : nobleSha512;
  return {
    name: `${name} 1 MiB`,
    bytes: size,
    contenders: [
      { name: "loader", run: () => x[name](p, size, out) },
      { name: "openssl", run: () => void crypto.createHash(name).update(msg).digest() },
      { name: "libsodium", run: () => void (name === "sha256" ? sodiumSumo.crypto_hash_sha256(msg) : sodium.crypto_hash(msg)) },
      { name: "noble", run: () => void noble(msg) },
    ],
  };
}

function ed25519Case(): Case {
  w.reset();
  const sk = rnd(32);
  const pk = ed25519.getPublicKey(sk);
  const msg = rnd(64);
  const sig = ed25519.sign(msg, sk);
  const pp = w.put(pk);
  const mp = w.put(msg);
  const sp = w.put(sig);
  const keyObj = crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(pk).toString("base64url") }, format: "jwk" });
  return {
    name: "ed25519 verify",
    contenders: [
      {
        name: "loader",
        run: () => {
          if (x.ed25519_verify(pp, mp, msg.length, sp) !== 0) throw new Error("loader verify failed");
        },
      },
      { name: "openssl", run: () => void crypto.verify(null, msg, keyObj, sig) },
      { name: "libsodium", run: () => void sodium.crypto_sign_verify_detached(sig, msg, pk) },
      { name: "noble", run: () => void ed25519.verify(sig, msg, pk) },
    ],
  };
}

function x25519Case(): Case {
  w.reset();
  const sk = rnd(32);
  const peer = x25519.getPublicKey(rnd(32));
  const skp = w.put(sk);
  const pkp = w.put(peer);
  const out = w.alloc(32);
  const privateKey = crypto.createPrivateKey({
    key: { kty: "OKP", crv: "X25519", d: Buffer.from(sk).toString("base64url"), x: Buffer.from(x25519.getPublicKey(sk)).toString("base64url") },
    format: "jwk",
  });
  const publicKey = crypto.createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(peer).toString("base64url") }, format: "jwk" });
  return {
    name: "x25519",
    contenders: [
      { name: "loader", run: () => void x.x25519(out, skp, pkp) },
      { name: "openssl", run: () => void crypto.diffieHellman({ privateKey, publicKey }) },
      { name: "libsodium", run: () => void sodium.crypto_scalarmult(sk, peer) },
      { name: "noble", run: () => void x25519.getSharedSecret(sk, peer) },
    ],
  };
}

// Each case is built right before it runs: the harness's wasm allocator is reset per case.
const plan: Array<[string, () => Case]> = [
  ["aead64k", () => aeadCase(64 * KiB, true)],
  ["aead1m", () => aeadCase(MiB, true)],
  ["aead64m", () => aeadCase(64 * MiB, false)],
  ["ed25519", ed25519Case],
  ["x25519", x25519Case],
  ["sha256", () => hashCase("sha256")],
  ["sha512", () => hashCase("sha512")],
];
const results = new Map<string, CaseResult>();
for (const [key, make] of plan) {
  const c = make();
  results.set(key, runCase(c, rounds, key === "aead64m" ? 0.3 : 0.05));
}

console.log(`crypto core vs anchors, median of ${rounds} paired rounds (ratios: anchor time / loader time, >1 = loader faster)`);
printTable([...results.values()], ["loader", "openssl", "libsodium", "noble"], "loader");

if (json) {
  const r = (k: string, anchor: string) => Number(pairedRatio(results.get(k)!, "loader", anchor).toFixed(3));
  console.log(
    JSON.stringify({
      aead_open_1mib_vs_libsodium: r("aead1m", "libsodium"),
      aead_open_1mib_vs_openssl: r("aead1m", "openssl"),
      aead_open_64mib_vs_openssl: r("aead64m", "openssl"),
      ed25519_verify_vs_libsodium: r("ed25519", "libsodium"),
      x25519_vs_libsodium: r("x25519", "libsodium"),
      sha512_1mib_vs_libsodium: r("sha512", "libsodium"),
      sha256_1mib_vs_libsodium: r("sha256", "libsodium"),
    }),
  );
}
