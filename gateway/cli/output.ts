/**
 * What the commands print, shared: the output sinks, times, the grant table, byte and count
 * formats, the progress line.
 */
import { writeFileSync } from 'node:fs';
import { sensorByCode } from '../../firmware-proto/catalogue.js';
import { ConfigError } from '../config.js';
import { sensorCodesOf } from '../chain/contracts.js';
import type { GrantJson } from '../research/http.js';

/** Output sinks of a command: stdout and stderr lines. */
export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Where progress lines are drawn (default process.stderr). */
  progress?: { isTTY?: boolean; write: (s: string) => unknown };
}

export const defaultIo: CliIo = { out: (l) => console.log(l), err: (l) => console.error(l) };

/** A time as ISO 8601 UTC, without .000 ms; anything that is not a time as it is. */
export function iso(ms: number): string {
  return Number.isFinite(ms) && ms >= 0 && ms <= 8.64e15 ? new Date(ms).toISOString().replace('.000Z', 'Z') : String(ms);
}

/** The first 8 hex digits of a hash, for a line a person reads. */
export function short(hex: string): string {
  return `${hex.slice(0, 10)}…`;
}

export function thousands(n: number): string {
  return n.toLocaleString('en-US');
}

export function megabytes(b: number): string {
  return b < 1024 * 1024 ? `${(b / 1024).toFixed(1)} kB` : `${(b / 1024 / 1024).toFixed(1)} MB`;
}

/** The catalogue names of a ConsentRegistry sensor mask (`sensor-<code>` for a code this build does not know, as the gateway names it). */
export function metricNames(mask: bigint | number): string[] {
  return sensorCodesOf(mask).map((c) => sensorByCode(c)?.name ?? `sensor-${c}`);
}

/** A grant as `consent list` shows it: the API's Grant (docs/research-api.md) without the pseudonym. */
export type GrantRow = Omit<GrantJson, 'patient'>;

/** The grant table of `consent list` (and `research grants`): a header and one line per grant. */
export function formatGrantTable(rows: readonly GrantRow[]): string[] {
  if (rows.length === 0) return ['(no grants)'];
  const cells = rows.map((g) => [
    g.grantId,
    g.status === 'REVOKED' ? `REVOKED ${iso(g.revokedAtMs!)}` : g.status,
    g.researcher,
    g.metrics.join(','),
    `${iso(g.dataFromMs)} .. ${iso(g.dataToMs)}`,
    iso(g.expiresAtMs),
    iso(g.grantedAtMs),
  ]);
  const head = ['grant', 'status', 'researcher', 'metrics', 'data window', 'expires', 'granted'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(widths[i]!))).join('  ');
  return [line(head), ...cells.map(line)];
}

/**
 * The progress display: on a terminal one line redrawn in place (at most every 100 ms); on
 * anything else a line every `intervalMs` (default 5 s), and the last one at the end.
 */
export class ProgressLine {
  private lastDraw = -Infinity;
  private drawn = false;
  constructor(
    private readonly stream: { isTTY?: boolean; write: (s: string) => unknown },
    private readonly intervalMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  update(line: string, force = false): void {
    const t = this.now();
    if (this.stream.isTTY) {
      if (!force && t - this.lastDraw < 100) return;
      this.stream.write(`\r\x1b[2K${line}`);
      this.drawn = true;
    } else {
      if (!force && t - this.lastDraw < this.intervalMs) return;
      this.stream.write(`${line}\n`);
    }
    this.lastDraw = t;
  }

  finish(line: string): void {
    if (this.stream.isTTY) this.stream.write(`\r\x1b[2K${line}\n`);
    else this.stream.write(`${line}\n`);
    this.drawn = false;
  }

  /** Ends a redrawn line before other output (a TTY), so it is not overwritten. */
  break(): void {
    if (this.stream.isTTY && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}

/**
 * An audit's end (`vitalproof audit`, with or without --hospital): the JSON report to stdout
 * (`-`, the summary having gone to stderr) or to a file, and the exit code: 0 ok, 1 findings.
 */
export function finishReport(report: { ok: boolean }, json: string | undefined, out: (line: string) => void, say: (line: string) => void): number {
  if (json === '-') out(JSON.stringify(report, null, 2));
  else if (json) {
    writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
    say(`report written to ${json}`);
  }
  return report.ok ? 0 : 1;
}

/** An audit that could not run: the error line, exit code 2. */
export function auditFailed(e: unknown, say: (line: string) => void): number {
  const err = e as Error;
  say(`error: ${e instanceof ConfigError ? err.message : `the audit could not run: ${err.message}`}`);
  return 2;
}
