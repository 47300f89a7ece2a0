/**
 * A forged-login flood for the bench (scripts/bench.ts, figure (g)): POST /auth/login paced at
 * `ratePerS` from several loopback source addresses (127.0.2.x), keep-alive connections, each
 * body a well-formed login with a random signature. Half the challenges are forged (a nonce
 * the gateway never made), half genuine (fetched from POST /auth/challenge) so that they reach
 * the signature check: the attack of issue #10 item 2 (435 such requests/s drove the gateway to
 * 95 % CPU). Answers are counted by their `error` code. Bounded: it stops when told, or after
 * `maxRequests`.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { challengeText, parseChallenge } from '../../gateway/consent/auth.js';
import { sig } from './stats.js';

export interface FloodFigure {
  targetPerSecond: number;
  achievedPerSecond: number;
  sources: number;
  requests: number;
  /** Answers by error code (OK: a login that succeeded, which a forged one never does). */
  byCode: Record<string, number>;
  /** Requests that got no HTTP answer (connection refused or reset). */
  failed: number;
  seconds: number;
}

interface Answer {
  status: number;
  code: string;
}

function post(agent: Agent, port: number, path: string, body: unknown): Promise<Answer & { json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      { host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let json: Record<string, unknown>;
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
          } catch {
            json = {};
          }
          resolve({
            status: res.statusCode ?? 0,
            code: typeof json['error'] === 'string' ? json['error'] : res.statusCode === 200 ? 'OK' : `HTTP_${res.statusCode}`,
            json,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export class LoginFlood {
  private readonly agents: Agent[];
  private readonly genuine: string[] = [];
  private stopped = false;
  private inFlight = 0;
  private running: Promise<void> | undefined;
  private sent = 0;
  private failed = 0;
  private readonly byCode: Record<string, number> = {};
  private startedAt = 0;
  private endedAt = 0;

  constructor(private readonly o: { port: number; ratePerS: number; sources?: number; account: string; maxRequests?: number; inFlightPerSource?: number }) {
    const n = o.sources ?? 16;
    this.agents = Array.from(
      { length: n },
      (_, i) =>
        new Agent({ keepAlive: true, maxSockets: o.inFlightPerSource ?? 4, localAddress: `127.0.2.${i + 1}` } as ConstructorParameters<typeof Agent>[0]),
    );
  }

  /** Fetches one genuine challenge per source, then floods until stop(). */
  async start(): Promise<void> {
    for (const agent of this.agents) {
      const r = await post(agent, this.o.port, '/auth/challenge', { address: this.o.account, purpose: 'http' });
      if (typeof r.json['challenge'] !== 'string') throw new Error(`no challenge from the gateway: ${JSON.stringify(r.json)}`);
      this.genuine.push(r.json['challenge']);
    }
    this.startedAt = performance.now();
    const max = this.o.maxRequests ?? 2_000_000;
    const window = this.agents.length * (this.o.inFlightPerSource ?? 4);
    this.running = new Promise<void>((done) => {
      const fire = (): void => {
        const i = this.sent++;
        const src = i % this.agents.length;
        const genuine = this.genuine[src]!;
        const text = i % 2 ? challengeText({ ...parseChallenge(genuine)!, nonce: randomBytes(16).toString('hex') }) : genuine;
        this.inFlight++;
        post(this.agents[src]!, this.o.port, '/auth/login', { challenge: text, signature: `0x${randomBytes(64).toString('hex')}1b` })
          .then(
            (a) => {
              this.byCode[a.code] = (this.byCode[a.code] ?? 0) + 1;
            },
            () => {
              this.failed++;
            },
          )
          .finally(() => {
            this.inFlight--;
          });
      };
      const tick = (): void => {
        if (this.stopped || this.sent >= max) {
          this.endedAt = performance.now();
          return done();
        }
        const due = Math.floor((this.o.ratePerS * (performance.now() - this.startedAt)) / 1000);
        while (this.sent < due && this.sent < max && this.inFlight < window) fire();
        setTimeout(tick, 2);
      };
      tick();
    });
  }

  /** Stops sending, waits for the answers still due (5 s at most), and returns what was sent and answered. */
  async stop(): Promise<FloodFigure> {
    this.stopped = true;
    await this.running;
    for (let i = 0; i < 500 && this.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
    for (const a of this.agents) a.destroy();
    const seconds = (this.endedAt - this.startedAt) / 1000;
    return {
      targetPerSecond: this.o.ratePerS,
      achievedPerSecond: Math.round(this.sent / seconds),
      sources: this.agents.length,
      requests: this.sent,
      byCode: { ...this.byCode },
      failed: this.failed,
      seconds: sig(seconds, 3),
    };
  }
}
