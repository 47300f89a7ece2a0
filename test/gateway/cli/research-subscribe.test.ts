/**
 * Where `research subscribe` dials without --mqtt (gateway/cli/research-subscribe.ts,
 * defaultBrokerUrl), and what an mqtts client trusts (gateway/util/tls-trust.ts, trustedCas):
 * an https API means MQTT over TLS; the gateway running on --dataDir advertises its listeners;
 * a `ca` list, once there is one, keeps the system's roots and NODE_EXTRA_CA_CERTS beside --ca.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { loadConfig } from '../../../gateway/config.js';
import type { RunningGateway } from '../../../gateway/running.js';
import { defaultBrokerUrl } from '../../../gateway/cli/research-subscribe.js';
import { ensureDevCa } from '../../../gateway/tls/dev-ca.js';
import { trustCaFile, trustedCas } from '../../../gateway/util/tls-trust.js';

const cfg = loadConfig({ env: {}, flags: {} });
const running = (o: Partial<RunningGateway>): RunningGateway => ({
  pid: 1,
  gatewayId: 'gw-1',
  influxUrl: 'http://127.0.0.1:8086',
  httpUrl: 'https://127.0.0.1:9443',
  mqttPort: 11883,
  ...o,
});

describe('the broker of research subscribe without --mqtt', () => {
  it("is the running gateway's TLS listener when its API is https, on the API's host", () => {
    expect(defaultBrokerUrl('https://127.0.0.1:9443', cfg, running({ mqttTlsPort: 18883 }))).toBe('mqtts://127.0.0.1:18883');
    expect(defaultBrokerUrl('https://localhost:9443', cfg, running({ httpUrl: 'https://localhost:9443/', mqttTlsPort: 18883 }))).toBe(
      'mqtts://localhost:18883',
    );
  });

  it("is the running gateway's plain loopback listener when its API is http, or it runs no TLS listener", () => {
    expect(defaultBrokerUrl('http://127.0.0.1:9080', cfg, running({ httpUrl: 'http://127.0.0.1:9080', mqttTlsPort: 18883 }))).toBe('mqtt://127.0.0.1:11883');
    expect(defaultBrokerUrl('https://127.0.0.1:9443', cfg, running({}))).toBe('mqtt://127.0.0.1:11883');
  });

  it("for another gateway's https API is mqtts on that host at mqtt.tls.port (8883 unless configured)", () => {
    expect(cfg.mqtt.tls.port).toBe(8883);
    expect(defaultBrokerUrl('https://gw.ward3.example:8080', cfg, undefined)).toBe('mqtts://gw.ward3.example:8883');
    expect(defaultBrokerUrl('https://gw.ward3.example:8080', cfg, running({ mqttTlsPort: 18883 }))).toBe('mqtts://gw.ward3.example:8883');
    const other = loadConfig({ env: {}, flags: { 'mqtt.tls.port': '9883' } });
    expect(defaultBrokerUrl('https://[::1]:8080', other, undefined)).toBe('mqtts://[::1]:9883');
  });

  it("for an http API without a running gateway is the configuration's plain listener", () => {
    expect(defaultBrokerUrl('http://127.0.0.1:8080', cfg, undefined)).toBe(`mqtt://${cfg.mqtt.host}:${cfg.mqtt.port}`);
  });
});

describe('what an mqtts client trusts', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vp-trusted-cas-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is Node's default list (no ca option) until --ca names a file, then the roots, NODE_EXTRA_CA_CERTS and the file", () => {
    expect(trustedCas()).toBeUndefined();
    const ca = ensureDevCa(join(dir, 'ca'));
    const extra = ensureDevCa(join(dir, 'extra'));
    const saved = process.env.NODE_EXTRA_CA_CERTS;
    process.env.NODE_EXTRA_CA_CERTS = extra.caCert;
    try {
      trustCaFile(ca.caCert);
      const list = trustedCas()!;
      const pemOf = (p: string): string => readFileSync(p, 'utf8').trim();
      expect(list).toEqual([...rootCertificates, pemOf(extra.caCert), pemOf(ca.caCert)]);
      trustCaFile(ca.caCert); // the same file twice adds nothing
      expect(trustedCas()).toHaveLength(list.length);
    } finally {
      if (saved === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
      else process.env.NODE_EXTRA_CA_CERTS = saved;
    }
  });
});
