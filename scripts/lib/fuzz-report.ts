/**
 * What a fuzz target reports: inputs run, outcomes counted by code (a closed set per target),
 * and the inputs whose outcome was not one the target allows, each with enough to reproduce
 * it (the seed, the index, the input bytes).
 */

/** An input the oracle refused: a crash, an uncoded error, a hang, a malformed answer. */
export interface Finding {
  /** The input's index in its target's stream (same seed, same index: same input). */
  index: number;
  what: string;
  /** The input, hex (cut to 512 bytes) or a short description. */
  input: string;
}

export interface TargetReport {
  target: string;
  seed: number;
  inputs: number;
  elapsedMs: number;
  /** Outcome code → inputs that ended so. */
  outcomes: Record<string, number>;
  /** Every unexpected outcome counted; the first few kept in `findings`. */
  unexpected: number;
  findings: Finding[];
  /** Further counts: notifications, connections, packets, RSS samples … */
  units: Record<string, number>;
  /** Peak and last resident set of the gateway process (network targets), bytes. */
  rss?: { baselineBytes: number; peakBytes: number; afterBytes: number; samples: number };
  /** Counter checks against /status: name → { expected, got } (network targets). */
  accounting?: Record<string, { expected: number | string; got: number | string; ok: boolean }>;
}

/** Findings kept per code, and in all: the first of each kind are what a reader needs. */
const KEEP_PER_CODE = 3;
const KEEP_FINDINGS = 40;

/** Counts outcomes and keeps the first findings of one target's run. */
export class Tally {
  readonly outcomes = new Map<string, number>();
  readonly findings: Finding[] = [];
  readonly units: Record<string, number> = {};
  unexpected = 0;
  inputs = 0;

  count(code: string, n = 1): void {
    this.outcomes.set(code, (this.outcomes.get(code) ?? 0) + n);
  }

  unit(name: string, n = 1): void {
    this.units[name] = (this.units[name] ?? 0) + n;
  }

  /** An outcome the target does not allow: counted under `unexpected:<code>` and kept for the report. */
  fail(index: number, code: string, what: string, input: Uint8Array | string): void {
    this.unexpected++;
    this.count(`unexpected:${code}`);
    if ((this.outcomes.get(`unexpected:${code}`) ?? 0) <= KEEP_PER_CODE && this.findings.length < KEEP_FINDINGS) {
      this.findings.push({ index, what: `${code}: ${what}`, input: typeof input === 'string' ? input.slice(0, 1024) : hexCut(input) });
    }
  }

  report(target: string, seed: number, elapsedMs: number): TargetReport {
    return {
      target,
      seed,
      inputs: this.inputs,
      elapsedMs,
      outcomes: Object.fromEntries([...this.outcomes].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))),
      unexpected: this.unexpected,
      findings: this.findings,
      units: { ...this.units },
    };
  }
}

export function hexCut(b: Uint8Array, max = 512): string {
  const h = Buffer.from(b.buffer, b.byteOffset, Math.min(b.byteLength, max)).toString('hex');
  return b.byteLength > max ? `${h}… (${b.byteLength} bytes)` : h;
}

/** One line per target and its outcomes, for the console and docs/fuzzing.md. */
export function formatReport(r: TargetReport): string {
  const s = r.elapsedMs / 1000;
  const lines = [
    `${r.target}: ${r.inputs.toLocaleString('en-US')} inputs in ${s.toFixed(1)} s (${Math.round(r.inputs / Math.max(s, 1e-3)).toLocaleString('en-US')} inputs/s), unexpected ${r.unexpected}`,
  ];
  const units = Object.entries(r.units);
  if (units.length) lines.push(`  units: ${units.map(([k, v]) => `${k} ${v.toLocaleString('en-US')}`).join(', ')}`);
  if (r.rss)
    lines.push(`  gateway RSS: baseline ${mib(r.rss.baselineBytes)}, peak ${mib(r.rss.peakBytes)}, after ${mib(r.rss.afterBytes)} (${r.rss.samples} samples)`);
  lines.push(
    `  outcomes: ${Object.entries(r.outcomes)
      .map(([k, v]) => `${k} ${v.toLocaleString('en-US')}`)
      .join(', ')}`,
  );
  for (const [k, v] of Object.entries(r.accounting ?? {})) lines.push(`  ${v.ok ? 'ok  ' : 'FAIL'} ${k}: expected ${v.expected}, got ${v.got}`);
  for (const f of r.findings) lines.push(`  finding #${f.index}: ${f.what}\n    input: ${f.input}`);
  return lines.join('\n');
}

export const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
