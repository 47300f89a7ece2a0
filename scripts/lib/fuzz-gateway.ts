/**
 * The real gateway the network fuzz targets attack: `cli/main.js run` as a child process (the same
 * harness as the bench and the e2e suites) on a fresh data dir, with the embedded chain (anvil,
 * DeviceRegistry, ConsentRegistry) and an embedded influxd, so that every route has something
 * behind it: enrolled devices (an honest one, and one per parallel fuzz session), a patient
 * bound on chain who granted a researcher access, honest readings in storage, and a researcher
 * logged in over HTTP. Also: the gateway's resident set read from /proc.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keccak256, toUtf8Bytes, Wallet, type JsonRpcProvider, type TransactionReceipt } from 'ethers';
import { connectAsync, type MqttClient } from 'mqtt';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import { DeviceCore, MemorySeqStore, SequenceCounter } from '../../firmware-proto/device.js';
import { deviceClientId, frameTopic } from '../../firmware-proto/topics.js';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { consentRegistryAt, consentRegistryInterface, sensorMaskOf } from '../../gateway/chain/contracts.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { chainProvider, EMBEDDED_ACCOUNTS } from '../../gateway/chain/runtime.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { GATEWAY_CLI, GatewayProcess } from './gateway-process.js';

export const FUZZ_GATEWAY_ID = 'gw-fuzz';

/**
 * The limits the fuzz gateway runs with (docs/operations.md, "Pre-authentication limits" and
 * "HTTP limits"); the others are the defaults. The MQTT connection caps are raised above the
 * fuzzer's own parallelism, all from 127.0.0.1; the CONNECT deadline is short so that half-sent
 * CONNECTs end quickly; the login rate per source is raised so that most fuzzed logins reach the
 * authenticator (the rate limit itself still answers some of them).
 */
export const FUZZ_LIMITS = {
  'mqtt.connectDeadlineMs': 1000,
  'mqtt.maxConnections': 1024,
  'mqtt.maxConnectionsPerSource': 512,
  'http.maxHeaderBytes': 16 * 1024,
  'http.maxBodyBytes': 16 * 1024,
  'http.loginPerSourcePerS': 50,
  'http.loginPerSourceBurst': 50,
} as const;

/** A signed device as the fuzzer drives it: its identity, and a core that numbers and signs its frames. */
export interface FuzzDevice {
  id: string;
  clientId: string;
  secretKey: Uint8Array;
  patient: string;
  core: DeviceCore;
}

export interface FuzzGateway {
  gw: GatewayProcess;
  dataDir: string;
  influxUrl: string;
  /** Streams honest frames through the fuzz; every one must be accepted and stored. */
  honest: FuzzDevice;
  /** One per parallel MQTT session. */
  fuzz: FuzzDevice[];
  /** Signed by a key the registry does not know. */
  unenrolled: FuzzDevice;
  /** A researcher with a grant in force on the honest device's patient (heart_rate), logged in over HTTP. */
  researcher: { wallet: Wallet; token: string; grantId: bigint };
  /** A researcher with no grant, logged in. */
  stranger: { wallet: Wallet; token: string };
  /** A readings cursor the gateway gave out (for mutation), or undefined if there was only one page. */
  cursor: string | undefined;
  /** The honest frames published so far (seq → bytes), and publishing more. */
  honestSent: Map<bigint, Uint8Array>;
  publishHonest(): Promise<void>;
  /** `n` challenges the gateway issues now to a third account (no grants), each signed by it. */
  issuedChallenges(n: number): Promise<{ text: string; signature: string }[]>;
  /** The gateway's VmRSS and VmHWM, bytes (0 once it has exited). */
  memory(): { rss: number; hwm: number };
  stop(): Promise<void>;
}

export interface FuzzGatewayOptions {
  /** MQTT sessions the fuzzer runs in parallel: one enrolled device each. */
  sessions: number;
  /** Extra gateway flags (override FUZZ_LIMITS). */
  flags?: Record<string, string | number>;
  /** Progress lines. */
  log?: (line: string) => void;
}

function fuzzDevice(d: SimDevice): FuzzDevice {
  return {
    id: d.deviceId,
    clientId: deviceClientId(d.deviceId),
    secretKey: d.keys.secretKey,
    patient: d.patient,
    core: new DeviceCore(d.deviceId, d.keys.secretKey, new SequenceCounter(new MemorySeqStore())),
  };
}

async function mined(tx: Promise<{ wait(): Promise<TransactionReceipt | null> }>): Promise<TransactionReceipt> {
  const r = await (await tx).wait();
  if (!r || r.status !== 1) throw new Error('transaction failed');
  return r;
}

/** /proc/<pid>/status: VmRSS (now) and VmHWM (peak since start), bytes. */
export function processMemory(pid: number): { rss: number; hwm: number } {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return { rss: 0, hwm: 0 };
  }
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** A signed heart-rate frame of `d`, timed now (one sample). */
export function heartRateFrame(d: FuzzDevice, value = 60 + Math.floor(Math.random() * 40)): { seq: bigint; raw: Uint8Array } {
  const spec = sensorByName('heart_rate');
  return d.core.record({ timestampMs: BigInt(Date.now()), sensor: spec.code, scale: 0, intervalUs: 1_000_000, samples: Int32Array.of(value) });
}

/**
 * Starts the gateway, enrols its devices, binds a patient and grants a researcher on chain,
 * streams a few honest frames into storage and logs both researchers in.
 * @param seed names the devices and the researchers (deterministic identities per seed).
 */
export async function startFuzzGateway(seed: number, o: FuzzGatewayOptions): Promise<FuzzGateway> {
  const log = o.log ?? ((): void => undefined);
  const dir = mkdtempSync(join(tmpdir(), 'vp-fuzz-'));
  const dataDir = join(dir, 'gw');
  const sims = fleetDevices(`fuzz-${seed}`, 1 + o.sessions, 'heart_rate');
  const stranger = fleetDevices(`fuzz-unenrolled-${seed}`, 1, 'heart_rate')[0]!;
  writeEnrolmentFile(join(dir, 'fleet.json'), sims);
  log(`enrolling ${sims.length} devices on the embedded chain`);
  execFileSync(process.execPath, [GATEWAY_CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', dataDir], { stdio: 'ignore' });
  let gw: GatewayProcess;
  try {
    gw = await GatewayProcess.start({
      dataDir,
      gatewayId: FUZZ_GATEWAY_ID,
      'mqtt.port': 0,
      'http.port': 0,
      'batch.intervalMs': 1000,
      'accessLog.intervalMs': 1000,
      ...FUZZ_LIMITS,
      ...o.flags,
    });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const readyUrl = gw.lines.find((l) => l.event === 'ready')?.['influxUrl'];
  const influxUrl = typeof readyUrl === 'string' ? readyUrl : '';
  const honest = fuzzDevice(sims[0]!);
  const clients: MqttClient[] = [];
  let provider: JsonRpcProvider | undefined;
  const stop = async (): Promise<void> => {
    for (const c of clients) await c.endAsync().catch(() => undefined);
    provider?.destroy();
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // The patient's own key is bound to their patientRef; the patient grants the researcher heart_rate, ±1 h.
    const record = JSON.parse(readFileSync(join(dataDir, 'chain', 'deployment.json'), 'utf8')) as DeploymentRecord;
    const chainUrl = (JSON.parse(readFileSync(join(dataDir, 'chain', 'endpoint.json'), 'utf8')) as { url: string }).url;
    provider = chainProvider(chainUrl, record.chainId, 100);
    const directory = JSON.parse(readFileSync(join(dataDir, 'registry', 'directory.json'), 'utf8')) as {
      devices: Record<string, { patient: string; patientRef: string }>;
    };
    const patientRef = Object.values(directory.devices).find((d) => d.patient === honest.patient)?.patientRef;
    if (!patientRef) throw new Error(`no directory entry for ${honest.patient}`);
    const patient = devWallet(5, provider);
    const admin = consentRegistryAt(record.consentRegistry!.address, devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin, provider));
    await mined(admin.bindPatient(patientRef, patient.address));
    const researcher = new Wallet(keccak256(toUtf8Bytes(`vitalproof fuzz researcher ${seed}`)));
    const strangerWallet = new Wallet(keccak256(toUtf8Bytes(`vitalproof fuzz stranger ${seed}`)));
    const t = Date.now();
    const receipt = await mined(
      consentRegistryAt(record.consentRegistry!.address, patient).grant(
        patientRef,
        researcher.address,
        sensorMaskOf([sensorByName('heart_rate').code]),
        t - 3_600_000,
        t + 3_600_000,
        t + 6 * 3_600_000,
        keccak256(toUtf8Bytes('fuzz')),
      ),
    );
    const ev = receipt.logs.map((l) => consentRegistryInterface.parseLog(l)).find((p) => p?.name === 'ConsentGranted');
    const grantId = ev!.args[0] as bigint;
    await gw.until(
      (s) => s.consent.following && s.consent.grants >= 1 && (s.consent.lastBlock ?? 0) >= receipt.blockNumber,
      30_000,
      'the gateway sees the grant',
    );

    // Honest frames: a readings page of more than one frame, so that there is a cursor to mutate.
    const honestSent = new Map<bigint, Uint8Array>();
    const honestClient = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, {
      clientId: honest.clientId,
      username: honest.id,
      password: Buffer.from(makeConnectPassword(honest.id, honest.clientId, honest.secretKey)),
      protocolVersion: 4,
      reconnectPeriod: 0,
      clean: true,
      keepalive: 30,
    });
    clients.push(honestClient);
    const publishHonest = async (): Promise<void> => {
      const f = heartRateFrame(honest);
      await honestClient.publishAsync(frameTopic(honest.id), Buffer.from(f.raw), { qos: 1 });
      honestSent.set(f.seq, f.raw);
    };
    for (let i = 0; i < 5; i++) await publishHonest();
    await gw.until((s) => s.storage.framesWritten >= 5, 30_000, 'the first honest frames in storage');

    const login = async (w: Wallet): Promise<string> => {
      const post = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
        const res = await fetch(`http://127.0.0.1:${gw.httpPort}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        const j = (await res.json()) as Record<string, unknown>;
        if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(j)}`);
        return j;
      };
      const ch = (await post('/auth/challenge', { address: w.address, purpose: 'http' }))['challenge'] as string;
      return (await post('/auth/login', { challenge: ch, signature: await w.signMessage(ch) }))['token'] as string;
    };
    const token = await login(researcher);
    const strangerToken = await login(strangerWallet);
    const page = await fetch(`http://127.0.0.1:${gw.httpPort}/research/grants/${grantId}/readings?limit=2`, { headers: { authorization: `Bearer ${token}` } });
    const cursor = ((await page.json()) as { nextCursor?: string | null }).nextCursor ?? undefined;
    const visitor = new Wallet(keccak256(toUtf8Bytes(`vitalproof fuzz visitor ${seed}`)));
    const issuedChallenges = async (n: number): Promise<{ text: string; signature: string }[]> => {
      const out: { text: string; signature: string }[] = [];
      for (let i = 0; i < n; i++) {
        const res = await fetch(`http://127.0.0.1:${gw.httpPort}/auth/challenge`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ address: visitor.address, purpose: 'http' }),
        });
        const text = ((await res.json()) as { challenge?: string }).challenge;
        if (res.status === 200 && text) out.push({ text, signature: await visitor.signMessage(text) });
      }
      return out;
    };
    log(`gateway pid ${gw.pid} ready: mqtt ${gw.mqttPort}, http ${gw.httpPort}, grant ${grantId}${cursor ? ', a cursor' : ''}`);
    return {
      gw,
      dataDir,
      influxUrl,
      honest,
      fuzz: sims.slice(1).map(fuzzDevice),
      unenrolled: fuzzDevice(stranger),
      researcher: { wallet: researcher, token, grantId },
      stranger: { wallet: strangerWallet, token: strangerToken },
      cursor,
      honestSent,
      publishHonest,
      issuedChallenges,
      memory: () => processMemory(gw.pid),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Every honest frame published is in storage exactly once (InfluxDB, read back by the gateway's
 * own sink): "all accepted" checked where it matters. Waits for the spool to drain first.
 * @returns the seqs missing and the seqs stored more than once.
 */
export async function honestStored(f: FuzzGateway): Promise<{ sent: number; missing: string[]; duplicated: string[] }> {
  await f.gw.until((s) => s.storage.up && s.spool.backlogFrames === 0 && s.storage.framesWritten >= s.frames.accepted, 60_000, 'spool drained into InfluxDB');
  const sink = new InfluxSink({ url: f.influxUrl, database: 'vitalproof', gatewayId: FUZZ_GATEWAY_ID });
  const stored = await sink.queryFrames(f.honest.id);
  const seen = new Map<string, number>();
  for (const s of stored) seen.set(String(s.seq), (seen.get(String(s.seq)) ?? 0) + 1);
  const missing = [...f.honestSent.keys()].map(String).filter((s) => !seen.has(s));
  const duplicated = [...seen].filter(([, n]) => n > 1).map(([s]) => s);
  return { sent: f.honestSent.size, missing, duplicated };
}
