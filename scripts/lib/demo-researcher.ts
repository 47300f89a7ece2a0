/**
 * The demo's researcher (scripts/demo.ts): consent-governed sharing on the demo's own gateway,
 * through the same command lines a hospital, a patient and a researcher would use
 * (gateway/cli/admin.ts, gateway/cli/consent.ts, gateway/cli/research.ts),
 * run in this process with their output captured.
 *
 *   start   the hospital admin binds the pseudonym of one demo wearable to a patient address
 *           (DEV ONLY account 3; skipped when bound already), the patient grants a researcher
 *           (DEV ONLY account 4) heart_rate and spo2 for a data window around now, with an
 *           expiry; the researcher logs in over HTTPS, waits until the gateway knows the grant,
 *           and subscribes over MQTT over TLS (a self-issued login): deliveries are counted for the
 *           live view. With `caFile` (the demo's DEV ONLY CA) both trust that CA, as `--ca` does.
 *   finish  the researcher exports the grant's readings with proofs and verifies them (one bundle
 *           against the chain, every reading against its signed frame); the patient revokes; the
 *           subscription's `subscription_ended` notice is awaited; the patient's disclosure report
 *           is fetched (each anchored access verified) and summarised.
 *
 * Repeated runs on the same data dir: the binding stays (skipped), grants accumulate (each run
 * makes one, revokes it at the end, and an interrupted run's grant expires by itself).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JsonRpcProvider } from 'ethers';
import { devWallet } from '../../gateway/chain/anvil.js';
import { adminCommand } from '../../gateway/cli/admin.js';
import { consentCommand } from '../../gateway/cli/consent.js';
import { iso, type CliIo } from '../../gateway/cli/output.js';
import { researchCommand } from '../../gateway/cli/research.js';
import { trustCaFile, trustedCas } from '../../gateway/util/tls-trust.js';
import {
  apiRequest,
  ApiError,
  checkExportAgainstBundles,
  httpLogin,
  LiveSubscription,
  readExportFile,
  SessionStore,
  type ApiGrant,
  type Notice,
} from '../../gateway/research-client/index.js';
import { parseBundles } from '../../gateway/proof/bundle.js';
import { verifyBundle } from '../../gateway/proof/verify.js';

/** DEV ONLY accounts of the embedded chain's public test mnemonic (0-2: deployer, hospital admin, gateway). */
export const DEMO_PATIENT_ACCOUNT = 3;
export const DEMO_RESEARCHER_ACCOUNT = 4;
const METRICS = ['heart_rate', 'spo2'];
/** How long the researcher waits for the gateway to see the grant, and for the notice after the revocation. */
const GRANT_SEEN_TIMEOUT_MS = 15_000;
const ENDED_TIMEOUT_MS = 10_000;

export interface ResearcherDemoOptions {
  dataDir: string;
  /** The gateway's API: https://… (with `caFile`) or http://… on loopback. */
  httpUrl: string;
  /** The gateway's broker: mqtts://… (with `caFile`) or mqtt://… on loopback. */
  mqttUrl: string;
  /** PEM CA certificate the gateway's certificate chains to (the commands' --ca). */
  caFile?: string;
  gatewayId: string;
  /** The demo wearable whose patient shares. */
  pseudonym: string;
  /** How long the demo runs (undefined: until Ctrl-C): the grant's data window and expiry reach past it. */
  durationMs: number | undefined;
  provider: JsonRpcProvider;
  /** How paths are shown (e.g. relative to the working directory). */
  show?: (path: string) => string;
}

export interface ResearcherStatus {
  grantId: string;
  deliveries: number;
  byMetric: Record<string, number>;
  readings: number;
  lastReadingMs: number | undefined;
  subscribed: string[];
  refused: string[];
  ended: Notice | undefined;
}

/** A captured command's output. */
function capture(): CliIo & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (l) => lines.push(l), err: (l) => errors.push(l), progress: { isTTY: false, write: () => true } };
}

export async function runCommand(what: string, cmd: (argv: string[], io: CliIo) => Promise<number>, argv: string[]): Promise<string[]> {
  const io = capture();
  const code = await cmd(argv, io);
  if (code !== 0) throw new Error(`${what} failed (exit code ${code}): ${[...io.errors, ...io.lines].join(' / ')}`);
  return io.lines;
}

export class ResearcherDemo {
  readonly patient = devWallet(DEMO_PATIENT_ACCOUNT);
  readonly researcher = devWallet(DEMO_RESEARCHER_ACCOUNT);
  readonly dir: string;
  readonly patientKeyFile: string;
  readonly researcherKeyFile: string;
  readonly sessionFile: string;
  /** What the start did, for the banner. */
  readonly notes: string[] = [];
  private live: LiveSubscription | undefined;
  private readonly status: ResearcherStatus = {
    grantId: '',
    deliveries: 0,
    byMetric: {},
    readings: 0,
    lastReadingMs: undefined,
    subscribed: [],
    refused: [],
    ended: undefined,
  };
  private endedWaiters: ((n: Notice) => void)[] = [];
  private deliveriesAfterEnd = 0;

  constructor(private readonly o: ResearcherDemoOptions) {
    this.dir = join(o.dataDir, 'researcher');
    mkdirSync(this.dir, { recursive: true });
    this.patientKeyFile = join(this.dir, 'patient.key');
    this.researcherKeyFile = join(this.dir, 'researcher.key');
    this.sessionFile = join(this.dir, 'sessions.json');
    writeFileSync(this.patientKeyFile, `${this.patient.privateKey}\n`, { mode: 0o600 });
    writeFileSync(this.researcherKeyFile, `${this.researcher.privateKey}\n`, { mode: 0o600 });
  }

  get grantId(): string {
    return this.status.grantId;
  }

  snapshot(): ResearcherStatus {
    return { ...this.status, byMetric: { ...this.status.byMetric } };
  }

  /** The commands' `--ca FILE`, when there is a CA to name. */
  private get caArgs(): string[] {
    return this.o.caFile ? ['--ca', this.o.caFile] : [];
  }

  /** "MQTT over TLS" or "MQTT", as the broker URL says. */
  private get mqttLabel(): string {
    return this.o.mqttUrl.startsWith('mqtts:') ? 'MQTT over TLS' : 'MQTT';
  }

  /** Bind (once), grant, log in, wait for the gateway to see the grant, subscribe. */
  async start(): Promise<void> {
    const o = this.o;
    // This process's fetch() and the subscriber trust the CA, as the commands' --ca would.
    if (o.caFile) trustCaFile(o.caFile);
    const ca = o.caFile && o.mqttUrl.startsWith('mqtts:') ? trustedCas() : undefined;
    const common = ['--dataDir', o.dataDir];
    const bind = await runCommand('admin bind-patient', adminCommand, ['bind-patient', o.pseudonym, this.patient.address, ...common]);
    this.notes.push(
      bind.join(' ').includes('already')
        ? `patient ${o.pseudonym} is bound to ${this.patient.address} (dev account ${DEMO_PATIENT_ACCOUNT}) from an earlier run`
        : `bound patient ${o.pseudonym} to ${this.patient.address} (dev account ${DEMO_PATIENT_ACCOUNT})`,
    );
    const span = o.durationMs !== undefined ? o.durationMs + 10 * 60_000 : 24 * 3_600_000;
    const granted = await runCommand('consent grant', consentCommand, [
      'grant',
      '--key-file',
      this.patientKeyFile,
      '--pseudonym',
      o.pseudonym,
      '--researcher',
      this.researcher.address,
      '--metrics',
      METRICS.join(','),
      '--from',
      'now-1m',
      '--to',
      `now+${Math.ceil(span / 1000)}s`,
      '--expires',
      `now+${Math.ceil(span / 1000)}s`,
      '--purpose',
      'VitalProof demo study',
      '--json',
      ...common,
    ]);
    const g = JSON.parse(granted.join('\n')) as { grantId: string; dataFromMs: number; dataToMs: number; expiresAtMs: number };
    this.status.grantId = g.grantId;
    this.notes.push(
      `grant ${g.grantId}: ${METRICS.join(', ')} recorded ${iso(g.dataFromMs)} to ${iso(g.dataToMs)}, to researcher ${this.researcher.address} (dev account ${DEMO_RESEARCHER_ACCOUNT}), until ${iso(g.expiresAtMs)}`,
    );

    // The researcher: an HTTP(S) session, then live over MQTT (TLS) once the gateway's consent view has the grant.
    const store = new SessionStore(this.sessionFile);
    const s = await httpLogin(o.httpUrl, this.researcher, store);
    const deadline = Date.now() + GRANT_SEEN_TIMEOUT_MS;
    for (;;) {
      const { grants } = await apiRequest<{ grants: ApiGrant[] }>(o.httpUrl, '/research/grants', { token: s.token });
      if (grants.some((x) => x.grantId === g.grantId && x.status === 'OK')) break;
      if (Date.now() > deadline) throw new Error(`the gateway did not see grant ${g.grantId} within ${GRANT_SEEN_TIMEOUT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const live = new LiveSubscription({
      brokerUrl: o.mqttUrl,
      key: this.researcher,
      gatewayId: o.gatewayId,
      pseudonym: o.pseudonym,
      metrics: METRICS,
      ...(ca ? { ca } : {}),
    });
    this.live = live;
    const ready = new Promise<void>((resolve, reject) => {
      live.once('ready', () => resolve());
      live.once('loginRefused', (rc, m) => reject(new Error(`MQTT login refused (${rc}): ${m}`)));
      live.once('connectFailed', (e) => reject(e));
    });
    live.on('subscribed', (t) => this.status.subscribed.push(t));
    live.on('refused', (t, n) => this.status.refused.push(`${t}: ${n?.code ?? 'refused'}`));
    live.on('delivery', (d) => {
      if (this.status.ended) this.deliveriesAfterEnd++;
      this.status.deliveries++;
      this.status.byMetric[d.metric] = (this.status.byMetric[d.metric] ?? 0) + 1;
      this.status.readings += d.readings.length;
      const last = d.readings[d.readings.length - 1];
      if (last) this.status.lastReadingMs = Math.max(this.status.lastReadingMs ?? 0, last.timeMs);
    });
    live.on('ended', (n) => {
      this.status.ended ??= n;
      for (const w of this.endedWaiters.splice(0)) w(n);
    });
    await ready;
    if (this.status.subscribed.length === 0) throw new Error(`every subscription was refused: ${this.status.refused.join('; ')}`);
    this.notes.push(`researcher logged in at ${o.httpUrl} and subscribed over ${this.mqttLabel} (${o.mqttUrl}) to ${this.status.subscribed.join(', ')}`);
  }

  /** The live view's line. */
  line(): string {
    const s = this.status;
    const per = Object.entries(s.byMetric)
      .map(([m, n]) => `${m} ${n}`)
      .join(', ');
    return `researcher grant ${s.grantId}: ${s.deliveries} live deliveries${per ? ` (${per})` : ''}, ${s.readings} readings, last reading ${s.lastReadingMs !== undefined ? iso(Math.floor(s.lastReadingMs)) : 'none yet'}${s.ended ? `; subscription ended: ${s.ended.code}` : ''}`;
  }

  /**
   * Export with proofs and verify, revoke, await the end of the subscription, fetch the
   * disclosure report. Returns the summary lines and whether every step held.
   */
  async finish(): Promise<{ lines: string[]; ok: boolean }> {
    const o = this.o;
    const lines: string[] = [];
    let ok = true;
    const fail = (l: string): void => {
      ok = false;
      lines.push(`             FAILED: ${l}`);
    };
    const s = this.status;
    lines.push(
      `  researcher ${this.researcher.address} (DEV ONLY account ${DEMO_RESEARCHER_ACCOUNT}), grant ${s.grantId} of patient ${o.pseudonym} (account ${DEMO_PATIENT_ACCOUNT}): ${METRICS.join(', ')}`,
    );
    lines.push(
      `             live over ${this.mqttLabel}: ${s.deliveries} deliveries (${
        Object.entries(s.byMetric)
          .map(([m, n]) => `${m} ${n}`)
          .join(', ') || 'none'
      }), ${s.readings} readings, last reading ${s.lastReadingMs !== undefined ? iso(Math.floor(s.lastReadingMs)) : 'none'}`,
    );
    if (s.deliveries === 0) fail('no live delivery reached the researcher');

    // Export with proofs, as `vitalproof research export` does, and verify what came out.
    const file = join(this.dir, `grant-${s.grantId}.json`);
    try {
      const out = await runCommand('research export', researchCommand, [
        'export',
        s.grantId,
        '--out',
        file,
        '--proofs',
        '--url',
        o.httpUrl,
        ...this.caArgs,
        '--key-file',
        this.researcherKeyFile,
        '--session-file',
        this.sessionFile,
      ]);
      const exp = readExportFile(file)!;
      const bundles = parseBundles(JSON.parse(readFileSync(`${file}.proofs.json`, 'utf8')));
      const check = checkExportAgainstBundles(exp.frames, bundles);
      lines.push(
        `             export: ${out
          .join(' ')
          .replace(/^wrote /, '')
          .split(this.dir)
          .join(this.show(this.dir))}`,
      );
      lines.push(
        `             ${check.matched} of ${check.frames} exported frames match their signed, anchored frame reading for reading${check.unproven.length ? `; ${check.unproven.length} without a proof (anchored later)` : ''}`,
      );
      if (check.mismatched.length) fail(`${check.mismatched.length} exported frames differ from their signed frames`);
      if (exp.frames.length === 0) fail('the export holds no frame');
      const b = bundles[0];
      if (b) {
        const v = await verifyBundle(b, { provider: o.provider });
        lines.push(
          `             proof of ${b.frame.sensor} frame ${b.frame.deviceId}/${b.frame.seq}: ${v.checks.map((c) => `${c.check} ${c.status === 'pass' ? 'ok' : c.status.toUpperCase()}`).join(', ')}`,
        );
        if (!v.ok) fail('the exported proof does not verify');
      } else fail('the export has no proof bundle');
    } catch (e) {
      fail(`export: ${e instanceof ApiError ? e.describe() : (e as Error).message}`);
    }

    // The patient revokes; the gateway cuts the subscription and says so.
    const ended = s.ended
      ? Promise.resolve(s.ended)
      : new Promise<Notice | undefined>((resolve) => {
          const timer = setTimeout(() => resolve(undefined), ENDED_TIMEOUT_MS);
          this.endedWaiters.push((n) => {
            clearTimeout(timer);
            resolve(n);
          });
        });
    try {
      await runCommand('consent revoke', consentCommand, ['revoke', s.grantId, '--key-file', this.patientKeyFile, '--dataDir', o.dataDir]);
      const revokedAt = Date.now();
      const n = await ended;
      if (!n) fail(`no subscription_ended notice within ${ENDED_TIMEOUT_MS / 1000} s of the revocation`);
      else {
        lines.push(
          `             revoked: the gateway ended the subscription ${((Date.now() - revokedAt) / 1000).toFixed(1)} s after the revoking transaction (notice ${n.code}, grant ${n.grantId ?? '?'}), ${this.deliveriesAfterEnd} deliveries after it`,
        );
        if (this.deliveriesAfterEnd) fail('deliveries arrived after the subscription ended');
      }
    } catch (e) {
      fail(`revoke: ${(e as Error).message}`);
    }
    await this.live?.close();

    // The patient's accounting of disclosures, each anchored access verified against the chain.
    try {
      const out = await runCommand('consent list --disclosures', consentCommand, [
        'list',
        '--pseudonym',
        o.pseudonym,
        '--key-file',
        this.patientKeyFile,
        '--disclosures',
        '--json',
        '--url',
        o.httpUrl,
        ...this.caArgs,
        '--session-file',
        this.sessionFile,
        '--dataDir',
        o.dataDir,
      ]);
      const doc = JSON.parse(out.join('\n')) as {
        disclosures: {
          summary: { entries: number; anchored: number; pending: number; errors: number; readings: number; researchers: string[] };
          items: { kind: string; grantId: string; count: number; verified?: string }[];
        };
      };
      const sum = doc.disclosures.summary;
      const mine = doc.disclosures.items.filter((i) => i.grantId === s.grantId);
      const kinds = (k: string): number => mine.filter((i) => i.kind === k).length;
      lines.push(
        `             disclosure report of ${o.pseudonym}: ${sum.entries} accesses (all runs), ${sum.readings} readings, to ${sum.researchers.length} researcher(s); ${sum.anchored} anchored and verified, ${sum.pending} pending the next access-log anchor, ${sum.errors} errors; ` +
          `this run's grant: ${kinds('live')} live and ${kinds('export')} export entries, ${mine.reduce((n, i) => n + i.count, 0)} readings`,
      );
      if (kinds('live') === 0) fail('the live deliveries are not in the disclosure report');
      if (kinds('export') === 0) fail('the export is not in the disclosure report');
    } catch (e) {
      fail(`disclosure report: ${(e as Error).message}`);
    }
    return { lines, ok };
  }

  private show(p: string): string {
    return this.o.show ? this.o.show(p) : p;
  }

  async close(): Promise<void> {
    await this.live?.close();
  }

  /** The same steps by hand, from another terminal while a demo runs. */
  hints(): string[] {
    const dd = this.show(this.o.dataDir);
    const r = this.show(this.researcherKeyFile);
    const ca = this.o.caFile ? ` --ca ${this.show(this.o.caFile)}` : '';
    return [
      `npx vitalproof consent list --dataDir ${dd} --pseudonym ${this.o.pseudonym}`,
      `npx vitalproof research login --key-file ${r} --url ${this.o.httpUrl}${ca}`,
      `npx vitalproof research subscribe --key-file ${r} --url ${this.o.httpUrl} --mqtt ${this.o.mqttUrl}${ca} --pseudonym ${this.o.pseudonym} --metric heart_rate --format text`,
      `npx vitalproof research export ${this.status.grantId} --url ${this.o.httpUrl}${ca} --out grant.csv --format csv --proofs`,
    ];
  }
}
