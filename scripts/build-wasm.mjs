// Builds the release loader (build/loader.wasm) and the test build that exports each
// primitive (build/loader-test.wasm). Both use the same asconfig.json options.
import asc from "assemblyscript/asc";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const builds = [
  { target: "release", entry: "loader-wasm/loader.ts", out: "build/loader.wasm" },
  { target: "test", entry: "loader-wasm/test-exports/index.ts", out: "build/loader-test.wasm" },
];

for (const { target, entry, out } of builds) {
  const { error, stderr } = await asc.main(
    [entry, "--config", "asconfig.json", "--target", target],
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
