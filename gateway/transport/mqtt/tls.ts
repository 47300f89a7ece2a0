/**
 * MQTT over TLS (docs/operations.md, "Encryption in transit"): the certificate, key and CA of
 * the TLS listener read from the configured files, and the device check of optional mutual
 * TLS, which binds a client certificate to the device id of the CONNECT it carries (the signed
 * CONNECT token of PROTOCOL.md §6.1 is still required: the certificate adds to it, it does not
 * replace it).
 */
import { readFileSync } from 'node:fs';
import type { TlsOptions } from 'node:tls';
import { ConfigError } from '../../config.js';
import type { PeerIdentity } from './guarded-socket.js';
import type { MqttRefusal } from './refusals.js';

export interface MqttTlsConfig {
  cert: string;
  key: string;
  ca: string;
  requireClientCert: string;
}

/**
 * The tls.createServer options of the TLS listener. A client certificate is asked for when a
 * CA is configured, but never required at the handshake: researchers connect without one, and
 * a device without one is refused at CONNECT (MQTT_CERT_REQUIRED), where it can be counted.
 * @throws ConfigError naming the key and the file when a file cannot be read.
 */
export function tlsServerOptions(t: MqttTlsConfig, handshakeTimeoutMs: number): TlsOptions {
  const read = (key: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new ConfigError(`mqtt.tls.${key}: cannot read ${path}: ${(e as Error).message}`, 'CONFIG_FILE_UNREADABLE');
    }
  };
  return {
    cert: read('cert', t.cert),
    key: read('key', t.key),
    ...(t.ca ? { ca: read('ca', t.ca), requestCert: true, rejectUnauthorized: false } : {}),
    minVersion: 'TLSv1.2',
    handshakeTimeout: handshakeTimeoutMs,
  };
}

/**
 * Whether a device may CONNECT over this connection, as far as certificates go.
 * With mutual TLS required, every device connection needs a certificate the CA verified whose
 * subject CN is exactly the device id it CONNECTs as; a connection without TLS has none, so
 * the plain listener refuses devices too. Without it, certificates are not looked at.
 */
export function deviceCertRefusal(required: boolean, peer: PeerIdentity | undefined, deviceId: string): MqttRefusal | undefined {
  if (!required) return undefined;
  if (!peer?.authorized) return 'MQTT_CERT_REQUIRED';
  if (peer.commonName !== deviceId) return 'MQTT_CERT_MISMATCH';
  return undefined;
}
