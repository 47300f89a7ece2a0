/**
 * BleLink's stream, without D-Bus: the peripheral's GATT server driven as the simulated adapter
 * drives it (accept, writeControl, nextNotification, released), and a reassembler as the gateway.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { signFrame } from '../../firmware-proto/device.js';
import { Reassembler } from '../../firmware-proto/fragment.js';
import { encodeAck } from '../../firmware-proto/gatt.js';
import { Peripheral, type PeripheralOptions } from '../../device-sim/bluez/radio.js';
import type { SimulatedBluez } from '../../device-sim/bluez/service.js';
import { BleLink } from '../../device-sim/ble-link.js';
import { heartRate, testDevice } from '../support/devices.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function harness(name: string) {
  const dev = testDevice(name);
  // The adapter's part is played here: only the peripheral is needed.
  const bluez = { addPeripheral: (o: PeripheralOptions) => new Peripheral(o) } as unknown as SimulatedBluez;
  const link = new BleLink({ bluez, deviceId: dev.id, publicKey: dev.keys.publicKey, outbox: dev.core.outbox });
  const p = link.peripheral;
  let clock = 1_700_000_000_000;
  // The gateway's clock, moved only by `silence`: nothing here stalls by accident.
  let rxNow = 0;
  const newRx = (): Reassembler => new Reassembler({ stallMs: 2_000, now: () => rxNow });
  let rx = newRx();
  const h = {
    dev,
    link,
    /** A central connects and opens the stream with ACK n. */
    connect(ackN = 0n): void {
      expect(p.accept({ drop: (cause) => p.released(cause), wake: () => undefined })).toBe(true);
      rx = newRx();
      link.writeControl(encodeAck(ackN));
    },
    ack(n: bigint): void {
      link.writeControl(encodeAck(n));
    },
    hangUp(): void {
      p.released('central');
    },
    record(): { seq: bigint; raw: Uint8Array } {
      const f = dev.core.record(heartRate(clock, [60, 61, 62, 63, 64]));
      clock += 5000;
      link.enqueueFrame(f.seq, f.raw);
      return f;
    },
    /** The gateway's reassembler of this connection. */
    get rx(): Reassembler {
      return rx;
    },
    /** `ms` pass with no notification; then the gateway's stall timer looks (§10.6 rule 0): the reason it refused, if any. */
    silence(ms: number): string | undefined {
      rxNow += ms;
      return rx.expire()?.reason;
    },
    /** Every notification available now, reassembled: frames in order, and the fragment rejections. */
    pull(): { frames: { bytes: string; retransmit: boolean }[]; rejections: string[] } {
      const frames: { bytes: string; retransmit: boolean }[] = [];
      const rejections: string[] = [];
      for (let v = link.nextNotification(); v; v = link.nextNotification()) {
        const verdict = rx.push(v);
        rejections.push(...verdict.rejections.map((r) => r.reason));
        if (verdict.status === 'frame') frames.push({ bytes: hex(verdict.frame), retransmit: verdict.retransmit });
      }
      return { frames, rejections };
    },
  };
  link.start();
  return h;
}

describe('BleLink stream order', () => {
  it('sends a copy just before its original, and a skewed frame between its neighbours', async () => {
    const t = harness('link-order');
    t.connect();
    const h1 = t.record();
    // As the wearable does: the skewed frame takes its own seq before the next honest frame.
    const s = t.dev.core.counter.take();
    const skewed = signFrame(
      { deviceId: t.dev.id, seq: s, timestampMs: BigInt(Date.now() + 600_000), sensor: 1, scale: 0, intervalUs: 1_000_000, samples: Int32Array.from([70]) },
      t.dev.keys.secretKey,
    );
    const skew = t.link.sendExtra(skewed);
    const h2 = t.record();
    const tampered = h2.raw.slice();
    tampered[40] = tampered[40]! ^ 1;
    const copy = t.link.sendExtra(tampered);
    const got = t.pull();
    expect(got.frames.map((f) => f.bytes)).toEqual([h1.raw, skewed, tampered, h2.raw].map(hex));
    expect(got.rejections).toEqual([]);
    t.ack(h2.seq);
    expect(await skew).toBe(true);
    expect(await copy).toBe(true);
    expect(t.link.backlog).toBe(0);
  });

  it('loses an extra whose connection drops before an ACK covers it, and never resends it', async () => {
    const t = harness('link-lost');
    t.connect();
    const h = t.record();
    const copy = t.link.sendExtra(h.raw.slice().reverse());
    expect(t.pull().frames).toHaveLength(2);
    t.link.peripheral.dropConnection();
    expect(await copy).toBe(false);
    t.connect();
    const again = t.pull();
    expect(again.frames).toEqual([{ bytes: hex(h.raw), retransmit: true }]);
    expect(t.link.counters).toMatchObject({ extrasSent: 1, extrasLost: 1, retransmitted: 1 });
  });
});

describe('BleLink radio faults', () => {
  it('holds what was recorded after a radio fault until it fires at a quiet boundary', async () => {
    const t = harness('link-barrier');
    t.connect();
    const h1 = t.record();
    const reconnected = t.link.abruptDisconnect();
    const h2 = t.record();
    expect(t.pull().frames.map((f) => f.bytes)).toEqual([hex(h1.raw)]); // h2 waits for the fault
    const dropped = once(t.link.peripheral, 'disconnected');
    t.ack(h1.seq); // the first ACK on this connection: now the drop may come
    expect(await dropped).toEqual(['radio']);
    expect(t.link.connected).toBe(false);
    t.connect(h1.seq);
    expect(await reconnected).toBe(true);
    expect(t.pull().frames.map((f) => f.bytes)).toEqual([hex(h2.raw)]);
    expect(t.link.counters.abruptDisconnects).toBe(1);
  });

  it('does not deadlock when a copy, a radio fault and a bad fragment stream come from one frame', async () => {
    const t = harness('link-combo');
    t.connect();
    // The wearable's order within one frame: the honest frame, its copies, the radio fault, the bad stream.
    const h = t.record();
    const tampered = h.raw.slice();
    tampered[40] = tampered[40]! ^ 1;
    const copy = t.link.sendExtra(tampered);
    const reconnected = t.link.outOfRange(1);
    const bad = t.link.sendBadFragments(h.raw, 'wrong_last');
    expect(t.pull().frames.map((f) => f.bytes)).toEqual([tampered, h.raw].map(hex));
    const dropped = once(t.link.peripheral, 'disconnected');
    const back = new Promise<void>((resolve) => t.link.peripheral.on('range', (inRange) => inRange && resolve()));
    t.ack(h.seq); // covers the copy; the radio fault may fire
    expect(await copy).toBe(true);
    expect(await dropped).toEqual(['radio']);
    await back;
    t.connect(h.seq);
    expect(await reconnected).toBe(true);
    expect(t.pull().rejections).toEqual(['FRAGMENT_LENGTH_MISMATCH']);
    t.hangUp(); // the gateway's answer to a loss
    expect(await bad.sent).toBe(true);
    expect(t.link.backlog).toBe(0);
  });

  it('settles what is pending as not done when the link stops', async () => {
    const t = harness('link-stop');
    const copy = t.link.sendExtra(new Uint8Array(120));
    const dropped = t.link.abruptDisconnect();
    await t.link.stop();
    expect(await copy).toBe(false);
    expect(await dropped).toBe(false);
    expect(await t.link.sendExtra(new Uint8Array(120))).toBe(false);
    expect(t.link.peripheral.advertising).toBe(false);
  });
});

describe('BleLink stall fault', () => {
  it('sends the first fragments of a copy, then holds everything until the central disconnects; nothing honest is lost', async () => {
    const t = harness('link-stall');
    t.connect();
    const h1 = t.record();
    const h2 = t.record();
    // As the wearable does: the stall goes right after the frame it copies is recorded.
    const stall = t.link.stallFrame(h2.raw);
    expect(stall.expected).toBe('FRAGMENT_STALLED');
    const got = t.pull();
    expect(got.frames.map((f) => f.bytes)).toEqual([hex(h1.raw)]); // h2 waits behind its stalled copy
    expect(got.rejections).toEqual([]);
    expect(await stall.holding).toBe(true);
    // At the default ATT_MTU 247 a 117-byte frame fits one notification: the copy is cut at 20 bytes.
    expect(t.rx.inProgress).toMatchObject({ counter: 1, frameLength: h2.raw.length, fragments: 3 });
    // Silence: no honest frame, no extra, no radio fault, whatever comes; ACKs are still taken.
    const h3 = t.record();
    const tampered = h3.raw.slice();
    tampered[40] = tampered[40]! ^ 1;
    const copy = t.link.sendExtra(tampered);
    const dropped = t.link.abruptDisconnect();
    t.ack(h1.seq);
    expect(t.link.counters.acked).toBe(1);
    expect(t.pull()).toEqual({ frames: [], rejections: [] });
    await new Promise((resolve) => setImmediate(resolve)); // a radio fault checks on the next turn
    expect(t.link.connected).toBe(true);
    expect(t.silence(2_000)).toBeUndefined();
    expect(t.silence(1)).toBe('FRAGMENT_STALLED');
    t.hangUp(); // the gateway's answer to the loss
    expect(await stall.sent).toBe(true);
    expect(t.link.counters).toMatchObject({ extrasSent: 1, extrasAcked: 1, extrasLost: 0 });
    // Next connection: everything unacknowledged, in order, the honest h2 first time (R = 0).
    t.connect(h1.seq);
    const again = t.pull();
    expect(again.rejections).toEqual([]);
    expect(again.frames).toEqual([
      { bytes: hex(h2.raw), retransmit: false },
      { bytes: hex(tampered), retransmit: false },
      { bytes: hex(h3.raw), retransmit: false },
    ]);
    const cut = once(t.link.peripheral, 'disconnected');
    t.ack(h3.seq); // covers the copy; now the link is quiet and the radio fault may fire
    expect(await copy).toBe(true);
    expect(await cut).toEqual(['radio']);
    t.connect(h3.seq);
    expect(await dropped).toBe(true);
    expect(t.link.backlog).toBe(0);
  });

  it('settles as lost, never holding, when the link stops before the partial frame went out', async () => {
    const t = harness('link-stall-stop');
    const h = t.record();
    const stall = t.link.stallFrame(h.raw);
    await t.link.stop();
    expect(await stall.sent).toBe(false);
    expect(await stall.holding).toBe(false);
  });

  it('settles as lost when the radio drops the link during the silence, and sends again on the next connection', async () => {
    const t = harness('link-stall-radio');
    t.connect();
    const h = t.record();
    const stall = t.link.stallFrame(h.raw);
    expect(t.pull()).toEqual({ frames: [], rejections: [] });
    expect(await stall.holding).toBe(true);
    t.link.peripheral.dropConnection(); // not the central's answer: the fault is not confirmed
    expect(await stall.sent).toBe(false);
    t.connect();
    expect(t.pull().frames).toEqual([{ bytes: hex(h.raw), retransmit: false }]);
  });
});
