/**
 * The researcher client of a VitalProof gateway (docs/research-api.md): the HTTP API with its
 * sessions, live deliveries over MQTT, and the historical export with its check against the
 * proofs. `vitalproof research` (gateway/cli/research.ts) is one user; a notebook, a hospital's
 * pipeline or a web console can be others.
 */
export { ApiError, apiRequest, normaliseUrl, type ApiFrame, type ApiGrant, type ReadingsPage } from './api.js';
export {
  API_CLIENT_ERRORS,
  NoSessionError,
  RESEARCH_CLIENT_ERRORS,
  type ApiClientCode,
  type ApiErrorCode,
  type ResearchClientErrorCode,
  type SessionLookup,
} from './errors.js';
export { fetchChallenge, httpLogin, logout, sessionFor, withSession } from './login.js';
export { defaultSessionFile, SessionStore, SESSIONS_FORMAT, type SavedSession } from './session-store.js';
export {
  consentedTopic,
  LiveSubscription,
  mqttPassword,
  noticeTopic,
  topicMatches,
  type Delivery,
  type LiveEvents,
  type LiveOptions,
  type Notice,
} from './live.js';
export { CSV_HEADER, csvRows, EXPORT_FORMAT, ReadingsExport, type ExportState, type ReadingsExportOptions } from './export.js';
export { checkExportAgainstBundles, readExportFile, type ExportCheck } from './export-check.js';
