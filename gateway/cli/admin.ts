/**
 * `vitalproof admin …`: the hospital's and the chain admin's side of consent (docs/research-api.md,
 * "Command line"; docs/contracts.md, "Binding: who speaks for a patientRef").
 *
 *   admin bind-patient PSEUDONYM ADDRESS [--admin-key-file F]   bindPatient(patientRef(PSEUDONYM), ADDRESS)
 *   admin authorize-gateway ADDRESS [--admin-key-file F]        GATEWAY_ROLE on AnchorRegistry
 *   admin dev-key INDEX                                         DEV ONLY: the private key of a dev account
 *
 * The chain is the one the other commands use (gateway/chain/runtime.ts openChainForCli): the
 * embedded chain of the gateway running on --dataDir, or that data dir's embedded chain started
 * for the command, or the external chain of the configuration. On the embedded chain the DEV ONLY
 * accounts sign: the hospital admin (dev account 1) binds, the deployer (dev account 0)
 * authorises gateways. On an external chain --admin-key-file names the signing key (a hospital
 * admin of ConsentRegistry to bind; AnchorRegistry's admin to authorise).
 *
 * A pseudonym's patientRef is the one the device registry uses (gateway/registry/directory.ts):
 * the patientRef its devices were enrolled with (directory.json), else the HMAC of the pseudonym
 * with the data dir's patient-ref key (created, as the first enrolment does, when there is none).
 *
 * Exit codes: 0 done (or nothing to do: bound or authorised already), 1 refused or failed,
 * 2 usage error.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { getAddress, isAddress, ZeroAddress, ZeroHash, type Signer, type TransactionReceipt } from 'ethers';
import { ConfigError, configFromFlags, type GatewayConfig } from '../config.js';
import { parseArgv } from './args.js';
import { PSEUDONYM } from '../registry/registry.js';
import { fallbackPseudonym, loadOrCreatePatientRefKey, PATIENT_REF_KEY_FILE, PseudonymDirectory, DIRECTORY_FILE } from '../registry/directory.js';
import { patientRefOf } from '../chain/ids.js';
import { DEV_ACCOUNT_COUNT, devWallet } from '../chain/anvil.js';
import { anchorRegistryAt, anchorRegistryInterface, consentRegistryAt, consentRegistryInterface, decodeRevert, ROLES, type ConsentRegistryContract } from '../chain/contracts.js';
import { EMBEDDED_ACCOUNTS, openChainForCli, readKeyFile, type ChainRuntime } from '../chain/runtime.js';

export const ADMIN_USAGE = `usage: vitalproof admin <bind-patient|authorize-gateway|dev-key> [options]
  bind-patient PSEUDONYM ADDRESS   bind the patient's Ethereum address to the pseudonym's patientRef on
                                   ConsentRegistry (the address then grants and revokes for the patient)
  authorize-gateway ADDRESS        let a gateway account anchor on AnchorRegistry (GATEWAY_ROLE)
  dev-key INDEX                    DEV ONLY: print the private key of dev account INDEX (0-${DEV_ACCOUNT_COUNT - 1}) of the
                                   embedded chain's public test mnemonic (for key files in demos and tests)
options:
  --admin-key-file F   the signing key on an external chain (a hospital admin of ConsentRegistry for
                       bind-patient, AnchorRegistry's admin for authorize-gateway); on the embedded
                       chain the DEV ONLY accounts sign (hospital admin: dev account ${EMBEDDED_ACCOUNTS.hospitalAdmin}, deployer: ${EMBEDDED_ACCOUNTS.deployer})
  --dataDir DIR, --config FILE, any config key as --key value (the chain: embedded or external)
exit code: 0 done or nothing to do, 1 refused or failed, 2 usage error`;

const OWN = ['admin-key-file', 'help'];

/** Output sinks of a command: stdout and stderr lines. */
export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Where progress lines are drawn (default process.stderr). */
  progress?: { isTTY?: boolean; write: (s: string) => unknown };
}

export const defaultIo: CliIo = { out: (l) => console.log(l), err: (l) => console.error(l) };

/**
 * Runs `vitalproof admin` with `argv` (the arguments after "admin").
 * @returns the exit code (0 done, 1 refused or failed, 2 usage error: thrown as ConfigError).
 */
export async function adminCommand(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const { positionals, flags } = parseArgv(argv);
  const sub = positionals[0];
  if (flags['help'] || !sub) {
    (sub ? io.out : io.err)(ADMIN_USAGE);
    return sub ? 0 : 2;
  }
  switch (sub) {
    case 'bind-patient': {
      const [pseudonym, address] = positionals.slice(1);
      if (!pseudonym || !address || positionals.length > 3) throw new ConfigError(`admin bind-patient needs PSEUDONYM and ADDRESS\n${ADMIN_USAGE}`);
      checkPseudonym(pseudonym);
      const patient = addressArg('ADDRESS', address);
      const cfg = chainConfig(flags, OWN, flags['admin-key-file']);
      return withChain(cfg, async (chain) => {
        const signer = adminSigner(chain, flags['admin-key-file'], 'hospitalAdmin');
        const ref = resolvePatientRef(cfg.dataDir, pseudonym, { create: true });
        const consent = consentOf(chain).connect(signer) as ConsentRegistryContract;
        const [current, boundTo] = await Promise.all([consent.patientOf(ref.patientRef), consent.patientRefOf(patient)]);
        if (getAddress(current) === patient) {
          io.out(`${pseudonym} (patientRef ${short(ref.patientRef)}) is bound to ${patient} already: nothing to do`);
          return 0;
        }
        if (boundTo !== ZeroHash) {
          io.err(`refused: ${patient} is bound to another patientRef (${short(boundTo)}) already; an address speaks for one patient at most (give this patient another key)`);
          return 1;
        }
        const receipt = await send(() => consent.bindPatient(ref.patientRef, patient), chain, io);
        if (!receipt) return 1;
        io.out(
          `bound ${pseudonym} (patientRef ${ref.patientRef}, ${ref.source}) to ${patient} on ConsentRegistry ${chain.record.consentRegistry!.address}` +
            ` (tx ${receipt.hash}, block ${receipt.blockNumber})${current !== ZeroAddress ? `; rebound: ${getAddress(current)} no longer speaks for this patient` : ''}`,
        );
        return 0;
      });
    }
    case 'authorize-gateway': {
      const [address] = positionals.slice(1);
      if (!address || positionals.length > 2) throw new ConfigError(`admin authorize-gateway needs ADDRESS\n${ADMIN_USAGE}`);
      const gateway = addressArg('ADDRESS', address);
      const cfg = chainConfig(flags, OWN, flags['admin-key-file']);
      return withChain(cfg, async (chain) => {
        const signer = adminSigner(chain, flags['admin-key-file'], 'deployer');
        const anchors = anchorRegistryAt(chain.record.anchorRegistry.address, signer);
        if (await anchors.hasRole(ROLES.GATEWAY, gateway)) {
          io.out(`${gateway} may anchor on AnchorRegistry ${chain.record.anchorRegistry.address} already: nothing to do`);
          return 0;
        }
        const receipt = await send(() => anchors.grantRole(ROLES.GATEWAY, gateway), chain, io);
        if (!receipt) return 1;
        io.out(`authorised ${gateway} to anchor on AnchorRegistry ${chain.record.anchorRegistry.address} (GATEWAY_ROLE; tx ${receipt.hash}, block ${receipt.blockNumber})`);
        return 0;
      });
    }
    case 'dev-key': {
      const n = Number(positionals[1]);
      if (!/^\d+$/.test(positionals[1] ?? '') || n >= DEV_ACCOUNT_COUNT) throw new ConfigError(`admin dev-key needs an account index 0-${DEV_ACCOUNT_COUNT - 1}\n${ADMIN_USAGE}`);
      const w = devWallet(n);
      io.out(w.privateKey);
      io.err(`DEV ONLY: dev account ${n} (${w.address}) of the public test mnemonic: anyone can sign with it; never use it on a real chain`);
      return 0;
    }
    default:
      throw new ConfigError(`unknown admin command "${sub}"\n${ADMIN_USAGE}`);
  }
}

// ---- shared with consent-cli.ts -----------------------------------------------------------

/**
 * The configuration a chain command runs with. On an external chain the configuration must
 * name a key file (chain.keyFile, the gateway's); a patient's or an admin's command signs with
 * its own key and never uses that one, so when none is configured the command's own key file
 * stands in (the configuration check passes, nothing else changes).
 */
export function chainConfig(flags: Record<string, string>, own: readonly string[], ownKeyFile: string | undefined): GatewayConfig {
  try {
    return configFromFlags(flags, own);
  } catch (e) {
    if (!(e instanceof ConfigError) || !ownKeyFile || flags['chain.keyFile'] !== undefined || !/chain\.keyFile/.test(e.message)) throw e;
    return configFromFlags({ ...flags, 'chain.keyFile': ownKeyFile }, own);
  }
}

/** Opens the command's chain, runs `fn`, and stops the chain (saving an embedded chain started for the command). */
export async function withChain(cfg: GatewayConfig, fn: (chain: ChainRuntime) => Promise<number>): Promise<number> {
  const chain = await openChainForCli(cfg);
  try {
    await chain.ready();
    return await fn(chain);
  } finally {
    await chain.stop();
  }
}

/** ConsentRegistry of the chain. @throws ConfigError when the deployment record predates it. */
export function consentOf(chain: ChainRuntime): ConsentRegistryContract {
  if (!chain.record.consentRegistry) throw new ConfigError('the deployment record has no ConsentRegistry: add it with "vitalproof chain deploy --complete <record>"');
  return consentRegistryAt(chain.record.consentRegistry.address, chain.provider);
}

function adminSigner(chain: ChainRuntime, keyFile: string | undefined, embedded: 'hospitalAdmin' | 'deployer'): Signer {
  if (keyFile) return readKeyFile(keyFile).connect(chain.provider);
  if (chain.mode === 'embedded') return embedded === 'hospitalAdmin' ? chain.adminSigner! : devWallet(EMBEDDED_ACCOUNTS.deployer, chain.provider);
  throw new ConfigError('on an external chain, name the admin key with --admin-key-file F');
}

/**
 * Sends a transaction and waits for it (one confirmation), then makes an embedded chain's state
 * durable. A revert with a contract's custom error is reported on `io.err` and gives undefined.
 */
export async function send(tx: () => Promise<{ wait: (confirmations?: number) => Promise<TransactionReceipt | null> }>, chain: ChainRuntime, io: CliIo): Promise<TransactionReceipt | undefined> {
  try {
    const receipt = await (await tx()).wait(1);
    if (!receipt) throw new Error('the transaction has no receipt');
    await chain.makeDurable();
    return receipt;
  } catch (e) {
    const why = revertMessage(e);
    if (!why) throw e;
    io.err(`refused by the contract: ${why}`);
    return undefined;
  }
}

/** "ConsentRegistryNotPatient(0x…, 0x…, 0x…)": a contract's custom error in `e`, undefined when `e` is something else. */
export function revertMessage(e: unknown): string | undefined {
  for (const iface of [consentRegistryInterface, anchorRegistryInterface]) {
    const r = decodeRevert(e, iface);
    if (r) return `${r.name}(${(r.args as unknown[]).map((a) => String(a)).join(', ')})${REVERT_HINTS[r.name] ? `: ${REVERT_HINTS[r.name]}` : ''}`;
  }
  return undefined;
}

const REVERT_HINTS: Record<string, string> = {
  AccessControlUnauthorizedAccount: 'the signing account lacks the role this needs',
  ConsentRegistryNotPatient: 'only the address bound to the patient may grant or revoke (vitalproof admin bind-patient)',
  ConsentRegistryAlreadyRevoked: 'the grant was revoked already',
  ConsentRegistryExpiryNotInFuture: 'the expiry must be after the current block time',
  ConsentRegistryInvertedDataWindow: 'the data window ends before it starts',
  ConsentRegistryTooManyOpenGrants: 'the patient has 32 grants in force for this researcher: revoke one first',
  ConsentRegistryAddressAlreadyBound: 'an address speaks for one patient at most',
};

export interface ResolvedPatientRef {
  patientRef: string;
  /** Where it came from: the devices' enrolment, or the HMAC with the data dir's key. */
  source: 'enrolled devices' | 'patient-ref key' | 'ref- pseudonym';
}

/**
 * The patientRef of `pseudonym` as the device registry and the gateway's consent view know it:
 * the ref its devices were enrolled with (dataDir/registry/directory.json), else the HMAC with
 * the data dir's patient-ref key (created when `create` and there is none), else undefined.
 * A `ref-…` fallback pseudonym has no ref of its own (undefined: the caller matches it against
 * a known ref with `fallbackPseudonym`).
 */
export function resolvePatientRef(dataDir: string, pseudonym: string, opts: { create: true }): ResolvedPatientRef;
export function resolvePatientRef(dataDir: string, pseudonym: string, opts?: { create?: boolean }): ResolvedPatientRef | undefined;
export function resolvePatientRef(dataDir: string, pseudonym: string, opts: { create?: boolean } = {}): ResolvedPatientRef | undefined {
  const dir = join(dataDir, 'registry');
  if (existsSync(join(dir, DIRECTORY_FILE))) {
    for (const e of new PseudonymDirectory(join(dir, DIRECTORY_FILE)).all().values()) {
      if (e.patient === pseudonym) return { patientRef: e.patientRef, source: 'enrolled devices' };
    }
  }
  if (!opts.create && !existsSync(join(dir, PATIENT_REF_KEY_FILE))) return undefined;
  return { patientRef: patientRefOf(pseudonym, loadOrCreatePatientRefKey(dir).key), source: 'patient-ref key' };
}

/** True when `pseudonym` is the `ref-…` fallback pseudonym of `patientRef`. */
export function isFallbackOf(pseudonym: string, patientRef: string): boolean {
  try {
    return fallbackPseudonym(patientRef) === pseudonym;
  } catch {
    return false;
  }
}

export function checkPseudonym(p: string): void {
  if (!PSEUDONYM.test(p)) throw new ConfigError(`"${p}" is not a pseudonym: 3-64 characters [A-Za-z0-9._-]`);
}

export function addressArg(name: string, v: string): string {
  if (!isAddress(v)) throw new ConfigError(`${name} must be an Ethereum address (0x and 40 hex digits), got "${v}"`);
  return getAddress(v);
}

export function short(hex: string): string {
  return `${hex.slice(0, 10)}…`;
}
