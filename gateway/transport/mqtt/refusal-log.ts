/**
 * Refused MQTT connections are counted one by one (Metrics.mqttRefusedBy) but logged as
 * summaries: the first refusal after a quiet spell is logged at once, the ones after it are
 * summed into one `mqtt_refused` line per interval. A flood of anonymous sockets therefore
 * writes a few lines a minute, not one per socket; the line names the busiest sources so that
 * an operator can block them upstream.
 */
import type { Logger } from 'pino';
import type { MqttRefusal } from './refusals.js';

/** Sources and devices remembered per summary; beyond this they are only counted. */
const MAX_TRACKED = 256;
/** Sources and devices named in a summary line. */
const NAMED = 5;

export class RefusalLog {
  private counts = new Map<MqttRefusal, number>();
  private sources = new Map<string, number>();
  private devices = new Set<string>();
  private untracked = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastAt = -Infinity;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** One refusal, from `source` (an address), of an authenticated device when `device` is given. */
  note(reason: MqttRefusal, source: string, device?: string): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    if (this.sources.has(source) || this.sources.size < MAX_TRACKED) this.sources.set(source, (this.sources.get(source) ?? 0) + 1);
    else this.untracked++;
    if (device && this.devices.size < MAX_TRACKED) this.devices.add(device);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), Math.max(0, this.lastAt + this.intervalMs - this.now()));
  }

  /** Logs what was noted since the last line, if anything. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.counts.size === 0) return;
    const top = [...this.sources]
      .sort((a, b) => b[1] - a[1])
      .slice(0, NAMED)
      .map(([source, n]) => ({ source, n }));
    const total = [...this.counts.values()].reduce((a, b) => a + b, 0);
    this.log.warn(
      {
        event: 'mqtt_refused',
        total,
        byReason: Object.fromEntries(this.counts),
        sources: this.sources.size + (this.untracked > 0 ? 1 : 0),
        topSources: top,
        ...(this.devices.size > 0 ? { devices: [...this.devices].slice(0, NAMED) } : {}),
        sinceMs: Number.isFinite(this.lastAt) ? this.now() - this.lastAt : 0,
      },
      'MQTT connections refused at the transport (summary)',
    );
    this.lastAt = this.now();
    this.counts = new Map();
    this.sources = new Map();
    this.devices = new Set();
    this.untracked = 0;
  }
}
