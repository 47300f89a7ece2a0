/**
 * gateway/chain/artifacts.ts is generated from contracts/ and committed: this suite compiles
 * the sources again with the pinned solc and fails when the committed file differs, so a
 * contract change cannot ship with stale ABI or bytecode. It also holds the contracts to
 * the project's Solidity conventions that the compiler output can show.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { compileContracts, generatedPath, renderArtifacts, type CompileResult } from '../../../scripts/build-contracts.js';
import { EVM_VERSION, SOLC_VERSION } from '../../../gateway/chain/artifacts.js';

/** What AccessControl brings in; OpenZeppelin documents it. */
const INHERITED = new Set([
  'DEFAULT_ADMIN_ROLE',
  'getRoleAdmin',
  'grantRole',
  'hasRole',
  'renounceRole',
  'revokeRole',
  'supportsInterface',
  'RoleAdminChanged',
  'RoleGranted',
  'RoleRevoked',
  'AccessControlBadConfirmation',
  'AccessControlUnauthorizedAccount',
]);

let compiled: CompileResult;
beforeAll(() => {
  compiled = compileContracts();
});

describe('contract artifacts', () => {
  it('gateway/chain/artifacts.ts is what the sources compile to (else: npm run build:contracts)', () => {
    const committed = readFileSync(generatedPath(), 'utf8');
    expect(committed === renderArtifacts(compiled), 'gateway/chain/artifacts.ts is out of date with contracts/: run `npm run build:contracts`').toBe(true);
  });

  it('come from the pinned solc, for the paris EVM, without warnings, within the EIP-170 size limit', () => {
    const pinned = (createRequire(import.meta.url)('solc/package.json') as { version: string }).version;
    expect(SOLC_VERSION.startsWith(`${pinned}+`)).toBe(true);
    expect(EVM_VERSION).toBe('paris');
    expect(compiled.warnings).toEqual([]);
    for (const c of compiled.contracts) expect((c.deployedBytecode.length - 2) / 2).toBeLessThan(24_576);
  });

  it('have a NatSpec @notice on every function, event and error of their own', () => {
    for (const c of compiled.contracts) {
      const own = c.abi.filter((e) => (e.type === 'function' || e.type === 'event' || e.type === 'error') && !INHERITED.has(e.name!));
      expect(own.length).toBeGreaterThan(5);
      for (const e of own) {
        const sig = `${e.name}(${(e.inputs ?? []).map((i) => i.type).join(',')})`;
        const doc =
          e.type === 'function'
            ? c.userdoc.methods?.[sig]?.notice
            : e.type === 'event'
              ? c.userdoc.events?.[sig]?.notice
              : c.userdoc.errors?.[sig]?.[0]?.notice;
        expect(doc, `${c.name}.${sig} has no @notice`).toBeTruthy();
      }
    }
  });

  it('name every custom error of their own with the contract as prefix', () => {
    for (const c of compiled.contracts) {
      const own = c.abi.filter((e) => e.type === 'error' && !INHERITED.has(e.name!)).map((e) => e.name!);
      for (const name of own) expect(name.startsWith(c.name), name).toBe(true);
    }
  });
});
