/**
 * `vitalproof chain …`: deploy the contracts on an external chain (or add the ones an older
 * deployment record lacks), and show what the gateway's chain holds.
 *
 *   chain deploy --rpc URL --key-file FILE [--out FILE] [--gateway ADDR[,ADDR…]]
 *                [--hospital-admin ADDR[,ADDR…]] [--confirmations N]
 *   chain deploy --rpc URL --key-file FILE --complete RECORD [--out FILE] [--confirmations N]
 *   chain info   [--config FILE] [--<config key> VALUE …]
 */
import { dirname } from 'node:path';
import { mkdirSync } from 'node:fs';
import { getAddress } from 'ethers';
import { ConfigError, configFromFlags, loadConfig } from '../config.js';
import { parseArgs } from './args.js';
import { badUsage } from './errors.js';
import { STREAM } from '../chain/contracts.js';
import { completeDeployment, deployContracts, readDeploymentRecord, writeDeploymentRecord, DEPLOYMENT_FILE, type DeploymentRecord } from '../chain/deploy.js';
import { chainDir, chainProvider, openChainForCli, readKeyFile } from '../chain/runtime.js';
import { join } from 'node:path';

const USAGE = `usage: vitalproof chain <deploy|info> [options]
  deploy   deploy DeviceRegistry, AnchorRegistry and ConsentRegistry on an external EVM chain
           --rpc URL --key-file FILE (the deployer: becomes admin; needs funds)
           [--out FILE]                 deployment record (default DATADIR/chain/deployment.json)
           [--gateway ADDR,…]           accounts allowed to anchor (default: the deployer)
           [--hospital-admin ADDR,…]    accounts allowed to enrol, revoke and bind patients (default: the deployer)
           [--confirmations N]          per transaction (default 1)
           [--complete RECORD]          instead: add what RECORD lacks (ConsentRegistry, to a record
                                        written before it existed), keeping its contracts and anchors;
                                        the key must be DeviceRegistry's admin; RECORD is rewritten
                                        unless --out is given
  info     the chain, contracts, this gateway's account and its anchors`;

export async function chainCommand(argv: string[], out: (line: string) => void = console.log): Promise<number> {
  const { positionals, flags } = parseArgs(argv, {
    values: ['rpc', 'key-file', 'out', 'gateway', 'hospital-admin', 'confirmations', 'complete'],
    usage: USAGE,
  });
  const sub = positionals[0];
  if (sub === 'deploy') {
    const rpc = flags['rpc'];
    const keyFile = flags['key-file'];
    if (!rpc || !keyFile) throw badUsage('chain deploy needs --rpc and --key-file', USAGE);
    const list = (v: string | undefined): string[] | undefined => (v ? v.split(',').map((a) => getAddress(a.trim())) : undefined);
    const confirmations = Number(flags['confirmations'] ?? 1);
    if (!Number.isInteger(confirmations) || confirmations < 1) throw new ConfigError('--confirmations must be an integer >= 1');
    const probe = chainProvider(rpc, 1);
    let chainId: number;
    try {
      chainId = Number(await probe.send('eth_chainId', []));
    } finally {
      probe.destroy();
    }
    const provider = chainProvider(rpc, chainId, 500);
    try {
      const signer = readKeyFile(keyFile).connect(provider);
      const completing = flags['complete'];
      if (completing) {
        const existing = readDeploymentRecord(completing);
        if (!existing) throw new ConfigError(`--complete ${completing}: no such deployment record`);
        const d = await completeDeployment(signer, existing, { confirmations });
        const path = flags['out'] ?? completing;
        if (d.added.length === 0 && path === completing) {
          out(`${completing} is complete already: nothing deployed`);
        } else {
          mkdirSync(dirname(path), { recursive: true });
          writeDeploymentRecord(path, d.record);
          out(d.added.length ? `added ${d.added.join(', ')} on chain ${d.record.chainId}` : `${completing} is complete already: nothing deployed`);
          out(`record written to ${path}`);
        }
        printContracts(d.record, out);
        return 0;
      }
      const gateways = list(flags['gateway']);
      const hospitalAdmins = list(flags['hospital-admin']);
      const d = await deployContracts(signer, { confirmations, ...(gateways ? { gateways } : {}), ...(hospitalAdmins ? { hospitalAdmins } : {}) });
      const cfg = loadConfig({ flags: flags['dataDir'] ? { dataDir: flags['dataDir'] } : {} });
      const path = flags['out'] ?? join(chainDir(cfg.dataDir), DEPLOYMENT_FILE);
      mkdirSync(dirname(path), { recursive: true });
      writeDeploymentRecord(path, d.record);
      out(`deployed on chain ${d.record.chainId} in block ${d.record.deployBlock}`);
      printContracts(d.record, out);
      out(`  admin           ${d.record.roles.admin}`);
      out(`  hospital admins ${d.record.roles.hospitalAdmins.join(', ')}`);
      out(`  gateways        ${d.record.roles.gateways.join(', ')}`);
      out(
        `record written to ${path}: run the gateway with --chain.mode external --chain.rpcUrl ${rpc} --chain.deployment ${path} --chain.keyFile <gateway key>`,
      );
      return 0;
    } finally {
      provider.destroy();
    }
  }
  if (sub === 'info') {
    const cfg = configFromFlags(flags);
    const chain = await openChainForCli(cfg);
    try {
      const next = await chain.anchorRegistry.nextBatchSeq(chain.address, STREAM.FRAMES);
      out(`chain ${chain.mode} ${chain.url} (chain id ${chain.chainId}), head block ${await chain.provider.getBlockNumber()}`);
      out(`  DeviceRegistry  ${chain.record.deviceRegistry.address}`);
      out(`  AnchorRegistry  ${chain.record.anchorRegistry.address}`);
      out(
        `  ConsentRegistry ${chain.record.consentRegistry?.address ?? 'none: the deployment record predates it (vitalproof chain deploy --complete <record> adds it)'}`,
      );
      out(`  gateway account ${chain.address}: ${next - 1n} batches anchored`);
      return 0;
    } finally {
      await chain.stop();
    }
  }
  out(USAGE);
  return 2;
}

function printContracts(record: DeploymentRecord, out: (line: string) => void): void {
  out(`  DeviceRegistry  ${record.deviceRegistry.address}`);
  out(`  AnchorRegistry  ${record.anchorRegistry.address}`);
  out(`  ConsentRegistry ${record.consentRegistry.address}`);
}
