import { type CommandName, commandToPath } from '../domain/commands.js';
import type { ProblemKey } from '../domain/problems.js';
import type { Delivery } from '../store/store.js';
import type { CommandOutcome } from '../telematics/adapter.js';

/** A command that did not succeed: its problem, how far it got, and the problem's extension members. */
export interface CommandFailure {
  key: ProblemKey;
  detail: string;
  delivery: Delivery;
  extensions: Record<string, unknown>;
}

/** What the mapping needs to word a problem: the vehicle, the step that failed, the time budget. */
export interface FailureContext {
  vehicleId: string;
  step: CommandName;
  timeoutMs: number;
  /** The instance was stopped (a second SIGTERM) and ended the command before its budget. */
  stopped?: boolean;
}

/**
 * Maps what an adapter reported for one step to the problem the client gets (SPEC §1, §2). Pure:
 * no I/O, no HTTP — the API layer adds headers such as `Retry-After` from the problem's key and
 * extensions. The same outcome always reads the same for every adapter.
 */
export function outcomeToFailure(
  outcome: Exclude<CommandOutcome, { kind: 'succeeded' }>,
  { vehicleId: id, step, timeoutMs, stopped }: FailureContext,
): CommandFailure {
  const path = commandToPath(step);
  switch (outcome.kind) {
    case 'unavailable':
      return {
        key: 'service-unavailable',
        delivery: 'NOT_DELIVERED',
        detail: `The command to vehicle '${id}' was not sent: ${outcome.reason} Retry later.`,
        extensions: { delivery: 'NOT_DELIVERED' },
      };
    case 'not-connected':
      return {
        key: 'vehicle/no-connection',
        delivery: 'NOT_DELIVERED',
        detail: `The vehicle '${id}' did not establish a connection.${outcome.reason ? ` ${outcome.reason}` : ''} The command was not delivered.`,
        extensions: { delivery: 'NOT_DELIVERED' },
      };
    case 'no-answer':
      if (stopped) return stoppedFailure(id, outcome.delivered);
      return outcome.delivered
        ? {
            key: 'vehicle/no-connection',
            delivery: 'DELIVERED_OUTCOME_UNKNOWN',
            detail: `The vehicle '${id}' received the command but did not report its outcome within ${timeoutMs / 1000} s. Request the vehicle state before retrying.`,
            extensions: { delivery: 'DELIVERED_OUTCOME_UNKNOWN' },
          }
        : {
            key: 'vehicle/no-connection',
            delivery: 'NOT_DELIVERED',
            detail: `The vehicle '${id}' did not answer within ${timeoutMs / 1000} s; the command was not delivered and will not be delivered later.`,
            extensions: { delivery: 'NOT_DELIVERED' },
          };
    case 'refused':
      return {
        key: 'vehicle/conflicting-state',
        delivery: 'DELIVERED',
        detail: `The vehicle '${id}' refused '${path}': ${outcome.reason}`,
        extensions: {},
      };
    case 'failed':
      return {
        key: 'telematics-unit/error',
        delivery: 'DELIVERED',
        detail: `The telematics unit of vehicle '${id}' failed to execute '${path}': ${outcome.reason}`,
        extensions: {},
      };
    case 'not-supported':
      return {
        key: 'vehicle/command-not-supported',
        delivery: 'DELIVERED',
        detail: `The command '${path}' is not supported by the vehicle '${id}': ${outcome.reason}`,
        extensions: {},
      };
    case 'third-party-error':
      return {
        key: 'third-party/error',
        delivery: 'NOT_DELIVERED',
        detail: `An error occurred at the ${outcome.provider} API: ${outcome.reason}${outcome.request_id ? ` (request id ${outcome.request_id})` : ''}`,
        extensions: {
          provider: outcome.provider,
          ...(outcome.request_id ? { provider_request_id: outcome.request_id } : {}),
          ...(outcome.retry_after_s !== undefined ? { retry_after_seconds: outcome.retry_after_s } : {}),
        },
      };
  }
}

/** The record status of a finished command: a failure whose outcome is unknown is not FAILED. */
export function commandStatus(failure: CommandFailure | undefined): 'SUCCEEDED' | 'FAILED' | 'OUTCOME_UNKNOWN' {
  if (failure === undefined) return 'SUCCEEDED';
  return failure.delivery === 'DELIVERED_OUTCOME_UNKNOWN' ? 'OUTCOME_UNKNOWN' : 'FAILED';
}

/**
 * A command ended by a forced stop (a second SIGTERM): it says so, and how far it got, rather
 * than blaming the vehicle for a budget it never used up (docs/deploy.md).
 */
function stoppedFailure(id: string, delivered: boolean): CommandFailure {
  const delivery: Delivery = delivered ? 'DELIVERED_OUTCOME_UNKNOWN' : 'NOT_DELIVERED';
  return {
    key: 'vehicle/no-connection',
    delivery,
    detail: delivered
      ? `The fleetgate instance executing the command was stopped before the vehicle '${id}' reported its outcome. Request the vehicle state before retrying.`
      : `The fleetgate instance executing the command was stopped before the command reached the vehicle '${id}'; it will not be delivered later.`,
    extensions: { delivery },
  };
}
