import type { VehicleState } from '../../domain/state-catalogue.js';
import type { Capabilities } from '../../domain/vehicle.js';
import type { ReadPath } from './models.js';
import { failureFromAnswer, type SmartcarBatchItem, type SmartcarFailure } from './smartcar-client.js';

/**
 * Smartcar readings → fleetgate's state catalogue. Each value carries the time Smartcar says the
 * car captured it (`sc-data-age`), not the time we asked; distances are converted when an answer
 * says `sc-unit-system: imperial` although metric was requested.
 */

const KM_PER_MILE = 1.609344;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Batch paths to read for a vehicle's state capabilities; both energy paths, one will fit. */
export function readPathsFor(capabilities: Capabilities): ReadPath[] {
  const caps = new Set(capabilities.vehicle_state);
  const paths: ReadPath[] = [];
  if (caps.has('POSITION')) paths.push('/location');
  if (caps.has('MILEAGE_IN_KILOMETERS')) paths.push('/odometer');
  if (caps.has('STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT') || caps.has('REMAINING_RANGE_IN_KILOMETERS')) {
    paths.push('/battery', '/fuel');
  }
  if (caps.has('CENTRAL_LOCK')) paths.push('/security');
  return paths;
}

export interface BatchReading {
  state: VehicleState;
  /** Paths that did not give a usable reading, with why. */
  failures: { path: string; failure: SmartcarFailure }[];
}

/** Percent as Smartcar gives it (0..1) → 0..100 with two decimals. */
const percent = (fraction: number): number => Math.round(fraction * 10_000) / 100;
const round = (n: number): number => Math.round(n * 1000) / 1000;

export function stateFromBatch(
  items: readonly SmartcarBatchItem[],
  receivedAt: Date,
  requestId?: string,
): BatchReading {
  const state: VehicleState = {};
  const failures: BatchReading['failures'] = [];
  let energyFromBattery = false;
  for (const item of items) {
    const headers = {
      get: (name: string) => item.headers[name.toLowerCase()] ?? (name === 'sc-request-id' ? requestId : undefined),
    };
    if (item.code < 200 || item.code >= 300) {
      failures.push({ path: item.path, failure: failureFromAnswer(item.code, item.body, headers) });
      continue;
    }
    const ageHeader = item.headers['sc-data-age'];
    const ageMs = ageHeader ? Date.parse(ageHeader) : Number.NaN;
    const timestamp = new Date(Number.isFinite(ageMs) ? ageMs : receivedAt.getTime()).toISOString();
    const km = (d: number) => round(item.headers['sc-unit-system'] === 'imperial' ? d * KM_PER_MILE : d);
    const bad = (detail: string) =>
      failures.push({
        path: item.path,
        failure: { kind: 'malformed', status: item.code, detail, ...(requestId ? { requestId } : {}) },
      });
    const b = item.body;
    switch (item.path) {
      case '/location':
        if (
          !isObject(b) ||
          !isNum(b.latitude) ||
          !isNum(b.longitude) ||
          Math.abs(b.latitude) > 90 ||
          Math.abs(b.longitude) > 180
        ) {
          bad('location reading lacks a valid latitude/longitude');
          break;
        }
        state.position = { timestamp, value: { lat: b.latitude, lon: b.longitude } };
        break;
      case '/odometer':
        if (!isObject(b) || !isNum(b.distance) || b.distance < 0) {
          bad('odometer reading lacks a valid distance');
          break;
        }
        state.mileage_in_kilometers = { timestamp, value: km(b.distance) };
        break;
      case '/battery':
      case '/fuel': {
        const validRange =
          b !== undefined &&
          isObject(b) &&
          (b.range === null || b.range === undefined || (isNum(b.range) && b.range >= 0));
        if (
          !isObject(b) ||
          !isNum(b.percentRemaining) ||
          b.percentRemaining < 0 ||
          b.percentRemaining > 1 ||
          !validRange
        ) {
          bad(`${item.path.slice(1)} reading lacks a valid percentRemaining (0..1) or range`);
          break;
        }
        // A plug-in hybrid answers both; the traction battery wins.
        if (item.path === '/fuel' && energyFromBattery) break;
        if (item.path === '/battery') energyFromBattery = true;
        state.state_of_charge_or_fuel_level_in_percent = { timestamp, value: percent(b.percentRemaining) };
        if (isNum(b.range)) state.remaining_range_in_kilometers = { timestamp, value: km(b.range) };
        else delete state.remaining_range_in_kilometers;
        break;
      }
      case '/security':
        if (!isObject(b) || typeof b.isLocked !== 'boolean') {
          bad('lock status lacks isLocked');
          break;
        }
        state.central_lock = { timestamp, value: b.isLocked ? 'LOCKED' : 'UNLOCKED' };
        break;
      default:
        bad(`batch answered a path that was not requested: ${item.path}`);
    }
  }
  return { state, failures };
}
