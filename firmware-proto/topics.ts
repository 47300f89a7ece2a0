/** MQTT topics of the protocol (PROTOCOL.md §6.2). */
export const TOPIC_PREFIX = 'vp/v1';

/** A device publishes its frames here, QoS 1; only the device itself may publish on it. */
export function frameTopic(deviceId: string): string {
  return `${TOPIC_PREFIX}/dev/${deviceId}/frames`;
}

const FRAME_TOPIC = /^vp\/v1\/dev\/([0-9a-f]{16})\/frames$/;

/** The device id named by a frame topic, or undefined for any other topic. */
export function deviceOfFrameTopic(topic: string): string | undefined {
  return FRAME_TOPIC.exec(topic)?.[1];
}

/** The MQTT client id a device uses: stable, so that the broker can take over its session. */
export function deviceClientId(deviceId: string): string {
  return `vp-dev-${deviceId}`;
}
