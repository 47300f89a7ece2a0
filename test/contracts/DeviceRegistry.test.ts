/**
 * contracts/DeviceRegistry.sol against a real anvil: every function, every custom error with
 * its arguments, every event with its arguments, and the role checks.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { ContractFactory, ZeroAddress, ZeroHash, hexlify, type HDNodeWallet } from 'ethers';
import { deviceIdFromKey, generateKeys } from '../../firmware-proto/signing.js';
import { deviceRegistryArtifact } from '../../gateway/chain/artifacts.js';
import {
  deviceRegistryAt,
  deviceRegistryInterface as iface,
  ROLES,
  type DeviceRegistryContract,
  type DeviceRegistryErrors,
} from '../../gateway/chain/contracts.js';
import { deviceIdToBytes8, patientRefOf, siteIdOf } from '../../gateway/chain/ids.js';
import { useAnvil } from '../support/anvil.js';
import { deployDeviceRegistry, eventsOf, expectRevert, mined, plain } from '../support/contracts.js';

const chain = useAnvil({ snapshotEach: true });

const PATIENT_KEY = createHash('sha256').update('test patient-ref key').digest();
const PATIENT = patientRefOf('pt-0001', PATIENT_KEY);
const SITE = siteIdOf('test-site-icu');

/** A real device identity: Ed25519 key from firmware-proto, its PROTOCOL.md §2.1 id as bytes8. */
function device(name: string): { id: string; key: string } {
  const keys = generateKeys(createHash('sha256').update(`contract-test-device:${name}`).digest());
  return { id: deviceIdToBytes8(deviceIdFromKey(keys.publicKey)), key: hexlify(keys.publicKey) };
}

const A = device('a');
const B = device('b');

let admin: HDNodeWallet;
let hospital: HDNodeWallet;
let outsider: HDNodeWallet;
let registry: DeviceRegistryContract;
/** The registry as `signer` sees it. */
const as = (signer: HDNodeWallet): DeviceRegistryContract => deviceRegistryAt(registry.target as string, signer);
const revert = <N extends keyof DeviceRegistryErrors & string>(action: Promise<unknown>, name: N, args: DeviceRegistryErrors[N]) =>
  expectRevert<DeviceRegistryErrors, N>(action, iface, name, args);

/** Enrols `d` in a block with timestamp `seconds`; returns enrolledAtMs. */
async function enrolAt(d: { id: string; key: string }, seconds: number): Promise<bigint> {
  await chain.setNextBlockTimestamp(seconds);
  await mined(as(hospital).enrol(d.id, d.key, PATIENT, SITE));
  return BigInt(seconds) * 1000n;
}

beforeAll(async () => {
  [admin, hospital, outsider] = [chain.wallet(0), chain.wallet(1), chain.wallet(2)];
  registry = await deployDeviceRegistry(admin, admin.address);
  await mined(registry.grantRole(ROLES.HOSPITAL_ADMIN, hospital.address));
});

describe('DeviceRegistry: deployment and roles', () => {
  it('gives DEFAULT_ADMIN_ROLE to the admin only, and makes it the admin of HOSPITAL_ADMIN_ROLE', async () => {
    expect(await registry.HOSPITAL_ADMIN_ROLE()).toBe(ROLES.HOSPITAL_ADMIN);
    expect(await registry.DEFAULT_ADMIN_ROLE()).toBe(ROLES.DEFAULT_ADMIN);
    expect(await registry.hasRole(ROLES.DEFAULT_ADMIN, admin.address)).toBe(true);
    expect(await registry.hasRole(ROLES.DEFAULT_ADMIN, hospital.address)).toBe(false);
    expect(await registry.hasRole(ROLES.HOSPITAL_ADMIN, admin.address)).toBe(false);
    expect(await registry.getRoleAdmin(ROLES.HOSPITAL_ADMIN)).toBe(ROLES.DEFAULT_ADMIN);
  });

  it('supports the ERC-165 ids of IERC165 and IAccessControl', async () => {
    expect(await registry.supportsInterface('0x01ffc9a7')).toBe(true);
    expect(await registry.supportsInterface('0x7965db0b')).toBe(true);
    expect(await registry.supportsInterface('0xffffffff')).toBe(false);
  });

  it('refuses the zero address as admin: DeviceRegistryZeroAdmin()', async () => {
    const factory = new ContractFactory(deviceRegistryArtifact.abi, deviceRegistryArtifact.bytecode, admin);
    await revert(factory.deploy(ZeroAddress), 'DeviceRegistryZeroAdmin', []);
  });

  it('lets the admin grant and revoke HOSPITAL_ADMIN_ROLE, with RoleGranted and RoleRevoked', async () => {
    const granted = await mined(registry.grantRole(ROLES.HOSPITAL_ADMIN, outsider.address));
    expect(eventsOf(granted, iface)).toEqual([{ name: 'RoleGranted', args: [ROLES.HOSPITAL_ADMIN, outsider.address, admin.address] }]);
    await mined(as(outsider).enrol(A.id, A.key, PATIENT, SITE));
    const revoked = await mined(registry.revokeRole(ROLES.HOSPITAL_ADMIN, outsider.address));
    expect(eventsOf(revoked, iface)).toEqual([{ name: 'RoleRevoked', args: [ROLES.HOSPITAL_ADMIN, outsider.address, admin.address] }]);
    await revert(as(outsider).enrol(B.id, B.key, PATIENT, SITE), 'AccessControlUnauthorizedAccount', [outsider.address, ROLES.HOSPITAL_ADMIN]);
  });

  it('refuses role grants from anyone but the admin: AccessControlUnauthorizedAccount(caller, DEFAULT_ADMIN_ROLE)', async () => {
    await revert(as(hospital).grantRole(ROLES.HOSPITAL_ADMIN, outsider.address), 'AccessControlUnauthorizedAccount', [hospital.address, ROLES.DEFAULT_ADMIN]);
  });
});

describe('DeviceRegistry.enrol', () => {
  it('stores the record and emits DeviceEnrolled with every field', async () => {
    const t = (await chain.latestTimestamp()) + 100;
    await chain.setNextBlockTimestamp(t);
    const receipt = await mined(as(hospital).enrol(A.id, A.key, PATIENT, SITE));
    const enrolledAtMs = BigInt(t) * 1000n;
    expect(eventsOf(receipt, iface)).toEqual([{ name: 'DeviceEnrolled', args: [A.id, PATIENT, SITE, A.key, enrolledAtMs, hospital.address] }]);
    expect(plain(await registry.device(A.id))).toEqual({
      publicKey: A.key,
      patientRef: PATIENT,
      site: SITE,
      enrolledAtMs,
      revokedAtMs: 0n,
      enrolledBy: hospital.address,
    });
    expect(await registry.isEnrolled(A.id)).toBe(true);
    expect(await registry.isEnrolled(B.id)).toBe(false);
  });

  it('derives device ids exactly as PROTOCOL.md §2.1 (RFC 8032 TEST 1 key → 2bf670914b489316)', async () => {
    const key = '0xd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
    await mined(as(hospital).enrol('0x2bf670914b489316', key, PATIENT, SITE));
    expect((await registry.device('0x2bf670914b489316')).publicKey).toBe(key);
  });

  it('refuses an id not derived from the key: DeviceRegistryDeviceIdMismatch(expected, got)', async () => {
    await revert(as(hospital).enrol(B.id, A.key, PATIENT, SITE), 'DeviceRegistryDeviceIdMismatch', [A.id, B.id]);
  });

  it('refuses the all-zero key: DeviceRegistryZeroPublicKey(deviceId)', async () => {
    const zeroKeyId = deviceIdToBytes8(deviceIdFromKey(new Uint8Array(32)));
    await revert(as(hospital).enrol(zeroKeyId, ZeroHash, PATIENT, SITE), 'DeviceRegistryZeroPublicKey', [zeroKeyId]);
  });

  it('refuses a zero patient reference: DeviceRegistryZeroPatientRef(deviceId)', async () => {
    await revert(as(hospital).enrol(A.id, A.key, ZeroHash, SITE), 'DeviceRegistryZeroPatientRef', [A.id]);
  });

  it('refuses a zero site: DeviceRegistryZeroSite(deviceId)', async () => {
    await revert(as(hospital).enrol(A.id, A.key, PATIENT, ZeroHash), 'DeviceRegistryZeroSite', [A.id]);
  });

  it('refuses a second enrolment of the same id: DeviceRegistryAlreadyEnrolled(deviceId)', async () => {
    await mined(as(hospital).enrol(A.id, A.key, PATIENT, SITE));
    const other = patientRefOf('pt-0002', PATIENT_KEY);
    await revert(as(hospital).enrol(A.id, A.key, other, SITE), 'DeviceRegistryAlreadyEnrolled', [A.id]);
  });

  it('refuses callers without HOSPITAL_ADMIN_ROLE, the DEFAULT_ADMIN included: AccessControlUnauthorizedAccount', async () => {
    await revert(as(outsider).enrol(A.id, A.key, PATIENT, SITE), 'AccessControlUnauthorizedAccount', [outsider.address, ROLES.HOSPITAL_ADMIN]);
    await revert(as(admin).enrol(A.id, A.key, PATIENT, SITE), 'AccessControlUnauthorizedAccount', [admin.address, ROLES.HOSPITAL_ADMIN]);
  });
});

describe('DeviceRegistry.revoke', () => {
  it('records the effective time and emits DeviceRevoked(deviceId, effectiveTimeMs, revokedBy)', async () => {
    const enrolledAtMs = await enrolAt(A, (await chain.latestTimestamp()) + 10);
    const at = enrolledAtMs + 60_000n;
    const receipt = await mined(as(hospital).revoke(A.id, at));
    expect(eventsOf(receipt, iface)).toEqual([{ name: 'DeviceRevoked', args: [A.id, at, hospital.address] }]);
    expect(plain(await registry.device(A.id))).toMatchObject({ enrolledAtMs, revokedAtMs: at });
    expect(await registry.isEnrolled(A.id)).toBe(true);
  });

  it('accepts an effective time in the past (back to the enrolment itself), now, or in the future', async () => {
    const t = (await chain.latestTimestamp()) + 10;
    const enrolledAtMs = await enrolAt(A, t);
    await enrolAt(B, t + 3600);
    const C = device('c');
    await enrolAt(C, t + 3601);
    await mined(as(hospital).revoke(A.id, enrolledAtMs)); // an hour in the past, at the enrolment instant
    await mined(as(hospital).revoke(B.id, BigInt(t + 3602) * 1000n)); // the next block's time: "now"
    await mined(as(hospital).revoke(C.id, BigInt(t + 86_400 * 365) * 1000n)); // a year ahead
    expect((await registry.device(A.id)).revokedAtMs).toBe(enrolledAtMs);
  });

  it('refuses a time before the enrolment, e.g. seconds passed for ms: DeviceRegistryRevocationBeforeEnrolment', async () => {
    const t = (await chain.latestTimestamp()) + 10;
    const enrolledAtMs = await enrolAt(A, t);
    await revert(as(hospital).revoke(A.id, enrolledAtMs - 1n), 'DeviceRegistryRevocationBeforeEnrolment', [A.id, enrolledAtMs, enrolledAtMs - 1n]);
    await revert(as(hospital).revoke(A.id, BigInt(t)), 'DeviceRegistryRevocationBeforeEnrolment', [A.id, enrolledAtMs, BigInt(t)]);
  });

  it('refuses an unknown device: DeviceRegistryUnknownDevice(deviceId)', async () => {
    await revert(as(hospital).revoke(B.id, 1n), 'DeviceRegistryUnknownDevice', [B.id]);
  });

  it('is final: DeviceRegistryAlreadyRevoked(deviceId, revokedAtMs), even for an earlier time', async () => {
    const enrolledAtMs = await enrolAt(A, (await chain.latestTimestamp()) + 10);
    await mined(as(hospital).revoke(A.id, enrolledAtMs + 5000n));
    await revert(as(hospital).revoke(A.id, enrolledAtMs + 1000n), 'DeviceRegistryAlreadyRevoked', [A.id, enrolledAtMs + 5000n]);
    await revert(as(hospital).revoke(A.id, enrolledAtMs + 9000n), 'DeviceRegistryAlreadyRevoked', [A.id, enrolledAtMs + 5000n]);
  });

  it('refuses callers without HOSPITAL_ADMIN_ROLE: AccessControlUnauthorizedAccount(caller, role)', async () => {
    const enrolledAtMs = await enrolAt(A, (await chain.latestTimestamp()) + 10);
    await revert(as(outsider).revoke(A.id, enrolledAtMs), 'AccessControlUnauthorizedAccount', [outsider.address, ROLES.HOSPITAL_ADMIN]);
    await revert(as(admin).revoke(A.id, enrolledAtMs), 'AccessControlUnauthorizedAccount', [admin.address, ROLES.HOSPITAL_ADMIN]);
  });
});

describe('DeviceRegistry views', () => {
  it('device(): DeviceRegistryUnknownDevice(deviceId) for an id never enrolled', async () => {
    await revert(registry.device(B.id), 'DeviceRegistryUnknownDevice', [B.id]);
  });

  it('isActiveAt(): false for an unknown device, never a revert', async () => {
    expect(await registry.isActiveAt(B.id, 0n)).toBe(false);
    expect(await registry.isActiveAt(B.id, 2n ** 64n - 1n)).toBe(false);
  });

  it('isActiveAt(): an enrolled device is active at any time until its revocation, exclusive (PROTOCOL.md §5.3 step 4)', async () => {
    const enrolledAtMs = await enrolAt(A, (await chain.latestTimestamp()) + 10);
    // Not revoked: every time, frames from before the enrolment (a store-and-forward backlog) included.
    expect(await registry.isActiveAt(A.id, 0n)).toBe(true);
    expect(await registry.isActiveAt(A.id, enrolledAtMs - 1n)).toBe(true);
    expect(await registry.isActiveAt(A.id, 2n ** 64n - 1n)).toBe(true);
    const revokedAt = enrolledAtMs + 10_000n;
    await mined(as(hospital).revoke(A.id, revokedAt));
    expect(await registry.isActiveAt(A.id, revokedAt - 1n)).toBe(true);
    expect(await registry.isActiveAt(A.id, revokedAt)).toBe(false);
    expect(await registry.isActiveAt(A.id, revokedAt + 1n)).toBe(false);
  });
});
