/** The bench's table: every figure of one run, printed (docs/bench.md). */
import type { CpuShare } from './proc.js';
import type { E2EFigure, LatencyFigure } from './bench-mqtt.js';
import type { VerifyFigure } from './bench-frames.js';
import type { AnchoringFigure, BleFigure, LoginFloodFigure } from './bench-more.js';
import type { FleetFigures, Percentiles } from './bench-fleet.js';

export interface Results {
  machine: { date: string; cpus: number; cpuModel: string; node: string; os: string; loadAverageAtStart: number[]; influxd: string };
  verify: VerifyFigure[];
  endToEnd: E2EFigure[];
  latency: LatencyFigure;
  anchoring: AnchoringFigure;
  ble: BleFigure;
  loginFlood: LoginFloodFigure;
  fleet?: FleetFigures;
  benchSeconds: number;
}

export function cpuLine(label: string, c: CpuShare): string {
  const p = c.processes;
  return `${label}: ${fmt(c.wallS, 1)} s wall; gateway ${fmt(p['gateway'] ?? Number.NaN, 1)}, influxd ${fmt(p['influxd'] ?? Number.NaN, 1)}, bench clients ${fmt(c.selfS, 1)}, OTHER processes ${fmt(c.otherS, 1)}, steal ${fmt(c.stealS, 1)}`;
}

export function print(r: Results): void {
  const m = r.machine;
  const out: string[] = [];
  out.push(`VitalProof bench, ${m.date}`);
  out.push(`machine: ${m.cpus} CPUs (${m.cpuModel}), Node ${m.node}, ${m.os}, ${m.influxd}, load average at start ${m.loadAverageAtStart.join(' ')}`);
  out.push('');
  out.push('(a) bare node:crypto Ed25519 verify, one core, cached KeyObject');
  let w = [30, 8, 8, 10, 14];
  out.push(row(['frames', 'frame B', 'msg B', 'verify/s', 'CPU µs/verify'], w));
  for (const f of r.verify) out.push(row([f.frames, f.frameBytes, f.messageBytes, fmt(f.perSecond), fmt(f.cpuUsPerVerification, 1)], w));
  out.push('');
  const e0 = r.endToEnd[0]!;
  out.push(
    `(b) gateway end to end: ${e0.devices} MQTT clients, QoS 1, ≤ ${e0.inFlightPerDevice} in flight each, until every PUBACK arrived and every frame is in InfluxDB`,
  );
  w = [36, 8, 8, 12, 12, 12, 12];
  out.push(row(['case', 'frames', 'frame B', 'all acked s', 'stored s', 'acked/s', 'FRAMES/S'], w));
  for (const e of r.endToEnd)
    out.push(
      row(
        [
          e.case + (e.complete ? '' : ' (INCOMPLETE)'),
          fmt(e.frames),
          e.frameBytes,
          fmt(e.allAckedS, 2),
          fmt(e.allStoredS, 2),
          fmt(e.framesPerSecondAcked),
          fmt(e.framesPerSecond),
        ],
        w,
      ),
    );
  out.push('');
  out.push('(c) gateway process CPU per frame (utime+stime from /proc, all threads) ÷ bare verify CPU per frame (a)');
  w = [36, 10, 12, 12, 16, 14, 14];
  out.push(row(['case', 'gw CPU s', 'gw µs/frame', 'bare µs', 'RATIO (≤ 1.5)', 'influxd µs/fr', 'client µs/fr'], w));
  for (const e of r.endToEnd)
    out.push(
      row(
        [
          e.case,
          fmt(e.gatewayCpuS, 2),
          fmt(e.gatewayCpuUsPerFrame, 0),
          fmt(e.bareVerifyCpuUsPerFrame, 0),
          fmt(e.cpuRatio, 2),
          fmt(e.influxdCpuUsPerFrame, 0),
          fmt(e.benchClientCpuUsPerFrame, 0),
        ],
        w,
      ),
    );
  out.push(`CPU seconds used during each run (${m.cpus} CPUs: ${m.cpus} CPU-s available per wall second):`);
  for (const e of r.endToEnd) out.push(`  ${cpuLine(e.case, e.cpu)}`);
  out.push(`  ${cpuLine('(d) latency run', r.latency.cpu)}`);
  out.push('');
  const l = r.latency;
  out.push(`(d) publish-to-PUBACK latency, heart_rate frames paced at half of (b)'s small-frame rate, ${l.devices} clients`);
  w = [12, 12, 10, 10, 10, 10, 10, 10];
  out.push(row(['target/s', 'achieved/s', 'measured', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'deferred'], w));
  out.push(
    row([fmt(l.targetPerSecond), fmt(l.achievedPerSecond), fmt(l.measured), fmt(l.p50Ms, 1), fmt(l.p90Ms, 1), fmt(l.p99Ms, 1), fmt(l.maxMs, 1), l.deferred], w),
  );
  out.push('');
  const a = r.anchoring;
  out.push(`(e) anchoring (embedded anvil, default ${a.batchIntervalMs / 1000} s batches)${a.complete ? '' : ' (INCOMPLETE: batches still waiting)'}`);
  out.push(
    `  ${a.batches} anchors for ${a.leaves} frames (frames per batch min ${a.leavesPerBatch.min} median ${a.leavesPerBatch.median} max ${a.leavesPerBatch.max})`,
  );
  out.push(
    `  gas per anchor: mean ${fmt(a.gasPerAnchor.mean)} (first ${fmt(a.gasPerAnchor.first)}, min ${fmt(a.gasPerAnchor.min)}, max ${fmt(a.gasPerAnchor.max)}); gas per million frames at these batch sizes: ${fmt(a.gasPerMillionFrames)}`,
  );
  out.push(
    `  frame arrival → its batch's anchor confirmed: p50 ${fmt(a.arrivalToAnchorMs.p50)} ms, p99 ${fmt(a.arrivalToAnchorMs.p99)} ms, max ${fmt(a.arrivalToAnchorMs.max)} ms (${a.arrivalToAnchorMs.frames} frames)`,
  );
  out.push(`  proof generation (GET /proofs, ${a.proofGeneration.bundles} bundles): ${fmt(a.proofGeneration.usPerBundle, 1)} µs per bundle`);
  out.push(
    `  verify per bundle: ${fmt(a.verify.onlineUsPerBundle, 0)} µs online with a per-batch cache, ${fmt(a.verify.onlineFirstOfBatchUsPerBundle, 0)} µs online without, ${fmt(a.verify.offlineUsPerBundle, 0)} µs offline (${a.verify.bundles} bundles, ${a.verify.allOk ? 'all ok' : 'SOME FAILED'})`,
  );
  out.push('');
  const b = r.ble;
  out.push(
    `(f) BLE: ${b.devices} simulated wearables over the simulated BlueZ (private dbus-daemon), ATT_MTU ${b.mtu}, one notification per heart_rate frame${b.complete ? '' : ' (INCOMPLETE)'}`,
  );
  out.push(`  ${fmt(b.frames)} frames in ${fmt(b.wallS, 2)} s: ${fmt(b.framesPerSecond)} frames/s acknowledged`);
  out.push(
    `  gateway CPU ${fmt(b.gatewayCpuUsPerFrame)} µs per frame = ${fmt(b.ratioToMqtt, 2)} × an MQTT small frame (b); simulator ${fmt(b.simulatorCpuUsPerFrame)} µs, dbus-daemon ${fmt(b.dbusDaemonCpuUsPerFrame)} µs per frame`,
  );
  out.push(`  ${cpuLine('(f) BLE run', b.cpu)}`);
  out.push('');
  printLoginFlood(r.loginFlood, out);
  out.push('');
  if (r.fleet) {
    printFleet(r.fleet, out);
    out.push('');
  }
  out.push(`bench took ${r.benchSeconds} s`);
  console.log(out.join('\n'));
}

export function fmt(n: number | null, digits = 0): string {
  if (n === null || !Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ');
}

export function printLoginFlood(g: LoginFloodFigure, out: string[]): void {
  out.push(
    `(g) login flood: honest PUBACK latency, ${g.devices} clients paced at ${fmt(g.honestPerSecond)} frames/s, without and with ${fmt(g.flood.achievedPerSecond)} forged logins/s (target ${g.flood.targetPerSecond}) from ${g.flood.sources} sources`,
  );
  const w = [14, 10, 10, 10, 10, 10];
  out.push(row(['run', 'measured', 'p50 ms', 'p95 ms', 'p99 ms', 'errors'], w));
  out.push(row(['baseline', fmt(g.baseline.measured), fmt(g.baseline.p50Ms, 1), fmt(g.baseline.p95Ms, 1), fmt(g.baseline.p99Ms, 1), g.baseline.errors], w));
  out.push(
    row(
      ['under flood', fmt(g.underFlood.measured), fmt(g.underFlood.p50Ms, 1), fmt(g.underFlood.p95Ms, 1), fmt(g.underFlood.p99Ms, 1), g.underFlood.errors],
      w,
    ),
  );
  out.push(
    `  RATIO under flood ÷ baseline: p50 × ${fmt(g.ratioP50, 2)}, p95 × ${fmt(g.ratioP95, 2)} (issue #10 before the fix: p50 2 → 166 ms, p95 6 → 248 ms at 435 logins/s)`,
  );
  out.push(
    `  flood answers: ${Object.entries(g.flood.byCode)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}${g.flood.failed ? `, no answer ${g.flood.failed}` : ''}; signature recoveries by the gateway during the run: ${g.recoveries}`,
  );
  out.push(`  gateway CPU per forged login: ${fmt(g.gatewayCpuUsPerForgedLogin, 0)} µs (flood run's gateway CPU − baseline's, ÷ logins sent)`);
  out.push(`  ${cpuLine('baseline run', g.baseline.cpu)}`);
  out.push(`  ${cpuLine('flood run', g.underFlood.cpu)}`);
}

/** Like cpuLine, with every watched process by name (the hospital's gateways, hub, broker). */
function cpuLineAll(label: string, c: CpuShare): string {
  const each = Object.entries(c.processes).map(([k, v]) => `${k} ${fmt(v, 1)}`);
  return `${label}: ${fmt(c.wallS, 1)} s wall; ${each.join(', ')}, bench clients ${fmt(c.selfS, 1)}, OTHER processes ${fmt(c.otherS, 1)}, steal ${fmt(c.stealS, 1)}`;
}

function pct(p: Percentiles): string[] {
  return [fmt(p.p50Ms, 1), fmt(p.p90Ms, 1), fmt(p.p99Ms, 1), fmt(p.maxMs, 1)];
}

/** (h): the hospital figures (scripts/lib/bench-fleet.ts, bench-uplink.ts). */
export function printFleet(f: FleetFigures, out: string[]): void {
  const d = f.hospital.delivery;
  out.push(
    `(h1) frame → researcher through the hub: ${d.gateways} gateways, ${d.devices} devices (one patient, one researcher each), paced at ${fmt(d.targetPerSecond)} frames/s (achieved ${fmt(d.achievedPerSecond)})${d.missing || d.errors ? ` (INCOMPLETE: ${d.missing} not delivered, ${d.errors} errors)` : ''}`,
  );
  let w = [40, 10, 10, 10, 10, 10];
  out.push(row(['from', 'measured', 'p50 ms', 'p90 ms', 'P99 MS', 'max ms'], w));
  out.push(row(["gateway's acceptance (receivedAtMs)", fmt(d.measured), ...pct(d.fromAcceptance)], w));
  out.push(row(["device's send (bench publish())", fmt(d.measured), ...pct(d.fromSend)], w));
  out.push(row(['(device send → PUBACK, for comparison)', fmt(d.measured), ...pct(d.puback)], w));
  out.push(`  ${cpuLineAll('(h1) run', d.cpu)}`);
  out.push('');
  const u = f.uplinkCost;
  out.push(
    `(h2) the uplink's cost on a gateway: the same load (${u.devices} devices × ${fmt(u.framesPerRun / u.devices)} heart_rate frames per run) on two gateways alike but for uplink.url, in the order plain, uplink, uplink, plain${u.complete ? '' : ' (INCOMPLETE)'}`,
  );
  w = [12, 10, 12, 14, 12, 14];
  out.push(row(['run', 'frames', 'gw CPU s', 'gw µs/frame', 'frames/s', 'OTHER CPU-s'], w));
  for (const r of u.runs)
    out.push(row([r.variant, fmt(r.frames), fmt(r.gatewayCpuS, 2), fmt(r.gatewayCpuUsPerFrame, 0), fmt(r.framesPerSecond), fmt(r.otherCpuS, 1)], w));
  out.push(
    `  gateway CPU per frame: ${fmt(u.uplinkUsPerFrame, 0)} µs with the uplink, ${fmt(u.plainUsPerFrame, 0)} µs without: RATIO ${fmt(u.ratio, 2)} (the uplink adds ${fmt(u.extraUsPerFrame, 0)} µs per frame)`,
  );
  out.push('');
  const h = f.hospital.hub;
  out.push(
    `(h3) hub throughput: ${h.devices} devices over 3 gateways, ${fmt(h.frames)} frames as fast as their windows allow, one researcher per patient on one hub${h.complete ? '' : ' (INCOMPLETE)'}`,
  );
  out.push(
    `  ${fmt(h.delivered)} deliveries in ${fmt(h.wallS, 2)} s: ${fmt(h.deliveriesPerSecond)} deliveries/s; hub ${fmt(h.hubCpuS, 2)} CPU-s: ${fmt(h.deliveriesPerHubCpuSecond)} DELIVERIES PER HUB CPU-SECOND (${fmt(h.hubCpuUsPerDelivery, 0)} µs each)`,
  );
  out.push(
    `  uplink frames taken in by the hub ${fmt(h.uplinkFramesReceived)}; Mosquitto ${fmt(h.mosquittoCpuUsPerFrame, 0)} µs CPU per uplink frame (in from a gateway, out to the hub); gateways ${fmt(h.gatewayCpuUsPerFrame, 0)} µs per frame`,
  );
  out.push(`  ${cpuLineAll('(h3) run', h.cpu)}`);
  const i = h.intake;
  out.push(
    `  the same load with no researcher connected (${fmt(i.frames)} frames${i.complete ? '' : ', INCOMPLETE'}): hub ${fmt(i.hubCpuUsPerFrame, 0)} µs CPU per uplink frame taken in (decoded and placed; a frame nobody follows is not verified or ordered), so ${fmt(h.hubCpuUsPerDelivery - i.hubCpuUsPerFrame, 0)} µs per delivery on top`,
  );
  out.push(`  ${cpuLineAll('(h3) intake-only run', i.cpu)}`);
  out.push(`  hospital set-up ${fmt(f.hospital.setupS, 1)} s; (h) took ${f.seconds} s`);
}
