/**
 * Why consent does not let a reading go to a researcher: ConsentRegistry's checkGrant verdicts
 * (GRANT_STATUS, docs/contracts.md) other than OK, and NO_GRANT when the patient never granted
 * the researcher anything (ConsentView.decide, docs/consent.md "Decisions"). The HTTP API answers
 * them (403, 404: gateway/http/errors.ts), live subscriptions are refused and cut with them.
 */
import type { Catalogue, Remedies } from '../../firmware-proto/coded-error.js';
import type { GrantStatusName } from '../chain/contracts.js';

export const CONSENT_DECISIONS = {
  UNKNOWN_GRANT: 'ConsentRegistry has no grant with this id (or this gateway has not seen it yet)',
  NOT_GRANTEE: 'the grant was made to another researcher',
  REVOKED: 'the patient revoked the grant',
  EXPIRED: "the grant's expiry has passed",
  SENSOR_NOT_GRANTED: 'the grant does not cover this sensor (metric)',
  OUTSIDE_DATA_WINDOW: "the reading was recorded outside the grant's data window, or the range asked for misses it",
  NO_GRANT: 'the patient never granted this researcher anything',
} as const satisfies Catalogue<Exclude<GrantStatusName, 'OK'> | 'NO_GRANT'>;

export type ConsentDecisionCode = keyof typeof CONSENT_DECISIONS;

export const CONSENT_DECISION_REMEDIES: Remedies<ConsentDecisionCode> = {
  UNKNOWN_GRANT: 'Check the grant id (`vitalproof research grants`); a grant made moments ago appears once the gateway has followed its block',
  NOT_GRANTEE: 'Log in with the account the grant names',
  REVOKED: 'The patient withdrew consent: ask the patient for a new grant',
  EXPIRED: 'Ask the patient for a new grant',
  SENSOR_NOT_GRANTED: 'Ask only for the metrics the grant lists, or ask the patient for a grant that covers this one',
  OUTSIDE_DATA_WINDOW: "Ask for a time range inside the grant's data window",
  NO_GRANT: 'Ask the patient for a grant',
};
