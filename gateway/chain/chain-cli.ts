/**
 * `vitalproof chain …`: deploy the contracts on an external chain, and show what the
 * gateway's chain holds.
 *
 *   chain deploy --rpc URL --key-file FILE [--out FILE] [--gateway ADDR[,ADDR…]]
 *                [--hospital-admin ADDR[,ADDR…]] [--confirmations N]
 *   chain info   [--config FILE] [--<config key> VALUE …]
 */
import { dirname } from 'node:path';
import { mkdirSync } from 'node:fs';
import { getAddress } from 'ethers';
import { ConfigError, configFromFlags, loadConfig } from '../config.js';
import { parseArgv } from '../util/argv.js';
import { STREAM } from './contracts.js';
import { deployContracts, writeDeploymentRecord, DEPLOYMENT_FILE } from './deploy.js';
import { chainDir, chainProvider, openChainForCli, readKeyFile } from './runtime.js';
import { join } from 'node:path';

const USAGE = `usage: vitalproof chain <deploy|info> [options]
  deploy   deploy DeviceRegistry and AnchorRegistry on an external EVM chain
           --rpc URL --key-file FILE (the deployer: becomes admin; needs funds)
           [--out FILE]                 deployment record (default DATADIR/chain/deployment.json)
           [--gateway ADDR,…]           accounts allowed to anchor (default: the deployer)
           [--hospital-admin ADDR,…]    accounts allowed to enrol and revoke (default: the deployer)
           [--confirmations N]          per transaction (default 1)
  info     the chain, contracts, this gateway's account and its anchors`;

export async function chainCommand(argv: string[], out: (line: string) => void = console.log): Promise<number> {
  const { positionals, flags } = parseArgv(argv);
  const sub = positionals[0];
  if (sub === 'deploy') {
    const rpc = flags['rpc'];
    const keyFile = flags['key-file'];
    if (!rpc || !keyFile) throw new ConfigError(`chain deploy needs --rpc and --key-file\n${USAGE}`);
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
      const gateways = list(flags['gateway']);
      const hospitalAdmins = list(flags['hospital-admin']);
      const d = await deployContracts(signer, { confirmations, ...(gateways ? { gateways } : {}), ...(hospitalAdmins ? { hospitalAdmins } : {}) });
      const cfg = loadConfig({ flags: flags['dataDir'] ? { dataDir: flags['dataDir'] } : {} });
      const path = flags['out'] ?? join(chainDir(cfg.dataDir), DEPLOYMENT_FILE);
      mkdirSync(dirname(path), { recursive: true });
      writeDeploymentRecord(path, d.record);
      out(`deployed on chain ${d.record.chainId} in block ${d.record.deployBlock}`);
      out(`  DeviceRegistry  ${d.record.deviceRegistry.address}`);
      out(`  AnchorRegistry  ${d.record.anchorRegistry.address}`);
      out(`  admin           ${d.record.roles.admin}`);
      out(`  hospital admins ${d.record.roles.hospitalAdmins.join(', ')}`);
      out(`  gateways        ${d.record.roles.gateways.join(', ')}`);
      out(`record written to ${path}: run the gateway with --chain.mode external --chain.rpcUrl ${rpc} --chain.deployment ${path} --chain.keyFile <gateway key>`);
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
      out(`  gateway account ${chain.address}: ${next - 1n} batches anchored`);
      return 0;
    } finally {
      await chain.stop();
    }
  }
  out(USAGE);
  return 2;
}
