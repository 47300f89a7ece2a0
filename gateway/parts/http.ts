/**
 * The HTTP endpoint (docs/operations.md, "Watching it"; docs/research-api.md): status, metrics
 * and health for the operator and the proof API, and the researcher and patient API, behind one
 * listener with its limits (HTTPS, or plain HTTP on loopback or when allowed).
 */
import type { Server } from 'node:http';
import { startHttpServer, type Route } from '../http/routes.js';
import { HttpGuard, type HttpTransport } from '../http/server.js';
import type { Proofs } from '../proof/service.js';
import { proofRoutes } from '../proof/http.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { researchRoutes, type ResearchApiDeps } from '../research/http.js';
import { statusRoutes, type StatusSnapshot } from '../status/http.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import type { ConsentPart } from './consent.js';
import type { PartContext } from './lifecycle.js';
import type { ResearchPart } from './research.js';

export interface HttpDeps {
  transport: HttpTransport;
  /** The operator's routes (/status, /metrics, /healthz, ...): a gateway's or a hub's. */
  statusRoutes: (guard: HttpGuard) => Route[];
  consent: ConsentPart;
  research: ResearchPart;
  registry: DeviceRegistry;
  sink: InfluxSink;
  /** Disclosure reports other than the research part's own log's (a hub's, across the hospital: gateway/hub/disclosures.ts). */
  disclosures?: ResearchApiDeps['disclosures'];
  proofs: Proofs;
}

/**
 * The gateway's route table (gateway/http/routes.ts): every route the endpoint serves, each
 * marked operator or public by the domain that contributes it.
 */
export function gatewayRoutes(d: { status: Route[]; research: ResearchApiDeps; proofs: Proofs }): Route[] {
  return [...d.status, ...researchRoutes(d.research), ...proofRoutes(d.proofs)];
}

/** A gateway's operator routes: its StatusSnapshot as /status, /metrics and /healthz. */
export function gatewayStatusRoutes(snapshot: () => StatusSnapshot): (guard: HttpGuard) => Route[] {
  return (guard) => statusRoutes(snapshot, () => guard.status());
}

/** Listens on http.host:http.port; the last part to start, the first to stop. */
export async function startHttp(ctx: PartContext, d: HttpDeps): Promise<{ port: number }> {
  const { config, log, life } = ctx;
  const guard = new HttpGuard(config.http, d.transport, { log, auth: d.consent.auth });
  const research: ResearchApiDeps = {
    guard,
    auth: d.consent.auth,
    view: d.consent.view,
    disclosures: d.disclosures ?? d.research.disclosures,
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
  };
  const routes = gatewayRoutes({ status: d.statusRoutes(guard), research, proofs: d.proofs });
  const http = await startHttpServer(config.http.host, config.http.port, routes, { guard, limits: config.http });
  life.onStop(() => closeServer(http.server));
  return { port: http.port };
}

function closeServer(s: Server): Promise<void> {
  return new Promise((res) => {
    s.close(() => res());
    s.closeAllConnections();
  });
}
