/**
 * The hospital demo's end (scripts/lib/demo-hospital.ts): what each part of the hospital did,
 * counted where it happened, against what the simulator and the walk say it must be, one row
 * each, ok or FAIL, like the single-box demo's expected-vs-counted table.
 *
 *   per gateway   accepted, stored (its storage writer) and anchored (its acceptances in
 *                 InfluxDB whose batch is anchored), all equal; nothing refused, no sequence gap;
 *                 where the walker arrived, the frames the last gateway took but could not
 *                 acknowledge counted as duplicates, and the walker's resent frames restored;
 *   storage       `frames` by device: one point per seq, 1 to the device's last, nothing missing
 *                 or twice (docs/storage.md, schema v2); `acceptances`: each frame's gateway;
 *   researcher    at hub-1: every frame of the walker, once, in seq order, across the moves;
 *   hub           /fleet: each device on the gateway it is on now, with its last seq; every
 *                 gateway online;
 *   proofs        for each gateway, a frame it took: GET /proofs/frame/<device>/<seq> from a hub,
 *                 verified as `vitalproof verify` does (gateway/proof/verify.ts), and anchored by
 *                 that gateway's own account.
 */
import type { Delivery } from '../../gateway/research-client/index.js';
import type { FleetSnapshot } from '../../gateway/hub/fleet-view.js';
import { parseBundle } from '../../gateway/proof/bundle.js';
import { verifyBundle } from '../../gateway/proof/verify.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import { InfluxHttp, seriesRows } from '../../gateway/storage/influx-http.js';
import type { SimDevice } from '../../device-sim/fleet.js';
import type { FleetReport } from '../../device-sim/run.js';
import type { GatewayProcess } from './gateway-process.js';
import { until, type Hospital } from './hospital.js';

/** One stop of the walk: the gateway, the simulator's report of the leg, the acknowledgements lost leaving it. */
export interface WalkLeg {
  gateway: string;
  report: FleetReport;
  lostAcks: number;
}

export interface HospitalReportInput {
  hospital: Hospital;
  influxUrl: string;
  names: string[];
  hubNames: string[];
  /** The fleet's wearables at each gateway (same order as `names`), and each gateway's fleet report. */
  fleets: SimDevice[][];
  fleetReports: FleetReport[];
  walker: SimDevice;
  legs: WalkLeg[];
  /** What the researcher received at hub-1. */
  deliveries: Delivery[];
  /** The hub the proofs are fetched from. */
  proofHub: GatewayProcess;
  proofHubName: string;
}

/** How long the end waits for storage and anchors, for the hub's last deliveries and /fleet, for an anchored proof. */
const SETTLE_MS = 20_000;
const HUB_MS = 10_000;
const PROOF_MS = 15_000;

interface Row {
  what: string;
  found: string;
  expected: string;
  ok: boolean;
  detail?: string;
}

/** Waits for the hospital to settle, then checks it; `ok` is false when any row fails. */
export async function hospitalReport(i: HospitalReportInput): Promise<{ text: string[]; ok: boolean }> {
  const h = i.hospital;
  const rows: Row[] = [];
  const row = (what: string, found: string, expected: string, ok: boolean, detail?: string): void =>
    void rows.push({ what, found, expected, ok, ...(detail ? { detail } : {}) });

  // Everything accepted is written, sealed, anchored and in `batches`, at every gateway.
  const settled = (s: StatusSnapshot): boolean =>
    s.storage.up &&
    s.spool.backlogFrames === 0 &&
    s.storage.framesWritten >= s.frames.accepted &&
    s.batches.open.frames === 0 &&
    s.batches.pendingAnchors === 0 &&
    (s.batchPoints?.frames.lag ?? 0) === 0;
  const status = new Map<string, StatusSnapshot>();
  await Promise.all(
    i.names.map(async (n) => {
      const g = h.gateways.get(n)!;
      status.set(n, await g.until(settled, SETTLE_MS, `${n} stored and anchored`).catch(() => g.status()));
    }),
  );

  // What InfluxDB holds: frames (one point per stored frame) and acceptances (one per gateway that took it).
  const http = new InfluxHttp({ url: i.influxUrl });
  const rowsOf = async (m: string): Promise<Record<string, unknown>[]> =>
    seriesRows(await http.query(`SELECT "seq", "device", ${m === 'acceptances' ? '"gateway", "batch"' : '"sensor"'} FROM "${m}"`, { database: 'vitalproof' }));
  const group = (rs: Record<string, unknown>[]): Map<string, Record<string, unknown>[]> => {
    const by = new Map<string, Record<string, unknown>[]>();
    for (const r of rs) by.set(String(r['device']), [...(by.get(String(r['device'])) ?? []), r]);
    return by;
  };
  const frames = group(await rowsOf('frames'));
  const acceptances = group(await rowsOf('acceptances'));

  // Per gateway: accepted, stored, anchored.
  const walkerAcc = (acceptances.get(i.walker.deviceId) ?? []).map((a) => ({ seq: Number(a['seq']), gateway: String(a['gateway']) }));
  i.names.forEach((n) => {
    const s = status.get(n)!;
    const mine = [...acceptances.values()].flat().filter((a) => a['gateway'] === n);
    const anchored = mine.filter(
      (a) => a['batch'] !== null && a['batch'] !== undefined && BigInt(a['batch'] as number) <= BigInt(s.batches.lastAnchored),
    ).length;
    const a = s.frames.accepted;
    row(
      `${n}: accepted / stored / anchored`,
      `${a} / ${s.storage.framesWritten} / ${anchored}`,
      `${a} / ${a} / ${a}`,
      a > 0 && s.storage.framesWritten === a && anchored === a && mine.length === a,
      `${mine.length} acceptances of ${n} in InfluxDB; batches sealed ${s.batches.lastSealed}, anchored ${s.batches.lastAnchored}`,
    );
    row(`${n}: refused, sequence gaps`, `${s.frames.rejected}, ${s.frames.seqGaps}`, '0, 0', s.frames.rejected === 0 && s.frames.seqGaps === 0);
    const leg = i.legs.findIndex((l) => l.gateway === n);
    if (leg > 0) {
      const before = i.legs[leg - 1]!;
      // What the last gateway accepted of the walker, less what it acknowledged of its own new frames (its
      // acknowledgements include the resent frames it counted as duplicates): taken, but the device never knew.
      const f = before.report.frames;
      const tookUnacked = walkerAcc.filter((x) => x.gateway === before.gateway).length - (f.acked - f.restored);
      row(
        `${n}: duplicates (walker's frames, acks lost)`,
        `${s.frames.duplicates} duplicates`,
        `${tookUnacked} (${before.gateway} took, ${before.lostAcks} acks lost)`,
        s.frames.duplicates === tookUnacked,
      );
      row(
        `${n}: walker's unacknowledged frames resent`,
        `${i.legs[leg]!.report.frames.restored} resent`,
        `${before.report.frames.unacked} left at ${before.gateway}`,
        i.legs[leg]!.report.frames.restored === before.report.frames.unacked,
      );
    }
  });

  // Storage: every acknowledged frame once, each device 1 … its last seq.
  const lastOf = new Map<string, number>();
  i.fleetReports.forEach((r) => r.perDevice.forEach((d) => lastOf.set(d.deviceId, Number(d.nextSeq) - 1)));
  const lastLeg = i.legs[i.legs.length - 1];
  if (lastLeg) lastOf.set(i.walker.deviceId, Number(lastLeg.report.perDevice[0]!.nextSeq) - 1);
  const drained = i.fleetReports.every((r) => r.drained) && (lastLeg?.report.drained ?? false);
  const acked = i.fleetReports.reduce((n, r) => n + r.frames.acked, 0) + i.legs.reduce((n, l) => n + l.report.frames.acked, 0);
  let stored = 0;
  let wrong: string[] = [];
  for (const [device, last] of lastOf) {
    const seqs = (frames.get(device) ?? []).map((r) => Number(r['seq'])).sort((a, b) => a - b);
    stored += seqs.length;
    if (seqs.length !== last || seqs.some((s, j) => s !== j + 1)) wrong.push(`${device}: ${ranges(seqs)} (1-${last} expected)`);
  }
  row(
    'storage: every acknowledged frame once',
    `${stored} frames stored`,
    `${acked} acknowledged`,
    drained && wrong.length === 0 && stored === acked,
    `${lastOf.size} wearables, one frames point per seq from 1 to each one's last${drained ? '' : '; the simulator did NOT see every frame acknowledged'}${wrong.length ? `; ${wrong.join('; ')}` : ''}`,
  );
  const accCount = [...acceptances.values()].reduce((n, a) => n + a.length, 0);
  row(
    'acceptances: one gateway per frame',
    `${accCount} acceptances`,
    `${stored} (one per stored frame)`,
    accCount === stored,
    `the walker's frames by gateway: ${i.names.map((n) => `${n} ${ranges(walkerAcc.filter((x) => x.gateway === n).map((x) => x.seq))}`).join(', ')}`,
  );

  // The researcher at hub-1: every frame of the walker once, in seq order.
  const walkerLast = lastOf.get(i.walker.deviceId) ?? 0;
  const got = (): number[] => i.deliveries.filter((d) => d.deviceId === i.walker.deviceId).map((d) => Number(d.seq));
  await until("the researcher's last deliveries", () => (got().length >= walkerLast ? true : undefined), HUB_MS).catch(() => undefined);
  const seqs = got();
  row(
    `researcher at hub-1: the walker's frames`,
    `${seqs.length}, seq ${ranges(seqs)}${seqs.some((s, j) => j > 0 && s <= seqs[j - 1]!) ? ' OUT OF ORDER' : ''}`,
    `${walkerLast}, seq 1-${walkerLast} in order`,
    walkerLast > 0 && seqs.length === walkerLast && seqs.every((s, j) => s === j + 1),
    `${i.deliveries.length} live deliveries in all, ${i.deliveries.reduce((n, d) => n + d.readings.length, 0)} readings, across ${i.legs.map((l) => l.gateway).join(' → ')}`,
  );

  // The hub's /fleet: each device on the gateway it is on now.
  const where = new Map<string, string>();
  i.fleets.forEach((ds, k) => ds.forEach((d) => where.set(d.deviceId, i.names[k]!)));
  if (lastLeg) where.set(i.walker.deviceId, lastLeg.gateway);
  const hub1 = h.hubs.get(i.hubNames[0]!)!;
  // The walker is followed at the hub, so its frames are read there: its seq is known. The other
  // wearables' frames are placed from their topics only (nobody follows them: gateway/hub/uplink-feed.ts).
  const placed = (f: FleetSnapshot): number =>
    f.devices.filter((d) => where.get(d.device) === d.gateway && (d.device !== i.walker.deviceId || Number(d.seq) === lastOf.get(d.device))).length;
  const fleet = await until(
    "the hub's /fleet",
    async () => {
      const f = await hub1.get<FleetSnapshot>('/fleet');
      return placed(f) === where.size && f.gateways.filter((g) => g.state === 'online').length === i.names.length ? f : undefined;
    },
    HUB_MS,
  ).catch(() => hub1.get<FleetSnapshot>('/fleet'));
  const w = fleet.devices.find((d) => d.device === i.walker.deviceId);
  row(
    `${i.hubNames[0]} /fleet: devices on their gateway now`,
    `${placed(fleet)} of ${fleet.devices.length}`,
    `${where.size}`,
    placed(fleet) === where.size && fleet.devices.length === where.size,
    `the walker ${i.walker.deviceId} on ${w?.gateway ?? 'nothing'} at seq ${w?.seq ?? '-'}`,
  );
  const online = fleet.gateways.filter((g) => g.state === 'online').map((g) => g.gateway);
  row(`${i.hubNames[0]} /fleet: gateways online`, `${online.length} (${online.sort().join(', ')})`, `${i.names.length}`, online.length === i.names.length);

  // A proof bundle for a frame each gateway took, from a hub, verified against the chain.
  for (const [k, n] of i.names.entries()) {
    const mine = walkerAcc.find((x) => x.gateway === n);
    const device = mine ? i.walker.deviceId : i.fleets[k]![0]!.deviceId;
    const seq = mine?.seq ?? 1;
    const url = `http://127.0.0.1:${i.proofHub.httpPort}/proofs/frame/${device}/${seq}`;
    try {
      const body = await until(
        `a proof of ${device}/${seq}`,
        async () => {
          const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
          return res.status === 200 ? ((await res.json()) as unknown) : undefined;
        },
        PROOF_MS,
      );
      const b = parseBundle(body);
      const v = await verifyBundle(b, { provider: h.provider });
      const byIt = b.anchor.gateway.toLowerCase() === h.address(n).toLowerCase();
      row(
        `proof from ${i.proofHubName}: a frame ${n} took`,
        `${v.ok ? 'verifies' : 'does NOT verify'}, ${byIt ? `anchored by ${n}` : `anchored by ${b.anchor.gateway}`}`,
        `verifies, anchored by ${n}`,
        v.ok && byIt,
        `${device}/${seq}, batch ${b.anchor.batchSeq} leaf ${b.inclusion.leafIndex} of ${b.inclusion.treeSize}, tx ${b.anchor.txHash.slice(0, 14)}… block ${b.anchor.blockNumber}: ${v.checks.map((c) => `${c.check} ${c.status === 'pass' ? 'ok' : c.status.toUpperCase()}`).join(', ')}`,
      );
    } catch (e) {
      row(`proof from ${i.proofHubName}: a frame ${n} took`, (e as Error).message, `verifies, anchored by ${n}`, false, url);
    }
  }
  wrong = rows.filter((r) => !r.ok).map((r) => r.what);
  const text = [`  ${'check'.padEnd(50)} ${'found'.padEnd(34)} ${'expected'.padEnd(34)}`];
  for (const r of rows) {
    text.push(`  ${r.what.padEnd(50)} ${r.found.padEnd(34)} ${r.expected.padEnd(34)} ${r.ok ? 'ok' : 'FAIL'}`);
    if (r.detail) text.push(`      ${r.detail}`);
  }
  text.push(wrong.length ? `  ${wrong.length} check(s) FAILED: ${wrong.join('; ')}` : `  every check ok: ${rows.length} rows`);
  return { text, ok: wrong.length === 0 };
}

/** Sorted whole numbers as ranges: 1-13, 15, 17-20 ("none" for none). */
export function ranges(xs: readonly number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const out: string[] = [];
  for (let j = 0; j < s.length;) {
    let e = j;
    while (e + 1 < s.length && s[e + 1] === s[e]! + 1) e++;
    out.push(e > j ? `${s[j]}-${s[e]}` : `${s[j]}`);
    j = e + 1;
  }
  return out.join(', ') || 'none';
}
