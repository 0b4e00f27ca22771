// Builds the release loader (build/loader.wasm) and the test build that exports each
// primitive (build/loader-test.wasm). Both use the same asconfig.json options.
// `--part NAME` builds only test-exports/common.ts + test-exports/NAME.ts into
// build/loader-test-NAME.wasm (select it in tests with VEIL_TEST_WASM), so work on one
// primitive does not wait on another.
import asc from "assemblyscript/asc";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const partFlag = process.argv.indexOf("--part");
const part = partFlag >= 0 ? process.argv[partFlag + 1] : undefined;

const builds = part
  ? [
      {
        target: "test",
        entries: ["loader-wasm/test-exports/common.ts", `loader-wasm/test-exports/${part}.ts`],
        out: `build/loader-test-${part}.wasm`,
      },
    ]
  : [
      { target: "release", entries: ["loader-wasm/loader.ts"], out: "build/loader.wasm" },
      { target: "test", entries: ["loader-wasm/test-exports/index.ts"], out: "build/loader-test.wasm" },
    ];

for (const { target, entries, out } of builds) {
  const extra = part ? ["--outFile", out, "--textFile", out.replace(/\.wasm$/, ".wat")] : [];
  const { error, stderr } = await asc.main(
    [...entries, "--config", "asconfig.json", "--target", target, ...extra],
    {},
  );
  if (error) {
    process.stderr.write(stderr.toString());
    console.error(`build ${target} failed: ${error.message}`);
    process.exit(1);
  }
  const bytes = readFileSync(out);
  const digest = createHash("sha256").update(bytes).digest("hex");
  if (!process.env.QUIET) console.log(`${out}  ${bytes.length} bytes  sha256:${digest}`);
}
