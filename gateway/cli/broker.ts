/**
 * `vitalproof broker …`: provisions the hospital Mosquitto for the uplink (docs/uplink.md,
 * "Provisioning") through its dynamic-security plugin, with the plugin's admin account:
 *
 *   broker init                                   default ACL access (deny), the hub role
 *   broker add-gateway ID --password-file F       account vp-gw-ID, may publish under vitalproof/uplink/ID/ only
 *   broker add-hub NAME --password-file F         account vp-hub-NAME, reads every uplink (shared subscriptions too)
 *   broker disable-gateway ID                     the gateway's account can no longer connect
 *   broker list                                   the accounts and their roles
 *
 * The broker and the admin: --url (VP_BROKER_URL), --admin-user (VP_BROKER_ADMIN_USER),
 * --admin-password-file (VP_BROKER_ADMIN_PASSWORD_FILE, or the password itself in
 * VP_BROKER_ADMIN_PASSWORD), --ca for mqtts:// with a private CA (VP_BROKER_CA). Passwords come
 * from files (or that one variable), never from the command line where `ps` shows them.
 *
 * Exit codes: 0 done; 1 the broker refused or could not be reached; 2 usage error.
 */
import { addGateway, addHub, disableGateway, gatewayUsername, hubUsername, initBroker } from '../fleet/broker.js';
import { DynsecClient, DynsecError } from '../fleet/dynsec.js';
import { parseArgs } from './args.js';
import { badUsage } from './errors.js';
import { defaultIo, type CliIo } from './output.js';
import { secretLine, settingFile } from '../util/secret-file.js';

export const BROKER_USAGE = `usage: vitalproof broker <init|add-gateway|add-hub|disable-gateway|list> [options]
  init                              deny publish and subscribe by default; create the hub role (vp-hub)
  add-gateway ID --password-file F  account vp-gw-ID with role vp-gateway-ID: publish under vitalproof/uplink/ID/ only
  add-hub NAME --password-file F    account vp-hub-NAME with role vp-hub: read every gateway's uplink
  disable-gateway ID                the gateway's account can no longer connect (and is disconnected)
  list                              the broker's accounts and their roles
options (or environment):
  --url URL                   mqtt:// or mqtts:// of the broker (VP_BROKER_URL)
  --admin-user NAME           the dynamic-security admin (VP_BROKER_ADMIN_USER)
  --admin-password-file F     its password (VP_BROKER_ADMIN_PASSWORD_FILE, or VP_BROKER_ADMIN_PASSWORD)
  --ca FILE                   PEM CA of the broker's certificate, for mqtts:// (VP_BROKER_CA)
exit code: 0 done, 1 refused or unreachable, 2 usage error`;

const VALUES = ['url', 'admin-user', 'admin-password-file', 'ca', 'password-file'] as const;

/**
 * Runs `vitalproof broker` with `argv` (the arguments after "broker").
 * @returns the exit code; usage errors are thrown (UsageError, ConfigError: exit code 2).
 */
export async function brokerCommand(argv: string[], io: CliIo = defaultIo, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { positionals, flags } = parseArgs(argv, { values: VALUES, others: 'reject', usage: BROKER_USAGE });
  const [sub, name, ...extra] = positionals;
  if (flags['help'] || !sub) {
    (sub ? io.out : io.err)(BROKER_USAGE);
    return sub ? 0 : 2;
  }
  if (extra.length > 0) throw badUsage(`unexpected argument "${extra[0]}"`, BROKER_USAGE);
  const needsName = ['add-gateway', 'add-hub', 'disable-gateway'].includes(sub);
  if (!['init', 'list'].includes(sub) && !needsName) throw badUsage(`unknown broker command "${sub}"`, BROKER_USAGE);
  if (needsName && !name) throw badUsage(`broker ${sub} needs ${sub === 'add-hub' ? 'NAME' : 'ID'}`, BROKER_USAGE);
  if (!needsName && name) throw badUsage(`unexpected argument "${name}"`, BROKER_USAGE);
  const password = sub.startsWith('add-') ? secretFile(flags['password-file'], '--password-file') : undefined;
  const url = flags['url'] ?? env['VP_BROKER_URL'];
  const username = flags['admin-user'] ?? env['VP_BROKER_ADMIN_USER'];
  if (!url || !/^mqtts?:\/\//.test(url)) throw badUsage(`--url (or VP_BROKER_URL) must be an mqtt:// or mqtts:// URL, got "${url ?? ''}"`, BROKER_USAGE);
  if (!username) throw badUsage('--admin-user (or VP_BROKER_ADMIN_USER) is needed', BROKER_USAGE);
  const adminFile = flags['admin-password-file'] ?? env['VP_BROKER_ADMIN_PASSWORD_FILE'];
  const adminPassword = adminFile ? secretFile(adminFile, '--admin-password-file') : env['VP_BROKER_ADMIN_PASSWORD'];
  if (!adminPassword) throw badUsage('--admin-password-file (or VP_BROKER_ADMIN_PASSWORD_FILE / VP_BROKER_ADMIN_PASSWORD) is needed', BROKER_USAGE);
  const caFile = flags['ca'] ?? env['VP_BROKER_CA'];
  const ca = caFile ? settingFile(caFile, '--ca') : undefined;
  // An id that could carry a topic wildcard or a level separator is a usage error before anything is sent.
  if (name) {
    try {
      if (sub === 'add-hub') hubUsername(name);
      else gatewayUsername(name);
    } catch (e) {
      throw badUsage((e as Error).message, BROKER_USAGE);
    }
  }
  let ds: DynsecClient | undefined;
  try {
    ds = await DynsecClient.connect({ url, username, password: adminPassword, ...(ca !== undefined ? { ca } : {}) });
    switch (sub) {
      case 'init':
        await initBroker(ds);
        io.out('broker initialised: publish and subscribe denied by default; role vp-hub reads vitalproof/uplink/#');
        break;
      case 'add-gateway':
        io.out(`gateway ${name}: account ${await addGateway(ds, name!, password!)} may publish under vitalproof/uplink/${name}/ only`);
        break;
      case 'add-hub':
        io.out(`hub ${name}: account ${await addHub(ds, name!, password!)} reads every gateway's uplink`);
        break;
      case 'disable-gateway':
        io.out(`gateway ${name}: account ${await disableGateway(ds, name!)} disabled`);
        break;
      default:
        for (const c of await ds.listClients())
          io.out(`${c.username.padEnd(32)}${c.disabled ? 'DISABLED  ' : ''}${(c.roles ?? []).map((r) => r.rolename).join(',')}`);
    }
    return 0;
  } catch (e) {
    if (!(e instanceof DynsecError)) throw e;
    io.err(`refused: ${e.message}`);
    return 1;
  } finally {
    await ds?.close();
  }
}

/** A password from a file (its first line); a missing flag is a usage error. */
function secretFile(path: string | undefined, flag: string): string {
  if (!path) throw badUsage(`${flag} F is needed (the password, on the file's first line)`, BROKER_USAGE);
  return secretLine(path, flag);
}
