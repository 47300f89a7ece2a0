/**
 * enrol / revoke / devices, against the configured registry: on chain (the embedded chain of
 * the gateway running on this data dir, or started for the command; or the external one,
 * with --admin-key-file holding a hospital admin's key) or the registry file. The enrolment
 * file is read first (docs/enrolment.md): a broken file is refused as a whole before any chain
 * starts; a malformed entry is refused per device, and the others are enrolled.
 *
 * Exit codes: 0 done, 1 a device or the file refused, 2 usage or configuration error.
 */
import { configFromFlags } from '../config.js';
import { openChainForCli, readKeyFile } from '../chain/runtime.js';
import { openRegistry } from '../registry/open.js';
import { EnrolmentError, enrolFile, readEnrolmentFile, type EnrolmentFileContents } from '../registry/enrolment.js';
import { parseArgs } from './args.js';
import { badUsage } from './errors.js';

const OWN = ['at', 'admin-key-file'];

/** Runs `vitalproof enrol FILE`, `revoke DEVICE_ID [--at T]` or `devices` with `argv` (the arguments after the command). */
export async function registryCommand(cmd: 'enrol' | 'revoke' | 'devices', argv: string[]): Promise<number> {
  const { positionals: args, flags } = parseArgs(argv, { values: OWN });
  const cfg = configFromFlags(flags, OWN);
  if (cmd === 'enrol' && !args[0]) throw badUsage('enrol needs an enrolment file');
  if (cmd === 'revoke' && !args[0]) throw badUsage('revoke needs a device id');
  const at = flags['at'] ? Date.parse(flags['at']) : Date.now();
  if (!Number.isFinite(at)) throw badUsage(`--at "${flags['at']}" is not a time`);
  let file: EnrolmentFileContents | undefined;
  if (cmd === 'enrol') {
    try {
      file = readEnrolmentFile(args[0]!);
    } catch (e) {
      if (!(e instanceof EnrolmentError)) throw e;
      console.error(`error: ${e.message}`);
      return 1;
    }
  }
  const chain = cfg.registry.source === 'chain' ? await openChainForCli(cfg) : undefined;
  try {
    const signer = chain && flags['admin-key-file'] ? readKeyFile(flags['admin-key-file']).connect(chain.provider) : chain?.adminSigner;
    const reg = openRegistry(cfg, chain, undefined, { follow: false, ...(signer && cmd !== 'devices' ? { signer } : {}) });
    try {
      if (file) {
        const res = await enrolFile(reg, file);
        await chain?.makeDurable();
        console.log(
          `enrolled ${res.enrolled.length}, already enrolled ${res.unchanged.length}, refused ${res.refused.length}${chain ? ` (on chain ${chain.chainId}, DeviceRegistry ${chain.record.deviceRegistry.address})` : ''}`,
        );
        for (const r of res.refused) console.log(`  refused ${r.deviceId}: ${r.reason} (${r.detail})`);
        return res.refused.length ? 1 : 0;
      }
      if (cmd === 'revoke') {
        const rec = await reg.revoke(args[0]!, at);
        await chain?.makeDurable();
        console.log(`revoked ${rec.deviceId} (patient ${rec.patient}) from ${new Date(rec.revokedAtMs!).toISOString()}`);
        return 0;
      }
      await reg.sync?.();
      for (const d of reg.list()) {
        console.log(
          `${d.deviceId}  ${d.patient.padEnd(16)}  ${d.revokedAtMs ? `revoked ${new Date(d.revokedAtMs).toISOString()}` : 'active'}  ${d.sensors.join(',')}`,
        );
      }
      return 0;
    } finally {
      await reg.close();
    }
  } finally {
    await chain?.stop();
  }
}
