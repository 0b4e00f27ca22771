// Wraps the very same core module (build/loader.wasm) as a component: embed the normative
// WIT with jco's componentEmbed (the `jco embed --wit` CLI panics in jco 1.35), then
// componentNew. Output: build/loader.component.wasm.
import { componentEmbed, componentNew } from "@bytecodealliance/jco";
import { readFileSync, writeFileSync } from "node:fs";

const core = readFileSync("build/loader.wasm");
const embedded = await componentEmbed({
  binary: core,
  witSource: readFileSync("loader-wasm/wit/loader.wit", "utf8"),
  world: "loader",
  stringEncoding: "utf8",
});
const component = await componentNew(embedded);
writeFileSync("build/loader.component.wasm", component);
console.log(`build/loader.component.wasm  ${component.length} bytes`);
