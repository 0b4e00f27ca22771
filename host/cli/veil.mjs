#!/usr/bin/env node
// The `veil` package bin: runs host/cli/veil.ts through tsx (installed with this package), from
// any working directory. `npm run veil -- <args>` runs from the package root; the CLI then works
// in the directory npm was started from (INIT_CWD), so relative paths mean what the user typed.
import { register } from "tsx/esm/api";

if (process.env.npm_lifecycle_event === "veil" && process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);
register();
const { cli } = await import("./veil.ts");
await cli();
