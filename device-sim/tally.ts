/**
 * The fault tally: every injection, under its kind and its expectation, and what became of
 * it. Only settled injections count towards what the gateway must show:
 *
 * - confirmed: the broker acknowledged the faulty frame (the gateway decided on it and
 *   counted it), over BLE an acknowledgement covered a later honest frame (or, for a fragment
 *   stream the gateway must refuse, the gateway disconnected after it), the refused CONNECT came
 *   back with the expected return code, the device reconnected, or the frame after a sequence
 *   gap was acknowledged;
 * - lost: the connection dropped before the PUBACK; the gateway may or may not have
 *   counted the frame, so exact comparisons must allow for it (the simulator's own
 *   disconnect fault waits until no faulty frame is in flight, so only real network
 *   trouble loses one);
 * - unexpected: the answer contradicts the expectation (a non-enrolled device was let in).
 */
import type { ConnectReason, FragmentReason, FrameReason } from '../firmware-proto/reasons.js';
import { ALL_CONNECT_REASONS, ALL_FRAGMENT_REASONS, ALL_FRAME_REASONS } from '../firmware-proto/reasons.js';
import type { Expectation, FaultKind } from './faults.js';

export type Outcome = 'confirmed' | 'lost' | 'unexpected';

export interface TallyEntry {
  kind: FaultKind;
  expected: Expectation;
  injected: number;
  confirmed: number;
  lost: number;
  unexpected: number;
}

export interface FaultReport {
  /** One row per (kind, expectation) that occurred, sorted. */
  entries: TallyEntry[];
  /** Injections per kind. */
  injected: Partial<Record<FaultKind, number>>;
  /** Frames the gateway must have refused, by reason: confirmed injections only. */
  expectedRejections: Partial<Record<FrameReason, number>>;
  /** CONNECTs the gateway must have refused, by reason: confirmed injections only. */
  expectedConnectRefusals: Partial<Record<ConnectReason, number>>;
  /** BLE fragment streams the gateway's reassembler must have refused, by reason: confirmed injections only. */
  expectedFragmentRejections: Partial<Record<FragmentReason, number>>;
  /** Sequence numbers skipped before an acknowledged frame (gap and skew faults): the gateway's seqGaps. */
  expectedSeqGaps: number;
  /** Skipped numbers whose following frame was not acknowledged yet. */
  pendingSeqGaps: number;
  /** Injections not settled yet (at the end of a run: none, unless the drain timed out). */
  pending: number;
  lost: number;
  unexpected: number;
}

const FRAME_REASON_SET = new Set<string>(ALL_FRAME_REASONS);
const CONNECT_REASON_SET = new Set<string>(ALL_CONNECT_REASONS);
const FRAGMENT_REASON_SET = new Set<string>(ALL_FRAGMENT_REASONS);

export class FaultTally {
  private readonly rows = new Map<string, TallyEntry>();
  private seqGaps = 0;
  private pendingGaps = 0;

  /** Records an injection; call the returned function once with its outcome. */
  inject(kind: FaultKind, expected: Expectation): (outcome: Outcome) => void {
    const key = `${kind}\0${expected}`;
    let row = this.rows.get(key);
    if (!row) {
      row = { kind, expected, injected: 0, confirmed: 0, lost: 0, unexpected: 0 };
      this.rows.set(key, row);
    }
    row.injected++;
    let settled = false;
    const r = row;
    return (outcome) => {
      if (settled) return;
      settled = true;
      r[outcome]++;
    };
  }

  /** Records `n` skipped sequence numbers; call the returned function when the next frame is acknowledged. */
  skip(n: number): () => void {
    this.pendingGaps += n;
    let settled = false;
    return () => {
      if (settled) return;
      settled = true;
      this.pendingGaps -= n;
      this.seqGaps += n;
    };
  }

  report(): FaultReport {
    const entries = [...this.rows.values()].map((r) => ({ ...r })).sort((a, b) => (a.kind + a.expected).localeCompare(b.kind + b.expected));
    const rep: FaultReport = {
      entries,
      injected: {},
      expectedRejections: {},
      expectedConnectRefusals: {},
      expectedFragmentRejections: {},
      expectedSeqGaps: this.seqGaps,
      pendingSeqGaps: this.pendingGaps,
      pending: 0,
      lost: 0,
      unexpected: 0,
    };
    for (const e of entries) {
      rep.injected[e.kind] = (rep.injected[e.kind] ?? 0) + e.injected;
      rep.pending += e.injected - e.confirmed - e.lost - e.unexpected;
      rep.lost += e.lost;
      rep.unexpected += e.unexpected;
      if (FRAME_REASON_SET.has(e.expected)) {
        const k = e.expected as FrameReason;
        rep.expectedRejections[k] = (rep.expectedRejections[k] ?? 0) + e.confirmed;
      } else if (CONNECT_REASON_SET.has(e.expected)) {
        const k = e.expected as ConnectReason;
        rep.expectedConnectRefusals[k] = (rep.expectedConnectRefusals[k] ?? 0) + e.confirmed;
      } else if (FRAGMENT_REASON_SET.has(e.expected)) {
        const k = e.expected as FragmentReason;
        rep.expectedFragmentRejections[k] = (rep.expectedFragmentRejections[k] ?? 0) + e.confirmed;
      }
    }
    return rep;
  }
}
