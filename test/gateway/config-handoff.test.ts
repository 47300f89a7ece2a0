/** The handoff keys (docs/fleet.md) as gateway/config.ts reads them: default, environment, flag, refusals. */
import { describe, expect, it } from 'vitest';
import { ConfigError, envName, loadConfig } from '../../gateway/config.js';

describe('ingest.handoff configuration', () => {
  it('looks devices up in the shared store by default, within 1.5 s', () => {
    expect(loadConfig({ env: {} }).ingest).toMatchObject({ handoff: 'store', handoffTimeoutMs: 1500 });
  });

  it('is set by VP_INGEST_HANDOFF and VP_INGEST_HANDOFF_TIMEOUT_MS, and by flags over them', () => {
    expect([envName('ingest.handoff'), envName('ingest.handoffTimeoutMs')]).toEqual(['VP_INGEST_HANDOFF', 'VP_INGEST_HANDOFF_TIMEOUT_MS']);
    const env = { VP_INGEST_HANDOFF: 'off', VP_INGEST_HANDOFF_TIMEOUT_MS: '400' };
    expect(loadConfig({ env }).ingest).toMatchObject({ handoff: 'off', handoffTimeoutMs: 400 });
    expect(loadConfig({ env, flags: { 'ingest.handoff': 'store' } }).ingest.handoff).toBe('store');
  });

  it.each([
    [{ 'ingest.handoff': 'hub' }, /ingest.handoff must be store or off, got "hub"/],
    [{ 'ingest.handoffTimeoutMs': '0' }, /ingest.handoffTimeoutMs must be an integer >= 1, got 0/],
  ])('refuses %j', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError);
    expect(() => loadConfig({ env: {}, flags })).toThrow(message);
  });
});
