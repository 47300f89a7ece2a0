/**
 * contracts/ConsentRegistry.sol against a real anvil: binding patients (and rebinding after a
 * lost key), the grant lifecycle, every custom error with its arguments, every event with its
 * arguments, the verdicts of isPermitted and checkGrant at the edges of the data window and of
 * the expiry, the per-pair bound, that a patient's pseudonym never reaches the chain, and gas.
 *
 * Time moves with evm_setNextBlockTimestamp / evm_increaseTime and evm_mine; a view's "now" is
 * the latest block's timestamp × 1000.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import {
  AbiCoder,
  ContractFactory,
  ZeroAddress,
  ZeroHash,
  getBigInt,
  keccak256,
  toBeHex,
  toUtf8Bytes,
  zeroPadValue,
  type ContractTransactionResponse,
  type HDNodeWallet,
  type TransactionReceipt,
} from 'ethers';
import { SENSORS, sensorByName } from '../../firmware-proto/catalogue.js';
import { consentRegistryArtifact } from '../../gateway/chain/artifacts.js';
import {
  consentRegistryAt,
  consentRegistryInterface as iface,
  GRANT_STATUS,
  grantStatusName,
  ROLES,
  sensorCodesOf,
  sensorMaskOf,
  type ConsentRegistryContract,
  type ConsentRegistryErrors,
  type GrantStatusName,
} from '../../gateway/chain/contracts.js';
import { patientRefOf } from '../../gateway/chain/ids.js';
import { useAnvil } from '../support/anvil.js';
import { deployConsentRegistry, eventsOf, expectRevert, mined, plain } from '../support/contracts.js';

const chain = useAnvil({ snapshotEach: true });

const sha256hex = (s: string): string => `0x${createHash('sha256').update(s).digest('hex')}`;
const PATIENT_REF_KEY = createHash('sha256').update('test patient-ref key (consent)').digest();
/** The pseudonym whose bytes must never reach the chain; only its HMAC `P` may. */
const PSEUDONYM = 'pt-consent-0042';
const P = patientRefOf(PSEUDONYM, PATIENT_REF_KEY);
const P2 = patientRefOf('pt-consent-0043', PATIENT_REF_KEY);
const UNBOUND = patientRefOf('pt-consent-never-bound', PATIENT_REF_KEY);
const PURPOSE = sha256hex('purpose: sleep-apnoea study, protocol v3');
const PURPOSE2 = sha256hex('purpose: post-operative monitoring audit');

const HR = sensorByName('heart_rate').code;
const SPO2 = sensorByName('spo2').code;
const ECG = sensorByName('ecg').code;
const STEPS = sensorByName('steps').code;
/** Start of the default data window, device clock ms. */
const T0 = 1_795_000_000_000n;
const HOUR = 3_600_000n;
const DAY = 24n * HOUR;
const MAX_OPEN = 32n;

let admin: HDNodeWallet;
let hospital: HDNodeWallet;
let patient: HDNodeWallet;
let patientNew: HDNodeWallet;
let researcher: HDNodeWallet;
let researcher2: HDNodeWallet;
let outsider: HDNodeWallet;
let registry: ConsentRegistryContract;

/** The registry as `signer` sees it. */
const as = (signer: HDNodeWallet): ConsentRegistryContract => consentRegistryAt(registry.target as string, signer);
const revert = <N extends keyof ConsentRegistryErrors & string>(action: Promise<unknown>, name: N, args: ConsentRegistryErrors[N]) =>
  expectRevert<ConsentRegistryErrors, N>(action, iface, name, args);

interface GrantArgs {
  patientRef: string;
  researcher: string;
  sensorMask: number;
  dataFromMs: bigint;
  dataToMs: bigint;
  expiresAtMs: bigint;
  purposeRef: string;
}

/** Block time of the latest block, in ms: what views take as "now". */
async function nowMs(): Promise<bigint> {
  return BigInt(await chain.latestTimestamp()) * 1000n;
}

/** Heart rate and SpO2 of P to `researcher`, data window [T0, T0 + 1 h], for 30 days; `o` overrides. */
async function args(o: Partial<GrantArgs> = {}): Promise<GrantArgs> {
  return {
    patientRef: P,
    researcher: researcher.address,
    sensorMask: sensorMaskOf([HR, SPO2]),
    dataFromMs: T0,
    dataToMs: T0 + HOUR,
    expiresAtMs: (await nowMs()) + 30n * DAY,
    purposeRef: PURPOSE,
    ...o,
  };
}

function grantTx(signer: HDNodeWallet, g: GrantArgs) {
  return as(signer).grant(g.patientRef, g.researcher, g.sensorMask, g.dataFromMs, g.dataToMs, g.expiresAtMs, g.purposeRef);
}

/** Grants from `signer` (default: the patient) and returns the new id from ConsentGranted. */
async function grantFrom(signer: HDNodeWallet, o: Partial<GrantArgs> = {}): Promise<{ id: bigint; g: GrantArgs; receipt: TransactionReceipt }> {
  const g = await args(o);
  const receipt = await mined(grantTx(signer, g));
  const ev = eventsOf(receipt, iface).find((e) => e.name === 'ConsentGranted');
  if (!ev) throw new Error('no ConsentGranted event');
  return { id: ev.args[0] as bigint, g, receipt };
}

/** Mines an empty block at `seconds`: views then see now = seconds × 1000. */
async function mineAt(seconds: number): Promise<void> {
  await chain.setNextBlockTimestamp(seconds);
  await chain.provider.send('evm_mine', []);
}

async function permitted(who: string, ref: string, sensor: number, atMs: bigint): Promise<[boolean, bigint]> {
  const r = await registry.isPermitted(who, ref, sensor, atMs);
  return [r[0] as boolean, r[1] as bigint];
}

async function status(grantId: bigint, who: string, sensor: number, atMs: bigint): Promise<GrantStatusName | undefined> {
  return grantStatusName(await registry.checkGrant(grantId, who, sensor, atMs));
}

beforeAll(async () => {
  [admin, hospital, patient, patientNew, researcher, researcher2, outsider] = [0, 1, 2, 3, 4, 5, 6].map((i) => chain.wallet(i)) as [
    HDNodeWallet,
    HDNodeWallet,
    HDNodeWallet,
    HDNodeWallet,
    HDNodeWallet,
    HDNodeWallet,
    HDNodeWallet,
  ];
  registry = await deployConsentRegistry(admin, admin.address);
  await mined(registry.grantRole(ROLES.HOSPITAL_ADMIN, hospital.address));
  await mined(as(hospital).bindPatient(P, patient.address));
});

describe('ConsentRegistry: deployment and roles', () => {
  it('gives DEFAULT_ADMIN_ROLE to the admin only, makes it the admin of HOSPITAL_ADMIN_ROLE, and bounds pairs at 32', async () => {
    expect(await registry.HOSPITAL_ADMIN_ROLE()).toBe(ROLES.HOSPITAL_ADMIN);
    expect(await registry.hasRole(ROLES.DEFAULT_ADMIN, admin.address)).toBe(true);
    expect(await registry.hasRole(ROLES.DEFAULT_ADMIN, hospital.address)).toBe(false);
    expect(await registry.hasRole(ROLES.HOSPITAL_ADMIN, admin.address)).toBe(false);
    expect(await registry.getRoleAdmin(ROLES.HOSPITAL_ADMIN)).toBe(ROLES.DEFAULT_ADMIN);
    expect(await registry.MAX_OPEN_GRANTS_PER_PAIR()).toBe(MAX_OPEN);
  });

  it('supports the ERC-165 ids of IERC165 and IAccessControl', async () => {
    expect(await registry.supportsInterface('0x01ffc9a7')).toBe(true);
    expect(await registry.supportsInterface('0x7965db0b')).toBe(true);
    expect(await registry.supportsInterface('0xffffffff')).toBe(false);
  });

  it('refuses the zero address as admin: ConsentRegistryZeroAdmin()', async () => {
    const factory = new ContractFactory(consentRegistryArtifact.abi, consentRegistryArtifact.bytecode, admin);
    await revert(factory.deploy(ZeroAddress), 'ConsentRegistryZeroAdmin', []);
  });

  it('refuses role grants from anyone but the admin: AccessControlUnauthorizedAccount(caller, DEFAULT_ADMIN_ROLE)', async () => {
    await revert(as(hospital).grantRole(ROLES.HOSPITAL_ADMIN, outsider.address), 'AccessControlUnauthorizedAccount', [hospital.address, ROLES.DEFAULT_ADMIN]);
  });
});

describe('ConsentRegistry.bindPatient', () => {
  it('binds an address to a patientRef, emits PatientBound(patientRef, patient, 0), and both views answer', async () => {
    expect(await registry.patientOf(P2)).toBe(ZeroAddress);
    const receipt = await mined(as(hospital).bindPatient(P2, patientNew.address));
    expect(eventsOf(receipt, iface)).toEqual([{ name: 'PatientBound', args: [P2, patientNew.address, ZeroAddress] }]);
    expect(await registry.patientOf(P2)).toBe(patientNew.address);
    expect(await registry.patientRefOf(patientNew.address)).toBe(P2);
    expect(await registry.patientOf(P)).toBe(patient.address);
    expect(await registry.patientRefOf(patient.address)).toBe(P);
  });

  it('answers zero for refs and addresses never bound', async () => {
    expect(await registry.patientOf(UNBOUND)).toBe(ZeroAddress);
    expect(await registry.patientRefOf(outsider.address)).toBe(ZeroHash);
  });

  it('refuses callers without HOSPITAL_ADMIN_ROLE, the DEFAULT_ADMIN and the patient included: AccessControlUnauthorizedAccount', async () => {
    await revert(as(outsider).bindPatient(P2, outsider.address), 'AccessControlUnauthorizedAccount', [outsider.address, ROLES.HOSPITAL_ADMIN]);
    await revert(as(admin).bindPatient(P2, outsider.address), 'AccessControlUnauthorizedAccount', [admin.address, ROLES.HOSPITAL_ADMIN]);
    await revert(as(patient).bindPatient(P, outsider.address), 'AccessControlUnauthorizedAccount', [patient.address, ROLES.HOSPITAL_ADMIN]);
  });

  it('refuses a zero patientRef (ConsentRegistryZeroPatientRef) and a zero address (ConsentRegistryZeroPatient(ref))', async () => {
    await revert(as(hospital).bindPatient(ZeroHash, outsider.address), 'ConsentRegistryZeroPatientRef', []);
    await revert(as(hospital).bindPatient(P2, ZeroAddress), 'ConsentRegistryZeroPatient', [P2]);
  });

  it('binds an address to one patientRef at most: ConsentRegistryAddressAlreadyBound(patient, boundTo), also for a retry', async () => {
    await revert(as(hospital).bindPatient(P2, patient.address), 'ConsentRegistryAddressAlreadyBound', [patient.address, P]);
    // A bind that went through already: the error carries the same ref, so a tool knows it is done.
    await revert(as(hospital).bindPatient(P, patient.address), 'ConsentRegistryAddressAlreadyBound', [patient.address, P]);
  });

  it('rebinds (key lost): the old address loses control at once, earlier grants stay in force, the new address takes over', async () => {
    const { id: g1, g } = await grantFrom(patient);
    const receipt = await mined(as(hospital).bindPatient(P, patientNew.address));
    expect(eventsOf(receipt, iface)).toEqual([{ name: 'PatientBound', args: [P, patientNew.address, patient.address] }]);
    expect(await registry.patientOf(P)).toBe(patientNew.address);
    expect(await registry.patientRefOf(patientNew.address)).toBe(P);
    expect(await registry.patientRefOf(patient.address)).toBe(ZeroHash);

    // The old key can neither grant nor revoke any more.
    await revert(grantTx(patient, await args()), 'ConsentRegistryNotPatient', [P, patientNew.address, patient.address]);
    await revert(as(patient).revoke(g1), 'ConsentRegistryNotPatient', [P, patientNew.address, patient.address]);
    // The grant belongs to the patientRef: still in force, unchanged.
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([true, g1]);
    expect(plain(await registry.getGrant(g1))).toMatchObject({ patientRef: P, researcher: g.researcher, revokedAtMs: 0n });
    // The new key grants and revokes, the earlier grant included.
    const { id: g2 } = await grantFrom(patientNew, { sensorMask: sensorMaskOf([ECG]) });
    expect(g2).toBe(g1 + 1n);
    await mined(as(patientNew).revoke(g1));
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([false, 0n]);
    expect(await permitted(researcher.address, P, ECG, T0)).toEqual([true, g2]);
    // The old address is free again, and may be bound to another ref.
    await mined(as(hospital).bindPatient(P2, patient.address));
    expect(await registry.patientRefOf(patient.address)).toBe(P2);
    await revert(as(hospital).bindPatient(P2, patientNew.address), 'ConsentRegistryAddressAlreadyBound', [patientNew.address, P]);
  });
});

describe('ConsentRegistry.grant', () => {
  it('stores the grant, numbers grants from 1, and emits ConsentGranted with every field', async () => {
    const { id: first } = await grantFrom(patient);
    expect(first).toBe(1n);
    const t = (await chain.latestTimestamp()) + 10;
    const g = await args({ sensorMask: sensorMaskOf([HR, SPO2, ECG]), dataFromMs: T0 - DAY, dataToMs: T0 + DAY, expiresAtMs: BigInt(t + 3600) * 1000n });
    await chain.setNextBlockTimestamp(t);
    const g2 = { ...g, researcher: researcher2.address, purposeRef: PURPOSE2 };
    expect(await as(patient).grant.staticCall(g2.patientRef, g2.researcher, g2.sensorMask, g2.dataFromMs, g2.dataToMs, g2.expiresAtMs, g2.purposeRef)).toBe(2n);
    const receipt = await mined(grantTx(patient, g2));
    expect(eventsOf(receipt, iface)).toEqual([
      { name: 'ConsentGranted', args: [2n, P, researcher2.address, BigInt(g2.sensorMask), g2.dataFromMs, g2.dataToMs, g2.expiresAtMs, PURPOSE2] },
    ]);
    expect(plain(await registry.getGrant(2n))).toEqual({
      patientRef: P,
      purposeRef: PURPOSE2,
      researcher: researcher2.address,
      sensorMask: BigInt(sensorMaskOf([HR, SPO2, ECG])),
      dataFromMs: T0 - DAY,
      dataToMs: T0 + DAY,
      expiresAtMs: BigInt(t + 3600) * 1000n,
      grantedAtMs: BigInt(t) * 1000n,
      revokedAtMs: 0n,
    });
    expect(await registry.grantIdsOf(P)).toEqual([1n, 2n]);
    expect(await registry.grantIdsFor(researcher.address)).toEqual([1n]);
    expect(await registry.grantIdsFor(researcher2.address)).toEqual([2n]);
  });

  it('refuses anyone but the bound patient: ConsentRegistryNotPatient(ref, patient, caller)', async () => {
    for (const caller of [researcher, outsider, hospital, admin]) {
      await revert(grantTx(caller, await args()), 'ConsentRegistryNotPatient', [P, patient.address, caller.address]);
    }
    // Nobody speaks for an unbound ref, nor for the zero ref.
    await revert(grantTx(patient, await args({ patientRef: UNBOUND })), 'ConsentRegistryNotPatient', [UNBOUND, ZeroAddress, patient.address]);
    await revert(grantTx(patient, await args({ patientRef: ZeroHash })), 'ConsentRegistryNotPatient', [ZeroHash, ZeroAddress, patient.address]);
    // A patient cannot grant for another patient's ref.
    await mined(as(hospital).bindPatient(P2, patientNew.address));
    await revert(grantTx(patient, await args({ patientRef: P2 })), 'ConsentRegistryNotPatient', [P2, patientNew.address, patient.address]);
  });

  it('refuses the zero researcher: ConsentRegistryZeroResearcher()', async () => {
    await revert(grantTx(patient, await args({ researcher: ZeroAddress })), 'ConsentRegistryZeroResearcher', []);
  });

  it('refuses a mask of 0 or with bit 0 set: ConsentRegistryBadSensorMask(mask); accepts bits 1-15', async () => {
    for (const mask of [0, 1, 0b11, 0xffff]) await revert(grantTx(patient, await args({ sensorMask: mask })), 'ConsentRegistryBadSensorMask', [BigInt(mask)]);
    const { id: all } = await grantFrom(patient, { sensorMask: 0xfffe });
    const { id: future } = await grantFrom(patient, { sensorMask: 1 << 15 }); // a code the catalogue may add
    expect((await registry.getGrant(all)).sensorMask).toBe(0xfffen);
    expect(await permitted(researcher.address, P, 15, T0)).toEqual([true, all]);
    expect(await status(future, researcher.address, 15, T0)).toBe('OK');
    expect(await status(future, researcher.address, HR, T0)).toBe('SENSOR_NOT_GRANTED');
  });

  it('refuses a data window that ends before it starts: ConsentRegistryInvertedDataWindow(from, to); one instant is fine', async () => {
    await revert(grantTx(patient, await args({ dataFromMs: T0 + 1n, dataToMs: T0 })), 'ConsentRegistryInvertedDataWindow', [T0 + 1n, T0]);
    const { id } = await grantFrom(patient, { dataFromMs: T0, dataToMs: T0 });
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([true, id]);
    expect(await permitted(researcher.address, P, HR, T0 + 1n)).toEqual([false, 0n]);
  });

  it('refuses an expiry not after the block time: ConsentRegistryExpiryNotInFuture(expiresAtMs, nowMs)', async () => {
    const t = (await chain.latestTimestamp()) + 100;
    const blockMs = BigInt(t) * 1000n;
    await chain.setNextBlockTimestamp(t);
    await revert(grantTx(patient, await args({ expiresAtMs: blockMs })), 'ConsentRegistryExpiryNotInFuture', [blockMs, blockMs]);
    await revert(grantTx(patient, await args({ expiresAtMs: blockMs - 1n })), 'ConsentRegistryExpiryNotInFuture', [blockMs - 1n, blockMs]);
    await revert(grantTx(patient, await args({ expiresAtMs: BigInt(t) })), 'ConsentRegistryExpiryNotInFuture', [BigInt(t), blockMs]); // seconds for ms
    const { id, receipt } = await grantFrom(patient, { expiresAtMs: blockMs + 1n });
    expect((await chain.provider.getBlock(receipt.blockNumber))?.timestamp).toBe(t);
    expect(await status(id, researcher.address, HR, T0)).toBe('OK'); // at t: 1 ms left
  });

  it('refuses a zero purpose: ConsentRegistryZeroPurposeRef()', async () => {
    await revert(grantTx(patient, await args({ purposeRef: ZeroHash })), 'ConsentRegistryZeroPurposeRef', []);
  });
});

describe('ConsentRegistry.revoke', () => {
  it('records the block time, emits ConsentRevoked(id, ref, researcher, revokedAtMs), and the grant stays readable', async () => {
    const { id, g } = await grantFrom(patient);
    const { id: other } = await grantFrom(patient, { sensorMask: sensorMaskOf([ECG]) });
    const t = (await chain.latestTimestamp()) + 60;
    await chain.setNextBlockTimestamp(t);
    const receipt = await mined(as(patient).revoke(id));
    const revokedAtMs = BigInt(t) * 1000n;
    expect(eventsOf(receipt, iface)).toEqual([{ name: 'ConsentRevoked', args: [id, P, researcher.address, revokedAtMs] }]);
    expect(plain(await registry.getGrant(id))).toMatchObject({
      patientRef: P,
      researcher: g.researcher,
      sensorMask: BigInt(g.sensorMask),
      expiresAtMs: g.expiresAtMs,
      revokedAtMs,
    });
    expect(await status(id, researcher.address, HR, T0)).toBe('REVOKED');
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([false, 0n]);
    // Only that grant: the other one of the pair is untouched, and the lists keep both.
    expect(await permitted(researcher.address, P, ECG, T0)).toEqual([true, other]);
    expect(await registry.grantIdsOf(P)).toEqual([id, other]);
    expect(await registry.grantIdsFor(researcher.address)).toEqual([id, other]);
  });

  it('refuses anyone but the bound patient, the grantee and the hospital admin included: ConsentRegistryNotPatient', async () => {
    const { id } = await grantFrom(patient);
    for (const caller of [researcher, outsider, hospital, admin]) {
      await revert(as(caller).revoke(id), 'ConsentRegistryNotPatient', [P, patient.address, caller.address]);
    }
  });

  it('is final: a second revocation reverts with ConsentRegistryAlreadyRevoked(id, revokedAtMs)', async () => {
    const { id } = await grantFrom(patient);
    const receipt = await mined(as(patient).revoke(id));
    const revokedAtMs = BigInt((await chain.provider.getBlock(receipt.blockNumber))!.timestamp) * 1000n;
    await revert(as(patient).revoke(id), 'ConsentRegistryAlreadyRevoked', [id, revokedAtMs]);
  });

  it('refuses an unknown grant: ConsentRegistryUnknownGrant(id), 0 included', async () => {
    await revert(as(patient).revoke(0n), 'ConsentRegistryUnknownGrant', [0n]);
    await revert(as(patient).revoke(1n), 'ConsentRegistryUnknownGrant', [1n]);
    await grantFrom(patient);
    await revert(as(patient).revoke(2n), 'ConsentRegistryUnknownGrant', [2n]);
  });

  it('accepts revoking an expired grant (the withdrawal is recorded); it then reads REVOKED, not EXPIRED', async () => {
    const t = (await chain.latestTimestamp()) + 10;
    await chain.setNextBlockTimestamp(t);
    const { id } = await grantFrom(patient, { expiresAtMs: BigInt(t + 60) * 1000n });
    await chain.provider.send('evm_increaseTime', [120]);
    await chain.provider.send('evm_mine', []);
    expect(await status(id, researcher.address, HR, T0)).toBe('EXPIRED');
    const receipt = await mined(as(patient).revoke(id));
    expect(eventsOf(receipt, iface)[0]?.name).toBe('ConsentRevoked');
    expect(await status(id, researcher.address, HR, T0)).toBe('REVOKED');
  });
});

describe('ConsentRegistry views', () => {
  it('getGrant(): ConsentRegistryUnknownGrant(id) for 0 and for ids not given out', async () => {
    await revert(registry.getGrant(0n), 'ConsentRegistryUnknownGrant', [0n]);
    await revert(registry.getGrant(1n), 'ConsentRegistryUnknownGrant', [1n]);
  });

  it('grantIdsOf() and grantIdsFor() list every grant per patient and per researcher, in order', async () => {
    await mined(as(hospital).bindPatient(P2, patientNew.address));
    const a = (await grantFrom(patient)).id;
    const b = (await grantFrom(patientNew, { patientRef: P2 })).id;
    const c = (await grantFrom(patient, { researcher: researcher2.address })).id;
    const d = (await grantFrom(patientNew, { patientRef: P2, researcher: researcher2.address })).id;
    expect([a, b, c, d]).toEqual([1n, 2n, 3n, 4n]);
    expect(await registry.grantIdsOf(P)).toEqual([a, c]);
    expect(await registry.grantIdsOf(P2)).toEqual([b, d]);
    expect(await registry.grantIdsOf(UNBOUND)).toEqual([]);
    expect(await registry.grantIdsFor(researcher.address)).toEqual([a, b]);
    expect(await registry.grantIdsFor(researcher2.address)).toEqual([c, d]);
    expect(await registry.grantIdsFor(outsider.address)).toEqual([]);
    // Each grant answers only for its own pair.
    expect(await permitted(researcher.address, P2, HR, T0)).toEqual([true, b]);
    expect(await permitted(researcher2.address, P, HR, T0)).toEqual([true, c]);
    expect(await permitted(outsider.address, P, HR, T0)).toEqual([false, 0n]);
  });

  it('isPermitted(): the data window is inclusive at both ends (from, to; not from-1, to+1)', async () => {
    const { id } = await grantFrom(patient, { dataFromMs: T0, dataToMs: T0 + HOUR });
    expect(await permitted(researcher.address, P, HR, T0 - 1n)).toEqual([false, 0n]);
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([true, id]);
    expect(await permitted(researcher.address, P, HR, T0 + HOUR / 2n)).toEqual([true, id]);
    expect(await permitted(researcher.address, P, HR, T0 + HOUR)).toEqual([true, id]);
    expect(await permitted(researcher.address, P, HR, T0 + HOUR + 1n)).toEqual([false, 0n]);
    expect(await status(id, researcher.address, HR, T0 - 1n)).toBe('OUTSIDE_DATA_WINDOW');
    expect(await status(id, researcher.address, HR, T0 + HOUR + 1n)).toBe('OUTSIDE_DATA_WINDOW');
  });

  it('isPermitted(): only the granted sensors; code 0 and codes past 15 are never granted, and never revert', async () => {
    const { id } = await grantFrom(patient, { sensorMask: sensorMaskOf([HR, SPO2]) });
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([true, id]);
    expect(await permitted(researcher.address, P, SPO2, T0)).toEqual([true, id]);
    for (const sensor of [0, ECG, STEPS, 16, 255]) {
      expect(await permitted(researcher.address, P, sensor, T0)).toEqual([false, 0n]);
      expect(await status(id, researcher.address, sensor, T0)).toBe('SENSOR_NOT_GRANTED');
    }
  });

  it('isPermitted(): in force until expiresAtMs, exclusive; the block time in ms is "now"', async () => {
    const t = (await chain.latestTimestamp()) + 10;
    await chain.setNextBlockTimestamp(t);
    const { id: whole } = await grantFrom(patient, { expiresAtMs: BigInt(t + 100) * 1000n });
    const { id: odd } = await grantFrom(patient, { sensorMask: sensorMaskOf([ECG]), expiresAtMs: BigInt(t + 200) * 1000n + 1n });
    await mineAt(t + 99);
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([true, whole]);
    await mineAt(t + 100); // now = expiresAtMs
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([false, 0n]);
    expect(await status(whole, researcher.address, HR, T0)).toBe('EXPIRED');
    await mineAt(t + 200); // now = expiresAtMs - 1 ms
    expect(await permitted(researcher.address, P, ECG, T0)).toEqual([true, odd]);
    await mineAt(t + 201);
    expect(await permitted(researcher.address, P, ECG, T0)).toEqual([false, 0n]);
    expect(await status(odd, researcher.address, ECG, T0)).toBe('EXPIRED');
  });

  it('isPermitted(): with several grants for one pair, the oldest in force that covers the request', async () => {
    const t = (await chain.latestTimestamp()) + 10;
    await chain.setNextBlockTimestamp(t);
    const { id: a } = await grantFrom(patient, { sensorMask: sensorMaskOf([HR]), dataFromMs: T0, dataToMs: T0 + HOUR, expiresAtMs: BigInt(t + 1000) * 1000n });
    const { id: b } = await grantFrom(patient, {
      sensorMask: sensorMaskOf([HR, ECG]),
      dataFromMs: T0 + HOUR / 2n,
      dataToMs: T0 + 2n * HOUR,
      expiresAtMs: BigInt(t + 500) * 1000n,
    });
    const { id: c } = await grantFrom(patient, {
      sensorMask: sensorMaskOf([STEPS]),
      dataFromMs: 0n,
      dataToMs: 2n ** 64n - 1n,
      expiresAtMs: BigInt(t + 2000) * 1000n,
    });
    const mid = T0 + (3n * HOUR) / 4n; // in both a's and b's windows
    expect(await permitted(researcher.address, P, HR, mid)).toEqual([true, a]);
    expect(await permitted(researcher.address, P, HR, T0 + HOUR + 1n)).toEqual([true, b]); // past a's window
    expect(await permitted(researcher.address, P, ECG, T0)).toEqual([false, 0n]); // before b's window
    expect(await permitted(researcher.address, P, ECG, mid)).toEqual([true, b]);
    expect(await permitted(researcher.address, P, STEPS, 0n)).toEqual([true, c]);
    await mined(as(patient).revoke(a));
    expect(await permitted(researcher.address, P, HR, mid)).toEqual([true, b]);
    await mineAt(t + 500); // b expires
    expect(await permitted(researcher.address, P, HR, mid)).toEqual([false, 0n]);
    expect(await permitted(researcher.address, P, STEPS, 2n ** 64n - 1n)).toEqual([true, c]);
  });

  it('checkGrant(): one verdict per reason, checked in the documented order', async () => {
    const t = (await chain.latestTimestamp()) + 10;
    await chain.setNextBlockTimestamp(t);
    const { id } = await grantFrom(patient, { sensorMask: sensorMaskOf([HR]), dataFromMs: T0, dataToMs: T0 + HOUR, expiresAtMs: BigInt(t + 100) * 1000n });
    const r = researcher.address;
    expect(await status(id, r, HR, T0)).toBe('OK');
    expect(await status(id + 1n, r, HR, T0)).toBe('UNKNOWN_GRANT');
    expect(await status(0n, r, HR, T0)).toBe('UNKNOWN_GRANT');
    expect(await status(id, researcher2.address, HR, T0)).toBe('NOT_GRANTEE');
    expect(await status(id, r, ECG, T0)).toBe('SENSOR_NOT_GRANTED');
    expect(await status(id, r, HR, T0 + HOUR + 1n)).toBe('OUTSIDE_DATA_WINDOW');
    // Sensor before window: both wrong → SENSOR_NOT_GRANTED.
    expect(await status(id, r, ECG, T0 + HOUR + 1n)).toBe('SENSOR_NOT_GRANTED');
    await mineAt(t + 100);
    // Expiry before sensor and window; grantee before expiry.
    expect(await status(id, r, ECG, T0 + HOUR + 1n)).toBe('EXPIRED');
    expect(await status(id, researcher2.address, HR, T0)).toBe('NOT_GRANTEE');
    const { id: live } = await grantFrom(patient, { sensorMask: sensorMaskOf([HR]) });
    await mined(as(patient).revoke(live));
    expect(await status(live, r, ECG, T0 + HOUR + 1n)).toBe('REVOKED');
    expect(await status(live, researcher2.address, HR, T0)).toBe('NOT_GRANTEE');
  });
});

describe('ConsentRegistry: the per-pair bound', () => {
  it('holds 32 open grants per pair; revoked and expired ones make room, the order of the rest is kept; other pairs are unaffected', async () => {
    const t0 = (await chain.latestTimestamp()) + 10;
    await chain.setNextBlockTimestamp(t0);
    const ids: bigint[] = [];
    // Grant k (1-based) expires k days after t0.
    for (let k = 1n; k <= MAX_OPEN; k++)
      ids.push((await grantFrom(patient, { sensorMask: sensorMaskOf([HR]), expiresAtMs: (BigInt(t0) + k * 86_400n) * 1000n })).id);
    expect(ids[0]).toBe(1n);
    const far = (BigInt(t0) + 400n * 86_400n) * 1000n;
    await revert(grantTx(patient, await args({ expiresAtMs: far })), 'ConsentRegistryTooManyOpenGrants', [P, researcher.address, MAX_OPEN]);
    // Another researcher of the same patient is another pair.
    await grantFrom(patient, { researcher: researcher2.address });

    await mined(as(patient).revoke(ids[0]!));
    const { id: next } = await grantFrom(patient, { sensorMask: sensorMaskOf([HR]), expiresAtMs: far });
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([true, ids[1]]); // the oldest in force
    await revert(grantTx(patient, await args({ expiresAtMs: far })), 'ConsentRegistryTooManyOpenGrants', [P, researcher.address, MAX_OPEN]);

    await mineAt(t0 + 11 * 86_400); // grants 2..11 expire
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([true, ids[11]]);
    const { id: after } = await grantFrom(patient, { sensorMask: sensorMaskOf([ECG]), expiresAtMs: far });
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([true, ids[11]]);
    expect(await permitted(researcher.address, P, ECG, T0)).toEqual([true, after]);
    // The lists of all grants are not pruned.
    expect((await registry.grantIdsOf(P)).length).toBe(Number(MAX_OPEN) + 3);
    await mineAt(t0 + 400 * 86_400);
    expect(await permitted(researcher.address, P, HR, T0)).toEqual([false, 0n]);
    expect(await status(next, researcher.address, HR, T0)).toBe('EXPIRED');
  });
});

describe('ConsentRegistry: privacy', () => {
  /** Storage slots of ConsentRegistry's variables after AccessControl's `_roles` (slot 0), in declaration order. */
  const SLOT = { lastGrantId: 1n, grants: 2n, patientOf: 3n, patientRefOf: 4n, grantIdsOf: 5n, grantIdsFor: 6n, openGrants: 7n } as const;
  const abi = AbiCoder.defaultAbiCoder();
  const mapSlot = (keyType: string, key: unknown, slot: bigint): bigint => getBigInt(keccak256(abi.encode([keyType, 'uint256'], [key, slot])));
  /** The length slot and the data slots of a uint64[] (four ids per slot). */
  const arraySlots = async (slot: bigint): Promise<bigint[]> => {
    const length = getBigInt(await chain.provider.getStorage(registry.target as string, slot));
    const data = getBigInt(keccak256(toBeHex(slot, 32)));
    return [slot, ...Array.from({ length: Number((length + 3n) / 4n) }, (_, i) => data + BigInt(i))];
  };
  const hex = (s: string): string => s.toLowerCase().replace(/^0x/, '');

  it('keeps the pseudonym off chain: no storage slot, event topic or data, or calldata holds it or a plain hash of it; only the HMAC ref', async () => {
    const from = await chain.provider.getBlockNumber();
    // Everything a patient's life cycle writes: bind, grants to two researchers, revoke, rebind, revoke by the new key.
    const { id: a } = await grantFrom(patient);
    const { id: b } = await grantFrom(patient, { researcher: researcher2.address, sensorMask: sensorMaskOf([ECG]) });
    await mined(as(patient).revoke(a));
    await mined(as(hospital).bindPatient(P, patientNew.address));
    await mined(as(patientNew).revoke(b));
    const to = await chain.provider.getBlockNumber();
    const address = registry.target as string;

    const forbidden = [hex(Buffer.from(PSEUDONYM, 'utf8').toString('hex')), hex(sha256hex(PSEUDONYM)), hex(keccak256(toUtf8Bytes(PSEUDONYM)))];
    const clean = (where: string, text: string): void => {
      for (const f of forbidden) expect(hex(text).includes(f), `${where} holds the pseudonym or a plain hash of it`).toBe(false);
    };

    // The slots this test wrote, each read back; the layout is proven by the values they hold.
    const slots: bigint[] = [SLOT.lastGrantId];
    for (const id of [a, b]) {
      const base = mapSlot('uint64', id, SLOT.grants);
      slots.push(base, base + 1n, base + 2n, base + 3n);
    }
    slots.push(
      mapSlot('bytes32', P, SLOT.patientOf),
      mapSlot('address', patient.address, SLOT.patientRefOf),
      mapSlot('address', patientNew.address, SLOT.patientRefOf),
    );
    slots.push(...(await arraySlots(mapSlot('bytes32', P, SLOT.grantIdsOf))));
    for (const r of [researcher.address, researcher2.address]) {
      slots.push(...(await arraySlots(mapSlot('address', r, SLOT.grantIdsFor))));
      slots.push(...(await arraySlots(mapSlot('address', r, getBigInt(keccak256(abi.encode(['bytes32', 'uint256'], [P, SLOT.openGrants])))))));
    }
    const read = async (slot: bigint): Promise<string> => chain.provider.getStorage(address, slot);
    expect(getBigInt(await read(SLOT.lastGrantId))).toBe(2n);
    expect(await read(mapSlot('uint64', a, SLOT.grants))).toBe(P);
    expect(await read(mapSlot('uint64', a, SLOT.grants) + 1n)).toBe(PURPOSE);
    expect(await read(mapSlot('bytes32', P, SLOT.patientOf))).toBe(zeroPadValue(patientNew.address.toLowerCase(), 32));
    expect(await read(mapSlot('address', patientNew.address, SLOT.patientRefOf))).toBe(P);
    expect(await read(mapSlot('address', patient.address, SLOT.patientRefOf))).toBe(ZeroHash); // unbound by the rebind
    for (const slot of slots) clean(`storage slot ${toBeHex(slot)}`, await read(slot));

    // Every slot the contract has, from anvil's state dump: keys and values.
    const dump = JSON.parse(gunzipSync(Buffer.from(hex((await chain.provider.send('anvil_dumpState', [])) as string), 'hex')).toString('utf8')) as {
      accounts: Record<string, { storage?: Record<string, string> }>;
    };
    const storage = dump.accounts[address.toLowerCase()]?.storage;
    expect(storage, 'the state dump has the registry storage').toBeDefined();
    const entries = Object.entries(storage!);
    const dumped = new Set(entries.map(([k]) => getBigInt(k)));
    for (const slot of slots) if ((await read(slot)) !== ZeroHash) expect(dumped.has(slot), `slot ${toBeHex(slot)} in the dump`).toBe(true);
    expect(entries.some(([, v]) => hex(v) === hex(P))).toBe(true);
    for (const [k, v] of entries) clean(`storage ${k}`, `${k}${v}`);

    // Every log the contract emitted, and the calldata of every transaction to it.
    const logs = await chain.provider.getLogs({ address, fromBlock: 0, toBlock: 'latest' });
    expect(logs.length).toBeGreaterThanOrEqual(6);
    expect(logs.some((l) => l.topics.includes(P))).toBe(true);
    for (const l of logs) clean(`log ${l.transactionHash}:${l.index}`, [...l.topics, l.data].join(''));
    let calls = 0;
    for (let n = from + 1; n <= to; n++) {
      const block = await chain.provider.getBlock(n, true);
      for (const tx of block?.prefetchedTransactions ?? []) {
        if (tx.to !== address) continue;
        calls++;
        clean(`calldata of ${tx.hash}`, tx.data);
      }
    }
    expect(calls).toBe(5);
  });
});

describe('ConsentRegistry: verdict codes and sensor masks on the TypeScript side', () => {
  it('GRANT_STATUS has exactly the names and values of enum GrantStatus in IConsentRegistry.sol', () => {
    const source = readFileSync(new URL('../../contracts/interfaces/IConsentRegistry.sol', import.meta.url), 'utf8');
    const body = /enum GrantStatus \{([^}]*)\}/.exec(source)?.[1];
    expect(body).toBeDefined();
    const names = body!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    expect(Object.entries(GRANT_STATUS)).toEqual(names.map((n, i) => [n, i]));
    expect(grantStatusName(3n)).toBe('REVOKED');
    expect(grantStatusName(99)).toBeUndefined();
  });

  it('sensorMaskOf() sets bit c for code c, and refuses code 0, codes past 15, non-integers and an empty set', () => {
    expect(sensorMaskOf([HR, SPO2])).toBe(0b110);
    expect(sensorMaskOf(SENSORS.map((s) => s.code))).toBe(0xfe);
    expect(sensorCodesOf(0xfen)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(sensorCodesOf(sensorMaskOf([STEPS, HR]))).toEqual([HR, STEPS]);
    for (const bad of [[0], [16], [1.5], []]) expect(() => sensorMaskOf(bad)).toThrow(TypeError);
  });
});

describe('ConsentRegistry gas', () => {
  it('measures bind, rebind, grant, revoke, and isPermitted with 1, 20 and 32 grants for a pair', async () => {
    const gasOf = async (tx: Promise<ContractTransactionResponse>): Promise<bigint> => (await mined(tx)).gasUsed;
    const viewGas = (sensor: number, atMs: bigint): Promise<bigint> =>
      chain.provider.estimateGas({ to: registry.target as string, data: iface.encodeFunctionData('isPermitted', [researcher.address, P, sensor, atMs]) });
    const deployment = (
      await new ContractFactory(consentRegistryArtifact.abi, consentRegistryArtifact.bytecode, admin).deploy(admin.address)
    ).deploymentTransaction();
    const deployGas = (await deployment?.wait())?.gasUsed;

    const bind = await gasOf(as(hospital).bindPatient(P2, outsider.address));
    const rebind = await gasOf(as(hospital).bindPatient(P2, patientNew.address));
    const first = await gasOf(grantTx(patient, await args({ sensorMask: sensorMaskOf([HR]) }))); // first of the patient and of the researcher
    const one = { match: await viewGas(HR, T0), none: await viewGas(ECG, T0) };
    const later: bigint[] = [];
    // Grants 2..19 cover steps only; grant 20 covers ECG: HR matches the first, ECG only the last, SpO2 none.
    for (let k = 2; k <= 19; k++) later.push(await gasOf(grantTx(patient, await args({ sensorMask: sensorMaskOf([STEPS]) }))));
    later.push(await gasOf(grantTx(patient, await args({ sensorMask: sensorMaskOf([ECG]) }))));
    const twenty = { first: await viewGas(HR, T0), last: await viewGas(ECG, T0), none: await viewGas(SPO2, T0) };
    for (let k = 21; k <= 32; k++) await mined(grantTx(patient, await args({ sensorMask: sensorMaskOf([STEPS]) })));
    const full = await viewGas(SPO2, T0);
    const revoke = await gasOf(as(patient).revoke(5n));
    const min = later.reduce((x, y) => (y < x ? y : x));
    const max = later.reduce((x, y) => (y > x ? y : x));

    console.log(
      `ConsentRegistry gas: deploy ${deployGas}; bindPatient ${bind}, rebind ${rebind}; grant first of a patient ${first}, later ${min}-${max}; revoke ${revoke}; ` +
        `isPermitted (eth_estimateGas, 21,000 base included) 1 grant: match ${one.match}, none ${one.none}; ` +
        `20 grants: first matches ${twenty.first}, last matches ${twenty.last}, none ${twenty.none}; 32 grants, none ${full}`,
    );
    // Early exit: a match on the first grant costs the same with 20 grants as with 1.
    expect(twenty.first - one.match).toBeLessThan(3_000n);
    // A full scan grows linearly: under 6,000 gas per grant read (two cold slots), and the bound keeps it small.
    expect(twenty.none - one.none).toBeLessThan(19n * 6_000n);
    expect(full - twenty.none).toBeLessThan(12n * 6_000n);
    expect(full).toBeLessThan(250_000n);
    expect(max).toBeLessThan(first);
  });
});
