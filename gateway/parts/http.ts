/**
 * The HTTP endpoint (docs/operations.md, "Watching it"; docs/research-api.md): status, metrics
 * and health for the operator and the proof API, and the researcher and patient API, behind one
 * listener with its limits (HTTPS, or plain HTTP on loopback or when allowed).
 */
import type { Server } from 'node:http';
import type { ProofService } from '../proof/service.js';
import { proofRoutes } from '../proof/http.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { researchRoutes } from '../research/http.js';
import { startStatusServer, type StatusSnapshot } from '../status/http.js';
import { HttpGuard, type HttpTransport } from '../status/http-server.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import type { ConsentPart } from './consent.js';
import type { PartContext } from './lifecycle.js';
import type { ResearchPart } from './research.js';

export interface HttpDeps {
  transport: HttpTransport;
  snapshot: () => StatusSnapshot;
  consent: ConsentPart;
  research: ResearchPart;
  registry: DeviceRegistry;
  sink: InfluxSink;
  proofs: ProofService;
}

/** Listens on http.host:http.port; the last part to start, the first to stop. */
export async function startHttp(ctx: PartContext, d: HttpDeps): Promise<{ port: number }> {
  const { config, log, life } = ctx;
  const guard = new HttpGuard(config.http, d.transport, { log, auth: d.consent.auth });
  const handle = researchRoutes({
    guard,
    auth: d.consent.auth,
    view: d.consent.view,
    disclosures: d.research.disclosures,
    accessLog: d.consent.accessLog,
    readings: {
      sink: d.sink,
      deviceOf: (id) => {
        const r = d.registry.get(id);
        return r ? { publicKey: r.publicKey, patient: r.patient } : undefined;
      },
      log,
    },
    proofs: d.proofs,
    log,
  });
  const http = await startStatusServer(config.http.host, config.http.port, { snapshot: d.snapshot, route: proofRoutes(d.proofs), handle }, { guard, limits: config.http });
  life.onStop(() => closeServer(http.server));
  return { port: http.port };
}

function closeServer(s: Server): Promise<void> {
  return new Promise((res) => {
    s.close(() => res());
    s.closeAllConnections();
  });
}
