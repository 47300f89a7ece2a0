/**
 * docs/errors.md, made from the catalogues of codes in the code (firmware-proto/coded-error.ts):
 * every catalogue with what each code means (its sentence, which messages carry too) and what to
 * do (its remedies, declared next to it). scripts/gen-errors-doc.ts writes the file;
 * test/gateway/errors/errors-doc.test.ts fails when it is stale, when a catalogue is not listed
 * here, or when two catalogues share a code.
 */
import type { Catalogue, Remedies } from '../../firmware-proto/coded-error.js';
import { GATT_VALUE_ERROR_REMEDIES, GATT_VALUE_ERRORS } from '../../firmware-proto/gatt.js';
import {
  BLE_REASON_REMEDIES,
  BLE_REASONS,
  CONNECT_REASON_REMEDIES,
  CONNECT_REASONS,
  FRAGMENT_REASON_REMEDIES,
  FRAGMENT_REASONS,
  FRAME_REASON_REMEDIES,
  FRAME_REASONS,
} from '../../firmware-proto/reasons.js';
import { BUS_DAEMON_ERROR_REMEDIES, BUS_DAEMON_ERRORS } from '../../device-sim/bluez/bus-daemon.js';
import { SIMULATED_BLUEZ_ERROR_REMEDIES, SIMULATED_BLUEZ_ERRORS } from '../../device-sim/bluez/service.js';
import { ANCHOR_ERROR_REMEDIES, ANCHOR_ERRORS } from '../../gateway/anchor/anchorer.js';
import { TX_LANE_ERROR_REMEDIES, TX_LANE_ERRORS } from '../../gateway/anchor/tx-lane.js';
import { CHAIN_ERROR_REMEDIES, CHAIN_ERRORS } from '../../gateway/chain/errors.js';
import { FOLLOWER_ERROR_REMEDIES, FOLLOWER_ERRORS } from '../../gateway/chain/log-follower.js';
import { CLI_ERROR_REMEDIES, CLI_ERRORS } from '../../gateway/cli/errors.js';
import { CONFIG_ERRORS, CONFIG_ERROR_REMEDIES } from '../../gateway/config.js';
import { DYNSEC_ERROR_REMEDIES, DYNSEC_ERRORS } from '../../gateway/fleet/dynsec.js';
import { UPLINK_FORMAT_ERROR_REMEDIES, UPLINK_FORMAT_ERRORS } from '../../gateway/uplink/envelope.js';
import { FEED_REFUSAL_REMEDIES, FEED_REFUSALS } from '../../gateway/hub/uplink-feed.js';
import { AUTH_ERROR_REMEDIES, AUTH_ERRORS } from '../../gateway/consent/auth.js';
import { CONSENT_DECISION_REMEDIES, CONSENT_DECISIONS } from '../../gateway/consent/decisions.js';
import { ACCESS_PROOF_ERRORS, ACCESS_PROOF_ERROR_REMEDIES } from '../../gateway/consent/disclosure.js';
import { HTTP_ERROR_REMEDIES, HTTP_ERRORS, HTTP_REFUSAL_REMEDIES, HTTP_REFUSALS, HTTP_STATUS } from '../../gateway/http/errors.js';
import { BUNDLE_FORMAT_ERRORS, BUNDLE_FORMAT_ERROR_REMEDIES } from '../../gateway/proof/bundle.js';
import { PROOF_ERROR_REMEDIES, PROOF_ERRORS } from '../../gateway/proof/service.js';
import { ADMISSION_REFUSAL_REMEDIES, ADMISSION_REFUSALS, SUBSCRIBE_REFUSAL_REMEDIES, SUBSCRIBE_REFUSALS } from '../../gateway/research/live.js';
import { CHAIN_REGISTRY_ERROR_REMEDIES, CHAIN_REGISTRY_ERRORS } from '../../gateway/registry/chain-registry.js';
import { ENROL_ERROR_REMEDIES, ENROL_ERRORS } from '../../gateway/registry/enrolment.js';
import { API_CLIENT_ERROR_REMEDIES, API_CLIENT_ERRORS, RESEARCH_CLIENT_ERROR_REMEDIES, RESEARCH_CLIENT_ERRORS } from '../../gateway/research-client/errors.js';
import { WAL_ERROR_REMEDIES, WAL_ERRORS } from '../../gateway/spool/wal.js';
import { STORAGE_ERROR_REMEDIES, STORAGE_ERRORS } from '../../gateway/storage/errors.js';
import { DEV_CA_ERROR_REMEDIES, DEV_CA_ERRORS } from '../../gateway/tls/dev-ca.js';
import { MQTT_REFUSAL_REMEDIES, MQTT_REFUSALS } from '../../gateway/transport/mqtt/refusals.js';
import { DEADLINE_HTTP_ERROR_REMEDIES, DEADLINE_HTTP_ERRORS } from '../../gateway/util/deadline-http.js';

/** One catalogue as docs/errors.md shows it. */
export interface ErrorSection {
  title: string;
  /** The exported name of the catalogue and the file that declares it. */
  name: string;
  file: string;
  /** Who meets these codes, and where. */
  intro: string;
  means: Catalogue;
  todo: Remedies;
  /** HTTP answers: the status of each code (gateway/http/errors.ts). */
  http?: boolean;
}

/** A section whose remedies cover exactly the catalogue's codes (checked by the compiler). */
function section<C extends string>(s: Omit<ErrorSection, 'means' | 'todo'> & { means: Catalogue<C>; todo: Remedies<C> }): ErrorSection {
  return s;
}

/** Every catalogue of the project, in the order docs/errors.md shows them. */
export const ERROR_SECTIONS: readonly ErrorSection[] = [
  section({
    title: 'Frame reasons',
    name: 'FRAME_REASONS',
    file: 'firmware-proto/reasons.ts',
    intro:
      'Why the gateway refuses a frame (PROTOCOL.md §3.2, §5.3, §7.1): the frame is acknowledged and not stored (§6.3), and counted in `/status` frames.rejectedBy and `vitalproof_frames_rejected_total{reason}`.',
    means: FRAME_REASONS,
    todo: FRAME_REASON_REMEDIES,
  }),
  section({
    title: 'Connect reasons',
    name: 'CONNECT_REASONS',
    file: 'firmware-proto/reasons.ts',
    intro:
      "Why the gateway refuses a device's MQTT CONNECT (PROTOCOL.md §6.1, §7.2) or a BLE device: CONNACK 4 or 5, `/status` mqtt.connectRefusedBy and ble.connectRefusedBy.",
    means: CONNECT_REASONS,
    todo: CONNECT_REASON_REMEDIES,
  }),
  section({
    title: 'Fragment reasons',
    name: 'FRAGMENT_REASONS',
    file: 'firmware-proto/reasons.ts',
    intro: 'Why the BLE reassembler drops a fragment or a partial frame (PROTOCOL.md §10.6): `/status` ble.fragmentRejectedBy.',
    means: FRAGMENT_REASONS,
    todo: FRAGMENT_REASON_REMEDIES,
  }),
  section({
    title: 'BLE connections',
    name: 'BLE_REASONS',
    file: 'firmware-proto/reasons.ts',
    intro:
      'Why the BLE central ends a connection or declines to open one (PROTOCOL.md §10.3, §10.7; docs/ble.md): `ble_disconnected` log lines, `/status` ble.endedBy.',
    means: BLE_REASONS,
    todo: BLE_REASON_REMEDIES,
  }),
  section({
    title: 'GATT values',
    name: 'GATT_VALUE_ERRORS',
    file: 'firmware-proto/gatt.ts',
    intro:
      'Why a control or info value is refused (PROTOCOL.md §10.3, §10.4): a device answers the ATT error, the gateway ends the connection (BLE_INFO_INVALID).',
    means: GATT_VALUE_ERRORS,
    todo: GATT_VALUE_ERROR_REMEDIES,
  }),
  section({
    title: 'MQTT refusals',
    name: 'MQTT_REFUSALS',
    file: 'gateway/transport/mqtt/refusals.ts',
    intro:
      'Why the MQTT listener closes a connection before any MQTT answer (docs/operations.md, "Pre-authentication limits"): `mqtt_refused` log lines, `/status` mqtt.refusedBy.',
    means: MQTT_REFUSALS,
    todo: MQTT_REFUSAL_REMEDIES,
  }),
  section({
    title: 'HTTP refusals',
    name: 'HTTP_REFUSALS',
    file: 'gateway/http/errors.ts',
    intro:
      'Why the HTTP listener refuses a connection or a request before its route (docs/operations.md, "HTTP limits"): `http_refused` log lines, `/status` http.refusedBy. A dash: the connection is closed without an answer.',
    means: HTTP_REFUSALS,
    todo: HTTP_REFUSAL_REMEDIES,
    http: true,
  }),
  section({
    title: 'HTTP API',
    name: 'HTTP_ERRORS',
    file: 'gateway/http/errors.ts',
    intro: 'The routes\' own codes (docs/research-api.md): `{ "error": CODE, "message" }` with the status shown.',
    means: HTTP_ERRORS,
    todo: HTTP_ERROR_REMEDIES,
    http: true,
  }),
  section({
    title: 'Logins and sessions',
    name: 'AUTH_ERRORS',
    file: 'gateway/consent/auth.ts',
    intro:
      'Why a researcher\'s or patient\'s login or session is refused (docs/consent.md, "Logins"): HTTP answers with the status shown, refused MQTT CONNECTs (AUTH_BUSY: CONNACK 3).',
    means: AUTH_ERRORS,
    todo: AUTH_ERROR_REMEDIES,
    http: true,
  }),
  section({
    title: 'Consent',
    name: 'CONSENT_DECISIONS',
    file: 'gateway/consent/decisions.ts',
    intro:
      'Why consent does not let a reading go to a researcher (docs/consent.md, "Decisions"): HTTP answers with the status shown, refused and cut live subscriptions.',
    means: CONSENT_DECISIONS,
    todo: CONSENT_DECISION_REMEDIES,
    http: true,
  }),
  section({
    title: 'Researcher MQTT connections',
    name: 'ADMISSION_REFUSALS',
    file: 'gateway/research/live.ts',
    intro:
      'Why a researcher\'s MQTT CONNECT is refused besides its login (docs/research-api.md, "MQTT"): the CONNACK return code shown, `/status` consent.loginRefusedBy.',
    means: ADMISSION_REFUSALS,
    todo: ADMISSION_REFUSAL_REMEDIES,
  }),
  section({
    title: 'Researcher subscriptions',
    name: 'SUBSCRIBE_REFUSALS',
    file: 'gateway/research/live.ts',
    intro:
      "Why a researcher's subscription is refused besides consent (docs/consent.md): a notice on the researcher's notices topic, `/status` consent.subscribeRefusedBy.",
    means: SUBSCRIBE_REFUSALS,
    todo: SUBSCRIBE_REFUSAL_REMEDIES,
  }),
  section({
    title: 'Proof API',
    name: 'PROOF_ERRORS',
    file: 'gateway/proof/service.ts',
    intro:
      'Why the gateway has no proof bundle for a frame (docs/proof-format.md, "The proof API"): HTTP answers with the status shown, `skipped` entries of a range export.',
    means: PROOF_ERRORS,
    todo: PROOF_ERROR_REMEDIES,
    http: true,
  }),
  section({
    title: 'Access proofs',
    name: 'ACCESS_PROOF_ERRORS',
    file: 'gateway/consent/disclosure.ts',
    intro: 'Why a disclosure report has no access proof for an entry (docs/consent.md, "Disclosure reports"): the `reason` of a pending or error item.',
    means: ACCESS_PROOF_ERRORS,
    todo: ACCESS_PROOF_ERROR_REMEDIES,
  }),
  section({
    title: 'Proof bundle format',
    name: 'BUNDLE_FORMAT_ERRORS',
    file: 'gateway/proof/bundle.ts',
    intro: 'Why a JSON value is not a version-1 proof bundle (docs/proof-format.md): `vitalproof verify` and verifiers, with the JSON path of the field.',
    means: BUNDLE_FORMAT_ERRORS,
    todo: BUNDLE_FORMAT_ERROR_REMEDIES,
  }),
  section({
    title: 'Configuration',
    name: 'CONFIG_ERRORS',
    file: 'gateway/config.ts',
    intro:
      'Why the gateway or a command cannot run with its configuration or arguments (docs/operations.md): `error: <message>` and exit code 2; the message names the key and the value.',
    means: CONFIG_ERRORS,
    todo: CONFIG_ERROR_REMEDIES,
  }),
  section({
    title: 'Chain',
    name: 'CHAIN_ERRORS',
    file: 'gateway/chain/errors.ts',
    intro:
      'Failures of the embedded anvil, the deployment and the JSON-RPC endpoint (docs/contracts.md): the log, `/status` chain.lastError, alarms CHAIN_DOWN and CHAIN_HUNG.',
    means: CHAIN_ERRORS,
    todo: CHAIN_ERROR_REMEDIES,
  }),
  section({
    title: 'Device registry on chain',
    name: 'CHAIN_REGISTRY_ERRORS',
    file: 'gateway/registry/chain-registry.ts',
    intro: 'Failures of enrolling and revoking devices on DeviceRegistry (docs/contracts.md): `vitalproof enrol`, `vitalproof revoke`.',
    means: CHAIN_REGISTRY_ERRORS,
    todo: CHAIN_REGISTRY_ERROR_REMEDIES,
  }),
  section({
    title: 'Enrolment files',
    name: 'ENROL_ERRORS',
    file: 'gateway/registry/enrolment.ts',
    intro: 'Why `vitalproof enrol` refuses an enrolment file, or one device of it (docs/enrolment.md).',
    means: ENROL_ERRORS,
    todo: ENROL_ERROR_REMEDIES,
  }),
  section({
    title: 'Storage',
    name: 'STORAGE_ERRORS',
    file: 'gateway/storage/errors.ts',
    intro: 'Failures of InfluxDB and the storage quarantine (docs/storage.md): the log, `/status` storage.lastError, alarm STORAGE_DOWN.',
    means: STORAGE_ERRORS,
    todo: STORAGE_ERROR_REMEDIES,
  }),
  section({
    title: 'Spool',
    name: 'WAL_ERRORS',
    file: 'gateway/spool/wal.ts',
    intro: 'Failures of the write-ahead log every frame passes through (docs/operations.md): `/status` spool.lastError, alarm DISK_FULL.',
    means: WAL_ERRORS,
    todo: WAL_ERROR_REMEDIES,
  }),
  section({
    title: 'Anchoring',
    name: 'ANCHOR_ERRORS',
    file: 'gateway/anchor/anchorer.ts',
    intro: 'Why anchoring stops or a batch is retried (docs/anchoring.md): `anchor_halted` log lines, `/status` chain.halted, alarm ANCHOR_HALTED.',
    means: ANCHOR_ERRORS,
    todo: ANCHOR_ERROR_REMEDIES,
  }),
  section({
    title: 'Transaction lane',
    name: 'TX_LANE_ERRORS',
    file: 'gateway/anchor/tx-lane.ts',
    intro: "The anchorers' shared transaction lane (docs/anchoring.md): seen at shutdown only.",
    means: TX_LANE_ERRORS,
    todo: TX_LANE_ERROR_REMEDIES,
  }),
  section({
    title: 'Chain log follower',
    name: 'FOLLOWER_ERRORS',
    file: 'gateway/chain/log-follower.ts',
    intro: 'The follower of contract logs (ConsentRegistry, DeviceRegistry): seen at shutdown only.',
    means: FOLLOWER_ERRORS,
    todo: FOLLOWER_ERROR_REMEDIES,
  }),
  section({
    title: 'Broker provisioning',
    name: 'DYNSEC_ERRORS',
    file: 'gateway/fleet/dynsec.ts',
    intro:
      'Mosquitto\'s dynamic-security API, as `vitalproof broker …` uses it to create the uplink\'s accounts, roles and ACLs (docs/uplink.md, "Provisioning"): the command prints `refused: CODE …` and exits 1.',
    means: DYNSEC_ERRORS,
    todo: DYNSEC_ERROR_REMEDIES,
  }),
  section({
    title: 'Uplink messages',
    name: 'UPLINK_FORMAT_ERRORS',
    file: 'gateway/uplink/envelope.ts',
    intro:
      'Why a receiver of the uplink (the hub) refuses a message published under vitalproof/uplink/ (docs/uplink.md, "Envelope"): decodeUplinkFrame, decodeUplinkAnchor, decodeUplinkStatus throw UplinkFormatError with one of these codes.',
    means: UPLINK_FORMAT_ERRORS,
    todo: UPLINK_FORMAT_ERROR_REMEDIES,
  }),
  section({
    title: 'Uplink messages the hub drops',
    name: 'FEED_REFUSALS',
    file: 'gateway/hub/uplink-feed.ts',
    intro:
      "Why a hub drops a well-formed uplink frame before live delivery (docs/fleet.md): the hub checks every frame against the device registry, since a gateway is semi-trusted. Counted in the hub's `/status` uplink.refusedBy and logged (`hub_uplink_refused`, rate-limited) with the UPLINK_* codes above.",
    means: FEED_REFUSALS,
    todo: FEED_REFUSAL_REMEDIES,
  }),
  section({
    title: 'Outbound HTTP requests',
    name: 'DEADLINE_HTTP_ERRORS',
    file: 'gateway/util/deadline-http.ts',
    intro: "One request with a deadline (the chain's JSON-RPC, InfluxDB's /ping): callers report these under their own codes.",
    means: DEADLINE_HTTP_ERRORS,
    todo: DEADLINE_HTTP_ERROR_REMEDIES,
  }),
  section({
    title: 'Command line',
    name: 'CLI_ERRORS',
    file: 'gateway/cli/errors.ts',
    intro: 'A command line that is not valid: `error: <message>`, the usage, exit code 2.',
    means: CLI_ERRORS,
    todo: CLI_ERROR_REMEDIES,
  }),
  section({
    title: 'Researcher client',
    name: 'API_CLIENT_ERRORS',
    file: 'gateway/research-client/errors.ts',
    intro: "Answers the researcher client refuses to take (`vitalproof research …`); the gateway's own refusals carry the HTTP codes above.",
    means: API_CLIENT_ERRORS,
    todo: API_CLIENT_ERROR_REMEDIES,
  }),
  section({
    title: 'Researcher sessions',
    name: 'RESEARCH_CLIENT_ERRORS',
    file: 'gateway/research-client/errors.ts',
    intro: "The researcher client's saved sessions (`vitalproof research …`).",
    means: RESEARCH_CLIENT_ERRORS,
    todo: RESEARCH_CLIENT_ERROR_REMEDIES,
  }),
  section({
    title: 'Development CA',
    name: 'DEV_CA_ERRORS',
    file: 'gateway/tls/dev-ca.ts',
    intro: 'The DEV ONLY certificate authority of the demo and the tests.',
    means: DEV_CA_ERRORS,
    todo: DEV_CA_ERROR_REMEDIES,
  }),
  section({
    title: 'Simulated BlueZ',
    name: 'SIMULATED_BLUEZ_ERRORS',
    file: 'device-sim/bluez/service.ts',
    intro: "The device simulator's BlueZ (device-sim/README.md).",
    means: SIMULATED_BLUEZ_ERRORS,
    todo: SIMULATED_BLUEZ_ERROR_REMEDIES,
  }),
  section({
    title: 'Simulator bus',
    name: 'BUS_DAEMON_ERRORS',
    file: 'device-sim/bluez/bus-daemon.ts',
    intro: 'The private D-Bus of the simulated BlueZ (device-sim/README.md).',
    means: BUS_DAEMON_ERRORS,
    todo: BUS_DAEMON_ERROR_REMEDIES,
  }),
];

/**
 * Codes two catalogues hold on purpose, with why. NOT_YET_ANCHORED names the same state (a
 * sealed batch whose anchor is not confirmed) in both anchored streams, frames and access log;
 * renaming either would change the proof API or the disclosure report.
 */
export const SHARED_CODES: Readonly<Record<string, readonly string[]>> = {
  NOT_YET_ANCHORED: ['PROOF_ERRORS', 'ACCESS_PROOF_ERRORS'],
};

/** Codes held by more than one catalogue, beyond SHARED_CODES: each with the catalogues. */
export function sharedCodes(sections: readonly ErrorSection[] = ERROR_SECTIONS): Map<string, string[]> {
  const by = new Map<string, string[]>();
  for (const s of sections) for (const code of Object.keys(s.means)) by.set(code, [...(by.get(code) ?? []), s.name]);
  return new Map([...by].filter(([code, names]) => names.length > 1 && (SHARED_CODES[code] ?? []).join() !== names.join()));
}

const cell = (t: string): string => t.replace(/\|/g, '\\|');
const anchor = (title: string): string =>
  title
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replace(/ /g, '-');

/** docs/errors.md. */
export function renderErrorsDoc(sections: readonly ErrorSection[] = ERROR_SECTIONS): string {
  const status = HTTP_STATUS as Readonly<Record<string, number>>;
  const out: string[] = [
    '# Error codes',
    '',
    '<!-- Generated by `npm run docs:errors` (scripts/gen-errors-doc.ts) from the catalogues in the code: do not edit. -->',
    '',
    'Every code the gateway, its tools and the device simulator report, by catalogue, with what it',
    'means and what to do. A code names one failure across the whole project: no two catalogues',
    `share one (except ${Object.keys(SHARED_CODES)
      .map((c) => `\`${c}\``)
      .join(', ')}, the same state of both anchored streams).`,
    'Messages read `CODE: what it means {detail}`; callers branch on the code (firmware-proto/coded-error.ts).',
    '',
    'Outcomes that are not failures are documented where they are produced: verifier verdicts in',
    'docs/proof-format.md, audit findings in docs/audit.md, alarms in docs/operations.md.',
    '',
    ...sections.map((s) => `- [${s.title}](#${anchor(s.title)}) (${Object.keys(s.means).length})`),
  ];
  for (const s of sections) {
    out.push('', `## ${s.title}`, '', s.intro, `Declared as \`${s.name}\` in ${s.file}.`, '');
    out.push(
      s.http ? '| code | HTTP | what it means | what to do |' : '| code | what it means | what to do |',
      s.http ? '| --- | --- | --- | --- |' : '| --- | --- | --- |',
    );
    for (const [code, means] of Object.entries(s.means)) {
      const http = s.http ? ` ${status[code] ?? '—'} |` : '';
      out.push(`| \`${code}\` |${http} ${cell(means)} | ${cell(s.todo[code] ?? '')} |`);
    }
  }
  return `${out.join('\n')}\n`;
}
