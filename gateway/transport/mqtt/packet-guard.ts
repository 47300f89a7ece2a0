/**
 * An incremental reader of MQTT 3.1.1 fixed headers (OASIS mqtt-v3.1.1 §2.2), for the bytes a
 * client sends before they reach the broker's parser. It never buffers: it only follows packet
 * boundaries (type byte, Remaining Length varint, then skips the body), so it can judge every
 * packet on its declared length the moment the header is complete, before any of its body is
 * held anywhere. aedes has no maximum packet size and buffers a packet whole: without this an
 * anonymous socket's 200 MB PUBLISH is 200 MB of gateway memory.
 *
 * Stages of a connection:
 *   connect   the first packet; it must be a CONNECT [MQTT-3.1.0-1] of at most `connectLimit`
 *   held      the CONNECT is complete: nothing after it is looked at until the broker has
 *             decided on it and calls admit() with the limit of the role it admitted
 *   open      every packet is judged against that limit
 *
 * No sockets here: gateway/transport/mqtt/guarded-socket.ts feeds it, and the unit tests feed it
 * bytes in every split.
 *
 * @example
 *   const g = new PacketGuard(4096);
 *   const r = g.scan(chunk);           // { pass: n } or { refused: 'MQTT_PACKET_TOO_LARGE', ... }
 *   // pass the first r.pass bytes on; if r.pass < chunk.length the rest waits for g.admit(limit)
 */
import type { MqttRefusal } from './refusals.js';

/** MQTT control packet types (§2.2.1). */
export const PACKET_TYPE = { CONNECT: 1, PUBLISH: 3, PUBREL: 6, SUBSCRIBE: 8, UNSUBSCRIBE: 10 } as const;

/** Types a client may send to a server (§2.2.1 "Direction of flow"). */
const CLIENT_TO_SERVER = new Set([1, 3, 4, 5, 6, 7, 8, 10, 12, 14]);

/** The largest Remaining Length has 4 bytes (§2.2.3): 268,435,455. */
const MAX_LENGTH_BYTES = 4;

export type ScanResult = { pass: number } | { refused: MqttRefusal; detail: { limit?: number; declared?: number; packetType: number; why?: string } };

type Stage = 'connect' | 'held' | 'open';

export class PacketGuard {
  private stage: Stage = 'connect';
  private limit: number;
  /** Body bytes of the current packet still to come. */
  private bodyLeft = 0;
  /** -1 between packets; else the type of the packet whose header is being read. */
  private type = -1;
  private lengthBytes = 0;
  private length = 0;
  private multiplier = 1;
  private refusal: ScanResult | undefined;
  /** Packets whose header was read completely. */
  packets = 0;

  /** @param connectLimit the largest CONNECT packet, fixed header included, in bytes. */
  constructor(connectLimit: number) {
    if (!Number.isInteger(connectLimit) || connectLimit < 2) throw new RangeError(`connectLimit must be an integer >= 2, got ${connectLimit}`);
    this.limit = connectLimit;
  }

  /** The CONNECT was read and waits for the broker's verdict. */
  get held(): boolean {
    return this.stage === 'held';
  }

  /**
   * The broker accepted the CONNECT: packets after it may be up to `limit` bytes each. Ignored
   * before the CONNECT was read whole (the broker cannot have decided on it then).
   */
  admit(limit: number): void {
    if (!Number.isInteger(limit) || limit < 2) throw new RangeError(`limit must be an integer >= 2, got ${limit}`);
    if (this.stage === 'connect') return;
    this.limit = limit;
    this.stage = 'open';
  }

  /**
   * Follows `chunk` from where the previous one ended.
   * @returns how many leading bytes of `chunk` may go to the broker: all of them, or fewer when
   *   the CONNECT ends inside the chunk (the rest is scanned again after admit()); or the refusal,
   *   as soon as a header breaks a rule. After a refusal every call returns the same refusal.
   */
  scan(chunk: Uint8Array): ScanResult {
    if (this.refusal) return this.refusal;
    let i = 0;
    while (i < chunk.length) {
      if (this.stage === 'held') return { pass: i };
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - i);
        i += n;
        this.bodyLeft -= n;
        if (this.bodyLeft === 0) this.endPacket();
        continue;
      }
      const b = chunk[i++]!;
      if (this.type < 0) {
        const bad = this.checkTypeByte(b);
        if (bad) return this.refuse(bad);
        continue;
      }
      // Remaining Length, 7 bits per byte, least significant group first (§2.2.3).
      this.length += (b & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if (b & 0x80) {
        if (this.lengthBytes === MAX_LENGTH_BYTES)
          return this.refuse({ refused: 'MQTT_MALFORMED', detail: { packetType: this.type, why: 'remaining length longer than 4 bytes' } });
        continue;
      }
      const declared = 1 + this.lengthBytes + this.length;
      if (declared > this.limit) return this.refuse({ refused: 'MQTT_PACKET_TOO_LARGE', detail: { limit: this.limit, declared, packetType: this.type } });
      this.packets++;
      this.bodyLeft = this.length;
      if (this.bodyLeft === 0) this.endPacket();
    }
    return { pass: i };
  }

  private checkTypeByte(b: number): ScanResult | undefined {
    const type = b >> 4;
    const flags = b & 0x0f;
    const malformed = (why: string): ScanResult => ({ refused: 'MQTT_MALFORMED', detail: { packetType: type, why } });
    if (this.stage === 'connect' && this.packets === 0 && type !== PACKET_TYPE.CONNECT) return malformed('first packet is not CONNECT [MQTT-3.1.0-1]');
    if (this.packets > 0 && type === PACKET_TYPE.CONNECT) return malformed('second CONNECT [MQTT-3.1.0-2]');
    if (!CLIENT_TO_SERVER.has(type)) return malformed('packet type a client never sends (§2.2.1)');
    // §2.2.2: PUBLISH carries DUP/QoS/RETAIN (QoS 3 is malformed [MQTT-3.3.1-4]); PUBREL,
    // SUBSCRIBE and UNSUBSCRIBE carry 0010; every other type 0000.
    if (type === PACKET_TYPE.PUBLISH) {
      if ((flags & 0x06) === 0x06) return malformed('PUBLISH with QoS 3 [MQTT-3.3.1-4]');
    } else if (flags !== (type === PACKET_TYPE.PUBREL || type === PACKET_TYPE.SUBSCRIBE || type === PACKET_TYPE.UNSUBSCRIBE ? 0x02 : 0x00)) {
      return malformed('reserved flag bits (§2.2.2)');
    }
    this.type = type;
    this.lengthBytes = 0;
    this.length = 0;
    this.multiplier = 1;
    return undefined;
  }

  private endPacket(): void {
    if (this.stage === 'connect' && this.type === PACKET_TYPE.CONNECT) this.stage = 'held';
    this.type = -1;
  }

  private refuse(r: ScanResult): ScanResult {
    this.refusal = r;
    return r;
  }
}
