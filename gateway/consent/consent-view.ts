/**
 * The gateway's local view of the ConsentRegistry contract (docs/consent.md, "Consent view"):
 * every binding, grant and revocation, followed from the contract's PatientBound /
 * ConsentGranted / ConsentRevoked events (gateway/chain/log-follower.ts: polling, confirmations,
 * reorg rescans, a cache file so a restart does not rescan from the deploy block, and the cache
 * served while the chain is down). Delivery asks it, synchronously, and never waits on the chain.
 *
 * decide() and checkGrant() answer exactly as the contract's isPermitted() and checkGrant()
 * would at block time `nowMs` (test/gateway/consent/consent-view.test.ts compares the two over many
 * random cases); the view even mirrors the contract's pruning of a pair's open-grant list, so
 * it names the same grant. By default "now" is the gateway's clock.
 *
 * Events, for the live transport to cut subscriptions:
 *   granted   a grant appeared (or came back after a reorganisation)
 *   revoked   a ConsentRevoked event was applied (with the revoking block's time, number and
 *             transaction), or a reorganisation removed a grant in force (cause 'reorg')
 *   expired   emitted by a timer at the grant's expiry instant (gateway clock), not by polling
 *   bound     a patient address was bound (or rebound) to a patientRef
 *   changed   anything above
 * A revocation reaches 'revoked' one poll after its block (pollIntervalMs, default 500 ms),
 * plus the confirmations asked for.
 *
 * @example
 *   const view = new ConsentView({ provider, consentRegistryAddress: record.consentRegistry.address,
 *     deployBlock: record.deployBlock, dataDir: join(dataDir, 'consent'), directory, log });
 *   view.on('revoked', ({ grant }) => transport.cut(grant.grantId));
 *   const d = view.decide(researcher, view.patientRefOf('pt-0042')!, 1, reading.timeMs);
 *   if (!d.ok) suback(d.code);
 */
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { getAddress, isAddress, type Log, type Provider } from 'ethers';
import { consentRegistryInterface, MAX_MASK_SENSOR_CODE, sensorCodesOf, type GrantStatusName } from '../chain/contracts.js';
import { LogFollower, type FollowedState, type FollowerLog, type LogFollowerStatus } from '../chain/log-follower.js';
import { patientRefOf as hmacPatientRef } from '../chain/ids.js';
import { fallbackPseudonym, type PseudonymDirectory } from '../registry/directory.js';

export const CONSENT_CACHE_FILE = 'consent-cache.json';

/** The contract's bound on a pair's open grants (ConsentRegistry.MAX_OPEN_GRANTS_PER_PAIR). */
export const MAX_OPEN_GRANTS_PER_PAIR = 32;

const UINT64_MAX = (1n << 64n) - 1n;
/** setTimeout's longest delay; longer expiries are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const PATIENT_REF = /^0x[0-9a-f]{64}$/;
const FALLBACK_PSEUDONYM = /^ref-([0-9a-f]{16})$/;

const [BOUND_TOPIC, GRANTED_TOPIC, REVOKED_TOPIC] = ['PatientBound', 'ConsentGranted', 'ConsentRevoked'].map(
  (n) => consentRegistryInterface.getEvent(n)!.topicHash,
) as [string, string, string];

/** One grant as the contract holds it (getGrant), and where the view saw it. */
export interface ConsentGrant {
  grantId: bigint;
  /** 0x + 64 lowercase hex digits. */
  patientRef: string;
  /** 0x + 64 lowercase hex digits. */
  purposeRef: string;
  /** EIP-55 checksummed. */
  researcher: string;
  /** Bit c = sensor code c (firmware-proto/catalogue.ts). */
  sensorMask: number;
  /** Data window, device time in Unix ms, inclusive at both ends. */
  dataFromMs: bigint;
  dataToMs: bigint;
  /** In force while now < expiresAtMs. */
  expiresAtMs: bigint;
  /** Block time of the grant, ms. */
  grantedAtMs: bigint;
  /** Block time of the revocation, ms; 0n while not revoked (as the contract). */
  revokedAtMs: bigint;
  /** The granting transaction's block and hash. */
  block: number;
  txHash: string;
  /** The revoking transaction's block and hash, once revoked. */
  revokedBlock?: number;
  revokedTxHash?: string;
}

/**
 * Why a reading may not go to a researcher, the most specific reason over the pair's grants
 * (ConsentView.decide): REVOKED or EXPIRED when a grant covering the sensor and time has ended,
 * OUTSIDE_DATA_WINDOW, SENSOR_NOT_GRANTED, or NO_GRANT when the patient never granted this
 * researcher anything. The names are checkGrant's verdicts (GRANT_STATUS) plus NO_GRANT.
 */
export type DecisionCode = Exclude<GrantStatusName, 'OK' | 'UNKNOWN_GRANT' | 'NOT_GRANTEE'> | 'NO_GRANT';

export type Decision = { ok: true; grantId: bigint } | { ok: false; code: DecisionCode };

export interface RevokedEvent {
  grant: ConsentGrant;
  /** The revoking block's time (ms; the contract's revokedAtMs), or when the view noticed a reorganisation. */
  revokedAtMs: number;
  /** The block that holds the revocation (cause 'revoked'), or the head the rescan reached (cause 'reorg'). */
  blockNumber: number;
  txHash?: string;
  cause: 'revoked' | 'reorg';
}

export interface BoundEvent {
  patientRef: string;
  patient: string;
  /** The address that lost control of the patientRef; undefined at the first bind. */
  previous?: string;
}

export interface ConsentViewEvents {
  granted: [ConsentGrant];
  revoked: [RevokedEvent];
  expired: [ConsentGrant];
  bound: [BoundEvent];
  changed: [];
}

export interface ConsentViewOptions {
  provider: Provider;
  /** The ConsentRegistry contract (deployment record: consentRegistry.address). */
  consentRegistryAddress: string;
  /** Where scanning starts (deployment record: deployBlock). */
  deployBlock: number;
  /** The view's own directory: consent-cache.json. */
  dataDir: string;
  /** The pseudonym directory of the device registry, to map pseudonyms to patientRefs and back. */
  directory?: PseudonymDirectory;
  /** The hospital's patient-ref key: maps a pseudonym the directory does not know. */
  patientRefKey?: Uint8Array;
  /** Blocks an event needs (its own included) before it is applied. Default 1. */
  confirmations?: number;
  /** Polling period while the chain answers. Default 500 ms (a revocation must cut delivery within 2 s). */
  pollIntervalMs?: number;
  /** Longest wait between retries while the chain is unreachable. Default 30,000. */
  maxBackoffMs?: number;
  rpcTimeoutMs?: number;
  /** Follow in the background (a gateway). false: only sync() talks to the chain (a CLI). Default true. */
  follow?: boolean;
  chainId?: number;
  /** The clock "now" is read from (decide's default, expiry timers). Default Date.now. */
  now?: () => number;
  log?: FollowerLog;
}

export interface ConsentViewStatus extends LogFollowerStatus {
  grants: number;
  /** Grants neither revoked nor expired now. */
  inForce: number;
  patients: number;
}

interface ConsentState extends FollowedState {
  grants: Map<bigint, ConsentGrant>;
  /** patientRef → the address bound to it. */
  patients: Map<string, string>;
  /** `${patientRef}:${researcher lowercase}` → the pair's open grants, oldest first (the contract's _openGrants). */
  open: Map<string, bigint[]>;
  /** patientRef → every grant id, in order. */
  byRef: Map<string, bigint[]>;
  /** researcher lowercase → every grant id, in order. */
  byResearcher: Map<string, bigint[]>;
}

interface Changes {
  granted: bigint[];
  revoked: bigint[];
  bound: BoundEvent[];
}

export class ConsentView extends EventEmitter<ConsentViewEvents> {
  readonly contract: string;
  private readonly follower: LogFollower<ConsentState, Changes>;
  private readonly now: () => number;
  private readonly directory: PseudonymDirectory | undefined;
  private readonly patientRefKey: Uint8Array | undefined;
  private readonly timers = new Map<bigint, NodeJS.Timeout>();
  private closed = false;
  /** pseudonym ↔ patientRef from the directory, rebuilt when the directory was re-read. */
  private index: { source: ReadonlyMap<string, unknown> | undefined; toRef: Map<string, string>; toPseudonym: Map<string, string> } = {
    source: undefined,
    toRef: new Map(),
    toPseudonym: new Map(),
  };

  /**
   * Loads the cache and, unless `follow: false`, starts following. Never waits on the chain.
   * @throws TypeError for bad options.
   */
  constructor(private readonly opts: ConsentViewOptions) {
    super();
    this.now = opts.now ?? Date.now;
    this.directory = opts.directory;
    this.patientRefKey = opts.patientRefKey;
    this.follower = new LogFollower<ConsentState, Changes>({
      provider: opts.provider,
      address: opts.consentRegistryAddress,
      topics: [BOUND_TOPIC, GRANTED_TOPIC, REVOKED_TOPIC],
      deployBlock: opts.deployBlock,
      cachePath: join(opts.dataDir, CONSENT_CACHE_FILE),
      pollIntervalMs: opts.pollIntervalMs ?? 500,
      logPrefix: 'consent',
      blockTimes: true,
      ...(opts.confirmations !== undefined ? { confirmations: opts.confirmations } : {}),
      ...(opts.maxBackoffMs !== undefined ? { maxBackoffMs: opts.maxBackoffMs } : {}),
      ...(opts.rpcTimeoutMs !== undefined ? { rpcTimeoutMs: opts.rpcTimeoutMs } : {}),
      ...(opts.follow !== undefined ? { follow: opts.follow } : {}),
      ...(opts.chainId !== undefined ? { chainId: opts.chainId } : {}),
      ...(opts.log ? { log: opts.log } : {}),
      hooks: {
        empty: emptyState,
        apply: applyLogs,
        published: (c) => this.published(c),
        swapped: (before, after) => this.swapped(before, after),
        save: saveState,
        load: loadState,
      },
    });
    this.contract = this.follower.address;
    for (const g of this.state.grants.values()) this.arm(g);
    this.follower.start();
  }

  private get state(): ConsentState {
    return this.follower.state;
  }

  // ---- verdicts --------------------------------------------------------------------------

  /**
   * May `researcher` receive sensor `sensor` of `patientRef` recorded at `recordedAtMs`, at
   * `nowMs`? Exactly the contract's isPermitted (the oldest open grant of the pair that covers
   * it); when none does, why (DecisionCode).
   * @throws TypeError for a malformed address, patientRef, sensor code or time.
   * @example view.decide('0x7099…79C8', ref, 1, 1_795_000_000_000) // { ok: true, grantId: 3n }
   */
  decide(researcher: string, patientRef: string, sensor: number, recordedAtMs: number | bigint, nowMs: number | bigint = this.now()): Decision {
    const r = researcherKey(researcher);
    const ref = refArg(patientRef);
    const s = sensorArg(sensor);
    const t = uint64Arg('recordedAtMs', recordedAtMs);
    const now = uint64Arg('nowMs', nowMs);
    for (const id of this.state.open.get(`${ref}:${r}`) ?? []) {
      if (grantStatus(this.state.grants.get(id)!, s, t, now) === 'OK') return { ok: true, grantId: id };
    }
    return { ok: false, code: this.whyNot(r, ref, s, t, now) };
  }

  /**
   * The most specific reason none of the pair's grants covers a request (docs/consent.md):
   *   REVOKED / EXPIRED       a grant covers the sensor and the time but has ended (the latest such grant's state)
   *   OUTSIDE_DATA_WINDOW     a grant in force covers the sensor, but not the time
   *   SENSOR_NOT_GRANTED      grants are in force, none for this sensor
   *   REVOKED / EXPIRED       every grant of the pair has ended (the latest grant's state)
   *   NO_GRANT                the patient never granted this researcher anything
   */
  private whyNot(researcher: string, ref: string, sensor: number, t: bigint, now: bigint): DecisionCode {
    let ended: ConsentGrant | undefined;
    let endedCovering: ConsentGrant | undefined;
    let liveSensor = false;
    let live = false;
    for (const id of this.state.byRef.get(ref) ?? []) {
      const g = this.state.grants.get(id)!;
      if (g.researcher.toLowerCase() !== researcher) continue;
      const hasSensor = sensor <= MAX_MASK_SENSOR_CODE && ((g.sensorMask >> sensor) & 1) === 1;
      const inForce = g.revokedAtMs === 0n && now < g.expiresAtMs;
      if (inForce) {
        live = true;
        liveSensor ||= hasSensor;
      } else {
        ended = g;
        if (hasSensor && t >= g.dataFromMs && t <= g.dataToMs) endedCovering = g;
      }
    }
    const state = (g: ConsentGrant): DecisionCode => (g.revokedAtMs !== 0n ? 'REVOKED' : 'EXPIRED');
    if (endedCovering) return state(endedCovering);
    if (liveSensor) return 'OUTSIDE_DATA_WINDOW';
    if (live) return 'SENSOR_NOT_GRANTED';
    if (ended) return state(ended);
    return 'NO_GRANT';
  }

  /**
   * Exactly the contract's checkGrant(grantId, researcher, sensor, recordedAtMs) at block time `nowMs`.
   * @throws TypeError for malformed arguments.
   */
  checkGrant(
    grantId: bigint | number,
    researcher: string,
    sensor: number,
    recordedAtMs: number | bigint,
    nowMs: number | bigint = this.now(),
  ): GrantStatusName {
    const g = this.state.grants.get(uint64Arg('grantId', grantId));
    if (!g) return 'UNKNOWN_GRANT';
    if (g.researcher.toLowerCase() !== researcherKey(researcher)) return 'NOT_GRANTEE';
    return grantStatus(g, sensorArg(sensor), uint64Arg('recordedAtMs', recordedAtMs), uint64Arg('nowMs', nowMs));
  }

  /** Whether a grant is in force at `nowMs` (neither revoked nor expired), whatever the sensor and time. */
  inForce(g: ConsentGrant, nowMs: number | bigint = this.now()): boolean {
    return g.revokedAtMs === 0n && uint64Arg('nowMs', nowMs) < g.expiresAtMs;
  }

  // ---- reads -----------------------------------------------------------------------------

  /** A grant, revoked and expired ones included; undefined when the view has not seen it. */
  grant(grantId: bigint | number): ConsentGrant | undefined {
    const g = this.state.grants.get(uint64Arg('grantId', grantId));
    return g ? { ...g } : undefined;
  }

  /** Every grant made to `researcher`, in grant order (the contract's grantIdsFor). */
  grantsFor(researcher: string): ConsentGrant[] {
    return (this.state.byResearcher.get(researcherKey(researcher)) ?? []).map((id) => ({ ...this.state.grants.get(id)! }));
  }

  /** Every grant of `patientRef`, in grant order (the contract's grantIdsOf). */
  grantsOf(patientRef: string): ConsentGrant[] {
    return (this.state.byRef.get(refArg(patientRef)) ?? []).map((id) => ({ ...this.state.grants.get(id)! }));
  }

  /** The address bound to `patientRef` (the contract's patientOf), undefined when none. */
  patientOf(patientRef: string): string | undefined {
    return this.state.patients.get(refArg(patientRef));
  }

  /** The patientRef `address` is bound to (the contract's patientRefOf), undefined when none. */
  patientRefOfAddress(address: string): string | undefined {
    const a = researcherKey(address);
    for (const [ref, p] of this.state.patients) if (p.toLowerCase() === a) return ref;
    return undefined;
  }

  // ---- pseudonyms ------------------------------------------------------------------------

  /**
   * The patientRef of a pseudonym: from the device registry's directory (the ref its devices
   * were enrolled with), else the HMAC with the patient-ref key when the view has it, else, for
   * a `ref-…` fallback pseudonym, the known patientRef it abbreviates. Undefined when unknown.
   */
  patientRefOf(pseudonym: string): string | undefined {
    const fromDirectory = this.pseudonymIndex().toRef.get(pseudonym);
    if (fromDirectory) return fromDirectory;
    if (this.patientRefKey) return hmacPatientRef(pseudonym, this.patientRefKey);
    const m = FALLBACK_PSEUDONYM.exec(pseudonym);
    if (m) {
      const prefix = `0x${m[1]}`;
      for (const ref of new Set([...this.state.patients.keys(), ...this.state.byRef.keys()])) if (ref.startsWith(prefix)) return ref;
    }
    return undefined;
  }

  /**
   * The pseudonym of a patientRef: from the directory, else its `ref-…` fallback pseudonym
   * (gateway/registry/directory.ts), as the device registry names such patients.
   * @throws TypeError for a malformed patientRef.
   */
  pseudonymOf(patientRef: string): string {
    const ref = refArg(patientRef);
    return this.pseudonymIndex().toPseudonym.get(ref) ?? fallbackPseudonym(ref);
  }

  private pseudonymIndex(): { toRef: Map<string, string>; toPseudonym: Map<string, string> } {
    if (!this.directory) return this.index;
    try {
      this.directory.refresh();
    } catch (e) {
      this.opts.log?.warn(
        { event: 'consent_directory_unreadable', err: (e as Error).message },
        'pseudonym directory unreadable; keeping the entries read before',
      );
    }
    const source = this.directory.all();
    if (source !== this.index.source) {
      const toRef = new Map<string, string>();
      const toPseudonym = new Map<string, string>();
      for (const e of source.values()) {
        if (!toRef.has(e.patient)) toRef.set(e.patient, e.patientRef);
        if (!toPseudonym.has(e.patientRef)) toPseudonym.set(e.patientRef, e.patient);
      }
      this.index = { source, toRef, toPseudonym };
    }
    return this.index;
  }

  // ---- lifecycle -------------------------------------------------------------------------

  status(): ConsentViewStatus {
    const now = BigInt(this.now());
    let inForce = 0;
    for (const g of this.state.grants.values()) if (g.revokedAtMs === 0n && now < g.expiresAtMs) inForce++;
    return { ...this.follower.status(), grants: this.state.grants.size, inForce, patients: this.state.patients.size };
  }

  /** Resolves after the first catch-up round that reached the chain head (see LogFollower.ready). */
  ready(): Promise<void> {
    return this.follower.ready();
  }

  /** One catch-up round now; events for what it applied are emitted before it resolves. @throws when the chain is unreachable. */
  sync(): Promise<void> {
    return this.follower.sync();
  }

  /** Syncs until the view holds every event up to `block` (e.g. a receipt's blockNumber). */
  syncTo(block: number): Promise<void> {
    return this.follower.syncTo(block);
  }

  /** Stops following and the expiry timers, and writes the cache. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await this.follower.close();
  }

  // ---- events ----------------------------------------------------------------------------

  private published(c: Changes): boolean {
    if (!c.granted.length && !c.revoked.length && !c.bound.length) return false;
    for (const b of c.bound) this.emit('bound', b);
    for (const id of c.granted) {
      const g = this.state.grants.get(id)!;
      this.arm(g);
      this.emit('granted', { ...g });
    }
    for (const id of c.revoked) {
      const g = this.state.grants.get(id)!;
      this.disarm(id);
      this.emit('revoked', {
        grant: { ...g },
        revokedAtMs: Number(g.revokedAtMs),
        blockNumber: g.revokedBlock!,
        ...(g.revokedTxHash ? { txHash: g.revokedTxHash } : {}),
        cause: 'revoked',
      });
    }
    this.emit('changed');
    return true;
  }

  /** A rescanned state replaced `before`: announce the difference. */
  private swapped(before: ConsentState, after: ConsentState): void {
    const now = BigInt(this.now());
    const live = (g: ConsentGrant | undefined): boolean => !!g && g.revokedAtMs === 0n && now < g.expiresAtMs;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const g of after.grants.values()) this.arm(g);
    for (const [ref, p] of after.patients)
      if (before.patients.get(ref) !== p)
        this.emit('bound', { patientRef: ref, patient: p, ...(before.patients.get(ref) ? { previous: before.patients.get(ref)! } : {}) });
    for (const [id, old] of before.grants) {
      const now2 = after.grants.get(id);
      if (!live(old) || live(now2)) continue;
      if (now2 && now2.revokedAtMs !== 0n) {
        this.emit('revoked', {
          grant: { ...now2 },
          revokedAtMs: Number(now2.revokedAtMs),
          blockNumber: now2.revokedBlock!,
          ...(now2.revokedTxHash ? { txHash: now2.revokedTxHash } : {}),
          cause: 'revoked',
        });
      } else {
        // The grant is gone (or changed) with the branch it was on: it grants nothing now.
        this.emit('revoked', { grant: { ...old }, revokedAtMs: Number(now), blockNumber: after.lastBlock, cause: 'reorg' });
      }
    }
    for (const [id, g] of after.grants) if (live(g) && !live(before.grants.get(id))) this.emit('granted', { ...g });
    this.emit('changed');
  }

  /** Arms the expiry timer of a grant in force; 'expired' fires at expiresAtMs on the view's clock. */
  private arm(g: ConsentGrant): void {
    this.disarm(g.grantId);
    if (this.closed || g.revokedAtMs !== 0n) return;
    const remaining = g.expiresAtMs - BigInt(this.now());
    if (remaining <= 0n) return; // expired already: nothing in force to cut
    const delay = remaining > BigInt(MAX_TIMER_MS) ? MAX_TIMER_MS : Number(remaining);
    const t = setTimeout(() => {
      this.timers.delete(g.grantId);
      const cur = this.state.grants.get(g.grantId);
      if (!cur || cur.revokedAtMs !== 0n) return;
      if (BigInt(this.now()) < cur.expiresAtMs) return this.arm(cur); // a long expiry, re-armed
      this.emit('expired', { ...cur });
      this.emit('changed');
    }, delay);
    t.unref();
    this.timers.set(g.grantId, t);
  }

  private disarm(id: bigint): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
  }
}

// ---- the contract's rules (contracts/ConsentRegistry.sol) -------------------------------

/** The contract's _status: the checks of checkGrant after the grantee's, in GrantStatus order. */
function grantStatus(g: ConsentGrant, sensor: number, recordedAtMs: bigint, nowMs: bigint): GrantStatusName {
  if (g.revokedAtMs !== 0n) return 'REVOKED';
  if (nowMs >= g.expiresAtMs) return 'EXPIRED';
  // A shift by 16 or more gives 0 in the contract: codes above 15 are never granted.
  if (sensor > MAX_MASK_SENSOR_CODE || ((g.sensorMask >> sensor) & 1) === 0) return 'SENSOR_NOT_GRANTED';
  if (recordedAtMs < g.dataFromMs || recordedAtMs > g.dataToMs) return 'OUTSIDE_DATA_WINDOW';
  return 'OK';
}

function emptyState(lastBlock: number): ConsentState {
  return { lastBlock, lastBlockHash: undefined, grants: new Map(), patients: new Map(), open: new Map(), byRef: new Map(), byResearcher: new Map() };
}

function push<K>(m: Map<K, bigint[]>, k: K, id: bigint): void {
  const l = m.get(k);
  if (l) l.push(id);
  else m.set(k, [id]);
}

/** Applies the contract's events in order, as the contract changed its storage. */
function applyLogs(state: ConsentState, logs: readonly Log[], blockTimesMs: ReadonlyMap<string, number>): Changes {
  const c: Changes = { granted: [], revoked: [], bound: [] };
  for (const log of logs) {
    const parsed = consentRegistryInterface.parseLog({ topics: [...log.topics], data: log.data });
    if (!parsed) continue;
    if (parsed.name === 'PatientBound') {
      const [ref, patient, previous] = parsed.args.toArray() as [string, string, string];
      const r = ref.toLowerCase();
      state.patients.set(r, getAddress(patient));
      c.bound.push({ patientRef: r, patient: getAddress(patient), ...(BigInt(previous) !== 0n ? { previous: getAddress(previous) } : {}) });
    } else if (parsed.name === 'ConsentGranted') {
      const [grantId, ref, researcher, sensorMask, dataFromMs, dataToMs, expiresAtMs, purposeRef] = parsed.args.toArray() as [
        bigint,
        string,
        string,
        bigint,
        bigint,
        bigint,
        bigint,
        string,
      ];
      if (state.grants.has(grantId)) continue; // ids are given out once: not this contract's log
      const nowMs = BigInt(blockTimesMs.get(log.blockHash) ?? 0);
      const r = ref.toLowerCase();
      const key = `${r}:${researcher.toLowerCase()}`;
      const open = state.open.get(key) ?? [];
      // The contract's _prune, at the grant's block time, when the pair's list is full.
      if (open.length >= MAX_OPEN_GRANTS_PER_PAIR) {
        const kept = open.filter((id) => {
          const g = state.grants.get(id)!;
          return g.revokedAtMs === 0n && nowMs < g.expiresAtMs;
        });
        open.length = 0;
        open.push(...kept);
      }
      open.push(grantId);
      state.open.set(key, open);
      state.grants.set(grantId, {
        grantId,
        patientRef: r,
        purposeRef: purposeRef.toLowerCase(),
        researcher: getAddress(researcher),
        sensorMask: Number(sensorMask),
        dataFromMs,
        dataToMs,
        expiresAtMs,
        grantedAtMs: nowMs,
        revokedAtMs: 0n,
        block: log.blockNumber,
        txHash: log.transactionHash,
      });
      push(state.byRef, r, grantId);
      push(state.byResearcher, researcher.toLowerCase(), grantId);
      c.granted.push(grantId);
    } else if (parsed.name === 'ConsentRevoked') {
      const [grantId, , , revokedAtMs] = parsed.args.toArray() as [bigint, string, string, bigint];
      const g = state.grants.get(grantId);
      if (!g || g.revokedAtMs !== 0n) continue; // the contract revokes known grants once
      g.revokedAtMs = revokedAtMs;
      g.revokedBlock = log.blockNumber;
      g.revokedTxHash = log.transactionHash;
      c.revoked.push(grantId);
    }
  }
  return c;
}

interface CachedGrant {
  id: string;
  patientRef: string;
  purposeRef: string;
  researcher: string;
  sensorMask: number;
  dataFromMs: string;
  dataToMs: string;
  expiresAtMs: string;
  grantedAtMs: string;
  revokedAtMs: string;
  block: number;
  txHash: string;
  revokedBlock?: number;
  revokedTxHash?: string;
}

interface CachedData {
  grants: CachedGrant[];
  patients: [string, string][];
  open: [string, string[]][];
}

function saveState(s: ConsentState): CachedData {
  return {
    grants: [...s.grants.values()].map((g) => ({
      id: g.grantId.toString(),
      patientRef: g.patientRef,
      purposeRef: g.purposeRef,
      researcher: g.researcher,
      sensorMask: g.sensorMask,
      dataFromMs: g.dataFromMs.toString(),
      dataToMs: g.dataToMs.toString(),
      expiresAtMs: g.expiresAtMs.toString(),
      grantedAtMs: g.grantedAtMs.toString(),
      revokedAtMs: g.revokedAtMs.toString(),
      block: g.block,
      txHash: g.txHash,
      ...(g.revokedBlock !== undefined ? { revokedBlock: g.revokedBlock } : {}),
      ...(g.revokedTxHash !== undefined ? { revokedTxHash: g.revokedTxHash } : {}),
    })),
    patients: [...s.patients],
    open: [...s.open].map(([k, ids]) => [k, ids.map(String)]),
  };
}

const DEC = /^(0|[1-9][0-9]*)$/;
const HASH = /^0x[0-9a-f]{64}$/;

function loadState(data: unknown, lastBlock: number, lastBlockHash: string | undefined): ConsentState | undefined {
  const d = data as Partial<CachedData> | null;
  if (!d || !Array.isArray(d.grants) || !Array.isArray(d.patients) || !Array.isArray(d.open)) return undefined;
  const s = emptyState(lastBlock);
  s.lastBlockHash = lastBlockHash;
  const ids = new Set<bigint>();
  for (const x of d.grants as Partial<CachedGrant>[]) {
    const ok =
      typeof x.id === 'string' &&
      DEC.test(x.id) &&
      typeof x.patientRef === 'string' &&
      HASH.test(x.patientRef) &&
      typeof x.purposeRef === 'string' &&
      HASH.test(x.purposeRef) &&
      typeof x.researcher === 'string' &&
      isAddress(x.researcher) &&
      typeof x.sensorMask === 'number' &&
      [x.dataFromMs, x.dataToMs, x.expiresAtMs, x.grantedAtMs, x.revokedAtMs].every((v) => typeof v === 'string' && DEC.test(v)) &&
      typeof x.block === 'number' &&
      typeof x.txHash === 'string';
    if (!ok) return undefined;
    const g: ConsentGrant = {
      grantId: BigInt(x.id!),
      patientRef: x.patientRef!,
      purposeRef: x.purposeRef!,
      researcher: getAddress(x.researcher!),
      sensorMask: x.sensorMask!,
      dataFromMs: BigInt(x.dataFromMs!),
      dataToMs: BigInt(x.dataToMs!),
      expiresAtMs: BigInt(x.expiresAtMs!),
      grantedAtMs: BigInt(x.grantedAtMs!),
      revokedAtMs: BigInt(x.revokedAtMs!),
      block: x.block!,
      txHash: x.txHash!,
      ...(typeof x.revokedBlock === 'number' ? { revokedBlock: x.revokedBlock } : {}),
      ...(typeof x.revokedTxHash === 'string' ? { revokedTxHash: x.revokedTxHash } : {}),
    };
    s.grants.set(g.grantId, g);
    ids.add(g.grantId);
  }
  for (const g of [...s.grants.values()].sort((a, b) => (a.grantId < b.grantId ? -1 : 1))) {
    push(s.byRef, g.patientRef, g.grantId);
    push(s.byResearcher, g.researcher.toLowerCase(), g.grantId);
  }
  for (const p of d.patients) {
    if (!Array.isArray(p) || typeof p[0] !== 'string' || !HASH.test(p[0]) || typeof p[1] !== 'string' || !isAddress(p[1])) return undefined;
    s.patients.set(p[0], getAddress(p[1]));
  }
  for (const o of d.open) {
    if (
      !Array.isArray(o) ||
      typeof o[0] !== 'string' ||
      !Array.isArray(o[1]) ||
      !o[1].every((v: unknown) => typeof v === 'string' && DEC.test(v) && ids.has(BigInt(v)))
    )
      return undefined;
    s.open.set(
      o[0],
      o[1].map((v: string) => BigInt(v)),
    );
  }
  return s;
}

// ---- arguments ----------------------------------------------------------------------------

function researcherKey(a: string): string {
  if (typeof a !== 'string' || !isAddress(a)) throw new TypeError(`researcher must be an Ethereum address, got ${String(a)}`);
  return a.toLowerCase();
}

function refArg(ref: string): string {
  const r = typeof ref === 'string' ? ref.toLowerCase() : '';
  if (!PATIENT_REF.test(r)) throw new TypeError(`patientRef must be 0x and 64 hex digits, got ${String(ref)}`);
  return r;
}

function sensorArg(s: number): number {
  if (!Number.isInteger(s) || s < 0 || s > 255) throw new TypeError(`sensor must be a code 0..255 (uint8), got ${s}`);
  return s;
}

function uint64Arg(name: string, v: number | bigint): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`${name} must be a non-negative integer, got ${v}`);
    return BigInt(v);
  }
  if (typeof v !== 'bigint' || v < 0n || v > UINT64_MAX) throw new TypeError(`${name} must be a uint64, got ${String(v)}`);
  return v;
}

/** The sensor codes of a grant, ascending (a convenience over sensorCodesOf). */
export function grantSensorCodes(g: Pick<ConsentGrant, 'sensorMask'>): number[] {
  return sensorCodesOf(g.sensorMask);
}
