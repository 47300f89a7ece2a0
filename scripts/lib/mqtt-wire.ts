/**
 * MQTT 3.1.1 packets laid out by hand (OASIS mqtt-v3.1.1 §1.5, §2.2, §3), so that any field
 * can be wrong: the one encoder behind the fuzzer (fuzz-mqtt-packets.ts) and the tests' raw
 * clients (test/support/mqtt-raw.ts). MQTT.js and mqtt-packet refuse to write most of what
 * these are for (oversized packets, lying lengths, broken CONNECT fields).
 */

/** Remaining Length (§2.2.3): 7 bits per byte, least significant first, 1-4 bytes. */
export function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** A UTF-8 string or binary field: uint16 BE length, then the bytes (§1.5.3). */
export function field(s: string | Uint8Array, declared?: number): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s);
  const h = Buffer.alloc(2);
  h.writeUInt16BE((declared ?? b.length) & 0xffff);
  return Buffer.concat([h, b]);
}

/** A packet: first byte, Remaining Length of `body` (or `declared`), body. */
export function packet(first: number, body: Buffer, declared?: number): Buffer {
  return Buffer.concat([Buffer.from([first]), varint(declared ?? body.length), body]);
}

export const PINGREQ = Buffer.from([0xc0, 0x00]);
export const DISCONNECT = Buffer.from([0xe0, 0x00]);

export interface ConnectFields {
  protocol?: string;
  level?: number;
  /** Connect flags byte; default from the fields present. */
  flags?: number;
  keepalive?: number;
  clientId?: string;
  username?: string | undefined;
  password?: Uint8Array | undefined;
  will?: { topic: string; payload: Uint8Array };
}

/** A CONNECT laid out by hand (§3.1), so that any field can be wrong. */
export function connect(f: ConnectFields): Buffer {
  let flags = 0x02; // clean session
  if (f.username !== undefined) flags |= 0x80;
  if (f.password !== undefined) flags |= 0x40;
  if (f.will) flags |= 0x04;
  const vh = Buffer.concat([
    field(f.protocol ?? 'MQTT'),
    Buffer.from([f.level ?? 4, f.flags ?? flags, ((f.keepalive ?? 30) >> 8) & 0xff, (f.keepalive ?? 30) & 0xff]),
  ]);
  const parts = [vh, field(f.clientId ?? '')];
  if (f.will) parts.push(field(f.will.topic), field(f.will.payload));
  if (f.username !== undefined) parts.push(field(f.username));
  if (f.password !== undefined) parts.push(field(f.password));
  return packet(0x10, Buffer.concat(parts));
}

export function publish(topic: string, payload: Uint8Array, o: { qos?: number; dup?: boolean; retain?: boolean; id?: number } = {}): Buffer {
  const qos = o.qos ?? 1;
  const first = 0x30 | (o.dup ? 0x08 : 0) | (qos << 1) | (o.retain ? 1 : 0);
  const id = Buffer.alloc(qos > 0 ? 2 : 0);
  if (qos > 0) id.writeUInt16BE(o.id ?? 1);
  return packet(first, Buffer.concat([field(topic), id, Buffer.from(payload)]));
}

/** The bytes of a PUBLISH before its payload (§3.3), for a payload of `payloadBytes`: lets a test send a header and hold the body. */
export function publishHeader(topic: string, payloadBytes: number, o: { qos?: number; id?: number } = {}): Buffer {
  const qos = o.qos ?? 1;
  const id = Buffer.alloc(qos > 0 ? 2 : 0);
  if (qos > 0) id.writeUInt16BE(o.id ?? 1);
  const vh = Buffer.concat([field(topic), id]);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), varint(vh.length + payloadBytes), vh]);
}

/** A SUBSCRIBE (§3.8) of one filter. */
export function subscribe(filter: string, o: { id?: number; qos?: number } = {}): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(o.id ?? 1);
  return packet(0x82, Buffer.concat([id, field(filter), Buffer.from([o.qos ?? 0])]));
}
