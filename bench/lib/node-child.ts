// Spawns a TypeScript script as a node child process exactly the way WorkerClient spawns the
// trusted worker (same node binary, same flags, tsx loader, repository root as cwd), so a
// baseline child pays the same process and RSS costs as the worker. Talks line-delimited JSON.
import { spawn, type ChildProcess } from "node:child_process";
import { workerCommand } from "../../host/worker/client.ts";
import { ownChild } from "./proc.ts";

export class JsonChild {
  private buffered = "";
  private waiting: ((v: Record<string, unknown>) => void)[] = [];
  private failed: ((e: Error) => void)[] = [];
  private stderr = "";
  readonly exited: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    ownChild(child);
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (s: string) => {
      this.buffered += s;
      let i;
      while ((i = this.buffered.indexOf("\n")) >= 0) {
        const line = this.buffered.slice(0, i);
        this.buffered = this.buffered.slice(i + 1);
        this.waiting.shift()?.(JSON.parse(line) as Record<string, unknown>);
        this.failed.shift();
      }
    });
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (s: string) => void (this.stderr = (this.stderr + s).slice(-4000)));
    this.exited = new Promise((res) => child.once("exit", (code, signal) => {
      const e = new Error(`child exited (${signal ?? code}) before answering: ${this.stderr.trim()}`);
      for (const f of this.failed.splice(0)) f(e);
      this.waiting = [];
      res();
    }));
  }

  /** `script` is a path relative to the repository root. */
  static spawn(script: string, nodeArgs: string[] = ["--expose-gc"]): JsonChild {
    const w = workerCommand({ nodeArgs, entry: script });
    return new JsonChild(spawn(w.command, w.args, { cwd: w.cwd, stdio: ["pipe", "pipe", "pipe"] }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The child's next line, without sending anything (e.g. its ready line). */
  next(): Promise<Record<string, unknown>> {
    return new Promise((res, rej) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return rej(new Error(`child gone: ${this.stderr.trim()}`));
      this.waiting.push(res);
      this.failed.push(rej);
    });
  }

  /** Sends one JSON command; resolves with the child's one-line JSON reply. */
  call(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((res, rej) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return rej(new Error(`child gone: ${this.stderr.trim()}`));
      this.waiting.push(res);
      this.failed.push(rej);
      this.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    });
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(t);
  }
}
