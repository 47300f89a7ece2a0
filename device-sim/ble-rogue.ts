/**
 * A rogue wearable on the simulated BlueZ: it advertises the VitalProof service and answers
 * like any wearable, but its key (from the seed, fleet.ts rogueDevice) was never enrolled. A
 * gateway must read its info, see an unknown id, and never subscribe (PROTOCOL.md §10.3);
 * `peripheral.stats.notifyStarts` tells a test whether it did.
 */
import { sensorByName } from '../firmware-proto/catalogue.js';
import { DeviceCore, MemorySeqStore, SequenceCounter } from '../firmware-proto/device.js';
import type { Peripheral } from './bluez/radio.js';
import type { SimulatedBluez } from './bluez/service.js';
import { BleLink } from './ble-link.js';
import { rogueDevice } from './fleet.js';
import { Patient } from './physiology.js';
import { seedBytes } from './rng.js';

export interface RogueWearable {
  deviceId: string;
  link: BleLink;
  peripheral: Peripheral;
}

/**
 * Puts the n-th rogue device of a seed on the air, advertising, with `frames` signed heart-rate
 * frames (default 3) waiting in its outbox for any central that would subscribe.
 */
export function addRogueWearable(bluez: SimulatedBluez, o: { seed: string; n: number; frames?: number; mtu?: number }): RogueWearable {
  const r = rogueDevice(o.seed, o.n);
  const core = new DeviceCore(r.deviceId, r.keys.secretKey, new SequenceCounter(new MemorySeqStore()));
  const link = new BleLink({ bluez, deviceId: r.deviceId, publicKey: r.keys.publicKey, outbox: core.outbox, ...(o.mtu !== undefined ? { mtu: o.mtu } : {}) });
  const spec = sensorByName('heart_rate');
  const patient = Patient.fromSeed(seedBytes('rogue-patient', o.seed, o.n));
  const frameMs = (spec.defaultSamplesPerFrame * spec.defaultIntervalUs) / 1000;
  const start = Date.now() - 60_000;
  for (let i = 0; i < (o.frames ?? 3); i++) {
    const t = start + i * frameMs;
    const { seq, raw } = core.record({
      timestampMs: BigInt(t),
      sensor: spec.code,
      scale: spec.defaultScale,
      intervalUs: spec.defaultIntervalUs,
      samples: patient.generate(spec, t, spec.defaultSamplesPerFrame),
    });
    link.enqueueFrame(seq, raw);
  }
  link.start();
  return { deviceId: r.deviceId, link, peripheral: link.peripheral };
}
