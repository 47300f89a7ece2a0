/** Plain-text views of a run for the terminal: the progress line and the final summary. */
import type { FleetProgress, FleetReport } from './run.js';

export function progressLine(p: FleetProgress): string {
  const s = (p.elapsedMs / 1000).toFixed(1).padStart(6);
  return [
    `${s}s ${p.phase.padEnd(9)}`,
    `connected ${p.connected}/${p.devices}`,
    `frames ${p.recorded} sent ${p.sent} acked ${p.acked} (${Math.round(p.ackRate)}/s)`,
    `resent ${p.retransmitted}`,
    `faults ${p.faultsInjected}, rejected as expected ${p.rejectedExpected}`,
    `backlog ${p.backlog}`,
  ].join('  ');
}

export function summary(r: FleetReport): string {
  const lines: string[] = [];
  const f = r.frames;
  lines.push(
    `vp-sim: ${r.devices} devices over ${r.transport === 'ble' ? 'BLE' : 'MQTT'} (seed ${r.seed}) for ${(r.elapsedMs / 1000).toFixed(1)} s: ${f.recorded} frames recorded, ${f.acked} acknowledged, ${f.retransmitted} resent after reconnects` +
      (f.restored ? `, ${f.restored} restored from the previous run` : '') +
      (f.unacked ? `, ${f.unacked} NOT acknowledged` : '') +
      (f.droppedFromOutbox ? `, ${f.droppedFromOutbox} dropped from full outboxes` : ''),
  );
  const c = r.connections;
  const refusals = Object.entries(c.refusals).map(([rc, n]) => `rc ${rc}: ${n}`);
  lines.push(
    `connections: ${c.connects} made, ${c.abruptDisconnects} cut by the disconnect fault, ${c.connectErrors} failed${refusals.length ? `, refused ${refusals.join(', ')}` : ''}`,
  );
  if (r.clockWaitMs > 0)
    lines.push(`note: ${Math.round(r.clockWaitMs / 1000)} s of frames had to wait for the real clock (an earlier run on this state dir covered that time)`);
  const t = r.faults;
  if (t.entries.length) {
    lines.push('faults injected:');
    lines.push(
      `  ${'kind'.padEnd(15)}${'expected'.padEnd(24)}${'injected'.padStart(9)}${'confirmed'.padStart(10)}${'lost'.padStart(6)}${'unexpected'.padStart(11)}`,
    );
    for (const e of t.entries) {
      lines.push(
        `  ${e.kind.padEnd(15)}${e.expected.padEnd(24)}${String(e.injected).padStart(9)}${String(e.confirmed).padStart(10)}${String(e.lost).padStart(6)}${String(e.unexpected).padStart(11)}`,
      );
    }
    const list = (o: Record<string, number | undefined>): string =>
      Object.entries(o)
        .filter(([, n]) => n)
        .map(([k, n]) => `${k}=${n}`)
        .join(' ') || 'none';
    const refused =
      r.transport === 'ble' ? `fragment streams refused ${list(t.expectedFragmentRejections)}` : `connect refused ${list(t.expectedConnectRefusals)}`;
    lines.push(`the gateway should count: rejected ${list(t.expectedRejections)}; ${refused}; sequence gaps ${t.expectedSeqGaps}`);
    if (t.lost) lines.push(`  (${t.lost} faulty frames went down with their connection: the gateway may have counted them or not)`);
    if (t.pending) lines.push(`  (${t.pending} faults still unsettled when the run ended)`);
  } else lines.push('faults injected: none');
  if (r.rogues?.length) {
    const subscribed = r.rogues.filter((x) => x.notifyStarts > 0).length;
    lines.push(
      `rogue wearables: ${r.rogues.length}, connected ${r.rogues.filter((x) => x.connections > 0).length}, subscribed ${subscribed}${subscribed ? ' (WARNING: a central subscribed to a non-enrolled device)' : ''}`,
    );
  }
  if (!r.drained) lines.push('WARNING: the run ended before every frame was acknowledged; with --state, the next run sends them first');
  return lines.join('\n');
}
