/**
 * The uplink's topic layout on the hospital broker (docs/uplink.md, "Topics"). Every topic of a
 * gateway lies under its own prefix, which is what the broker's ACLs grant it (../fleet/broker.ts):
 *
 *   vitalproof/uplink/<gatewayId>/frames/<deviceId>   one message per accepted frame (QoS 1)
 *   vitalproof/uplink/<gatewayId>/anchors             one message per anchored frame batch (QoS 1)
 *   vitalproof/uplink/<gatewayId>/status              retained; last will "offline"
 *
 * WARNING: an id is put into topics verbatim, so it must never hold `+`, `#`, `/` or `$`: a
 * gateway id of `+` would make its ACL grant every gateway's prefix. Gateway ids are 1-64 of
 * [A-Za-z0-9._-] (gatewayId in gateway/config.ts) and device ids 16 hex digits; both are checked here.
 */
import { isDeviceId } from '../../firmware-proto/frame.js';

export const UPLINK_ROOT = 'vitalproof/uplink';

/** A gateway id that can stand in a topic and an ACL: 1-64 characters of [A-Za-z0-9._-]. */
export const GATEWAY_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** @throws TypeError for an id that is not 1-64 of [A-Za-z0-9._-] (a wildcard or a level separator included). */
export function checkGatewayId(id: string): string {
  if (!GATEWAY_ID.test(id) || id === '.' || id === '..') throw new TypeError(`gateway id must be 1-64 characters [A-Za-z0-9._-], got "${id}"`);
  return id;
}

export interface UplinkTopics {
  /** vitalproof/uplink/<id>: everything the gateway may publish is below it. */
  prefix: string;
  frames(deviceId: string): string;
  anchors: string;
  status: string;
}

/** @throws TypeError for a gateway id (or, in frames(), a device id) that cannot stand in a topic. */
export function uplinkTopics(gatewayId: string): UplinkTopics {
  const prefix = `${UPLINK_ROOT}/${checkGatewayId(gatewayId)}`;
  return {
    prefix,
    frames: (deviceId) => {
      if (!isDeviceId(deviceId)) throw new TypeError(`device id must be 16 lower-case hex digits, got "${deviceId}"`);
      return `${prefix}/frames/${deviceId}`;
    },
    anchors: `${prefix}/anchors`,
    status: `${prefix}/status`,
  };
}

/** What an uplink topic names: the gateway, the kind, and for frames the device. Undefined for any other topic. */
export function parseUplinkTopic(topic: string): { gatewayId: string; kind: 'frames' | 'anchors' | 'status'; deviceId?: string } | undefined {
  const parts = topic.split('/');
  if (parts.length < 4 || `${parts[0]}/${parts[1]}` !== UPLINK_ROOT || !GATEWAY_ID.test(parts[2]!)) return undefined;
  const gatewayId = parts[2]!;
  if (parts.length === 5 && parts[3] === 'frames' && isDeviceId(parts[4]!)) return { gatewayId, kind: 'frames', deviceId: parts[4]! };
  if (parts.length === 4 && (parts[3] === 'anchors' || parts[3] === 'status')) return { gatewayId, kind: parts[3] };
  return undefined;
}
