/**
 * The seam between a simulated wearable and its transport. MQTT (mqtt-link.ts) and BLE GATT
 * over the simulated BlueZ (ble-link.ts) implement it. The wearable decides what to send; the
 * link owns delivery: order, acknowledgement, reconnection, resending.
 */
import type { FragmentReason } from '../firmware-proto/reasons.js';
import type { BadFragmentVariant } from './ble-streams.js';

export interface LinkCounters {
  /** Successful connections (MQTT: CONNACK accepted; BLE: a central connected). */
  connects: number;
  /** CONNECT refusals by CONNACK return code. */
  refusals: Record<string, number>;
  /** Connection attempts that failed without a CONNACK (refused socket, timeout). */
  connectErrors: number;
  /** Honest frames published, including retransmissions. */
  sent: number;
  /** Honest frames acknowledged (and removed from the outbox). */
  acked: number;
  /** Honest frames published again after a reconnect with the DUP flag. */
  retransmitted: number;
  /** One-shot publications (faults): sent, acknowledged, lost with their connection. */
  extrasSent: number;
  extrasAcked: number;
  extrasLost: number;
  /** Connections ended by the disconnect fault. */
  abruptDisconnects: number;
}

/** The transports a wearable can use. */
export type Transport = 'mqtt' | 'ble';

export function newLinkCounters(): LinkCounters {
  return {
    connects: 0,
    refusals: {},
    connectErrors: 0,
    sent: 0,
    acked: 0,
    retransmitted: 0,
    extrasSent: 0,
    extrasAcked: 0,
    extrasLost: 0,
    abruptDisconnects: 0,
  };
}

/** MQTT 3.1.1 CONNACK return code 5, which the gateway gives unknown and revoked devices. */
export const CONNACK_NOT_AUTHORIZED = 5;

/** The result of one connection attempt. */
export interface ConnectAttempt {
  connected: boolean;
  /** The CONNACK return code of a refusal; undefined when no CONNACK came (unreachable, timeout). */
  returnCode?: number;
  error?: string;
}

export interface FrameLink {
  readonly deviceId: string;
  readonly connected: boolean;
  readonly counters: LinkCounters;
  /** Frames recorded but not yet acknowledged, plus one-shot publications not yet settled. */
  readonly backlog: number;

  /** Starts connecting (and reconnecting after every loss) until stop(). */
  start(): void;
  /** Ends the connection politely; unacknowledged frames stay in the device's outbox. */
  stop(): Promise<void>;

  /**
   * A frame DeviceCore recorded (it is in the outbox): deliver it in recording order, with
   * at-least-once semantics, until acknowledged. `sentBefore`: it went out on an earlier
   * connection (a frame restored from the device's state), so it is resent as a retransmission.
   */
  enqueueFrame(seq: bigint, raw: Uint8Array, sentBefore?: boolean): void;
  /**
   * A one-shot publication in order with the frames, never resent: resolves true when
   * acknowledged (over BLE: when an ACK covers a later honest frame, ble-link.ts), false when
   * its connection dropped first (or the link stopped). `asDevice` publishes on another
   * device's channel (the wrong_topic fault; over BLE the copy names that device instead).
   */
  sendExtra(payload: Uint8Array, opts?: { asDevice?: string }): Promise<boolean>;
  /**
   * Destroys the connection abruptly at the next moment when only honest frames are in
   * flight, then reconnects as after any loss. Resolves true once reconnected, false if the
   * link stopped first.
   */
  abruptDisconnect(): Promise<boolean>;
  /** Called for every acknowledged honest frame. */
  onAck(listener: (seq: bigint, raw: Uint8Array) => void): void;
  /** Resolves true once the backlog is below the link's high-water mark, false if aborted. */
  waitForRoom(signal?: AbortSignal): Promise<boolean>;
  /** Resolves true once the backlog is empty, false if aborted. */
  idle(signal?: AbortSignal): Promise<boolean>;
}

/**
 * Faults only a radio link can commit (BLE, ble-link.ts). Each waits, like abruptDisconnect,
 * for a frame boundary with no faulty frame unsettled, so the tally stays exact.
 */
export interface RadioFaults {
  /** Gone for `ms`: the connection drops, the device leaves BlueZ's tree, then advertises again. Resolves true once a central connected again. */
  vanish(ms: number): Promise<boolean>;
  /** Out of range for `ms`: the connection drops, connects fail, frames wait in the outbox. Resolves true once a central connected again. */
  outOfRange(ms: number): Promise<boolean>;
  /**
   * A corrupted fragment stream made from this frame, sent once as its own transmission. The
   * gateway refuses it (`expected`) and disconnects: `sent` resolves true when the central
   * disconnects after it, false when the connection ended otherwise or the gateway went on.
   */
  sendBadFragments(raw: Uint8Array, variant: BadFragmentVariant): { expected: FragmentReason; sent: Promise<boolean> };
  /**
   * The stall fault: the first fragments of a copy of this frame (ble-streams.ts stalledStream),
   * sent once as its own transmission; then the link sends nothing more on that connection until
   * the central disconnects. The gateway's stall timer refuses the partial frame (`expected`,
   * FRAGMENT_STALLED) and disconnects. `holding` resolves true when the partial frame is out and
   * the silence begins, false if that never happens (the link stopped, or the connection dropped
   * mid-stream); `sent` as for sendBadFragments.
   */
  stallFrame(raw: Uint8Array): { expected: FragmentReason; holding: Promise<boolean>; sent: Promise<boolean> };
}

/**
 * Callers waiting for a condition on a link (room below the high-water mark, an empty
 * backlog): `notify()` after anything that may make a condition true, `releaseAll()` when the
 * link stops. Both links (MQTT, BLE) wait through it.
 */
export class Waiters {
  private waiting: { ready: () => boolean; resolve: (ok: boolean) => void }[] = [];

  /** Resolves true once `ready()` holds, false if `signal` aborts, the link `stopped`, or releaseAll comes first. */
  wait(ready: () => boolean, signal: AbortSignal | undefined, stopped: boolean): Promise<boolean> {
    if (ready()) return Promise.resolve(true);
    if (signal?.aborted || stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w = {
        ready,
        resolve: (ok: boolean): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve(ok);
        },
      };
      const onAbort = (): void => {
        this.waiting = this.waiting.filter((x) => x !== w);
        resolve(false);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  /** Resolves every waiter whose condition now holds. */
  notify(): void {
    if (this.waiting.length === 0) return;
    const still: typeof this.waiting = [];
    for (const w of this.waiting) {
      if (w.ready()) w.resolve(true);
      else still.push(w);
    }
    this.waiting = still;
  }

  /** Resolves every waiter false (the link stopped). */
  releaseAll(): void {
    for (const w of this.waiting.splice(0)) w.resolve(false);
  }
}
