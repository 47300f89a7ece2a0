/** The hub's keys (docs/operations.md) as gateway/config.ts reads them, and what `vitalproof hub` refuses to start without. */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, envName, loadConfig } from '../../../gateway/config.js';
import { startHub } from '../../../gateway/hub/hub.js';
import { createLogger } from '../../../gateway/log.js';

describe('hub configuration', () => {
  it('has defaults, VP_HUB_* variables and flags over them', () => {
    expect(loadConfig({ env: {} }).hub).toEqual({ instance: 'hub-1', holdMs: 2000, sessionExpiryS: 3600, authSecretFile: '' });
    expect([envName('hub.instance'), envName('hub.holdMs'), envName('hub.sessionExpiryS'), envName('hub.authSecretFile')]).toEqual([
      'VP_HUB_INSTANCE',
      'VP_HUB_HOLD_MS',
      'VP_HUB_SESSION_EXPIRY_S',
      'VP_HUB_AUTH_SECRET_FILE',
    ]);
    const h = loadConfig({ env: { VP_HUB_INSTANCE: 'hub-7', VP_HUB_HOLD_MS: '500' }, flags: { 'hub.holdMs': '750' } }).hub;
    expect(h).toEqual({ instance: 'hub-7', holdMs: 750, sessionExpiryS: 3600, authSecretFile: '' });
    expect(loadConfig({ env: { VP_HUB_AUTH_SECRET_FILE: 'hub.secret' } }).hub.authSecretFile).toBe(join(process.cwd(), 'hub.secret'));
  });

  it.each([
    [{ 'hub.instance': 'hub/1' }, /hub.instance must be 1-64 characters/],
    [{ 'hub.instance': '' }, /hub.instance must be 1-64 characters/],
    [{ 'hub.holdMs': '-1' }, /hub.holdMs must be an integer >= 0, got -1/],
  ])('refuses %j', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError);
    expect(() => loadConfig({ env: {}, flags })).toThrow(message);
  });

  it.each([
    [{}, /set influx.url/],
    [{ 'influx.url': 'http://127.0.0.1:1' }, /chain.mode must be external, got "embedded"/],
    [{ 'influx.url': 'http://127.0.0.1:1', 'chain.mode': 'external', 'chain.rpcUrl': 'http://127.0.0.1:1', 'chain.keyFile': 'k' }, /set uplink.url/],
  ])('will not start a hub without what it reads: %j', async (flags, message) => {
    const dir = mkdtempSync(join(tmpdir(), 'vp-hub-cfg-'));
    try {
      const cfg = loadConfig({ env: {}, flags: { dataDir: dir, ...flags } });
      const err = await startHub(cfg, createLogger('silent')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(message);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
