/**
 * The hub instances' shared login state on a real Mosquitto 2 (gateway/hub/auth-share.ts), with
 * hub accounts provisioned as `vitalproof broker` does: an instance is ready only once it has
 * read the retained state; what one records, the others hear; an instance that starts later
 * (a restart) reads everything still in force; expired events are not kept.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynsecClient } from '../../../gateway/fleet/dynsec.js';
import { addHub, initBroker } from '../../../gateway/fleet/broker.js';
import { SharedAuthState } from '../../../gateway/consent/shared-auth.js';
import { AuthShare } from '../../../gateway/hub/auth-share.js';
import { createLogger } from '../../../gateway/log.js';
import { useMosquitto } from '../../support/mosquitto.js';
import { until } from '../../../scripts/lib/hospital.js';

const broker = useMosquitto();
const links: AuthShare[] = [];

beforeAll(async () => {
  const ds = await DynsecClient.connect({ url: broker.handle.url, ...broker.handle.admin });
  try {
    await initBroker(ds);
    for (const name of ['h1', 'h2', 'h3']) await addHub(ds, name, `pw-${name}-0123456789`);
  } finally {
    await ds.close();
  }
});

afterAll(async () => {
  await Promise.all(links.map((l) => l.stop()));
});

async function instance(name: string): Promise<SharedAuthState> {
  const state = new SharedAuthState();
  const link = new AuthShare({
    url: broker.handle.url,
    username: `vp-hub-${name}`,
    password: `pw-${name}-0123456789`,
    clientId: `vp-hub-${name}-auth`,
    gatewayId: 'hub',
    state,
    log: createLogger('silent'),
  });
  links.push(link);
  await link.start();
  return state;
}

describe('shared login state through the hospital broker', () => {
  it('tells every instance, and a late one reads what is still in force', async () => {
    const [a, b] = await Promise.all([instance('h1'), instance('h2')]);
    expect([a.isReady(), b.isReady()]).toEqual([true, true]);
    const until1h = Date.now() + 3600_000;
    const researcher = '0x70997970c51812dc3a010c7d01b50e0d17dc79c8';
    a.record({ kind: 'nonce', nonce: '6f1c0a3e5b7d9f21c4e6a8b0d2f41357', untilMs: until1h });
    a.record({ kind: 'ended', id: '00112233445566778899aabbccddeeff', untilMs: until1h });
    b.record({ kind: 'ended-all', researcher, beforeMs: Date.now(), untilMs: until1h });
    // Expired already when recorded: nobody keeps it, the broker is not told.
    a.record({ kind: 'nonce', nonce: 'ffffffffffffffffffffffffffffffff', untilMs: Date.now() - 1 });
    await until('b heard a, a heard b', () => (b.nonceUsed('6f1c0a3e5b7d9f21c4e6a8b0d2f41357') && a.stats().endedAll === 1 ? true : undefined), 5000);
    const session = {
      id: '00112233445566778899aabbccddeeff',
      researcher: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC',
      issuedAtMs: Date.now(),
      expiresAtMs: until1h,
    };
    expect(b.sessionEnded(session)).toBe(true);
    expect(
      a.sessionEnded({ ...session, id: 'ffeeddccbbaa99887766554433221100', researcher: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', issuedAtMs: 0 }),
    ).toBe(true);

    // A third instance (or one restarted) reads the retained state before it is ready.
    const c = await instance('h3');
    expect(c.isReady()).toBe(true);
    expect(c.stats()).toMatchObject({ usedNonces: 1, endedSessions: 1, endedAll: 1 });
    expect(c.nonceUsed('ffffffffffffffffffffffffffffffff')).toBe(false);
    expect(
      c
        .events()
        .map((e) => e.kind)
        .sort(),
    ).toEqual(['ended', 'ended-all', 'nonce']);
  });
});
