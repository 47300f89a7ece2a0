/**
 * Evaluates the gateway's alarms (./health.ts) on a short timer and on events: every
 * `intervalMs` it probes each dependency with a deadline of its own (the chain's endpoint with
 * eth_blockNumber, InfluxDB with /ping), records the result as the dependency's health, and
 * runs the alarm rules; a probe that settles runs the rules again at once. A probe still
 * running at the next tick is not started twice, so a hung dependency costs one pending
 * request, not one per second.
 *
 * Why probes of their own rather than the anchorer's or the writer's last result: those only
 * talk to a dependency when they have work, and a call of theirs may legitimately take long (a
 * transaction waits for its block). A dependency that stopped answering must show as down
 * within seconds, whether or not anything is queued (issue #10, item 6).
 *
 *   tick ──► probe chain (eth_blockNumber, probeTimeoutMs) ──► dependencies.chain ──┐
 *        ──► probe influx (/ping, probeTimeoutMs; + the writer's state) ──► .influx ─┤
 *        ──► rules: chain, anchors, storage, spool ◄─────────────────────────────────┘
 */
import type { AnchorerStatus } from '../anchor/anchorer.js';
import { probeChain } from '../chain/rpc-deadline.js';
import { StorageError } from '../storage/errors.js';
import { requestWithDeadline, type DeadlineHttpError } from '../util/deadline-http.js';
import type { Health } from './health.js';

/** A dependency check. `run` resolves when the dependency answers and rejects with a coded error (`code`) when not. */
export interface Probe {
  /** The dependency's name in /status `dependencies` and in `vitalproof_dependency_up`. */
  name: string;
  /** Must give up by itself after `timeoutMs`. */
  run(timeoutMs: number): Promise<void>;
}

/** An alarm rule: reads what it needs and raises or clears its alarms. */
export type Rule = (health: Health, now: number) => void;

export interface HealthMonitorOptions {
  /** How often probes run and rules are evaluated (health.intervalMs). */
  intervalMs: number;
  /** Deadline of each probe (health.probeTimeoutMs). */
  probeTimeoutMs: number;
  probes: readonly Probe[];
  rules: readonly Rule[];
}

export class HealthMonitor {
  private timer: NodeJS.Timeout | undefined;
  private readonly running = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(
    private readonly health: Health,
    private readonly opts: HealthMonitorOptions,
  ) {
    for (const [k, v] of [
      ['intervalMs', opts.intervalMs],
      ['probeTimeoutMs', opts.probeTimeoutMs],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`${k} must be a positive integer, got ${v}`);
    }
  }

  /** Probes and evaluates now, then every intervalMs. */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs);
    this.timer.unref();
    this.tick();
  }

  /** Runs the rules now (after an event that may change an alarm). */
  evaluate(): void {
    const now = Date.now();
    for (const rule of this.opts.rules) rule(this.health, now);
    this.health.beat();
  }

  /** Stops the timer and waits for the probes in flight (each bounded by its deadline). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all(this.running.values());
  }

  private tick(): void {
    for (const p of this.opts.probes) if (!this.running.has(p.name)) this.probe(p);
    this.evaluate();
  }

  private probe(p: Probe): void {
    const done = p.run(this.opts.probeTimeoutMs).then(
      () => this.health.dependencyUp(p.name),
      (e: unknown) => {
        const err = e as Error & { code?: unknown };
        this.health.dependencyDown(p.name, err.message ?? String(e), typeof err.code === 'string' ? err.code : codeOf(err.message));
      },
    );
    const settled = done.finally(() => {
      this.running.delete(p.name);
      if (!this.stopped) this.evaluate();
    });
    this.running.set(p.name, settled);
  }
}

/** The leading CODE of a coded error message ("INFLUX_TIMEOUT: …"). */
function codeOf(message: string | undefined): string | undefined {
  return /^([A-Z][A-Z0-9_]+):/.exec(message ?? '')?.[1];
}

// ---- probes ------------------------------------------------------------------------------

/** The chain's JSON-RPC endpoint answers eth_blockNumber (ChainError CHAIN_TIMEOUT / CHAIN_UNREACHABLE / CHAIN_RPC_ERROR when not). */
export function chainProbe(url: string): Probe {
  return { name: 'chain', run: async (timeoutMs) => void (await probeChain(url, timeoutMs)) };
}

/**
 * InfluxDB answers /ping with 204 within the deadline, and the spool's writer is not failing
 * (a server that pings but refuses writes is down for the gateway too).
 * @param writer the drainer's state: `up` false while its writes fail, with the last error.
 */
export function influxProbe(url: string, writer: () => { up: boolean; lastError?: string | undefined }): Probe {
  const base = url.replace(/\/+$/, '');
  const origin = (() => {
    try {
      return new URL(url).origin;
    } catch {
      return '(invalid url)';
    }
  })();
  return {
    name: 'influx',
    run: async (timeoutMs) => {
      let status: number;
      try {
        status = (await requestWithDeadline(`${base}/ping`, { method: 'GET', timeoutMs })).status;
      } catch (e) {
        const err = e as DeadlineHttpError;
        if (err.kind === 'timeout') throw new StorageError('INFLUX_TIMEOUT', { url: origin, path: '/ping', timeoutMs }, { cause: e });
        throw new StorageError('INFLUX_UNREACHABLE', { url: origin, path: '/ping', reason: err.reason ?? err.message }, { cause: e });
      }
      if (status !== 204)
        throw new StorageError(status >= 500 ? 'INFLUX_SERVER_ERROR' : 'INFLUX_BAD_RESPONSE', { url: origin, path: '/ping', expected: 204, status });
      const w = writer();
      if (!w.up) throw new Error(w.lastError ?? 'writes to InfluxDB fail');
    },
  };
}

// ---- rules -------------------------------------------------------------------------------

/** One anchoring stream as the rules see it. */
export interface AnchorStream {
  /** e.g. "frames", "access-log". */
  name: string;
  status(): AnchorerStatus;
  /** ANCHORS_BEHIND once its oldest unanchored batch is older than this (ms). */
  behindAfterMs: number;
}

/**
 * CHAIN_DOWN / CHAIN_HUNG from the chain probe (a time-out is a hang: the node accepts and does
 * not answer; anything else is down), CHAIN_HUNG also when an anchoring transaction waits longer
 * than `txTimeoutMs` to be mined while the node answers (a consortium chain that lost its
 * validators), ANCHOR_HALTED and ANCHORS_BEHIND from the anchorers.
 * @param embedded the chain is our own child (anvil): a restart of the gateway restarts it.
 */
export function chainRule(opts: { embedded: boolean; txTimeoutMs: number; streams: readonly AnchorStream[] }): Rule {
  const restartHelps = opts.embedded;
  return (h, now) => {
    const dep = h.dependency('chain');
    const st = opts.streams.map((s) => ({ s, st: s.status() }));
    if (dep && !dep.up) {
      const hung = dep.code === 'CHAIN_TIMEOUT';
      h.raise(hung ? 'CHAIN_HUNG' : 'CHAIN_DOWN', dep.lastError ?? 'no answer', { restartHelps });
      h.clear(hung ? 'CHAIN_DOWN' : 'CHAIN_HUNG');
    } else {
      h.clear('CHAIN_DOWN');
      const stuck = st.filter(({ st: a }) => a.pendingTx && now - a.pendingTx.sinceMs > opts.txTimeoutMs);
      h.set(
        'CHAIN_HUNG',
        stuck.length > 0,
        stuck
          .map(
            ({ s, st: a }) =>
              `stream ${s.name}: anchor transaction ${a.pendingTx!.txHash} of batch ${a.pendingTx!.batch} not mined for ${Math.round((now - a.pendingTx!.sinceMs) / 1000)} s (chain.txTimeoutMs ${opts.txTimeoutMs}): the chain answers but does not mine`,
          )
          .join('; '),
      );
    }
    const halted = st.filter(({ st: a }) => a.halted);
    h.set('ANCHOR_HALTED', halted.length > 0, halted.map(({ s, st: a }) => `stream ${s.name}: ${a.halted}`).join('; '));
    const behind = st.filter(({ s, st: a }) => a.oldestPending && now - a.oldestPending.sealedAtMs > s.behindAfterMs);
    h.set(
      'ANCHORS_BEHIND',
      behind.length > 0,
      behind
        .map(
          ({ s, st: a }) =>
            `stream ${s.name}: batch ${a.oldestPending!.batch} sealed ${Math.round((now - a.oldestPending!.sealedAtMs) / 1000)} s ago, not anchored (limit ${Math.round(s.behindAfterMs / 1000)} s)${a.lastError ? `: ${a.lastError}` : ''}`,
        )
        .join('; '),
    );
  };
}

/**
 * STORAGE_DOWN from the InfluxDB probe.
 * @param embedded InfluxDB is our own child (influxd): a restart of the gateway restarts it.
 */
export function storageRule(opts: { embedded: boolean }): Rule {
  return (h) => {
    const dep = h.dependency('influx');
    h.set('STORAGE_DOWN', dep !== undefined && !dep.up, dep?.lastError ?? '', { restartHelps: opts.embedded });
  };
}

/** SPOOL_NEAR_QUOTA at `alarmRatio` of the spool's quota. */
export function spoolRule(read: () => { bytes: number; quotaBytes: number; alarmRatio: number }): Rule {
  return (h) => {
    const s = read();
    const ratio = s.bytes / s.quotaBytes;
    h.set(
      'SPOOL_NEAR_QUOTA',
      ratio >= s.alarmRatio,
      `spool holds ${s.bytes} bytes of its ${s.quotaBytes}-byte quota (${(ratio * 100).toFixed(1)} %, alarm at ${(s.alarmRatio * 100).toFixed(0)} %)`,
    );
  };
}
