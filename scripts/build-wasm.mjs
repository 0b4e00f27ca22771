// Builds the release loader (build/loader.wasm) and the test build that exports each
// primitive (build/loader-test.wasm). Both use the same asconfig.json options.
// `--part NAME` builds only test-exports/common.ts + test-exports/NAME.ts into
// build/loader-test-NAME.wasm (select it in tests with VEIL_TEST_WASM), so work on one
// primitive does not wait on another.
import asc from "assemblyscript/asc";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import binaryen from "binaryen";

// AssemblyScript exports identifiers; the WIT names are kebab-case. Renaming the release
// module's exports here is the only post-processing step (SPEC §11, wit/loader.wit).
function kebabExports(path) {
  const mod = binaryen.readBinary(readFileSync(path));
  mod.setFeatures(binaryen.Features.All);
  for (let i = mod.getNumExports() - 1; i >= 0; i--) {
    const info = binaryen.getExportInfo(mod.getExportByIndex(i));
    if (info.kind !== binaryen.ExternalFunction || info.name === "cabi_realloc") continue;
    const renamed = info.name.startsWith("cabi_post_")
      ? "cabi_post_" + info.name.slice(10).replaceAll("_", "-")
      : info.name.replaceAll("_", "-");
    if (renamed === info.name) continue;
    mod.removeExport(info.name);
    mod.addFunctionExport(info.value, renamed);
  }
  if (!mod.validate()) throw new Error(`renamed module ${path} does not validate`);
  writeFileSync(path, mod.emitBinary());
  mod.dispose();
}

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
      { target: "release", entries: ["loader-wasm/loader.ts"], out: "build/loader.wasm", kebab: true },
      { target: "test", entries: ["loader-wasm/test-exports/index.ts"], out: "build/loader-test.wasm" },
    ];

for (const { target, entries, out, kebab } of builds) {
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
  if (kebab) kebabExports(out);
  const bytes = readFileSync(out);
  const digest = createHash("sha256").update(bytes).digest("hex");
  if (!process.env.QUIET) console.log(`${out}  ${bytes.length} bytes  sha256:${digest}`);
}
