// `veil keygen`: a reviewer's Ed25519 key or a model's data key, in a 0600 key file. Trust
// status: runs on the reviewer's / model owner's own machine; prints only public values.
import { resolve } from "node:path";
import { UsageError, flag, hex, str, toJson, type Command } from "../args.ts";
import { dataKeyText, newDataKey, newReviewerKey, reviewerKeyText, writeSecretFile } from "../keyfile.ts";

export const keygen: Command = {
  name: "keygen",
  help: `Usage:
  veil keygen --reviewer <out>    an Ed25519 reviewer key; prints its public key (hex)
  veil keygen --data-key <out>    a 32-byte model data key with a random 16-byte key id; prints the key id

The key file is JSON, written with mode 0600 (never printed):
  reviewer: {"type": "veil-reviewer-key", "version": 1, "public_key": "<64 hex>", "secret_key": "<64 hex seed>"}
  data key: {"type": "veil-data-key", "version": 1, "key_id": "<32 hex>", "data_key": "<64 hex>"}

Options:
  --force          replace an existing file`,
  options: {
    reviewer: { type: "string" },
    "data-key": { type: "string" },
    force: { type: "boolean" },
  },
  positionals: [0, 0],
  async run(ctx) {
    const reviewer = str(ctx, "reviewer");
    const data = str(ctx, "data-key");
    if ((reviewer === undefined) === (data === undefined)) throw new UsageError("give exactly one of --reviewer <out> or --data-key <out>");
    const force = flag(ctx, "force");
    if (reviewer !== undefined) {
      const k = newReviewerKey();
      await writeSecretFile(reviewer, reviewerKeyText(k), { force });
      k.secretKey.fill(0);
      if (ctx.json) ctx.out(toJson({ type: "veil-reviewer-key", path: resolve(reviewer), public_key: hex(k.publicKey) }));
      else ctx.out(hex(k.publicKey));
      ctx.note(`wrote reviewer key ${reviewer} (mode 0600); its public key is printed above`);
    } else {
      const k = newDataKey();
      await writeSecretFile(data!, dataKeyText(k), { force });
      k.dataKey.fill(0);
      if (ctx.json) ctx.out(toJson({ type: "veil-data-key", path: resolve(data!), key_id: hex(k.keyId) }));
      else ctx.out(hex(k.keyId));
      ctx.note(`wrote data key ${data} (mode 0600); its key id is printed above`);
    }
  },
};
