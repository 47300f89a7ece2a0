import { describe, expect, it } from 'vitest';
import { DeviceSequencer } from '../../../gateway/hub/sequencer.js';

interface Item {
  device: string;
  seq: bigint;
  via: string;
}

function setup(o: { holdMs?: number; maxHeldPerDevice?: number; maxDevices?: number } = {}) {
  let now = 1_000;
  const out: Item[] = [];
  const s = new DeviceSequencer<Item>({ release: (i) => out.push(i), now: () => now, ...o });
  const offer = (device: string, seqs: number[], via = 'a'): void => {
    for (const n of seqs) s.offer({ device, seq: BigInt(n), via });
  };
  const seqs = (device: string): number[] => out.filter((i) => i.device === device).map((i) => Number(i.seq));
  return { s, out, offer, seqs, advance: (ms: number) => (now += ms), at: () => now };
}

describe('DeviceSequencer', () => {
  it('releases in-order frames at once, and a frame two gateways both accepted once', () => {
    const { s, offer, seqs } = setup();
    offer('d1', [1, 2, 3], 'gw-a');
    offer('d1', [3], 'gw-b'); // the resend gw-b accepted too
    offer('d1', [4, 5], 'gw-b');
    expect(seqs('d1')).toEqual([1, 2, 3, 4, 5]);
    expect(s.stats()).toMatchObject({ released: 5, duplicates: 1, late: 0, held: 0 });
  });

  it("holds a moved wearable's frames from the new gateway until the old gateway's last ones arrive", () => {
    const { s, offer, seqs } = setup();
    offer('d1', [10, 11], 'gw-a');
    offer('d1', [14, 15], 'gw-b'); // gw-a's 12 and 13 are still on their way
    expect(seqs('d1')).toEqual([10, 11]);
    expect(s.stats().held).toBe(2);
    offer('d1', [12, 13], 'gw-a');
    expect(seqs('d1')).toEqual([10, 11, 12, 13, 14, 15]);
    expect(s.stats()).toMatchObject({ held: 0, holesSkipped: 0, duplicates: 0 });
  });

  it('gives a hole up after holdMs, releasing in order, and counts a frame of it arriving later as late', () => {
    const { s, offer, seqs, advance } = setup({ holdMs: 2000 });
    offer('d1', [1, 2, 4, 6, 5]);
    expect(seqs('d1')).toEqual([1, 2]);
    advance(1999);
    s.tick();
    expect(seqs('d1')).toEqual([1, 2]);
    advance(1);
    s.tick();
    expect(seqs('d1')).toEqual([1, 2, 4, 5, 6]);
    offer('d1', [3, 6]);
    expect(seqs('d1')).toEqual([1, 2, 4, 5, 6]);
    expect(s.stats()).toMatchObject({ released: 5, late: 1, duplicates: 1, holesSkipped: 1, held: 0 });
  });

  it('keeps devices apart, and bounds what one device may hold', () => {
    const { s, offer, seqs } = setup({ maxHeldPerDevice: 3 });
    offer('d1', [1]);
    offer('d2', [7, 9]);
    offer('d1', [3, 4, 5]);
    expect(seqs('d1')).toEqual([1]);
    offer('d1', [6]); // a fourth held frame: the oldest hole (2) is given up
    expect(seqs('d1')).toEqual([1, 3, 4, 5, 6]);
    expect(seqs('d2')).toEqual([7]);
    s.flush();
    expect(seqs('d2')).toEqual([7, 9]);
    expect(s.stats().held).toBe(0);
  });

  it('forgets the least recently heard device beyond maxDevices, releasing what it held first', () => {
    const { s, offer, seqs } = setup({ maxDevices: 2 });
    offer('d1', [1, 3]);
    offer('d2', [1]);
    offer('d3', [1]);
    expect(seqs('d1')).toEqual([1, 3]);
    expect(s.stats().devices).toBe(2);
    expect(() => new DeviceSequencer({ release: () => undefined, holdMs: -1 })).toThrow(TypeError);
  });
});
