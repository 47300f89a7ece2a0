/**
 * The DeviceRegistry contract's events as a view of devices, for ChainRegistry
 * (./chain-registry.ts), which follows them with gateway/chain/log-follower.ts: what a
 * DeviceEnrolled or DeviceRevoked log changes, and the devices as registry-cache.json holds
 * them (the format the cache had before the follower was shared: test/data/registry-cache-v1/).
 */
import type { Log } from 'ethers';
import { deviceRegistryInterface } from '../chain/contracts.js';
import { deviceIdFromBytes8 } from '../chain/ids.js';
import type { FollowedState } from '../chain/log-follower.js';

/** One device as the chain has it (cached; no pseudonym). */
export interface ChainDevice {
  deviceId: string;
  /** 64 lowercase hex digits. */
  publicKey: string;
  /** 0x + 64 lowercase hex digits. */
  patientRef: string;
  site: string;
  enrolledAtMs: number;
  revokedAtMs?: number;
  block: number;
}

/** Every event up to and including `lastBlock`, whose hash was `lastBlockHash`, applied. */
export interface View extends FollowedState {
  devices: Map<string, ChainDevice>;
}

/** What a chunk of events changed. */
export interface Changes {
  enrolled: string[];
  revoked: string[];
}

/** topic0 of DeviceEnrolled and DeviceRevoked: the events the view is made of. */
export const DEVICE_REGISTRY_TOPICS = [
  deviceRegistryInterface.getEvent('DeviceEnrolled')!.topicHash,
  deviceRegistryInterface.getEvent('DeviceRevoked')!.topicHash,
];

/** A view that has seen nothing: it ends at `lastBlock` (the deploy block - 1). */
export function emptyView(lastBlock: number): View {
  return { lastBlock, lastBlockHash: undefined, devices: new Map() };
}

/** Applies logs (in block, log index order) to `view`; returns the devices enrolled and revoked. */
export function applyLogs(view: View, logs: readonly Log[]): Changes {
  const enrolled: string[] = [];
  const revoked: string[] = [];
  for (const log of logs) {
    const parsed = deviceRegistryInterface.parseLog({ topics: [...log.topics], data: log.data });
    if (!parsed) continue;
    if (parsed.name === 'DeviceEnrolled') {
      const [deviceId, patientRef, site, publicKey, enrolledAtMs] = parsed.args.toArray() as [string, string, string, string, bigint];
      const id = deviceIdFromBytes8(deviceId);
      view.devices.set(id, {
        deviceId: id,
        publicKey: publicKey.toLowerCase().replace(/^0x/, ''),
        patientRef: patientRef.toLowerCase(),
        site: site.toLowerCase(),
        enrolledAtMs: Number(enrolledAtMs),
        block: log.blockNumber,
      });
      enrolled.push(id);
    } else if (parsed.name === 'DeviceRevoked') {
      const [deviceId, effectiveTimeMs] = parsed.args.toArray() as [string, bigint];
      const d = view.devices.get(deviceIdFromBytes8(deviceId));
      // The contract revokes only enrolled devices, once: anything else is not this contract's log.
      if (!d || d.revokedAtMs !== undefined) continue;
      d.revokedAtMs = Number(effectiveTimeMs);
      revoked.push(d.deviceId);
    }
  }
  return { enrolled, revoked };
}

/** The devices of a cache file (registry-cache.json's `devices`); why not, when they are not valid. */
export function loadDevices(data: unknown, lastBlock: number, lastBlockHash: string | undefined): View | string {
  if (!Array.isArray(data)) return 'not a version 1 registry cache';
  const devices = new Map<string, ChainDevice>();
  for (const d of data) {
    if (!validCachedDevice(d)) return 'malformed device entry';
    devices.set(d.deviceId, d);
  }
  return { lastBlock, lastBlockHash, devices };
}

function validCachedDevice(d: unknown): d is ChainDevice {
  const x = d as Partial<ChainDevice> | null;
  return (
    !!x &&
    typeof x.deviceId === 'string' &&
    /^[0-9a-f]{16}$/.test(x.deviceId) &&
    typeof x.publicKey === 'string' &&
    /^[0-9a-f]{64}$/.test(x.publicKey) &&
    typeof x.patientRef === 'string' &&
    /^0x[0-9a-f]{64}$/.test(x.patientRef) &&
    typeof x.site === 'string' &&
    typeof x.enrolledAtMs === 'number' &&
    (x.revokedAtMs === undefined || typeof x.revokedAtMs === 'number') &&
    typeof x.block === 'number'
  );
}
