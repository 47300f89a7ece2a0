/**
 * Runs the real gateway (`node dist/gateway/cli.js run`) as a child process, so that tests
 * exercise exactly what an operator runs and can SIGKILL it. Log lines are JSON; tests
 * wait for the events they need instead of sleeping.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { StatusSnapshot } from '../../gateway/status/http.js';

export const CLI = fileURLToPath(new URL('../../dist/gateway/cli.js', import.meta.url));

export interface LogLine {
  level: number;
  event?: string;
  [k: string]: unknown;
}

export class GatewayProcess {
  readonly lines: LogLine[] = [];
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  mqttPort = 0;
  httpPort = 0;
  exited: Promise<number | null>;

  private constructor(readonly proc: ChildProcess) {
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (text) => {
      let l: LogLine;
      try {
        l = JSON.parse(text) as LogLine;
      } catch {
        return;
      }
      this.lines.push(l);
      for (const w of [...this.waiters]) {
        if (w.pred(l)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    this.exited = once(proc, 'exit').then(([code]) => {
      for (const w of this.waiters.splice(0)) w.resolve({ level: 60, event: 'exited', stderr });
      return code as number | null;
    });
  }

  /** Starts the gateway and resolves once it logged `ready`. */
  static async start(flags: Record<string, string | number>, env: NodeJS.ProcessEnv = {}): Promise<GatewayProcess> {
    const args = [CLI, 'run', ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)])];
    const proc = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const gw = new GatewayProcess(proc);
    const ready = await gw.waitFor((l) => l.event === 'ready');
    if (ready.event !== 'ready') throw new Error(`gateway exited before ready: ${String(ready.stderr)}\n${gw.lines.map((l) => JSON.stringify(l)).join('\n')}`);
    gw.mqttPort = ready.mqttPort as number;
    gw.httpPort = ready.httpPort as number;
    return gw;
  }

  /** Resolves with the first log line (past or future) that matches. */
  waitFor(pred: (l: LogLine) => boolean): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  async status(): Promise<StatusSnapshot> {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}/status`);
    return (await res.json()) as StatusSnapshot;
  }

  /** Polls the status endpoint until `pred` holds: waiting for a state, with a deadline. */
  async until(pred: (s: StatusSnapshot) => boolean, timeoutMs = 60_000, what = 'status condition'): Promise<StatusSnapshot> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.status();
      if (pred(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last status ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    await this.exited;
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}
