/**
 * What every DeviceRegistry (gateway/registry/registry.ts) promises, as one suite that each
 * implementation runs against its real backing store: the registry file
 * (test/gateway/registry/file-registry.test.ts) and the DeviceRegistry contract on a real anvil
 * (test/gateway/registry/chain-registry.test.ts).
 *
 *   enrol, get, list       an enrolled device is served with its key, pseudonym and sensors;
 *                          enrolling it again is `unchanged`
 *   refusals               entries that break the rules of checkEnrolment (the key rule of
 *                          PROTOCOL.md §2.2 among them) are refused with their reason, and served by none
 *   revoke                 the record carries revokedAtMs, 'revoked' is emitted once, and the
 *                          first time stays; an unknown device cannot be revoked
 *   following              a registry that follows the store sees another registry's
 *                          enrolment and revocation ('changed', 'revoked')
 *   key rule in the store  a key put into the store past enrol (a hand-edited file, a direct
 *                          contract call) is never served, and is listed by refusedKeys()
 *   persistence            what a registry wrote is served by the next one opened on the store
 *
 * Synchronisation is by the registry's own events ('changed') or its sync(), never by sleeping.
 *
 * @example
 *   deviceRegistrySuite('FileRegistry', { newStore, open: (dir, o) => new FileRegistry(join(dir, 'registry.json'), { watch: o.follow }), plant });
 */
import { afterEach, describe, expect, it } from 'vitest';
import { deviceIdFromKey, type KeyProblem } from '../../firmware-proto/signing.js';
import type { DeviceRecord, DeviceRegistry, EnrolmentEntry } from '../../gateway/registry/registry.js';
import { testDevice } from './devices.js';

/** A registry as openRegistry (gateway/registry/open.ts) returns it: sync() where the store is remote. */
export type OpenedRegistry = DeviceRegistry & { sync?: () => Promise<void> };

export interface DeviceRegistryFactory<S> {
  /** A new, empty backing store for one test (a registry file's folder; a fresh contract and data dir). */
  newStore(): Promise<S>;
  /**
   * A registry on `store`, allowed to enrol and revoke. `follow`: it follows what other
   * registries write to the store (a gateway); else it reads only at open and in its own calls (a CLI).
   */
  open(store: S, opts: { follow: boolean }): OpenedRegistry;
  /** Puts a device into the store past enrol's checks, as a hand-edited file or a direct contract call would. */
  plant(store: S, entry: EnrolmentEntry): Promise<void>;
}

/** A key that breaks the rule (PROTOCOL.md §2.2): the identity point (firmware-proto/vectors/keys/small-order-identity.json). */
const IDENTITY_KEY = `01${'00'.repeat(31)}`;
const IDENTITY_PROBLEM: KeyProblem = 'SMALL_ORDER';

/** Brings a registry up to date with its store where it has sync() (a remote store). */
async function synced(r: OpenedRegistry): Promise<OpenedRegistry> {
  await r.sync?.();
  return r;
}

/** Resolves when `cond` holds, checked now and after each 'changed' of `r` (the 30 s deadline only makes a failure readable). */
export function until(r: DeviceRegistry, cond: () => boolean, what: string): Promise<void> {
  if (cond()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onChanged = (): void => {
      if (!cond()) return;
      clearTimeout(timer);
      r.off('changed', onChanged);
      resolve();
    };
    // A deadline for a readable failure, not a synchronisation: the event is what is waited for.
    const timer = setTimeout(() => {
      r.off('changed', onChanged);
      reject(new Error(`timed out waiting for ${what}`));
    }, 30_000);
    r.on('changed', onChanged);
  });
}

function expectRecordOf(rec: DeviceRecord | undefined, e: EnrolmentEntry): void {
  expect(rec).toBeDefined();
  expect(rec).toMatchObject({ deviceId: e.deviceId, patient: e.patient, sensors: e.sensors ?? [] });
  expect(Buffer.from(rec!.publicKey).toString('hex')).toBe(e.publicKey);
  expect(Number.isSafeInteger(rec!.enrolledAtMs) && rec!.enrolledAtMs > 0).toBe(true);
}

export function deviceRegistrySuite<S>(name: string, factory: DeviceRegistryFactory<S>): void {
  const opened: DeviceRegistry[] = [];
  const open = (store: S, follow = false): OpenedRegistry => {
    const r = factory.open(store, { follow });
    opened.push(r);
    return r;
  };

  afterEach(async () => {
    for (const r of opened.splice(0)) await r.close();
  });

  describe(`DeviceRegistry: ${name}`, () => {
    it('enrols a device: get() and list() serve its key, pseudonym and sensors; enrolling it again is unchanged', async () => {
      const store = await factory.newStore();
      const r = await synced(open(store));
      const a = testDevice('suite-enrol-a', 'pt-suite-a').enrolment;
      const b = { ...testDevice('suite-enrol-b', 'pt-suite-b').enrolment, sensors: ['heart_rate', 'spo2'] };
      expect(r.get(a.deviceId)).toBeUndefined();
      expect(await r.enrol([a, b])).toEqual({ enrolled: [a.deviceId, b.deviceId], unchanged: [], refused: [] });
      expectRecordOf(r.get(a.deviceId), a);
      expectRecordOf(r.get(b.deviceId), b);
      expect(r.get(a.deviceId)?.revokedAtMs).toBeUndefined();
      expect(
        r
          .list()
          .map((d) => d.deviceId)
          .sort(),
      ).toEqual([a.deviceId, b.deviceId].sort());
      expect(await r.enrol([a])).toEqual({ enrolled: [], unchanged: [a.deviceId], refused: [] });
      expect(r.list()).toHaveLength(2);
    });

    it('refuses entries that break the enrolment rules, the key rule among them, and serves none of them', async () => {
      const store = await factory.newStore();
      const r = await synced(open(store));
      const good = testDevice('suite-refusals-good').enrolment;
      const other = testDevice('suite-refusals-other').enrolment;
      const badKey = { deviceId: deviceIdFromKey(Buffer.from(IDENTITY_KEY, 'hex')), publicKey: IDENTITY_KEY, patient: 'pt-bad-key', sensors: [] };
      const mismatch = { ...good, deviceId: other.deviceId };
      const badPseudonym = { ...testDevice('suite-refusals-name').enrolment, patient: 'Jane Doe' };
      const result = await r.enrol([badKey, mismatch, badPseudonym, good]);
      expect(result.enrolled).toEqual([good.deviceId]);
      expect(result.refused.map((x) => [x.deviceId, x.reason])).toEqual([
        [badKey.deviceId, `KEY_${IDENTITY_PROBLEM}`],
        [other.deviceId, 'DEVICE_ID_MISMATCH'],
        [badPseudonym.deviceId, 'BAD_PSEUDONYM'],
      ]);
      for (const x of result.refused) expect(x.detail).toBeTruthy();
      for (const id of [badKey.deviceId, other.deviceId, badPseudonym.deviceId]) expect(r.get(id)).toBeUndefined();
      expect(r.list().map((d) => d.deviceId)).toEqual([good.deviceId]);
      expect(r.refusedKeys()).toEqual([]); // refused at enrol: never in the store
    });

    it('revokes from a time: the record carries revokedAtMs, revoked is emitted once, and a second revoke keeps the first time', async () => {
      const store = await factory.newStore();
      const r = await synced(open(store));
      const d = testDevice('suite-revoke').enrolment;
      await r.enrol([d]);
      const revoked: DeviceRecord[] = [];
      r.on('revoked', (rec) => revoked.push(rec));
      const at = r.get(d.deviceId)!.enrolledAtMs + 1_000;
      const rec = await r.revoke(d.deviceId, at);
      expect(rec).toMatchObject({ deviceId: d.deviceId, revokedAtMs: at });
      expect(r.get(d.deviceId)?.revokedAtMs).toBe(at);
      expect(r.list().find((x) => x.deviceId === d.deviceId)?.revokedAtMs).toBe(at); // list() keeps revoked devices
      expect(revoked.map((x) => [x.deviceId, x.revokedAtMs])).toEqual([[d.deviceId, at]]);

      expect((await r.revoke(d.deviceId, at + 5_000)).revokedAtMs).toBe(at);
      expect(r.get(d.deviceId)?.revokedAtMs).toBe(at);
      expect(revoked).toHaveLength(1);
    });

    it('refuses to revoke a device it does not know', async () => {
      const store = await factory.newStore();
      const r = await synced(open(store));
      const d = testDevice('suite-revoke-unknown').enrolment;
      await expect(r.revoke(d.deviceId, Date.now())).rejects.toThrow();
      expect(r.get(d.deviceId)).toBeUndefined();
    });

    it("a registry that follows the store sees another registry's enrolment and revocation", async () => {
      const store = await factory.newStore();
      const follower = await synced(open(store, true));
      const writer = await synced(open(store));
      const d = testDevice('suite-follow').enrolment;
      const revoked: DeviceRecord[] = [];
      follower.on('revoked', (rec) => revoked.push(rec));

      await writer.enrol([d]);
      await until(follower, () => follower.get(d.deviceId) !== undefined, 'the follower to see the enrolment');
      expectRecordOf(follower.get(d.deviceId), d);

      const at = writer.get(d.deviceId)!.enrolledAtMs + 1_000;
      await writer.revoke(d.deviceId, at);
      await until(follower, () => follower.get(d.deviceId)?.revokedAtMs !== undefined, 'the follower to see the revocation');
      expect(follower.get(d.deviceId)?.revokedAtMs).toBe(at);
      expect(revoked.map((x) => [x.deviceId, x.revokedAtMs])).toEqual([[d.deviceId, at]]);
    });

    it('never serves a key put into the store past enrol that breaks the rule, and lists it in refusedKeys()', async () => {
      const store = await factory.newStore();
      const good = testDevice('suite-planted-good').enrolment;
      const bad = { deviceId: deviceIdFromKey(Buffer.from(IDENTITY_KEY, 'hex')), publicKey: IDENTITY_KEY, patient: 'pt-planted', sensors: ['heart_rate'] };
      const writer = await synced(open(store));
      await writer.enrol([good]);
      await factory.plant(store, bad);

      const r = await synced(open(store));
      expect(r.get(bad.deviceId)).toBeUndefined();
      expect(r.list().map((x) => x.deviceId)).toEqual([good.deviceId]);
      expect(r.refusedKeys()).toEqual([expect.objectContaining({ deviceId: bad.deviceId, reason: IDENTITY_PROBLEM, publicKey: IDENTITY_KEY })]);
      // Enrolling the same id again does not make it trusted.
      const again = await r.enrol([bad]);
      expect(again.refused.map((x) => x.deviceId)).toEqual([bad.deviceId]);
      expect(r.get(bad.deviceId)).toBeUndefined();
    });

    it('keeps what it holds across close and reopen: the next registry on the store serves it at open', async () => {
      const store = await factory.newStore();
      const first = await synced(open(store));
      const kept = testDevice('suite-persist-kept').enrolment;
      const gone = testDevice('suite-persist-revoked').enrolment;
      await first.enrol([kept, gone]);
      const at = first.get(gone.deviceId)!.enrolledAtMs + 1_000;
      await first.revoke(gone.deviceId, at);
      const before = first.list().map((x) => ({ ...x, publicKey: Buffer.from(x.publicKey).toString('hex') }));
      await first.close();

      const second = open(store); // no sync(): served from what the first one left
      expectRecordOf(second.get(kept.deviceId), kept);
      expect(second.get(gone.deviceId)?.revokedAtMs).toBe(at);
      const after = second.list().map((x) => ({ ...x, publicKey: Buffer.from(x.publicKey).toString('hex') }));
      const byId = (a: { deviceId: string }, b: { deviceId: string }): number => a.deviceId.localeCompare(b.deviceId);
      expect(after.sort(byId)).toEqual(before.sort(byId));
    });
  });
}
