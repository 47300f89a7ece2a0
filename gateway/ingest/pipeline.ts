/**
 * The one ingest pipeline. Every transport (MQTT, BLE) hands it raw frame bytes with what it
 * knows of the sender; it answers with an outcome once it is safe to acknowledge:
 *
 *   accepted   verified, fresh, durable in the spool (fsynced)
 *   duplicate  an honest retransmission of a frame already accepted: acknowledge, store nothing
 *   rejected   refused under one reason code, quarantined, counted: acknowledge at the
 *              transport level too, since resending would not change the verdict
 *
 * Checks follow PROTOCOL.md §3.2 and §5.3, in this order: decode, device known, sender,
 * signature, revocation, sequence (duplicate / replay), clock skew, time overlap.
 * Frames of one device are decided in arrival order; different devices run in parallel.
 * With handoff (./handoff.ts), a device that may have come from another gateway is looked up
 * in the shared store inside its own decision chain, before the freshness checks.
 */
import { decodeFrame, frameEndMs, peekDeviceId, type Frame } from '../../firmware-proto/frame.js';
import { FRAME_TAG, concat } from '../../firmware-proto/signing.js';
import { ProtocolError, type FrameReason } from '../../firmware-proto/reasons.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { revokedAt } from '../registry/registry.js';
import type { Verifier } from '../verify/pool.js';
import type { Wal } from '../spool/wal.js';
import type { Metrics } from '../status/metrics.js';
import type { Quarantine } from './quarantine.js';
import type { DeviceStates } from './device-state.js';
import type { Handoff } from './handoff.js';
import { encodeSpoolRecord, sha256Hex } from './spool-record.js';
import type { AcceptedFrame, Transport } from './types.js';

export interface IngestContext {
  transport: Transport;
  /** The device the transport authenticated (MQTT CONNECT, BLE connection to an enrolled device). */
  sender: string;
  /** The device named by the channel the bytes came on (MQTT topic), when the transport has one. */
  channelDevice?: string;
  /** The transport marked this as a retransmission (MQTT DUP flag, BLE retransmit bit). */
  retransmission: boolean;
}

export type Outcome =
  | { status: 'accepted'; lsn: bigint; deviceId: string; seq: bigint }
  | { status: 'duplicate'; deviceId: string; seq: bigint }
  | {
      status: 'rejected';
      reason: FrameReason;
      detail: Record<string, unknown>;
      /**
       * The frame's seq when its signature verified (refused later: revoked, replay, clock skew,
       * overlap). Absent when the frame is not authentic: its seq is only a claim, and BLE must
       * never acknowledge a claimed seq (PROTOCOL.md §10.4), or a forged copy would make the
       * device delete the honest frame.
       */
      authenticSeq?: bigint;
    };

export interface FreshnessRules {
  /** How far a device timestamp may run ahead of the gateway clock (ms). */
  maxFutureSkewMs: number;
  /** How old a frame may be when it arrives (store-and-forward backlog bound, ms). */
  maxBacklogMs: number;
}

export const DEFAULT_FRESHNESS: FreshnessRules = { maxFutureSkewMs: 30_000, maxBacklogMs: 7 * 24 * 3600_000 };

export interface PipelineDeps {
  registry: DeviceRegistry;
  verifier: Verifier;
  wal: Wal;
  states: DeviceStates;
  quarantine: Quarantine;
  metrics: Metrics;
  rules?: FreshnessRules;
  now?: () => number;
  /**
   * Learns a device's state from the hospital's shared store when it may have come from
   * another gateway (./handoff.ts, docs/fleet.md); absent: every decision is local.
   */
  handoff?: Handoff;
  /** Called for each accepted frame once durable (e.g. to wake the storage writer). */
  onDurable?: () => void;
  /**
   * Called for each accepted frame once durable, with the frame (every transport: MQTT and
   * BLE): the live researcher transport (gateway/research/live.ts) delivers from here. Must not
   * throw and must not block: it runs before the transport's acknowledgement.
   */
  onAccepted?: (a: AcceptedFrame) => void;
  /** Called when the spool is full and frames wait for space (alarm). */
  onSpoolFull?: () => void;
  /**
   * Called when the spool cannot write. The live device state already counts the frame
   * that failed, so the gateway must stop and rebuild it from what is durable.
   */
  onFatal?: (e: Error) => void;
}

export class IngestPipeline {
  private readonly tails = new Map<string, Promise<unknown>>();
  /** `device:seq` → durability of an accepted frame whose fsync is still pending. */
  private readonly pendingDurable = new Map<string, Promise<bigint>>();
  private readonly rules: FreshnessRules;
  private readonly now: () => number;

  constructor(private readonly d: PipelineDeps) {
    this.rules = d.rules ?? DEFAULT_FRESHNESS;
    this.now = d.now ?? Date.now;
  }

  /** Resolves when the transport may acknowledge the frame; never rejects for bad input. */
  async submit(raw: Uint8Array, ctx: IngestContext): Promise<Outcome> {
    const { metrics } = this.d;
    metrics.countReceived(ctx.transport);
    let frame: Frame;
    try {
      frame = decodeFrame(raw);
    } catch (e) {
      if (e instanceof ProtocolError) return this.reject(raw, ctx, e.code, { ...e.detail });
      throw e;
    }
    const rec = this.d.registry.get(frame.deviceId);
    if (!rec) return this.reject(raw, ctx, 'UNKNOWN_DEVICE', { device: frame.deviceId });
    if (frame.deviceId !== ctx.sender || (ctx.channelDevice !== undefined && ctx.channelDevice !== ctx.sender)) {
      return this.reject(raw, ctx, 'DEVICE_MISMATCH', { expected: ctx.sender, got: frame.deviceId, channel: ctx.channelDevice });
    }
    const verified = this.d.verifier.verify({ key: rec.publicKey, message: concat(FRAME_TAG, frame.body), signature: frame.signature });
    // Decide in arrival order per device: wait for the previous frame's decision, not its fsync.
    const prev = (this.tails.get(frame.deviceId) ?? Promise.resolve()).catch(() => undefined);
    const decision = prev.then(async () => {
      const ok = await verified;
      if (!ok) return { reason: 'BAD_SIGNATURE' as const, detail: { seq: frame.seq }, authentic: false };
      if (revokedAt(rec, Number(frame.timestampMs)))
        return { reason: 'DEVICE_REVOKED' as const, detail: { revokedAtMs: rec.revokedAtMs, timestampMs: frame.timestampMs }, authentic: true };
      const sha = sha256Hex(raw);
      // Before decide(): the store may know this device from another gateway (it moved here).
      if (this.d.handoff && (await this.d.handoff.before(frame, sha, ctx.retransmission)) === 'duplicate-elsewhere') {
        const elsewhere: Extract<Outcome, { status: 'duplicate' }> = { status: 'duplicate', deviceId: frame.deviceId, seq: frame.seq };
        return elsewhere;
      }
      if (this.d.wal.overQuota) {
        this.d.onSpoolFull?.();
        await this.d.wal.waitForSpace();
      }
      return this.decide(frame, rec.patient, raw, sha, ctx);
    });
    this.tails.set(frame.deviceId, decision);
    void decision.finally(() => {
      if (this.tails.get(frame.deviceId) === decision) this.tails.delete(frame.deviceId);
    });
    let result: Awaited<typeof decision>;
    try {
      result = await decision;
    } catch (e) {
      // The spool refused the append (closed, broken): nothing was acknowledged or applied,
      // but nothing more can be; the gateway must stop.
      this.d.onFatal?.(e as Error);
      throw e;
    }
    if ('reason' in result) return this.reject(raw, ctx, result.reason, result.detail, result.authentic ? frame.seq : undefined);
    if (result.status === 'accepted') {
      try {
        await result.durable;
      } catch (e) {
        this.d.onFatal?.(e as Error);
        throw e; // the transport withholds the acknowledgement: the device keeps the frame
      }
      metrics.countAccepted(ctx.transport);
      this.d.onDurable?.();
      if (this.d.onAccepted) {
        try {
          this.d.onAccepted({
            lsn: result.lsn,
            receivedAtMs: result.receivedAtMs,
            transport: ctx.transport,
            patient: result.patient,
            sha256: result.sha256,
            frame,
          });
        } catch {
          // a consumer's fault never costs the device its acknowledgement
        }
      }
      return { status: 'accepted', lsn: result.lsn, deviceId: frame.deviceId, seq: frame.seq };
    }
    // A retransmission may overtake the original's fsync: acknowledge it only once the
    // original is durable, or the device would drop a frame the gateway never stored.
    const original = this.pendingDurable.get(`${frame.deviceId}:${frame.seq}`);
    if (original) await original;
    metrics.duplicates++;
    return result;
  }

  /** Synchronous: the freshness checks and the spool append happen in one step per frame. */
  private decide(
    frame: Frame,
    patient: string,
    raw: Uint8Array,
    sha: string,
    ctx: IngestContext,
  ):
    | { status: 'accepted'; lsn: bigint; durable: Promise<bigint>; receivedAtMs: number; patient: string; sha256: string }
    | { status: 'duplicate'; deviceId: string; seq: bigint }
    | { reason: FrameReason; detail: Record<string, unknown>; authentic: true } {
    const state = this.d.states.get(frame.deviceId);
    if (state && frame.seq <= state.highestSeq) {
      if (ctx.retransmission && state.recent.get(frame.seq) === sha) return { status: 'duplicate', deviceId: frame.deviceId, seq: frame.seq };
      return { reason: 'REPLAY', detail: { highestAccepted: state.highestSeq, got: frame.seq, retransmission: ctx.retransmission }, authentic: true };
    }
    const now = this.now();
    const ts = Number(frame.timestampMs);
    if (ts > now + this.rules.maxFutureSkewMs || ts < now - this.rules.maxBacklogMs) {
      return {
        reason: 'CLOCK_SKEW',
        detail: { gatewayMs: now, timestampMs: ts, maxFutureSkewMs: this.rules.maxFutureSkewMs, maxBacklogMs: this.rules.maxBacklogMs },
        authentic: true,
      };
    }
    const lastEnd = state?.lastEndMs.get(frame.sensor);
    if (lastEnd !== undefined && frame.timestampMs <= lastEnd) {
      return { reason: 'TIME_OVERLAP', detail: { previousEndMs: lastEnd, timestampMs: frame.timestampMs, endMs: frameEndMs(frame) }, authentic: true };
    }
    const { lsn, durable } = this.d.wal.append(encodeSpoolRecord(now, ctx.transport, patient, raw));
    const key = `${frame.deviceId}:${frame.seq}`;
    this.pendingDurable.set(key, durable);
    void durable.finally(() => this.pendingDurable.delete(key)).catch(() => undefined);
    const gap = this.d.states.apply(frame, sha);
    if (gap > 0n) this.d.metrics.seqGaps += Number(gap);
    return { status: 'accepted', lsn, durable, receivedAtMs: now, patient, sha256: sha };
  }

  private async reject(raw: Uint8Array, ctx: IngestContext, reason: FrameReason, detail: Record<string, unknown>, authenticSeq?: bigint): Promise<Outcome> {
    this.d.metrics.countRejected(ctx.transport, reason);
    const claimed = peekDeviceId(raw);
    await this.d.quarantine.add({ reason, transport: ctx.transport, sender: ctx.sender, ...(claimed ? { claimedDevice: claimed } : {}), detail }, raw);
    return { status: 'rejected', reason, detail, ...(authenticSeq !== undefined ? { authenticSeq } : {}) };
  }

  /** Resolves when every frame submitted so far is decided. */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.allSettled([...this.tails.values()]);
  }
}
