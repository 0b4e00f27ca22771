// The ABI (SPEC §11, loader-wasm/wit/loader.wit): the component jco builds from the release
// module has exactly the imports and exports of the normative WIT, function by function, and
// the core module imports nothing but the three capability interfaces (no WASI, no env).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { componentEmbed, componentNew, componentWit, print } from "@bytecodealliance/jco";
import { WASM_PATH, wasm } from "./fixture.ts";

const WIT_PATH = fileURLToPath(new URL("../../loader-wasm/wit/loader.wit", import.meta.url));
const witSource = readFileSync(WIT_PATH, "utf8");

const norm = (s: string) => s.replace(/\/\/.*$/gm, "").replace(/\s+/g, " ").replace(/ ?([(),:<>{};]) ?/g, "$1").replace(/%/g, "").trim();

/** The body of `kind name { ... }` in a WIT text, matching nested braces (`use x.{a, b};`). */
function block(text: string, kind: "interface" | "world", name: string): string {
  const m = new RegExp(`(^|\\n)\\s*${kind}\\s+${name}\\s*\\{`).exec(text);
  if (!m) throw new Error(`no ${kind} ${name} in the WIT`);
  let depth = 1;
  const start = m.index + m[0].length;
  for (let i = start; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) return text.slice(start, i);
  }
  throw new Error(`unterminated ${kind} ${name}`);
}

/** `name: func(...) -> ...;` lines of a WIT block, normalised, keyed by name. */
function funcs(body: string, prefix = ""): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of body.replace(/\/\/.*$/gm, "").matchAll(new RegExp(`${prefix}\\s*(%?[a-z][a-z0-9-]*)\\s*:\\s*(func\\([^;]*);`, "g")))
    out.set(m[1].replace(/^%/, ""), norm(m[2]));
  return out;
}

// --- the component's instance types, from its text format -------------------------------------

interface InstanceType {
  types: Map<number, string>;
  funcs: Map<string, string>;
}

/** Reads `(type $ty-<iface> (instance ...))` blocks of jco's `print` output into WIT-like signatures. */
function instanceTypes(wat: string): Map<string, InstanceType> {
  const out = new Map<string, InstanceType>();
  const re = /\(type \$ty-([^\s]+) \(;\d+;\)\n\s*\(instance\n([\s\S]*?)\n\s{4}\)\n\s{2}\)/g;
  for (const m of wat.matchAll(re)) {
    const iface = m[1];
    const types = new Map<number, string>();
    const fns = new Map<string, string>();
    const render = (ref: string): string => (/^\d+$/.test(ref) ? types.get(Number(ref)) ?? `?${ref}` : ref);
    for (const raw of m[2].split("\n")) {
      const line = raw.trim();
      let t: RegExpExecArray | null;
      if ((t = /^\(alias outer \d+ \$([a-z-]+) \(type \(;(\d+);\)\)\)$/.exec(line))) types.set(Number(t[2]), t[1]);
      else if ((t = /^\(export \(;(\d+);\) "([a-z-]+)" \(type \(eq (\d+)\)\)\)$/.exec(line))) types.set(Number(t[1]), t[2]);
      else if ((t = /^\(type \(;(\d+);\) \(list (\w+)\)\)$/.exec(line))) types.set(Number(t[1]), `list<${t[2]}>`);
      else if ((t = /^\(type \(;(\d+);\) \(result \(error (\w+)\)\)\)$/.exec(line))) types.set(Number(t[1]), `result<_,${render(t[2])}>`);
      else if ((t = /^\(type \(;(\d+);\) \(result (\w+) \(error (\w+)\)\)\)$/.exec(line))) types.set(Number(t[1]), `result<${render(t[2])},${render(t[3])}>`);
      else if ((t = /^\(type \(;(\d+);\) (u8|u16|u32|u64|s32|s64)\)$/.exec(line))) types.set(Number(t[1]), t[2]);
      else if ((t = /^\(type \(;(\d+);\) \(func(.*)\)\)$/.exec(line))) {
        const params = [...t[2].matchAll(/\(param "([a-z-]+)" (\w+)\)/g)].map((p) => `${p[1]}:${render(p[2])}`);
        const result = /\(result (\w+)\)/.exec(t[2]);
        types.set(Number(t[1]), `func(${params.join(",")})${result ? `->${render(result[1])}` : ""}`);
      } else if ((t = /^\(export \(;\d+;\) "([a-z-]+)" \(func \(type (\d+)\)\)\)$/.exec(line))) fns.set(t[1], render(t[2]));
      else if (line) throw new Error(`unrecognised line in the instance type of ${iface}: ${line}`);
    }
    out.set(iface, { types, funcs: fns });
  }
  return out;
}

// ------------------------------------------------------------------------------------------------

const PKG = "veil:loader";
const VERSION = "0.1.0";
const qualified = (iface: string) => `${PKG}/${iface}@${VERSION}`;

let component: Uint8Array;
let witText: string;
let watText: string;

beforeAll(async () => {
  // The same steps as scripts/build-component.mjs, in memory (build/ is shared with other builds).
  const embedded = await componentEmbed({ binary: wasm(), witSource, world: "loader", stringEncoding: "utf8" });
  component = await componentNew(embedded);
  witText = await componentWit(component);
  watText = await print(component);
});

describe("the component wraps the release module with exactly the normative ABI (§11)", () => {
  it("world exports: the same functions with the same signatures as loader.wit", () => {
    const want = funcs(block(witSource, "world", "loader"), "export");
    const got = funcs(witText, "export");
    expect([...want.keys()].sort()).toEqual(["attest", "infer", "infer-begin", "infer-cancel", "infer-next", "init", "load-program", "load-weights", "session-open", "unload-program", "unwrap-key"]);
    expect(Object.fromEntries(got)).toEqual(Object.fromEntries(want));
  });

  it("world imports: the three capability interfaces (and the types they use), nothing else", () => {
    const imports = [...witText.matchAll(/^\s*import\s+([^;]+);/gm)].map((m) => m[1].trim()).sort();
    const world = block(witSource, "world", "loader");
    const declared = [...world.matchAll(/^\s*import\s+([a-z-]+)\s*;/gm)].map((m) => m[1]);
    expect(declared.sort()).toEqual(["accelerator", "clock", "entropy"]);
    // `use types.{...}` in the world and in accelerator makes `types` an import of the component too.
    expect(imports).toEqual([...declared, "types"].map(qualified).sort());
    expect(witText).not.toMatch(/wasi:/);
  });

  it("imported interfaces: every function signature is the WIT's", () => {
    const inst = instanceTypes(watText);
    for (const iface of ["accelerator", "entropy", "clock"]) {
      const t = inst.get(qualified(iface));
      expect(t, iface).toBeDefined();
      const want = funcs(block(witSource, "interface", iface));
      // The WIT names the aliases (program, error-code); the component resolves them to the same names.
      expect(Object.fromEntries(t!.funcs), iface).toEqual(Object.fromEntries(want));
    }
    const types = inst.get(qualified("types"))!;
    const aliases = Object.fromEntries([...types.types.entries()].filter(([, v]) => !/^u\d+$/.test(v)).map(([i, name]) => [name, types.types.get(i - 1)]));
    expect(aliases).toEqual({ "error-code": "u32", program: "u32", stream: "u32" });
    expect([...inst.keys()].sort()).toEqual(["accelerator", "clock", "entropy", "types"].map(qualified).sort());
  });
});

describe("the core module build/loader.wasm", () => {
  it("imports only the accelerator, entropy and clock functions of the WIT (no WASI, no env)", () => {
    const mod = new WebAssembly.Module(new Uint8Array(readFileSync(WASM_PATH)));
    const imports = WebAssembly.Module.imports(mod).map((i) => `${i.kind} ${i.module}#${i.name}`).sort();
    const want = [
      ...[...funcs(block(witSource, "interface", "accelerator")).keys()].map((f) => `function ${qualified("accelerator")}#${f}`),
      ...[...funcs(block(witSource, "interface", "entropy")).keys()].map((f) => `function ${qualified("entropy")}#${f}`),
      ...[...funcs(block(witSource, "interface", "clock")).keys()].map((f) => `function ${qualified("clock")}#${f}`),
    ].sort();
    expect(want.length).toBe(8); // 5 + measure-weights (SPEC §9.1), fill, now
    expect(imports).toEqual(want);
  });

  it("exports the WIT's functions under their kebab-case names, their post-returns, cabi_realloc and memory", () => {
    const mod = new WebAssembly.Module(new Uint8Array(readFileSync(WASM_PATH)));
    const exports = WebAssembly.Module.exports(mod).map((e) => `${e.kind} ${e.name}`).sort();
    const names = [...funcs(block(witSource, "world", "loader"), "export").keys()];
    const want = [
      ...names.map((n) => `function ${n}`),
      ...names.map((n) => `function cabi_post_${n}`),
      "function cabi_realloc",
      "memory memory",
    ].sort();
    expect(exports).toEqual(want);
  });

  it("the component's core module is the release module, byte for byte", () => {
    const bytes = wasm();
    const haystack = Buffer.from(component);
    expect(haystack.indexOf(Buffer.from(bytes.subarray(8, 4096)))).toBeGreaterThan(0);
  });
});
