/**
 * How every VitalProof client of the hospital broker connects (docs/uplink.md): the gateway's
 * uplink publisher, the hub's uplink feed and the hubs' shared login state. MQTT 5 (reason codes
 * on PUBACK and SUBACK, session and message expiry), an account of its own, TLS material when the
 * URL is mqtts://; each caller adds its session and reconnection behaviour.
 */
import type { IClientOptions } from 'mqtt';

/** A client's account on the hospital broker. */
export interface BrokerLogin {
  clientId: string;
  username: string;
  password: string;
  /** PEM material for mqtts://: the broker's CA, and a client certificate and key when the broker asks for one. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}

/** The options of `login` with the caller's own (`clean`, `reconnectPeriod`, a will, ...) on top. */
export function brokerClientOptions(login: BrokerLogin, own: IClientOptions): IClientOptions {
  return {
    clientId: login.clientId,
    username: login.username,
    password: login.password,
    protocolVersion: 5,
    connectTimeout: 10_000,
    keepalive: 15,
    ...(login.tls?.ca ? { ca: login.tls.ca } : {}),
    ...(login.tls?.cert ? { cert: login.tls.cert, key: login.tls.key } : {}),
    ...own,
  };
}
