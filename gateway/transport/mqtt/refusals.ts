/**
 * The closed set of reasons the MQTT listener closes a connection before (or instead of) any
 * MQTT-level answer: abuse and misuse at the transport, apart from the frame reasons and the
 * CONNECT reasons of PROTOCOL.md §7, which are about devices that did get through. Each one is
 * counted (`/status` mqtt.refusedBy, `/metrics` vitalproof_mqtt_refused_total) and summed into
 * rate-limited `mqtt_refused` log lines; docs/operations.md ("Pre-authentication limits") says
 * how to solve each.
 */
export const MQTT_REFUSALS = {
  MQTT_PACKET_TOO_LARGE: "a packet's fixed header declared more bytes than the connection's stage allows (mqtt.maxConnectBytes before CONNACK, mqtt.maxDevicePacketBytes / mqtt.maxResearcherPacketBytes after)",
  MQTT_MALFORMED: 'a fixed header no MQTT 3.1.1 client sends: first packet not CONNECT, a second CONNECT, a server-only or reserved packet type, wrong flag bits, a remaining length over 4 bytes',
  MQTT_CONNECT_TIMEOUT: 'no accepted CONNECT (or no finished TLS handshake) within mqtt.connectDeadlineMs',
  MQTT_TOO_MANY_CONNECTIONS: 'mqtt.maxConnections connections were open already',
  MQTT_TOO_MANY_FROM_SOURCE: 'mqtt.maxConnectionsPerSource connections from this address were open already',
  MQTT_KEEPALIVE_REFUSED: 'CONNECT keep-alive 0 (never checked) or above mqtt.maxKeepaliveS',
  MQTT_TLS_HANDSHAKE_FAILED: 'the TLS handshake failed: a plain MQTT client on the TLS port, an untrusted or broken client',
  MQTT_CERT_REQUIRED: 'mqtt.tls.requireClientCert is true and the device presented no certificate the CA verifies',
  MQTT_CERT_MISMATCH: "the device's verified client certificate names another device (CN differs from the CONNECT's device id)",
} as const;

export type MqttRefusal = keyof typeof MQTT_REFUSALS;

export const ALL_MQTT_REFUSALS = Object.keys(MQTT_REFUSALS) as MqttRefusal[];
