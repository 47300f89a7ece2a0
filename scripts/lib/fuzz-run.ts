/**
 * One fuzzing run over the four targets (docs/fuzzing.md): the frame decoder and the GATT
 * reassembler in this process, the HTTP API and the MQTT listener of a real gateway process
 * started for the run. `npm run fuzz` (scripts/fuzz.ts) and the bounded run of `npm test`
 * (test/fuzz/fuzz.test.ts) call the same `runFuzz`, with different budgets.
 */
import { fuzzFrameDecoder } from './fuzz-frames.js';
import { FUZZ_GATEWAY_ID, FUZZ_LIMITS, honestStored, processMemory, startFuzzGateway, type FuzzGateway } from './fuzz-gateway.js';
import { fuzzReassembler } from './fuzz-gatt.js';
import { fuzzHttp } from './fuzz-http.js';
import { fuzzMqtt, type MqttResearcher } from './fuzz-mqtt.js';
import type { Wallet } from 'ethers';
import { encodeLogin, selfIssuedChallenge } from '../../gateway/consent/auth.js';
import { prng, subSeed } from './fuzz-rng.js';
import type { TargetReport } from './fuzz-report.js';
import { cpuWindow } from './proc.js';

export const TARGETS = ['frame', 'gatt', 'http', 'mqtt'] as const;
export type Target = (typeof TARGETS)[number];

/** Share of the budget per target: the in-process targets are cheap, the network ones are where the gateway is. */
export const DEFAULT_WEIGHTS: Record<Target, number> = { frame: 0.45, gatt: 0.25, http: 0.15, mqtt: 0.15 };

/**
 * Warning-or-worse lines of one event in any minute, at most: what the gateway logs on its own
 * (batches, anchors: about one a second) stays far below; refusals of what outsiders send must be
 * counted and summed (gateway/log.ts LogLimiter), not written one by one.
 */
export const LOG_FLOOD_PER_MINUTE = 120;

/** The busiest minute of each warning-or-worse event, for those above LOG_FLOOD_PER_MINUTE. */
export function logFloods(lines: readonly { level: number; event?: string; time?: unknown }[]): { event: string; maxPerMinute: number }[] {
  const times = new Map<string, number[]>();
  for (const l of lines) {
    if (l.level < 40 || l.event === undefined) continue;
    const t = Date.parse(String(l.time));
    if (Number.isFinite(t)) times.set(l.event, [...(times.get(l.event) ?? []), t]);
  }
  const out: { event: string; maxPerMinute: number }[] = [];
  for (const [event, ts] of times) {
    ts.sort((a, b) => a - b);
    let max = 0;
    for (let i = 0, j = 0; i < ts.length; i++) {
      while (ts[i]! - ts[j]! >= 60_000) j++;
      max = Math.max(max, i - j + 1);
    }
    if (max > LOG_FLOOD_PER_MINUTE) out.push({ event, maxPerMinute: max });
  }
  return out;
}

/** Limits of the fuzz gateway's own process (bytes): its resident set may not grow beyond this over its baseline. */
export const RSS_GROWTH_BOUND = 256 * 1024 * 1024;

export interface FuzzOptions {
  /** Inputs in total, split over `targets` by DEFAULT_WEIGHTS (unless `perTarget` says how many). */
  inputs: number;
  /** Inputs per target, instead of the weights' split of `inputs`. */
  perTarget?: Partial<Record<Target, number>>;
  seed: number;
  targets: readonly Target[];
  /** Progress and set-up lines. */
  log?: (line: string) => void;
  /** Parallel MQTT sessions (enrolled devices) and pre-CONNECT connections; HTTP connections. */
  mqttSessions?: number;
  mqttPreConcurrency?: number;
  httpConcurrency?: number;
}

export interface FuzzResult {
  seed: number;
  inputs: number;
  elapsedMs: number;
  reports: TargetReport[];
  /** The gateway (network targets only). */
  gateway?: {
    pid: number;
    exited: boolean;
    rss: { baselineBytes: number; peakBytes: number; afterBytes: number; hwmBytes: number };
    /** Honest frames published through the MQTT fuzz, and those not found in storage exactly once. */
    honest: { sent: number; missing: string[]; duplicated: string[] };
    /** Log lines the gateway wrote during the network targets (all levels), and those at error level or above. */
    logLines: number;
    /** Error-level lines: how many, and the first 20. */
    errorLines: number;
    errors: string[];
    /** Warning-or-worse events written more than LOG_FLOOD_PER_MINUTE times in some minute: a party outside the gateway sets the rate. */
    logFloods: { event: string; maxPerMinute: number }[];
    startMs: number;
  };
  /** Every unexpected outcome of every target, and the gateway-level failures. */
  unexpected: number;
}

/** Inputs per target: the budget split by the weights of the chosen targets (rounding into the first). */
export function budgets(inputs: number, targets: readonly Target[]): Record<Target, number> {
  const out = { frame: 0, gatt: 0, http: 0, mqtt: 0 };
  const total = targets.reduce((a, t) => a + DEFAULT_WEIGHTS[t], 0);
  for (const t of targets) out[t] = Math.floor((inputs * DEFAULT_WEIGHTS[t]) / total);
  out[targets[0]!] += inputs - targets.reduce((a, t) => a + out[t], 0);
  return out;
}

/** Samples a process's VmRSS every `everyMs` until stopped: the peak between two marks. */
class RssSampler {
  private timer: NodeJS.Timeout;
  private peak = 0;
  samples = 0;
  constructor(
    private readonly pid: number,
    everyMs = 200,
  ) {
    this.timer = setInterval(() => this.sample(), everyMs);
  }
  sample(): number {
    const { rss } = processMemory(this.pid);
    this.samples++;
    this.peak = Math.max(this.peak, rss);
    return rss;
  }
  /** The peak since the last mark, and starts a new period. */
  mark(): number {
    const p = Math.max(this.peak, this.sample());
    this.peak = 0;
    return p;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzResult> {
  const t0 = performance.now();
  const log = o.log ?? ((): void => undefined);
  const b = o.perTarget ? { frame: 0, gatt: 0, http: 0, mqtt: 0, ...o.perTarget } : budgets(o.inputs, o.targets);
  const reports: TargetReport[] = [];
  const inProcessRss = (): number => process.memoryUsage().rss;
  for (const t of ['frame', 'gatt'] as const) {
    if (!o.targets.includes(t) || b[t] === 0) continue;
    log(`${t}: ${b[t].toLocaleString('en-US')} inputs`);
    const rnd = prng(subSeed(o.seed, t));
    const before = inProcessRss();
    const r = t === 'frame' ? fuzzFrameDecoder(b[t], rnd, o.seed) : fuzzReassembler(b[t], rnd, o.seed);
    r.units['fuzzerRssMiB'] = Math.round(Math.max(before, inProcessRss()) / 1048576);
    reports.push(r);
  }
  const network = (['http', 'mqtt'] as const).filter((t) => o.targets.includes(t) && b[t] > 0);
  let gateway: FuzzResult['gateway'];
  if (network.length) {
    const sessions = o.mqttSessions ?? 16;
    const g0 = performance.now();
    const f: FuzzGateway = await startFuzzGateway(o.seed, { sessions: sessions + 1, log });
    const startMs = performance.now() - g0;
    const pid = f.gw.pid;
    const sampler = new RssSampler(pid);
    const linesBefore = f.gw.lines.length;
    let exited = false;
    void f.gw.exited.then(() => (exited = true));
    const alive = (): boolean => !exited && f.gw.proc.exitCode === null && f.gw.proc.signalCode === null;
    // /status on a fresh request each time, a few tries: the fuzz's own connections may hold the listener's per-source slots for a moment.
    const status = async (): Promise<Record<string, unknown>> => {
      for (let i = 0; ; i++) {
        try {
          return (await f.gw.status()) as unknown as Record<string, unknown>;
        } catch (e) {
          if (i >= 20 || !alive())
            throw new Error(`/status did not answer: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`, { cause: e });
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    };
    try {
      const baseline = sampler.mark();
      let last = baseline;
      for (const t of network) {
        log(`${t}: ${b[t].toLocaleString('en-US')} inputs against gateway pid ${pid}`);
        const startRss = sampler.sample();
        const cpu = cpuWindow({ gateway: pid });
        let r: TargetReport;
        let logged = 0;
        const progress =
          (every: number) =>
          (n: number): void => {
            if (n % every !== 0 || n === logged) return;
            logged = n;
            log(`${t}: ${n.toLocaleString('en-US')} inputs, gateway RSS ${(processMemory(pid).rss / 1048576).toFixed(0)} MiB`);
          };
        if (t === 'http') {
          r = await fuzzHttp(b.http, prng(subSeed(o.seed, 'http')), o.seed, {
            port: f.gw.httpPort,
            ctx: {
              gatewayId: FUZZ_GATEWAY_ID,
              grantId: f.researcher.grantId,
              token: f.researcher.token,
              strangerToken: f.stranger.token,
              researcher: f.researcher.wallet.address,
              cursor: f.cursor,
              deviceId: f.honest.id,
              pseudonym: f.honest.patient,
              maxHeaderBytes: FUZZ_LIMITS['http.maxHeaderBytes'],
              maxBodyBytes: FUZZ_LIMITS['http.maxBodyBytes'],
              challenges: [],
            },
            challenges: () => f.issuedChallenges(10),
            exitReason: () => {
              const last = f.gw.lines.filter((l) => l.level >= 50).at(-1);
              const at = Date.parse(String(last?.['time']));
              return { reason: `${last?.event ?? 'no error line'}: ${errText(last?.['err'])}`, ...(Number.isFinite(at) ? { atMs: at } : {}) };
            },
            concurrency: o.httpConcurrency ?? 8,
            honestEvery: 500,
            deadlineMs: 15_000,
            status,
            alive,
            progress: progress(50_000),
          });
        } else {
          const [pre, ...sessionDevices] = f.fuzz;
          const s = (await f.gw.status()) as unknown as {
            mqtt: {
              limits?: {
                maxConnectBytes: number;
                maxDevicePacketBytes: number;
                maxResearcherPacketBytes: number;
                maxKeepaliveS: number;
                connectDeadlineMs: number;
              };
            };
          };
          // Researchers log in over MQTT with self-issued challenges, signed by their own keys.
          const researcher = (wallet: Wallet, granted: boolean): MqttResearcher => ({
            address: wallet.address,
            granted,
            login: async () => {
              const text = selfIssuedChallenge(FUZZ_GATEWAY_ID, wallet.address);
              return Buffer.from(encodeLogin({ text, signature: await wallet.signMessage(text) }));
            },
          });
          const limits = s.mqtt.limits;
          if (!limits) throw new Error('/status has no mqtt.limits: this gateway predates the MQTT listener limits');
          r = await fuzzMqtt(b.mqtt, o.seed, {
            port: f.gw.mqttPort,
            gatewayId: FUZZ_GATEWAY_ID,
            preDevice: pre!,
            sessionDevices,
            otherDeviceId: f.honest.id,
            unenrolled: f.unenrolled,
            researcherAddress: f.researcher.wallet.address,
            researchers: [researcher(f.researcher.wallet, true), researcher(f.stranger.wallet, false)],
            patients: { granted: f.honest.patient, others: [f.fuzz[1]?.patient ?? 'pt-nobody', 'pt-nobody-at-all'] },
            limits,
            preConcurrency: o.mqttPreConcurrency ?? 32,
            preShare: 0.5,
            keepaliveS: 1,
            honestEvery: 500,
            publishHonest: f.publishHonest,
            status,
            alive,
            deadlineMs: 15_000,
            progress: progress(50_000),
          });
        }
        const peak = sampler.mark();
        const after = sampler.sample();
        // CPU seconds over the target: the gateway's, the fuzzer's own, and everything else the machine did meanwhile.
        if (alive()) {
          const c = cpu();
          r.units['gatewayCpuS'] = Math.round((c.processes['gateway'] ?? 0) * 10) / 10;
          r.units['fuzzerCpuS'] = Math.round(c.selfS * 10) / 10;
          r.units['otherCpuS'] = Math.round(c.otherS * 10) / 10;
        }
        r.rss = { baselineBytes: startRss, peakBytes: peak, afterBytes: after, samples: sampler.samples };
        last = after;
        reports.push(r);
        if (!alive()) break;
      }
      const honest = alive() ? await honestStored(f) : { sent: f.honestSent.size, missing: ['(gateway exited)'], duplicated: [] };
      const lines = f.gw.lines.slice(linesBefore);
      gateway = {
        pid,
        exited: !alive(),
        rss: {
          baselineBytes: baseline,
          peakBytes: Math.max(...reports.filter((r) => r.rss).map((r) => r.rss!.peakBytes), baseline),
          afterBytes: last,
          hwmBytes: processMemory(pid).hwm,
        },
        honest,
        logLines: lines.length,
        errorLines: lines.filter((l) => l.level >= 50).length,
        errors: lines
          .filter((l) => l.level >= 50)
          .slice(0, 20)
          .map((l) => JSON.stringify(l).slice(0, 400)),
        logFloods: logFloods(lines),
        startMs,
      };
    } finally {
      sampler.stop();
      await f.stop();
    }
  }
  let unexpected = reports.reduce((a, r) => a + r.unexpected + Object.values(r.accounting ?? {}).filter((x) => !x.ok).length, 0);
  if (gateway) {
    if (gateway.exited) unexpected++;
    if (gateway.honest.missing.length || gateway.honest.duplicated.length) unexpected++;
    if (gateway.rss.peakBytes - gateway.rss.baselineBytes > RSS_GROWTH_BOUND) unexpected++;
    unexpected += gateway.errorLines + gateway.logFloods.length;
  }
  return {
    seed: o.seed,
    inputs: reports.reduce((a, r) => a + r.inputs, 0),
    elapsedMs: performance.now() - t0,
    reports,
    ...(gateway ? { gateway } : {}),
    unexpected,
  };
}

/** A log line's `err`: pino writes an Error as { type, message, stack }, which String() prints as '[object Object]'. */
function errText(err: unknown): string {
  if (typeof err === 'string') return err;
  const message = typeof err === 'object' && err !== null ? (err as { message?: unknown }).message : undefined;
  return typeof message === 'string' ? message : err == null ? '' : JSON.stringify(err);
}
