/**
 * The consent command lines against a real chain: `vitalproof admin` and `vitalproof consent`
 * run as processes (dist/gateway/cli/main.js) on the embedded chain of a temp data dir, which each
 * command starts from the data dir's state and stops again. What they did is then read from the
 * chain directly: the binding of the pseudonym's patientRef (the data dir's patient-ref key),
 * the grants, the revocation, the gateway role.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { id, Wallet } from 'ethers';
import { devWallet } from '../../../gateway/chain/anvil.js';
import { loadConfig } from '../../../gateway/config.js';
import { openChainForCli, type ChainRuntime } from '../../../gateway/chain/runtime.js';
import { consentRegistryAt, ROLES, sensorMaskOf } from '../../../gateway/chain/contracts.js';
import { patientRefOf } from '../../../gateway/chain/ids.js';
import { CLI } from '../../support/gateway-process.js';

let dir: string;
let dataDir: string;
const patient = devWallet(3);
const researcher = devWallet(4);
const otherPatient = devWallet(5);
const keyFile = (name: string): string => join(dir, `${name}.key`);

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--dataDir', dataDir], { encoding: 'utf8', env: { ...process.env, HOME: dir } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Reads the data dir's chain in this process (no command runs meanwhile: the tests are sequential). */
async function onChain<T>(fn: (chain: ChainRuntime) => Promise<T>): Promise<T> {
  const chain = await openChainForCli(loadConfig({ env: {}, flags: { dataDir } }));
  try {
    return await fn(chain);
  } finally {
    await chain.stop();
  }
}

function refOf(pseudonym: string): string {
  const key = Buffer.from(readFileSync(join(dataDir, 'registry', 'patient-ref.key'), 'utf8').trim(), 'hex');
  return patientRefOf(pseudonym, key);
}

const grantArgs = (over: Record<string, string> = {}): string[] =>
  Object.entries({
    'key-file': keyFile('patient'),
    pseudonym: 'pt-cli-1',
    researcher: researcher.address,
    metrics: 'heart_rate,spo2',
    from: 'now-1h',
    to: 'now+1h',
    expires: 'now+1d',
    purpose: 'cardiology study 7',
    ...over,
  }).flatMap(([k, v]) => [`--${k}`, v]);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-consent-cli-'));
  dataDir = join(dir, 'gw');
  for (const [name, w] of [
    ['patient', patient],
    ['researcher', researcher],
    ['other', otherPatient],
  ] as const)
    writeFileSync(keyFile(name), `${w.privateKey}\n`, { mode: 0o600 });
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('admin', () => {
  it('prints the DEV ONLY key of a dev account, usable as a key file', () => {
    const r = cli('admin', 'dev-key', '3');
    expect(r.code).toBe(0);
    expect(new Wallet(r.stdout.trim()).address).toBe(patient.address);
    expect(r.stderr).toMatch(/DEV ONLY/);
    expect(cli('admin', 'dev-key', '10').code).toBe(2);
  });

  it("binds a pseudonym's patientRef to the patient's address, once", async () => {
    const r = cli('admin', 'bind-patient', 'pt-cli-1', patient.address);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^bound pt-cli-1 \\(patientRef ${refOf('pt-cli-1')}, patient-ref key\\) to ${patient.address}`));
    const again = cli('admin', 'bind-patient', 'pt-cli-1', patient.address.toLowerCase());
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/bound to .* already: nothing to do/);
    const taken = cli('admin', 'bind-patient', 'pt-cli-2', patient.address);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/is bound to another patientRef/);
    expect(cli('admin', 'bind-patient', 'pt-cli-2', otherPatient.address).code).toBe(0);
    await onChain(async (chain) => {
      const c = consentRegistryAt(chain.record.consentRegistry!.address, chain.provider);
      expect(await c.patientOf(refOf('pt-cli-1'))).toBe(patient.address);
      expect(await c.patientRefOf(patient.address)).toBe(refOf('pt-cli-1'));
      expect(await c.patientOf(refOf('pt-cli-2'))).toBe(otherPatient.address);
    });
  });

  it('refuses bad arguments as usage errors', () => {
    expect(cli('admin', 'bind-patient', 'pt-cli-1').code).toBe(2);
    expect(cli('admin', 'bind-patient', 'p', patient.address).stderr).toMatch(/not a pseudonym/);
    expect(cli('admin', 'bind-patient', 'pt-cli-1', '0x1234').stderr).toMatch(/must be an Ethereum address/);
    expect(cli('admin', 'frobnicate').code).toBe(2);
  });

  it('authorises a gateway account to anchor, once', async () => {
    const gw = Wallet.createRandom().address;
    const r = cli('admin', 'authorize-gateway', gw);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^authorised .* to anchor on AnchorRegistry .*GATEWAY_ROLE/);
    expect(cli('admin', 'authorize-gateway', gw).stdout).toMatch(/already: nothing to do/);
    expect(await onChain((chain) => chain.anchorRegistry.hasRole(ROLES.GATEWAY, gw))).toBe(true);
  });
});

describe('consent grant, list, revoke', () => {
  let grantId: string;

  it("grants with the patient's key and prints the grant id", async () => {
    const t0 = Date.now();
    const r = cli('consent', 'grant', ...grantArgs());
    expect(r.code, r.stderr).toBe(0);
    const m = /^grant (\d+): pt-cli-1 lets (0x[0-9a-fA-F]{40}) receive heart_rate, spo2 recorded /.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    grantId = m![1]!;
    expect(m![2]).toBe(researcher.address);
    const g = await onChain((chain) => consentRegistryAt(chain.record.consentRegistry!.address, chain.provider).getGrant(BigInt(grantId)));
    expect(g.patientRef).toBe(refOf('pt-cli-1'));
    expect(g.researcher).toBe(researcher.address);
    expect(Number(g.sensorMask)).toBe(sensorMaskOf([1, 2]));
    expect(g.purposeRef).toBe(id('cardiology study 7'));
    expect(Number(g.dataFromMs)).toBeGreaterThanOrEqual(Math.floor(t0 / 1000) * 1000 - 3_600_000);
    expect(Number(g.dataFromMs) % 1000).toBe(0); // now-1h: now in whole seconds
    expect(Number(g.dataToMs) - Number(g.dataFromMs)).toBe(2 * 3_600_000);
    expect(Number(g.expiresAtMs) - Number(g.dataFromMs)).toBe(25 * 3_600_000);
    expect(g.revokedAtMs).toBe(0n);
  });

  it('grants with exact times and answers JSON with --json', () => {
    const r = cli('consent', 'grant', ...grantArgs({ metrics: 'spo2', from: '2026-01-01T00:00:00Z', to: '1767312000000', expires: 'now+2h' }), '--json');
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { grantId: string; metrics: string[]; dataFromMs: number; dataToMs: number };
    expect(Number(doc.grantId)).toBe(Number(grantId) + 1);
    expect(doc).toMatchObject({ metrics: ['spo2'], dataFromMs: Date.parse('2026-01-01T00:00:00Z'), dataToMs: 1767312000000 });
  });

  it('refuses a key that is not bound, and a key bound to another pseudonym', () => {
    const unbound = cli('consent', 'grant', ...grantArgs({ 'key-file': keyFile('researcher') }));
    expect(unbound.code).toBe(1);
    expect(unbound.stderr).toMatch(new RegExp(`${researcher.address} is not bound to any patient.*admin bind-patient pt-cli-1`));
    const wrong = cli('consent', 'grant', ...grantArgs({ 'key-file': keyFile('other') }));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/wrong key or wrong pseudonym/);
  });

  it('refuses incomplete or malformed grants as usage errors, before any transaction', () => {
    const cases: [string[], RegExp][] = [
      [grantArgs().slice(0, -2), /needs --purpose/],
      [grantArgs({ metrics: 'heart_rate,pulse' }), /unknown sensor "pulse"/],
      [grantArgs({ from: 'now+2h', to: 'now+1h' }), /--from .* is after --to/],
      [grantArgs({ expires: 'now-1m' }), /--expires .* must be in the future/],
      [grantArgs({ expires: 'tomorrow' }), /--expires "tomorrow" is not a time/],
      [grantArgs({ researcher: 'bob' }), /--researcher must be an Ethereum address/],
      [[...grantArgs(), '--colour', 'red'], /unknown option --colour/],
    ];
    for (const [args, msg] of cases) {
      const r = cli('consent', 'grant', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    expect(cli('consent', 'grant', ...grantArgs({ 'key-file': join(dir, 'nope.key') })).stderr).toMatch(/cannot read key file/);
  });

  it("lists the patient's grants with their status, by pseudonym or by key", () => {
    const r = cli('consent', 'list', '--pseudonym', 'pt-cli-1');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^pt-cli-1 \\(patientRef 0x[0-9a-f]{8}…, bound to ${patient.address}\\): 2 grants`));
    expect(r.stdout).toMatch(
      new RegExp(`\\n  ${Number(grantId) + 1}\\s+OK\\s+${researcher.address}\\s+spo2\\s+2026-01-01T00:00:00Z \\.\\. 2026-01-02T00:00:00Z`),
    );
    expect(r.stdout).toMatch(new RegExp(`\\n  ${grantId}\\s+OK\\s+${researcher.address}\\s+heart_rate,spo2`));
    const j = cli('consent', 'list', '--pseudonym', 'pt-cli-1', '--key-file', keyFile('patient'), '--json');
    const doc = JSON.parse(j.stdout) as { patientRef: string; grants: { grantId: string; status: string }[] };
    expect(doc.patientRef).toBe(refOf('pt-cli-1'));
    expect(doc.grants.map((g) => [g.grantId, g.status])).toEqual([
      [String(Number(grantId) + 1), 'OK'],
      [grantId, 'OK'],
    ]);
    expect(JSON.parse(cli('consent', 'list', '--pseudonym', 'pt-cli-2', '--json').stdout).grants).toEqual([]);
  });

  it("revokes only with the patient's key, once", async () => {
    const foreign = cli('consent', 'revoke', grantId, '--key-file', keyFile('other'));
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toMatch(/only the patient revokes/);
    const r = cli('consent', 'revoke', grantId, '--key-file', keyFile('patient'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^revoked grant ${grantId} \\(heart_rate, spo2 to ${researcher.address}\\) at `));
    const again = cli('consent', 'revoke', grantId, '--key-file', keyFile('patient'));
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/revoked already .*nothing to do/);
    expect(cli('consent', 'revoke', '999', '--key-file', keyFile('patient')).code).toBe(1);
    expect(cli('consent', 'revoke', 'x1', '--key-file', keyFile('patient')).code).toBe(2);
    expect(cli('consent', 'revoke', grantId).code).toBe(2);
    const g = await onChain((chain) => consentRegistryAt(chain.record.consentRegistry!.address, chain.provider).getGrant(BigInt(grantId)));
    expect(g.revokedAtMs).toBeGreaterThan(0n);
    const list = JSON.parse(cli('consent', 'list', '--pseudonym', 'pt-cli-1', '--json').stdout) as {
      grants: { grantId: string; status: string; revokedAtMs: number | null }[];
    };
    expect(list.grants.find((x) => x.grantId === grantId)).toMatchObject({ status: 'REVOKED', revokedAtMs: Number(g.revokedAtMs) });
  });

  it("asks for the patient's key before fetching disclosures", () => {
    const r = cli('consent', 'list', '--pseudonym', 'pt-cli-1', '--disclosures');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--disclosures needs --key-file/);
  });
});
