/**
 * Device-side rules (PROTOCOL.md §8): sequence numbers never repeat, across reboots too
 * (§8.1, block reservation), and the outbox keeps every frame until acknowledged, resends
 * after a reconnect, and drops the oldest when full (§8.2).
 */
import { prng } from '../support/prng.js';
import { describe, expect, it } from 'vitest';
import { DeviceCore, MemorySeqStore, Outbox, SequenceCounter, type SeqStore } from '../../firmware-proto/device.js';
import { decodeFrame } from '../../firmware-proto/frame.js';
import { FRAME_TAG, concat, deviceIdFromKey, generateKeys } from '../../firmware-proto/signing.js';
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';

/** A store that records every write, like flash with a write counter. */
class RecordingStore implements SeqStore {
  writes: bigint[] = [];
  constructor(private value?: bigint) {}
  load(): bigint | undefined {
    return this.value;
  }
  save(next: bigint): void {
    this.value = next;
    this.writes.push(next);
  }
}

describe('SequenceCounter (§8.1)', () => {
  it('starts at 1 on a fresh device: 0 is reserved', () => {
    const c = new SequenceCounter(new MemorySeqStore());
    expect(c.peek()).toBe(1n);
    expect([c.take(), c.take(), c.take()]).toEqual([1n, 2n, 3n]);
  });

  it('with a block of 1, persists every number before handing it out and never skips', () => {
    const store = new RecordingStore();
    const c = new SequenceCounter(store, 1n);
    for (let i = 1n; i <= 5n; i++) {
      expect(c.take()).toBe(i);
      expect(store.load()).toBe(i + 1n);
    }
    expect(store.writes).toEqual([2n, 3n, 4n, 5n, 6n]);
    expect(new SequenceCounter(store, 1n).take()).toBe(6n);
  });

  it('with a block of 64, writes once per 64 numbers, and a reboot resumes after the block', () => {
    const store = new RecordingStore();
    const c = new SequenceCounter(store, 64n);
    const taken = Array.from({ length: 10 }, () => c.take());
    expect(taken).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i + 1)));
    expect(store.writes).toEqual([65n]);
    // Reboot: numbers 11…64 were reserved but never used; they are skipped, not reused.
    const after = new SequenceCounter(store, 64n);
    expect(after.take()).toBe(65n);
    expect(store.writes).toEqual([65n, 129n]);
  });

  it('every number handed out is below what the store holds at that moment (persist-before-use)', () => {
    const store = new RecordingStore();
    const c = new SequenceCounter(store, 8n);
    for (let i = 0; i < 100; i++) {
      const n = c.take();
      expect(n).toBeLessThan(store.load()!);
    }
  });

  it('never reuses a number across many simulated reboots at random points', () => {
    const rnd = prng(0x5eed).next;
    const store = new MemorySeqStore();
    const seen: bigint[] = [];
    let reboots = 0;
    for (let boot = 0; boot < 200; boot++) {
      const block = BigInt(1 + Math.floor(rnd() * 100)); // firmware may change its block size across updates
      const c = new SequenceCounter(store, block);
      const n = Math.floor(rnd() * 300); // power is cut after n frames (possibly 0)
      for (let i = 0; i < n; i++) seen.push(c.take());
      reboots++;
    }
    expect(reboots).toBe(200);
    for (let i = 1; i < seen.length; i++) expect(seen[i]! > seen[i - 1]!).toBe(true);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen[0]).toBe(1n);
  });

  it('hands out nothing that is not persisted, even after a failed flash write', () => {
    let fail = true;
    let saved: bigint | undefined;
    const store: SeqStore = {
      load: () => saved,
      save: (next) => {
        if (fail) throw new Error('flash write failed');
        saved = next;
      },
    };
    const c = new SequenceCounter(store, 16n);
    expect(() => c.take()).toThrow('flash write failed');
    expect(c.peek()).toBe(1n);
    fail = false;
    // The firmware caught the error and carries on: the next number must still be covered by
    // a reservation that reached the store, or a reboot would hand it out again.
    const n = c.take();
    expect(n).toBe(1n);
    expect(saved).toBeDefined();
    expect(saved! > n).toBe(true);
    expect(new SequenceCounter(store, 16n).take() > n).toBe(true);
  });

  it('refuses a block smaller than 1', () => {
    expect(() => new SequenceCounter(new MemorySeqStore(), 0n)).toThrow(RangeError);
  });
});

const frame = (n: number): Uint8Array => new Uint8Array(100).fill(n & 0xff);

describe('Outbox (§8.2)', () => {
  it('keeps frames until acknowledged, one at a time (MQTT PUBACK)', () => {
    const o = new Outbox();
    for (let s = 1n; s <= 3n; s++) o.push(s, frame(Number(s)));
    expect(o.size).toBe(3);
    expect(o.byteSize).toBe(300);
    expect(o.ack(2n)).toBe(true);
    expect(o.ack(2n)).toBe(false); // a second PUBACK for the same frame changes nothing
    expect(o.ack(99n)).toBe(false);
    expect(o.unacked().map((e) => e.seq)).toEqual([1n, 3n]);
    expect(o.byteSize).toBe(200);
  });

  it('acknowledges cumulatively up to a sequence number (BLE control characteristic)', () => {
    const o = new Outbox();
    for (const s of [1n, 2n, 3n, 5n, 8n]) o.push(s, frame(Number(s)));
    expect(o.ackUpTo(4n)).toBe(3);
    expect(o.unacked().map((e) => e.seq)).toEqual([5n, 8n]);
    expect(o.ackUpTo(4n)).toBe(0);
    expect(o.ackUpTo(8n)).toBe(2);
    expect(o.size).toBe(0);
    expect(o.byteSize).toBe(0);
  });

  it('drops the oldest frames when full, counts them, and keeps the newest', () => {
    const o = new Outbox(350);
    for (let s = 1n; s <= 5n; s++) o.push(s, frame(Number(s)));
    expect(o.unacked().map((e) => e.seq)).toEqual([3n, 4n, 5n]);
    expect(o.dropped).toBe(2);
    expect(o.byteSize).toBe(300);
    expect(o.byteSize).toBeLessThanOrEqual(o.maxBytes);
  });

  it('keeps a single frame even when it alone is larger than the buffer', () => {
    const o = new Outbox(50);
    o.push(1n, frame(1));
    expect(o.size).toBe(1);
    o.push(2n, frame(2));
    expect(o.unacked().map((e) => e.seq)).toEqual([2n]);
    expect(o.dropped).toBe(1);
  });

  it('marks frames sent; after a reconnect every unacknowledged frame is resent oldest first, sent ones as retransmissions', () => {
    const o = new Outbox();
    for (let s = 1n; s <= 4n; s++) o.push(s, frame(Number(s)));
    expect(o.unsent().map((e) => e.seq)).toEqual([1n, 2n, 3n, 4n]);
    o.markSent(1n);
    o.markSent(2n);
    o.markSent(3n);
    o.markSent(77n); // unknown: ignored
    expect(o.unsent().map((e) => e.seq)).toEqual([4n]);
    o.ack(1n);
    // Connection lost before 2 and 3 were acknowledged, and before 4 was sent at all.
    const resend = o.unacked();
    expect(resend.map((e) => [e.seq, e.sent])).toEqual([
      [2n, true], // DUP = 1 (§6.3)
      [3n, true],
      [4n, false], // first transmission: DUP = 0
    ]);
    expect(resend.map((e) => e.raw)).toEqual([frame(2), frame(3), frame(4)]);
  });
});

describe('DeviceCore', () => {
  const keys = generateKeys(new Uint8Array(32).fill(7));
  const deviceId = deviceIdFromKey(keys.publicKey);
  const key = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), keys.publicKey]), format: 'der', type: 'spki' });
  const m = { timestampMs: 1_700_000_000_000n, sensor: 1, scale: 0, intervalUs: 1_000_000, samples: Int32Array.of(70, 71, 72) };

  it('numbers, signs and keeps each measurement; the frames decode and verify under node:crypto', () => {
    const core = new DeviceCore(deviceId, keys.secretKey, new SequenceCounter(new MemorySeqStore(), 16n));
    const a = core.record(m);
    const b = core.record({ ...m, timestampMs: m.timestampMs + 3000n });
    expect([a.seq, b.seq]).toEqual([1n, 2n]);
    for (const r of [a, b]) {
      const f = decodeFrame(r.raw);
      expect(f.deviceId).toBe(deviceId);
      expect(f.seq).toBe(r.seq);
      expect(cryptoVerify(null, concat(FRAME_TAG, f.body), key, f.signature)).toBe(true);
    }
    expect(core.outbox.unacked().map((e) => e.seq)).toEqual([1n, 2n]);
  });

  it('never signs two frames with one sequence number across a reboot', () => {
    const store = new MemorySeqStore();
    const before = new DeviceCore(deviceId, keys.secretKey, new SequenceCounter(store, 16n));
    const s1 = [before.record(m).seq, before.record(m).seq, before.record(m).seq];
    const after = new DeviceCore(deviceId, keys.secretKey, new SequenceCounter(store, 16n));
    const s2 = [after.record(m).seq, after.record(m).seq];
    expect(s1).toEqual([1n, 2n, 3n]);
    expect(s2).toEqual([17n, 18n]);
  });
});
