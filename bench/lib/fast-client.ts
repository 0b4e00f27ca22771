// A what-if client for bench:infer: the same §8.1 encapsulated request as host/formats
// sealRequest (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305),
// but with X25519 from node:crypto (OpenSSL) instead of @noble/curves, to show in the same
// run what the client's sealing would cost with it. The loader is the judge: it refuses
// anything that is not a correct encapsulation, so a working response proves the bytes right.
// Everything else (key schedule, AEAD, response opening) is host/formats' own code.
import { createPublicKey, diffieHellman, generateKeyPairSync } from "node:crypto";
import * as F from "../../host/formats/index.ts";

const EMPTY = new Uint8Array(0);
const b64url = (b: Uint8Array) => Buffer.from(b).toString("base64url");

export function fastSealer(report: Uint8Array, programDigest: Uint8Array): (request: F.InnerRequest | Uint8Array) => { bytes: Uint8Array; response: F.ResponseContext } {
  const { keyId, publicKey: pkR } = F.loaderKeyFromReport(report);
  const peer = createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64url(pkR) }, format: "jwk" });
  const hdr = new Uint8Array(7);
  const dv = new DataView(hdr.buffer);
  dv.setUint8(0, keyId);
  dv.setUint16(1, F.SUITE.KEM);
  dv.setUint16(3, F.SUITE.KDF);
  dv.setUint16(5, F.SUITE.AEAD);
  const info = F.requestInfo(hdr, programDigest);
  // RFC 9180 §5.1 KeySchedule, mode_base: the parts that do not depend on the shared secret.
  const pskIdHash = F.labeledExtract(F.HPKE_SUITE_ID, EMPTY, "psk_id_hash", EMPTY);
  const infoHash = F.labeledExtract(F.HPKE_SUITE_ID, EMPTY, "info_hash", info);
  const context = F.concat(new Uint8Array([0]), pskIdHash, infoHash);
  return (request) => {
    const inner = request instanceof Uint8Array ? request : F.encodeInnerRequest(request);
    // SetupBaseS with an OpenSSL ephemeral key pair and shared secret.
    const eph = generateKeyPairSync("x25519");
    const enc = new Uint8Array(Buffer.from(eph.publicKey.export({ format: "jwk" }).x!, "base64url"));
    const dh = new Uint8Array(diffieHellman({ privateKey: eph.privateKey, publicKey: peer }));
    if (dh.every((b) => b === 0)) throw new Error("X25519 shared secret is all zero");
    const prk = F.labeledExtract(F.KEM_SUITE_ID, EMPTY, "eae_prk", dh);
    const shared = F.labeledExpand(F.KEM_SUITE_ID, prk, "shared_secret", F.concat(enc, pkR), 32);
    const secret = F.labeledExtract(F.HPKE_SUITE_ID, shared, "secret", EMPTY);
    const ctx = new F.HpkeContext(
      F.labeledExpand(F.HPKE_SUITE_ID, secret, "key", context, 32),
      F.labeledExpand(F.HPKE_SUITE_ID, secret, "base_nonce", context, 12),
      F.labeledExpand(F.HPKE_SUITE_ID, secret, "exp", context, 32),
    );
    F.wipe(dh, prk, shared, secret);
    const ct = ctx.seal(EMPTY, inner);
    return { bytes: F.concat(hdr, enc, ct), response: new F.ResponseContext(ctx, enc) };
  };
}
