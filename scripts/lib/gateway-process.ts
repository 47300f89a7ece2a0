/**
 * The real gateway (`node dist/gateway/cli/main.js run`) as a child process: the same thing an
 * operator runs, for the bench (its CPU time is read from /proc by pid) and for the
 * end-to-end tests (which SIGKILL it). Log lines are JSON on stdout; callers wait for the
 * events they need (`ready` carries the ports) instead of sleeping.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { StatusSnapshot } from '../../gateway/status/http.js';

/** dist/gateway/cli/main.js: next to this file when it runs from dist/scripts/lib/, else (vitest on the sources) in dist/. */
export const GATEWAY_CLI =
  [new URL('../../gateway/cli/main.js', import.meta.url), new URL('../../dist/gateway/cli/main.js', import.meta.url)]
    .map((u) => fileURLToPath(u))
    .find((p) => existsSync(p)) ?? fileURLToPath(new URL('../../dist/gateway/cli/main.js', import.meta.url));

/** How long `start` waits for the gateway's `ready` line (influxd start and spool recovery included). */
const READY_TIMEOUT_MS = 60_000;

export interface LogLine {
  level: number;
  event?: string;
  [k: string]: unknown;
}

export class GatewayProcess {
  /** Every line with an `event`, every warning and error, and the first 1000 others. */
  readonly lines: LogLine[] = [];
  mqttPort = 0;
  httpPort = 0;
  readonly exited: Promise<number | null>;
  private stderr = '';
  private others = 0;
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  private constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (text) => {
      let l: LogLine;
      try {
        l = JSON.parse(text) as LogLine;
      } catch {
        return;
      }
      if (l.event !== undefined || l.level >= 40 || this.others++ < 1000) this.lines.push(l);
      for (const w of [...this.waiters]) {
        if (w.pred(l)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-8192)));
    this.exited = once(proc, 'exit').then(([code]) => {
      for (const w of this.waiters.splice(0)) w.resolve({ level: 60, event: 'exited', stderr: this.stderr });
      return code as number | null;
    });
  }

  get pid(): number {
    if (this.proc.pid === undefined) throw new Error('gateway process has no pid');
    return this.proc.pid;
  }

  /** Spawns `cli/main.js run` (or `hub`) with `--key value` flags and resolves once it logged `ready`. */
  static async start(flags: Record<string, string | number>, env: NodeJS.ProcessEnv = {}, command: 'run' | 'hub' = 'run'): Promise<GatewayProcess> {
    const args = [GATEWAY_CLI, command, ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)])];
    const proc = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const gw = new GatewayProcess(proc);
    let timer: NodeJS.Timeout | undefined;
    const ready = await Promise.race([
      gw.waitFor((l) => l.event === 'ready'),
      new Promise<LogLine>((res) => (timer = setTimeout(() => res({ level: 60, event: 'timeout' }), READY_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (ready.event !== 'ready') {
      await gw.stop();
      throw new Error(`gateway not ready (${ready.event}): ${gw.stderr.trim()}\n${gw.lines.map((l) => JSON.stringify(l)).join('\n')}`);
    }
    gw.mqttPort = ready['mqttPort'] as number;
    gw.httpPort = ready['httpPort'] as number;
    return gw;
  }

  /** Resolves with the first log line (past or future) that matches; with an `exited` line if the process ends first. */
  waitFor(pred: (l: LogLine) => boolean): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve({ level: 60, event: 'exited', stderr: this.stderr });
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  async status(): Promise<StatusSnapshot> {
    return this.get<StatusSnapshot>('/status');
  }

  /** GET a JSON route of the process's HTTP endpoint (a hub's /status and /fleet). */
  async get<T>(path: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}${path}`, { signal: AbortSignal.timeout(5000) });
    return (await res.json()) as T;
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

  /** Warnings and errors the gateway logged (level ≥ 40). */
  problems(): LogLine[] {
    return this.lines.filter((l) => l.level >= 40);
  }

  /** SIGTERM to this process's pid; SIGKILL to the same pid if it has not exited after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([this.exited.then(() => false), new Promise<boolean>((res) => (timer = setTimeout(() => res(true), graceMs)))]);
    clearTimeout(timer);
    if (late) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }

  /** A crash: SIGKILL, and wait for the exit. */
  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}
