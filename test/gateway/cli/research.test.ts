/**
 * The client side of docs/research-api.md, without a gateway: argument parsing (times, metrics),
 * the tables and lines the CLIs print, the export's CSV rows and progress line, the session file
 * (mode 0600), the MQTT password (checked by the gateway's own authenticator), the cross-check of
 * exported readings against signed frames, and the HTTP login against a small server that
 * answers with the gateway's authenticator (gateway/consent/auth.ts) exactly as the page says.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Wallet } from 'ethers';
import { ConfigError } from '../../../gateway/config.js';
import { ResearcherAuthenticator } from '../../../gateway/consent/auth.js';
import { parseMetrics, parseTimeArg } from '../../../gateway/cli/args.js';
import { formatDisclosures, grantRow } from '../../../gateway/cli/consent.js';
import { formatGrantTable, metricNames, ProgressLine } from '../../../gateway/cli/output.js';
import { formatExportProgress } from '../../../gateway/cli/research-export.js';
import { formatDelivery, formatNotice } from '../../../gateway/cli/research-subscribe.js';
import {
  ApiError,
  checkExportAgainstBundles,
  consentedTopic,
  CSV_HEADER,
  csvRows,
  fetchChallenge,
  httpLogin,
  mqttPassword,
  noticeTopic,
  readExportFile,
  SessionStore,
  topicMatches,
  withSession,
  type ApiFrame,
} from '../../../gateway/research-client/index.js';
import { signFrame } from '../../../firmware-proto/device.js';
import { deviceIdFromKey, generateKeys } from '../../../firmware-proto/signing.js';
import type { ProofBundle } from '../../../gateway/proof/bundle.js';

const NOW = Date.parse('2026-05-04T10:00:00.000Z');
const researcher = new Wallet('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');
const other = new Wallet('0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a');

describe('times and metrics on the command line', () => {
  it('reads Unix ms, ISO 8601, now and now plus or minus a duration', () => {
    expect(parseTimeArg('--from', '1795000000000', NOW)).toBe(1795000000000);
    expect(parseTimeArg('--from', '2026-05-04T10:00:00Z', NOW)).toBe(NOW);
    expect(parseTimeArg('--from', '2026-05-04T12:00:00+02:00', NOW)).toBe(NOW);
    expect(parseTimeArg('--from', '2026-05-04T10:00:00.250Z', NOW)).toBe(NOW + 250);
    expect(parseTimeArg('--from', '2026-05-04T10:00', NOW)).toBe(NOW); // no zone: UTC
    expect(parseTimeArg('--from', '2026-05-04', NOW)).toBe(Date.parse('2026-05-04T00:00:00Z'));
    expect(parseTimeArg('--from', 'now', NOW)).toBe(NOW);
    expect(parseTimeArg('--from', 'now-1h', NOW)).toBe(NOW - 3_600_000);
    expect(parseTimeArg('--to', 'now+30d', NOW)).toBe(NOW + 30 * 86_400_000);
    expect(parseTimeArg('--to', '+7d', NOW)).toBe(NOW + 7 * 86_400_000);
    expect(parseTimeArg('--to', '-15m', NOW)).toBe(NOW - 15 * 60_000);
    expect(parseTimeArg('--to', 'now+1.5h', NOW)).toBe(NOW + 5_400_000);
    expect(parseTimeArg('--to', 'now+2w', NOW)).toBe(NOW + 14 * 86_400_000);
    expect(parseTimeArg('--to', 'now+500ms', NOW)).toBe(NOW + 500);
    // now is the whole second, but for an offset in ms
    expect(parseTimeArg('--from', 'now', NOW + 250)).toBe(NOW);
    expect(parseTimeArg('--from', 'now-1h', NOW + 999)).toBe(NOW - 3_600_000);
    expect(parseTimeArg('--from', 'now+500ms', NOW + 250)).toBe(NOW + 750);
  });

  it('refuses anything else as a usage error naming the option', () => {
    for (const bad of ['', 'yesterday', 'now+1y', 'now+', '1h', '2026-13-45T00:00:00Z', '04/05/2026', 'now + 1h', '-1']) {
      expect(() => parseTimeArg('--expires', bad, NOW), bad).toThrow(ConfigError);
    }
    expect(() => parseTimeArg('--expires', 'soon', NOW)).toThrow(/--expires "soon" is not a time/);
  });

  it('reads catalogue sensor names, drops repeats, refuses unknown ones', () => {
    expect(parseMetrics('heart_rate,spo2')).toEqual([
      { name: 'heart_rate', code: 1 },
      { name: 'spo2', code: 2 },
    ]);
    expect(parseMetrics(' spo2 , heart_rate,spo2 ')).toEqual([
      { name: 'spo2', code: 2 },
      { name: 'heart_rate', code: 1 },
    ]);
    expect(() => parseMetrics('heart_rate,pulse')).toThrow(/unknown sensor "pulse"/);
    expect(() => parseMetrics(',')).toThrow(ConfigError);
    expect(metricNames(0b110)).toEqual(['heart_rate', 'spo2']);
    expect(metricNames(1 << 9)).toEqual(['sensor-9']);
  });
});

describe('what the CLIs print', () => {
  const g = {
    patientRef: `0x${'11'.repeat(32)}`,
    purposeRef: `0x${'22'.repeat(32)}`,
    researcher: researcher.address.toLowerCase(),
    sensorMask: 6n,
    dataFromMs: BigInt(NOW - 3_600_000),
    dataToMs: BigInt(NOW),
    expiresAtMs: BigInt(NOW + 86_400_000),
    grantedAtMs: BigInt(NOW - 1000),
    revokedAtMs: 0n,
  };

  it('derives a grant row and its status at a given time', () => {
    expect(grantRow(7n, g, NOW)).toEqual({
      grantId: '7',
      researcher: researcher.address,
      metrics: ['heart_rate', 'spo2'],
      dataFromMs: NOW - 3_600_000,
      dataToMs: NOW,
      expiresAtMs: NOW + 86_400_000,
      purposeRef: g.purposeRef,
      grantedAtMs: NOW - 1000,
      revokedAtMs: null,
      status: 'OK',
    });
    expect(grantRow(7n, g, NOW + 86_400_000).status).toBe('EXPIRED');
    expect(grantRow(7n, { ...g, revokedAtMs: BigInt(NOW + 5000) }, NOW + 86_400_000)).toMatchObject({ status: 'REVOKED', revokedAtMs: NOW + 5000 });
  });

  it('prints grants as an aligned table, and says when there are none', () => {
    const lines = formatGrantTable([grantRow(12n, g, NOW), grantRow(3n, { ...g, revokedAtMs: BigInt(NOW) }, NOW)]);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^grant\s+status\s+researcher\s+metrics\s+data window\s+expires\s+granted$/);
    expect(lines[1]).toMatch(
      /^12\s+OK\s+0x70997970C51812dc3A010C7d01b50e0d17dc79C8\s+heart_rate,spo2\s+2026-05-04T09:00:00Z \.\. 2026-05-04T10:00:00Z\s+2026-05-05T10:00:00Z\s+2026-05-04T09:59:59Z$/,
    );
    expect(lines[2]).toContain('REVOKED 2026-05-04T10:00:00Z');
    expect(lines[1]!.indexOf('0x7099')).toBe(lines[2]!.indexOf('0x7099'));
    expect(formatGrantTable([])).toEqual(['(no grants)']);
  });

  it('prints one line per disclosure with its proof verdict', () => {
    const entry = {
      seq: '4',
      kind: 'live',
      researcher: researcher.address,
      grantId: '7',
      metrics: ['heart_rate', 'spo2'],
      fromMs: NOW,
      toMs: NOW + 4000,
      count: 10,
      firstAtMs: NOW + 1000,
      atMs: NOW + 5000,
      batchSeq: '2',
    };
    const [ok, pending, bad] = formatDisclosures([
      { status: 'anchored', entry, verdict: 'ok' },
      { status: 'pending', entry: { ...entry, seq: '5' }, reason: 'NOT_YET_BATCHED' },
      { status: 'anchored', entry: { ...entry, seq: '6', kind: 'export' }, verdict: 'grant fail GRANT_REVOKED' },
    ]);
    expect(ok).toBe(
      `#4 live   2026-05-04T10:00:01Z..10:00:05Z ${researcher.address} grant 7: 10 heart_rate+spo2 readings recorded 2026-05-04T10:00:00Z..10:00:04Z; anchored in access batch 2, proof verified`,
    );
    expect(pending).toMatch(/#5 .*; pending: NOT_YET_BATCHED$/);
    expect(bad).toMatch(/#6 export .*proof FAILED: grant fail GRANT_REVOKED$/);
    expect(formatDisclosures([])).toEqual(['(no accesses)']);
  });

  it('names topics as the wire contract does, and matches MQTT filters', () => {
    expect(consentedTopic('pt-0042', 'heart_rate')).toBe('vp/consented/pt-0042/heart_rate');
    expect(noticeTopic(researcher.address)).toBe('vp/researcher/0x70997970c51812dc3a010c7d01b50e0d17dc79c8/notices');
    expect(topicMatches('vp/consented/pt-1/+', 'vp/consented/pt-1/spo2')).toBe(true);
    expect(topicMatches('vp/consented/pt-1/+', 'vp/consented/pt-2/spo2')).toBe(false);
    expect(topicMatches('vp/consented/pt-1/heart_rate', 'vp/consented/pt-1/heart_rate')).toBe(true);
    expect(topicMatches('vp/consented/pt-1/heart_rate', 'vp/consented/pt-1/heart_rate/x')).toBe(false);
    expect(topicMatches('vp/#', 'vp/consented/pt-1/spo2')).toBe(true);
  });

  it('prints deliveries and notices readably', () => {
    const d = {
      grantId: '7',
      patient: 'pt-1',
      metric: 'heart_rate',
      deviceId: '00112233aabbccdd',
      seq: '12',
      frameSha256: 'ab'.repeat(32),
      readings: [
        { timeMs: NOW, values: { value: 72 } },
        { timeMs: NOW + 1000, values: { value: 73 } },
      ],
    };
    expect(formatDelivery(d)).toBe('2026-05-04T10:00:00Z..10:00:01Z pt-1 heart_rate device 00112233aabbccdd seq 12 grant 7: 72 73');
    expect(formatNotice({ event: 'subscription_ended', topic: 'vp/consented/pt-1/heart_rate', code: 'REVOKED', grantId: '7', atMs: NOW })).toBe(
      'subscription ended: vp/consented/pt-1/heart_rate: REVOKED (grant 7) at 2026-05-04T10:00:00Z',
    );
  });
});

describe('export files and progress', () => {
  const frame: ApiFrame = {
    metric: 'accelerometer',
    deviceId: '00112233aabbccdd',
    seq: '9',
    frameSha256: 'cd'.repeat(32),
    batch: '3',
    leaf: 4,
    readings: [
      { timeMs: NOW, values: { x: 0.5, y: -1.25, z: 9.81 } },
      { timeMs: NOW + 40, values: { x: 0.5, y: -1.2, z: 9.8 } },
    ],
  };

  it("writes one CSV row per sample and channel, in the API's columns", () => {
    expect(CSV_HEADER).toBe('time_ms,metric,channel,value,device,seq,frame_sha256');
    expect(csvRows(frame)).toEqual([
      `${NOW},accelerometer,x,0.5,00112233aabbccdd,9,${'cd'.repeat(32)}`,
      `${NOW},accelerometer,y,-1.25,00112233aabbccdd,9,${'cd'.repeat(32)}`,
      `${NOW},accelerometer,z,9.81,00112233aabbccdd,9,${'cd'.repeat(32)}`,
      `${NOW + 40},accelerometer,x,0.5,00112233aabbccdd,9,${'cd'.repeat(32)}`,
      `${NOW + 40},accelerometer,y,-1.2,00112233aabbccdd,9,${'cd'.repeat(32)}`,
      `${NOW + 40},accelerometer,z,9.8,00112233aabbccdd,9,${'cd'.repeat(32)}`,
    ]);
  });

  it('reads a CSV export back into frames', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vp-rcli-'));
    try {
      const file = join(dir, 'x.csv');
      writeFileSync(file, `${CSV_HEADER}\n${csvRows(frame).join('\n')}\n`);
      expect(readExportFile(file)).toEqual({ kind: 'csv', frames: [{ ...frame, batch: null, leaf: null }] });
      writeFileSync(file, JSON.stringify({ format: 'vitalproof.research-export', version: 1, frames: [frame] }));
      expect(readExportFile(file)).toEqual({ kind: 'json', frames: [frame] });
      writeFileSync(file, JSON.stringify({ format: 'vitalproof.proof-bundles', version: 1, bundles: [] }));
      expect(readExportFile(file)).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says how far an export is: pages, frames, readings, share of the range, rate', () => {
    const s = {
      grantId: '7',
      pages: 3,
      frames: 2500,
      readings: 12_500,
      proofs: 2400,
      bytes: 3 * 1024 * 1024,
      fromMs: NOW,
      toMs: NOW + 100_000,
      lastMs: NOW + 25_000,
      elapsedMs: 2000,
    };
    expect(formatExportProgress(s)).toBe(
      'exporting grant 7: 3 pages, 2,500 frames, 12,500 readings, 2,400 proofs, 3.0 MB, up to 2026-05-04T10:00:25Z (25 % of the range), 2.0 s, 1,250 frames/s',
    );
    expect(formatExportProgress({ ...s, done: true, proofs: 0, pages: 1, bytes: 2048 })).toBe(
      'exported grant 7: 1 page, 2,500 frames, 12,500 readings, 2.0 kB, 2.0 s, 1,250 frames/s',
    );
  });

  it('redraws one line on a terminal and prints a line every interval otherwise', () => {
    let t = 0;
    const tty: string[] = [];
    const p = new ProgressLine({ isTTY: true, write: (s) => tty.push(s) }, 5000, () => t);
    p.update('a');
    t = 50;
    p.update('b'); // within 100 ms: skipped
    t = 200;
    p.update('c');
    p.finish('done');
    expect(tty).toEqual(['\r\x1b[2Ka', '\r\x1b[2Kc', '\r\x1b[2Kdone\n']);

    const plain: string[] = [];
    t = 0;
    const q = new ProgressLine({ isTTY: false, write: (s) => plain.push(s) }, 5000, () => t);
    q.update('a');
    t = 4999;
    q.update('b');
    t = 5000;
    q.update('c');
    t = 5001;
    q.update('d', true);
    q.finish('done');
    expect(plain).toEqual(['a\n', 'c\n', 'd\n', 'done\n']);
  });

  it('holds exported readings to the signed frames of their bundles', () => {
    const keys = generateKeys(createHash('sha256').update('research-cli-test').digest());
    const deviceId = deviceIdFromKey(keys.publicKey);
    const raw = signFrame(
      { deviceId, seq: 5n, timestampMs: BigInt(NOW), sensor: 2, scale: -1, intervalUs: 1_000_000, samples: Int32Array.of(975, 981, 990) },
      keys.secretKey,
    );
    const sha = createHash('sha256').update(raw).digest('hex');
    const bundle = { frame: { raw: Buffer.from(raw).toString('base64') } } as unknown as ProofBundle;
    const exported: ApiFrame = {
      metric: 'spo2',
      deviceId,
      seq: '5',
      frameSha256: sha,
      batch: '1',
      leaf: 0,
      readings: [
        { timeMs: NOW + 1000, values: { value: 98.1 } },
        { timeMs: NOW + 2000, values: { value: 99 } },
      ],
    };
    expect(checkExportAgainstBundles([exported], [bundle])).toEqual({ frames: 1, readings: 2, matched: 1, unproven: [], mismatched: [] });
    const changed = { ...exported, readings: [{ timeMs: NOW + 1000, values: { value: 98.2 } }] };
    expect(checkExportAgainstBundles([changed], [bundle]).mismatched).toEqual([`${deviceId}/5`]);
    const shifted = { ...exported, readings: [{ timeMs: NOW + 1500, values: { value: 98.1 } }] };
    expect(checkExportAgainstBundles([shifted], [bundle]).mismatched).toHaveLength(1);
    const relabelled = { ...exported, seq: '6' };
    expect(checkExportAgainstBundles([relabelled], [bundle]).mismatched).toHaveLength(1);
    expect(checkExportAgainstBundles([{ ...exported, frameSha256: 'ee'.repeat(32) }], [bundle]).unproven).toEqual([`${deviceId}/5`]);
  });
});

describe('sessions', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vp-sessions-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps one session per gateway and account in a file only its owner reads', () => {
    const store = new SessionStore(join(dir, 'nested', 'sessions.json'));
    expect(store.all()).toEqual([]);
    const s = {
      url: 'http://127.0.0.1:8080',
      address: researcher.address,
      gatewayId: 'gw-a',
      token: 't1',
      expiresAtMs: Date.now() + 3_600_000,
      savedAtMs: Date.now(),
    };
    store.save(s);
    expect(statSync(store.path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'nested')).mode & 0o777).toBe(0o700);
    store.save({ ...s, token: 't2' });
    expect(store.all().map((x) => x.token)).toEqual(['t2']);
    expect(store.find('http://127.0.0.1:8080/')).toMatchObject({ token: 't2' });
    expect(store.find('http://127.0.0.1:8080', researcher.address.toLowerCase())).toMatchObject({ token: 't2' });
    expect(store.find('http://127.0.0.1:8081')).toBeUndefined();
    store.save({ ...s, address: other.address, token: 't3' });
    expect(store.find('http://127.0.0.1:8080')).toBe('ambiguous');
    expect(store.find('http://127.0.0.1:8080', other.address)).toMatchObject({ token: 't3' });
    store.save({ ...s, url: 'http://127.0.0.1:9', expiresAtMs: Date.now() - 1 }); // an ended one is dropped at the next write
    store.remove('http://127.0.0.1:8080', other.address);
    expect(store.all().map((x) => x.token)).toEqual(['t2']);
    writeFileSync(store.path, 'not json');
    expect(() => store.all()).toThrow(/not readable JSON/);
  });

  it("signs an MQTT password that the gateway's authenticator accepts once", () => {
    const auth = new ResearcherAuthenticator({ gatewayId: 'gw-a', now: () => NOW + 5000 });
    const started = auth.startedAtMs;
    const pw = mqttPassword('gw-a', researcher, started + 1000);
    const r = auth.verifyMqttLogin(researcher.address, pw);
    expect(r).toMatchObject({ ok: true, researcher: researcher.address });
    expect(auth.verifyMqttLogin(researcher.address, pw)).toMatchObject({ ok: false, code: 'AUTH_REPLAYED' });
    expect(auth.verifyMqttLogin(researcher.address, mqttPassword('gw-a', researcher, started + 2000))).toMatchObject({ ok: true });
  });
});

describe("HTTP login against the gateway's authenticator", () => {
  let server: Server;
  let base: string;
  let auth: ResearcherAuthenticator;
  let dir: string;
  /** What the fake gateway hands out instead of a challenge, when set. */
  let forgedChallenge: string | undefined;
  let grantsCalls = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vp-login-'));
    auth = new ResearcherAuthenticator({ gatewayId: 'gw-login' });
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const reply = (status: number, doc: unknown): void => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(doc));
        };
        if (req.method === 'POST' && req.url === '/auth/challenge') {
          const { address, purpose } = JSON.parse(body) as { address: string; purpose: 'http' | 'mqtt' };
          return reply(200, { challenge: forgedChallenge ?? auth.issueChallenge(address, purpose).text });
        }
        if (req.method === 'POST' && req.url === '/auth/login') {
          const { challenge, signature } = JSON.parse(body) as { challenge: string; signature: string };
          const r = auth.login({ text: challenge, signature });
          return r.ok
            ? reply(200, { token: r.session.token, address: r.session.researcher, expiresAtMs: r.session.expiresAtMs })
            : reply(401, { error: r.code, message: r.message });
        }
        if (req.url === '/research/grants') {
          grantsCalls++;
          const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
          const s = auth.session(token);
          return s.ok ? reply(200, { grants: [], researcher: s.session.researcher }) : reply(401, { error: s.code, message: s.message });
        }
        reply(404, { error: 'NOT_FOUND', message: req.url });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it("logs in with a gateway-issued challenge and saves the session with the gateway's id", async () => {
    const store = new SessionStore(join(dir, 'a.json'));
    const s = await httpLogin(base, researcher, store);
    expect(s).toMatchObject({ url: base, address: researcher.address, gatewayId: 'gw-login' });
    expect(auth.session(s.token)).toMatchObject({ ok: true });
    expect(JSON.parse(readFileSync(store.path, 'utf8')).sessions[0].token).toBe(s.token);
    const r = await withSession(base, undefined, store, (token) =>
      fetch(`${base}/research/grants`, { headers: { authorization: `Bearer ${token}` } }).then((x) => x.json()),
    );
    expect(r).toEqual({ grants: [], researcher: researcher.address });
  });

  it('signs nothing but a login challenge for its own account and purpose', async () => {
    const store = new SessionStore(join(dir, 'b.json'));
    forgedChallenge = auth.issueChallenge(other.address, 'http').text;
    await expect(httpLogin(base, researcher, store)).rejects.toMatchObject({ code: 'WRONG_CHALLENGE' });
    forgedChallenge = auth.issueChallenge(researcher.address, 'mqtt').text;
    await expect(fetchChallenge(base, researcher.address, 'http')).rejects.toMatchObject({ code: 'WRONG_CHALLENGE' });
    forgedChallenge = 'please sign this transfer';
    await expect(httpLogin(base, researcher, store)).rejects.toMatchObject({ code: 'NOT_A_CHALLENGE' });
    forgedChallenge = undefined;
    expect(store.all()).toEqual([]);
  });

  it('logs in again when the gateway says the session ended, and only with the key', async () => {
    const store = new SessionStore(join(dir, 'c.json'));
    const s = await httpLogin(base, researcher, store);
    auth.logout(s.token);
    const call = (token: string): Promise<unknown> =>
      fetch(`${base}/research/grants`, { headers: { authorization: `Bearer ${token}` } }).then(async (x) => {
        const j = (await x.json()) as { error?: string; message?: string };
        if (!x.ok) throw new ApiError(x.status, j.error!, j.message!, '/research/grants');
        return j;
      });
    await expect(withSession(base, undefined, store, call)).rejects.toMatchObject({ status: 401, code: 'AUTH_UNKNOWN_SESSION' });
    expect(store.all()).toEqual([]); // the dead session is forgotten
    await expect(withSession(base, undefined, store, call)).rejects.toThrow(/no session with .* research login/);
    const s2 = await httpLogin(base, researcher, store);
    auth.logout(s2.token);
    const before = grantsCalls;
    await expect(withSession(base, researcher, store, call)).resolves.toEqual({ grants: [], researcher: researcher.address });
    expect(grantsCalls - before).toBe(2); // refused once, then again with the new session
    expect((store.find(base, researcher.address) as { token: string }).token).not.toBe(s2.token);
  });
});
