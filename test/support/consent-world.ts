/**
 * A consent world for the researcher end-to-end suites: the real gateway process with its
 * embedded anvil chain (ConsentRegistry deployed on first start) and a real influxd, patients
 * bound by the hospital admin, grants made with the patients' own keys, and researchers that
 * are nothing but keys: MQTT logins they sign themselves, raw MQTT 3.1.1 CONNECTs for the
 * floods, and the patient's disclosure report over HTTP. The same set-up as
 * test/e2e/consent.test.ts, without BLE.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keccak256, toUtf8Bytes, Wallet, type HDNodeWallet, type JsonRpcProvider, type TransactionReceipt } from 'ethers';
import type { IClientOptions } from 'mqtt';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { consentRegistryAt, consentRegistryInterface, sensorMaskOf } from '../../gateway/chain/contracts.js';
import { chainProvider, EMBEDDED_ACCOUNTS } from '../../gateway/chain/runtime.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { encodeLogin, selfIssuedChallenge } from '../../gateway/consent/auth.js';
import { CLI, GatewayProcess } from './gateway-process.js';
import { connectPacket as rawConnectPacket } from './mqtt-raw.js';
import { embeddedChainUrl } from './anchored.js';

export interface ConsentWorld {
  dir: string;
  dataDir: string;
  gw: GatewayProcess;
  record: DeploymentRecord;
  provider: JsonRpcProvider;
  flags: Record<string, string | number>;
}

/** Enrols the devices, starts the gateway with `flags` on top of the suite's own, and reads its deployment. */
export async function startConsentWorld(
  name: string,
  gatewayId: string,
  influxUrl: string,
  devices: SimDevice[],
  flags: Record<string, string | number> = {},
): Promise<ConsentWorld> {
  const dir = mkdtempSync(join(tmpdir(), `vp-${name}-`));
  const dataDir = join(dir, 'gw');
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  execFileSync(process.execPath, [CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', dataDir]);
  const all = { dataDir, gatewayId, 'influx.url': influxUrl, 'mqtt.port': 0, 'http.port': 0, 'batch.intervalMs': 300, 'accessLog.intervalMs': 300, ...flags };
  const gw = await GatewayProcess.start(all);
  const record = JSON.parse(readFileSync(join(dataDir, 'chain', 'deployment.json'), 'utf8')) as DeploymentRecord;
  const provider = chainProvider(embeddedChainUrl(dataDir), record.chainId, 100);
  return { dir, dataDir, gw, record, provider, flags: all };
}

export async function mined(tx: Promise<{ wait(): Promise<TransactionReceipt | null> }>): Promise<TransactionReceipt> {
  const r = await (await tx).wait();
  if (!r || r.status !== 1) throw new Error('transaction failed');
  return r;
}

/** patientRef of a pseudonym, as the enrolment wrote it to the registry's directory. */
export function patientRefOf(dataDir: string, pseudonym: string): string {
  const doc = JSON.parse(readFileSync(join(dataDir, 'registry', 'directory.json'), 'utf8')) as {
    devices: Record<string, { patient: string; patientRef: string }>;
  };
  const e = Object.values(doc.devices).find((d) => d.patient === pseudonym);
  if (!e) throw new Error(`no directory entry for ${pseudonym}`);
  return e.patientRef;
}

/** The hospital admin binds the patient's own key to the patientRef of `pseudonym`. */
export async function bindPatient(w: ConsentWorld, pseudonym: string, patient: HDNodeWallet): Promise<void> {
  const admin = consentRegistryAt(w.record.consentRegistry.address, devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin, w.provider));
  await mined(admin.bindPatient(patientRefOf(w.dataDir, pseudonym), patient.address));
}

/** The patient grants `to` the metrics over [fromMs, toMs] until expiresAtMs; resolves with the grant id and its block. */
export async function grant(
  w: ConsentWorld,
  patient: HDNodeWallet,
  pseudonym: string,
  to: string,
  metrics: string[],
  fromMs: number,
  toMs: number,
  expiresAtMs: number,
): Promise<{ id: bigint; block: number }> {
  const consent = consentRegistryAt(w.record.consentRegistry.address, patient);
  const receipt = await mined(
    consent.grant(
      patientRefOf(w.dataDir, pseudonym),
      to,
      sensorMaskOf(metrics.map((m) => sensorByName(m).code)),
      fromMs,
      toMs,
      expiresAtMs,
      keccak256(toUtf8Bytes(`e2e purpose ${to}`)),
    ),
  );
  const ev = receipt.logs.map((l) => consentRegistryInterface.parseLog(l)).find((p) => p?.name === 'ConsentGranted');
  return { id: ev!.args[0] as bigint, block: receipt.blockNumber };
}

/** A researcher key derived from a label: no funds, no account on chain. */
export const researcherKey = (label: string): Wallet => new Wallet(keccak256(toUtf8Bytes(`vitalproof e2e researcher ${label}`)));

/** The MQTT password of a fresh self-issued login. */
export async function loginPassword(wallet: Wallet, gatewayId: string): Promise<string> {
  const text = selfIssuedChallenge(gatewayId, wallet.address);
  return encodeLogin({ text, signature: await wallet.signMessage(text) });
}

/** mqtt.js CONNECT options: the address as username, the self-issued signed challenge as password. */
export async function researcherOptions(wallet: Wallet, gatewayId: string, clientId?: string): Promise<IClientOptions> {
  return {
    username: wallet.address,
    password: await loginPassword(wallet, gatewayId),
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    clean: true,
    ...(clientId ? { clientId } : {}),
  };
}

/** A CONNECT packet (MQTT 3.1.1 §3.1): clean session, username and password, keep-alive 30 s. */
export function connectPacket(clientId: string, username: string, password: string): Buffer {
  return rawConnectPacket({ clientId, username, password: Buffer.from(password, 'utf8') });
}

/**
 * Opens a TCP connection, sends `packet` and resolves with the first bytes the broker answers
 * (a CONNACK: 0x20 0x02 flags code) or null when it closes without answering. With `drop`,
 * the socket is destroyed the moment the answer arrives: a client gone right after CONNACK.
 * @returns the CONNACK return code, or null, and the socket when it is kept open.
 */
export function rawConnect(port: number, packet: Buffer, opts: { drop: boolean; timeoutMs?: number }): Promise<{ code: number | null; socket?: Socket }> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    let done = false;
    const finish = (code: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (opts.drop || code !== 0) {
        s.destroy();
        resolve({ code });
      } else resolve({ code, socket: s });
    };
    const timer = setTimeout(() => finish(null), opts.timeoutMs ?? 10_000);
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4 && buf[0] === 0x20) finish(buf[3]!);
    });
    s.on('error', () => finish(null));
    s.on('close', () => finish(null));
    s.on('connect', () => s.write(packet));
  });
}
