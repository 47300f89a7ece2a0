/**
 * The researcher and patient HTTP API on the gateway's status port (docs/research-api.md, the
 * wire contract):
 *
 *   POST /auth/challenge                    { address, purpose }            → { challenge }
 *   POST /auth/login                        { challenge, signature }        → { token, address, expiresAtMs }
 *   POST /auth/logout[?all=1]               bearer                          → { address, ended }
 *   GET  /research/grants                   bearer                          → { grants }
 *   GET  /research/grants/<id>/readings     bearer; from, to, metric, format, proofs, limit, cursor
 *   GET  /patient/disclosures               bearer; pseudonym, from, to     → vitalproof.disclosure-report
 *   GET  /patient/grants                    bearer; pseudonym               → { grants }
 *
 * Errors are { error: CODE, message } with 400 (BAD_REQUEST, BAD_CURSOR), 401 (AUTH_*), 403 (a
 * consent DecisionCode, NOT_GRANTEE, NOT_PATIENT), 404 (UNKNOWN_GRANT, UNKNOWN_PATIENT), 413
 * (HTTP_BODY_TOO_LARGE), 429 (LOGIN_RATE_LIMITED per source, AUTH_BUSY when the gateway's
 * budget of signature checks is spent; both with Retry-After), 503 (UNAVAILABLE). A login is
 * rate-limited by source before its body is read, and checked cheap-first by the
 * authenticator (gateway/consent/auth.ts): forged challenges cost no signature recovery.
 * Every readings page that discloses anything is one access-log entry (kind export): JSON,
 * NDJSON and CSV pages alike are read and checked whole, logged (durably), then sent, so a crash
 * can never leave a reading disclosed and unlogged (a page is at most MAX_PAGE_FRAMES frames).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sensorByCode, sensorByName, type SensorSpec } from '../../firmware-proto/catalogue.js';
import { sensorCodesOf } from '../chain/contracts.js';
import type { AccessLog } from '../consent/access-log.js';
import type { AccessEntry } from '../consent/access-entry.js';
import type { ResearcherAuthenticator, Session } from '../consent/auth.js';
import { HttpGuard } from '../http/server.js';
import type { Route } from '../http/routes.js';
import { errorBody, HTTP_STATUS, HttpError } from '../http/errors.js';
import type { ConsentGrant, ConsentView } from '../consent/consent-view.js';
import type { DisclosureReport, DisclosureService } from '../consent/disclosure.js';
import type { Logger } from '../log.js';
import type { ProofBundle } from '../proof/bundle.js';
import type { Proofs } from '../proof/service.js';
import { PSEUDONYM } from '../registry/registry.js';
import { parseTimeMs } from '../util/time.js';
import { CSV_HEADER, csvRows, decodeCursor, encodeCursor, frameJson, scanReadings, type ReadingsDeps, type ServedFrame } from './readings.js';

/** Frames per readings page: default and maximum (docs/research-api.md). */
export const DEFAULT_PAGE_FRAMES = 1000;
export const MAX_PAGE_FRAMES = 10_000;
/** Request bodies (challenge, login) are small: the default of http.maxBodyBytes. */
const MAX_BODY_BYTES = 16 * 1024;

/** `Grant` of docs/research-api.md. */
export interface GrantJson {
  grantId: string;
  patient: string;
  researcher: string;
  metrics: string[];
  dataFromMs: number;
  dataToMs: number;
  expiresAtMs: number;
  purposeRef: string;
  grantedAtMs: number;
  revokedAtMs: number | null;
  status: 'OK' | 'REVOKED' | 'EXPIRED';
}

export interface ResearchApiDeps {
  auth: ResearcherAuthenticator;
  /** Undefined without a ConsentRegistry: every consent route answers 503 UNAVAILABLE. */
  view: ConsentView | undefined;
  /** A gateway's own (DisclosureService), or a hub's across the hospital (gateway/hub/disclosures.ts). */
  disclosures:
    | Pick<DisclosureService, 'disclosureReport'>
    | { disclosureReport(...a: Parameters<DisclosureService['disclosureReport']>): Promise<DisclosureReport> }
    | undefined;
  accessLog: Pick<AccessLog, 'append'>;
  readings: ReadingsDeps;
  proofs: Pick<Proofs, 'bundleOf'>;
  log: Logger;
  /**
   * The listener's guard: login rate per source, body size (http.maxBodyBytes), and where
   * refusals and logins are counted. Default: a guard with the default limits.
   */
  guard?: HttpGuard;
  now?: () => number;
}

/** The metric names of a grant's sensor mask (catalogue names; a code the catalogue lacks as `sensor-<code>`). */
export function grantMetrics(g: Pick<ConsentGrant, 'sensorMask'>): string[] {
  return sensorCodesOf(g.sensorMask).map((c) => sensorByCode(c)?.name ?? `sensor-${c}`);
}

export function grantStatus(g: ConsentGrant, nowMs: number): GrantJson['status'] {
  if (g.revokedAtMs !== 0n) return 'REVOKED';
  return BigInt(nowMs) < g.expiresAtMs ? 'OK' : 'EXPIRED';
}

export function grantJson(g: ConsentGrant, pseudonym: string, nowMs: number): GrantJson {
  return {
    grantId: g.grantId.toString(),
    patient: pseudonym,
    researcher: g.researcher,
    metrics: grantMetrics(g),
    dataFromMs: Number(g.dataFromMs),
    dataToMs: Number(g.dataToMs),
    expiresAtMs: Number(g.expiresAtMs),
    purposeRef: g.purposeRef,
    grantedAtMs: Number(g.grantedAtMs),
    revokedAtMs: g.revokedAtMs !== 0n ? Number(g.revokedAtMs) : null,
    status: grantStatus(g, nowMs),
  };
}

/** The researcher and patient routes of the gateway's route table (gateway/http/routes.ts). */
export function researchRoutes(d: ResearchApiDeps): Route[] {
  const now = d.now ?? Date.now;
  const guard =
    d.guard ??
    new HttpGuard({ maxConnections: 512, maxConnectionsPerSource: 64, maxBodyBytes: MAX_BODY_BYTES, loginPerSourcePerS: 1, loginPerSourceBurst: 10 });
  const body = (req: IncomingMessage): Promise<unknown> => readJson(req, guard);

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): true => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers }).end(JSON.stringify(body));
    return true;
  };
  const method = (req: IncomingMessage, want: 'GET' | 'POST'): void => {
    if (req.method !== want) throw new HttpError('BAD_REQUEST', `${req.method} not allowed here: use ${want}`, { status: 405 });
  };
  const session = (req: IncomingMessage): Session => {
    const h = req.headers.authorization ?? '';
    const m = /^Bearer ([A-Za-z0-9_-]{1,128})$/.exec(h);
    const r = d.auth.session(m ? m[1]! : '');
    if (!r.ok) throw new HttpError(r.code, m ? r.message : `${r.code}: send Authorization: Bearer <token> from POST /auth/login`);
    return r.session;
  };
  const consent = (): ConsentView => {
    if (!d.view) throw new HttpError('UNAVAILABLE', 'this gateway has no ConsentRegistry (chain off, or a deployment that predates it)');
    return d.view;
  };
  const timeParam = (url: URL, name: string): number | undefined => {
    const v = parseTimeMs(url.searchParams.get(name));
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new HttpError('BAD_REQUEST', `${name} must be Unix ms or an ISO 8601 time`);
    return v;
  };
  /** The patient a pseudonym names, and that the session speaks for it. */
  const patientOf = (url: URL, s: Session): { view: ConsentView; pseudonym: string; patientRef: string } => {
    const view = consent();
    const p = url.searchParams.get('pseudonym') ?? '';
    if (!PSEUDONYM.test(p)) throw new HttpError('BAD_REQUEST', 'pseudonym must be 3-64 characters [A-Za-z0-9._-]');
    const ref = view.patientRefOf(p);
    const bound = ref ? view.patientOf(ref) : undefined;
    if (!ref || !bound) throw new HttpError('UNKNOWN_PATIENT', `no patient address is bound to pseudonym ${p} on ConsentRegistry`);
    if (bound.toLowerCase() !== s.researcher.toLowerCase())
      throw new HttpError('NOT_PATIENT', `the session's address ${s.researcher} is not the address bound to pseudonym ${p}`);
    return { view, pseudonym: view.pseudonymOf(ref), patientRef: ref };
  };

  /** Every route is public: each checks its caller itself (a login's signature, a bearer session, consent). */
  const routes: Route[] = [
    {
      path: '/auth/challenge',
      access: 'public',
      handle: async (req, _url, res) => {
        method(req, 'POST');
        const b = (await body(req)) as { address?: unknown; purpose?: unknown };
        const purpose = b.purpose ?? 'http';
        if (typeof b.address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(b.address))
          throw new HttpError('BAD_REQUEST', 'address must be an Ethereum address (0x and 40 hex digits)');
        if (purpose !== 'http' && purpose !== 'mqtt') throw new HttpError('BAD_REQUEST', 'purpose must be "http" or "mqtt"');
        let text: string;
        try {
          text = d.auth.issueChallenge(b.address, purpose).text;
        } catch (e) {
          throw new HttpError('BAD_REQUEST', (e as Error).message);
        }
        return json(res, 200, { challenge: text });
      },
    },
    {
      path: '/auth/login',
      access: 'public',
      handle: async (req, _url, res) => {
        method(req, 'POST');
        // Per source first, before the body is read: the cheapest refusal there is.
        const wait = guard.loginAttempt(req.socket.remoteAddress);
        if (wait !== undefined) {
          return json(
            res,
            HTTP_STATUS.LOGIN_RATE_LIMITED,
            errorBody('LOGIN_RATE_LIMITED', `LOGIN_RATE_LIMITED: too many logins from this address; retry in ${Math.ceil(wait / 1000)} s`),
            { 'retry-after': String(Math.ceil(wait / 1000)) },
          );
        }
        const b = (await body(req)) as { challenge?: unknown; signature?: unknown };
        const r = d.auth.login({ text: b.challenge as string, signature: b.signature as string });
        if (!r.ok) {
          // Counted and summed into rate-limited http_refused lines, never a line per refusal.
          guard.loginRefused(r.code);
          if (r.code === 'AUTH_BUSY') return json(res, HTTP_STATUS[r.code], errorBody(r.code, r.message), { 'retry-after': '1' });
          return json(res, HTTP_STATUS[r.code], errorBody(r.code, r.message), { 'www-authenticate': 'Bearer' });
        }
        guard.sessionsOpened++;
        d.log.info({ event: 'research_login', researcher: r.session.researcher, expiresAtMs: r.session.expiresAtMs }, 'HTTP session opened');
        return json(res, 200, { token: r.session.token, address: r.session.researcher, expiresAtMs: r.session.expiresAtMs });
      },
    },
    {
      path: '/auth/logout',
      access: 'public',
      handle: async (req, url, res) => {
        method(req, 'POST');
        const all = url.searchParams.get('all');
        if (all !== null && all !== '0' && all !== '1') throw new HttpError('BAD_REQUEST', 'all must be 1 (every session of the address) or 0');
        const s = session(req);
        const ended = all === '1' ? d.auth.endSessionsOf(s.researcher) : d.auth.logout(s.token) ? 1 : 0;
        guard.loggedOut += ended;
        d.log.info(
          { event: 'research_logout', researcher: s.researcher, ended, all: all === '1' },
          all === '1' ? 'every HTTP session of the address ended' : 'HTTP session ended',
        );
        return json(res, 200, { address: s.researcher, ended });
      },
    },
    {
      path: '/research/grants',
      access: 'public',
      handle: async (req, _url, res) => {
        method(req, 'GET');
        const s = session(req);
        const view = consent();
        const t = now();
        const grants = view
          .grantsFor(s.researcher)
          .reverse()
          .map((g) => grantJson(g, view.pseudonymOf(g.patientRef), t));
        return json(res, 200, { grants });
      },
    },
    {
      path: /^\/research\/grants\/([^/]+)\/readings$/,
      access: 'public',
      handle: async (req, url, res, [id]) => {
        method(req, 'GET');
        await readings(url, res, id!, session(req));
        return true;
      },
    },
    {
      path: '/patient/grants',
      access: 'public',
      handle: async (req, url, res) => {
        method(req, 'GET');
        const p = patientOf(url, session(req));
        const t = now();
        return json(res, 200, {
          grants: p.view
            .grantsOf(p.patientRef)
            .reverse()
            .map((g) => grantJson(g, p.pseudonym, t)),
        });
      },
    },
    {
      path: '/patient/disclosures',
      access: 'public',
      handle: async (req, url, res) => {
        method(req, 'GET');
        const s = session(req);
        const p = patientOf(url, s);
        const fromMs = timeParam(url, 'from');
        const toMs = timeParam(url, 'to');
        if (fromMs !== undefined && toMs !== undefined && fromMs > toMs) throw new HttpError('BAD_REQUEST', 'from is after to');
        if (!d.disclosures) throw new HttpError('UNAVAILABLE', 'no disclosure service: this gateway has no ConsentRegistry');
        const report = await d.disclosures.disclosureReport(p.pseudonym, {
          ...(fromMs !== undefined ? { fromMs } : {}),
          ...(toMs !== undefined ? { toMs } : {}),
        });
        d.log.info({ event: 'patient_disclosure_report', pseudonym: p.pseudonym, entries: report.summary.entries }, 'disclosure report served');
        return json(res, 200, report);
      },
    },
  ];

  /** GET /research/grants/<id>/readings */
  const readings = async (url: URL, res: ServerResponse, idText: string, s: Session): Promise<void> => {
    const startedAt = now();
    const view = consent();
    if (!/^[1-9][0-9]{0,19}$/.test(idText) || BigInt(idText) > (1n << 64n) - 1n) throw new HttpError('BAD_REQUEST', 'the grant id must be a positive integer');
    const g = view.grant(BigInt(idText));
    if (!g) throw new HttpError('UNKNOWN_GRANT', `ConsentRegistry has no grant ${idText} (or this gateway has not seen it yet)`);
    if (g.researcher.toLowerCase() !== s.researcher.toLowerCase()) throw new HttpError('NOT_GRANTEE', `grant ${idText} was made to another researcher`);
    if (g.revokedAtMs !== 0n) throw new HttpError('REVOKED', `grant ${idText} was revoked at ${iso(Number(g.revokedAtMs))}`);
    if (!view.inForce(g, startedAt)) throw new HttpError('EXPIRED', `grant ${idText} expired at ${iso(Number(g.expiresAtMs))}`);

    const q = url.searchParams;
    const format = q.get('format') ?? 'json';
    if (format !== 'json' && format !== 'ndjson' && format !== 'csv') throw new HttpError('BAD_REQUEST', 'format must be json, ndjson or csv');
    const proofsParam = q.get('proofs');
    if (proofsParam !== null && proofsParam !== '0' && proofsParam !== '1') throw new HttpError('BAD_REQUEST', 'proofs must be 1 (or 0)');
    const withProofs = proofsParam === '1';
    if (withProofs && format === 'csv')
      throw new HttpError('BAD_REQUEST', 'proof bundles come with format json (a "proofs" array) or ndjson (a "proof" field per frame), not csv');
    const limitText = q.get('limit');
    const limit = limitText === null ? DEFAULT_PAGE_FRAMES : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_FRAMES) throw new HttpError('BAD_REQUEST', `limit must be 1 … ${MAX_PAGE_FRAMES} frames`);
    const cursorText = q.get('cursor');
    const after = cursorText ? decodeCursor(cursorText, g.grantId) : undefined;
    if (cursorText && !after) throw new HttpError('BAD_CURSOR', 'the cursor is not one this gateway gave out for this grant');

    const granted = new Set(sensorCodesOf(g.sensorMask));
    const asked = q
      .getAll('metric')
      .flatMap((v) => v.split(','))
      .map((v) => v.trim())
      .filter(Boolean);
    let sensors: SensorSpec[];
    if (asked.length === 0) sensors = [...granted].map((c) => sensorByCode(c)).filter((x): x is SensorSpec => x !== undefined);
    else {
      sensors = [];
      for (const name of new Set(asked)) {
        let spec: SensorSpec;
        try {
          spec = sensorByName(name);
        } catch {
          throw new HttpError('BAD_REQUEST', `unknown metric "${name}"`);
        }
        if (!granted.has(spec.code))
          throw new HttpError('SENSOR_NOT_GRANTED', `grant ${idText} does not cover ${name} (it covers ${grantMetrics(g).join(', ')})`);
        sensors.push(spec);
      }
    }
    if (sensors.length === 0) throw new HttpError('SENSOR_NOT_GRANTED', `grant ${idText} covers no sensor of this gateway's catalogue`);

    const windowFrom = safe(g.dataFromMs);
    const windowTo = safe(g.dataToMs);
    const askedFrom = timeParam(url, 'from');
    const askedTo = timeParam(url, 'to');
    if (askedFrom !== undefined && askedTo !== undefined && askedFrom > askedTo) throw new HttpError('BAD_REQUEST', 'from is after to');
    const fromMs = Math.max(askedFrom ?? windowFrom, windowFrom);
    const toMs = Math.min(askedTo ?? windowTo, windowTo);
    if (fromMs > toMs)
      throw new HttpError('OUTSIDE_DATA_WINDOW', `grant ${idText} covers data recorded ${iso(windowFrom)} … ${iso(windowTo)}, not the range asked for`);

    const pseudonym = view.pseudonymOf(g.patientRef);
    const researcher = s.researcher;
    // Inside the data window the grant's verdict depends on the sensor and on "now" only
    // (revoked, expired): asked once per sensor per 50 ms, not once per sample.
    const verdicts = new Map<number, { ok: boolean; atMs: number }>();
    const allowed = (sensor: number, t: number): boolean => {
      if (t < windowFrom || t > windowTo) return false;
      const at = now();
      const c = verdicts.get(sensor);
      if (c && at - c.atMs < 50) return c.ok;
      const ok = view.checkGrant(g.grantId, researcher, sensor, t, at) === 'OK';
      verdicts.set(sensor, { ok, atMs: at });
      return ok;
    };
    const scan = scanReadings(d.readings, {
      pseudonym,
      sensors,
      fromMs,
      toMs,
      allowed,
      ...(after ? { after } : {}),
      chunk: Math.min(limit + 1, 5000),
    });
    const it = scan[Symbol.asyncIterator]();
    const tally = new Tally();
    const record = async (): Promise<AccessEntry | undefined> => {
      if (tally.count === 0) return undefined;
      const e = await d.accessLog.append({
        kind: 'export',
        researcher,
        pseudonym,
        patientRef: g.patientRef,
        grantId: g.grantId,
        metrics: [...tally.metrics],
        fromMs: tally.fromMs,
        toMs: tally.toMs,
        count: tally.count,
        firstAtMs: startedAt,
        atMs: Math.max(startedAt, now()),
      });
      d.log.info(
        {
          event: 'research_export',
          researcher,
          pseudonym,
          grantId: g.grantId.toString(),
          format,
          frames: tally.frames,
          samples: tally.count,
          entry: e.seq.toString(),
        },
        'readings page disclosed and logged',
      );
      return e;
    };
    const header = { grantId: g.grantId.toString(), patient: pseudonym, from: fromMs, to: toMs };

    try {
      const frames: ServedFrame[] = [];
      let next: string | null = null;
      for (;;) {
        const n = await it.next();
        if (n.done) break;
        if (frames.length === limit) {
          const l = frames[frames.length - 1]!;
          next = encodeCursor(g.grantId, { timeNs: l.timeNs, deviceId: l.deviceId, seq: l.seq });
          break;
        }
        frames.push(n.value);
      }
      for (const f of frames) tally.add(f);
      // Logged (durably) before anything is sent.
      await record();
      if (format === 'ndjson') {
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
        for (const f of frames) {
          if (res.destroyed) return;
          const proof = withProofs ? await d.proofs.bundleOf(f.stored) : undefined;
          await write(res, `${JSON.stringify({ ...frameJson(f), ...(proof?.ok ? { proof: proof.bundle } : {}) })}\n`);
        }
        res.end(`${JSON.stringify({ nextCursor: next })}\n`);
        return;
      }
      if (format === 'csv') {
        res.writeHead(200, { 'content-type': 'text/csv; charset=utf-8', 'cache-control': 'no-store', ...(next ? { 'x-next-cursor': next } : {}) });
        await write(res, `${CSV_HEADER}\n`);
        for (const f of frames) {
          if (res.destroyed) return;
          await write(res, csvRows(f));
        }
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      await write(res, `${JSON.stringify(header).slice(0, -1)},"frames":[`);
      for (let i = 0; i < frames.length; i++) {
        if (res.destroyed) return;
        await write(res, `${i ? ',' : ''}${JSON.stringify(frameJson(frames[i]!))}`);
      }
      await write(res, `],"nextCursor":${JSON.stringify(next)}`);
      if (withProofs) {
        const proofs: ProofBundle[] = [];
        const skipped: { deviceId: string; seq: string; code: string }[] = [];
        for (const f of frames) {
          const r = await d.proofs.bundleOf(f.stored);
          if (r.ok) proofs.push(r.bundle);
          else skipped.push({ deviceId: f.deviceId, seq: f.seq.toString(), code: r.code });
        }
        await write(res, `,"proofs":[`);
        for (let i = 0; i < proofs.length; i++) await write(res, `${i ? ',' : ''}${JSON.stringify(proofs[i])}`);
        await write(res, `]${skipped.length ? `,"proofsSkipped":${JSON.stringify(skipped)}` : ''}`);
      }
      res.end('}');
    } finally {
      await it.return?.(undefined);
    }
  };

  /** Answers a route's coded refusal (HttpError) with its status; anything else is a 503 UNAVAILABLE. */
  const answered =
    (handle: Route['handle']): Route['handle'] =>
    async (req, url, res, params) => {
      try {
        return await handle(req, url, res, params);
      } catch (e) {
        if (e instanceof HttpError) {
          if (res.headersSent) {
            res.destroy(e);
            return true;
          }
          // 413: the rest of the body is never read, so the connection closes after the answer.
          return json(
            res,
            e.status,
            errorBody(e.code, e.message),
            e.status === 401 ? { 'www-authenticate': 'Bearer' } : e.status === 413 ? { connection: 'close' } : {},
          );
        }
        d.log.error({ event: 'research_api_failed', path: url.pathname, err: (e as Error).message }, 'research API request failed');
        if (res.headersSent) {
          res.destroy(e as Error); // a streamed answer broken off: the client sees a truncated body, never a wrong one
          return true;
        }
        // Storage or the disk failed: no internal detail to the client (the log has it).
        return json(
          res,
          HTTP_STATUS.UNAVAILABLE,
          errorBody('UNAVAILABLE', 'UNAVAILABLE: the gateway cannot answer this now (storage or the access log failed); try again later'),
        );
      }
    };
  return routes.map((r) => ({ ...r, handle: answered(r.handle) }));
}

/** Sums what a page disclosed, for its access-log entry. */
class Tally {
  frames = 0;
  count = 0;
  fromMs = Number.MAX_SAFE_INTEGER;
  toMs = 0;
  readonly metrics = new Set<string>();
  add(f: ServedFrame): void {
    this.frames++;
    this.count += f.readings.length;
    this.metrics.add(f.metric);
    this.fromMs = Math.min(this.fromMs, Math.floor(f.readings[0]!.timeMs));
    this.toMs = Math.max(this.toMs, Math.floor(f.readings[f.readings.length - 1]!.timeMs));
  }
}

/** Writes with back-pressure; resolves at once when the client is gone. */
function write(res: ServerResponse, chunk: string): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  if (res.write(chunk)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

async function readJson(req: IncomingMessage, guard: HttpGuard): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) throw new HttpError('BAD_REQUEST', 'send a JSON body (content-type: application/json)');
  const max = guard.limits.maxBodyBytes;
  const tooLarge = (): HttpError => {
    guard.refuse('HTTP_BODY_TOO_LARGE');
    return new HttpError('HTTP_BODY_TOO_LARGE', `the body is larger than ${max} bytes (http.maxBodyBytes)`);
  };
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > max) throw tooLarge();
      chunks.push(c as Buffer);
    }
  } catch (e) {
    if (e instanceof HttpError) throw e;
    // The client cut the body short ('aborted'): its fault, counted, never an error-level log line.
    guard.refuse('HTTP_MALFORMED');
    throw new HttpError('HTTP_MALFORMED', `the request body ended before its ${declared} declared bytes`);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v;
  } catch {
    throw new HttpError('BAD_REQUEST', 'the body is not a JSON object');
  }
}

function safe(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

function iso(ms: number): string {
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${ms} ms`;
}
