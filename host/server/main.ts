// `veil serve` (or `tsx host/server/main.ts`): the confidential inference server (README.md).
//
//   --models DIR            program directories as veil seal writes them (required)
//   --trust FILE            trust configuration (veil trust) every loader is initialised with (required)
//   --broker URL            a remote key broker (host/broker, `veil broker serve`)
//   --embedded-broker       DEVELOPMENT: a key broker inside this process, holding the data keys
//                           given with --data-key (the trust model wants it elsewhere)
//   --data-key FILE         (embedded broker) a data key file (veil keygen --data-key); repeatable
//   --broker-dir DIR        (embedded broker) its key store and audit log (default: a temp dir)
//   --broker-policy FILE    (embedded broker) policy JSON as `veil broker serve` takes; default: this
//                           checkout's loader.wasm and host/trusted, --trust, and the workers'
//                           software platform key as their hello states it (trust on first use)
//   --platform-key FILE     software attester key for the workers (mode 0600; DEVELOPMENT ONLY)
//   --attester software|tsm --tsm-root DIR --tsm-privlevel N    (tsm: inside a SEV-SNP/TDX guest)
//   --workers N (2)  --port N (8080)  --host ADDR (127.0.0.1)  --queue N (32)  --in-flight N (4)
//   --deadline-ms N (30000)  --body-limit BYTES (16 MiB)  --log-level L (info)
//
// SIGINT / SIGTERM: graceful shutdown (stop accepting, finish in-flight requests, close workers).
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createBroker, type BrokerPolicy } from "../broker/index.ts";
import { fromHex, trustConfigHash, wipe } from "../formats/index.ts";
import { codeHash } from "../trusted/identity.ts";
import { REPO_ROOT } from "../worker/client.ts";
import { startServer } from "./server.ts";

class Usage extends Error {}

/** Undone at exit: the embedded broker and its temporary directory. */
const cleanups: (() => void)[] = [];
const cleanup = () => {
  for (const f of cleanups.splice(0).reverse()) {
    try {
      f();
    } catch {
      // best effort
    }
  }
};

/** A data key file as `veil keygen --data-key` writes it: {"type":"veil-data-key","version":1,"key_id":hex32,"data_key":hex64}. */
export function readDataKeyFile(path: string): { keyId: Uint8Array; dataKey: Uint8Array } {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new Usage(`--data-key ${path}: not a veil data key file (${(e as NodeJS.ErrnoException).code ?? "not JSON"})`); // never quote the content
  }
  const key = o?.data_key ?? o?.key;
  if (o?.type !== "veil-data-key" || typeof o.key_id !== "string" || !/^[0-9a-fA-F]{32}$/.test(o.key_id) || typeof key !== "string" || !/^[0-9a-fA-F]{64}$/.test(key))
    throw new Usage(`--data-key ${path}: not a veil data key file (type veil-data-key, key_id 32 hex, data_key 64 hex)`);
  return { keyId: fromHex(o.key_id), dataKey: fromHex(key) };
}

function num(v: string | undefined, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Usage(`--${name} must be an integer in ${min}..${max}`);
  return n;
}

/** `veil serve`: runs until SIGINT/SIGTERM, then resolves to the exit code. */
export async function serveMain(argv: string[]): Promise<number> {
  try {
    return await serve(argv);
  } catch (e) {
    cleanup();
    process.stderr.write(`veil server: ${e instanceof Usage ? `${e.message} (see --help)` : (e as Error).message}\n`);
    return e instanceof Usage ? 2 : 1;
  }
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      models: { type: "string" },
      trust: { type: "string" },
      broker: { type: "string" },
      "embedded-broker": { type: "boolean" },
      "data-key": { type: "string", multiple: true },
      "broker-dir": { type: "string" },
      "broker-policy": { type: "string" },
      "platform-key": { type: "string" },
      attester: { type: "string" },
      "tsm-root": { type: "string" },
      "tsm-privlevel": { type: "string" },
      workers: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      queue: { type: "string" },
      "in-flight": { type: "string" },
      "deadline-ms": { type: "string" },
      "body-limit": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(readFileSync(new URL(import.meta.url), "utf8").split("\n").filter((l) => l.startsWith("//")).slice(0, 19).map((l) => l.slice(3)).join("\n") + "\n");
    return 0;
  }
  if (!values.models) throw new Usage("--models DIR is required");
  if (!values.trust) throw new Usage("--trust FILE is required (veil trust): the loaders never trust a program's own signers");
  if (!values.broker === !values["embedded-broker"]) throw new Usage("give exactly one of --broker URL and --embedded-broker");
  if (!values["embedded-broker"] && (values["data-key"] || values["broker-dir"] || values["broker-policy"]))
    throw new Usage("--data-key, --broker-dir and --broker-policy are for --embedded-broker");
  const attester = values.attester as "software" | "tsm" | undefined;
  if (attester !== undefined && attester !== "software" && attester !== "tsm") throw new Usage("--attester must be software or tsm");
  if (attester !== "tsm" && !values["platform-key"]) throw new Usage("--platform-key FILE is required for the software attester (or --attester tsm inside a confidential guest)");
  const trust = new Uint8Array(readFileSync(values.trust));

  let tempBrokerDir: string | undefined;
  let broker: Parameters<typeof startServer>[0]["broker"];
  if (values.broker) broker = values.broker;
  else {
    const keys = (values["data-key"] ?? []).map(readDataKeyFile);
    if (keys.length === 0) throw new Usage("--embedded-broker needs the models' data keys: --data-key FILE (repeatable)");
    const dir = values["broker-dir"] ?? (tempBrokerDir = mkdtempSync(join(tmpdir(), "veil-broker-")));
    if (tempBrokerDir) {
      const d = tempBrokerDir;
      cleanups.push(() => rmSync(d, { recursive: true, force: true }));
    }
    const explicit = values["broker-policy"] ? (JSON.parse(readFileSync(values["broker-policy"], "utf8")) as BrokerPolicy) : undefined;
    broker = (hello) => {
      const platformKey = typeof hello.info.platformKey === "string" ? hello.info.platformKey : undefined;
      const policy: BrokerPolicy = explicit ?? {
        trustedPlatformKeys: platformKey ? [platformKey] : [],
        acceptedMeasurements: [createHash("sha256").update(readFileSync(join(REPO_ROOT, "build", "loader.wasm"))).digest("hex")],
        acceptedWorkerCodeHashes: [Buffer.from(codeHash(join(REPO_ROOT, "host", "trusted"))).toString("hex")],
        acceptedTrustConfigHashes: [Buffer.from(trustConfigHash(trust)).toString("hex")],
      };
      if (!explicit)
        process.stderr.write(
          `veil server: DEVELOPMENT embedded key broker: it trusts the workers' software platform key ${platformKey ?? "(none)"} on first use, ` +
            "this checkout's build/loader.wasm and host/trusted, and --trust\n",
        );
      const b = createBroker({ dir, brokerKey: new Uint8Array(randomBytes(32)), policy });
      cleanups.push(() => b.close());
      for (const k of keys) {
        b.addKey(k.keyId, k.dataKey, { replace: true });
        wipe(k.dataKey);
      }
      return b;
    };
  }

  const deadlineMs = num(values["deadline-ms"], "deadline-ms", 1, 3_600_000, 30_000);
  const server = await startServer({
    models: values.models,
    trust,
    broker,
    workers: num(values.workers, "workers", 1, 64, 2),
    port: num(values.port, "port", 0, 65535, 8080),
    host: values.host ?? "127.0.0.1",
    queue: num(values.queue, "queue", 0, 1_000_000, 32),
    inFlight: num(values["in-flight"], "in-flight", 1, 16, 4),
    deadlineMs,
    bodyLimit: num(values["body-limit"], "body-limit", 1024, 2 ** 31, 16 * 2 ** 20),
    logLevel: values["log-level"] ?? "info",
    worker: { attester, platformKeyFile: values["platform-key"], tsmRoot: values["tsm-root"], tsmPrivlevel: values["tsm-privlevel"] === undefined ? undefined : Number(values["tsm-privlevel"]) },
  });
  process.stderr.write(`veil server: listening on ${server.url} with ${server.pool.slots.length} worker(s); Ctrl-C stops it gracefully\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`veil server: ${sig}: finishing accepted requests, then closing the workers\n`);
      void server.close().then(() => {
        cleanup();
        resolve(0);
      });
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  void serveMain(process.argv.slice(2)).then((code) => process.exit(code));
}
