/**
 * The real gateway (`node dist/gateway/cli.js run`) as a child process, for the bench: the
 * same thing an operator runs, so its CPU time can be read from /proc by pid. Log lines
 * are JSON on stdout; `ready` carries the ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { StatusSnapshot } from '../../gateway/status/http.js';

/** dist/gateway/cli.js (this file runs from dist/scripts/lib/). */
export const GATEWAY_CLI = fileURLToPath(new URL('../../gateway/cli.js', import.meta.url));

export interface LogLine {
  level: number;
  event?: string;
  [k: string]: unknown;
}

export class GatewayProcess {
  readonly lines: LogLine[] = [];
  mqttPort = 0;
  httpPort = 0;
  readonly exited: Promise<number | null>;
  private stderr = '';
  private readyWaiter: ((l: LogLine | undefined) => void) | undefined;

  private constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (text) => {
      let l: LogLine;
      try {
        l = JSON.parse(text) as LogLine;
      } catch {
        return;
      }
      // Keep what matters for a post-mortem, not every line of a long run.
      if (this.lines.length < 1000 || l.level >= 40) this.lines.push(l);
      if (l.event === 'ready') this.readyWaiter?.(l);
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-8192)));
    this.exited = once(proc, 'exit').then(([code]) => {
      this.readyWaiter?.(undefined);
      return code as number | null;
    });
  }

  get pid(): number {
    if (this.proc.pid === undefined) throw new Error('gateway process has no pid');
    return this.proc.pid;
  }

  /** Spawns `cli.js run` with `--key value` flags and resolves once it logged `ready`. */
  static async start(flags: Record<string, string | number>, timeoutMs = 60_000): Promise<GatewayProcess> {
    const args = [GATEWAY_CLI, 'run', ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)])];
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const gw = new GatewayProcess(proc);
    let timer: NodeJS.Timeout | undefined;
    const ready = await new Promise<LogLine | undefined>((res) => {
      gw.readyWaiter = res;
      timer = setTimeout(() => res(undefined), timeoutMs);
    });
    clearTimeout(timer);
    gw.readyWaiter = undefined;
    if (!ready) {
      await gw.stop();
      throw new Error(`gateway did not become ready: ${gw.stderr.trim()}\n${gw.lines.map((l) => JSON.stringify(l)).join('\n')}`);
    }
    gw.mqttPort = ready['mqttPort'] as number;
    gw.httpPort = ready['httpPort'] as number;
    return gw;
  }

  async status(): Promise<StatusSnapshot> {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}/status`, { signal: AbortSignal.timeout(5000) });
    return (await res.json()) as StatusSnapshot;
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
}
