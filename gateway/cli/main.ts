#!/usr/bin/env node
/**
 * vitalproof: the gateway's command line. The commands are the table of commands.ts:
 *
 *   vitalproof run     [--config FILE] [--<key> VALUE ...]   run the gateway
 *   vitalproof enrol   FILE [--admin-key-file F]             enrol devices from an enrolment file (on chain by default)
 *   vitalproof revoke  DEVICE_ID [--at ISO_TIME]             revoke a device (frames from then on are refused)
 *   vitalproof devices                                       list enrolled devices
 *   vitalproof status  [--url URL] [--ca FILE]               print a running gateway's status
 *   vitalproof export  --device ID [--seq N | --from T --to T] [--out FILE]   proof bundles
 *   vitalproof verify  FILE… (--rpc URL | --offline)         check proof bundles
 *   vitalproof audit   [--device ID] [--from T] [--to T] [--json FILE]       InfluxDB against signed, anchored frames
 *   vitalproof storage replay [--dry-run]                   write the storage quarantine to InfluxDB again
 *   vitalproof chain   deploy|info                           contracts on an external chain; chain status
 *   vitalproof admin   bind-patient|authorize-gateway|dev-key  bind a patient's address, authorise a gateway
 *   vitalproof consent grant|revoke|list                     the patient's grants, and who saw their data
 *   vitalproof research login|logout|grants|subscribe|export|verify  a researcher's access (docs/research-api.md)
 *   vitalproof broker  init|add-gateway|add-hub|disable-gateway|list  the hospital broker's uplink accounts (docs/uplink.md)
 *
 * Any configuration key can be given as a flag (--mqtt.port 1884), an environment
 * variable (VP_MQTT_PORT=1884) or in the --config file; see docs/operations.md.
 *
 * Exit codes: each command's own (0 done; 1 refused, failed or found something; 2 usage or
 * configuration error); 1 with a stack trace for anything unforeseen.
 */
import { parseArgs, without } from './args.js';
import { findCommand, overview } from './commands.js';
import { usageErrorLines } from './errors.js';

async function main(argv: string[]): Promise<number> {
  const { positionals, positionalIndexes, flags } = parseArgs(argv);
  const name = positionals[0];
  const cmd = name !== undefined ? findCommand(name) : undefined;
  if (!name || (flags['help'] && !cmd?.ownHelp)) {
    console.log(overview());
    return name ? 0 : 2;
  }
  if (!cmd) {
    console.error(overview());
    return 2;
  }
  return cmd.run(without(argv, positionalIndexes[0]!));
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    const lines = usageErrorLines(e);
    for (const l of lines ?? [e.stack ?? String(e)]) console.error(l);
    process.exitCode = lines ? 2 : 1;
  },
);
