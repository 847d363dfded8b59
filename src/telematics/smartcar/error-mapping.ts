import type { CommandOutcome } from '../adapter.js';
import { describeFailure, SMARTCAR_PROVIDER, type SmartcarFailure } from './smartcar-client.js';

/**
 * Smartcar failures → CommandOutcome (the command service turns those into problems). The table
 * in docs/smartcar.md lists every case with the resulting problem type; keep both in step.
 */

/** VEHICLE_STATE codes meaning "the car cannot be talked to now" (504), not "it said no" (409). */
export const NO_CONNECTION_CODES: ReadonlySet<string> = new Set([
  'ASLEEP',
  'UNREACHABLE',
  'VEHICLE_OFFLINE_FOR_SERVICE',
]);

/**
 * @param delivered for timeouts: whether the request that timed out could have changed the
 *   vehicle (a lock/unlock that Smartcar may have forwarded) — decides 504 NOT_DELIVERED vs
 *   DELIVERED_OUTCOME_UNKNOWN.
 */
export function outcomeFromFailure(f: SmartcarFailure, delivered = false): CommandOutcome {
  const thirdParty = (reason: string, extra: { retry_after_s?: number } = {}): CommandOutcome => ({
    kind: 'third-party-error',
    provider: SMARTCAR_PROVIDER,
    reason,
    ...('requestId' in f && f.requestId ? { request_id: f.requestId } : {}),
    ...extra,
  });
  const rid = 'requestId' in f && f.requestId ? ` (Smartcar request id ${f.requestId})` : '';
  switch (f.kind) {
    case 'timeout':
      return { kind: 'no-answer', delivered };
    case 'unreachable':
      return { kind: 'not-connected', reason: `The Smartcar API cannot be reached (${f.detail}).` };
    case 'malformed':
    case 'oauth':
      return thirdParty(describeFailure(f));
    case 'api':
      break;
  }
  switch (f.type) {
    case 'VEHICLE_STATE':
      if (f.code && NO_CONNECTION_CODES.has(f.code)) {
        return { kind: 'not-connected', reason: `Smartcar reports ${f.code}: ${f.description}${rid}` };
      }
      // UNKNOWN: the vehicle could not do it and Smartcar cannot say why — a unit failure.
      if (f.code === 'UNKNOWN') return { kind: 'failed', reason: `Smartcar reports UNKNOWN: ${f.description}${rid}` };
      return { kind: 'refused', reason: `Smartcar reports ${f.code ?? 'VEHICLE_STATE'}: ${f.description}${rid}` };
    case 'PERMISSION':
      return {
        kind: 'not-supported',
        reason: `the vehicle owner did not grant the Smartcar permission this needs (${f.description}); reconnect the vehicle in Smartcar Connect with that permission${rid}`,
      };
    case 'COMPATIBILITY':
      return {
        kind: 'not-supported',
        reason: `Smartcar reports ${f.code ?? 'COMPATIBILITY'}: ${f.description}${rid}`,
      };
    case 'RATE_LIMIT':
      return thirdParty(
        `rate limited (${f.code ?? 'RATE_LIMIT'})${f.retryAfterS !== undefined ? `; retry after ${f.retryAfterS} s` : ''}`,
        f.retryAfterS !== undefined ? { retry_after_s: f.retryAfterS } : {},
      );
    case 'CONNECTED_SERVICES_ACCOUNT':
      return thirdParty(
        `${describeFailure(f)} — the vehicle owner must resolve this in the manufacturer's connected-services account`,
      );
    default:
      // SERVER, UPSTREAM, AUTHENTICATION (after one token refresh), VALIDATION, RESOURCE_NOT_FOUND,
      // BILLING and any type Smartcar adds later: the provider failed us.
      return thirdParty(describeFailure(f));
  }
}
