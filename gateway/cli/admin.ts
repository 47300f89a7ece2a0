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
import { getAddress, ZeroAddress, ZeroHash, type Signer } from 'ethers';
import { ConfigError } from '../config.js';
import { DEV_ACCOUNT_COUNT, devWallet } from '../chain/anvil.js';
import { anchorRegistryAt, ROLES, type ConsentRegistryContract } from '../chain/contracts.js';
import { EMBEDDED_ACCOUNTS, readKeyFile, type ChainRuntime } from '../chain/runtime.js';
import { addressArg, checkPseudonym, parseArgs } from './args.js';
import { chainConfig, consentOf, send, withChain } from './chain-context.js';
import { badUsage } from './errors.js';
import { defaultIo, short, type CliIo } from './output.js';
import { resolvePatientRef } from './patient-ref.js';

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

/**
 * Runs `vitalproof admin` with `argv` (the arguments after "admin").
 * @returns the exit code (0 done, 1 refused or failed, 2 usage error: thrown as UsageError or ConfigError).
 */
export async function adminCommand(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const { positionals, flags } = parseArgs(argv, { values: ['admin-key-file'], usage: ADMIN_USAGE });
  const sub = positionals[0];
  if (flags['help'] || !sub) {
    (sub ? io.out : io.err)(ADMIN_USAGE);
    return sub ? 0 : 2;
  }
  switch (sub) {
    case 'bind-patient': {
      const [pseudonym, address] = positionals.slice(1);
      if (!pseudonym || !address || positionals.length > 3) throw badUsage('admin bind-patient needs PSEUDONYM and ADDRESS', ADMIN_USAGE);
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
          io.err(
            `refused: ${patient} is bound to another patientRef (${short(boundTo)}) already; an address speaks for one patient at most (give this patient another key)`,
          );
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
      if (!address || positionals.length > 2) throw badUsage('admin authorize-gateway needs ADDRESS', ADMIN_USAGE);
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
        io.out(
          `authorised ${gateway} to anchor on AnchorRegistry ${chain.record.anchorRegistry.address} (GATEWAY_ROLE; tx ${receipt.hash}, block ${receipt.blockNumber})`,
        );
        return 0;
      });
    }
    case 'dev-key': {
      const n = Number(positionals[1]);
      if (!/^\d+$/.test(positionals[1] ?? '') || n >= DEV_ACCOUNT_COUNT)
        throw badUsage(`admin dev-key needs an account index 0-${DEV_ACCOUNT_COUNT - 1}`, ADMIN_USAGE);
      const w = devWallet(n);
      io.out(w.privateKey);
      io.err(`DEV ONLY: dev account ${n} (${w.address}) of the public test mnemonic: anyone can sign with it; never use it on a real chain`);
      return 0;
    }
    default:
      throw badUsage(`unknown admin command "${sub}"`, ADMIN_USAGE);
  }
}

function adminSigner(chain: ChainRuntime, keyFile: string | undefined, embedded: 'hospitalAdmin' | 'deployer'): Signer {
  if (keyFile) return readKeyFile(keyFile).connect(chain.provider);
  if (chain.mode === 'embedded') return embedded === 'hospitalAdmin' ? chain.adminSigner! : devWallet(EMBEDDED_ACCOUNTS.deployer, chain.provider);
  throw new ConfigError('on an external chain, name the admin key with --admin-key-file F');
}
