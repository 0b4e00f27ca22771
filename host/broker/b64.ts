// Strict base64url (RFC 4648 §5, no padding) for the broker's JSON API. Public values only.
import { BrokerError } from "./errors.ts";

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Strict base64url (no padding, canonical) into bytes; BAD_REQUEST naming the field otherwise. */
export function fromBase64url(s: unknown, field: string, maxBytes: number): Uint8Array {
  if (typeof s !== "string") throw new BrokerError("BAD_REQUEST", `${field} must be a base64url string`);
  if (s.length > Math.ceil((maxBytes * 4) / 3) || !B64URL.test(s)) throw new BrokerError("BAD_REQUEST", `${field} is not base64url of at most ${maxBytes} bytes`);
  const b = Buffer.from(s, "base64url");
  if (b.toString("base64url") !== s) throw new BrokerError("BAD_REQUEST", `${field} is not canonical base64url`);
  return new Uint8Array(b);
}

export const toBase64url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString("base64url");
