/**
 * The uplink's durable cursor (docs/uplink.md, "Durability"): the last spool position whose
 * frame, and every one before it, the broker acknowledged (PUBACK), and the last frame batch
 * whose anchor it acknowledged. Written atomically (gateway/util/atomic-file.ts) before the
 * uplink advances its spool position, so a crash can only make it publish again what the
 * broker already has (a duplicate the receiver recognises), never skip a frame.
 *
 *   dataDir/uplink/cursor.json   { "version": 1, "lsn": "1234", "anchors": "17" }
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.js';

export interface UplinkCursor {
  /** Every frame up to this spool position is acknowledged by the broker. */
  lsn: bigint;
  /** Every anchor of frame batches up to this one is acknowledged by the broker. */
  anchors: bigint;
}

/** The cursor's file in a data dir. */
export function uplinkCursorPath(dataDir: string): string {
  return join(dataDir, 'uplink', 'cursor.json');
}

/**
 * The cursor recorded in `path`, or undefined when the uplink never ran on this data dir.
 * @throws Error for a file that is not a cursor (a damaged data dir: nothing is guessed).
 */
export function readUplinkCursor(path: string): UplinkCursor | undefined {
  if (!existsSync(path)) return undefined;
  const text = readFileSync(path, 'utf8');
  const o = JSON.parse(text) as { version?: unknown; lsn?: unknown; anchors?: unknown };
  if (o.version !== 1 || typeof o.lsn !== 'string' || !/^\d+$/.test(o.lsn) || typeof o.anchors !== 'string' || !/^\d+$/.test(o.anchors))
    throw new Error(`uplink cursor ${path} is not a version 1 cursor: ${text.slice(0, 200)}`);
  return { lsn: BigInt(o.lsn), anchors: BigInt(o.anchors) };
}

/** Records the cursor atomically and durably. */
export function writeUplinkCursor(path: string, c: UplinkCursor): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, `${JSON.stringify({ version: 1, lsn: c.lsn.toString(), anchors: c.anchors.toString() })}\n`);
}
