// Trusted: the worker process — the platform layer of SPEC §4.1 around the loader. It
// instantiates build/loader.wasm with the ONNX Runtime accelerator, OS entropy and a
// monotonic clock, states its measurement and code hash, and serves the loader's entry points
// to its untrusted parent over a framed channel (README.md in this folder). It holds keys and
// plaintext only inside the loader and the accelerator; it writes no files and logs only
// public facts, as one JSON object per line on stderr.
//
//   node --import tsx host/trusted/worker.ts [options]
//     --wasm PATH            loader module (default: build/loader.wasm of this checkout)
//     --socket PATH          serve a Unix socket at PATH instead of stdin/stdout
//     --max-frame BYTES      bound on one frame (default 80 MiB)
//     --ort JSON             ONNX Runtime session options (see ort-runtime.ts OrtConfig)
//     --providers a,b        execution providers, best first (cpu is always last)
//     --threads N            intra-op threads
//     --log-level L          quiet | error | warn | info | debug (default info)
//     --platform-key FILE    software attester: Ed25519 platform key file (mode 0600; DEVELOPMENT ONLY)
//     --attester KIND        software (needs --platform-key) | tsm (Linux configfs-tsm, SEV-SNP/TDX)
//     --tsm-root DIR         configfs-tsm report directory (default /sys/kernel/config/tsm/report)
//     --tsm-privlevel N      configfs-tsm privlevel 0..3 (SEV-SNP VMPL)
//     --weights-dir DIR      load-weights-file may read sealed weights under DIR (repeatable;
//                            without one, load-weights-file is refused)
//   The four attester options may also come from VEIL_PLATFORM_KEY, VEIL_ATTESTER, VEIL_TSM_ROOT
//   and VEIL_TSM_PRIVLEVEL (the parent's spawn helper passes an environment, not extra flags);
//   a flag wins over its variable.
// First: ONNX Runtime's telemetry is off before its native library loads (no-telemetry.ts).
import "./no-telemetry.ts";
import { randomFillSync } from "node:crypto";
import { existsSync, fstatSync, readFileSync, unlinkSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { OrtAccelerator } from "./accelerator-ort.ts";
import { ConfigfsTsmAttester, SecretFileError, SoftwareAttester, WorkerEvidence, type Attester } from "./attest.ts";
import { codeHash, sha256 } from "./identity.ts";
import { LoaderInstance } from "./loader-instance.ts";
import { isLogLevel, jsonLogger, type LogLevel, type Logger } from "./log.ts";
import { ORT_VERSION, OrtRuntime, parseOrtConfig, type OrtConfig } from "./ort-runtime.ts";
import { DEFAULT_MAX_FRAME, PROTOCOL_VERSION } from "./protocol.ts";
import { WorkerService } from "./service.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const DEFAULT_WASM = resolve(HERE, "../../build/loader.wasm");

interface Args {
  wasm: string;
  socket?: string;
  maxFrame: number;
  ort: OrtConfig;
  logLevel: LogLevel;
  attester?: "software" | "tsm";
  platformKey?: string;
  tsmRoot?: string;
  tsmPrivlevel?: number;
  weightsDirs: string[];
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Args {
  const a: Args = { wasm: DEFAULT_WASM, maxFrame: DEFAULT_MAX_FRAME, ort: {}, logLevel: "info", weightsDirs: [] };
  let ort: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--wasm": a.wasm = resolve(value()); break;
      case "--socket": a.socket = resolve(value()); break;
      case "--max-frame": {
        const n = Number(value());
        if (!Number.isSafeInteger(n) || n < 64 || n > 2 ** 31) throw new UsageError("--max-frame must be an integer in 64..2^31");
        a.maxFrame = n;
        break;
      }
      case "--ort": {
        try {
          ort = { ...ort, ...(JSON.parse(value()) as Record<string, unknown>) };
        } catch {
          throw new UsageError("--ort must be a JSON object");
        }
        break;
      }
      case "--providers": ort.executionProviders = value().split(",").filter(Boolean); break;
      case "--threads": ort.intraOpNumThreads = Number(value()); break;
      case "--log-level": {
        const l = value();
        if (!isLogLevel(l)) throw new UsageError("--log-level must be quiet, error, warn, info or debug");
        a.logLevel = l;
        break;
      }
      case "--platform-key": a.platformKey = resolve(value()); break;
      case "--attester": {
        const k = value();
        if (k !== "software" && k !== "tsm") throw new UsageError("--attester must be software or tsm");
        a.attester = k;
        break;
      }
      case "--tsm-root": a.tsmRoot = resolve(value()); break;
      case "--tsm-privlevel": a.tsmPrivlevel = Number(value()); break;
      case "--weights-dir": a.weightsDirs.push(resolve(value())); break;
      default:
        throw new UsageError(`unknown option ${flag}`);
    }
  }
  const env = process.env;
  if (a.platformKey === undefined && env.VEIL_PLATFORM_KEY) a.platformKey = resolve(env.VEIL_PLATFORM_KEY);
  if (a.attester === undefined && env.VEIL_ATTESTER) {
    if (env.VEIL_ATTESTER !== "software" && env.VEIL_ATTESTER !== "tsm") throw new UsageError("VEIL_ATTESTER must be software or tsm");
    a.attester = env.VEIL_ATTESTER;
  }
  if (a.tsmRoot === undefined && env.VEIL_TSM_ROOT) a.tsmRoot = resolve(env.VEIL_TSM_ROOT);
  if (a.tsmPrivlevel === undefined && env.VEIL_TSM_PRIVLEVEL) a.tsmPrivlevel = Number(env.VEIL_TSM_PRIVLEVEL);
  if (a.attester === undefined && a.platformKey !== undefined) a.attester = "software";
  if (a.attester === "software" && a.platformKey === undefined) throw new UsageError("--attester software needs --platform-key FILE");
  if (a.attester === "tsm" && a.platformKey !== undefined) throw new UsageError("--platform-key is for the software attester, not tsm");
  if (a.tsmPrivlevel !== undefined && !(Number.isInteger(a.tsmPrivlevel) && a.tsmPrivlevel >= 0 && a.tsmPrivlevel <= 3))
    throw new UsageError("--tsm-privlevel must be 0..3");
  try {
    a.ort = parseOrtConfig(ort);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return a;
}

/** Library output must never reach the channel (stdout) or print unvetted text: counted, not shown. */
function silenceConsole(log: Logger): void {
  for (const m of ["log", "info", "debug", "warn", "error", "trace", "dir", "table"] as const) {
    (console as unknown as Record<string, unknown>)[m] = () => log.debug("console output suppressed", { method: m });
  }
}

function main(): void {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    jsonLogger("error").error("bad command line", { reason: (e as Error).message });
    process.exit(64);
  }
  const log = jsonLogger(args.logLevel);
  silenceConsole(log);
  // tsx (the TypeScript loader the worker runs under) caches transpiled modules in TMPDIR unless
  // TSX_DISABLE_CACHE is set by whoever spawns the worker: a file write, and code read back from
  // a directory the host controls, outside the code hash. The worker cannot undo it from here.
  if (process.execArgv.some((a) => a.includes("tsx")) && process.env.TSX_DISABLE_CACHE !== "1")
    log.warn("tsx compile cache enabled", { hint: "spawn the worker with TSX_DISABLE_CACHE=1 so it writes no file and runs only the hashed sources" });
  process.on("uncaughtException", (e) => {
    log.error("fatal", { error: e instanceof Error ? e.name : typeof e });
    process.exit(70);
  });

  const hash = codeHash(HERE);
  let wasm: Uint8Array;
  try {
    wasm = new Uint8Array(readFileSync(args.wasm));
  } catch {
    log.error("cannot read the loader module", { path: args.wasm, hint: "run `npm run build`" });
    process.exit(66);
  }
  const measurement = sha256(wasm);

  // The platform attester lives here, beside the loader: only this process ever holds the platform key.
  let attester: Attester | undefined;
  if (args.attester === "software") {
    try {
      attester = SoftwareAttester.fromKeyFile(args.platformKey!);
    } catch (e) {
      log.error("cannot load the platform key", { reason: e instanceof SecretFileError ? e.message : "not an Ed25519 seed" });
      process.exit(66);
    }
  } else if (args.attester === "tsm") {
    attester = new ConfigfsTsmAttester({ root: args.tsmRoot, privlevel: args.tsmPrivlevel });
  }
  const evidence = attester ? new WorkerEvidence(attester, measurement, hash) : undefined;

  const runtime = new OrtRuntime(args.ort, log);
  const accelerator = new OrtAccelerator({ runtime, log });
  const loader = LoaderInstance.create(wasm, {
    accelerator,
    entropy: (out) => void randomFillSync(out),
    clock: () => process.hrtime.bigint(),
  });
  if (loader.measurement !== Buffer.from(measurement).toString("hex")) {
    log.error("measurement mismatch between hashed and instantiated bytes");
    process.exit(70);
  }

  let server: Server | undefined;
  let exiting = false;
  const exit = (code: number, reason: string) => {
    if (exiting) return;
    exiting = true;
    try {
      service.releaseAll();
    } catch {
      // shutting down regardless
    }
    log.info("exit", { code, reason });
    if (server) {
      server.close();
      try {
        if (args.socket) unlinkSync(args.socket);
      } catch {
        // already gone
      }
    }
    // stdout is a pipe: let queued replies reach the parent, but never hang on a dead pipe.
    const t = setTimeout(() => process.exit(code), 1000);
    t.unref();
    process.stdout.write(new Uint8Array(0), () => process.exit(code));
  };

  const service: WorkerService = new WorkerService({
    loader,
    accelerator,
    log,
    evidence,
    maxFrame: args.maxFrame,
    weightsDirs: args.weightsDirs,
    hello: {
      measurement,
      codeHash: hash,
      protocol: PROTOCOL_VERSION,
      info: {
        worker: "veil-worker",
        protocol: PROTOCOL_VERSION,
        wit: "veil:loader@0.1.0",
        node: process.version,
        onnxruntime: ORT_VERSION,
        loaderBytes: wasm.length,
        executionProviders: runtime.providers,
        reportedProviders: runtime.reported,
        maxFrame: args.maxFrame,
        transport: args.socket ? "unix" : "stdio",
        ...(evidence ? evidence.describe() : { attester: "none" }),
      },
    },
    onShutdown: (reason) => setImmediate(() => exit(0, reason)),
    onFatal: (reason) => setImmediate(() => exit(70, reason)),
  });

  process.on("SIGTERM", () => exit(0, "SIGTERM"));
  // On stdio the parent owns our lifetime (shutdown frame, or closing the channel). A terminal's
  // Ctrl-C reaches the whole process group: leave it to the parent, which finishes its in-flight
  // requests before it closes us; if the parent dies instead, our stdin closes and we exit.
  if (args.socket) process.on("SIGINT", () => exit(0, "SIGINT"));
  else process.on("SIGINT", () => log.info("SIGINT ignored: the parent closes this worker"));

  if (args.socket) {
    if (existsSync(args.socket)) {
      log.error("socket path exists; refusing to replace it", { path: args.socket });
      process.exit(73);
    }
    server = createServer((sock) => service.attach(sock, sock, () => sock.destroy()));
    server.on("error", () => {
      log.error("socket server failed", { path: args.socket });
      exit(74, "socket server failed");
    });
    server.listen(args.socket, () => log.info("listening", { socket: args.socket! }));
    // A parent that holds our stdin pipe ends us by closing it (or dying).
    if (fstatSync(0).isFIFO()) {
      process.stdin.resume();
      process.stdin.on("end", () => exit(0, "parent closed stdin"));
    }
  } else {
    process.stdout.on("error", () => exit(0, "channel closed"));
    service.attach(process.stdin, process.stdout, () => exit(0, "parent closed the channel"));
  }

  log.info("ready", {
    measurement: Buffer.from(measurement).toString("hex"),
    codeHash: Buffer.from(hash).toString("hex"),
    transport: args.socket ? "unix" : "stdio",
    providers: runtime.providers.join(","),
    attester: args.attester ?? "none",
    onnxruntime: ORT_VERSION,
    node: process.version,
    wasm: join(args.wasm),
  });
}

main();
