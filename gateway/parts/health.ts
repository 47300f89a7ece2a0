/**
 * Health (docs/operations.md, "Alarms"): the spool and disk watch, which holds
 * acknowledgements while the disk is nearly full, and the monitor that probes the chain and
 * InfluxDB with deadlines of their own and evaluates the alarm rules.
 */
import type { ChainRuntime } from '../chain/runtime.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { Wal } from '../spool/wal.js';
import { HealthMonitor, chainProbe, chainRule, influxProbe, spoolRule, storageRule } from '../status/health-monitor.js';
import type { AnchoringPart } from './anchoring.js';
import type { ConsentPart } from './consent.js';
import type { PartContext } from './lifecycle.js';
import type { Database, StoragePart } from './storage.js';

export interface SpoolWatch {
  /** Looks now: spool against its quota, free disk, refused registry keys; logs and raises what changed. */
  check(): void;
  /** The spool is at or above spool.alarmRatio of its quota. */
  readonly spoolAlarm: boolean;
  /** The data dir's disk is below spool.minFreeBytes free: acknowledgements are held. */
  readonly diskLow: boolean;
}

/**
 * Checks on every durable write, every release, and every second: the disk fills for reasons
 * of its own (other files, other processes), and keys arrive from the chain at any time.
 */
export function watchSpool(ctx: PartContext, wal: Wal, registry: DeviceRegistry): SpoolWatch {
  const { config, log, health, life } = ctx;
  let spoolAlarm = false;
  let diskLow = false;
  const check = (): void => {
    const ratio = wal.bytes / wal.quotaBytes;
    const alarm = ratio >= config.spool.alarmRatio;
    if (alarm !== spoolAlarm) {
      spoolAlarm = alarm;
      if (alarm) log.error({ event: 'spool_alarm', bytes: wal.bytes, quotaBytes: wal.quotaBytes }, 'spool is near its disk quota: storage is not keeping up');
      else log.info({ event: 'spool_alarm_cleared', bytes: wal.bytes }, 'spool back under its alarm level');
    }
    const low = wal.diskLow;
    if (low !== diskLow) {
      diskLow = low;
      if (low)
        log.error(
          { event: 'disk_low', freeBytes: wal.freeBytes(), minFreeBytes: config.spool.minFreeBytes },
          "the data dir's disk is nearly full: acknowledgements are held until space returns",
        );
      else log.info({ event: 'disk_low_cleared', freeBytes: wal.freeBytes() }, 'disk space is back: acknowledging again');
      health.set('DISK_FULL', low, `${wal.freeBytes()} bytes free on the data dir's filesystem, below spool.minFreeBytes ${config.spool.minFreeBytes}`);
    }
    const refused = registry.refusedKeys();
    health.set(
      'REGISTRY_BAD_KEY',
      refused.length > 0,
      `${refused.length} device key(s) enrolled on chain break the key rule and are refused: ${refused
        .slice(0, 5)
        .map((r) => `${r.deviceId} ${r.reason}`)
        .join(', ')}`,
    );
  };
  const timer = setInterval(check, 1000);
  life.onStop(() => clearInterval(timer));
  return {
    check,
    get spoolAlarm() {
      return spoolAlarm;
    },
    get diskLow() {
      return diskLow;
    },
  };
}

export interface MonitorDeps {
  chain: ChainRuntime | undefined;
  db: Database;
  storage: StoragePart;
  wal: Wal;
  anchoring: AnchoringPart;
  consent: ConsentPart;
}

/** Alarms within seconds (gateway/status/health-monitor.ts): probes and rules every health.intervalMs. */
export function startHealthMonitor(ctx: PartContext, d: MonitorDeps): HealthMonitor {
  const { config, health, life } = ctx;
  const { chain, storage, anchoring, consent, wal } = d;
  const anchorer = anchoring.anchorer;
  const accessAnchorer = consent.accessAnchorer;
  const monitor = new HealthMonitor(health, {
    intervalMs: config.health.intervalMs,
    probeTimeoutMs: config.health.probeTimeoutMs,
    probes: [...(chain ? [chainProbe(chain.url)] : []), influxProbe(d.db.url, () => ({ up: storage.writer.storageUp, lastError: storage.writer.lastError }))],
    rules: [
      ...(chain
        ? [
            chainRule({
              embedded: chain.mode === 'embedded',
              txTimeoutMs: config.chain.txTimeoutMs,
              streams: [
                ...(anchorer
                  ? [
                      {
                        name: 'frames',
                        status: () => anchorer.status(),
                        behindAfterMs: Math.max(config.health.anchorsBehindMinMs, config.health.anchorsBehindIntervals * config.batch.intervalMs),
                      },
                    ]
                  : []),
                ...(accessAnchorer
                  ? [
                      {
                        name: 'access-log',
                        status: () => accessAnchorer.status(),
                        behindAfterMs: Math.max(config.health.anchorsBehindMinMs, config.health.anchorsBehindIntervals * config.accessLog.intervalMs),
                      },
                    ]
                  : []),
              ],
            }),
          ]
        : []),
      storageRule({ embedded: d.db.embedded }),
      spoolRule(() => ({ bytes: wal.bytes, quotaBytes: wal.quotaBytes, alarmRatio: config.spool.alarmRatio })),
    ],
  });
  monitor.start();
  life.onStop(() => monitor.stop());
  return monitor;
}
