/**
 * The bounded fuzz run of `npm test`: the library of `npm run fuzz` (scripts/lib/fuzz-run.ts,
 * docs/fuzzing.md) with a budget of 100,000 inputs instead of 1,000,000, against the same
 * targets: the frame decoder and the GATT reassembler in this process, and a real gateway
 * process (embedded chain and influxd, enrolled devices, a granted researcher) for its HTTP API
 * and its MQTT listener. It asserts what the run asserts, target by target: no crash, no input
 * with an outcome its target does not allow, the gateway's memory bounded, every honest frame
 * stored, and the counters of /status accounting for the inputs; and that the run reached what it
 * is about (every refusal code of each layer, answers and acceptances alike).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ALL_FRAGMENT_REASONS } from '../../firmware-proto/reasons.js';
import { RSS_GROWTH_BOUND, runFuzz, type FuzzResult } from '../../scripts/lib/fuzz-run.js';
import type { TargetReport } from '../../scripts/lib/fuzz-report.js';

/** Inputs per target: 100,000 in all; the network targets are the slow ones (a few hundred inputs/s each here). */
const BUDGET = { frame: 62_000, gatt: 20_000, http: 10_000, mqtt: 8_000 };
const SEED = 2026;

let result: FuzzResult;
const report = (target: string): TargetReport => {
  const r = result.reports.find((x) => x.target === target);
  if (!r) throw new Error(`no report for ${target}`);
  return r;
};
/** The findings of a report, for a readable failure. */
const findings = (r: TargetReport): string[] => r.findings.map((f) => `#${f.index} ${f.what} :: ${f.input.slice(0, 300)}`);
const failedAccounting = (r: TargetReport): string[] =>
  Object.entries(r.accounting ?? {})
    .filter(([, v]) => !v.ok)
    .map(([k, v]) => `${k}: expected ${v.expected}, got ${v.got}`);

beforeAll(async () => {
  result = await runFuzz({
    inputs: Object.values(BUDGET).reduce((a, b) => a + b, 0),
    perTarget: BUDGET,
    seed: SEED,
    targets: ['frame', 'gatt', 'http', 'mqtt'],
  });
}, 240_000);

describe(`fuzzing, bounded (${Object.values(BUDGET)
  .reduce((a, b) => a + b, 0)
  .toLocaleString('en-US')} inputs, seed ${SEED})`, () => {
  it('ran every input of the budget', () => {
    expect(result.reports.map((r) => [r.target, r.inputs])).toEqual(Object.entries(BUDGET));
  });

  it('frame decoder: every input decodes or is refused with the FRAME_REASONS code the §3.2 reference gives, reaching every rule', () => {
    const r = report('frame');
    expect(findings(r)).toEqual([]);
    for (const c of [
      'decoded',
      'FRAME_TOO_SHORT',
      'FRAME_OVERSIZED',
      'UNKNOWN_VERSION',
      'UNKNOWN_SENSOR',
      'BAD_SCALE',
      'BAD_SAMPLE_COUNT',
      'BAD_INTERVAL',
      'LENGTH_MISMATCH',
      'BAD_SEQUENCE',
      'SAMPLE_OUT_OF_RANGE',
    ])
      expect(r.outcomes[c] ?? 0, c).toBeGreaterThan(0);
  });

  it('GATT reassembler: never throws, refuses only with FRAGMENT_* codes, holds at most one partial frame, and returns only witnessed frames', () => {
    const r = report('gatt');
    expect(findings(r)).toEqual([]);
    expect(r.units['frames'] ?? 0).toBeGreaterThan(1000);
    // Every code but STALLED-by-timer comes from pushes; all of them are reached.
    for (const c of ALL_FRAGMENT_REASONS) expect(r.outcomes[c] ?? 0, c).toBeGreaterThan(0);
  });

  it('HTTP API: every request gets a well-formed answer, every error body is a documented { error, message }, honest requests keep being served', () => {
    const r = report('http');
    expect(findings(r)).toEqual([]);
    expect(failedAccounting(r)).toEqual([]);
    expect(r.units['honestServed']).toBe(r.units['honestRequests']);
    const codes = new Set(Object.keys(r.outcomes).map((k) => k.split(' ')[1]));
    for (const c of [
      'BAD_REQUEST',
      'HTTP_MALFORMED',
      'HTTP_HEADERS_TOO_LARGE',
      'HTTP_BODY_TOO_LARGE',
      'AUTH_UNKNOWN_SESSION',
      'AUTH_MALFORMED',
      'NOT_GRANTEE',
      'BAD_CURSOR',
    ])
      expect(codes.has(c), c).toBe(true);
    expect(r.outcomes['200 -'] ?? 0).toBeGreaterThan(100);
  });

  it('MQTT listener: every connection ends in the CONNACK, answer or close the rules call for, and /status accounts for every input', () => {
    const r = report('mqtt');
    expect(findings(r)).toEqual([]);
    expect(failedAccounting(r)).toEqual([]);
    const outcomes = Object.keys(r.outcomes);
    for (const o of [
      'pre connack 0',
      'pre connack 4',
      'pre connack 5',
      'pre closed MQTT_MALFORMED',
      'pre closed MQTT_PACKET_TOO_LARGE',
      'pre closed MQTT_CONNECT_TIMEOUT',
      'pre closed MQTT_KEEPALIVE_REFUSED',
      'session puback',
      'session suback',
      'session closed MQTT_MALFORMED',
      'session closed MQTT_PACKET_TOO_LARGE',
      'session closed (keep-alive)',
    ]) {
      expect(outcomes, o).toContain(o);
    }
  });

  it('the gateway never exited, stored every honest frame exactly once, logged no error and no flood of warnings, and its memory stayed bounded', () => {
    const g = result.gateway!;
    expect(g.exited).toBe(false);
    expect(g.honest.sent).toBeGreaterThan(0);
    expect(g.honest.missing).toEqual([]);
    expect(g.honest.duplicated).toEqual([]);
    expect(g.errors).toEqual([]);
    expect(g.logFloods).toEqual([]);
    expect(g.rss.peakBytes - g.rss.baselineBytes).toBeLessThan(RSS_GROWTH_BOUND);
    expect(result.unexpected).toBe(0);
  });
});
