/**
 * The hospital broker's uplink accounts (gateway/fleet/broker.ts) against a real Mosquitto 2
 * with the dynamic-security plugin, provisioned through `vitalproof broker` (the real CLI code)
 * and checked with MQTT 5 clients: a gateway publishes under its own prefix only (PUBACK
 * reason 0x87 elsewhere, and nobody receives it), other accounts cannot publish or subscribe
 * there, and hub instances receive through a shared subscription.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerCommand } from '../../../gateway/cli/broker.js';
import { DynsecClient, DynsecError } from '../../../gateway/fleet/dynsec.js';
import { gatewayAcls, gatewayRole } from '../../../gateway/fleet/broker.js';
import { useMosquitto } from '../../support/mosquitto.js';

const broker = useMosquitto();
let dir: string;
const clients: MqttClient[] = [];

/** Runs `vitalproof broker …` against the test broker; resolves with the exit code and what it printed. */
async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const env = { VP_BROKER_URL: broker.handle.url, VP_BROKER_ADMIN_USER: broker.handle.admin.username, VP_BROKER_ADMIN_PASSWORD: broker.handle.admin.password };
  const code = await brokerCommand(argv, { out: (l) => out.push(l), err: (l) => err.push(l) }, env);
  return { code, out, err };
}

function passwordFile(name: string, password: string): string {
  const f = join(dir, name);
  writeFileSync(f, `${password}\n`, { mode: 0o600 });
  return f;
}

async function client(username: string, password: string, o: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectAsync(broker.handle.url, { username, password, protocolVersion: 5, reconnectPeriod: 0, ...o }, false);
  clients.push(c);
  return c;
}

/** Messages a client receives, and a promise for the n-th. */
function inbox(c: MqttClient): { got: { topic: string; payload: string }[]; count(n: number): Promise<void> } {
  const got: { topic: string; payload: string }[] = [];
  const waiters: { n: number; res: () => void }[] = [];
  c.on('message', (topic, payload) => {
    got.push({ topic, payload: payload.toString() });
    for (const w of waiters.filter((x) => got.length >= x.n)) w.res();
  });
  return { got, count: (n) => (got.length >= n ? Promise.resolve() : new Promise((res) => waiters.push({ n, res }))) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-dynsec-'));
  expect((await cli('init')).code).toBe(0);
  for (const gw of ['gw-a', 'gw-b']) expect((await cli('add-gateway', gw, '--password-file', passwordFile(gw, `pw-${gw}-0123456789`))).code).toBe(0);
  for (const hub of ['h1', 'h2']) expect((await cli('add-hub', hub, '--password-file', passwordFile(hub, `pw-${hub}-0123456789`))).code).toBe(0);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  rmSync(dir, { recursive: true, force: true });
});

describe('broker accounts for the uplink', () => {
  it('gives each gateway a role that may publish under its own prefix and nothing else', async () => {
    const ds = await DynsecClient.connect({ url: broker.handle.url, ...broker.handle.admin });
    try {
      const role = await ds.getRole(gatewayRole('gw-a'));
      expect(role?.acls.map(({ acltype, topic, allow }) => ({ acltype, topic, allow }))).toEqual(gatewayAcls('gw-a'));
      expect(await ds.getDefaultACLAccess()).toEqual({ publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: true });
      const accounts = new Map((await ds.listClients()).map((c) => [c.username, (c.roles ?? []).map((r) => r.rolename)]));
      expect(accounts.get('vp-gw-gw-a')).toEqual(['vp-gateway-gw-a']);
      expect(accounts.get('vp-hub-h1')).toEqual(['vp-hub']);
    } finally {
      await ds.close();
    }
  });

  it('refuses a gateway publishing under another gateway prefix (PUBACK 0x87), and no hub receives it', async () => {
    const hub = await client('vp-hub-h1', 'pw-h1-0123456789');
    const box = inbox(hub);
    await hub.subscribeAsync('vitalproof/uplink/#', { qos: 1 });
    const a = await client('vp-gw-gw-a', 'pw-gw-a-0123456789');
    const refused = await a.publishAsync('vitalproof/uplink/gw-b/frames/0011223344556677', 'forged', { qos: 1 }).then(
      () => undefined,
      (e: Error & { code?: number }) => e.code,
    );
    expect(refused).toBe(0x87);
    // Its own prefix is accepted; the hub receives that one, and only that one (in order: the forgery came first).
    await a.publishAsync('vitalproof/uplink/gw-a/frames/0011223344556677', 'own', { qos: 1 });
    await box.count(1);
    expect(box.got).toEqual([{ topic: 'vitalproof/uplink/gw-a/frames/0011223344556677', payload: 'own' }]);
    // A gateway cannot read the uplink either.
    const sub = await a.subscribeAsync('vitalproof/uplink/#', { qos: 1 }).then(
      (g) => g[0]?.qos,
      (e: { packet?: { granted?: number[] } }) => e.packet?.granted?.[0],
    );
    expect(sub).toBe(0x87);
  });

  it('lets an account without a VitalProof role neither publish nor subscribe there', async () => {
    const ds = await DynsecClient.connect({ url: broker.handle.url, ...broker.handle.admin });
    await ds.createClient('researcher-1', 'pw-researcher-0123');
    await ds.close();
    const r = await client('researcher-1', 'pw-researcher-0123');
    const pub = await r.publishAsync('vitalproof/uplink/gw-a/status', 'x', { qos: 1 }).then(
      () => undefined,
      (e: Error & { code?: number }) => e.code,
    );
    expect(pub).toBe(0x87);
    const sub = await r.subscribeAsync('vitalproof/uplink/#', { qos: 1 }).then(
      (g) => g[0]?.qos,
      (e: { packet?: { granted?: number[] } }) => e.packet?.granted?.[0],
    );
    expect(sub).toBe(0x87);
  });

  it('lets hub instances share their login state under vitalproof/hub/#, and no gateway touch it', async () => {
    const h1 = await client('vp-hub-h1', 'pw-h1-0123456789');
    const h2 = await client('vp-hub-h2', 'pw-h2-0123456789', { clientId: 'vp-hub-h2-auth-test' });
    const box = inbox(h2);
    expect((await h2.subscribeAsync('vitalproof/hub/+/auth/#', { qos: 1 }))[0]?.qos).toBe(1);
    const a = await client('vp-gw-gw-a', 'pw-gw-a-0123456789');
    const forged = await a.publishAsync('vitalproof/hub/hub/auth/ended/00', 'forged', { qos: 1 }).then(
      () => undefined,
      (e: Error & { code?: number }) => e.code,
    );
    expect(forged).toBe(0x87);
    await h1.publishAsync('vitalproof/hub/hub/auth/ended/01', 'logout', { qos: 1, retain: true });
    await box.count(1);
    expect(box.got).toEqual([{ topic: 'vitalproof/hub/hub/auth/ended/01', payload: 'logout' }]);
    const sub = await a.subscribeAsync('vitalproof/hub/#', { qos: 1 }).then(
      (g) => g[0]?.qos,
      (e: { packet?: { granted?: number[] } }) => e.packet?.granted?.[0],
    );
    expect(sub).toBe(0x87);
    await h1.publishAsync('vitalproof/hub/hub/auth/ended/01', '', { qos: 1, retain: true });
  });

  it('splits a shared subscription across hub instances: each message goes to one of them', async () => {
    const h1 = await client('vp-hub-h1', 'pw-h1-0123456789');
    const h2 = await client('vp-hub-h2', 'pw-h2-0123456789');
    const got: string[] = [];
    const per = [0, 0];
    let allIn!: () => void;
    const six = new Promise<void>((res) => (allIn = res));
    [h1, h2].forEach((h, i) =>
      h.on('message', (_t, p) => {
        got.push(p.toString());
        per[i]!++;
        if (got.length === 6) allIn();
      }),
    );
    for (const h of [h1, h2]) expect((await h.subscribeAsync('$share/hubs/vitalproof/uplink/+/anchors', { qos: 1 }))[0]?.qos).toBe(1);
    const b = await client('vp-gw-gw-b', 'pw-gw-b-0123456789');
    for (let i = 0; i < 6; i++) await b.publishAsync('vitalproof/uplink/gw-b/anchors', `a${i}`, { qos: 1 });
    await six;
    expect(got.sort()).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'a5']);
    expect(per[0]).toBeGreaterThan(0);
    expect(per[1]).toBeGreaterThan(0);
  });

  it('disables a gateway: its account can no longer connect', async () => {
    expect((await cli('disable-gateway', 'gw-b')).code).toBe(0);
    const refused = await connectAsync(
      broker.handle.url,
      { username: 'vp-gw-gw-b', password: 'pw-gw-b-0123456789', protocolVersion: 5, reconnectPeriod: 0 },
      false,
    ).then(
      async (c) => {
        await c.endAsync(true);
        return undefined;
      },
      (e: Error & { code?: number }) => e.code,
    );
    expect([0x86, 0x87]).toContain(refused);
  });

  it('says what is missing before connecting, and reports refused admin credentials with their code', async () => {
    const io = { out: (): void => undefined, err: (l: string): number => errs.push(l) };
    const errs: string[] = [];
    await expect(brokerCommand(['init'], io, { VP_BROKER_URL: broker.handle.url, VP_BROKER_ADMIN_USER: 'vp-admin' })).rejects.toThrow(/admin-password-file/);
    await expect(brokerCommand(['add-hub', 'h3'], io, { VP_BROKER_URL: broker.handle.url })).rejects.toThrow(/--password-file F is needed/);
    const env = { VP_BROKER_URL: broker.handle.url, VP_BROKER_ADMIN_USER: broker.handle.admin.username, VP_BROKER_ADMIN_PASSWORD: 'not-the-password' };
    expect(await brokerCommand(['list'], io, env)).toBe(1);
    expect(errs.join('\n')).toMatch(/^refused: DYNSEC_CONNECT_FAILED/);
    expect(errs.join('\n')).not.toContain('not-the-password');
  });

  it('refuses a gateway id that could carry a wildcard before it reaches the broker, and says what the broker refused', async () => {
    await expect(cli('add-gateway', 'gw/+', '--password-file', passwordFile('x', 'pw-x-0123456789'))).rejects.toThrow(/gateway id must be 1-64/);
    await expect(cli('add-gateway', '#', '--password-file', passwordFile('y', 'pw-y-0123456789'))).rejects.toThrow(/gateway id must be 1-64/);
    const ds = await DynsecClient.connect({ url: broker.handle.url, ...broker.handle.admin });
    try {
      const e = await ds.addClientRole('nobody', 'vp-hub').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DynsecError);
      expect(e).toMatchObject({ code: 'DYNSEC_COMMAND_FAILED', detail: { command: 'addClientRole', error: 'Client not found' } });
    } finally {
      await ds.close();
    }
  });
});
