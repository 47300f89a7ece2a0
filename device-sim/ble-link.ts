/**
 * A wearable's BLE link (PROTOCOL.md §10): the device's GATT server, over GattDeviceSession, on a
 * peripheral of the simulated BlueZ. The gateway is the central: it discovers, connects, reads
 * info, subscribes, acknowledges; this link advertises (start), serves, and ends politely (stop).
 *
 * Delivery: GattDeviceSession keeps the outbox's frames and hands them out oldest first on every
 * connection once the gateway's first ACK came (§10.7); a cumulative ACK n removes frames and
 * fires `onAck` for each. The link merges one-shot fault transmissions ("extras") into the same
 * notification stream and renumbers the merged stream's frame counter (ble-streams.ts,
 * withCounter), since an extra is a transmission too and uses a counter slot (§10.5 rule 3).
 *
 * Extras. Over BLE nothing acknowledges one publication; the gateway's ACK n only covers honest
 * frames. So:
 * - an extra keeps the seq order of the stream (§10.7: frames go in increasing seq order): it goes
 *   at the first frame boundary where no honest frame with a lower seq is still to be handed out,
 *   and before every honest frame with its seq or a higher one. So a copy goes just before its
 *   original if that has not started (the wearable enqueues the original and then,
 *   synchronously, its copies, and the notification pump never runs synchronously), a skewed
 *   frame with its own seq between its neighbours, a replay at once. A skewed frame sent before
 *   a lower honest one would be dangerous: its signature verifies, so the gateway's ACK covers
 *   its seq, and that ACK would delete the lower frame while it is still on the way;
 * - it is a first transmission, R = 0, and is never resent (a replay must reach the gateway
 *   without R to be judged REPLAY; a resent copy would be counted twice);
 * - it resolves true once an ACK covers an honest frame started after it on the same connection
 *   (the gateway settles a device's frames in order, so it has judged and counted the extra),
 *   false when that connection ends first or the link stops;
 * - a stream the gateway must refuse as a loss (bad_fragment, and oversized frames, which the
 *   reassembler refuses on their declared length) resolves true when the central disconnects
 *   after it, as §10.6 requires of the gateway, and false if an ACK for a later frame comes
 *   instead. No extra goes after it on that connection (the gateway would drop it unjudged);
 *   extras handed out before it are settled with it: the gateway passed them on before the loss;
 * - an honest frame never starts while an extra it must follow waits, so every held extra still
 *   has an honest frame after it to be covered by;
 * - a stalled stream (the stall fault, stalledStream) is such a stream too, and more: once its
 *   last notification is out the link HOLDS every further notification on that connection (no
 *   honest frame, no extra, no radio fault, which waits for no extra unsettled) until the central
 *   disconnects, which the gateway's stall timer makes it do after `stallMs`. ACKs are still
 *   taken. The honest frame it was copied from has not started (the copy goes just before it), so
 *   it goes on the next connection, and nothing honest is lost.
 *
 * Radio faults (abruptDisconnect, outOfRange, vanish) wait for a frame boundary on an open
 * connection with no extra unsettled, after the gateway has acknowledged something on it when
 * frames are in flight (so the drop comes mid-stream, as with MQTT). A pending radio fault is a
 * barrier in the wearable's order: what was recorded or queued before it goes on (and covers the
 * extras before it), what came after it (honest frames and extras) waits until it has fired. So
 * it cannot be put off for ever by new extras, and nothing it waits for waits for it.
 */
import type { Outbox } from '../firmware-proto/device.js';
import { MAX_FRAME_BYTES } from '../firmware-proto/frame.js';
import { ATT_MTU_MIN, FRAME_COUNTER_MODULO, parseFragmentHeader } from '../firmware-proto/fragment.js';
import { deviceInfoFor, encodeInfo, GattDeviceSession } from '../firmware-proto/gatt.js';
import type { FragmentReason } from '../firmware-proto/reasons.js';
import type { DisconnectCause, GattServer, Peripheral } from './bluez/radio.js';
import type { SimulatedBluez } from './bluez/service.js';
import {
  badFragmentStream,
  frameStream,
  oversizedStream,
  stalledStream,
  withCounter,
  withDeviceId,
  type BadFragmentVariant,
  type FragmentStream,
} from './ble-streams.js';
import { newLinkCounters, Waiters, type FrameLink, type LinkCounters, type RadioFaults } from './link.js';

/** The firmware version a simulated wearable reports in its info value (§10.3: major.minor.patch). */
export const SIM_GATT_FIRMWARE = '1.0.0';

export interface BleLinkOptions {
  bluez: SimulatedBluez;
  deviceId: string;
  /** The device's public key: the info value's id and key fingerprint derive from it (§10.3). */
  publicKey: Uint8Array;
  /** The outbox of the device's DeviceCore: GattDeviceSession hands out and acknowledges its frames. */
  outbox: Outbox;
  firmwareVersion?: string;
  /** ATT_MTU of its connections; default 247. */
  mtu?: number;
  /** Pause after each notification; default 0. */
  notifyDelayMs?: number;
  /** waitForRoom() resolves below this backlog. Default 256. */
  highWater?: number;
  /** Test-only: advertise these service UUIDs instead of the VitalProof service. */
  advertisedUuids?: readonly string[];
}

interface Extra {
  /** Position among extras and radio events, in the order the wearable made them. */
  ord: number;
  /** Its place in seq order: its own seq, read from its bytes (see extraKey). */
  key: bigint;
  /** The notifications, built when the extra is handed out (the counter is known only then). */
  build(counter: number, mtu: number): FragmentStream;
  /** 'ack': settled by an ACK covering a later honest frame; 'disconnect': by the central disconnecting. */
  settleOn: 'ack' | 'disconnect';
  settle(ok: boolean): void;
  /** The first honest frame started after it on its connection. */
  coverSeq?: bigint;
  /** Once it is out, send nothing more on its connection until the central disconnects (the stall fault). */
  hold?: boolean;
  /** Called once its last notification is handed out. */
  onOut?: () => void;
}

interface RadioEvent {
  ord: number;
  /** The newest honest frame recorded before it: later frames wait for it to fire. */
  afterSeq: bigint;
  kind: 'disconnect' | 'out_of_range' | 'vanish';
  act(): void;
  resolve(ok: boolean): void;
}

export class BleLink implements FrameLink, RadioFaults, GattServer {
  readonly peripheral: Peripheral;
  private readonly session: GattDeviceSession;
  private readonly info: Uint8Array;
  private readonly linkCounters: LinkCounters = newLinkCounters();
  private readonly highWater: number;
  /**
   * The outbox's frames in seq order (frames[head …]), and on this connection the next one
   * GattDeviceSession will start (frames[cursor]): the session shows neither, and the link needs
   * the frames' bytes for `onAck` and the seq of each frame it sees start.
   */
  private frames: { seq: bigint; raw: Uint8Array }[] = [];
  private lastEnqueued = 0n;
  private head = 0;
  private cursor = 0;
  private isConnected = false;
  /** The gateway's first ACK on this connection came: sending may start (§10.7 step 3). */
  private opened = false;
  private mtu = ATT_MTU_MIN;
  /** The merged stream's frame counter C for the next transmission. */
  private counter = 0;
  /** The transmission in progress: an honest frame (renumbered) or an extra's remaining notifications. */
  private current: { kind: 'honest'; counter: number } | { kind: 'extra'; rest: Uint8Array[]; extra: Extra } | undefined;
  private framesStarted = 0;
  private framesAckedHere = 0;
  private queued: Extra[] = [];
  /** Extras handed out on this connection and not settled yet. */
  private outstanding: Extra[] = [];
  /** Of those, the ones waiting for the next honest frame to start. */
  private awaitingCover: Extra[] = [];
  private radio: RadioEvent[] = [];
  private ord = 0;
  /** A radio event fired and its drop is under way: send nothing more. */
  private dropping = false;
  private reconnectWaiters: ((ok: boolean) => void)[] = [];
  private readonly waiters = new Waiters();
  private readonly ackListeners: ((seq: bigint, raw: Uint8Array) => void)[] = [];
  private started = false;
  private stopping = false;

  constructor(private readonly o: BleLinkOptions) {
    this.session = new GattDeviceSession(o.outbox);
    this.info = encodeInfo(deviceInfoFor(o.publicKey, o.firmwareVersion ?? SIM_GATT_FIRMWARE));
    this.highWater = o.highWater ?? 256;
    this.peripheral = o.bluez.addPeripheral({
      deviceId: o.deviceId,
      server: this,
      ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
      ...(o.notifyDelayMs !== undefined ? { notifyDelayMs: o.notifyDelayMs } : {}),
      ...(o.advertisedUuids ? { advertisedUuids: o.advertisedUuids } : {}),
    });
  }

  get deviceId(): string {
    return this.o.deviceId;
  }
  get connected(): boolean {
    return this.isConnected;
  }
  get counters(): LinkCounters {
    const s = this.session.stats;
    this.linkCounters.sent = s.framesSent;
    this.linkCounters.retransmitted = s.retransmissions;
    return this.linkCounters;
  }
  get backlog(): number {
    return this.session.backlog + this.queued.length + this.outstanding.length;
  }

  /** Starts advertising; the gateway connects when it wants. */
  start(): void {
    if (this.started || this.stopping) return;
    this.started = true;
    this.peripheral.startAdvertising();
  }

  /** Stops advertising and ends a connection politely; the peripheral leaves the air. Unacknowledged frames stay in the outbox. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.peripheral.stopAdvertising();
    for (const e of this.queued.splice(0)) e.settle(false);
    for (const r of this.radio.splice(0)) r.resolve(false);
    this.peripheral.remove(); // disconnects: outstanding extras settle false
    for (const f of this.reconnectWaiters.splice(0)) f(false);
    this.waiters.releaseAll();
  }

  enqueueFrame(seq: bigint, raw: Uint8Array, sentBefore = false): void {
    this.session.enqueue(seq, raw, sentBefore);
    this.frames.push({ seq, raw });
    this.lastEnqueued = seq;
    this.followDrops();
    this.peripheral.wake();
  }

  sendExtra(payload: Uint8Array, opts?: { asDevice?: string }): Promise<boolean> {
    const key = this.extraKey(payload);
    if (payload.length > MAX_FRAME_BYTES) return this.extra(key, 'disconnect', (c, mtu) => oversizedStream(payload, c, mtu));
    const bytes = opts?.asDevice ? withDeviceId(payload, opts.asDevice) : payload;
    return this.extra(key, 'ack', (c, mtu) => frameStream(bytes, c, mtu));
  }

  sendBadFragments(raw: Uint8Array, variant: BadFragmentVariant): { expected: FragmentReason; sent: Promise<boolean> } {
    const probe = badFragmentStream(raw, variant, 0); // throws now, not inside the pump, for a frame too short
    return { expected: probe.expected, sent: this.extra(this.extraKey(raw), 'disconnect', (c) => badFragmentStream(raw, variant, c)) };
  }

  stallFrame(raw: Uint8Array): { expected: FragmentReason; holding: Promise<boolean>; sent: Promise<boolean> } {
    const probe = stalledStream(raw, 0, this.mtu); // throws now, not inside the pump, for a frame too short
    let held!: (ok: boolean) => void;
    const holding = new Promise<boolean>((resolve) => (held = resolve));
    const sent = this.extra(this.extraKey(raw), 'disconnect', (c, mtu) => stalledStream(raw, c, mtu), { hold: true, onOut: () => held(true) });
    void sent.then(() => held(false)); // settled without ever holding: a no-op once it held
    return { expected: probe.expected, holding, sent };
  }

  abruptDisconnect(): Promise<boolean> {
    return this.radioEvent('disconnect', () => this.peripheral.dropConnection());
  }

  outOfRange(ms: number): Promise<boolean> {
    return this.radioEvent('out_of_range', () => this.peripheral.goOutOfRange(ms));
  }

  vanish(ms: number): Promise<boolean> {
    return this.radioEvent('vanish', () => this.peripheral.vanish(ms));
  }

  onAck(listener: (seq: bigint, raw: Uint8Array) => void): void {
    this.ackListeners.push(listener);
  }

  waitForRoom(signal?: AbortSignal): Promise<boolean> {
    return this.waitFor(() => this.backlog < this.highWater, signal);
  }

  idle(signal?: AbortSignal): Promise<boolean> {
    return this.waitFor(() => this.backlog === 0, signal);
  }

  // ---------------------------------------------------------------- GattServer (the simulated BlueZ calls these)

  readInfo(): Uint8Array {
    return this.info;
  }

  centralConnected(mtu: number): void {
    this.isConnected = true;
    this.opened = false;
    this.dropping = false;
    this.mtu = mtu;
    this.counter = 0;
    this.current = undefined;
    this.framesStarted = 0;
    this.framesAckedHere = 0;
    this.session.connect();
    this.session.setMtu(mtu);
    this.cursor = this.head;
    this.linkCounters.connects++;
    for (const f of this.reconnectWaiters.splice(0)) f(true);
  }

  centralDisconnected(cause: DisconnectCause): void {
    this.isConnected = false;
    this.opened = false;
    this.dropping = false;
    this.current = undefined;
    this.session.disconnect();
    // The central hung up after a stream it had to refuse: that stream, and the extras before it, are judged.
    const refused = cause === 'central' && this.outstanding.some((e) => e.settleOn === 'disconnect');
    for (const e of this.outstanding.splice(0)) {
      if (refused) this.linkCounters.extrasAcked++;
      else this.linkCounters.extrasLost++;
      e.settle(refused);
    }
    this.awaitingCover = [];
    this.notify();
  }

  /** @throws GattValueError for a malformed value: nothing changes, the adapter answers the ATT error. */
  writeControl(value: Uint8Array): void {
    const before = this.session.stats.framesAcked;
    const ack = this.session.control(value);
    if (this.isConnected) this.opened = true;
    const removed = this.session.stats.framesAcked - before;
    this.framesAckedHere += removed;
    for (let i = 0; i < removed; i++) {
      const f = this.frames[this.head++]!;
      this.linkCounters.acked++;
      for (const l of this.ackListeners) l(f.seq, f.raw);
    }
    if (this.cursor < this.head) this.cursor = this.head;
    this.compact();
    for (const e of [...this.outstanding]) {
      if (e.coverSeq === undefined || e.coverSeq > ack.seq) continue;
      // An ACK past a stream the gateway should have refused: it went on, so the fault is not confirmed.
      this.settleOutstanding(e, e.settleOn === 'ack');
    }
    this.scheduleRadio();
    this.notify();
  }

  nextNotification(): Uint8Array | undefined {
    if (!this.isConnected || !this.opened || this.dropping) return undefined;
    const cur = this.current;
    if (cur?.kind === 'extra') {
      const v = cur.rest.shift()!;
      if (cur.rest.length === 0) {
        this.current = undefined;
        cur.extra.onOut?.();
      }
      return v;
    }
    if (cur?.kind === 'honest') return this.honest(this.session.nextNotification()!, cur.counter);
    // A frame boundary. A stalled stream is out: silence until the central disconnects.
    if (this.outstanding.some((e) => e.hold)) return undefined;
    const next = this.frames[this.cursor];
    const barrier = this.radio[0];
    const due = (e: Extra): boolean => !next || e.key <= next.seq;
    const extra = this.nextExtra(due);
    if (extra) return this.startExtra(extra);
    if (this.fireRadio()) return undefined;
    // The next honest frame follows every extra due before it (unless that one waits behind a
    // radio fault, and so comes after the frames recorded before the fault), and waits for a
    // radio fault recorded before it.
    if (this.queued.some((e) => due(e) && !(barrier && e.ord > barrier.ord))) return undefined;
    if (barrier && next && next.seq > barrier.afterSeq) return undefined;
    const v = this.session.nextNotification();
    if (!v) return undefined;
    // GattDeviceSession starts a new frame: which one it is follows from the outbox's order.
    const c = this.counter;
    this.counter = (c + 1) % FRAME_COUNTER_MODULO;
    this.framesStarted++;
    const f = this.frames[this.cursor++];
    if (!f || parseFragmentHeader(v)?.index !== 0 || !startsWith(f.raw, v.subarray(4)))
      throw new Error(`BleLink lost track of GattDeviceSession's frames (device ${this.o.deviceId})`);
    for (const e of this.awaitingCover.splice(0)) e.coverSeq = f.seq;
    return this.honest(v, c);
  }

  // ---------------------------------------------------------------- internals

  /** Hands out an extra's first notification; it uses the counter slots its stream takes. */
  private startExtra(extra: Extra): Uint8Array | undefined {
    const s = extra.build(this.counter, this.mtu);
    this.counter = (this.counter + s.countersUsed) % FRAME_COUNTER_MODULO;
    this.linkCounters.extrasSent++;
    this.outstanding.push(extra);
    this.awaitingCover.push(extra);
    const [first, ...rest] = s.notifications;
    if (rest.length > 0) this.current = { kind: 'extra', rest, extra };
    else extra.onOut?.();
    return first;
  }

  /** An honest fragment, renumbered; its L bit ends the frame. */
  private honest(v: Uint8Array, counter: number): Uint8Array {
    this.current = parseFragmentHeader(v)!.last ? undefined : { kind: 'honest', counter };
    return withCounter(v, counter);
  }

  private extra(key: bigint, settleOn: Extra['settleOn'], build: Extra['build'], more: Pick<Extra, 'hold' | 'onOut'> = {}): Promise<boolean> {
    if (this.stopping) return Promise.resolve(false);
    return new Promise((settle) => {
      this.queued.push({ ord: this.ord++, key, build, settleOn, settle, ...more });
      this.peripheral.wake();
    });
  }

  /**
   * An extra's place in seq order: the seq field of its bytes (§3.1, bytes 9-16), which copies
   * share with their original; for bytes too short to carry one, the newest honest frame's.
   */
  private extraKey(bytes: Uint8Array): bigint {
    if (bytes.length < 17) return this.lastEnqueued;
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(9);
  }

  /** The first extra that is due now (`due`), if it may go: not behind a pending radio fault, nor after a stream the gateway must refuse. */
  private nextExtra(due: (e: Extra) => boolean): Extra | undefined {
    const i = this.queued.findIndex(due);
    const e = this.queued[i];
    if (!e) return undefined;
    if (this.radio.length > 0 && this.radio[0]!.ord < e.ord) return undefined;
    if (this.outstanding.some((x) => x.settleOn === 'disconnect')) return undefined;
    this.queued.splice(i, 1);
    return e;
  }

  private settleOutstanding(e: Extra, ok: boolean): void {
    this.outstanding = this.outstanding.filter((x) => x !== e);
    if (ok) this.linkCounters.extrasAcked++;
    else this.linkCounters.extrasLost++;
    e.settle(ok);
    this.peripheral.wake(); // held-back extras may go now
  }

  private radioEvent(kind: RadioEvent['kind'], act: () => void): Promise<boolean> {
    if (this.stopping) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.radio.push({ ord: this.ord++, afterSeq: this.lastEnqueued, kind, act, resolve });
      this.scheduleRadio();
    });
  }

  /** Checks for a radio event outside the pump (after an ACK, on request): at a boundary when nothing is in transmission. */
  private scheduleRadio(): void {
    if (this.radio.length > 0) setImmediate(() => this.fireRadio());
  }

  /**
   * Fires the first radio event if now is a quiet frame boundary: no extra unsettled, and
   * mid-stream when there is a stream (frames recorded before it go out first, and once frames
   * went out, the gateway has acknowledged some on this connection, so that others may still be
   * in flight and come again). The drop itself runs on the next turn of the event loop, not
   * inside the D-Bus call or pump turn that found the boundary.
   */
  private fireRadio(): boolean {
    const ev = this.radio[0];
    if (!ev || !this.isConnected || !this.opened || this.dropping || this.current || this.outstanding.length > 0) return false;
    const next = this.frames[this.cursor];
    if (this.framesStarted > 0 ? this.framesAckedHere === 0 : next !== undefined && next.seq <= ev.afterSeq) return false;
    this.radio.shift();
    this.dropping = true;
    if (ev.kind === 'disconnect') this.linkCounters.abruptDisconnects++;
    this.reconnectWaiters.push(ev.resolve);
    setImmediate(() => ev.act());
    return true;
  }

  /** The outbox drops its oldest frames when full (§8.2): forget them here too. */
  private followDrops(): void {
    while (this.frames.length - this.head > this.o.outbox.size) this.head++;
    if (this.cursor < this.head) this.cursor = this.head;
    this.compact();
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.cursor -= this.head;
      this.head = 0;
    }
  }

  private waitFor(ready: () => boolean, signal?: AbortSignal): Promise<boolean> {
    return this.waiters.wait(ready, signal, this.stopping);
  }

  private notify(): void {
    this.waiters.notify();
  }
}

function startsWith(whole: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > whole.length) return false;
  for (let i = 0; i < prefix.length; i++) if (whole[i] !== prefix[i]) return false;
  return true;
}
