/**
 * Generated MQTT 3.1.1 byte strings (OASIS mqtt-v3.1.1) for the gateway's listener, and an
 * independent reading of the fixed-header rules the listener enforces before aedes parses
 * anything (docs/operations.md, "Pre-authentication limits"; refusals.ts): which refusal a byte
 * stream must meet, if any. Pure: bytes out, no sockets (fuzz-mqtt.ts sends them).
 *
 *   before CONNECT   random bytes; malformed fixed headers; bad Remaining Length varints;
 *                    huge declared lengths; CONNECTs with broken fields (protocol name and
 *                    level, flags, keep-alive, client id, user name, password, will); device
 *                    CONNECTs with broken and valid tokens; researcher CONNECTs with broken
 *                    logins; byte mutations of valid CONNECTs (made by mqtt-packet)
 *   after CONNECT    PUBLISH of mutated frames (the session's own signed frames, fuzz-frames.ts)
 *                    at QoS 0/1/2 with DUP / RETAIN combinations, on own, foreign, researcher
 *                    and invalid topics, oversized; SUBSCRIBE / UNSUBSCRIBE with random filters;
 *                    PINGREQ, acks a client may send, server-only and reserved packet types, a
 *                    second CONNECT, flag bits, bad varints, random bytes, cut packets
 */
import { generate } from 'mqtt-packet';
import { challengeText, encodeLogin } from '../../gateway/consent/auth.js';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import { TOPIC_PREFIX, frameTopic } from '../../firmware-proto/topics.js';
import type { ConnectReason } from '../../firmware-proto/reasons.js';
import { mutateFrame } from './fuzz-frames.js';
import type { Rng } from './fuzz-rng.js';
import { connect, field, packet, PINGREQ, publish, varint, type ConnectFields } from './mqtt-wire.js';

// ---------------------------------------------------------------- the listener's rules, read independently

/** The refusals the listener decides on fixed headers alone (gateway/transport/mqtt/refusals.ts). */
export type HeaderRefusal = 'MQTT_MALFORMED' | 'MQTT_PACKET_TOO_LARGE';

/** Packet types a client sends (§2.2.1): CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT. */
const FROM_CLIENT = [1, 3, 4, 5, 6, 7, 8, 10, 12, 14];

export interface StreamVerdict {
  /** The first rule the bytes break, if any; nothing after it is looked at. */
  refusal?: HeaderRefusal;
  /** Complete packets before the refusal (or in all), by type. */
  packets: { type: number; flags: number; length: number }[];
  /** The bytes end inside a packet (its header or its body). */
  partial: boolean;
}

/**
 * Reads a client's byte stream as the listener must (§2.2): the first packet a CONNECT (no
 * other type before it), no second CONNECT, only types a client sends, the flag bits of §2.2.2
 * (PUBLISH: any but QoS 3; PUBREL, SUBSCRIBE, UNSUBSCRIBE: 0010; the rest 0000), a Remaining
 * Length of at most 4 bytes, and no packet (fixed header included) over `limit`.
 * @param connected a CONNECT was accepted on this connection before these bytes.
 * @example readStream(Buffer.from([0x30, 0x00]), 4096, false).refusal // 'MQTT_MALFORMED': not a CONNECT first
 */
export function readStream(bytes: Uint8Array, limit: number, connected: boolean): StreamVerdict {
  const packets: StreamVerdict['packets'] = [];
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const type = b >> 4;
    const flags = b & 0x0f;
    const first = !connected && packets.length === 0;
    if (first && type !== 1) return { refusal: 'MQTT_MALFORMED', packets, partial: false };
    if (!first && type === 1) return { refusal: 'MQTT_MALFORMED', packets, partial: false };
    if (!FROM_CLIENT.includes(type)) return { refusal: 'MQTT_MALFORMED', packets, partial: false };
    const wantFlags = type === 6 || type === 8 || type === 10 ? 0x02 : 0x00;
    if (type === 3 ? (flags & 0x06) === 0x06 : flags !== wantFlags) return { refusal: 'MQTT_MALFORMED', packets, partial: false };
    let len = 0;
    let mult = 1;
    let n = 0;
    for (;;) {
      if (i + 1 + n >= bytes.length) return { packets, partial: true };
      const v = bytes[i + 1 + n]!;
      len += (v & 0x7f) * mult;
      mult *= 128;
      n++;
      if (!(v & 0x80)) break;
      if (n === 4) return { refusal: 'MQTT_MALFORMED', packets, partial: false };
    }
    if (1 + n + len > limit) return { refusal: 'MQTT_PACKET_TOO_LARGE', packets, partial: false };
    if (i + 1 + n + len > bytes.length) return { packets, partial: true };
    packets.push({ type, flags, length: len });
    i += 1 + n + len;
    // After a CONNECT the listener holds the rest until the broker has decided on it.
    if (!connected && type === 1) return { packets, partial: false };
  }
  return { packets, partial: false };
}

// ---------------------------------------------------------------- before CONNECT

/** What the generator knows of the gateway and its devices. */
export interface MqttContext {
  gatewayId: string;
  /** A device of the session that sends the CONNECT: its id, client id and key. */
  device: { id: string; clientId: string; secretKey: Uint8Array };
  /** Enrolled devices' ids (for foreign topics), and a key nobody enrolled. */
  otherDeviceId: string;
  unenrolled: { id: string; clientId: string; secretKey: Uint8Array };
  /** Valid researcher logins (address, compact login) made at start: each may be accepted once. */
  researcherAddress: string;
  maxConnectBytes: number;
  maxDevicePacketBytes: number;
  maxKeepaliveS: number;
}

/** The verdict an input must get, as far as the generator knows it. */
export type PreExpect =
  /** CONNACK 0: a valid device CONNECT. */
  | { kind: 'accepted' }
  /** A device CONNECT refused with this return code, counted under `connect`. */
  | { kind: 'connack'; code: number; connect: ConnectReason }
  /** A researcher CONNECT refused by the gate (CONNACK 2, 3, 4 or 5), counted in consent.loginRefusedBy. */
  | { kind: 'researcher-refused' }
  /** Closed without CONNACK, counted under this MQTT_* code. */
  | { kind: 'refused'; refusal: 'MQTT_MALFORMED' | 'MQTT_PACKET_TOO_LARGE' | 'MQTT_CONNECT_TIMEOUT' | 'MQTT_KEEPALIVE_REFUSED' }
  /** A complete CONNECT whose body the broker's parser judges: a CONNACK refusal or a close, counted as it may be. */
  | { kind: 'parsed' };

export interface PreInput {
  kind: string;
  bytes: Buffer;
  expect: PreExpect;
}

const pick = <T>(r: Rng, xs: readonly T[]): T => r.pick(xs);

function deviceConnect(r: Rng, ctx: MqttContext, over: Partial<ConnectFields> = {}): Buffer {
  const d = ctx.device;
  return connect({
    clientId: d.clientId,
    username: d.id,
    password: makeConnectPassword(d.id, d.clientId, d.secretKey),
    keepalive: 1 + r.int(ctx.maxKeepaliveS),
    ...over,
  });
}

/** The expected verdict of a byte string by the header rules alone; `parsed` when the broker must judge a complete CONNECT. */
export function preVerdict(bytes: Uint8Array, limit: number): PreExpect {
  const v = readStream(bytes, limit, false);
  if (v.refusal) return { kind: 'refused', refusal: v.refusal };
  if (v.packets.length === 0) return { kind: 'refused', refusal: 'MQTT_CONNECT_TIMEOUT' };
  return { kind: 'parsed' };
}

/** One connection's worth of bytes before any CONNACK, and the verdict it must get. */
export function preConnectInput(r: Rng, ctx: MqttContext): PreInput {
  const d = ctx.device;
  const L = ctx.maxConnectBytes;
  const mk = (kind: string, bytes: Buffer, expect?: PreExpect): PreInput => ({ kind, bytes, expect: expect ?? preVerdict(bytes, L) });
  const x = r.int(100);
  if (x < 12) {
    // Random bytes, sometimes behind a CONNECT type byte.
    const b = Buffer.from(r.bytes(1 + r.int(r.bool(0.9) ? 64 : 2000)));
    if (r.bool(0.1)) b[0] = 0x10;
    return mk('random', b);
  }
  if (x < 22) {
    // A fixed header that no client sends first, or at all; reserved flags on a CONNECT.
    const first = r.bool(0.5) ? (r.int(16) << 4) | r.int(16) : 0x10 | (1 + r.int(15));
    const body = Buffer.from(r.bytes(r.int(40)));
    return mk('fixed-header', Buffer.concat([Buffer.from([first]), varint(body.length), body]));
  }
  if (x < 30) {
    // Remaining Length: five bytes, non-minimal forms, the maximum, cut short.
    const body = deviceConnect(r, ctx).subarray(2);
    const len = pick(r, [
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]),
      Buffer.from([0x80, 0x80, 0x80, 0x80, 0x00]),
      Buffer.from([0x80, 0x00]),
      Buffer.from([0xff, 0xff, 0xff, 0x7f]),
      Buffer.from([0x80 | (body.length & 0x7f), 0x80, 0x00]),
      Buffer.from([0xff]),
      Buffer.from([]),
    ]);
    return mk('varint', Buffer.concat([Buffer.from([0x10]), len, r.bool(0.5) ? body : Buffer.alloc(0)]));
  }
  if (x < 36) {
    // A huge declared length: refused on its header, whatever follows (a few KB are sent).
    const declared = pick(r, [L, L + 1, 65_536, 1_048_576, 200 * 1_048_576, 268_435_455]);
    return mk('huge-length', Buffer.concat([Buffer.from([0x10]), varint(declared), Buffer.from(r.bytes(r.int(4096)))]));
  }
  if (x < 39) {
    // A CONNECT over the limit, sent whole (a password of tens of KB).
    const pw = r.bytes(L + r.int(60_000));
    return mk('oversized-connect', connect({ clientId: d.clientId, username: d.id, password: pw }));
  }
  if (x < 41) {
    // Cut short: the listener's CONNECT deadline ends it.
    const full = deviceConnect(r, ctx);
    return mk('cut', full.subarray(0, r.int(full.length)));
  }
  if (x < 58) {
    // CONNECT with one broken field (§3.1.2): the broker's parser or its rules judge it.
    const base: ConnectFields = { clientId: d.clientId, username: d.id, password: makeConnectPassword(d.id, d.clientId, d.secretKey), keepalive: 30 };
    let f: ConnectFields;
    switch (r.int(10)) {
      case 0:
        f = { ...base, protocol: pick(r, ['MQTX', 'mqtt', 'MQIsdp', '', 'MQTT\u0000', 'M'.repeat(300)]) };
        break;
      case 1:
        f = { ...base, level: pick(r, [0, 1, 2, 5, 6, 127, 255]) };
        break;
      case 2:
        f = { ...base, flags: r.int(256) };
        break;
      case 3:
        f = { ...base, clientId: pick(r, ['', 'x'.repeat(24), 'x'.repeat(2000), 'vp-dev-', `vp-dev-${ctx.otherDeviceId}`, '\u0000', '\uffff']) };
        break;
      case 4:
        f = { ...base, username: pick(r, ['', 'x', d.id.toUpperCase(), `${d.id}0`, '\u00e9'.repeat(9)]) };
        break;
      case 5:
        f = { ...base, password: pick(r, [new Uint8Array(0), r.bytes(87), r.bytes(89), r.bytes(88), r.bytes(1000)]) };
        break;
      case 6:
        f = { ...base, username: undefined };
        break;
      case 7:
        f = { ...base, will: { topic: pick(r, ['a', '#', '', frameTopic(d.id)]), payload: r.bytes(r.int(100)) } };
        break;
      case 8:
        f = { ...base, flags: 0x80 | 0x40 | 0x02 | 0x18 }; // will QoS 3 without the will flag
        break;
      default: {
        // Field lengths that point past the packet.
        const c = connect(base);
        const at = 2 + 10 + r.int(c.length - 12);
        c.writeUInt16BE(r.int(65_536), Math.min(at, c.length - 2));
        return mk('connect-length', c);
      }
    }
    return mk('connect-field', connect(f));
  }
  if (x < 62) {
    // Keep-alive 0 (never checked) or above the limit: closed without CONNACK.
    const k = pick(r, [0, ctx.maxKeepaliveS + 1, 65_535]);
    return mk('keepalive', deviceConnect(r, ctx, { keepalive: k }), { kind: 'refused', refusal: 'MQTT_KEEPALIVE_REFUSED' });
  }
  if (x < 76) {
    // Device CONNECTs the authenticator refuses, each for a known reason (§6.1).
    const now = Date.now();
    switch (r.int(6)) {
      case 0:
        return mk('token', deviceConnect(r, ctx, { password: r.bytes(88) }), { kind: 'connack', code: 4, connect: 'CONNECT_BAD_SIGNATURE' });
      case 1:
        return mk('token', deviceConnect(r, ctx, { password: makeConnectPassword(d.id, d.clientId, d.secretKey, now - 3_600_000) }), {
          kind: 'connack',
          code: 4,
          connect: 'CONNECT_STALE',
        });
      case 2: {
        const u = ctx.unenrolled;
        return mk('token', connect({ clientId: u.clientId, username: u.id, password: makeConnectPassword(u.id, u.clientId, u.secretKey), keepalive: 30 }), {
          kind: 'connack',
          code: 5,
          connect: 'CONNECT_UNKNOWN_DEVICE',
        });
      }
      case 3:
        return mk('token', deviceConnect(r, ctx, { password: makeConnectPassword(d.id, `${d.clientId}x`, d.secretKey) }), {
          kind: 'connack',
          code: 4,
          connect: 'CONNECT_BAD_SIGNATURE',
        });
      case 4:
        return mk('token', deviceConnect(r, ctx, { clientId: `x${d.clientId}` }), { kind: 'connack', code: 4, connect: 'CONNECT_MALFORMED' });
      default:
        return mk('token', deviceConnect(r, ctx, { password: r.bytes(pick(r, [0, 1, 87, 89])) }), { kind: 'connack', code: 4, connect: 'CONNECT_MALFORMED' });
    }
  }
  if (x < 84) {
    // Researcher CONNECTs with broken logins: refused by the gate (CONNACK 2, 3 when its login budget is spent, 4 or 5), counted there.
    const now = Date.now();
    const nonce = Buffer.from(r.bytes(16)).toString('hex');
    const text = challengeText({
      gateway: r.bool(0.7) ? ctx.gatewayId : 'gw-elsewhere',
      account: ctx.researcherAddress,
      purpose: 'mqtt',
      nonce,
      issuedAtMs: now - r.int(120_000),
      expiresAtMs: now + 60_000,
    });
    const login = encodeLogin({ text, signature: `0x${Buffer.from(r.bytes(65)).toString('hex')}` });
    // An 0x address as user name makes it a researcher's CONNECT whatever the password; without one, only a login in the documented form does.
    const whole = r.bool(0.8);
    const username = whole
      ? pick(r, [ctx.researcherAddress, '', `0x${Buffer.from(r.bytes(20)).toString('hex')}`])
      : pick(r, [ctx.researcherAddress, `0x${Buffer.from(r.bytes(20)).toString('hex')}`]);
    const password = whole ? Buffer.from(login) : Buffer.from(`${login.slice(0, r.int(login.length))}`);
    return mk('researcher', connect({ clientId: r.bool(0.2) ? `vp-dev-${ctx.otherDeviceId}` : `r-${nonce.slice(0, 8)}`, username, password, keepalive: 30 }), {
      kind: 'researcher-refused',
    });
  }
  if (x < 96) {
    // Byte mutations of a valid CONNECT made by mqtt-packet.
    const valid = generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: d.clientId,
      keepalive: 30,
      username: d.id,
      password: Buffer.from(makeConnectPassword(d.id, d.clientId, d.secretKey)),
    });
    const b = Buffer.from(valid);
    for (let k = 1 + r.int(3); k > 0; k--) {
      const i = r.int(b.length);
      switch (r.int(3)) {
        case 0:
          b[i] = b[i]! ^ (1 << r.int(8));
          break;
        case 1:
          b[i] = r.int(256);
          break;
        default:
          b[i] = pick(r, [0x00, 0xff, 0x7f, 0x80]);
      }
    }
    return mk('connect-bytes', r.bool(0.2) ? b.subarray(0, r.int(b.length)) : b);
  }
  // A valid device CONNECT: CONNACK 0 (the session's device, alone on its client id at that moment).
  return mk('valid', deviceConnect(r, ctx), { kind: 'accepted' });
}

// ---------------------------------------------------------------- after CONNECT

export interface SessionContext {
  device: { id: string };
  otherDeviceId: string;
  /** Frames this device signed (the mutation bases), and a fresh one on demand. */
  frames: { all: Uint8Array[]; small: Uint8Array[] };
  freshFrame(): Uint8Array;
  maxDevicePacketBytes: number;
}

/** What an input after CONNECT must get back before the PINGRESP that follows it. */
export type SessionExpect =
  /** These answers (in any order with the PINGRESP), then the PINGRESP. */
  | { kind: 'answers'; answers: ('puback' | 'pubrec' | 'pubrel' | 'pubcomp' | 'suback' | 'unsuback' | 'pingresp')[]; publishes: number }
  /** Closed by the listener under this code. */
  | { kind: 'refused'; refusal: HeaderRefusal }
  /** Closed by the broker (its parser or a protocol rule), no MQTT_* count. */
  | { kind: 'closed'; publishes: 0 }
  /** Left inside a packet: closed when the keep-alive runs out. */
  | { kind: 'stalled' }
  /** Whatever the parser makes of it: answers or a close. `publishes` at most. */
  | { kind: 'any'; publishes: number };

export interface SessionInput {
  kind: string;
  bytes: Buffer;
  expect: SessionExpect;
  /** Its PUBLISH carried a fresh, valid frame of the device (must be accepted). */
  fresh?: boolean;
}

/** Topic names a PUBLISH may not carry (§4.7.1: no wildcards; §4.7.3: at least one character): aedes closes the connection. */
const INVALID_TOPICS = ['a/#', '#', '+', 'vp/+/dev', '', 'sport/tennis#'];

/** A packet after CONNACK 0, with a PINGREQ after it in the same write, and what must come back. */
export function sessionInput(r: Rng, ctx: SessionContext, id: number): SessionInput {
  const limit = ctx.maxDevicePacketBytes;
  const own = frameTopic(ctx.device.id);
  const x = r.int(100);
  const withVerdict = (kind: string, bytes: Buffer, ok: SessionExpect): SessionInput => {
    const v = readStream(Buffer.concat([bytes, PINGREQ]), limit, true);
    if (v.refusal) return { kind, bytes, expect: { kind: 'refused', refusal: v.refusal } };
    if (v.partial) return { kind, bytes, expect: { kind: 'stalled' } };
    // Whatever the broker's parser makes of them, at most the complete PUBLISH packets reach the pipeline.
    if (ok.kind === 'any') return { kind, bytes, expect: { kind: 'any', publishes: v.packets.filter((p) => p.type === 3).length } };
    return { kind, bytes, expect: ok };
  };
  if (x < 45) {
    // PUBLISH of a mutated frame of this device, on its own topic (the common case).
    const qos = r.bool(0.7) ? 1 : r.bool(0.5) ? 0 : 2;
    const dup = r.bool(0.15);
    const retain = r.bool(0.05);
    const fresh = r.bool(0.02);
    const payload = fresh ? ctx.freshFrame() : mutateFrame(r, ctx.frames);
    const answers: ('puback' | 'pubrec')[] = qos === 1 ? ['puback'] : qos === 2 ? ['pubrec'] : [];
    const input = withVerdict(`publish-q${qos}${dup ? '-dup' : ''}`, publish(own, payload, { qos, dup, retain, id }), {
      kind: 'answers',
      answers,
      publishes: 1,
    });
    return fresh ? { ...input, fresh: input.expect.kind === 'answers' } : input;
  }
  if (x < 55) {
    // PUBLISH on another topic: another device's, the researchers', $SYS, one with wildcards (invalid).
    const invalid = r.bool(0.3);
    const topic = invalid
      ? r.pick(INVALID_TOPICS)
      : r.pick([
          frameTopic(ctx.otherDeviceId),
          `vp/consented/pt-x/heart_rate`,
          `vp/researcher/0x${'0'.repeat(40)}/notices`,
          '$SYS/broker',
          `${TOPIC_PREFIX}/dev`,
          'x'.repeat(1 + r.int(2000)),
          '\u00e9/\u4e2d',
          'a\u0000b',
        ]);
    const qos = r.int(3);
    const answers: ('puback' | 'pubrec')[] = qos === 1 ? ['puback'] : qos === 2 ? ['pubrec'] : [];
    return withVerdict(
      invalid ? 'publish-bad-topic' : 'publish-topic',
      publish(topic, mutateFrame(r, ctx.frames), { qos, id }),
      invalid ? { kind: 'closed', publishes: 0 } : { kind: 'answers', answers, publishes: 1 },
    );
  }
  if (x < 59) {
    // A PUBLISH larger than a device may send, declared (only the header and a little are sent).
    const declared = r.pick([limit - 4, limit + 1, limit * 2, 1_048_576, 268_435_455]);
    const bytes = Buffer.concat([Buffer.from([0x32]), varint(declared), field(own), Buffer.from([0, id & 0xff]), Buffer.from(r.bytes(r.int(2048)))]);
    return withVerdict('publish-huge', bytes, { kind: 'any', publishes: 0 });
  }
  if (x < 62) {
    // QoS 3.
    return withVerdict('publish-qos3', Buffer.from([0x36, ...publish(own, ctx.frames.small[0]!, { qos: 1, id }).subarray(1)]), {
      kind: 'closed',
      publishes: 0,
    });
  }
  if (x < 70) {
    // SUBSCRIBE: devices are granted nothing (SUBACK 0x80 for each filter).
    const n = 1 + r.int(r.bool(0.9) ? 4 : 200);
    const subs = Array.from({ length: n }, () => ({
      topic: r.pick(['#', '+/+', own, `vp/consented/+/heart_rate`, 'vp/researcher/#', '$SYS/#', `x${r.int(1000)}`]),
      qos: r.int(3) as 0 | 1 | 2,
    }));
    return withVerdict('subscribe', Buffer.from(generate({ cmd: 'subscribe', messageId: id, subscriptions: subs })), {
      kind: 'answers',
      answers: ['suback'],
      publishes: 0,
    });
  }
  if (x < 73) {
    return withVerdict('unsubscribe', Buffer.from(generate({ cmd: 'unsubscribe', messageId: id, unsubscriptions: ['#', own] })), {
      kind: 'answers',
      answers: ['unsuback'],
      publishes: 0,
    });
  }
  if (x < 76) {
    // Acks a client may send, for ids the broker never used: PUBREC gets a PUBREL, PUBREL a PUBCOMP, the others nothing.
    const t = r.pick([0x40, 0x50, 0x62, 0x70]);
    return withVerdict('client-ack', packet(t, Buffer.from([id >> 8, id & 0xff])), {
      kind: 'answers',
      answers: t === 0x62 ? ['pubcomp'] : t === 0x50 ? ['pubrel'] : [],
      publishes: 0,
    });
  }
  if (x < 82) {
    // Types no client sends, reserved flag bits, a second CONNECT, a Remaining Length over 4 bytes.
    const bytes = r.pick([
      Buffer.from([0x00, 0x00]),
      Buffer.from([0xf0, 0x00]),
      Buffer.from([0x20, 0x02, 0x00, 0x00]),
      Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00]),
      Buffer.from([0xb0, 0x02, 0x00, 0x01]),
      Buffer.from([0xd0, 0x00]),
      Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x23, 0x00]),
      Buffer.from([0xc1, 0x00]),
      Buffer.from([0x60, 0x02, 0x00, 0x01]),
      connect({ clientId: 'again', keepalive: 30 }),
      Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
    ]);
    return withVerdict('bad-header', bytes, { kind: 'closed', publishes: 0 });
  }
  if (x < 86) {
    // Valid headers with broken bodies: SUBSCRIBE with no filter or QoS 3, a PUBLISH shorter than its topic length.
    const bytes = r.pick([
      packet(0x82, Buffer.from([id >> 8, id & 0xff])),
      packet(0x82, Buffer.concat([Buffer.from([0, 1]), field('a'), Buffer.from([3])])),
      packet(0xa2, Buffer.from([0, 1])),
      packet(0x32, Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.from('ab')])),
      packet(0x30, Buffer.alloc(0)),
      packet(0xc0, Buffer.from([1])),
    ]);
    return withVerdict('bad-body', bytes, { kind: 'any', publishes: 0 });
  }
  if (x < 95) {
    // A valid PUBLISH with bytes flipped in its first 40 (mostly after the fixed header: topic, packet id, frame header).
    const b = publish(own, mutateFrame(r, ctx.frames), { qos: 1, id });
    let head = 1;
    while (b[head]! & 0x80) head++;
    const skip = r.bool(0.85) ? head + 1 : 0;
    for (let k = 1 + r.int(2); k > 0; k--) {
      const i = skip + r.int(Math.min(b.length - skip, 40));
      b[i] = b[i]! ^ (1 << r.int(8));
    }
    return withVerdict('publish-bytes', b, { kind: 'any', publishes: 0 });
  }
  if (x < 97) {
    // Random bytes.
    return withVerdict('random', Buffer.from(r.bytes(1 + r.int(100))), { kind: 'any', publishes: 0 });
  }
  if (r.bool(0.8)) return withVerdict('pingreq', Buffer.from(PINGREQ), { kind: 'answers', answers: ['pingresp'], publishes: 0 });
  // A PUBLISH cut short: its declared length runs past what is sent (the PINGREQ after it too), so the keep-alive ends the connection.
  const payload = ctx.frames.small[r.int(ctx.frames.small.length)]!;
  const full = publish(own, payload, { qos: 1, id });
  return withVerdict('publish-cut', Buffer.concat([Buffer.from([0x32]), varint(full.length + 64), full.subarray(2, 2 + r.int(full.length - 2))]), {
    kind: 'stalled',
  });
}

// ---------------------------------------------------------------- after a researcher's CONNECT

export interface ResearcherContext {
  /** The researcher's address, as its notices topic spells it (lower case). */
  address: string;
  /** Pseudonyms: the patient who granted the fuzz researcher heart_rate, and others. */
  patients: readonly string[];
  deviceId: string;
  maxResearcherPacketBytes: number;
}

/** A topic filter MQTT allows (§4.7.1): not empty, no U+0000, '+' alone in its level, '#' alone in the last one. */
export function validFilter(f: string): boolean {
  if (f === '' || f.includes('\u0000')) return false;
  const levels = f.split('/');
  return levels.every((l, i) => (l.includes('#') ? l === '#' && i === levels.length - 1 : !l.includes('+') || l === '+'));
}

/** A filter a researcher may try: consented topics of every shape, notices (its own and others'), device topics, wildcards; 5 % are invalid ones. */
function researcherFilter(r: Rng, ctx: ResearcherContext): string {
  if (r.bool(0.05)) return r.pick(['', 'a/#/b', 'vp/consented/#/heart_rate', 'vp/consented/pt+/x', '#/', 'a\u0000b']);
  const patient = r.bool(0.8) ? r.pick(ctx.patients) : r.pick(['+', 'x', 'pt-' + 'a'.repeat(70), 'pt-\u00e9']);
  const metric = r.pick(['heart_rate', 'spo2', 'ecg', '+', '#', 'heart_rate/x', 'HEART_RATE', 'steps']);
  return r.pick([
    `vp/consented/${patient}/${metric}`,
    `vp/consented/${patient}/${metric}`,
    `vp/consented/${patient}/${metric}`,
    `vp/consented/${patient}`,
    'vp/consented/#',
    'vp/consented/+/+',
    `vp/researcher/${ctx.address}/notices`,
    `vp/researcher/0x${'1'.repeat(40)}/notices`,
    'vp/researcher/+/notices',
    `vp/v1/dev/${ctx.deviceId}/frames`,
    '#',
    '+',
    '$SYS/#',
    `vp/consented/${patient}/${metric === '#' ? 'x' : metric}/${'x'.repeat(r.int(3000))}`,
  ]);
}

/**
 * A packet after a researcher's CONNACK 0 (researchers subscribe; they may not publish), with
 * the filters of a SUBSCRIBE for the consent check the caller makes on its SUBACK.
 */
export function researcherInput(r: Rng, ctx: ResearcherContext, id: number): SessionInput & { filters?: string[] } {
  const limit = ctx.maxResearcherPacketBytes;
  const withVerdict = (kind: string, bytes: Buffer, ok: SessionExpect): SessionInput => {
    const v = readStream(Buffer.concat([bytes, PINGREQ]), limit, true);
    if (v.refusal) return { kind, bytes, expect: { kind: 'refused', refusal: v.refusal } };
    if (v.partial) return { kind, bytes, expect: { kind: 'stalled' } };
    if (ok.kind === 'any') return { kind, bytes, expect: { kind: 'any', publishes: 0 } };
    return { kind, bytes, expect: ok };
  };
  const x = r.int(100);
  if (x < 65) {
    const filters = Array.from({ length: 1 + r.int(r.bool(0.9) ? 4 : 40) }, () => researcherFilter(r, ctx));
    const qos = filters.map(() => r.int(3));
    // Filters MQTT forbids close the connection; the broker judges them.
    const invalid = !filters.every(validFilter);
    const body = Buffer.concat([Buffer.from([id >> 8, id & 0xff]), ...filters.flatMap((f, i) => [field(f), Buffer.from([qos[i]!])])]);
    const input = withVerdict(
      'r-subscribe',
      packet(0x82, body),
      invalid ? { kind: 'any', publishes: 0 } : { kind: 'answers', answers: ['suback'], publishes: 0 },
    );
    return { ...input, filters };
  }
  if (x < 77) {
    const filters = Array.from({ length: 1 + r.int(4) }, () => researcherFilter(r, ctx)).filter((f) => f !== '');
    if (!filters.length) filters.push('#');
    return withVerdict(
      'r-unsubscribe',
      packet(0xa2, Buffer.concat([Buffer.from([id >> 8, id & 0xff]), ...filters.map((f) => field(f))])),
      filters.every(validFilter) ? { kind: 'answers', answers: ['unsuback'], publishes: 0 } : { kind: 'any', publishes: 0 },
    );
  }
  if (x < 80) {
    // Researchers do not publish: the broker refuses it (and closes the connection).
    const topic = r.pick([`vp/consented/${r.pick(ctx.patients)}/heart_rate`, `vp/v1/dev/${ctx.deviceId}/frames`, `vp/researcher/${ctx.address}/notices`, 'x']);
    return withVerdict('r-publish', publish(topic, r.bytes(r.int(200)), { qos: r.int(3), id }), { kind: 'any', publishes: 0 });
  }
  if (x < 95) return withVerdict('r-pingreq', Buffer.from(PINGREQ), { kind: 'answers', answers: ['pingresp'], publishes: 0 });
  if (x < 98) {
    const bytes = r.pick([
      Buffer.from([0x00, 0x00]),
      Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x23, 0x00]),
      connect({ clientId: 'again', keepalive: 30 }),
      Buffer.concat([Buffer.from([0x82]), varint(limit + 1)]),
      packet(0x82, Buffer.from([0, 1])),
    ]);
    return withVerdict('r-bad-header', bytes, { kind: 'any', publishes: 0 });
  }
  return withVerdict('r-random', Buffer.from(r.bytes(1 + r.int(60))), { kind: 'any', publishes: 0 });
}
