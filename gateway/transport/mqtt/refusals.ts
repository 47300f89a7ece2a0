/**
 * The closed set of reasons the MQTT listener closes a connection before (or instead of) any
 * MQTT-level answer: abuse and misuse at the transport, apart from the frame reasons and the
 * CONNECT reasons of PROTOCOL.md §7, which are about devices that did get through. Each one is
 * counted (`/status` mqtt.refusedBy, `/metrics` vitalproof_mqtt_refused_total) and summed into
 * rate-limited `mqtt_refused` log lines; docs/operations.md ("Pre-authentication limits") says
 * how to solve each. The same shape as the HTTP listener's HTTP_REFUSALS (gateway/http/errors.ts):
 * a catalogue, its remedies, and ALL_ of its codes.
 */
import type { Catalogue, Remedies } from '../../../firmware-proto/coded-error.js';

export const MQTT_REFUSALS = {
  MQTT_PACKET_TOO_LARGE:
    "a packet's fixed header declared more bytes than the connection's stage allows (mqtt.maxConnectBytes before CONNACK, mqtt.maxDevicePacketBytes / mqtt.maxResearcherPacketBytes after)",
  MQTT_MALFORMED:
    'a fixed header no MQTT 3.1.1 client sends: first packet not CONNECT, a second CONNECT, a server-only or reserved packet type, wrong flag bits, a remaining length over 4 bytes',
  MQTT_CONNECT_TIMEOUT: 'no accepted CONNECT (or no finished TLS handshake) within mqtt.connectDeadlineMs',
  MQTT_TOO_MANY_CONNECTIONS: 'mqtt.maxConnections connections were open already',
  MQTT_TOO_MANY_FROM_SOURCE: 'mqtt.maxConnectionsPerSource connections from this address were open already',
  MQTT_KEEPALIVE_REFUSED: 'CONNECT keep-alive 0 (never checked) or above mqtt.maxKeepaliveS',
  MQTT_TLS_HANDSHAKE_FAILED: 'the TLS handshake failed: a plain MQTT client on the TLS port, an untrusted or broken client',
  MQTT_CERT_REQUIRED: 'mqtt.tls.requireClientCert is true and the device presented no certificate the CA verifies',
  MQTT_CERT_MISMATCH: "the device's verified client certificate names another device (CN differs from the CONNECT's device id)",
  MQTT_NO_DEVICES: 'a device CONNECT to a hub: the hub serves researchers only (docs/fleet.md)',
} as const satisfies Catalogue;

export type MqttRefusal = keyof typeof MQTT_REFUSALS;

/** What to do about each code: docs/operations.md, "Pre-authentication limits". */
export const MQTT_REFUSAL_REMEDIES: Remedies<MqttRefusal> = {
  MQTT_PACKET_TOO_LARGE:
    'From `topSources` you do not know: block them upstream. From a device (`devices` in the line): its firmware sends packets beyond any valid frame; fix it. A legitimate larger packet: raise the matching `mqtt.max*Bytes`.',
  MQTT_MALFORMED: 'Not an MQTT client, or a broken one: block the source, or fix the client.',
  MQTT_CONNECT_TIMEOUT: 'Port scanners and idle sockets: nothing. Many from devices on a slow link: raise `mqtt.connectDeadlineMs`.',
  MQTT_TOO_MANY_CONNECTIONS: 'Find what holds them (`mqtt.connections`, `topSources`); raise the cap only for a larger ward.',
  MQTT_TOO_MANY_FROM_SOURCE: 'One host is opening many connections: block it, or raise the cap for a simulator or a NAT that hides many devices.',
  MQTT_KEEPALIVE_REFUSED: "Configure the client's keep-alive between 1 s and `mqtt.maxKeepaliveS`.",
  MQTT_TLS_HANDSHAKE_FAILED: 'Point plain clients at the TLS port with `mqtts://` and the CA; give clients the CA that signed `mqtt.tls.cert`.',
  MQTT_CERT_REQUIRED:
    'Issue the device a certificate from `mqtt.tls.ca` with CN = its device id, and connect it to the TLS listener (with mutual TLS required, the plain listener refuses every device).',
  MQTT_CERT_MISMATCH: 'A certificate moved to another device, or a wrong one installed: reissue.',
  MQTT_NO_DEVICES: "Point the device at its bedside gateway's broker, not at the hub.",
};

export const ALL_MQTT_REFUSALS = Object.keys(MQTT_REFUSALS) as MqttRefusal[];
