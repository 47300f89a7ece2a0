/**
 * A small client of Mosquitto's dynamic-security control API (Mosquitto 2, plugin
 * `mosquitto_dynamic_security.so`; its README "Control topic" and "Commands"): JSON commands
 * published to `$CONTROL/dynamic-security/v1`, answers on `$CONTROL/dynamic-security/v1/response`.
 * Each command carries a `correlationData` the plugin echoes back, so answers are matched to
 * commands, not to their order.
 *
 * It speaks only what the hospital broker's account layout (./broker.ts) needs: clients,
 * roles, their ACLs, and the default ACL access. It is the same API EMQX does not have (EMQX
 * manages accounts over its REST API; docs/uplink.md, "EMQX"), hence a client of its own rather
 * than a generic "broker admin" interface.
 *
 * @example
 *   const ds = await DynsecClient.connect({ url: 'mqtt://127.0.0.1:1883', username: 'admin', password });
 *   await ds.createRole('vp-hub', [{ acltype: 'subscribePattern', topic: 'vitalproof/uplink/#', allow: true }]);
 *   await ds.close();
 */
import { randomUUID } from 'node:crypto';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { CodedError, type ErrorDetail, type Remedies } from '../../firmware-proto/coded-error.js';

export const DYNSEC_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = `${DYNSEC_TOPIC}/response`;

export const DYNSEC_ERRORS = {
  DYNSEC_CONNECT_FAILED: 'the broker could not be reached, or refused the admin account',
  DYNSEC_TIMEOUT: 'the broker did not answer a dynamic-security command in time',
  DYNSEC_COMMAND_FAILED: 'the dynamic-security plugin answered a command with an error',
  DYNSEC_BAD_RESPONSE: 'an answer on the dynamic-security response topic is not what the API specifies',
} as const;
export type DynsecErrorCode = keyof typeof DYNSEC_ERRORS;

export const DYNSEC_ERROR_REMEDIES: Remedies<DynsecErrorCode> = {
  DYNSEC_CONNECT_FAILED:
    'Check the broker URL, that it is up, and the admin account (the one `mosquitto_ctrl dynsec init` created); over mqtts:// give the CA that signed the broker certificate',
  DYNSEC_TIMEOUT:
    'Check that the broker loads the dynamic-security plugin (`plugin …mosquitto_dynamic_security.so` and `plugin_opt_config_file` in mosquitto.conf) and that the admin account has the `admin` role',
  DYNSEC_COMMAND_FAILED: "Read the plugin's error in the message (e.g. a role that does not exist); `vitalproof broker init` creates the roles the others need",
  DYNSEC_BAD_RESPONSE: 'A broker other than Mosquitto 2 with the dynamic-security plugin, or another client answering on its response topic: check the URL',
};

export class DynsecError extends CodedError<DynsecErrorCode> {
  constructor(code: DynsecErrorCode, detail: ErrorDetail = {}, options?: ErrorOptions) {
    super(DYNSEC_ERRORS, code, detail, options);
  }
}

/** ACL types of the plugin: what a client may send, receive, subscribe to and unsubscribe from. */
export type AclType = 'publishClientSend' | 'publishClientReceive' | 'subscribeLiteral' | 'subscribePattern' | 'unsubscribeLiteral' | 'unsubscribePattern';

export interface Acl {
  acltype: AclType;
  topic: string;
  allow: boolean;
  priority?: number;
}

/** The default ACL access: what a client may do where no ACL of its roles says otherwise. */
export type DefaultAccess = Partial<Record<'publishClientSend' | 'publishClientReceive' | 'subscribe' | 'unsubscribe', boolean>>;

export interface DynsecClientInfo {
  username: string;
  textname?: string;
  disabled?: boolean;
  roles?: { rolename: string; priority?: number }[];
}

export interface DynsecConnectOptions {
  /** mqtt:// or mqtts:// URL of the broker. */
  url: string;
  username: string;
  password: string;
  /** PEM CA bundle for mqtts:// with a private CA. */
  ca?: string | Buffer;
  /** Per command; default 5 s. */
  timeoutMs?: number;
}

interface Answer {
  command: string;
  error?: string;
  data?: unknown;
  correlationData?: string;
}

export class DynsecClient {
  private readonly waiting = new Map<string, { resolve: (a: Answer) => void; command: string }>();

  private constructor(
    private readonly client: MqttClient,
    private readonly timeoutMs: number,
  ) {
    client.on('message', (topic, payload) => {
      if (topic !== DYNSEC_RESPONSE_TOPIC) return;
      for (const a of parseAnswers(payload)) {
        const w = a.correlationData !== undefined ? this.waiting.get(a.correlationData) : undefined;
        if (w) {
          this.waiting.delete(a.correlationData!);
          w.resolve(a);
        }
      }
    });
  }

  /**
   * Connects as the dynamic-security admin and subscribes to the answers.
   * @throws DynsecError DYNSEC_CONNECT_FAILED (unreachable, refused credentials, TLS failure).
   */
  static async connect(o: DynsecConnectOptions): Promise<DynsecClient> {
    const opts: IClientOptions = {
      username: o.username,
      password: o.password,
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: o.timeoutMs ?? 5000,
      clean: true,
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
    };
    let client: MqttClient;
    try {
      client = await connectAsync(o.url, opts, false);
    } catch (e) {
      throw new DynsecError('DYNSEC_CONNECT_FAILED', { url: o.url, username: o.username, found: (e as Error).message }, { cause: e });
    }
    const ds = new DynsecClient(client, o.timeoutMs ?? 5000);
    const granted = await client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 });
    if (!granted[0] || granted[0].qos > 2) {
      await client.endAsync(true);
      throw new DynsecError('DYNSEC_CONNECT_FAILED', {
        url: o.url,
        username: o.username,
        expected: `subscription to ${DYNSEC_RESPONSE_TOPIC}`,
        found: 'refused',
      });
    }
    return ds;
  }

  /**
   * Sends one command and resolves with its `data` (undefined for commands without).
   * @throws DynsecError DYNSEC_COMMAND_FAILED with the plugin's error, DYNSEC_TIMEOUT.
   */
  async send(command: string, args: Record<string, unknown> = {}): Promise<unknown> {
    const correlationData = randomUUID();
    let timer: NodeJS.Timeout | undefined;
    const answer = new Promise<Answer | undefined>((resolve) => {
      this.waiting.set(correlationData, { resolve, command });
      timer = setTimeout(() => resolve(undefined), this.timeoutMs);
    });
    try {
      await this.client.publishAsync(DYNSEC_TOPIC, JSON.stringify({ commands: [{ command, ...args, correlationData }] }), { qos: 1 });
      const a = await answer;
      if (!a) throw new DynsecError('DYNSEC_TIMEOUT', { command, timeoutMs: this.timeoutMs });
      if (a.command !== command) throw new DynsecError('DYNSEC_BAD_RESPONSE', { expected: command, found: a.command });
      if (a.error !== undefined) throw new DynsecError('DYNSEC_COMMAND_FAILED', { command, error: a.error, ...namesOf(args) });
      return a.data;
    } finally {
      clearTimeout(timer);
      this.waiting.delete(correlationData);
    }
  }

  createClient(username: string, password: string, o: { textname?: string; roles?: string[] } = {}): Promise<unknown> {
    return this.send('createClient', {
      username,
      password,
      ...(o.textname ? { textname: o.textname } : {}),
      ...(o.roles ? { roles: o.roles.map((rolename) => ({ rolename })) } : {}),
    });
  }

  setClientPassword(username: string, password: string): Promise<unknown> {
    return this.send('setClientPassword', { username, password });
  }

  deleteClient(username: string): Promise<unknown> {
    return this.send('deleteClient', { username });
  }

  /** The account can no longer connect, and its open connections are closed. */
  disableClient(username: string): Promise<unknown> {
    return this.send('disableClient', { username });
  }

  enableClient(username: string): Promise<unknown> {
    return this.send('enableClient', { username });
  }

  createRole(rolename: string, acls: readonly Acl[] = [], textname?: string): Promise<unknown> {
    return this.send('createRole', { rolename, acls, ...(textname ? { textname } : {}) });
  }

  deleteRole(rolename: string): Promise<unknown> {
    return this.send('deleteRole', { rolename });
  }

  addRoleACL(rolename: string, acl: Acl): Promise<unknown> {
    return this.send('addRoleACL', { rolename, ...acl });
  }

  addClientRole(username: string, rolename: string, priority?: number): Promise<unknown> {
    return this.send('addClientRole', { username, rolename, ...(priority !== undefined ? { priority } : {}) });
  }

  setDefaultACLAccess(access: DefaultAccess): Promise<unknown> {
    return this.send('setDefaultACLAccess', { acls: Object.entries(access).map(([acltype, allow]) => ({ acltype, allow })) });
  }

  /** The default ACL access as the broker holds it. */
  async getDefaultACLAccess(): Promise<DefaultAccess> {
    const data = (await this.send('getDefaultACLAccess')) as { acls?: { acltype: string; allow: boolean }[] } | undefined;
    return Object.fromEntries((data?.acls ?? []).map((a) => [a.acltype, a.allow])) as DefaultAccess;
  }

  /** Every account, with its roles. */
  async listClients(): Promise<DynsecClientInfo[]> {
    const data = (await this.send('listClients', { verbose: true })) as { clients?: DynsecClientInfo[] } | undefined;
    if (!Array.isArray(data?.clients)) throw new DynsecError('DYNSEC_BAD_RESPONSE', { command: 'listClients', expected: 'data.clients', found: data });
    return data.clients;
  }

  /** One account with its roles, or undefined when there is no such account. */
  async getClient(username: string): Promise<DynsecClientInfo | undefined> {
    try {
      const data = (await this.send('getClient', { username })) as { client?: DynsecClientInfo } | undefined;
      return data?.client;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /** A role's ACLs, or undefined when there is no such role. */
  async getRole(rolename: string): Promise<{ rolename: string; acls: Acl[] } | undefined> {
    try {
      const data = (await this.send('getRole', { rolename })) as { role?: { rolename: string; acls?: Acl[] } } | undefined;
      return data?.role ? { rolename: data.role.rolename, acls: data.role.acls ?? [] } : undefined;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

/** Whether a DYNSEC_COMMAND_FAILED says the client, role or ACL is there already (provisioning runs again). */
export function isAlreadyExists(e: unknown): boolean {
  return e instanceof DynsecError && e.code === 'DYNSEC_COMMAND_FAILED' && /already/i.test(String(e.detail['error']));
}

function isNotFound(e: unknown): boolean {
  return e instanceof DynsecError && e.code === 'DYNSEC_COMMAND_FAILED' && /not found/i.test(String(e.detail['error']));
}

/** The names a command was about, for the error (never its password). */
function namesOf(args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['username', 'rolename', 'topic', 'acltype']) if (args[k] !== undefined) out[k] = args[k];
  return out;
}

function parseAnswers(payload: Buffer): Answer[] {
  try {
    const doc = JSON.parse(payload.toString('utf8')) as { responses?: unknown };
    return Array.isArray(doc.responses) ? (doc.responses.filter((r) => typeof r === 'object' && r !== null) as Answer[]) : [];
  } catch {
    return [];
  }
}
