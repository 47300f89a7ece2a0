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
  let rx = new Reassembler();
  const h = {
    dev,
    link,
    /** A central connects and opens the stream with ACK n. */
    connect(ackN = 0n): void {
      expect(p.accept({ drop: (cause) => p.released(cause), wake: () => undefined })).toBe(true);
      rx = new Reassembler();
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
    const skewed = signFrame({ deviceId: t.dev.id, seq: s, timestampMs: BigInt(Date.now() + 600_000), sensor: 1, scale: 0, intervalUs: 1_000_000, samples: Int32Array.from([70]) }, t.dev.keys.secretKey);
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
