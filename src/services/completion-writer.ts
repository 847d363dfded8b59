import type { Logger } from 'pino';
import type { VehicleState } from '../domain/state-catalogue.js';
import { type CommandCompletion, type Store, StoreUnavailableError } from '../store/store.js';

/** A command's last writes: its record with the state it reported, then its idempotent result. */
interface PendingWrite {
  flowId: string;
  completion?: { completion: CommandCompletion; vehicleId: string; state: VehicleState };
  result?: { fleetId: string; key: string; statusCode: number; response: unknown };
  since: number;
}

export interface CompletionWriterOptions {
  /** Completions kept while the database is unreachable; beyond, the oldest goes to the log only. */
  maxPending?: number;
  /** How long one is kept and retried before it goes to the log only. */
  maxAgeMs?: number;
  /** Retry interval bounds (doubling from the first to the second). */
  retryMs?: readonly [number, number];
}

const DEFAULTS: Required<CompletionWriterOptions> = { maxPending: 10_000, maxAgeMs: 3_600_000, retryMs: [100, 2_000] };

/**
 * Writes a command's completion so that its record never contradicts the answer (issue: the
 * answer and the record must agree). When the database is unreachable at the moment the vehicle
 * answered, the answer is still given from what the vehicle reported, and the completion is kept
 * here and written as soon as the database is back; a deadline expiry written meanwhile by any
 * instance yields to it (Store.completeCommand's precedence rule). Kept in memory, bounded in
 * number and age: what falls out of the bound, or is still pending when the instance stops, is
 * logged in full at error level, so the audit trail survives in the log.
 */
export class CompletionWriter {
  private readonly pending = new Map<string, PendingWrite>();
  private readonly options: Required<CompletionWriterOptions>;
  private timer: NodeJS.Timeout | undefined;
  private delayMs: number;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    options: CompletionWriterOptions = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
    this.delayMs = this.options.retryMs[0];
  }

  /** Completions waiting for the database. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Finishes the record and merges the reported state; returns the merged state, or the
   * reported state alone when the write must wait for the database.
   */
  async complete(
    flowId: string,
    completion: CommandCompletion,
    vehicleId: string,
    state: VehicleState,
    logger: Logger,
  ): Promise<VehicleState> {
    const queued = this.pending.get(flowId);
    if (queued) {
      // Never overtake an earlier write of the same flow.
      queued.completion = { completion, vehicleId, state };
      return state;
    }
    try {
      return await this.store.completeCommand(flowId, completion, vehicleId, state);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      logger.warn({ err }, 'database unreachable: the command outcome is kept and written once it is back');
      this.keep({ flowId, completion: { completion, vehicleId, state }, since: Date.now() });
      return state;
    }
  }

  /** Stores the answer for idempotent replays, after the completion of the same flow. */
  async storeResult(
    flowId: string,
    result: { fleetId: string; key: string; statusCode: number; response: unknown },
    logger: Logger,
  ): Promise<void> {
    const queued = this.pending.get(flowId);
    if (queued) {
      queued.result = result;
      return;
    }
    try {
      await this.store.completeIdempotencyKey(result.fleetId, result.key, result.statusCode, result.response);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) {
        logger.error({ err }, 'storing the idempotent result failed');
        return;
      }
      this.keep({ flowId, result, since: Date.now() });
    }
  }

  private keep(write: PendingWrite): void {
    while (this.pending.size >= this.options.maxPending) {
      const [oldest] = this.pending.values();
      this.giveUp(oldest!, `more than ${this.options.maxPending} command outcomes are waiting for the database`);
    }
    this.pending.set(write.flowId, write);
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.pending.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.retry();
    }, this.delayMs);
    this.timer.unref();
  }

  /** One pass over the kept writes, oldest first; stops at the first that still cannot be written. */
  private retry(): Promise<void> {
    this.flushing ??= (async () => {
      try {
        for (const write of [...this.pending.values()]) {
          if (Date.now() - write.since > this.options.maxAgeMs) {
            this.giveUp(write, 'the database stayed unreachable too long');
            continue;
          }
          try {
            await this.writeNow(write);
          } catch (err) {
            if (err instanceof StoreUnavailableError) {
              this.delayMs = Math.min(this.delayMs * 2, this.options.retryMs[1]);
              return;
            }
            this.giveUp(write, `writing it failed: ${err instanceof Error ? err.message : String(err)}`);
            continue;
          }
          this.pending.delete(write.flowId);
          this.logger.info({ flow_id: write.flowId }, 'command outcome recorded after the database came back');
        }
        this.delayMs = this.options.retryMs[0];
      } finally {
        this.flushing = undefined;
        this.schedule();
      }
    })();
    return this.flushing;
  }

  private async writeNow(write: PendingWrite): Promise<void> {
    if (write.completion) {
      const { completion, vehicleId, state } = write.completion;
      await this.store.completeCommand(write.flowId, completion, vehicleId, state);
      write.completion = undefined;
    }
    if (write.result) {
      const { fleetId, key, statusCode, response } = write.result;
      await this.store.completeIdempotencyKey(fleetId, key, statusCode, response);
      write.result = undefined;
    }
  }

  private giveUp(write: PendingWrite, reason: string): void {
    this.pending.delete(write.flowId);
    this.logger.error(
      { flow_id: write.flowId, completion: write.completion?.completion, result: write.result?.statusCode },
      `command outcome NOT recorded in the database (${reason}); this line is its only record`,
    );
  }

  /**
   * Graceful stop: retries what is kept until it is written or `timeoutMs` passed, then logs
   * whatever is left (giveUp).
   */
  async flush(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.pending.size > 0 && Date.now() < until) {
      clearTimeout(this.timer);
      this.timer = undefined;
      await this.retry();
      if (this.pending.size === 0) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.delayMs, Math.max(0, until - Date.now()))));
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const write of [...this.pending.values()]) this.giveUp(write, 'the instance stopped first');
  }
}
