/**
 * The alarm registry (gateway/status/health.ts) and the alarm rules (health-monitor.ts): one
 * log line per raise and per clear, dependency up/down with since-times, the watchdog verdict,
 * and each rule's raise and clear.
 */
import { describe, expect, it } from 'vitest';
import { ALARMS, ALL_ALARMS, Health, type AlarmCode } from '../../../gateway/status/health.js';
import { chainRule, spoolRule, storageRule, type AnchorStream } from '../../../gateway/status/health-monitor.js';
import type { AnchorerStatus } from '../../../gateway/anchor/anchorer.js';

/** A log that keeps its lines (what pino would write), and a clock the test moves. */
function setup(): { h: Health; lines: { level: string; obj: Record<string, unknown> }[]; clock: { t: number } } {
  const lines: { level: string; obj: Record<string, unknown> }[] = [];
  const clock = { t: 1_000_000 };
  const log = {
    info: (obj: object) => lines.push({ level: 'info', obj: obj as Record<string, unknown> }),
    warn: (obj: object) => lines.push({ level: 'warn', obj: obj as Record<string, unknown> }),
    error: (obj: object) => lines.push({ level: 'error', obj: obj as Record<string, unknown> }),
  };
  return { h: new Health({ log, now: () => clock.t }), lines, clock };
}

describe('Health: alarms', () => {
  it('raises once, updates the detail silently, clears once, one log line each', () => {
    const { h, lines, clock } = setup();
    expect(h.raise('STORAGE_DOWN', 'INFLUX_TIMEOUT: first')).toBe(true);
    clock.t += 5000;
    expect(h.raise('STORAGE_DOWN', 'INFLUX_TIMEOUT: second')).toBe(false);
    expect(h.list()).toEqual([{ code: 'STORAGE_DOWN', severity: 'critical', sinceMs: 1_000_000, detail: 'INFLUX_TIMEOUT: second' }]);
    expect(h.isRaised('STORAGE_DOWN')).toBe(true);
    expect(lines).toEqual([{ level: 'error', obj: { event: 'alarm_raised', code: 'STORAGE_DOWN', severity: 'critical', detail: 'INFLUX_TIMEOUT: first' } }]);
    clock.t += 2500;
    expect(h.clear('STORAGE_DOWN')).toBe(true);
    expect(h.clear('STORAGE_DOWN')).toBe(false);
    expect(h.list()).toEqual([]);
    expect(lines.slice(1)).toEqual([{ level: 'info', obj: { event: 'alarm_cleared', code: 'STORAGE_DOWN', severity: 'critical', lastedMs: 7500 } }]);
  });

  it('logs warnings at warn level and keeps them out of critical()', () => {
    const { h, lines } = setup();
    h.raise('PLAIN_LISTENER', 'mqtt on 0.0.0.0:1883 without TLS');
    h.raise('CHAIN_DOWN', 'CHAIN_UNREACHABLE: …');
    expect(lines.map((l) => l.level)).toEqual(['warn', 'error']);
    expect(h.critical().map((a) => a.code)).toEqual(['CHAIN_DOWN']);
    expect(h.list().map((a) => a.code)).toEqual(['PLAIN_LISTENER', 'CHAIN_DOWN']);
  });

  it('set() raises or clears; list() hands out copies', () => {
    const { h } = setup();
    h.set('SPOOL_NEAR_QUOTA', true, 'at 85 %');
    h.list()[0]!.detail = 'changed by a reader';
    expect(h.list()[0]!.detail).toBe('at 85 %');
    h.set('SPOOL_NEAR_QUOTA', false, '');
    expect(h.isRaised('SPOOL_NEAR_QUOTA')).toBe(false);
  });

  it('refuses a code outside the closed set, and bounds details', () => {
    const { h } = setup();
    expect(() => h.raise('NOT_A_CODE' as AlarmCode, 'x')).toThrow(TypeError);
    expect(() => h.clear('toString' as AlarmCode)).toThrow(TypeError);
    h.raise('DISK_FULL', 'x'.repeat(10_000));
    expect(h.list()[0]!.detail.length).toBe(500);
  });

  it('has the codes the issue names, each critical or warning', () => {
    for (const c of ['CHAIN_DOWN', 'CHAIN_HUNG', 'ANCHORS_BEHIND', 'STORAGE_DOWN', 'SPOOL_NEAR_QUOTA', 'DISK_FULL', 'REGISTRY_BAD_KEY', 'PLAIN_LISTENER'])
      expect(ALL_ALARMS).toContain(c);
    expect(ALARMS.PLAIN_LISTENER.severity).toBe('warning');
    expect(ALARMS.DISK_FULL.severity).toBe('critical');
  });
});

describe('Health: dependencies', () => {
  it('keeps since-times across repeated results, and the last good probe while down', () => {
    const { h, clock } = setup();
    expect(h.dependency('chain')).toBeUndefined();
    h.dependencyUp('chain');
    clock.t += 1000;
    h.dependencyUp('chain');
    expect(h.dependency('chain')).toEqual({ up: true, sinceMs: 1_000_000, lastOkMs: 1_001_000 });
    clock.t += 1000;
    h.dependencyDown('chain', 'CHAIN_TIMEOUT: no answer', 'CHAIN_TIMEOUT');
    clock.t += 3000;
    h.dependencyDown('chain', 'CHAIN_TIMEOUT: still none', 'CHAIN_TIMEOUT');
    expect(h.dependency('chain')).toEqual({
      up: false,
      sinceMs: 1_002_000,
      lastOkMs: 1_001_000,
      lastError: 'CHAIN_TIMEOUT: still none',
      code: 'CHAIN_TIMEOUT',
    });
    clock.t += 1000;
    h.dependencyUp('chain');
    expect(h.dependencies()).toEqual({ chain: { up: true, sinceMs: 1_006_000, lastOkMs: 1_006_000 } });
  });
});

describe('Health: the watchdog verdict', () => {
  it('is not ok before the first evaluation, nor when evaluations stop', () => {
    const { h, clock } = setup();
    expect(h.watchdog(3000).ok).toBe(false);
    h.beat();
    expect(h.watchdog(3000)).toEqual({ ok: true });
    clock.t += 3001;
    expect(h.watchdog(3000)).toEqual({ ok: false, why: 'health not evaluated for 3001 ms' });
  });

  it('is withheld only for critical alarms a restart cures', () => {
    const { h } = setup();
    h.beat();
    h.raise('STORAGE_DOWN', 'external InfluxDB down');
    h.raise('PLAIN_LISTENER', 'plain', { restartHelps: true });
    expect(h.watchdog(3000).ok).toBe(true);
    h.raise('CHAIN_HUNG', 'embedded anvil silent', { restartHelps: true });
    expect(h.watchdog(3000)).toEqual({ ok: false, why: 'CHAIN_HUNG' });
    h.clear('CHAIN_HUNG');
    expect(h.watchdog(3000).ok).toBe(true);
  });
});

describe('alarm rules', () => {
  const base: AnchorerStatus = { up: true, sinceMs: 0 };
  const stream = (st: Partial<AnchorerStatus>, behindAfterMs = 30_000): AnchorStream => ({ name: 'frames', status: () => ({ ...base, ...st }), behindAfterMs });

  it('chain: a time-out is CHAIN_HUNG, a refusal CHAIN_DOWN, an answer clears both', () => {
    const { h, clock } = setup();
    const rule = chainRule({ embedded: true, txTimeoutMs: 60_000, streams: [stream({})] });
    h.dependencyDown('chain', 'CHAIN_TIMEOUT: {"method":"eth_blockNumber"}', 'CHAIN_TIMEOUT');
    rule(h, clock.t);
    expect(h.list()).toMatchObject([{ code: 'CHAIN_HUNG', detail: 'CHAIN_TIMEOUT: {"method":"eth_blockNumber"}', restartHelps: true }]);
    h.dependencyDown('chain', 'CHAIN_UNREACHABLE: ECONNREFUSED', 'CHAIN_UNREACHABLE');
    rule(h, clock.t);
    expect(h.list().map((a) => a.code)).toEqual(['CHAIN_DOWN']);
    h.dependencyUp('chain');
    rule(h, clock.t);
    expect(h.list()).toEqual([]);
  });

  it("chain: an external chain's alarms leave the watchdog fed", () => {
    const { h, clock } = setup();
    h.beat();
    h.dependencyDown('chain', 'CHAIN_TIMEOUT: …', 'CHAIN_TIMEOUT');
    chainRule({ embedded: false, txTimeoutMs: 60_000, streams: [] })(h, clock.t);
    expect(h.isRaised('CHAIN_HUNG')).toBe(true);
    expect(h.watchdog(3000).ok).toBe(true);
  });

  it('chain: an anchor transaction unmined past txTimeoutMs while the node answers is CHAIN_HUNG', () => {
    const { h, clock } = setup();
    h.dependencyUp('chain');
    const pendingTx = { batch: 7n, txHash: '0xabc', sinceMs: clock.t };
    const rule = chainRule({ embedded: false, txTimeoutMs: 60_000, streams: [stream({ pendingTx })] });
    rule(h, clock.t + 60_000);
    expect(h.isRaised('CHAIN_HUNG')).toBe(false);
    rule(h, clock.t + 61_000);
    expect(h.list()[0]).toMatchObject({
      code: 'CHAIN_HUNG',
      detail: 'stream frames: anchor transaction 0xabc of batch 7 not mined for 61 s (chain.txTimeoutMs 60000): the chain answers but does not mine',
    });
  });

  it("anchors: ANCHORS_BEHIND past the stream's limit, ANCHOR_HALTED while halted", () => {
    const { h, clock } = setup();
    h.dependencyUp('chain');
    let st: Partial<AnchorerStatus> = { oldestPending: { batch: 3n, sealedAtMs: clock.t }, lastError: 'CHAIN_TIMEOUT: x' };
    const rule = chainRule({ embedded: false, txTimeoutMs: 60_000, streams: [{ name: 'frames', status: () => ({ ...base, ...st }), behindAfterMs: 30_000 }] });
    rule(h, clock.t + 30_000);
    expect(h.isRaised('ANCHORS_BEHIND')).toBe(false);
    rule(h, clock.t + 31_000);
    expect(h.list()[0]).toMatchObject({
      code: 'ANCHORS_BEHIND',
      detail: 'stream frames: batch 3 sealed 31 s ago, not anchored (limit 30 s): CHAIN_TIMEOUT: x',
    });
    st = { halted: 'CHAIN_BEHIND' };
    rule(h, clock.t + 32_000);
    expect(h.list().map((a) => [a.code, a.detail])).toEqual([['ANCHOR_HALTED', 'stream frames: CHAIN_BEHIND']]);
  });

  it('storage: STORAGE_DOWN follows the influx dependency', () => {
    const { h, clock } = setup();
    const rule = storageRule({ embedded: true });
    rule(h, clock.t);
    expect(h.list()).toEqual([]); // not probed yet: no verdict
    h.dependencyDown('influx', 'INFLUX_UNREACHABLE: ECONNREFUSED', 'INFLUX_UNREACHABLE');
    rule(h, clock.t);
    expect(h.list()).toMatchObject([{ code: 'STORAGE_DOWN', detail: 'INFLUX_UNREACHABLE: ECONNREFUSED', restartHelps: true }]);
    h.dependencyUp('influx');
    rule(h, clock.t);
    expect(h.list()).toEqual([]);
  });

  it('spool: SPOOL_NEAR_QUOTA at the alarm ratio', () => {
    const { h, clock } = setup();
    let bytes = 79;
    const rule = spoolRule(() => ({ bytes, quotaBytes: 100, alarmRatio: 0.8 }));
    rule(h, clock.t);
    expect(h.isRaised('SPOOL_NEAR_QUOTA')).toBe(false);
    bytes = 80;
    rule(h, clock.t);
    expect(h.list()[0]!.detail).toBe('spool holds 80 bytes of its 100-byte quota (80.0 %, alarm at 80 %)');
    bytes = 10;
    rule(h, clock.t);
    expect(h.isRaised('SPOOL_NEAR_QUOTA')).toBe(false);
  });
});
