/** The real gateway process for the end-to-end suites: the same harness the bench uses. */
export { GatewayProcess, GATEWAY_CLI as CLI, type LogLine } from '../../scripts/lib/gateway-process.js';
