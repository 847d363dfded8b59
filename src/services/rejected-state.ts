import type { Logger } from 'pino';
import type { EventBus } from './event-bus.js';

/** One warning per vehicle per this interval; the rest are counted and summed into the next one. */
const LOG_INTERVAL_MS = 60_000;
const MAX_TRACKED_VEHICLES = 10_000;

/**
 * Reports state values the catalogue refused (unknown, invalid or implausible: see
 * docs/vehicle-state.md): each is counted (metric `fleetgate_state_values_rejected_total`,
 * through the event bus) and logged at a bounded rate, so a unit sending garbage many times a
 * second cannot flood the log (one fuzzing unit had made 28,390 warning lines).
 */
export class RejectedStateLog {
  private readonly lastLogged = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly events: EventBus,
    private readonly logger: Logger,
  ) {}

  report(vehicleId: string, rejected: readonly string[], source: string, logger: Logger = this.logger): void {
    if (rejected.length === 0) return;
    this.events.emit({ type: 'state.rejected', vehicle_id: vehicleId, properties: [...rejected] });
    const now = Date.now();
    const last = this.lastLogged.get(vehicleId);
    if (last && now - last.at < LOG_INTERVAL_MS) {
      last.suppressed++;
      return;
    }
    if (this.lastLogged.size >= MAX_TRACKED_VEHICLES) this.lastLogged.clear();
    this.lastLogged.set(vehicleId, { at: now, suppressed: 0 });
    logger.warn(
      { vehicle_id: vehicleId, rejected, suppressed_before: last?.suppressed ?? 0 },
      `dropped invalid or implausible state properties from ${source} (logged at most once a minute per vehicle)`,
    );
  }
}
