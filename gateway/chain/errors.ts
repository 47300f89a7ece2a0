/**
 * The closed set of chain-runtime failures (embedded anvil, deployment). Callers branch on
 * `code`, never on the message; docs/contracts.md has the table with how to solve each one.
 * Reverts of the contracts themselves are not here: they are the contracts' custom errors,
 * decoded by `decodeRevert` (gateway/chain/contracts.ts).
 */
import { CodedError, isError, type ErrorDetail, type Remedies } from '../../firmware-proto/coded-error.js';

export const CHAIN_ERRORS = {
  ANVIL_NOT_FOUND: 'the anvil binary was not found: install the npm package @foundry-rs/anvil (its platform package holds the binary), or pass `binary`',
  ANVIL_PORT_IN_USE: 'anvil could not bind its port: another process holds it',
  ANVIL_START_FAILED: 'anvil exited before it answered eth_chainId',
  ANVIL_START_TIMEOUT: 'anvil did not answer eth_chainId before the deadline',
  ANVIL_STATE_CORRUPT: 'the persisted anvil state file is not a readable state dump; anvil would refuse it, and starting empty would lose every anchor',
  ANVIL_CHAIN_ID_MISMATCH: 'the chain id asked for differs from the one this data dir was created with',
  DEPLOYMENT_RECORD_INVALID: 'the deployment record file is not a valid VitalProof deployment record',
  DEPLOYMENT_CHAIN_MISMATCH: 'the deployment record is for another chain id than the RPC endpoint serves',
  DEPLOYMENT_MISSING: 'there is no contract code at a recorded address: the chain was reset or is another chain, and every earlier anchor is gone from it',
  DEPLOYMENT_CODE_MISMATCH: 'the code at a recorded address is not the contract this build expects',
  DEPLOYMENT_CHAIN_REPLACED:
    'the block that deployed the contracts is not on this chain any more: the chain was reset and the contracts redeployed at the same addresses',
  DEPLOYMENT_INCOMPLETE: 'the deployment record lacks a contract this build needs (ConsentRegistry, in a record written before it existed)',
  CHAIN_TIMEOUT:
    "the chain's JSON-RPC endpoint did not answer within the deadline (chain.rpcTimeoutMs, or health.probeTimeoutMs for the health probe): a hung, stopped or overloaded node",
  CHAIN_UNREACHABLE: "no connection to the chain's JSON-RPC endpoint (refused, reset or unresolvable)",
  CHAIN_RPC_ERROR: "the chain's JSON-RPC endpoint answered with an HTTP error, a JSON-RPC error or something that is not JSON-RPC",
} as const;

export type ChainErrorCode = keyof typeof CHAIN_ERRORS;

/** What to do about each code: docs/contracts.md. */
export const CHAIN_ERROR_REMEDIES: Remedies<ChainErrorCode> = {
  ANVIL_NOT_FOUND: '`npm ci` (installs `@foundry-rs/anvil` and its platform package), or pass `binary`.',
  ANVIL_PORT_IN_USE: 'Choose another port, or stop the other process (free ports are re-picked).',
  ANVIL_START_FAILED: "Read `detail.output` (anvil's last lines).",
  ANVIL_START_TIMEOUT: "Check the machine's load; read `detail.output`.",
  ANVIL_STATE_CORRUPT: 'Restore the data dir from a backup; only if the chain may be lost, move the file away (then DEPLOYMENT_MISSING follows).',
  ANVIL_CHAIN_ID_MISMATCH: 'Use that chain id, or another data dir.',
  DEPLOYMENT_RECORD_INVALID: 'Restore it, or move it away to deploy afresh.',
  DEPLOYMENT_CHAIN_MISMATCH: 'Point the gateway at the right endpoint.',
  DEPLOYMENT_MISSING: 'Restore the chain state; or, accepting that earlier anchors are gone from this chain, move `deployment.json` away to deploy afresh.',
  DEPLOYMENT_CODE_MISMATCH: 'Run the gateway version that deployed it, or deploy this build afresh.',
  DEPLOYMENT_CHAIN_REPLACED: 'As DEPLOYMENT_MISSING; anvil gives the same addresses to the same deployer and nonces, so only the block hash tells.',
  DEPLOYMENT_INCOMPLETE: 'Embedded: the next start adds it; external: `vitalproof chain deploy --rpc URL --key-file <admin key> --complete <record>`.',
  CHAIN_TIMEOUT: 'Check the node\'s process and load; the gateway retries by itself and raises CHAIN_HUNG meanwhile (docs/anchoring.md, "A hung chain").',
  CHAIN_UNREACHABLE: 'Check the node and the network path to `chain.rpcUrl`; CHAIN_DOWN is raised meanwhile.',
  CHAIN_RPC_ERROR: 'Check that `chain.rpcUrl` points at a JSON-RPC endpoint, and its access rules.',
};

/** A coded chain failure; `detail` carries what was expected and what was found. */
export class ChainError extends CodedError<ChainErrorCode> {
  constructor(code: ChainErrorCode, detail: ErrorDetail = {}, options?: ErrorOptions) {
    super(CHAIN_ERRORS, code, detail, options);
  }
}

/** isError(e, ChainError, code), kept for its many callers. */
export function isChainError(e: unknown, code?: ChainErrorCode): e is ChainError {
  return isError(e, ChainError, code);
}
