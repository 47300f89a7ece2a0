/**
 * What the research commands share (gateway/cli/research.ts and research-*.ts): the usage,
 * the context one command runs in, the TLS errors that mean "give the CA".
 */
import type { BaseWallet } from 'ethers';
import { defaultSessionFile, type SessionStore } from '../research-client/index.js';
import type { CliIo } from './output.js';

export const RESEARCH_USAGE = `usage: vitalproof research <login|logout|grants|subscribe|export|verify> [options]
  login --key-file F                 log in to the gateway's API with the researcher's key; keeps the
                                     session token (1 h) in the session file for the other commands
  logout [--all]                     end the saved session at the gateway and forget it; --all: every
                                     session of the account (a leaked token), logging in with --key-file
                                     first when none is saved
  grants                             the researcher's grants, newest first, with their status
  subscribe --key-file F --pseudonym P --metric M[,M…]
                                     live readings of patient P (one JSON line each on stdout; notices
                                     on stderr) until every subscription ends (revocation, expiry)
      --mqtt URL                     the broker, mqtt:// or mqtts:// (MQTT over TLS, trusted like an
                                     https --url: --ca, NODE_EXTRA_CA_CERTS). Default: the gateway
                                     running on --dataDir (its TLS listener when its API is https);
                                     for an https --url mqtts://URL.HOST:MQTT.TLS.PORT (8883); else
                                     mqtt://MQTT.HOST:MQTT.PORT of the configuration. The API does not
                                     say where the broker is: give --mqtt when it listens elsewhere
      --count N                      stop after N deliveries
      --format ndjson|text           one JSON object per delivery (default), or a readable line
      --gateway-id ID                the gateway's id for self-issued MQTT logins (default: from
                                     the saved session, else asked of the gateway over HTTP)
  export GRANT_ID --out FILE         every reading grant GRANT_ID allows, page by page, with a progress line
      --format json|csv              FILE's format (default json)
      --from T --to T                data time range (default: the grant's data window)
      --metric M[,M…]                only these metrics (default: every granted one)
      --proofs                       also the proof bundles of the exported frames, into FILE.proofs.json
      --limit N                      frames per page (default 1000, at most 10000)
      --progress-interval MS         when stderr is not a terminal, a progress line this often (default 5000)
  verify FILE [--rpc URL | --offline] [--deployment F] [--json]
                                     FILE: an export (its FILE.proofs.json is checked, and the exported
                                     readings against the signed frames) or a bundle file:
                                     vitalproof verify on the bundles
common options:
  --url U            the gateway's HTTP API (default: the gateway running on --dataDir, else
                     http://HTTP.HOST:HTTP.PORT of the configuration, http://127.0.0.1:8080;
                     https:// when the configuration has http.tls.cert)
  --ca FILE          trust FILE's CA certificates for an https --url and an mqtts --mqtt (besides
                     the system's and NODE_EXTRA_CA_CERTS)
  --key-file F       the researcher's private key (64 hex digits); with it, an ended session is renewed
  --session-file F   where sessions are kept (default ${defaultSessionFile()}, mode 0600)
times T: Unix ms, ISO 8601, now, now±N(ms|s|m|h|d|w)
exit code: 0 done, 1 refused or failed, 2 usage error`;

/** The parsed command line of one research command, and what it runs against. */
export interface ResearchContext {
  flags: Record<string, string>;
  /** The gateway's API, normalised. */
  base: string;
  key: BaseWallet | undefined;
  store: SessionStore;
  io: CliIo;
}

/** Certificate errors of Node's TLS: the gateway's certificate is not trusted (or not for this name). */
export const CERT_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
]);
