/**
 * The uplink to the hospital broker (docs/uplink.md), when uplink.url is set: the cursor is
 * read before the spool opens (it is one of the spool's positions), the publisher starts once
 * anchoring and storage are up, and it stops before the spool closes.
 */
import type { GatewayConfig } from '../config.js';
import { secretLine as secret, settingFile as file } from '../util/secret-file.js';
import { gatewayUsername } from '../fleet/broker.js';
import { readUplinkCursor, uplinkCursorPath, writeUplinkCursor } from '../uplink/cursor.js';
import { Uplink } from '../uplink/publisher.js';
import type { AnchoringPart } from './anchoring.js';
import type { PartContext } from './lifecycle.js';
import type { SpoolPart } from './spool.js';

/**
 * What recoverSpool needs of the uplink: undefined without one, null on its first start, else
 * the cursor's spool position.
 */
export function uplinkSpoolPosition(config: GatewayConfig): bigint | null | undefined {
  if (!config.uplink.url) return undefined;
  return readUplinkCursor(uplinkCursorPath(config.dataDir))?.lsn ?? null;
}

export interface UplinkDeps {
  spool: SpoolPart;
  anchoring: AnchoringPart;
  /** After the uplink advanced its spool position (records may have been released). */
  onReleased: () => void;
}

/** Starts the publisher; undefined when uplink.url is empty. @throws ConfigError for an unreadable password or TLS file. */
export function startUplink(ctx: PartContext, d: UplinkDeps): Uplink | undefined {
  const { config, log, metrics, life } = ctx;
  const u = config.uplink;
  if (!u.url) return undefined;
  const { wal, positions } = d.spool;
  const cursorPath = uplinkCursorPath(config.dataDir);
  const recorded = readUplinkCursor(cursorPath);
  const lsn = positions.lsn('uplink');
  if (recorded && recorded.lsn < wal.releasedLsn)
    log.error(
      { event: 'uplink_gap', from: (recorded.lsn + 1n).toString(), to: wal.releasedLsn.toString() },
      'the spool released frames the uplink never published (it was off, or its cursor was lost): the hub misses them',
    );
  // The anchors of batches already behind the first frame published stay unpublished, as those frames do.
  const cursor = recorded ?? { lsn, anchors: lastBatchThrough(d.anchoring, lsn) };
  if (!recorded) writeUplinkCursor(cursorPath, cursor);
  const uplink = new Uplink({
    gatewayId: config.gatewayId,
    url: u.url,
    username: u.username || gatewayUsername(config.gatewayId),
    password: secret(u.passwordFile, 'uplink.passwordFile'),
    clientId: u.clientId || gatewayUsername(config.gatewayId),
    tls: {
      ...(u.tls.ca ? { ca: file(u.tls.ca, 'uplink.tls.ca') } : {}),
      ...(u.tls.cert ? { cert: file(u.tls.cert, 'uplink.tls.cert'), key: file(u.tls.key, 'uplink.tls.key') } : {}),
    },
    inflight: u.inflight,
    retryMinMs: u.retryMinMs,
    retryMaxMs: u.retryMaxMs,
    statusIntervalMs: u.statusIntervalMs,
    wal,
    position: positions.position('uplink'),
    cursorPath,
    cursor,
    placementOf: (l) => d.anchoring.batcher.placementOf(l),
    batches: d.anchoring.batches,
    health: () => ({
      framesPerS: Math.round(metrics.acceptedRate.rate() * 10) / 10,
      spoolDepth: Number(wal.backlog),
      storageLag: Math.max(0, Number(wal.durableLsn - positions.lsn('storage'))),
    }),
    log,
    onAdvanced: d.onReleased,
  });
  uplink.start();
  life.onStop(() => uplink.stop());
  return uplink;
}

/** The last sealed batch whose frames all lie at or below `lsn` (0 when none). */
function lastBatchThrough(a: AnchoringPart, lsn: bigint): bigint {
  for (let s = a.batches.lastSealed; s >= 1n; s--) {
    const b = a.batches.get(s);
    if (b && b.lastLsn <= lsn) return s;
  }
  return 0n;
}
