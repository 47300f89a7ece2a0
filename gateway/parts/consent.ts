/**
 * Consent (docs/consent.md): the accounting of disclosures (the access log, its Merkle
 * batches, and their anchors as AnchorRegistry stream 1 from the frames' account, taking
 * turns on its lane), the local view of ConsentRegistry, and researcher (and patient) logins.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sensorByCode } from '../../firmware-proto/catalogue.js';
import { Anchorer } from '../anchor/anchorer.js';
import { BatchStore } from '../anchor/batch-store.js';
import { Batcher } from '../anchor/batcher.js';
import { STREAM, sensorCodesOf } from '../chain/contracts.js';
import type { ChainRuntime } from '../chain/runtime.js';
import type { AccessEntry } from '../consent/access-entry.js';
import { AccessLog, accessLogLeaves } from '../consent/access-log.js';
import { ResearcherAuthenticator } from '../consent/auth.js';
import type { SharedAuthState } from '../consent/shared-auth.js';
import { ConsentView } from '../consent/consent-view.js';
import { DIRECTORY_FILE, PATIENT_REF_KEY_FILE, PseudonymDirectory } from '../registry/directory.js';
import type { AnchoringPart } from './anchoring.js';
import type { PartContext } from './lifecycle.js';

export interface ConsentPart {
  /** Every disclosure to a researcher, durable, append-only. */
  accessLog: AccessLog;
  /** The access log's Merkle batches (anchored as AnchorRegistry stream 1). */
  accessBatches: BatchStore;
  accessBatcher: Batcher<AccessEntry>;
  accessAnchorer: Anchorer | undefined;
  /** The local view of ConsentRegistry; undefined without one. */
  view: ConsentView | undefined;
  /** Why there is no view (chain off, a deployment without ConsentRegistry). */
  off: string | undefined;
  /** The ConsentRegistry address, when the deployment has one. */
  address: string | undefined;
  /** Researcher (and patient) logins: EIP-191 challenges, HTTP sessions, MQTT passwords. */
  auth: ResearcherAuthenticator;
}

export async function startConsent(
  ctx: PartContext,
  chain: ChainRuntime | undefined,
  anchoring: Pick<AnchoringPart, 'target' | 'anchorOptions'>,
  /** Hub instances sharing sessions (hub.authSecretFile; gateway/consent/shared-auth.ts). */
  sharedAuth?: { secret: Uint8Array; state: SharedAuthState },
): Promise<ConsentPart> {
  const { config, log, life } = ctx;
  const accessLog = await AccessLog.open(join(config.dataDir, 'access-log'));
  life.onStop(() => accessLog.close());
  const accessBatches = new BatchStore(join(config.dataDir, 'access-batches'));
  let accessAnchorer: Anchorer | undefined;
  const accessBatcher = new Batcher(accessLogLeaves(accessLog), accessBatches, {
    intervalMs: config.accessLog.intervalMs,
    maxLeaves: config.accessLog.maxEntries,
    onSealed: (b) => {
      log.info({ event: 'access_batch_sealed', batch: b.seq.toString(), entries: b.leafCount, root: b.root }, 'access-log batch sealed');
      accessAnchorer?.wake();
    },
    onError: (e) => {
      log.fatal(
        { event: 'access_batcher_failed', err: e.message },
        'sealing an access-log batch failed; stopping so that a restart rebuilds the open batch from the log',
      );
      life.fail(e);
    },
  });
  accessBatcher.start();
  life.onStop(() => accessBatcher.stop());
  if (anchoring.target) {
    const a = new Anchorer(accessBatches, anchoring.target, { ...anchoring.anchorOptions, stream: STREAM.ACCESS_LOG });
    accessAnchorer = a;
    a.start();
    life.onStop(() => a.stop());
  }

  // The local view of ConsentRegistry: delivery asks it, in memory, and never waits on the chain.
  const address = chain?.record.consentRegistry?.address;
  const off = !chain ? 'chain.mode is off' : !address ? 'the deployment record has no ConsentRegistry' : undefined;
  let view: ConsentView | undefined;
  if (chain && address) {
    const v = new ConsentView({
      provider: chain.provider,
      consentRegistryAddress: address,
      deployBlock: chain.record.deployBlock,
      dataDir: join(config.dataDir, 'consent'),
      directory: new PseudonymDirectory(join(config.dataDir, 'registry', DIRECTORY_FILE)),
      ...patientRefKeyIn(join(config.dataDir, 'registry')),
      confirmations: config.chain.confirmations,
      pollIntervalMs: config.consent.pollIntervalMs,
      rpcTimeoutMs: config.chain.rpcTimeoutMs,
      chainId: chain.chainId,
      log,
    });
    view = v;
    life.onStop(() => v.close());
    const metricsOf = (mask: number): string[] => sensorCodesOf(mask).map((c) => sensorByCode(c)?.name ?? `sensor-${c}`);
    v.on('granted', (g) =>
      log.info(
        {
          event: 'consent_granted',
          grantId: g.grantId.toString(),
          researcher: g.researcher,
          pseudonym: v.pseudonymOf(g.patientRef),
          metrics: metricsOf(g.sensorMask),
          block: g.block,
        },
        'consent granted',
      ),
    );
    v.on('revoked', (e) =>
      log.info(
        {
          event: 'consent_revoked',
          grantId: e.grant.grantId.toString(),
          researcher: e.grant.researcher,
          pseudonym: v.pseudonymOf(e.grant.patientRef),
          revokedAtMs: e.revokedAtMs,
          block: e.blockNumber,
          cause: e.cause,
          seenAfterMs: Date.now() - e.revokedAtMs,
        },
        'consent revoked',
      ),
    );
    v.on('expired', (g) =>
      log.info(
        {
          event: 'consent_expired',
          grantId: g.grantId.toString(),
          researcher: g.researcher,
          pseudonym: v.pseudonymOf(g.patientRef),
          expiresAtMs: Number(g.expiresAtMs),
        },
        'consent expired',
      ),
    );
  }
  const auth = new ResearcherAuthenticator({
    gatewayId: config.gatewayId,
    recoveriesPerS: config.login.recoveriesPerS,
    selfIssuedPerS: config.login.selfIssuedPerS,
    maxUnadmittedSessions: config.login.maxUnadmittedSessions,
    ...(sharedAuth ? { secret: sharedAuth.secret, shared: sharedAuth.state } : {}),
    // Known to the chain: a grantee (any grant, any state) or a bound patient.
    ...(view ? { admitted: (a: string) => view!.grantsFor(a).length > 0 || view!.patientRefOfAddress(a) !== undefined } : {}),
  });
  return { accessLog, accessBatches, accessBatcher, accessAnchorer, view, off, address, auth };
}

/** The hospital's patient-ref key when the registry dir holds one (never created here): maps pseudonyms the directory lacks. */
function patientRefKeyIn(dir: string): { patientRefKey?: Uint8Array } {
  const p = join(dir, PATIENT_REF_KEY_FILE);
  if (!existsSync(p)) return {};
  const text = readFileSync(p, 'utf8').trim();
  return /^[0-9a-fA-F]{64}$/.test(text) ? { patientRefKey: Buffer.from(text, 'hex') } : {};
}
