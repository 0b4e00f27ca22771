// Locating REPORT_DATA in a vendor attestation report or quote (host/attest/README.md §4.3). This
// parses only what is needed to find the 64 bytes the guest asked the hardware to bind; it does
// NOT verify the vendor signature, the certificate chain, the TCB or the launch measurement.
import { PLATFORM_KIND } from "./evidence.ts";
import { AttestError } from "./errors.ts";

/**
 * AMD SEV-SNP ATTESTATION_REPORT (SEV Secure Nested Paging Firmware ABI Specification, 56860,
 * rev. 1.55 §7.3 Table 22 — the reference the Linux configfs-tsm ABI names for provider
 * "sev_guest"): VERSION u32 LE at 0x00, REPORT_DATA[64] at 0x50, MEASUREMENT[48] at 0x90,
 * SIGNATURE at 0x2A0; the report is 0x4A0 bytes. Linux's sev_report_new copies exactly
 * hdr.report_size bytes of the MSG_REPORT_RSP payload into outblob (no response header).
 */
export const SNP = {
  VERSION_OFFSET: 0x00,
  REPORT_DATA_OFFSET: 0x50,
  MEASUREMENT_OFFSET: 0x90,
  SIGNATURE_OFFSET: 0x2a0,
  REPORT_SIZE: 0x4a0,
  /** Report versions whose layout keeps REPORT_DATA at 0x50 (2: original, 3: CPUID fields, 4, 5: mitigation vectors). */
  MIN_VERSION: 2,
  MAX_VERSION: 5,
} as const;

/**
 * Intel TDX DCAP quote (Intel SGX/TDX DCAP QuoteGeneration, sgx_quote_4.h and sgx_quote_5.h; Intel
 * TDX DCAP Quoting Library API Appendix 4/5 — the reference the configfs-tsm ABI names for
 * provider "tdx_guest"). Header (48 bytes): version u16 LE at 0, att_key_type u16 at 2,
 * tee_type u32 LE at 4 (0x81 = TDX). Version 4: the TD report body (sgx_report2_body_t, 584 bytes)
 * starts at 48 and its report_data[64] is at body offset 520, so at quote offset 568, followed by
 * signature_data_len u32 at 632. Version 5: a body type u16 at 48 (2 = TDX 1.0 report, 584 bytes;
 * 3 = TDX 1.5 report, 648 bytes) and body size u32 at 50, the body at 54, report_data at body
 * offset 520, so at quote offset 574, then signature_data_len u32.
 */
export const TDX = {
  HEADER_SIZE: 48,
  TEE_TYPE_OFFSET: 4,
  TEE_TYPE_TDX: 0x81,
  BODY_REPORT_DATA_OFFSET: 520,
  V4_BODY_OFFSET: 48,
  V4_BODY_SIZE: 584,
  /** 48 + 520. */
  V4_REPORT_DATA_OFFSET: 568,
  V5_TYPE_OFFSET: 48,
  V5_SIZE_OFFSET: 50,
  V5_BODY_OFFSET: 54,
  /** 54 + 520. */
  V5_REPORT_DATA_OFFSET: 574,
  V5_BODY_SIZES: { 2: 584, 3: 648 } as Readonly<Record<number, number>>,
} as const;

export const REPORT_DATA_LEN = 64;

const u16le = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
const u32le = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;

const bad = (detail: string): never => {
  throw new AttestError("MALFORMED", detail, "platform.outblob");
};

/** The offset of REPORT_DATA in a SEV-SNP attestation report, or MALFORMED. */
export function snpReportDataOffset(report: Uint8Array): number {
  if (report.length < SNP.REPORT_SIZE) bad(`SEV-SNP report is ${report.length} bytes, shorter than 0x${SNP.REPORT_SIZE.toString(16)}`);
  const v = u32le(report, SNP.VERSION_OFFSET);
  if (v < SNP.MIN_VERSION || v > SNP.MAX_VERSION) bad(`SEV-SNP report version ${v} is not in ${SNP.MIN_VERSION}..${SNP.MAX_VERSION}`);
  return SNP.REPORT_DATA_OFFSET;
}

/** The offset of REPORT_DATA in a TDX DCAP quote (version 4 or 5), or MALFORMED. */
export function tdxReportDataOffset(quote: Uint8Array): number {
  if (quote.length < TDX.HEADER_SIZE) bad(`TDX quote is ${quote.length} bytes, shorter than its 48-byte header`);
  const version = u16le(quote, 0);
  const tee = u32le(quote, TDX.TEE_TYPE_OFFSET);
  if (tee !== TDX.TEE_TYPE_TDX) bad(`TDX quote tee_type is 0x${tee.toString(16)}, not 0x81 (TDX)`);
  if (version === 4) {
    if (quote.length < TDX.V4_BODY_OFFSET + TDX.V4_BODY_SIZE + 4) bad(`TDX v4 quote is ${quote.length} bytes, too short for its TD report body`);
    return TDX.V4_REPORT_DATA_OFFSET;
  }
  if (version === 5) {
    if (quote.length < TDX.V5_BODY_OFFSET) bad(`TDX v5 quote is ${quote.length} bytes, too short for its body header`);
    const type = u16le(quote, TDX.V5_TYPE_OFFSET);
    const size = u32le(quote, TDX.V5_SIZE_OFFSET);
    const expected = TDX.V5_BODY_SIZES[type];
    if (expected === undefined) bad(`TDX v5 quote body type ${type} is not 2 (TDX 1.0) or 3 (TDX 1.5)`);
    if (size !== expected) bad(`TDX v5 quote body size ${size} is not ${expected} for body type ${type}`);
    if (quote.length < TDX.V5_BODY_OFFSET + size + 4) bad(`TDX v5 quote is ${quote.length} bytes, too short for its ${size}-byte body`);
    return TDX.V5_REPORT_DATA_OFFSET;
  }
  // A quote over 8 KiB on DICE-based TDX platforms is a CBOR Web Token (configfs-tsm ABI); not supported.
  return bad(`TDX quote version ${version} is not 4 or 5`);
}

/** REPORT_DATA (64 bytes, a copy) of a configfs-tsm outblob of the given platform kind. */
export function reportDataOf(kind: typeof PLATFORM_KIND.SEV_SNP_TSM | typeof PLATFORM_KIND.TDX_TSM, outblob: Uint8Array): Uint8Array {
  const off = kind === PLATFORM_KIND.SEV_SNP_TSM ? snpReportDataOffset(outblob) : tdxReportDataOffset(outblob);
  return outblob.slice(off, off + REPORT_DATA_LEN);
}
