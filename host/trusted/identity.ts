// Trusted: what the worker says it is (SPEC §4.1) — the measurement, SHA-256 of the exact
// loader.wasm bytes it instantiates, and the hash of its own code. The worker computes both at
// start from the bytes it actually uses; a verifier recomputes them from a checkout.
//
//   code_hash = SHA-256( sort( path ‖ 0x00 ‖ SHA-256(file) for every file under host/trusted/ ) )
//
// `path` is the file's path relative to host/trusted/, '/'-separated, UTF-8; entries are
// sorted bytewise by path and concatenated (a path never holds NUL and the digest is 32
// bytes, so the concatenation is unambiguous). Every regular file counts, README.md
// included; anything that is neither a file nor a directory (a symlink) is refused.
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const sha256 = (bytes: Uint8Array): Uint8Array => new Uint8Array(createHash("sha256").update(bytes).digest());

export interface CodeEntry {
  path: string;
  sha256: Uint8Array;
}

/** The files the code hash covers, sorted, with their digests. */
export function codeEntries(dir: string): CodeEntry[] {
  const out: CodeEntry[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, r));
      if (st.isDirectory()) walk(r);
      else if (st.isFile()) out.push({ path: r, sha256: sha256(readFileSync(join(dir, r))) });
      else throw new Error(`host/trusted/${r} is neither a file nor a directory; the worker will not hash or run it`);
    }
  };
  walk("");
  const key = (p: string) => Buffer.from(p, "utf8");
  return out.sort((a, b) => Buffer.compare(key(a.path), key(b.path)));
}

export function codeHash(dir: string): Uint8Array {
  const h = createHash("sha256");
  for (const e of codeEntries(dir)) {
    h.update(Buffer.from(e.path, "utf8"));
    h.update(Uint8Array.of(0));
    h.update(e.sha256);
  }
  return new Uint8Array(h.digest());
}
