/**
 * The table of `vitalproof` commands: each with its synopsis and one line of usage (the
 * overview `vitalproof --help` prints is made from it), and how it runs. A command's module is
 * loaded when the command runs, so that `vitalproof status` does not load the chain, the
 * research client or the gateway itself (only `run` loads gateway/gateway.ts).
 */
export interface Command {
  name: string;
  /** The command and its arguments as the overview shows them (`enrol FILE`). */
  synopsis: string;
  /** What it does, one line. */
  summary: string;
  /** It prints its own usage for --help (the others print the overview). */
  ownHelp?: boolean;
  /** Runs it with its own arguments (the command word taken out). @returns the exit code. */
  run: (argv: string[]) => Promise<number>;
}

export const COMMANDS: readonly Command[] = [
  {
    name: 'run',
    synopsis: 'run',
    summary: 'run the gateway (embedded MQTT broker, spool, InfluxDB writer, Merkle batches, anchoring, status endpoint)',
    run: async (argv) => (await import('./run.js')).runCommand(argv),
  },
  {
    name: 'enrol',
    synopsis: 'enrol FILE',
    summary: 'enrol the devices listed in an enrolment file (e.g. from "vp-sim export"); on chain: --admin-key-file F for an external chain',
    run: async (argv) => (await import('./registry.js')).registryCommand('enrol', argv),
  },
  {
    name: 'revoke',
    synopsis: 'revoke DEVICE_ID',
    summary: 'revoke a device; --at ISO_TIME (default now)',
    run: async (argv) => (await import('./registry.js')).registryCommand('revoke', argv),
  },
  {
    name: 'devices',
    synopsis: 'devices',
    summary: 'list enrolled devices',
    run: async (argv) => (await import('./registry.js')).registryCommand('devices', argv),
  },
  {
    name: 'status',
    synopsis: 'status',
    summary: "print a running gateway's status; --url http://127.0.0.1:8080 (https://… with --ca FILE for a private CA)",
    run: async (argv) => (await import('./status.js')).statusCommand(argv),
  },
  {
    name: 'export',
    synopsis: 'export',
    summary: 'proof bundles of stored frames: --device ID [--seq N | --from T --to T] [--out FILE] [--url URL --ca FILE]',
    run: async (argv) => (await import('./export.js')).exportCommand(argv),
  },
  {
    name: 'verify',
    synopsis: 'verify FILE…',
    summary: 'check proof bundles: --rpc URL, or --offline',
    run: async (argv) => (await import('./verify.js')).verifyCommand(argv),
  },
  {
    name: 'audit',
    synopsis: 'audit',
    summary: 'check what InfluxDB holds against the signed frames and anchored batches: [--device ID] [--from T] [--to T] [--json FILE]',
    run: async (argv) => (await import('./audit.js')).auditCommand(argv),
  },
  {
    name: 'storage',
    synopsis: 'storage replay',
    summary: 'write frames InfluxDB refused for good (the storage quarantine) again, once the database is fixed: [--dry-run]',
    ownHelp: true,
    run: async (argv) => (await import('./storage.js')).storageCommand(argv),
  },
  {
    name: 'chain',
    synopsis: 'chain deploy|info',
    summary: 'deploy the contracts on an external chain (--rpc URL --key-file F); show the chain',
    run: async (argv) => (await import('./chain.js')).chainCommand(argv),
  },
  {
    name: 'admin',
    synopsis: 'admin ...',
    summary: 'bind-patient PSEUDONYM ADDRESS, authorize-gateway ADDRESS (hospital / chain admin)',
    ownHelp: true,
    run: async (argv) => (await import('./admin.js')).adminCommand(argv),
  },
  {
    name: 'consent',
    synopsis: 'consent ...',
    summary: "grant, revoke, list [--disclosures]: the patient's consent, with their key (--key-file F)",
    ownHelp: true,
    run: async (argv) => (await import('./consent.js')).consentCommand(argv),
  },
  {
    name: 'broker',
    synopsis: 'broker ...',
    summary: "init, add-gateway ID, add-hub NAME, disable-gateway ID, list: the hospital Mosquitto's uplink accounts (dynamic security)",
    ownHelp: true,
    run: async (argv) => (await import('./broker.js')).brokerCommand(argv),
  },
  {
    name: 'research',
    synopsis: 'research ...',
    summary: "login, logout, grants, subscribe, export, verify: a researcher's access, with their key",
    ownHelp: true,
    run: async (argv) => (await import('./research.js')).researchCommand(argv),
  },
  {
    name: 'hub',
    synopsis: 'hub',
    summary: 'run a hub: researcher and patient access across every gateway, from the hospital broker, InfluxDB and chain (docs/fleet.md)',
    run: async (argv) => (await import('./run.js')).hubCommand(argv),
  },
  {
    name: 'fleet',
    synopsis: 'fleet',
    summary: "print a running hub's gateways and where each device is now; --url http://127.0.0.1:8080 (--ca FILE), --json",
    run: async (argv) => (await import('./fleet.js')).fleetCommand(argv),
  },
];

/** The overview: every command of the table, and the options all share. */
export function overview(commands: readonly Command[] = COMMANDS): string {
  return [
    `usage: vitalproof <${commands.map((c) => c.name).join('|')}> [options]`,
    ...commands.map((c) => `  ${c.synopsis.padEnd(20)}${c.summary}`),
    'options: --config FILE, and any config key as --key value (e.g. --dataDir ./data --mqtt.port 1883 --influx.url http://...)',
  ].join('\n');
}

/** The command named `name`, if any. */
export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}
