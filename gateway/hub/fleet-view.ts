/**
 * The hospital as the hub hears it on the uplink (docs/fleet.md, "Watching the fleet"): each
 * gateway's retained status and last anchor, and each device with the gateway its newest frame
 * came through. In memory, rebuilt from the broker's retained status messages and the frames
 * that follow after a restart; bounded (the least recently heard device is forgotten first).
 */
import type { UplinkAnchor, UplinkStatusMessage } from '../uplink/envelope.js';

export interface FleetGateway {
  gateway: string;
  state: 'online' | 'offline';
  /** When the gateway last published its status (its clock), or undefined for a last will. */
  statusAtMs?: number;
  framesPerS?: number;
  spoolDepth?: number;
  storageLag?: number;
  uplinkLag?: number;
  lastAnchoredBatch?: string;
  /** From its newest anchor message. */
  lastAnchor?: { batch: string; txHash: string; block: number; confirmedAtMs: number; chainAddress: string };
  /** The hub's clock when it last heard anything of this gateway. */
  lastHeardMs: number;
  /** Frames heard from it since the hub started, and devices whose newest frame came through it. */
  frames: number;
  devices: number;
}

export interface FleetDevice {
  device: string;
  /** The gateway of its newest frame (highest seq) the hub heard. */
  gateway: string;
  /** Its newest frame's seq, when the hub read it ('0' when only heard: frames of a patient nobody follows on this hub are not parsed). */
  seq: string;
  /** That gateway's clock when it received the frame. */
  receivedAtMs: number;
}

export interface FleetSnapshot {
  gateways: FleetGateway[];
  devices: FleetDevice[];
  /** Devices not listed (the snapshot lists at most `limit`). */
  devicesOmitted: number;
}

export class FleetView {
  private readonly gateways = new Map<string, FleetGateway>();
  private readonly devices = new Map<string, { gateway: string; seq: bigint; receivedAtMs: number }>();

  constructor(
    private readonly maxDevices = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  gatewayStatus(s: UplinkStatusMessage): void {
    const g = this.gateway(s.gateway);
    g.state = s.state;
    if (s.atMs !== undefined) g.statusAtMs = s.atMs;
    for (const k of ['framesPerS', 'spoolDepth', 'storageLag', 'uplinkLag'] as const) if (s[k] !== undefined) g[k] = s[k];
    if (s.lastAnchoredBatch !== undefined) g.lastAnchoredBatch = s.lastAnchoredBatch.toString();
  }

  gatewayAnchor(a: UplinkAnchor): void {
    const g = this.gateway(a.gateway);
    if (g.lastAnchor && BigInt(g.lastAnchor.batch) >= a.batch) return;
    g.lastAnchor = { batch: a.batch.toString(), txHash: a.txHash, block: a.block, confirmedAtMs: a.confirmedAtMs, chainAddress: a.chainAddress };
  }

  removeGateway(id: string): void {
    this.gateways.delete(id);
  }

  deviceSeen(device: string, gateway: string, seq: bigint, receivedAtMs: number): void {
    this.gateway(gateway).frames++;
    const d = this.devices.get(device);
    if (d && d.seq >= seq) return; // an older frame (a resend, a late uplink) does not move the device back
    this.devices.delete(device);
    this.devices.set(device, { gateway, seq, receivedAtMs });
    if (this.devices.size > this.maxDevices) this.devices.delete(this.devices.keys().next().value as string);
  }

  /**
   * A frame of a device heard on `gateway`'s uplink and not parsed (nobody follows its patient
   * here): the device is placed there as of `atMs`, its seq left as last known. A late frame of a
   * lagging gateway can place it back there for a moment; the next frame puts it right.
   */
  deviceHeard(device: string, gateway: string, atMs: number): void {
    this.gateway(gateway).frames++;
    const d = this.devices.get(device);
    this.devices.delete(device);
    this.devices.set(device, { gateway, seq: d?.seq ?? 0n, receivedAtMs: atMs });
    if (this.devices.size > this.maxDevices) this.devices.delete(this.devices.keys().next().value as string);
  }

  /** Where a device is now (the gateway of its newest frame), if the hub has heard it. */
  whereIs(device: string): string | undefined {
    return this.devices.get(device)?.gateway;
  }

  snapshot(limit = 1000): FleetSnapshot {
    const perGateway = new Map<string, number>();
    for (const d of this.devices.values()) perGateway.set(d.gateway, (perGateway.get(d.gateway) ?? 0) + 1);
    const gateways = [...this.gateways.values()]
      .map((g) => ({ ...g, devices: perGateway.get(g.gateway) ?? 0 }))
      .sort((a, b) => a.gateway.localeCompare(b.gateway));
    const all = [...this.devices].sort(([a], [b]) => a.localeCompare(b));
    return {
      gateways,
      devices: all.slice(0, limit).map(([device, d]) => ({ device, gateway: d.gateway, seq: d.seq.toString(), receivedAtMs: d.receivedAtMs })),
      devicesOmitted: Math.max(0, all.length - limit),
    };
  }

  private gateway(id: string): FleetGateway {
    let g = this.gateways.get(id);
    if (!g) {
      g = { gateway: id, state: 'online', lastHeardMs: this.now(), frames: 0, devices: 0 };
      this.gateways.set(id, g);
    }
    g.lastHeardMs = this.now();
    return g;
  }
}
