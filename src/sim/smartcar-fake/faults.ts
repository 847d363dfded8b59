/**
 * The failure switches (FakeSmartcar.set, setAuth) and the answers they turn into: every failure
 * of Smartcar's contract that fleetgate must map, on demand.
 */
import { errorAnswer, HttpAnswer } from './answers.js';
import type { FakeCounters } from './counters.js';

/** Failure switches; set per vehicle or globally (all vehicles, and batch/attribute calls). */
export interface FakeSwitches {
  /** 500 SERVER:INTERNAL. */
  fail5xx?: boolean;
  /** 502 UPSTREAM:UNKNOWN_ISSUE (the OEM's backend failed). */
  upstreamError?: boolean;
  /** 200 with a body that is not what the contract documents. */
  malformed?: boolean;
  /** Answers only after `slowMs` (default 10 minutes): beyond any command budget. */
  slow?: boolean;
  /** 409 VEHICLE_STATE:ASLEEP on vehicle data and actions. */
  asleep?: boolean;
  /** 409 VEHICLE_STATE:UNREACHABLE on vehicle data and actions. */
  unreachable?: boolean;
  /** 409 VEHICLE_STATE:DOOR_OPEN when locking. */
  doorOpen?: boolean;
  /** 409 VEHICLE_STATE:UNKNOWN on actions: the vehicle tried and could not do it. */
  vehicleFailure?: boolean;
  /** Permissions withdrawn from the grant: endpoints needing them answer 403 PERMISSION. */
  permissionMissing?: string[];
  /** Endpoints (`security`, `location`, `odometer`, `battery`, `fuel`) answering 501 COMPATIBILITY. */
  incompatible?: string[];
  /** 429 RATE_LIMIT:VEHICLE with `Retry-After: retryAfterS`, for the next `times` requests (default: all). */
  rateLimit?: { retryAfterS: number; times?: number };
}

export type AuthSwitches = Pick<FakeSwitches, 'fail5xx' | 'malformed' | 'slow'>;

/** Failures of the token endpoint, before it looks at the request. */
export function tokenEndpointFailure(s: AuthSwitches): HttpAnswer | undefined {
  if (s.fail5xx) return new HttpAnswer(500, { error: 'server_error', error_description: 'boom' });
  if (s.malformed) return new HttpAnswer(200, undefined, {}, '<html>gateway</html>');
  return undefined;
}

/** Request-level failures shared by every API call (they apply to a batch as a whole). */
export function requestLevelFailure(rid: string, s: FakeSwitches, counters: FakeCounters): HttpAnswer | undefined {
  if (s.rateLimit && (s.rateLimit.times === undefined || s.rateLimit.times > 0)) {
    if (s.rateLimit.times !== undefined) s.rateLimit.times--;
    counters.rateLimited++;
    return errorAnswer(
      rid,
      429,
      'RATE_LIMIT',
      'VEHICLE',
      'You have reached the throttling rate limit for this vehicle.',
      'RETRY_LATER',
      { 'retry-after': String(s.rateLimit.retryAfterS) },
    );
  }
  if (s.fail5xx) return errorAnswer(rid, 500, 'SERVER', 'INTERNAL', 'Smartcar encountered an unexpected error.');
  if (s.upstreamError) {
    return errorAnswer(rid, 502, 'UPSTREAM', 'UNKNOWN_ISSUE', "The vehicle manufacturer's API failed unexpectedly.");
  }
  if (s.malformed) return new HttpAnswer(200, undefined, {}, '{"status": "succ');
  return undefined;
}

/** A car that cannot be talked to: its data and actions fail alike. */
export function vehicleStateFailure(rid: string, s: FakeSwitches): HttpAnswer | undefined {
  if (s.asleep) {
    return errorAnswer(
      rid,
      409,
      'VEHICLE_STATE',
      'ASLEEP',
      'The vehicle is in a sleep state and temporarily unable to perform your request.',
    );
  }
  if (s.unreachable) {
    return errorAnswer(
      rid,
      409,
      'VEHICLE_STATE',
      'UNREACHABLE',
      'The vehicle was unable to perform your request because it is currently unreachable.',
      'RETRY_LATER',
    );
  }
  return undefined;
}

/** A car that was reached and tried the action (LOCK or UNLOCK), and could not do it. */
export function actionFailure(rid: string, s: FakeSwitches, action: 'LOCK' | 'UNLOCK'): HttpAnswer | undefined {
  if (s.vehicleFailure) {
    return errorAnswer(
      rid,
      409,
      'VEHICLE_STATE',
      'UNKNOWN',
      'The vehicle was unable to perform your request due to an unknown issue.',
      'RETRY_LATER',
    );
  }
  if (action === 'LOCK' && s.doorOpen) {
    return errorAnswer(
      rid,
      409,
      'VEHICLE_STATE',
      'DOOR_OPEN',
      'The vehicle was unable to perform your request because a door is open.',
    );
  }
  return undefined;
}
