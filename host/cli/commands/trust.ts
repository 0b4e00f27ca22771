// `veil trust`: a SPEC §3 TrustConfig from reviewer public keys. UNTRUSTED host code: public keys only.
import { compareBytes, equalBytes } from "../../formats/bytes.ts";
import { encodeTrustConfig, trustConfigHash } from "../../formats/trust.ts";
import { CliError, UsageError, hex, intOption, list, required, toJson, type Command } from "../args.ts";
import { reviewerPublicKey } from "../keyfile.ts";
import { writeAtomic } from "../program.ts";

export const trust: Command = {
  name: "trust",
  help: `Usage:
  veil trust --threshold <k> --reviewer <key>... --out <trust.bin>

Writes a SPEC §3 TrustConfig: the loader accepts a program only if at least k of these
reviewers signed its manifest. Each --reviewer is a public key as 64 hex digits, or a file:
a reviewer key file (its public half is used) or a text file with the 64 hex digits.
Keys are sorted as SPEC §3 requires; duplicates are refused. Prints the configuration's
SHA-256, which every attestation report of a loader initialised with it carries.

Options:
  --threshold <k>       signatures needed, 1..number of reviewers
  --reviewer <key>      repeat for each reviewer (1..32)
  --out <path>          where to write the configuration`,
  options: {
    threshold: { type: "string" },
    reviewer: { type: "string", multiple: true },
    out: { type: "string" },
  },
  positionals: [0, 0],
  async run(ctx) {
    const out = required(ctx, "out", "where to write the trust configuration");
    const args = list(ctx, "reviewer");
    if (args.length === 0) throw new UsageError("--reviewer is required (at least one reviewer public key)");
    if (args.length > 32) throw new UsageError(`${args.length} reviewers; SPEC §3 allows at most 32`);
    const threshold = intOption(ctx, "threshold", 1, args.length);
    if (threshold === undefined) throw new UsageError(`--threshold is required (1..${args.length})`);
    const keys: Uint8Array[] = [];
    for (const a of args) {
      const k = await reviewerPublicKey(a);
      if (keys.some((x) => equalBytes(x, k))) throw new CliError(`--reviewer ${a}: the same key is given twice (${hex(k)})`);
      keys.push(k);
    }
    keys.sort(compareBytes);
    const bytes = encodeTrustConfig({ threshold, reviewers: keys }, { sort: true });
    await writeAtomic(out, bytes);
    const hash = hex(trustConfigHash(bytes));
    if (ctx.json) ctx.out(toJson({ path: out, threshold, reviewers: keys.map(hex), sha256: hash }));
    else {
      ctx.out(`trust configuration ${out}: ${threshold} of ${keys.length} reviewer${keys.length > 1 ? "s" : ""}`);
      for (const k of keys) ctx.out(`  reviewer ${hex(k)}`);
      ctx.out(`sha256 ${hash}`);
    }
  },
};
