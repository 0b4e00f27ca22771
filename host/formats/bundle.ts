// SignatureBundle (SPEC §6) encoder and strict decoder. UNTRUSTED host code: public keys and signatures only.
import { KIND } from "./constants.ts";
import { Reader, Writer, validated } from "./wire.ts";

export interface SignatureEntry {
  publicKey: Uint8Array;
  signature: Uint8Array;
}

export type SignatureBundle = SignatureEntry[];

const S = "signature_bundle";
export const MAX_SIGNATURES = 32;

export function decodeSignatureBundle(bytes: Uint8Array): SignatureBundle {
  const r: Reader = new Reader(bytes, S);
  r.magic(KIND.SIGNATURES);
  const count = r.ranged("count", "u8", 1, MAX_SIGNATURES, "BAD_LENGTH");
  const entries: SignatureEntry[] = [];
  for (let i = 0; i < count; i++) {
    const publicKey = r.fixed(`entries[${i}].public_key`, 32);
    const signature = r.fixed(`entries[${i}].signature`, 64);
    entries.push({ publicKey, signature });
  }
  r.end();
  return entries;
}

export function encodeSignatureBundle(entries: SignatureBundle, opts: { validate?: boolean } = {}): Uint8Array {
  const w: Writer = new Writer(S).magic(KIND.SIGNATURES);
  if (entries.length > 0xff) w.fail("BAD_LENGTH", "count", `${entries.length} entries is not in 1..${MAX_SIGNATURES}`);
  w.u8(entries.length, "count");
  entries.forEach((e, i) => w.fixed(e.publicKey, 32, `entries[${i}].public_key`).fixed(e.signature, 64, `entries[${i}].signature`));
  const out = w.finish();
  return opts.validate === false ? out : validated(out, decodeSignatureBundle);
}
