/**
 * A hospital on one box (docs/fleet.md), every part a real process: the recipe that
 * `npm run demo -- --gateways N` (scripts/lib/demo-hospital.ts) and test/e2e/fleet.test.ts
 * share, so that what the demo shows is what the test checks.
 *
 * The caller brings the hospital's shared services already running (one anvil, one influxd,
 * Mosquitto 2 with its dynamic-security plugin: scripts/lib/mosquitto.ts) and names the bedside
 * gateways and the hub instances. startHospital then does what a hospital's operators do, with
 * the same commands:
 *   1. `vitalproof chain deploy`: the contracts, with every gateway and hub allowed to anchor
 *      (hubs anchor their access logs);
 *   2. `vitalproof enrol` once, on chain, into the first gateway's data dir; every other gateway
 *      and hub gets a copy of that registry dir (the hospital's pseudonym directory and
 *      patient-ref key, docs/fleet.md);
 *   3. the broker accounts through the dynamic-security API (gateway/fleet/broker.ts): each
 *      gateway may publish under its own uplink prefix only, each hub may read every uplink;
 *   4. every gateway (`vitalproof run`) and every hub (`vitalproof hub`, all under one hub id)
 *      as a child process on free loopback ports, started together, each awaited on its `ready`.
 *
 * DEV ONLY keys: the deployer (dev account 0) and hospital admin (1) of the public test mnemonic;
 * gateways and hubs sign with dev accounts 3 to 7, in the order named, which leaves 8 and 9 for
 * patients.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import type { JsonRpcProvider } from 'ethers';
import { writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { chainProvider, EMBEDDED_ACCOUNTS } from '../../gateway/chain/runtime.js';
import { addGateway, addHub, initBroker } from '../../gateway/fleet/broker.js';
import { DynsecClient } from '../../gateway/fleet/dynsec.js';
import { GATEWAY_CLI, GatewayProcess } from './gateway-process.js';
import type { MosquittoCredentials } from './mosquitto.js';

const run = promisify(execFile);

/** Dev accounts the gateways and hubs sign with: 3 to 7 (0 deployer, 1 hospital admin, 2 the embedded gateway's). */
const FIRST_MEMBER_ACCOUNT = 3;
const MEMBER_ACCOUNTS = 5;

export interface HospitalOptions {
  /** Holds the keys, deployment.json, fleet.json and one data dir per gateway and hub. */
  dir: string;
  /** The running anvil's RPC URL. */
  chainUrl: string;
  /** The running influxd's URL: every gateway writes there, every hub reads there. */
  influxUrl: string;
  /** The running Mosquitto (scripts/lib/mosquitto.ts): its URL and dynamic-security admin. */
  broker: { url: string; admin: MosquittoCredentials };
  /** Enrolled once, on chain, for the whole hospital. */
  devices: readonly SimDevice[];
  /** Gateway ids, e.g. gw-a, gw-b, gw-c. The first one's data dir holds the enrolment. */
  gateways: readonly string[];
  /** Hub instance names (their broker accounts and data dirs), e.g. hub-1, hub-2. */
  hubs: readonly string[];
  /** The id every hub instance serves under (researchers' self-issued logins name it). Default `hub`. */
  hubId?: string;
  /** Flags on top of the common ones, for every gateway and for every hub. */
  gatewayFlags?: Record<string, string | number>;
  hubFlags?: Record<string, string | number>;
}

export interface Hospital {
  readonly dir: string;
  readonly hubId: string;
  readonly record: DeploymentRecord;
  /** A provider on the hospital's chain (destroyed by stop()). */
  readonly provider: JsonRpcProvider;
  readonly gateways: ReadonlyMap<string, GatewayProcess>;
  readonly hubs: ReadonlyMap<string, GatewayProcess>;
  /** The hospital admin's key file (binds patients on ConsentRegistry). */
  readonly adminKeyFile: string;
  /** The data dir of a gateway or hub. */
  dataDir(name: string): string;
  /** The chain account a gateway or hub signs its anchors with. */
  address(name: string): string;
  /** The `--chain.*` flags of a gateway or hub (its own key): what `vitalproof` commands need to reach the hospital's chain. */
  chainFlags(name: string): Record<string, string>;
  /** Stops every gateway and hub (SIGTERM, then SIGKILL after the grace) and the provider. */
  stop(): Promise<void>;
}

/**
 * Deploys, enrols, provisions the broker and starts every gateway and hub (see the file comment).
 * @throws Error HOSPITAL_TOO_BIG when more gateways and hubs are named than there are dev accounts
 *   for them; the CLI's error when a command fails; the process's error when one does not become
 *   ready (the ones that did are stopped first).
 */
export async function startHospital(o: HospitalOptions): Promise<Hospital> {
  const members = [...o.gateways, ...o.hubs];
  if (members.length > MEMBER_ACCOUNTS)
    throw new Error(`HOSPITAL_TOO_BIG: expected at most ${MEMBER_ACCOUNTS} gateways and hubs (DEV ONLY accounts 3-7), found ${members.length}`);
  const hubId = o.hubId ?? 'hub';
  const dir = o.dir;
  mkdirSync(dir, { recursive: true });
  const key = (name: string): string => join(dir, `${name}.key`);
  const dataDir = (name: string): string => join(dir, name);
  const adminKeyFile = key('admin');
  const writeKey = (file: string, privateKey: string): void => writeFileSync(file, `${privateKey}\n`, { mode: 0o600 });
  const admin = devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin);
  writeKey(adminKeyFile, admin.privateKey);
  writeKey(key('deployer'), devWallet(EMBEDDED_ACCOUNTS.deployer).privateKey);
  const accounts = members.map((_, i) => devWallet(FIRST_MEMBER_ACCOUNT + i));
  members.forEach((name, i) => writeKey(key(name), accounts[i]!.privateKey));
  const deployment = join(dir, 'deployment.json');
  const chainFlags = (name: string): Record<string, string> => ({
    'chain.mode': 'external',
    'chain.rpcUrl': o.chainUrl,
    'chain.deployment': deployment,
    'chain.keyFile': key(name),
    'chain.confirmations': '1',
  });
  const asFlags = (f: Record<string, string | number>): string[] => Object.entries(f).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const cli = (...args: string[]): Promise<unknown> => run(process.execPath, [GATEWAY_CLI, ...args], { encoding: 'utf8' });

  // 1. The contracts: every gateway and every hub may anchor.
  await cli(
    'chain',
    'deploy',
    '--rpc',
    o.chainUrl,
    '--key-file',
    key('deployer'),
    '--gateway',
    accounts.map((w) => w.address).join(','),
    '--hospital-admin',
    admin.address,
    '--out',
    deployment,
  );
  const record = JSON.parse(readFileSync(deployment, 'utf8')) as DeploymentRecord;
  // 2. Enrolled once on chain; every other gateway and hub gets the registry dir.
  const first = o.gateways[0]!;
  writeEnrolmentFile(join(dir, 'fleet.json'), [...o.devices]);
  await cli('enrol', join(dir, 'fleet.json'), '--dataDir', dataDir(first), '--admin-key-file', adminKeyFile, ...asFlags(chainFlags(first)));
  for (const name of members.slice(1)) {
    mkdirSync(dataDir(name), { recursive: true });
    cpSync(join(dataDir(first), 'registry'), join(dataDir(name), 'registry'), { recursive: true });
  }
  // 3. The hospital broker: one account per gateway (its own prefix only) and per hub.
  const ds = await DynsecClient.connect({ url: o.broker.url, ...o.broker.admin });
  try {
    await initBroker(ds);
    for (const name of members) {
      const password = randomBytes(18).toString('base64url');
      writeFileSync(join(dir, `${name}.broker`), `${password}\n`, { mode: 0o600 });
      if (o.gateways.includes(name)) await addGateway(ds, name, password);
      else await addHub(ds, name, password);
    }
  } finally {
    await ds.close();
  }
  // 4. Every gateway and hub, together.
  const common = (name: string): Record<string, string | number> => ({
    dataDir: dataDir(name),
    'influx.url': o.influxUrl,
    'mqtt.port': 0,
    'http.port': 0,
    'uplink.url': o.broker.url,
    'uplink.passwordFile': join(dir, `${name}.broker`),
    ...chainFlags(name),
  });
  const started = await Promise.allSettled([
    ...o.gateways.map((name) => GatewayProcess.start({ ...common(name), gatewayId: name, ...o.gatewayFlags })),
    ...o.hubs.map((name) => GatewayProcess.start({ ...common(name), gatewayId: hubId, 'hub.instance': name, ...o.hubFlags }, {}, 'hub')),
  ]);
  const up = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(up.map((p) => p.stop()));
    throw failed.reason;
  }
  const processes = started.map((s) => (s as PromiseFulfilledResult<GatewayProcess>).value);
  const gateways = new Map(o.gateways.map((name, i) => [name, processes[i]!]));
  const hubs = new Map(o.hubs.map((name, i) => [name, processes[o.gateways.length + i]!]));
  const provider = chainProvider(o.chainUrl, record.chainId, 100);
  return {
    dir,
    hubId,
    record,
    provider,
    gateways,
    hubs,
    adminKeyFile,
    dataDir,
    address: (name) => accounts[members.indexOf(name)]!.address,
    chainFlags,
    stop: async () => {
      await Promise.all(processes.map((p) => p.stop()));
      provider.destroy();
    },
  };
}

/**
 * Polls `probe` every 50 ms until it returns a value, and resolves with it: waiting for a state
 * another process reaches (a hub hearing a grant, a delivery arriving), with a deadline.
 * @throws Error "timed out waiting for <what>" after `timeoutMs`.
 */
export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
