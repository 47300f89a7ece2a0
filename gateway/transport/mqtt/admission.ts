/**
 * Connection caps of the MQTT listeners, counted on the raw TCP connection before anything
 * else (before a TLS handshake, before a byte is read): at most `maxConnections` open in total
 * across the plain and TLS listeners, and at most `maxPerSource` from one address, so that one
 * host cannot take every slot. A connection over a cap is closed at once and costs nothing
 * but the accept.
 */
import type { MqttRefusal } from './refusals.js';

export interface AdmissionLimits {
  maxConnections: number;
  maxPerSource: number;
}

/** An IPv4 peer reached through an IPv6 socket (::ffff:10.0.0.7) is the same source as 10.0.0.7. */
export function sourceOf(remoteAddress: string | undefined): string {
  if (!remoteAddress) return 'unknown';
  return remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
}

export class Admission {
  private total = 0;
  private readonly bySource = new Map<string, number>();

  constructor(private readonly limits: AdmissionLimits) {}

  /** Takes a slot for `source`, or says which cap is full (and takes nothing). */
  take(source: string): MqttRefusal | undefined {
    if (this.total >= this.limits.maxConnections) return 'MQTT_TOO_MANY_CONNECTIONS';
    const n = this.bySource.get(source) ?? 0;
    if (n >= this.limits.maxPerSource) return 'MQTT_TOO_MANY_FROM_SOURCE';
    this.total++;
    this.bySource.set(source, n + 1);
    return undefined;
  }

  /** Gives back a slot take() granted. */
  release(source: string): void {
    const n = this.bySource.get(source);
    if (n === undefined) return;
    this.total--;
    if (n <= 1) this.bySource.delete(source);
    else this.bySource.set(source, n - 1);
  }

  /** Connections open now. */
  get open(): number {
    return this.total;
  }

  /** Addresses with a connection open now. */
  get sources(): number {
    return this.bySource.size;
  }
}
