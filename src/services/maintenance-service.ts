import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { UserService } from './user-service.js';
import type { VehicleService } from './vehicle-service.js';

export interface MaintenanceOptions {
  /** A vehicle whose unit has not connected this long after it was added ends setup FAILED. */
  setupTimeoutSeconds: number;
  /** How often a round runs. Default 5 s. */
  intervalMs?: number;
  /** How long idempotency keys are kept (SPEC §1: 24 h). */
  idempotencyRetentionMs?: number;
  /** How often the hourly purges run. Default 1 h. */
  purgeEveryMs?: number;
  /** How long events are kept (docs/events.md). */
  eventRetentionHours: number;
}

// Retention (docs/events.md): short transactions of at most EVENT_PRUNE_BATCH rows, so writers
// wait for at most one of them; up to EVENT_PRUNE_BATCHES per maintenance round (20,000 per 5 s
// outpaces 15,000 units reporting every 30 s several times over).
const EVENT_PRUNE_BATCH = 1_000;
const EVENT_PRUNE_BATCHES = 20;

/**
 * Periodic upkeep that any instance may do, alone or with others (every step is safe to run
 * twice): commands orphaned by a dead instance end outcome unknown, stale setups fail, old
 * idempotency keys, console sessions and events past their retention go.
 */
export class MaintenanceService {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private lastPurge = 0;

  constructor(
    private readonly store: Store,
    private readonly vehicles: VehicleService,
    private readonly users: UserService,
    private readonly logger: Logger,
    private readonly options: MaintenanceOptions,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.round(), this.options.intervalMs ?? 5_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One round; a round still running when the next is due is not doubled. */
  async round(now = Date.now()): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const expired = await this.store.expireCommands(new Date(now).toISOString());
      if (expired > 0) this.logger.warn({ expired }, 'commands of a stopped instance ended with outcome unknown');
      await this.vehicles.failStaleSetups(this.options.setupTimeoutSeconds);
      if (now - this.lastPurge > (this.options.purgeEveryMs ?? 3600_000)) {
        this.lastPurge = now;
        const retention = this.options.idempotencyRetentionMs ?? 24 * 3600_000;
        await this.store.purgeIdempotencyKeys(new Date(now - retention).toISOString());
        await this.users.purge(now);
      }
      await this.pruneEvents(new Date(now - this.options.eventRetentionHours * 3600_000).toISOString());
    } catch (err) {
      this.logger.warn({ err }, 'maintenance round failed; retrying');
    } finally {
      this.running = false;
    }
  }

  private async pruneEvents(before: string): Promise<void> {
    let pruned = 0;
    for (let i = 0; i < EVENT_PRUNE_BATCHES; i++) {
      const n = await this.store.events.prune(before, EVENT_PRUNE_BATCH);
      pruned += n;
      if (n < EVENT_PRUNE_BATCH) break;
    }
    pruned += await this.store.events.pruneLog(before, EVENT_PRUNE_BATCH);
    if (pruned > 0) this.logger.debug({ pruned }, 'deleted events past retention');
  }
}
