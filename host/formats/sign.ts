// Reviewer keys, manifest signing and bundle assembly (SPEC §6), plus a diagnostic threshold check (§6.1). Trust status: key generation and signing run on reviewers' / release CI's own machines with their secret keys; the threshold check is UNTRUSTED host diagnostics — only the loader decides trust.
import { ed25519 } from "@noble/curves/ed25519.js";
import { ascii, concat, equalBytes, toHex } from "./bytes.ts";
import { decodeSignatureBundle, encodeSignatureBundle, type SignatureBundle, type SignatureEntry } from "./bundle.ts";
import { verifyStrict } from "./ed25519.ts";
import { decodeManifest } from "./manifest.ts";
import { decodeTrustConfig, type TrustConfig } from "./trust.ts";

/** §6: the signed message is this label ‖ manifest bytes. */
export const SIGNATURE_LABEL = ascii("veil manifest signature v1\0");

export const signedMessage = (manifestBytes: Uint8Array): Uint8Array => concat(SIGNATURE_LABEL, manifestBytes);

export interface ReviewerKey {
  /** 32-byte Ed25519 seed (RFC 8032 private key). Keep it off the untrusted host. */
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function generateReviewerKey(seed?: Uint8Array): ReviewerKey {
  const secretKey = seed ? Uint8Array.from(seed) : ed25519.utils.randomSecretKey();
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

export function signManifest(manifestBytes: Uint8Array, key: ReviewerKey | Uint8Array): SignatureEntry {
  const secretKey = key instanceof Uint8Array ? key : key.secretKey;
  const publicKey = ed25519.getPublicKey(secretKey);
  return { publicKey, signature: ed25519.sign(signedMessage(manifestBytes), secretKey) };
}

/** Encodes the entries as a bundle, in the order given. */
export const assembleBundle = (entries: SignatureEntry[]): Uint8Array => encodeSignatureBundle(entries);

export type EntryStatus = "counted" | "not-reviewer" | "duplicate" | "invalid";

export interface ThresholdResult {
  ok: boolean;
  threshold: number;
  counted: number;
  entries: { publicKey: string; status: EntryStatus }[];
}

/**
 * §6.1 steps 1–3 as the loader runs them, for tools and tests: parse all three strictly, count
 * each reviewer key at most once if its signature is valid under §2.3, compare with k.
 */
export function checkThreshold(
  trustConfig: Uint8Array | TrustConfig,
  bundle: Uint8Array | SignatureBundle,
  manifestBytes: Uint8Array,
): ThresholdResult {
  const tc = trustConfig instanceof Uint8Array ? decodeTrustConfig(trustConfig) : trustConfig;
  const entries = bundle instanceof Uint8Array ? decodeSignatureBundle(bundle) : bundle;
  decodeManifest(manifestBytes);
  const message = signedMessage(manifestBytes);
  const done: Uint8Array[] = [];
  const out: ThresholdResult["entries"] = [];
  for (const e of entries) {
    let status: EntryStatus;
    if (!tc.reviewers.some((k) => equalBytes(k, e.publicKey))) status = "not-reviewer";
    else if (done.some((k) => equalBytes(k, e.publicKey))) status = "duplicate";
    else if (verifyStrict(e.publicKey, message, e.signature)) {
      status = "counted";
      done.push(e.publicKey);
    } else status = "invalid";
    out.push({ publicKey: toHex(e.publicKey), status });
  }
  return { ok: done.length >= tc.threshold, threshold: tc.threshold, counted: done.length, entries: out };
}
