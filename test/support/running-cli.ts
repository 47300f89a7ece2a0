/**
 * A `vitalproof` command line that keeps running (e.g. `research subscribe`) as a real process:
 * its stdout and stderr lines as they come, and a way to wait for a condition over them without
 * sleeping (every new line, and the exit, wake the waiters).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CLI } from './gateway-process.js';

export class RunningCli {
  readonly out: string[] = [];
  readonly err: string[] = [];
  readonly exited: Promise<number | null>;
  private waiters: (() => void)[] = [];
  private readonly proc: ChildProcess;

  /** Spawns `node dist/gateway/cli/main.js ...args` with this process's environment plus `env`. */
  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = (stream: NodeJS.ReadableStream, into: string[]): void => {
      createInterface({ input: stream }).on('line', (l) => {
        into.push(l);
        for (const w of this.waiters.splice(0)) w();
      });
    };
    lines(this.proc.stdout!, this.out);
    lines(this.proc.stderr!, this.err);
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code) => {
        resolve(code);
        for (const w of this.waiters.splice(0)) w();
      }),
    );
  }

  /** Resolves once `pred` holds over the output so far; rejects when the process exits first, or after `timeoutMs`. */
  async until(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (this.proc.exitCode !== null) throw new Error(`exited (${this.proc.exitCode}) before ${what}: ${this.err.join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; stderr: ${this.err.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** SIGTERM, when it still runs. */
  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
  }
}
