/**
 * The BLE central: finds VitalProof wearables through BlueZ, connects to enrolled ones, and
 * feeds their frames to the same ingest pipeline as MQTT (transport 'ble').
 *
 * - Discovery is filtered by the VitalProof service UUID (§10.2). node-ble offers no
 *   InterfacesAdded event, so the adapter's device list is read every `scanIntervalMs`.
 * - Only enrolled, unrevoked devices are connected: the scan-response service data (1 byte
 *   version ‖ 8-byte device id, §10.11) is a hint that spares a connection to a stranger; the
 *   info characteristic, read after connecting, decides (§10.3). Refused devices are left
 *   alone for `refuseHoldMs`, then looked at again (an enrolment may have landed since).
 * - Every device has its own connection and backoff, so a device that misbehaves is
 *   disconnected and counted without stalling the others; at most `maxConnections` at once,
 *   and at most CONNECTS_AT_ONCE connection attempts in flight (BlueZ creates LE connections
 *   one at a time anyway).
 * - Reconnection: at once after a loss in transit or a dropped link, then with exponential
 *   backoff and jitter while attempts keep failing.
 */
import { isError } from '../../../firmware-proto/coded-error.js';
import {
  decodeInfo,
  GattValueError,
  infoMatchesKey,
  CONTROL_CHARACTERISTIC_UUID,
  FRAME_CHARACTERISTIC_UUID,
  INFO_CHARACTERISTIC_UUID,
  VITALPROOF_SERVICE_UUID,
} from '../../../firmware-proto/gatt.js';
import { isDeviceId } from '../../../firmware-proto/frame.js';
import type { BleReason, ConnectReason } from '../../../firmware-proto/reasons.js';
import type { IngestPipeline } from '../../ingest/pipeline.js';
import type { DeviceStates } from '../../ingest/device-state.js';
import type { DeviceRegistry } from '../../registry/registry.js';
import { revokedAt } from '../../registry/registry.js';
import type { Metrics } from '../../status/metrics.js';
import type { Logger } from '../../log.js';
import { BluezAdapter, dbusErrorText, type BluezDevice } from './bluez.js';
import { BleConnection } from './connection.js';

export interface BleCentralOptions {
  /** BlueZ adapter name (hci0); empty for the first one BlueZ lists. */
  adapter: string;
  scanIntervalMs: number;
  maxConnections: number;
  connectTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** Reassembler stall limit (§10.6 rule 0). */
  stallMs: number;
  /** How long a refused device (not enrolled, revoked, wrong key, broken profile) is left alone. */
  refuseHoldMs: number;
}

export const BLE_UUIDS = {
  service: VITALPROOF_SERVICE_UUID,
  frame: FRAME_CHARACTERISTIC_UUID,
  control: CONTROL_CHARACTERISTIC_UUID,
  info: INFO_CHARACTERISTIC_UUID,
};

/** Connection attempts in flight at once. */
const CONNECTS_AT_ONCE = 4;

export type BleDeviceState = 'seen' | 'connecting' | 'connected' | 'waiting' | 'refused';

export interface BleDeviceStatus {
  address: string;
  /** From the info characteristic once connected, else the advertised hint. */
  deviceId?: string;
  name?: string;
  state: BleDeviceState;
  rssi?: number;
  connects: number;
  /** Frames received over all connections. */
  frames: number;
  lastFrameAtMs?: number;
  /** Frames received on this connection and not settled yet. */
  pendingFrames: number;
  /** How far the device's newest delivered frame lies behind the gateway clock: large while it sends its backlog. */
  behindMs?: number;
  /** The last acknowledgement the device accepted. */
  lastAck?: string;
  /** Why the last connection ended or was refused. */
  lastEnd?: string;
  retryInMs?: number;
}

export interface BleStatus {
  up: boolean;
  adapter?: string;
  lastError?: string;
  devicesConnected: number;
  devices: BleDeviceStatus[];
}

interface Slot {
  address: string;
  device: BluezDevice;
  hintId?: string;
  deviceId?: string;
  name?: string;
  rssi?: number;
  state: BleDeviceState;
  notBefore: number;
  failures: number;
  connects: number;
  frames: number;
  lastFrameAtMs?: number;
  lastEnd?: string;
  conn?: BleConnection;
}

export interface BleCentralDeps {
  pipeline: IngestPipeline;
  registry: DeviceRegistry;
  states: DeviceStates;
  metrics: Metrics;
  log: Logger;
  now?: () => number;
  random?: () => number;
}

export class BleCentral {
  private adapter: BluezAdapter | undefined;
  private readonly slots = new Map<string, Slot>();
  /** Highest authentic seq settled per device, across connections (the next first ACK). */
  private readonly settled = new Map<string, bigint>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private stopped = false;
  private connecting = 0;
  private lastError: string | undefined;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly onRevoked = (rec: { deviceId: string }): void => {
    for (const s of this.slots.values()) {
      if (s.deviceId === rec.deviceId && s.conn?.isOpen) {
        this.d.log.info({ event: 'device_disconnected', device: rec.deviceId, transport: 'ble', why: 'revoked' }, 'revoked device disconnected');
        s.conn.close();
      }
    }
  };

  constructor(
    private readonly o: BleCentralOptions,
    private readonly d: BleCentralDeps,
  ) {
    this.now = d.now ?? Date.now;
    this.random = d.random ?? Math.random;
  }

  /** Starts scanning; never throws: while BlueZ is unreachable the status says why and the central keeps trying. */
  start(): void {
    this.d.registry.on('revoked', this.onRevoked);
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.d.registry.off('revoked', this.onRevoked);
    const adapter = this.adapter;
    await Promise.all(
      [...this.slots.values()].map(async (s) => {
        if (s.conn?.isOpen) {
          s.conn.close();
          await this.disconnectQuietly(s);
        }
        s.device.release();
      }),
    );
    this.slots.clear();
    if (adapter) {
      await adapter.stopDiscovery().catch(() => undefined);
      adapter.close();
    }
  }

  status(): BleStatus {
    const now = this.now();
    const devices = [...this.slots.values()]
      .filter((s) => s.state !== 'seen' || s.hintId !== undefined)
      .map((s): BleDeviceStatus => {
        const c = s.conn?.isOpen ? s.conn : undefined;
        const id = s.deviceId ?? s.hintId;
        return {
          address: s.address,
          ...(id ? { deviceId: id } : {}),
          ...(s.name ? { name: s.name } : {}),
          state: s.state,
          ...(s.rssi !== undefined ? { rssi: s.rssi } : {}),
          connects: s.connects,
          frames: s.frames + (c?.frames ?? 0),
          ...((c?.lastFrameAtMs ?? s.lastFrameAtMs) !== undefined ? { lastFrameAtMs: (c?.lastFrameAtMs ?? s.lastFrameAtMs)! } : {}),
          pendingFrames: c?.pending ?? 0,
          ...(c?.newestFrameMs !== undefined ? { behindMs: Math.max(0, now - c.newestFrameMs) } : {}),
          ...(c?.acked !== undefined ? { lastAck: c.acked.toString() } : {}),
          ...(s.lastEnd ? { lastEnd: s.lastEnd } : {}),
          ...(s.state === 'waiting' || s.state === 'refused' ? { retryInMs: Math.max(0, s.notBefore - now) } : {}),
        };
      })
      .sort((a, b) => (a.deviceId ?? a.address).localeCompare(b.deviceId ?? b.address));
    return {
      up: this.adapter !== undefined && this.lastError === undefined,
      ...(this.adapter ? { adapter: this.adapter.name } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      devicesConnected: devices.filter((x) => x.state === 'connected').length,
      devices,
    };
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      // A restarted bluetoothd answers the old proxies, but has no discovery session of ours: start again from the adapter.
      if (this.adapter && !(await this.timed(this.adapter.sameBluez(), 'BlueZ owner check'))) {
        this.d.log.warn({ event: 'ble_bluez_restarted', adapter: this.adapter.name }, 'BlueZ restarted; opening the adapter again');
        this.resetAdapter();
      }
      if (!this.adapter) await this.openAdapter();
      await this.scan();
      this.lastError = undefined;
    } catch (e) {
      const err = dbusErrorText(e);
      if (err !== this.lastError) this.d.log.error({ event: 'ble_down', err }, 'BLE central cannot use BlueZ; retrying');
      this.lastError = err;
      // A bus or BlueZ restart invalidates every proxy: start again from the adapter.
      // So does a missing adapter object (the adapter was removed, or BlueZ is shutting down).
      if (this.adapter && /disconnect|ServiceUnknown|closed|interface not found/i.test(err)) this.resetAdapter();
    } finally {
      this.ticking = false;
      this.schedule(this.lastError ? Math.min(this.o.reconnectMaxMs, this.o.scanIntervalMs * 5) : this.o.scanIntervalMs);
    }
  }

  private async openAdapter(): Promise<void> {
    const adapter = await BluezAdapter.open(this.o.adapter);
    try {
      await adapter.startDiscovery(BLE_UUIDS.service);
    } catch (e) {
      adapter.close();
      throw e;
    }
    this.adapter = adapter;
    this.d.log.info({ event: 'ble_ready', adapter: adapter.name, service: BLE_UUIDS.service }, 'BLE central discovering VitalProof wearables');
  }

  private resetAdapter(): void {
    for (const s of this.slots.values()) {
      s.conn?.close();
      s.device.release();
    }
    this.slots.clear();
    this.adapter?.close();
    this.adapter = undefined;
  }

  private async scan(): Promise<void> {
    const adapter = this.adapter!;
    const present = new Set(await this.timed(adapter.addresses(), 'device list'));
    for (const [address, s] of this.slots) {
      if (present.has(address) || s.state === 'connecting') continue;
      // BlueZ never drops the object of a connected device; if it is gone, so is the link
      // (bluetoothd restarted, adapter reset) and no PropertiesChanged will say so.
      s.conn?.linkLost();
      s.device.release();
      this.slots.delete(address);
    }
    for (const address of present) {
      if (this.slots.has(address)) continue;
      const device = await this.timed(adapter.device(address), 'device lookup');
      if (!device) continue;
      const advert = await this.timed(device.advert(), 'device properties').catch(() => undefined);
      if (!advert || !advert.uuids.includes(BLE_UUIDS.service)) {
        // Not a VitalProof wearable (another client's discovery found it): never looked at again while present.
        device.release();
        continue;
      }
      const hint = advert.serviceData.get(BLE_UUIDS.service);
      const hintId = hint && hint.length === 9 && hint[0] === 1 ? Buffer.from(hint.subarray(1)).toString('hex') : undefined;
      const slot: Slot = {
        address,
        device,
        ...(hintId && isDeviceId(hintId) ? { hintId } : {}),
        ...(advert.name ? { name: advert.name } : {}),
        ...(advert.rssi !== undefined ? { rssi: advert.rssi } : {}),
        state: 'seen',
        notBefore: 0,
        failures: 0,
        connects: 0,
        frames: 0,
      };
      device.onRssi((rssi) => (slot.rssi = rssi));
      device.onConnected((up) => {
        if (!up) slot.conn?.linkLost();
      });
      this.slots.set(address, slot);
    }
    const now = this.now();
    let open = [...this.slots.values()].filter((s) => s.state === 'connected' || s.state === 'connecting').length;
    for (const s of this.slots.values()) {
      if (open >= this.o.maxConnections || this.connecting >= CONNECTS_AT_ONCE) break;
      if ((s.state === 'seen' || s.state === 'waiting' || s.state === 'refused') && s.notBefore <= now) {
        open++;
        void this.connect(s);
      }
    }
  }

  private async connect(s: Slot): Promise<void> {
    // The advertised id spares a connection to a device that would be refused anyway.
    if (s.hintId && this.refusal(s.hintId)) {
      this.refuse(s, this.refusal(s.hintId)!, { device: s.hintId, from: 'advertisement' });
      return;
    }
    s.state = 'connecting';
    this.connecting++;
    let connected = false;
    try {
      await this.timed(s.device.connect(), 'Connect');
      connected = true;
      const profile = await this.timed(s.device.profile(BLE_UUIDS), 'service resolution');
      if ('missing' in profile) return await this.drop(s, 'BLE_PROFILE_MISSING', { missing: profile.missing });
      let info;
      try {
        info = decodeInfo(await this.timed(profile.info.readValue(), 'info read'));
      } catch (e) {
        return await this.drop(s, 'BLE_INFO_INVALID', { err: isError(e, GattValueError) ? e.code : dbusErrorText(e) });
      }
      s.deviceId = info.deviceId;
      const refusal = this.refusal(info.deviceId);
      if (refusal) return await this.drop(s, refusal, { device: info.deviceId });
      if (!infoMatchesKey(info, this.d.registry.get(info.deviceId)!.publicKey))
        return await this.drop(s, 'BLE_KEY_MISMATCH', { device: info.deviceId, fingerprint: info.keyFingerprint });
      const other = [...this.slots.values()].find((x) => x !== s && x.deviceId === info.deviceId && x.conn?.isOpen);
      if (other) return await this.drop(s, 'BLE_KEY_MISMATCH', { device: info.deviceId, alreadyConnectedAt: other.address });
      if (this.stopped) return await this.drop(s, undefined, {});

      const id = info.deviceId;
      const conn = new BleConnection({
        deviceId: id,
        profile,
        initialAck: this.settled.get(id) ?? this.d.states.get(id)?.highestSeq ?? 0n,
        pipeline: this.d.pipeline,
        metrics: this.d.metrics,
        log: this.d.log,
        stallMs: this.o.stallMs,
        now: this.now,
        onSettled: (seq) => {
          if (seq > (this.settled.get(id) ?? 0n)) this.settled.set(id, seq);
        },
        onEnd: (reason, detail) => void this.ended(s, conn, reason, detail),
      });
      s.conn = conn;
      s.state = 'connected';
      s.connects++;
      this.d.log.info({ event: 'ble_connected', device: id, address: s.address, rssi: s.rssi, firmware: info.firmwareVersion }, 'BLE wearable connected');
      await conn.start();
    } catch (e) {
      this.d.metrics.bleEndedBy.BLE_CONNECT_FAILED++;
      s.lastEnd = `BLE_CONNECT_FAILED ${dbusErrorText(e)}`;
      if (connected) await this.disconnectQuietly(s);
      this.backoff(s, true);
    } finally {
      this.connecting--;
    }
  }

  /** Why a device must not be connected: not enrolled, or revoked now. */
  private refusal(deviceId: string): ConnectReason | undefined {
    const rec = this.d.registry.get(deviceId);
    if (!rec) return 'CONNECT_UNKNOWN_DEVICE';
    if (revokedAt(rec, this.now())) return 'CONNECT_REVOKED';
    return undefined;
  }

  private refuse(s: Slot, reason: ConnectReason | BleReason, detail: Record<string, unknown>): void {
    if (reason.startsWith('CONNECT_')) this.d.metrics.countConnectRefused(reason as ConnectReason, 'ble');
    else this.d.metrics.bleEndedBy[reason as BleReason]++;
    this.d.log.warn({ event: 'ble_refused', address: s.address, reason, ...detail }, 'BLE device refused');
    s.lastEnd = reason;
    s.state = 'refused';
    s.notBefore = this.now() + this.o.refuseHoldMs;
  }

  /** Ends a connection made before the profile checks passed. */
  private async drop(s: Slot, reason: ConnectReason | BleReason | undefined, detail: Record<string, unknown>): Promise<void> {
    await this.disconnectQuietly(s);
    if (reason) this.refuse(s, reason, detail);
    else s.state = 'waiting';
  }

  private async ended(s: Slot, conn: BleConnection, reason: BleReason | undefined, detail: Record<string, unknown>): Promise<void> {
    s.frames += conn.frames;
    if (conn.lastFrameAtMs !== undefined) s.lastFrameAtMs = conn.lastFrameAtMs;
    s.lastEnd = reason ?? 'closed by the gateway';
    const level = reason === 'BLE_LINK_LOST' || reason === undefined ? 'info' : 'warn';
    this.d.log[level](
      { event: 'ble_disconnected', device: s.deviceId, address: s.address, reason, frames: conn.frames, ...detail },
      'BLE wearable disconnected',
    );
    if (reason !== 'BLE_LINK_LOST') await this.disconnectQuietly(s);
    if (s.conn === conn) s.conn = undefined;
    if (this.stopped) return;
    // A connection that delivered frames was healthy: come back at once. One that did not counts as a failure.
    this.backoff(s, conn.frames === 0 && reason !== undefined);
  }

  private backoff(s: Slot, failed: boolean): void {
    s.failures = failed ? s.failures + 1 : 0;
    const base = Math.min(this.o.reconnectMaxMs, this.o.reconnectMinMs * 2 ** Math.max(0, s.failures - 1));
    s.state = 'waiting';
    s.notBefore = this.now() + (failed ? base * (0.5 + this.random() / 2) : this.o.reconnectMinMs);
  }

  /** Disconnect when the link may already be gone: errors and silence are both fine. */
  private disconnectQuietly(s: Slot): Promise<void> {
    return this.timed(s.device.disconnect(), 'Disconnect').catch(() => undefined);
  }

  /** Every D-Bus call gets a deadline: a call to a bluetoothd that went away unanswered must not stall the scan loop. */
  private timed<T>(p: Promise<T>, step: string): Promise<T> {
    return new Promise<T>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`${step} timed out after ${this.o.connectTimeoutMs} ms`)), this.o.connectTimeoutMs);
      p.then(
        (v) => {
          clearTimeout(t);
          res(v);
        },
        (e: unknown) => {
          clearTimeout(t);
          rej(e instanceof Error ? e : new Error(dbusErrorText(e)));
        },
      );
    });
  }
}
