/**
 * One place for dependency health and alarms. Whoever detects a fault raises its alarm here
 * (the health monitor for the chain, InfluxDB, anchors and the spool; the spool for a full
 * disk; the registry for a refused on-chain key; the listeners for plain TCP); /status lists
 * the alarms, /healthz answers 503 while a critical one is raised, /metrics exports
 * `vitalproof_alarm{code}` and `vitalproof_dependency_up{dependency}`, and the systemd
 * watchdog (./sd-notify.ts) stops being fed while an alarm that a restart would cure is raised.
 *
 * The codes are a closed set (docs/operations.md, "Alarms", has what each means and what to do).
 * Raising an alarm that is already raised only updates its detail; each raise and each clear
 * logs exactly one line (`alarm_raised`, `alarm_cleared`), so a fault that lasts an hour logs
 * twice, not once per evaluation.
 *
 * @example
 *   const health = new Health({ log });
 *   health.raise('STORAGE_DOWN', 'INFLUX_TIMEOUT: …');   // logs alarm_raised
 *   health.list();                                        // [{ code: 'STORAGE_DOWN', severity: 'critical', sinceMs, detail }]
 *   health.clear('STORAGE_DOWN');                         // logs alarm_cleared
 */

export type AlarmSeverity = 'critical' | 'warning';

/** Every alarm: its severity (critical turns /healthz to 503) and what it means. */
export const ALARMS = {
  CHAIN_DOWN: { severity: 'critical', meaning: "the chain's JSON-RPC endpoint refuses or fails requests: anchors queue" },
  CHAIN_HUNG: {
    severity: 'critical',
    meaning: 'the chain accepts connections but does not answer within the deadline, or answers but does not mine the anchor transaction',
  },
  ANCHORS_BEHIND: {
    severity: 'critical',
    meaning: 'the oldest sealed batch waiting for its anchor is older than health.anchorsBehindIntervals batch intervals',
  },
  ANCHOR_HALTED: { severity: 'critical', meaning: 'anchoring stopped on a fault it must not paper over (CHAIN_BEHIND, ANCHOR_CONFLICT): needs an operator' },
  STORAGE_DOWN: { severity: 'critical', meaning: 'InfluxDB does not answer /ping within the deadline, or writes to it fail: frames wait in the spool' },
  SPOOL_NEAR_QUOTA: { severity: 'critical', meaning: 'the spool holds spool.alarmRatio of its quota: at the quota, acknowledgements stop' },
  DISK_FULL: { severity: 'critical', meaning: "the data dir's filesystem is (nearly) full: acknowledgements are held until space returns" },
  REGISTRY_BAD_KEY: { severity: 'warning', meaning: 'a device key enrolled on chain breaks the key rule (PROTOCOL.md §2.2): it is refused, never trusted' },
  PLAIN_LISTENER: { severity: 'warning', meaning: 'a listener speaks plain TCP or HTTP beyond loopback: readings and tokens cross the network in clear' },
} as const satisfies Record<string, { severity: AlarmSeverity; meaning: string }>;

export type AlarmCode = keyof typeof ALARMS;
export const ALL_ALARMS = Object.keys(ALARMS) as AlarmCode[];

export interface Alarm {
  code: AlarmCode;
  severity: AlarmSeverity;
  /** When it was raised (Unix ms). */
  sinceMs: number;
  /** What was found, with the dependency's own error code where there is one. */
  detail: string;
  /** A restart of the gateway cures it (a hung child process of ours): the systemd watchdog stops being fed. */
  restartHelps?: boolean;
}

/** The health of one dependency (the chain's endpoint, InfluxDB) as its last probe found it. */
export interface DependencyStatus {
  up: boolean;
  /** Since when it has been up, or down (Unix ms). */
  sinceMs: number;
  /** The last probe that succeeded (Unix ms). */
  lastOkMs?: number;
  /** Why it is down, while it is. */
  lastError?: string;
  /** The error's code (CHAIN_TIMEOUT, INFLUX_UNREACHABLE, …), while it is down. */
  code?: string;
}

/** The log methods used (a pino Logger fits). */
export interface HealthLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Longest detail kept: details come from dependencies' error messages. */
const MAX_DETAIL = 500;

export class Health {
  private readonly alarms = new Map<AlarmCode, Alarm>();
  private readonly deps = new Map<string, DependencyStatus>();
  private readonly log: HealthLog | undefined;
  private readonly now: () => number;
  private lastBeatMs: number | undefined;

  constructor(opts: { log?: HealthLog; now?: () => number } = {}) {
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Raises `code` (or updates the detail of the raised alarm). Logs `alarm_raised` once per raise.
   * @returns true when the alarm was not raised before.
   * @throws TypeError for a code outside ALARMS.
   */
  raise(code: AlarmCode, detail: string, opts: { restartHelps?: boolean } = {}): boolean {
    const spec = specOf(code);
    const d = detail.slice(0, MAX_DETAIL);
    const cur = this.alarms.get(code);
    if (cur) {
      cur.detail = d;
      if (opts.restartHelps !== undefined) cur.restartHelps = opts.restartHelps;
      return false;
    }
    const a: Alarm = { code, severity: spec.severity, sinceMs: this.now(), detail: d, ...(opts.restartHelps ? { restartHelps: true } : {}) };
    this.alarms.set(code, a);
    const line = { event: 'alarm_raised', code, severity: spec.severity, detail: d };
    if (spec.severity === 'critical') this.log?.error(line, `alarm ${code}: ${spec.meaning}`);
    else this.log?.warn(line, `alarm ${code}: ${spec.meaning}`);
    return true;
  }

  /**
   * Clears `code` if raised. Logs `alarm_cleared` with how long it lasted.
   * @returns true when it was raised.
   */
  clear(code: AlarmCode): boolean {
    specOf(code);
    const a = this.alarms.get(code);
    if (!a) return false;
    this.alarms.delete(code);
    this.log?.info({ event: 'alarm_cleared', code, severity: a.severity, lastedMs: Math.max(0, this.now() - a.sinceMs) }, `alarm ${code} cleared`);
    return true;
  }

  /** raise(code, detail) when `on`, else clear(code). */
  set(code: AlarmCode, on: boolean, detail: string, opts: { restartHelps?: boolean } = {}): void {
    if (on) this.raise(code, detail, opts);
    else this.clear(code);
  }

  isRaised(code: AlarmCode): boolean {
    return this.alarms.has(code);
  }

  /** The raised alarms, oldest first (copies). */
  list(): Alarm[] {
    return [...this.alarms.values()].sort((a, b) => a.sinceMs - b.sinceMs).map((a) => ({ ...a }));
  }

  /** The raised critical alarms: /healthz answers 503 while there is one. */
  critical(): Alarm[] {
    return this.list().filter((a) => a.severity === 'critical');
  }

  /** The last probe of `name` succeeded. */
  dependencyUp(name: string): void {
    const now = this.now();
    const cur = this.deps.get(name);
    this.deps.set(name, { up: true, sinceMs: cur?.up ? cur.sinceMs : now, lastOkMs: now });
  }

  /** The last probe of `name` failed with `error` (its `code` when it has one). */
  dependencyDown(name: string, error: string, code?: string): void {
    const cur = this.deps.get(name);
    this.deps.set(name, {
      up: false,
      sinceMs: cur && !cur.up ? cur.sinceMs : this.now(),
      ...(cur?.lastOkMs !== undefined ? { lastOkMs: cur.lastOkMs } : {}),
      lastError: error.slice(0, MAX_DETAIL),
      ...(code ? { code } : {}),
    });
  }

  dependency(name: string): DependencyStatus | undefined {
    const d = this.deps.get(name);
    return d ? { ...d } : undefined;
  }

  /** Every dependency probed so far, by name (copies). */
  dependencies(): Record<string, DependencyStatus> {
    return Object.fromEntries([...this.deps].map(([k, v]) => [k, { ...v }]));
  }

  /** The health monitor evaluated the alarms just now (the watchdog checks that it still does). */
  beat(): void {
    this.lastBeatMs = this.now();
  }

  /**
   * Whether the systemd watchdog may be fed: the monitor evaluated within `maxAgeMs`, and no
   * critical alarm that a restart would cure is raised. Faults of systems outside the gateway
   * (an external chain, the hospital's InfluxDB, a full disk) do not stop it: restarting would
   * not bring them back, and would drop every device connection each time.
   */
  watchdog(maxAgeMs: number): { ok: boolean; why?: string } {
    if (this.lastBeatMs === undefined || this.now() - this.lastBeatMs > maxAgeMs) {
      return { ok: false, why: `health not evaluated for ${this.lastBeatMs === undefined ? 'ever' : `${this.now() - this.lastBeatMs} ms`}` };
    }
    const cured = this.critical().filter((a) => a.restartHelps);
    return cured.length ? { ok: false, why: cured.map((a) => a.code).join(',') } : { ok: true };
  }
}

function specOf(code: AlarmCode): (typeof ALARMS)[AlarmCode] {
  const spec = (ALARMS as Record<string, (typeof ALARMS)[AlarmCode] | undefined>)[code];
  if (!spec || !Object.hasOwn(ALARMS, code)) throw new TypeError(`unknown alarm code ${JSON.stringify(code)}`);
  return spec;
}
