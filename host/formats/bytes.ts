// Byte helpers for the host's SPEC.md formats. UNTRUSTED host code: handles only public bytes or caller-owned buffers.

export const ascii = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) throw new TypeError(`ascii: non-ASCII character at ${i}`);
    out[i] = c;
  }
  return out;
};

export const concat = (...parts: Uint8Array[]): Uint8Array => {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

/** Constant-time for equal lengths; lengths are public everywhere we use it. */
export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
};

/** Bytewise lexicographic order, as §3 requires for reviewer keys. */
export const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
};

export const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString("hex");

export const fromHex = (s: string): Uint8Array => {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new TypeError("fromHex: not an even-length hex string");
  return new Uint8Array(Buffer.from(s, "hex"));
};

export const wipe = (...bufs: (Uint8Array | undefined)[]): void => {
  for (const b of bufs) b?.fill(0);
};

/** n as an 11-byte big-endian integer followed by the flag byte: the nonce suffix of §8.4 and §9. */
export const counterNonce = (i: number, final: boolean): Uint8Array => {
  const out = new Uint8Array(12);
  let v = BigInt(i);
  for (let k = 10; k >= 0 && v > 0n; k--) {
    out[k] = Number(v & 0xffn);
    v >>= 8n;
  }
  out[11] = final ? 1 : 0;
  return out;
};

export const xorInto = (dst: Uint8Array, src: Uint8Array): Uint8Array => {
  for (let i = 0; i < dst.length; i++) dst[i] ^= src[i];
  return dst;
};
