/**
 * One BLE connection to an enrolled wearable, once its info checked out (PROTOCOL.md §10.7
 * steps 2 to 6): notifications in, reassembled, handed to the one ingest pipeline bound to the
 * device; cumulative acknowledgements out, one write at a time, only for what is settled.
 *
 * What may be acknowledged (§10.4): ACK n says every frame with seq ≤ n is settled. n only
 * ever moves to the seq of a frame whose signature verified (accepted, duplicate, or refused
 * after verification), once it and every frame received before it on this connection are
 * settled. A frame that failed before or at its signature carries a seq that is only a claim;
 * acknowledging it would let a corrupted copy make the device delete the honest frame.
 *
 * The first loss in transit (any FRAGMENT_* rejection but FRAGMENT_DUPLICATE) ends the
 * connection: no frame after it reaches the pipeline and no further ACK is written, so the
 * device resends the lost frame first on the next connection (§10.6).
 */
import type NodeBle from 'node-ble';
import { encodeAck } from '../../../firmware-proto/gatt.js';
import { frameIdentity } from '../../../firmware-proto/frame.js';
import { Reassembler } from '../../../firmware-proto/fragment.js';
import type { BleReason } from '../../../firmware-proto/reasons.js';
import type { IngestPipeline } from '../../ingest/pipeline.js';
import type { Metrics } from '../../status/metrics.js';
import type { Logger } from '../../log.js';
import { dbusErrorText, dropNotificationListeners, type GattProfile } from './bluez.js';

export interface ConnectionOptions {
  deviceId: string;
  profile: GattProfile;
  /** The highest seq already settled for the device: the first ACK (§10.7 step 3). */
  initialAck: bigint;
  pipeline: IngestPipeline;
  metrics: Metrics;
  log: Logger;
  stallMs: number;
  now?: () => number;
  /** An authentic frame of the device is settled: its seq. */
  onSettled: (seq: bigint) => void;
  /** The connection is over; `reason` undefined when the central ended it (shutdown, revocation). */
  onEnd: (reason: BleReason | undefined, detail: Record<string, unknown>) => void;
}

/** ATT errors a device answers a refused control write with (§10.4); anything else means the link is gone. */
const ACK_REFUSALS = ['org.bluez.Error.InvalidValueLength', 'org.bluez.Error.Failed: 0x8'];

export class BleConnection {
  private readonly reassembler: Reassembler;
  private readonly now: () => number;
  private closed = false;
  private settling: Promise<void> = Promise.resolve();
  private ackWanted: bigint;
  private ackWritten: bigint | undefined;
  private ackInFlight = false;
  private stallTimer: NodeJS.Timeout | undefined;
  private readonly listener = (v: Buffer): void => this.onNotification(v);
  readonly openedAtMs: number;
  /** Frames reassembled on this connection. */
  frames = 0;
  /** Of those, not settled yet. */
  pending = 0;
  lastFrameAtMs: number | undefined;
  /** Device timestamp of the newest frame settled (how far behind the device's delivery is). */
  newestFrameMs: number | undefined;

  constructor(private readonly o: ConnectionOptions) {
    this.now = o.now ?? Date.now;
    this.reassembler = new Reassembler({ stallMs: o.stallMs, now: this.now });
    this.ackWanted = o.initialAck;
    this.openedAtMs = this.now();
  }

  get isOpen(): boolean {
    return !this.closed;
  }
  /** The last acknowledgement the device accepted. */
  get acked(): bigint | undefined {
    return this.ackWritten;
  }

  /**
   * Subscribes (with the listener in place first) and writes the first ACK, which opens the
   * device's sending (§10.7 steps 2, 3). Failures end the connection through onEnd.
   */
  async start(): Promise<void> {
    this.o.profile.frame.on('valuechanged', this.listener);
    try {
      await this.o.profile.frame.startNotifications();
    } catch (e) {
      this.end('BLE_CONNECT_FAILED', { step: 'StartNotify', err: dbusErrorText(e) });
      return;
    }
    // The reassembler's own check runs only when a notification comes; a device that stops
    // mid-frame is found by this timer (§10.6 rule 0).
    this.stallTimer = setInterval(
      () => {
        const r = this.reassembler.expire();
        if (r) {
          this.o.metrics.fragmentRejectedBy[r.reason]++;
          this.end('BLE_FRAGMENT_LOSS', { reasons: [r.reason], droppedBytes: r.droppedBytes });
        }
      },
      Math.max(50, Math.floor(this.o.stallMs / 4)),
    );
    this.stallTimer.unref();
    this.pumpAck(true);
  }

  /** Ends the connection from the central's side (shutdown, revocation): nothing is counted. */
  close(): void {
    this.end(undefined, {});
  }

  private onNotification(value: Buffer): void {
    if (this.closed) return;
    const verdict = this.reassembler.push(value);
    for (const r of verdict.rejections) {
      this.o.metrics.fragmentRejectedBy[r.reason]++;
      this.o.log.warn(
        { event: 'ble_fragment_rejected', device: this.o.deviceId, reason: r.reason, detail: r.detail, droppedBytes: r.droppedBytes },
        'BLE fragment refused',
      );
    }
    if (verdict.lost) {
      this.end('BLE_FRAGMENT_LOSS', { reasons: verdict.rejections.map((r) => r.reason) });
      return;
    }
    if (verdict.status === 'frame') this.submit(verdict.frame, verdict.retransmit);
  }

  private submit(raw: Uint8Array, retransmit: boolean): void {
    this.frames++;
    this.pending++;
    this.lastFrameAtMs = this.now();
    const outcome = this.o.pipeline.submit(raw, { transport: 'ble', sender: this.o.deviceId, retransmission: retransmit });
    // Settle in arrival order: an ACK covers a frame only once every earlier one is settled.
    this.settling = this.settling.then(async () => {
      try {
        const o = await outcome;
        this.pending--;
        const seq = o.status === 'rejected' ? o.authenticSeq : o.seq;
        if (seq === undefined) return;
        if (o.status !== 'rejected') this.newestFrameMs = Number(frameIdentity(raw).timestampMs);
        this.o.onSettled(seq);
        if (seq > this.ackWanted) this.ackWanted = seq;
        this.pumpAck(false);
      } catch (e) {
        // An internal fault (the spool cannot write): acknowledge nothing more; the device keeps the frames.
        this.pending--;
        this.o.log.error({ event: 'ingest_fault', device: this.o.deviceId, err: (e as Error).message }, 'BLE frame not acknowledged: internal fault');
        this.close();
      }
    });
  }

  /** One write at a time, always the newest n: acknowledgements coalesce (§10.1). */
  private pumpAck(first: boolean): void {
    if (this.closed || this.ackInFlight) return;
    if (!first && this.ackWritten !== undefined && this.ackWanted <= this.ackWritten) return;
    const n = this.ackWanted;
    this.ackInFlight = true;
    this.o.profile.control.writeValueWithResponse(Buffer.from(encodeAck(n))).then(
      () => {
        this.ackInFlight = false;
        this.ackWritten = n;
        this.pumpAck(false);
      },
      (e: unknown) => {
        this.ackInFlight = false;
        const text = dbusErrorText(e);
        this.end(ACK_REFUSALS.some((p) => text.startsWith(p)) ? 'BLE_ACK_REFUSED' : 'BLE_LINK_LOST', { step: 'ACK', ack: n.toString(), err: text });
      },
    );
  }

  /** The link went down under us (Connected = false). */
  linkLost(): void {
    this.end('BLE_LINK_LOST', {});
  }

  private end(reason: BleReason | undefined, detail: Record<string, unknown>): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.stallTimer);
    dropNotificationListeners(this.o.profile.frame as NodeBle.GattCharacteristic);
    if (reason) this.o.metrics.bleEndedBy[reason]++;
    this.o.onEnd(reason, detail);
  }
}
