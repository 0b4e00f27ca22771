// `npm start`: for now, print the loader's measurement, size and ABI surface.
import { measureLoader } from "../audit/measure.ts";

const m = measureLoader();
console.log(`veil loader  ${m.path}`);
console.log(`  measurement  sha256:${m.sha256}`);
console.log(`  size         ${m.bytes} bytes`);
console.log(`  imports      ${m.imports.length ? m.imports.join(", ") : "(none)"}`);
console.log(`  exports      ${m.exports.join(", ")}`);
