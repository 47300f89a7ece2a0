/**
 * The hospital broker's accounts for the uplink (docs/uplink.md, "Broker accounts and ACLs"),
 * provisioned through Mosquitto's dynamic-security plugin (./dynsec.ts):
 *
 *   default ACL access   publish: deny   receive: deny   subscribe: deny   unsubscribe: allow
 *   role vp-gateway-<id> publishClientSend vitalproof/uplink/<id>/#        (nothing else)
 *   role vp-hub          subscribePattern + publishClientReceive vitalproof/uplink/# ($share too);
 *                        publish, subscribe and receive vitalproof/hub/# (the instances'
 *                        shared login state: gateway/hub/auth-share.ts)
 *   client vp-gw-<id>    role vp-gateway-<id>
 *   client vp-hub-<name> role vp-hub
 *
 * So a gateway can publish only under its own prefix (a publish elsewhere is refused by the
 * broker: PUBACK reason 0x87 to an MQTT 5 client), a gateway cannot read what others publish,
 * and any other account of the broker (devices, researchers, other hospital systems) can neither
 * publish nor subscribe there. Every step is idempotent: provisioning again converges on this
 * layout (an existing account gets the new password and the role).
 */
import { UPLINK_ROOT, checkGatewayId, uplinkTopics } from '../uplink/topics.js';
import { isAlreadyExists, type Acl, type DefaultAccess, type DynsecClient } from './dynsec.js';

export const HUB_ROLE = 'vp-hub';
/** What hub instances say to each other (gateway/hub/auth-share.ts): only hub accounts reach it. */
export const HUB_ROOT = 'vitalproof/hub';

/** Denied unless a role allows it; unsubscribing from what one may not have is harmless. */
export const DEFAULT_ACCESS: Required<DefaultAccess> = { publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: true };

/** The role of one gateway. @throws TypeError for an id that could hold a topic wildcard. */
export function gatewayRole(gatewayId: string): string {
  return `vp-gateway-${checkGatewayId(gatewayId)}`;
}

/** The broker account (username) of one gateway: also the uplink's default username and client id. */
export function gatewayUsername(gatewayId: string): string {
  return `vp-gw-${checkGatewayId(gatewayId)}`;
}

/** The broker account of one hub instance. @throws TypeError for a name outside [A-Za-z0-9._-]{1,64}. */
export function hubUsername(name: string): string {
  try {
    return `vp-hub-${checkGatewayId(name)}`;
  } catch {
    throw new TypeError(`hub name must be 1-64 characters [A-Za-z0-9._-], got "${name}"`);
  }
}

/** What a gateway's role allows: publishing under its own prefix, nothing else. */
export function gatewayAcls(gatewayId: string): Acl[] {
  return [{ acltype: 'publishClientSend', topic: `${uplinkTopics(gatewayId).prefix}/#`, allow: true }];
}

/**
 * What the hub's role allows: subscribing to every gateway's uplink, directly or as a
 * shared subscription (`$share/<group>/vitalproof/uplink/#`, which Mosquitto 2.0 checks as
 * the whole filter, share name included), and receiving those messages.
 */
export function hubAcls(): Acl[] {
  return [
    { acltype: 'subscribePattern', topic: `${UPLINK_ROOT}/#`, allow: true },
    { acltype: 'subscribePattern', topic: `$share/+/${UPLINK_ROOT}/#`, allow: true },
    { acltype: 'publishClientReceive', topic: `${UPLINK_ROOT}/#`, allow: true },
    // Logouts and used login nonces, shared between the instances (docs/fleet.md, "Researcher sessions across hubs").
    { acltype: 'publishClientSend', topic: `${HUB_ROOT}/#`, allow: true },
    { acltype: 'subscribePattern', topic: `${HUB_ROOT}/#`, allow: true },
    { acltype: 'publishClientReceive', topic: `${HUB_ROOT}/#`, allow: true },
  ];
}

/** Sets the default ACL access and creates the hub role (or adds its ACLs to an existing one). */
export async function initBroker(ds: DynsecClient): Promise<void> {
  await ds.setDefaultACLAccess(DEFAULT_ACCESS);
  await ensureRole(ds, HUB_ROLE, hubAcls(), 'VitalProof hub: reads every gateway uplink, shares login state with the other instances');
}

/**
 * The account of gateway `gatewayId` with its role; an existing account gets `password` and the role.
 * @returns the account's username.
 */
export async function addGateway(ds: DynsecClient, gatewayId: string, password: string): Promise<string> {
  const role = gatewayRole(gatewayId);
  await ensureRole(ds, role, gatewayAcls(gatewayId), `VitalProof gateway ${gatewayId}: publishes its uplink`);
  const username = gatewayUsername(gatewayId);
  await ensureClient(ds, username, password, role, `VitalProof gateway ${gatewayId}`);
  return username;
}

/** The account of hub instance `name` with the hub role (initBroker made it). @returns the account's username. */
export async function addHub(ds: DynsecClient, name: string, password: string): Promise<string> {
  const username = hubUsername(name);
  await ensureClient(ds, username, password, HUB_ROLE, `VitalProof hub ${name}`);
  return username;
}

/** A decommissioned or compromised gateway: its account can no longer connect, and is disconnected now. */
export async function disableGateway(ds: DynsecClient, gatewayId: string): Promise<string> {
  const username = gatewayUsername(gatewayId);
  await ds.disableClient(username);
  return username;
}

async function ensureRole(ds: DynsecClient, rolename: string, acls: Acl[], textname: string): Promise<void> {
  try {
    await ds.createRole(rolename, acls, textname);
  } catch (e) {
    if (!isAlreadyExists(e)) throw e;
    const have = (await ds.getRole(rolename))?.acls ?? [];
    for (const a of acls) {
      if (!have.some((h) => h.acltype === a.acltype && h.topic === a.topic && h.allow === a.allow)) await ds.addRoleACL(rolename, a);
    }
  }
}

async function ensureClient(ds: DynsecClient, username: string, password: string, role: string, textname: string): Promise<void> {
  try {
    await ds.createClient(username, password, { textname, roles: [role] });
  } catch (e) {
    if (!isAlreadyExists(e)) throw e;
    await ds.setClientPassword(username, password);
    // Mosquitto 2.0.11 answers "Internal error" to adding a role the client has: look first.
    const roles = (await ds.getClient(username))?.roles ?? [];
    if (!roles.some((r) => r.rolename === role)) await ds.addClientRole(username, role);
    await ds.enableClient(username);
  }
}
