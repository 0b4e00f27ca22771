// `veil broker` (host/broker/README.md "Command line"): run the key broker's HTTP service, add a
// data key, verify the audit log, create a broker key. Reads secrets only from 0600 files; prints
// only public facts. Usable as `tsx host/broker/main.ts <command> ...` until host/cli dispatches it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { createSecretKeyFile, readSecretKeyFile } from "../attest/secret-file.ts";
import { SKIP_NAMES, type SkipName } from "../attest/verify.ts";
import { wipe } from "../formats/index.ts";
import { verifyAuditLog } from "./audit.ts";
import { createBroker, type BrokerPolicy } from "./broker.ts";
import { startBrokerServer } from "./server.ts";

export const USAGE = `usage: veil broker <command> [options]
  serve       --dir DIR --broker-key-file FILE --policy FILE [--host 127.0.0.1] [--port 7480]
  add-key     --dir DIR --broker-key-file FILE --key-id HEX32 --data-key-file FILE [--replace]
  verify-log  (--dir DIR | --log FILE) [--head HEX64] [--entries N]
  gen-key     --out FILE        create a 32-byte key file (mode 0600), e.g. the broker key
policy FILE (JSON): { "trustedPlatformKeys": [hex], "acceptedMeasurements": [hex],
  "acceptedWorkerCodeHashes": [hex], "acceptedTrustConfigHashes": [hex],
  "allowUnverifiedQuote": false, "skip": [] }`;

const strList = (v: unknown, name: string): string[] => {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw new Error(`policy: ${name} must be a list of hex strings`);
  return v as string[];
};

/** Reads a broker policy file; unknown fields are refused so that a typo never loosens the policy silently. */
export function readPolicyFile(path: string): BrokerPolicy {
  const raw = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new Error("policy: not a JSON object");
  const known = ["trustedPlatformKeys", "acceptedMeasurements", "acceptedWorkerCodeHashes", "acceptedTrustConfigHashes", "allowUnverifiedQuote", "skip"];
  const unknown = Object.keys(raw).filter((k) => !known.includes(k));
  if (unknown.length) throw new Error(`policy: unknown field(s) ${unknown.join(", ")}`);
  if (raw.allowUnverifiedQuote !== undefined && typeof raw.allowUnverifiedQuote !== "boolean") throw new Error("policy: allowUnverifiedQuote must be a boolean");
  const skip = strList(raw.skip, "skip");
  for (const s of skip) if (!(SKIP_NAMES as readonly string[]).includes(s)) throw new Error(`policy: unknown skip ${s}`);
  return {
    trustedPlatformKeys: strList(raw.trustedPlatformKeys, "trustedPlatformKeys"),
    acceptedMeasurements: strList(raw.acceptedMeasurements, "acceptedMeasurements"),
    acceptedWorkerCodeHashes: strList(raw.acceptedWorkerCodeHashes, "acceptedWorkerCodeHashes"),
    acceptedTrustConfigHashes: strList(raw.acceptedTrustConfigHashes, "acceptedTrustConfigHashes"),
    allowUnverifiedQuote: raw.allowUnverifiedQuote === true,
    skip: skip as SkipName[],
  };
}

const need = (v: string | undefined, name: string): string => {
  if (!v) throw new Error(`--${name} is required\n${USAGE}`);
  return v;
};

/** Runs one command; resolves to the process exit code (serve resolves when the server stops). */
export async function brokerMain(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      dir: { type: "string" },
      "broker-key-file": { type: "string" },
      policy: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "7480" },
      "key-id": { type: "string" },
      "data-key-file": { type: "string" },
      replace: { type: "boolean", default: false },
      log: { type: "string" },
      head: { type: "string" },
      entries: { type: "string" },
      out: { type: "string" },
    },
    strict: true,
  });
  switch (cmd) {
    case "serve": {
      const logger = pino({ name: "veil-broker" });
      const broker = createBroker({
        dir: need(values.dir, "dir"),
        brokerKeyFile: need(values["broker-key-file"], "broker-key-file"),
        policy: readPolicyFile(need(values.policy, "policy")),
        log: logger,
      });
      const port = Number(values.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error("--port must be 0..65535");
      const server = await startBrokerServer({ broker, host: values.host, port, logger });
      logger.info({ url: server.url, keys: broker.keyIds().length, auditHead: broker.auditHead() }, "key broker listening");
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      await server.close();
      broker.close();
      return 0;
    }
    case "add-key": {
      const broker = createBroker({
        dir: need(values.dir, "dir"),
        brokerKeyFile: need(values["broker-key-file"], "broker-key-file"),
        policy: { acceptedMeasurements: [], acceptedWorkerCodeHashes: [], acceptedTrustConfigHashes: [] },
      });
      const dataKey = readSecretKeyFile(need(values["data-key-file"], "data-key-file"));
      try {
        broker.addKey(need(values["key-id"], "key-id"), dataKey, { replace: values.replace });
      } finally {
        wipe(dataKey);
        broker.close();
      }
      console.log(`added key ${values["key-id"]!.toLowerCase()}`);
      return 0;
    }
    case "verify-log": {
      const path = values.log ?? join(need(values.dir, "dir"), "audit.log");
      const v = verifyAuditLog(path, { expectedHead: values.head, expectedEntries: values.entries === undefined ? undefined : Number(values.entries) });
      if (v.ok) {
        console.log(`${path}: ${v.entries} entries, chain intact, head ${v.head}`);
        return 0;
      }
      console.log(`${path}: BROKEN at line ${v.line}: ${v.reason} (${v.entries} entries verified before it)`);
      return 1;
    }
    case "gen-key": {
      const out = need(values.out, "out");
      wipe(createSecretKeyFile(out));
      console.log(`created ${out} (mode 0600)`);
      return 0;
    }
    default:
      console.error(USAGE);
      return 2;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  brokerMain(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`veil broker: ${(e as Error).message}`);
      process.exit(2);
    },
  );
}
