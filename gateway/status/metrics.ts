/**
 * The gateway's counters: one instance per gateway, passed to whoever counts. Every
 * rejected frame is counted under exactly one reason code, every refused CONNECT too.
 */
import {
  ALL_BLE_REASONS,
  ALL_CONNECT_REASONS,
  ALL_FRAGMENT_REASONS,
  ALL_FRAME_REASONS,
  type BleReason,
  type ConnectReason,
  type FragmentReason,
  type FrameReason,
} from '../../firmware-proto/reasons.js';
import type { Transport } from '../ingest/types.js';
import { ALL_MQTT_REFUSALS, type MqttRefusal } from '../transport/mqtt/refusals.js';

export class RateMeter {
  private readonly buckets = new Float64Array(10);
  private current = 0;
  private bucketStart = 0;
  constructor(private readonly bucketMs = 1000) {}
  mark(n = 1, now = Date.now()): void {
    this.roll(now);
    this.buckets[this.current] = this.buckets[this.current]! + n;
  }
  /** Events per second over the last few complete seconds. */
  rate(now = Date.now()): number {
    this.roll(now);
    let sum = 0;
    for (let i = 1; i <= 5; i++) sum += this.buckets[(this.current - i + this.buckets.length) % this.buckets.length]!;
    return sum / ((5 * this.bucketMs) / 1000);
  }
  private roll(now: number): void {
    const slot = Math.floor(now / this.bucketMs);
    if (this.bucketStart === 0) this.bucketStart = slot;
    while (this.bucketStart < slot) {
      this.bucketStart++;
      this.current = (this.current + 1) % this.buckets.length;
      this.buckets[this.current] = 0;
      if (slot - this.bucketStart > this.buckets.length) this.bucketStart = slot;
    }
  }
}

export class Metrics {
  readonly startedAtMs = Date.now();
  received = 0;
  accepted = 0;
  duplicates = 0;
  rejected = 0;
  /** Sequence numbers skipped by devices (accepted frames that jumped ahead). */
  seqGaps = 0;
  pointsWritten = 0;
  framesWritten = 0;
  storageErrors = 0;
  /** Frames set aside in the storage quarantine since start: InfluxDB refused them for good (docs/storage.md). */
  storageQuarantined = 0;
  /**
   * Lookups of a moving device's state in the shared InfluxDB (gateway/ingest/handoff.ts,
   * docs/fleet.md): made, that raised what was known, that found a frame accepted by another
   * gateway (a duplicate), that failed (decided locally), and not made (lookup cap, InfluxDB down).
   */
  readonly handoff = { lookups: 0, learned: 0, duplicatesElsewhere: 0, failures: 0, skipped: 0 };
  readonly rejectedBy = Object.fromEntries(ALL_FRAME_REASONS.map((r) => [r, 0])) as Record<FrameReason, number>;
  /** Refused MQTT CONNECTs; BLE devices refused at connection are in bleConnectRefusedBy, under the same codes. */
  readonly connectRefusedBy = Object.fromEntries(ALL_CONNECT_REASONS.map((r) => [r, 0])) as Record<ConnectReason, number>;
  readonly bleConnectRefusedBy = Object.fromEntries(ALL_CONNECT_REASONS.map((r) => [r, 0])) as Record<ConnectReason, number>;
  /** MQTT connections closed at the transport, before or instead of any MQTT answer (gateway/transport/mqtt/refusals.ts). */
  readonly mqttRefusedBy = Object.fromEntries(ALL_MQTT_REFUSALS.map((r) => [r, 0])) as Record<MqttRefusal, number>;
  /** BLE notifications refused by a reassembler (PROTOCOL.md §10.6), apart from frame reasons. */
  readonly fragmentRejectedBy = Object.fromEntries(ALL_FRAGMENT_REASONS.map((r) => [r, 0])) as Record<FragmentReason, number>;
  /** BLE connections the central ended or could not open, by why. */
  readonly bleEndedBy = Object.fromEntries(ALL_BLE_REASONS.map((r) => [r, 0])) as Record<BleReason, number>;
  readonly byTransport: Record<Transport, { received: number; accepted: number; rejected: number }> = {
    mqtt: { received: 0, accepted: 0, rejected: 0 },
    ble: { received: 0, accepted: 0, rejected: 0 },
  };
  readonly acceptedRate = new RateMeter();
  readonly receivedRate = new RateMeter();

  countReceived(t: Transport): void {
    this.received++;
    this.byTransport[t].received++;
    this.receivedRate.mark();
  }
  countAccepted(t: Transport): void {
    this.accepted++;
    this.byTransport[t].accepted++;
    this.acceptedRate.mark();
  }
  countRejected(t: Transport, reason: FrameReason): void {
    this.rejected++;
    this.rejectedBy[reason]++;
    this.byTransport[t].rejected++;
  }
  countConnectRefused(reason: ConnectReason, t: Transport = 'mqtt'): void {
    (t === 'mqtt' ? this.connectRefusedBy : this.bleConnectRefusedBy)[reason]++;
  }
}
