import { type Logger, pino } from 'pino';
import { COMBINED_STEPS, type CommandName, commandToPath } from '../domain/commands.js';
import { PROBLEMS, ProblemError, type ProblemKey, problems } from '../domain/problems.js';
import { acceptState, filterState, type VehicleState } from '../domain/state-catalogue.js';
import type { Vehicle } from '../domain/vehicle.js';
import type { CommandCompletion, CommandRecord, CommandStep, Store } from '../store/store.js';
import type { CommandOutcome, TelematicsAdapter } from '../telematics/adapter.js';
import type { Principal } from './auth-service.js';
import { CompletionWriter } from './completion-writer.js';
import type { EventBus } from './event-bus.js';
import { type CommandFailure, commandStatus, outcomeToFailure } from './outcome-problem.js';
import type { VehicleService } from './vehicle-service.js';

export interface CommandServiceOptions {
  timeoutMs: number;
  instanceId: string;
  /**
   * Writes each command's last records, keeping them while the database is unreachable
   * (default: one of its own that does not log).
   */
  completions?: CompletionWriter;
}

/** What a command answered: the state on success, else a problem. Stored for idempotent replays. */
export type StoredResult =
  | { kind: 'state'; state: VehicleState }
  | { kind: 'problem'; key: ProblemKey; detail: string; extensions: Record<string, unknown> };

// An IN_FLIGHT record outlives its time budget by this much before another instance may declare
// its owner dead and the outcome unknown.
const ORPHAN_GRACE_MS = 5_000;
// How long an adapter may take to report on its own after the budget is spent.
const ABORT_GRACE_MS = 250;

/** A vehicle's adapter and model (VehicleService.modelOf). */
type ResolvedModel = ReturnType<VehicleService['modelOf']>;

/**
 * Executes commands (SPEC §1) for every adapter: fleet scoping, capability and setup checks,
 * single flight per vehicle across instances, the time budget, idempotency, combined commands
 * as native or ordered steps, state merging, the command record and events. Adapters only
 * translate; everything here is written once.
 */
export class CommandService {
  private readonly inFlight = new Set<Promise<unknown>>();
  /** The budgets of running commands, for abortAll(). */
  private readonly budgets = new Set<AbortController>();
  private stopped = false;
  private draining = false;

  constructor(
    private readonly store: Store,
    private readonly vehicles: VehicleService,
    private readonly events: EventBus,
    private readonly options: CommandServiceOptions,
  ) {
    this.completions = options.completions ?? new CompletionWriter(store, pino({ enabled: false }));
  }

  private readonly completions: CompletionWriter;

  async execute(
    principal: Principal,
    vehicleId: string,
    command: CommandName,
    ctx: { flowId: string; idempotencyKey?: string; logger: Logger },
  ): Promise<StoredResult> {
    if (this.draining) {
      throw problems.shuttingDown();
    }
    return this.track(this.run(principal, vehicleId, command, ctx));
  }

  /**
   * The one command path: read the vehicle, check it can take the command, claim the
   * Idempotency-Key (a stored result replays), begin the record (single flight; orphans of dead
   * instances are expired once), then perform. Without a key the vehicle read and the begin are
   * one store call (docs/performance.md); with one the key is claimed between them, since the
   * key's row names an existing vehicle.
   */
  private async run(
    principal: Principal,
    vehicleId: string,
    command: CommandName,
    ctx: { flowId: string; idempotencyKey?: string; logger: Logger },
  ): Promise<StoredResult> {
    const started = Date.now();
    const key = ctx.idempotencyKey;
    const record = this.newRecord(principal, vehicleId, command, ctx.flowId, started);
    const opened: { vehicle: Vehicle | undefined; begun?: boolean } =
      key === undefined ? await this.store.startCommand(record) : { vehicle: await this.store.getVehicle(vehicleId) };
    const vehicle = this.vehicles.ownVehicle(principal, vehicleId, opened.vehicle);
    let resolved: ResolvedModel;
    try {
      // startCommand began the record only if these checks pass (the same fleet, setup and
      // capability); a model no longer in the catalogue (after an upgrade) fails only here.
      this.checkCommandable(vehicle, command);
      resolved = this.vehicles.modelOf(vehicle);
    } catch (e) {
      // Nothing was sent: the record must not hold the vehicle until it expires.
      if (opened.begun) await this.store.finishCommand(ctx.flowId, notSent(e, started)).catch(() => {});
      throw e;
    }
    if (key !== undefined) {
      const replay = await this.claimKey(principal, vehicle, command, ctx.flowId, key);
      if (replay) return replay;
    }
    try {
      const full: CommandRecord = { ...record, adapter: resolved.adapter.brand };
      const begun =
        (opened.begun ?? (await this.store.beginCommand(full))) ||
        // Another command is in flight, perhaps an orphan of a dead instance: expire those, retry once.
        (await this.beginAfterExpiry(full));
      if (!begun) throw problems.conflictingCommand(vehicle.vehicle_id);
    } catch (e) {
      // Nothing was sent: a retry with the same key must be able to run.
      if (key !== undefined) await this.store.releaseIdempotencyKey(principal.fleetId, key, ctx.flowId).catch(() => {});
      throw e;
    }
    return this.perform(vehicle, resolved, command, ctx, started);
  }

  /** Keeps a running command in `inFlight` for graceful shutdown. */
  private async track(work: Promise<StoredResult>): Promise<StoredResult> {
    this.inFlight.add(work);
    try {
      return await work;
    } finally {
      this.inFlight.delete(work);
    }
  }

  private checkCommandable(vehicle: Vehicle, command: CommandName): void {
    if (!vehicle.capabilities.commands.includes(command)) {
      throw problems.commandNotSupported(commandToPath(command), vehicle.vehicle_id);
    }
    if (vehicle.setup_status !== 'SUCCEEDED') {
      throw problems.setupNotSucceeded(vehicle);
    }
  }

  /** The IN_FLIGHT record of a command, but for its adapter (startCommand takes the vehicle's). */
  private newRecord(
    principal: Principal,
    vehicleId: string,
    command: CommandName,
    flowId: string,
    started: number,
  ): Omit<CommandRecord, 'adapter'> {
    return {
      flow_id: flowId,
      fleet_id: principal.fleetId,
      client_id: principal.clientId,
      user_id: principal.user?.userId ?? null,
      user_email: principal.user?.email ?? null,
      vehicle_id: vehicleId,
      command,
      instance_id: this.options.instanceId,
      status: 'IN_FLIGHT',
      problem_type: null,
      detail: null,
      delivery: null,
      steps: null,
      requested_at: new Date(started).toISOString(),
      deadline_at: new Date(started + this.options.timeoutMs + ORPHAN_GRACE_MS).toISOString(),
      completed_at: null,
      duration_ms: null,
    };
  }

  /** Returns a stored result to replay, or undefined when this request now owns the key. */
  private async claimKey(
    principal: Principal,
    vehicle: Vehicle,
    command: CommandName,
    flowId: string,
    key: string,
  ): Promise<StoredResult | undefined> {
    const claim = await this.store.claimIdempotencyKey({
      fleet_id: principal.fleetId,
      key,
      vehicle_id: vehicle.vehicle_id,
      command,
      flow_id: flowId,
      created_at: new Date().toISOString(),
    });
    if (claim.claimed) return undefined;
    const existing = claim.existing;
    if (existing.vehicle_id !== vehicle.vehicle_id || existing.command !== command) {
      throw problems.idempotencyKeyReused();
    }
    if (existing.status_code !== null) return existing.response as StoredResult;
    const record = await this.store.getCommand(existing.flow_id);
    if (!record && Date.parse(existing.created_at) < Date.now() - this.options.timeoutMs - ORPHAN_GRACE_MS) {
      // Claimed by a request that died before its command began: nothing ran, so start afresh.
      await this.store.releaseIdempotencyKey(principal.fleetId, key, existing.flow_id);
      return this.claimKey(principal, vehicle, command, flowId, key);
    }
    if (!record || record.status === 'IN_FLIGHT') {
      throw problems.idempotentRequestInFlight(existing.flow_id);
    }
    // The first request's instance died after the command started; its record was expired.
    const result = problemResult({
      key: 'vehicle/no-connection',
      detail: `The command to vehicle '${vehicle.vehicle_id}' was interrupted; its outcome is unknown. Request the vehicle state before retrying with a new key.`,
      delivery: 'DELIVERED_OUTCOME_UNKNOWN',
      extensions: { delivery: 'DELIVERED_OUTCOME_UNKNOWN', original_flow_id: existing.flow_id },
    });
    await this.store.completeIdempotencyKey(principal.fleetId, key, PROBLEMS['vehicle/no-connection'].status, result);
    return result;
  }

  /**
   * Executes a begun command through its adapter, within the time budget, as one native command
   * or ordered steps; finishes its record, merges the state and stores an idempotent result.
   */
  private async perform(
    vehicle: Vehicle,
    { adapter, model }: ResolvedModel,
    command: CommandName,
    ctx: { flowId: string; idempotencyKey?: string; logger: Logger },
    started: number,
  ): Promise<StoredResult> {
    const deadline = new Date(started + this.options.timeoutMs);
    const budget = this.startBudget();
    try {
      const native = model.native_combined?.includes(command) ?? false;
      const plan: readonly CommandName[] = native ? [command] : (COMBINED_STEPS[command] ?? [command]);
      const steps: CommandStep[] = plan.map((c) => ({ command: c, outcome: 'NOT_EXECUTED' }));
      let state: VehicleState = {};
      let failure: CommandFailure | undefined;

      for (const [i, step] of plan.entries()) {
        const outcome = await this.callAdapter(
          adapter,
          { vehicle, command: step, flowId: ctx.flowId, deadline, signal: budget.signal },
          ctx.logger,
        );
        if (outcome.kind === 'succeeded') {
          steps[i]!.outcome = 'SUCCEEDED';
          state = { ...state, ...outcome.state };
          continue;
        }
        failure = outcomeToFailure(outcome, {
          vehicleId: vehicle.vehicle_id,
          step,
          timeoutMs: this.options.timeoutMs,
          stopped: this.stopped,
        });
        steps[i] = { command: step, outcome: 'FAILED', problem_type: failure.key, detail: failure.detail };
        break;
      }

      const completedAt = new Date();
      const multiStep = plan.length > 1;
      if (failure !== undefined && multiStep) {
        const failed = steps.find((s) => s.outcome === 'FAILED')!;
        failure.detail = `Step '${commandToPath(failed.command)}' of '${commandToPath(command)}' failed: ${failure.detail}`;
      }
      const status = commandStatus(failure);
      const durationMs = completedAt.getTime() - started;
      // One store step finishes the record and merges what the unit reported (docs/performance.md).
      const merged = await this.complete(
        vehicle,
        ctx.flowId,
        {
          status,
          problem_type: failure?.key ?? null,
          detail: failure?.detail ?? null,
          delivery: failure === undefined ? 'DELIVERED' : failure.delivery,
          steps: multiStep ? steps : null,
          completed_at: completedAt.toISOString(),
          duration_ms: durationMs,
        },
        state,
        ctx.logger,
      );
      let result: StoredResult;
      if (failure === undefined) {
        result = { kind: 'state', state: filterState(merged, vehicle.capabilities.vehicle_state) };
      } else {
        if (multiStep) {
          // SPEC §1: a failed combined command lists each step's outcome and the state left behind.
          failure.extensions.steps = steps;
          failure.extensions.vehicle_state = filterState(merged, vehicle.capabilities.vehicle_state);
        }
        result = problemResult(failure);
      }
      if (ctx.idempotencyKey !== undefined) {
        const code = failure === undefined ? 200 : PROBLEMS[failure.key].status;
        await this.completions.storeResult(
          ctx.flowId,
          { fleetId: vehicle.fleet_id, key: ctx.idempotencyKey, statusCode: code, response: result },
          ctx.logger,
        );
      }
      this.events.emit({
        type: 'command.finished',
        vehicle_id: vehicle.vehicle_id,
        fleet_id: vehicle.fleet_id,
        flow_id: ctx.flowId,
        command,
        adapter: adapter.brand,
        outcome: failure?.key ?? 'succeeded',
        duration_ms: durationMs,
      });
      ctx.logger.info(
        {
          vehicle_id: vehicle.vehicle_id,
          command,
          adapter: adapter.brand,
          outcome: status,
          problem: failure?.key,
          duration_ms: durationMs,
        },
        'command finished',
      );
      return result;
    } finally {
      budget.dispose();
    }
  }

  /**
   * The command's time budget: one timer, cleared when the command ends (AbortSignal.timeout's
   * would stay scheduled for the whole budget: at 2,000 commands/s, 30,000 live timers), also
   * aborted by a forced shutdown.
   */
  private startBudget(): { signal: AbortSignal; dispose: () => void } {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.options.timeoutMs);
    // In a set that abortAll() walks, not a listener on one shared signal: removing an event
    // listener scans the signal's listeners, one per running command.
    this.budgets.add(controller);
    if (this.stopped) controller.abort();
    return {
      signal: controller.signal,
      dispose: () => {
        clearTimeout(timer);
        this.budgets.delete(controller);
      },
    };
  }

  /** After a single-flight conflict: expires orphans of dead instances and tries once more. */
  private async beginAfterExpiry(record: CommandRecord): Promise<boolean> {
    if ((await this.store.expireCommands(new Date().toISOString())) === 0) return false;
    return this.store.beginCommand(record);
  }

  /** Calls the adapter; a budget the adapter ignores still ends, as outcome unknown. */
  private async callAdapter(
    adapter: TelematicsAdapter,
    request: Parameters<TelematicsAdapter['execute']>[0],
    logger: Logger,
  ): Promise<CommandOutcome> {
    if (request.signal.aborted) return { kind: 'no-answer', delivered: false };
    let timer: NodeJS.Timeout | undefined;
    const overdue = new Promise<CommandOutcome>((resolve) => {
      request.signal.addEventListener(
        'abort',
        () => {
          timer = setTimeout(() => resolve({ kind: 'no-answer', delivered: true }), ABORT_GRACE_MS);
        },
        { once: true },
      );
    });
    try {
      return await Promise.race([adapter.execute(request), overdue]);
    } catch (e) {
      logger.error({ err: e, adapter: adapter.brand }, 'adapter threw instead of reporting an outcome');
      return { kind: 'failed', reason: 'internal adapter error' };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Finishes the record and merges what the unit reported (validated against the catalogue and
   * the vehicle's capabilities); returns the full merged state. When the database is unreachable,
   * the vehicle still acted: the answer is given from what it reported, and the completion
   * writer records it once the database is back (completion-writer.ts), so record and answer agree.
   */
  private async complete(
    vehicle: Vehicle,
    flowId: string,
    completion: CommandCompletion,
    reported: VehicleState,
    logger: Logger,
  ): Promise<VehicleState> {
    const { state: allowed, rejected } = acceptState(reported, vehicle.capabilities.vehicle_state);
    this.vehicles.rejectedState.report(vehicle.vehicle_id, rejected, 'a command answer', logger);
    try {
      return await this.completions.complete(flowId, completion, vehicle.vehicle_id, allowed, logger);
    } catch (e) {
      logger.error({ err: e }, 'recording the command outcome failed; answering with the reported state');
      return allowed;
    }
  }

  /** Graceful shutdown (SIGTERM): refuse new commands and wait for running ones to end. */
  async drain(): Promise<void> {
    this.draining = true;
    await Promise.allSettled([...this.inFlight]);
  }

  /** Ends every running command now, as outcome unknown (a forced stop). */
  abortAll(): void {
    this.stopped = true;
    for (const budget of this.budgets) budget.abort();
  }

  get running(): number {
    return this.inFlight.size;
  }

  /** True from the first stop signal on (readiness answers 503: SPEC §7). */
  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * A unit's answer that came after its command ended OUTCOME_UNKNOWN (504 with delivery
   * DELIVERED_OUTCOME_UNKNOWN): the record takes the real outcome, the state the answer carries is
   * stored, and CommandOutcomeResolved is written with them (Store.resolveCommand). Answers to
   * records that ended otherwise change nothing.
   */
  async onLateAnswer(flowId: string, outcome: CommandOutcome, logger?: Logger): Promise<void> {
    if (outcome.kind === 'no-answer') return;
    const record = await this.store.getCommand(flowId);
    if (record?.status !== 'OUTCOME_UNKNOWN') {
      logger?.info({ flow_id: flowId, status: record?.status }, 'late command answer for a settled command; ignored');
      return;
    }
    const vehicle = await this.store.getVehicle(record.vehicle_id);
    if (!vehicle) return;
    let state: VehicleState = {};
    let resolution: { status: 'SUCCEEDED' | 'FAILED'; problem_type: string | null; detail: string | null };
    if (outcome.kind === 'succeeded') {
      state = acceptState(outcome.state, vehicle.capabilities.vehicle_state).state;
      resolution = { status: 'SUCCEEDED', problem_type: null, detail: null };
    } else {
      const failure = outcomeToFailure(outcome, {
        vehicleId: vehicle.vehicle_id,
        step: record.command,
        timeoutMs: this.options.timeoutMs,
      });
      resolution = { status: 'FAILED', problem_type: failure.key, detail: failure.detail };
    }
    await this.store.resolveCommand(
      flowId,
      { ...resolution, resolved_at: new Date().toISOString() },
      vehicle.vehicle_id,
      state,
    );
    logger?.info(
      { flow_id: flowId, vehicle_id: vehicle.vehicle_id, outcome: resolution.status },
      'late command answer settled a command of unknown outcome',
    );
  }

  /** Commands of a vehicle, newest first. */
  async list(principal: Principal, vehicleId: string, limit: number, before?: string): Promise<CommandRecord[]> {
    await this.vehicles.get(principal, vehicleId);
    return this.store.listCommands(vehicleId, limit, before);
  }
}

function problemResult({ key, detail, extensions }: CommandFailure): StoredResult {
  return { kind: 'problem', key, detail, extensions };
}

/** The completion of a command that failed before anything was sent. */
function notSent(error: unknown, started: number): CommandCompletion {
  const now = Date.now();
  return {
    status: 'FAILED',
    problem_type: error instanceof ProblemError ? error.key : 'internal-server-error',
    detail: error instanceof Error ? error.message : String(error),
    delivery: 'NOT_DELIVERED',
    steps: null,
    completed_at: new Date(now).toISOString(),
    duration_ms: now - started,
  };
}
