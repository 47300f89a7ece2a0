/**
 * The example bundles of docs/proof-format.md are real: they parse, every check that needs no
 * chain passes, and the frame bundle names the embedded chain's accounts and contracts (the
 * gateway's dev account, the deployer's first three contract addresses), so a reader who copies
 * a value copies one the code produces.
 */
import { readFileSync } from 'node:fs';
import { getCreateAddress } from 'ethers';
import { describe, expect, it } from 'vitest';
import { devWallet } from '../../../gateway/chain/anvil.js';
import { EMBEDDED_ACCOUNTS } from '../../../gateway/chain/runtime.js';
import { parseBundle } from '../../../gateway/proof/bundle.js';
import { verifyBundle } from '../../../gateway/proof/verify.js';
import { parseAccessBundle } from '../../../gateway/proof/access-bundle.js';
import { verifyAccessBundle } from '../../../gateway/proof/access-verify.js';

const doc = readFileSync(new URL('../../../docs/proof-format.md', import.meta.url), 'utf8');
/** The first ```json block after `heading`. */
function jsonAfter(heading: string): unknown {
  const at = doc.indexOf(heading);
  expect(at, heading).toBeGreaterThanOrEqual(0);
  const block = /```json\n([\s\S]*?)```/.exec(doc.slice(at))![1]!;
  return JSON.parse(block) as unknown;
}

describe('docs/proof-format.md examples', () => {
  it('the frame bundle passes every offline check and names the embedded gateway account and contracts', async () => {
    const b = parseBundle(jsonAfter('A real bundle (frame 1 of a 4-frame batch'));
    const v = await verifyBundle(b, { offline: true });
    expect(v.checks.map((c) => [c.check, c.status])).toEqual([
      ['frame', 'pass'],
      ['signature', 'pass'],
      ['inclusion', 'pass'],
      ['anchor', 'skip'],
      ['device', 'skip'],
    ]);
    expect(v.ok).toBe(true);
    const deployer = devWallet(EMBEDDED_ACCOUNTS.deployer).address;
    expect(b.anchor.gateway).toBe(devWallet(EMBEDDED_ACCOUNTS.gateway).address);
    expect(b.device.registry.address).toBe(getCreateAddress({ from: deployer, nonce: 0 }));
    expect(b.anchor.contract).toBe(getCreateAddress({ from: deployer, nonce: 1 }));
    expect(b.anchor.chainId).toBe(31337);
  });

  it('the access bundle passes its offline check and names the consent registry the deployer makes third', async () => {
    const b = parseAccessBundle(jsonAfter('A real bundle (an aggregated live delivery'));
    const v = await verifyAccessBundle(b, { offline: true });
    expect(v.checks.find((c) => c.check === 'inclusion')?.status).toBe('pass');
    expect(v.ok).toBe(true);
    expect(b.consentRegistry.address).toBe(getCreateAddress({ from: devWallet(EMBEDDED_ACCOUNTS.deployer).address, nonce: 2 }));
  });
});
