/** The uplink keys (docs/uplink.md, docs/operations.md) as gateway/config.ts reads them: default, environment, flag, refusals. */
import { describe, expect, it } from 'vitest';
import { ConfigError, envName, loadConfig } from '../../gateway/config.js';

describe('uplink configuration', () => {
  it('is off by default: no URL, no password file needed', () => {
    expect(loadConfig({ env: {} }).uplink).toMatchObject({ url: '', passwordFile: '', inflight: 100, clientId: '', username: '' });
  });

  it('is set by VP_UPLINK_* variables and by flags over them, with paths made absolute', () => {
    expect([envName('uplink.passwordFile'), envName('uplink.tls.ca'), envName('uplink.statusIntervalMs')]).toEqual([
      'VP_UPLINK_PASSWORD_FILE',
      'VP_UPLINK_TLS_CA',
      'VP_UPLINK_STATUS_INTERVAL_MS',
    ]);
    const env = { VP_UPLINK_URL: 'mqtts://broker.hospital.local:8883', VP_UPLINK_PASSWORD_FILE: 'gw.pw', VP_UPLINK_INFLIGHT: '20' };
    const u = loadConfig({ env, flags: { 'uplink.inflight': '50', 'uplink.tls.ca': 'ca.pem' } }).uplink;
    expect(u).toMatchObject({ url: 'mqtts://broker.hospital.local:8883', inflight: 50 });
    expect(u.passwordFile).toMatch(/^\/.*\/gw\.pw$/);
    expect(u.tls.ca).toMatch(/^\/.*\/ca\.pem$/);
  });

  it.each([
    [{ 'uplink.url': 'http://broker:1883', 'uplink.passwordFile': 'p' }, /uplink.url must be an mqtt:\/\/ or mqtts:\/\/ URL/],
    [{ 'uplink.url': 'mqtt://gw:secret@broker:1883', 'uplink.passwordFile': 'p' }, /must not carry user info/],
    [{ 'uplink.url': 'mqtt://broker:1883' }, /needs uplink.passwordFile/],
    [{ 'uplink.url': 'mqtt://broker:1883', 'uplink.passwordFile': 'p', 'uplink.inflight': '0' }, /uplink.inflight must be an integer from 1 to 65535, got 0/],
    [{ 'uplink.url': 'mqtt://broker:1883', 'uplink.passwordFile': 'p', 'uplink.tls.cert': 'c.pem' }, /uplink.tls.cert and uplink.tls.key go together/],
  ])('refuses %j', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError);
    expect(() => loadConfig({ env: {}, flags })).toThrow(message);
  });
});
