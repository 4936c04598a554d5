// A child process spoken to in JSON lines: one request line on its stdin, one answer
// line on its stdout, in order. Used for the bench's client and floor-server processes.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

export class LineProcess {
  private readonly answers: string[] = [];
  private readonly waiters: Array<(line: string | undefined) => void> = [];
  private exited = false;
  readonly child: ChildProcess;

  constructor(argv: string[]) {
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
    createInterface({ input: this.child.stdout! }).on("line", (l) => {
      const w = this.waiters.shift();
      if (w) w(l);
      else this.answers.push(l);
    });
    this.child.once("exit", () => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w(undefined);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The next line the process prints (its ready line, or an answer), parsed. */
  next<T>(): Promise<T> {
    const queued = this.answers.shift();
    if (queued !== undefined) return Promise.resolve(JSON.parse(queued) as T);
    if (this.exited) return Promise.reject(new Error(`process ${this.pid} exited`));
    return new Promise((resolve, reject) =>
      this.waiters.push((l) => (l === undefined ? reject(new Error(`process ${this.pid} exited`)) : resolve(JSON.parse(l) as T))),
    );
  }

  ask<T>(request: unknown): Promise<T> {
    this.child.stdin!.write(`${JSON.stringify(request)}\n`);
    return this.next<T>();
  }

  /** Closes its stdin (it exits on that) and waits; SIGKILL after 5 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.stdin!.end();
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await done;
    clearTimeout(t);
  }
}

/** Child side: answers each request line with `handle`'s result, exits when stdin closes. */
export async function serveLines(handle: (request: unknown) => Promise<unknown>): Promise<void> {
  for await (const line of createInterface({ input: process.stdin })) {
    process.stdout.write(`${JSON.stringify(await handle(JSON.parse(line)))}\n`);
  }
}
