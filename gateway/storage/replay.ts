/**
 * Replays the storage quarantine (./quarantine.ts) once the operator fixed what made InfluxDB
 * refuse its frames: each held frame's points are written again, exactly as they were set
 * aside, to the database (and retention policy) they were meant for. A frame InfluxDB takes
 * is removed from the quarantine; one it still refuses for good stays, with InfluxDB's new
 * answer recorded in its file (lastReplay). The frames are written by bisection like the
 * storage writer does (./isolate.ts), so one frame that still fails does not hold the others.
 *
 * Safe while the gateway runs: the gateway only adds files, the replay only rewrites and
 * removes the ones it read; writing a point again overwrites the identical point.
 */
import { writeIsolating } from './isolate.js';
import type { InfluxSink } from './influx-sink.js';
import type { QuarantinedFrame, StorageQuarantine } from './quarantine.js';
import { textOf } from '../util/text.js';

/** Frames written per round; after a round the stored ones are removed from the quarantine. */
const ROUND_FRAMES = 500;

export interface ReplayedFrame {
  file: string;
  lsn: string;
  device: string;
  seq: string;
  sensor: string;
  /** InfluxDB's answer: when set aside, or at this replay for those still refused. */
  status: number;
  error: string;
  quarantinedAtMs: number;
}

export interface ReplayReport {
  dryRun: boolean;
  /** Frames the quarantine held when the replay started. */
  held: number;
  /** Stored in InfluxDB and removed from the quarantine (0 in a dry run). */
  replayed: ReplayedFrame[];
  /** Refused again for good: still held, with InfluxDB's new answer. In a dry run: every held frame. */
  stillRefused: ReplayedFrame[];
  /** Files in the quarantine that are not readable entries (left in place). */
  unreadable: { file: string; reason: string }[];
}

/**
 * Replays every frame the quarantine holds, or only lists them with `dryRun`.
 * @param sinkFor the InfluxSink writing to a frame's database and retention policy.
 * @throws StorageError for a failure that is not a refusal for good (InfluxDB unreachable,
 *   timing out, 5xx, credentials): frames replayed in earlier rounds are removed already; the
 *   rest stay held and a later replay sends them again.
 */
export async function replayQuarantine(
  quarantine: StorageQuarantine,
  sinkFor: (database: string, retentionPolicy: string | undefined) => InfluxSink,
  opts: { dryRun?: boolean; now?: () => number } = {},
): Promise<ReplayReport> {
  const now = opts.now ?? Date.now;
  const all = quarantine.entries();
  const report: ReplayReport = { dryRun: opts.dryRun === true, held: all.length, replayed: [], stillRefused: [], unreadable: [] };
  const held: { file: string; entry: QuarantinedFrame; lines: string[] }[] = [];
  for (const x of all) {
    if (x.entry) held.push({ file: x.file, entry: x.entry, lines: x.entry.lines });
    else report.unreadable.push({ file: x.file, reason: x.unreadable ?? 'unreadable' });
  }
  if (opts.dryRun) {
    report.stillRefused = held.map((h) => summary(h.file, h.entry));
    return report;
  }
  // Per destination, in spool order.
  const byTarget = new Map<string, typeof held>();
  for (const h of held) {
    const key = `${h.entry.database}\0${h.entry.retentionPolicy ?? ''}`;
    const list = byTarget.get(key);
    if (list) list.push(h);
    else byTarget.set(key, [h]);
  }
  for (const group of byTarget.values()) {
    const first = group[0]!.entry;
    const sink = sinkFor(first.database, first.retentionPolicy);
    for (let i = 0; i < group.length; i += ROUND_FRAMES) {
      const round = group.slice(i, i + ROUND_FRAMES);
      const refused = new Set<string>();
      await writeIsolating(
        round,
        (lines) => sink.writeLines(lines),
        (h, e) => {
          refused.add(h.file);
          const status = e.detail['status'] as number;
          const error = textOf(e.detail['error'] ?? e.message);
          quarantine.update(h.file, { ...h.entry, lastReplay: { atMs: now(), status, error } });
          report.stillRefused.push({ ...summary(h.file, h.entry), status, error });
        },
      );
      for (const h of round) {
        if (refused.has(h.file)) continue;
        quarantine.remove(h.file);
        report.replayed.push(summary(h.file, h.entry));
      }
    }
  }
  return report;
}

function summary(file: string, e: QuarantinedFrame): ReplayedFrame {
  return {
    file,
    lsn: e.lsn,
    device: e.device,
    seq: e.seq,
    sensor: e.sensor,
    status: e.lastReplay?.status ?? e.status,
    error: e.lastReplay?.error ?? e.error,
    quarantinedAtMs: e.quarantinedAtMs,
  };
}
