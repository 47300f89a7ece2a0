/**
 * Research access under consent (docs/consent.md): researchers' live subscriptions in the MQTT
 * broker, and patients' disclosure reports. Both need the consent view; without one (chain
 * off, a deployment without ConsentRegistry) there is neither.
 */
import type { ChainRuntime } from '../chain/runtime.js';
import { DisclosureService } from '../consent/disclosure.js';
import { LiveResearchAccess } from '../research/live.js';
import type { ConsentPart } from './consent.js';
import type { PartContext } from './lifecycle.js';

export interface ResearchPart {
  /** Consent-governed researcher access in the MQTT broker. */
  live: LiveResearchAccess | undefined;
  /** Patients' disclosure reports and access proofs. */
  disclosures: DisclosureService | undefined;
}

export function startResearch(ctx: PartContext, chain: ChainRuntime | undefined, consent: ConsentPart): ResearchPart {
  const { config, log, life } = ctx;
  let live: LiveResearchAccess | undefined;
  if (consent.view) {
    // Every live delivery is logged (fdatasync) before it is sent (docs/consent.md, "Live deliveries").
    const r = new LiveResearchAccess({
      view: consent.view,
      auth: consent.auth,
      accessLog: consent.accessLog,
      log,
      batchMs: config.accessLog.liveBatchMs,
      maxConnectionsPerResearcher: config.research.maxConnectionsPerResearcher,
      maxUngrantedConnections: config.research.maxUngrantedConnections,
      refusalLog: { burst: config.log.limitBurst, windowMs: config.log.limitWindowMs },
    });
    live = r;
    life.onStop(() => r.close());
  }
  const disclosures =
    chain && consent.view && consent.address
      ? new DisclosureService({
          log: consent.accessLog,
          store: consent.accessBatches,
          consentRegistry: { chainId: chain.chainId, address: consent.address },
          gatewayId: config.gatewayId,
        })
      : undefined;
  return { live, disclosures };
}
