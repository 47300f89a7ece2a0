/**
 * The `http` target: generated requests (fuzz-http-inputs.ts) against the real gateway's API
 * port from loopback, over raw keep-alive connections (fuzz-http-wire.ts), judged one by one:
 *
 *   - every complete request gets a well-formed HTTP/1.1 answer (status 100-599, header fields,
 *     a body framed by its length, its chunks or the close) before a deadline: no hang, no
 *     silent close, no truncated body;
 *   - a 4xx / 5xx answer with a body is JSON `{ error: CODE, message }` with CODE of the
 *     documented set (DOCUMENTED_HTTP_CODES); a CODE that no page of docs/ names is reported
 *     apart (units `undocumented:<CODE>`), as a gap in the documentation;
 *   - a JSON or NDJSON 2xx body parses;
 *   - only a request that never finished (cut, short body) or an oversized body may end in a
 *     close without an answer;
 *   - honest readings requests interleaved with the fuzz keep being served (200);
 *   - afterwards /status counts what was refused: http.refusedBy per HTTP_* code and
 *     http.login.refusedBy per AUTH_* code, against the answers seen.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUTH_ERRORS } from '../../gateway/consent/auth.js';
import { HTTP_REFUSALS, HTTP_STATUS } from '../../gateway/http/errors.js';
import { repoRoot } from './fuzz-frames.js';
import { httpInput, type HttpContext, type HttpInput } from './fuzz-http-inputs.js';
import { HttpConnection, type Exchange } from './fuzz-http-wire.js';
import type { Rng } from './fuzz-rng.js';
import { Tally, type TargetReport } from './fuzz-report.js';

/** Every error code the API answers or counts: the HTTP catalogue (gateway/http/errors.ts). */
export const DOCUMENTED_HTTP_CODES: ReadonlySet<string> = new Set([...Object.keys(HTTP_STATUS), ...Object.keys(HTTP_REFUSALS)]);

/** Backticked upper-case codes anywhere in docs/*.md: a code the API answers must be among them. */
export function codesInDocs(): Set<string> {
  const docs = join(repoRoot(), 'docs');
  const out = new Set<string>();
  for (const f of readdirSync(docs).filter((x) => x.endsWith('.md'))) {
    for (const m of readFileSync(join(docs, f), 'utf8').matchAll(/`([A-Z][A-Z0-9_]{2,})`/g)) out.add(m[1]!);
  }
  return out;
}

export interface HttpTargetOptions {
  port: number;
  ctx: HttpContext;
  /** Connections in parallel (each sends its requests one after another, keep-alive). */
  concurrency: number;
  /** An honest readings request every this many inputs. */
  honestEvery: number;
  /** Answer deadline per exchange. */
  deadlineMs: number;
  /** The gateway's /status (http section) before and after, for the counters. */
  status: () => Promise<Record<string, unknown>>;
  /** Is the gateway process still there? */
  alive: () => boolean;
  /** Why it exited and when (its last error-level line), once it has. */
  exitReason?: () => { reason: string; atMs?: number };
  /**
   * Fresh issued challenges with a valid signature each (a third account's), fetched while the run
   * goes on: they expire, and each is accepted once.
   */
  challenges?: () => Promise<{ text: string; signature: string }[]>;
  progress?: (done: number) => void;
}

type HttpStatusPart = { refusedBy?: Record<string, number>; login?: { refusedBy?: Record<string, number> } };

/** Judges one exchange: its outcomes (status and code per answer), the codes answered, and the first rule it broke. */
function judge(
  input: HttpInput,
  ex: Exchange,
  documented: ReadonlySet<string>,
  inDocs: ReadonlySet<string>,
): { outcomes: string[]; codes: string[]; undocumented: string[]; problem?: [string, string] } {
  const expected = input.heads?.length ?? 1;
  const outcomes: string[] = [];
  const codes: string[] = [];
  const undocumented: string[] = [];
  let problem: [string, string] | undefined;
  const broke = (code: string, what: string): void => {
    problem ??= [code, what];
  };
  if (ex.answers.length > expected) broke('EXTRA_ANSWER', `${ex.answers.length} answers to ${expected} requests`);
  for (const a of ex.answers) {
    let code = '-';
    const type = a.headers.find(([k]) => k === 'content-type')?.[1] ?? '';
    if (a.status >= 400 && a.body.length > 0) {
      let j: unknown;
      try {
        j = JSON.parse(a.body.toString('utf8'));
      } catch {
        j = undefined;
      }
      const e = j as { error?: unknown; message?: unknown } | undefined;
      if (typeof j !== 'object' || j === null || typeof e?.error !== 'string' || typeof e.message !== 'string')
        broke('UNCODED_ERROR_BODY', `${a.status} body is not JSON { error, message }: ${JSON.stringify(a.body.subarray(0, 160).toString('latin1'))}`);
      else {
        code = e.error;
        codes.push(code);
        if (!documented.has(code)) broke('UNKNOWN_CODE', `${a.status} ${code}: not in the documented set`);
        else if (!/^application\/json\b/.test(type)) broke('ERROR_NOT_JSON_TYPE', `${a.status} ${code} with content-type ${type}`);
        if (!inDocs.has(code)) undocumented.push(code);
      }
    } else if (a.status < 300 && a.body.length > 0) {
      try {
        if (/^application\/json\b/.test(type)) JSON.parse(a.body.toString('utf8'));
        else if (/^application\/x-ndjson\b/.test(type)) for (const l of a.body.toString('utf8').split('\n')) if (l) JSON.parse(l);
      } catch {
        broke('BAD_2XX_BODY', `${a.status} ${type} body does not parse`);
      }
    }
    outcomes.push(`${a.status} ${code}`);
  }
  if (ex.malformed) broke('MALFORMED_ANSWER', ex.malformed);
  // An answer with `connection: close` ends the exchange: the requests pipelined after it go unanswered.
  else if (ex.answers.length < expected && ex.answers.some((a) => a.close)) outcomes.push('closed (after connection: close)');
  else if (ex.answers.length < expected) {
    if (ex.timedOut) broke('NO_ANSWER', `no answer within the deadline, connection open (${ex.answers.length}/${expected} answered)`);
    else if (input.incomplete) outcomes.push('closed (request never finished)');
    else if (input.oversized) outcomes.push(ex.reset ? 'reset (oversized body)' : 'closed (oversized body)');
    else broke('CLOSED_WITHOUT_ANSWER', `connection ${ex.reset ? 'reset' : 'closed'} after ${ex.answers.length}/${expected} answers`);
  }
  return { outcomes, codes, undocumented, ...(problem ? { problem } : {}) };
}

const sub = (a: Record<string, number> | undefined, b: Record<string, number> | undefined): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})])) out[k] = (a?.[k] ?? 0) - (b?.[k] ?? 0);
  return out;
};

/** Runs `inputs` requests; the report's accounting compares /status counters with the answers seen. */
export async function fuzzHttp(inputs: number, rnd: Rng, seed: number, o: HttpTargetOptions): Promise<TargetReport> {
  const t0 = performance.now();
  const tally = new Tally();
  const inDocs = codesInDocs();
  const before = (await o.status())['http'] as HttpStatusPart | undefined;
  // Inputs are drawn in index order from one stream, whichever worker sends them: the same seed gives the same inputs.
  let next = 0;
  const seenRefusals: Record<string, number> = {};
  const seenLoginRefusals: Record<string, number> = {};
  let unanswered = 0;
  let unansweredLogins = 0;
  /** Requests with an oversized body: the unread rest of it may be parsed as one more (refused) request. */
  let oversized = 0;
  const honestPath = `/research/grants/${o.ctx.grantId}/readings?limit=5`;
  const honest = Buffer.from(`GET ${honestPath} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${o.ctx.token}\r\n\r\n`);

  // Issued challenges for the login bodies, refreshed every few seconds while the workers run.
  const ctx = { ...o.ctx, challenges: [...o.ctx.challenges] };
  let running = true;
  const refresher = (async (): Promise<void> => {
    while (running && o.challenges) {
      try {
        ctx.challenges = await o.challenges();
      } catch {
        // The listener may refuse (rate limits) or be busy: keep the last ones.
      }
      for (let i = 0; i < 30 && running; i++) await new Promise((r) => setTimeout(r, 100));
    }
  })();

  /** The last inputs sent, with when: when the gateway exits, the ones sent just before its fatal line are the suspects. */
  const recent: { n: number; atMs: number; input: HttpInput }[] = [];
  let exitReported = false;
  const worker = async (): Promise<void> => {
    let conn: HttpConnection | undefined;
    /** The request before this one on the same connection: unsolicited bytes are its answer's doing. */
    let previous: HttpInput | undefined;
    while (next < inputs) {
      const n = next++;
      const input = httpInput(rnd, ctx);
      recent.push({ n, atMs: Date.now(), input });
      if (recent.length > 512) recent.splice(0, 256);
      tally.inputs++;
      tally.unit(`kind:${input.kind}`);
      if (!conn?.alive) {
        conn?.close();
        conn = new HttpConnection(o.port);
        previous = undefined;
      }
      const expected = input.heads?.length ?? 1;
      const ex = await conn.exchange(input.bytes, {
        expected,
        heads: input.heads ?? [input.method === 'HEAD'],
        finish: input.incomplete,
        deadlineMs: o.deadlineMs,
      });
      const v = judge(input, ex, DOCUMENTED_HTTP_CODES, inDocs);
      if (v.problem) {
        const before =
          v.problem[1].includes('unsolicited') && previous
            ? ` (the request before it on this connection: ${JSON.stringify(previous.bytes.subarray(0, 600).toString('latin1'))})`
            : '';
        tally.fail(n, v.problem[0], `${input.kind}: ${v.problem[1]}${before}`, input.bytes.subarray(0, 2048).toString('latin1'));
        tally.unit(`unexpected ${v.problem[0]} by ${input.kind}`);
      }
      previous = input;
      for (const out of v.outcomes) tally.count(out);
      // A code of the catalogues that no page of docs/ names: a gap in the documentation, reported apart.
      for (const c of v.undocumented) tally.unit(`undocumented:${c}`);
      for (const c of v.codes) {
        if (c in HTTP_REFUSALS) seenRefusals[c] = (seenRefusals[c] ?? 0) + 1;
        else if (input.kind === 'auth/login' && c in AUTH_ERRORS) seenLoginRefusals[c] = (seenLoginRefusals[c] ?? 0) + 1;
      }
      if (input.oversized) oversized++;
      if (ex.answers.length < expected) {
        unanswered++;
        if (input.kind === 'auth/login') unansweredLogins++;
      }
      if (ex.closed || ex.timedOut || ex.malformed || ex.answers.some((a) => a.close) || input.incomplete) {
        conn.close();
        conn = undefined;
      }
      if (n % o.honestEvery === o.honestEvery - 1) {
        const h = new HttpConnection(o.port);
        const hx = await h.exchange(honest, { expected: 1, heads: [false], finish: false, deadlineMs: o.deadlineMs });
        h.close();
        tally.unit('honestRequests');
        const a = hx.answers[0];
        if (a?.status === 200) tally.unit('honestServed');
        else
          tally.fail(
            n,
            'HONEST_REFUSED',
            `an honest readings request got ${a ? `${a.status} ${a.body.subarray(0, 200).toString('utf8')}` : (hx.malformed ?? (hx.timedOut ? 'no answer' : 'a close'))}`,
            honestPath,
          );
      }
      if (!o.alive()) {
        if (!exitReported) {
          // One of the inputs sent just before the process logged its end did it: the last `concurrency` of them.
          const why = o.exitReason?.() ?? { reason: 'no reason logged' };
          const suspects = recent.filter((x) => why.atMs === undefined || x.atMs <= why.atMs).slice(-o.concurrency);
          tally.fail(
            n,
            'GATEWAY_EXITED',
            `the gateway process exited (${why.reason}); one of the ${suspects.length} inputs sent just before did it: #${suspects.map((x) => x.n).join(', #')}`,
            suspects.map((x) => `#${x.n} ${JSON.stringify(x.input.bytes.subarray(0, 600).toString('latin1'))}`).join('\n'),
          );
        }
        exitReported = true;
        next = inputs;
      }
      o.progress?.(tally.inputs);
    }
    conn?.close();
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  running = false;
  await refresher;
  const report = tally.report('http', seed, performance.now() - t0);
  if (!o.alive()) return report; // no counters to read
  const after = (await o.status())['http'] as HttpStatusPart | undefined;
  // Every refusal answered was counted once; a refusal whose answer was lost (a reset) may be counted without being seen.
  const accounting: NonNullable<TargetReport['accounting']> = {};
  const dRef = sub(after?.refusedBy, before?.refusedBy);
  for (const c of new Set([...Object.keys(seenRefusals), ...Object.keys(dRef).filter((k) => dRef[k] !== 0)])) {
    const seen = seenRefusals[c] ?? 0;
    const got = dRef[c] ?? 0;
    const slack = unanswered + (c === 'HTTP_MALFORMED' || c === 'HTTP_HEADERS_TOO_LARGE' ? oversized : 0);
    accounting[`http.refusedBy.${c}`] = { expected: seen === got ? seen : `${seen} … ${seen + slack}`, got, ok: got >= seen && got <= seen + slack };
  }
  const dLogin = sub(after?.login?.refusedBy, before?.login?.refusedBy);
  for (const c of new Set([...Object.keys(seenLoginRefusals), ...Object.keys(dLogin).filter((k) => dLogin[k] !== 0)])) {
    const seen = seenLoginRefusals[c] ?? 0;
    const got = dLogin[c] ?? 0;
    accounting[`http.login.refusedBy.${c}`] = {
      expected: seen === got ? seen : `${seen} … ${seen + unansweredLogins}`,
      got,
      ok: got >= seen && got <= seen + unansweredLogins,
    };
  }
  report.accounting = accounting;
  return report;
}
