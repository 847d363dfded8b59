import { isDeepStrictEqual } from 'node:util';
import { commandOutcomeResolvedEvent } from '../../domain/events.js';
import { parseTimestamp, supersedes, type VehicleState } from '../../domain/state-catalogue.js';
import type { Vehicle } from '../../domain/vehicle.js';
import { LruMap } from '../../lib/lru-map.js';
import { commandInsertValues, type Row } from '../row-mapping.js';
import {
  type ChangeCause,
  type CommandCompletion,
  type CommandRecord,
  type CommandResolution,
  StoreConflictError,
} from '../store.js';
import { Batcher } from './batcher.js';
import {
  COMPLETE_COMMANDS_SQL,
  FINISH_COMMAND_SQL,
  finishCommandValues,
  MERGE_STATES_SQL,
  START_COMMAND_SQL,
  START_COMMANDS_SQL,
  snapshotState,
  stateOf,
  upsertState,
} from './command-path-sql.js';
import { errorCode, type PostgresConnection } from './connection.js';
import type { PostgresEventLog } from './postgres-event-log.js';
import { ENCODE, flowOf, groupByVehicle, json, STATE_ROW_TYPES, stateFromRows, vehicleFromRow } from './rows.js';
import { type Candidate, eventCtes, finishedCandidate, stateCandidates } from './state-events-sql.js';

/**
 * What every command does to the store: read the vehicle, begin the record, complete it with the
 * unit's report (and state reports outside commands). Calls of concurrent commands are coalesced
 * into one statement each (batcher.ts, command-path-sql.ts), and each vehicle's state as this
 * instance last read it keeps unchanged properties out of the writes.
 */
export class CommandPath {
  constructor(
    private readonly db: PostgresConnection,
    private readonly events: PostgresEventLog,
  ) {}

  // Reads and writes of the command path, coalesced across concurrent commands (batcher.ts).
  private readonly vehicleReads = new Batcher<string, Vehicle | undefined>(
    async (ids) => {
      const { rows } = await this.db.q('SELECT * FROM vehicles WHERE vehicle_id = ANY($1::text[])', [ids]);
      const byId = new Map(rows.map((r) => [String(r.vehicle_id), vehicleFromRow(r)]));
      return ids.map((id) => byId.get(id));
    },
    async (id) => {
      const { rows } = await this.db.q('SELECT * FROM vehicles WHERE vehicle_id = $1', [id]);
      return rows[0] && vehicleFromRow(rows[0]);
    },
  );

  private readonly stateReads = new Batcher<string, VehicleState>(
    async (ids) => {
      const { rows } = await this.db.q(
        'SELECT vehicle_id, property, ts, value FROM vehicle_state WHERE vehicle_id = ANY($1::text[]) ORDER BY vehicle_id, property',
        [ids],
        undefined,
        STATE_ROW_TYPES,
      );
      const byId = groupByVehicle(rows);
      return ids.map((id) => this.remember(id, stateFromRows(byId.get(id) ?? [])));
    },
    async (id) => {
      const { rows } = await this.db.q(
        'SELECT property, ts, value FROM vehicle_state WHERE vehicle_id = $1 ORDER BY property',
        [id],
        undefined,
        STATE_ROW_TYPES,
      );
      return this.remember(id, stateFromRows(rows));
    },
  );

  /**
   * Each vehicle's state as this instance last read it, to leave out of a write what cannot
   * change the stored state (docs/performance.md). A unit answers every command with its whole
   * state, and most of it is what fleetgate stored from its last answer: sent anyway, each such
   * property costs PostgreSQL a JSON record and an index lookup only to be dropped. Safe across
   * instances without invalidation: a stored property's timestamp never goes back (newer-or-equal
   * wins, SPEC §3). So a property older than the one this instance read would lose, and one whose
   * timestamp and value equal it is either still stored as read or superseded by a newer one: in
   * every case writing it would change nothing. (One exception, by design: if another writer
   * stored a different value with the very same timestamp since, that value stays, where a write
   * would have replaced it: two reports of one instant that disagree, and either may win.)
   */
  private readonly lastRead = new LruMap<string, VehicleState>(4096);

  /** Drops what this instance last read of a vehicle being deleted. */
  forget(vehicleId: string): void {
    this.lastRead.delete(vehicleId);
  }

  private remember(vehicleId: string, state: VehicleState): VehicleState {
    this.lastRead.set(vehicleId, state);
    return state;
  }

  /** `state` (normalized) without the properties that cannot change what is stored (lastRead). */
  private unsent(vehicleId: string, state: VehicleState): VehicleState {
    const read = this.lastRead.get(vehicleId);
    if (read === undefined) return state;
    const out: VehicleState = {};
    for (const [name, v] of Object.entries(state)) {
      const stored = read[name];
      if (stored !== undefined) {
        if (!supersedes(v, stored) || (stored.timestamp === v.timestamp && isDeepStrictEqual(stored.value, v.value)))
          continue;
      }
      out[name] = v;
    }
    return out;
  }

  private readonly commandBegins = new Batcher<CommandRecord, boolean>(
    async (records) => {
      // Rows of one statement that conflict with each other on the single-flight index are
      // skipped like any other conflict (DO NOTHING), so two commands to one vehicle in one
      // batch still give exactly one winner.
      const { rows } = await this.db.q(
        `INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
           problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
         SELECT r.flow_id, r.fleet_id, r.client_id, r.vehicle_id, r.command, r.adapter, r.instance_id, 'IN_FLIGHT',
           r.problem_type, r.detail, r.delivery, r.steps, r.requested_at, r.deadline_at, r.user_id, r.user_email
         FROM jsonb_to_recordset($1::jsonb) AS r(flow_id text, fleet_id text, client_id text, vehicle_id text,
           command text, adapter text, instance_id text, problem_type text, detail text, delivery text, steps jsonb,
           requested_at timestamptz, deadline_at timestamptz, user_id text, user_email text)
         ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING
         RETURNING flow_id`,
        [json(records)],
      );
      const inserted = new Set(rows.map((r) => String(r.flow_id)));
      return records.map((c) => inserted.has(c.flow_id));
    },
    (c) => this.beginCommandOne(c),
  );

  // startCommand: the vehicle read and the begin of the record in one statement. The insert
  // takes the vehicle's brand and requires its fleet, setup and capability, so it only begins a
  // command the service would have begun after reading the vehicle itself. The vehicles are read
  // by primary key first (MATERIALIZED): joined directly, the planner would pick the fleet/setup
  // index and walk every set-up vehicle of the fleet.
  private readonly commandStarts = new Batcher<
    Omit<CommandRecord, 'adapter'>,
    { vehicle: Vehicle | undefined; begun: boolean }
  >(
    async (records) => this.startCommands(records),
    async (record) => {
      try {
        return await this.startOneCommand(record);
      } catch (err) {
        // The vehicle was deleted between the statement's read and its insert.
        if (errorCode(err) === '23503') return { vehicle: undefined, begun: false };
        if (errorCode(err) === '23505') throw new StoreConflictError('flow_id');
        throw err;
      }
    },
  );

  private async startCommands(
    records: Array<Omit<CommandRecord, 'adapter'>>,
  ): Promise<Array<{ vehicle: Vehicle | undefined; begun: boolean }>> {
    const { rows } = await this.db.q(START_COMMANDS_SQL, [json(records), records.map((r) => r.vehicle_id)]);
    const byFlow = new Map(rows.map((row) => [String(row.start_flow_id), row]));
    return records.map((record) => startedFromRow(byFlow.get(record.flow_id)));
  }

  private async startOneCommand(
    record: Omit<CommandRecord, 'adapter'>,
  ): Promise<{ vehicle: Vehicle | undefined; begun: boolean }> {
    const [flowId, fleetId, clientId, vehicleId, command, , ...rest] = commandInsertValues(
      { ...record, adapter: '' },
      ENCODE,
    );
    const { rows } = await this.db.q(START_COMMAND_SQL, [flowId, fleetId, clientId, vehicleId, command, ...rest]);
    return startedFromRow(rows[0]);
  }

  private readonly commandCompletions = new Batcher<CompletionItem, VehicleState>(
    async (items) => {
      const states = items.flatMap((i) =>
        Object.entries(i.unsent).map(([property, v]) => ({
          vehicle_id: i.vehicleId,
          property,
          ts: v.timestamp,
          value: v.value,
        })),
      );
      const { rows } = await this.db.q(
        COMPLETE_COMMANDS_SQL,
        [
          json(items.map((i) => ({ flow_id: i.flowId, ...i.completion }))),
          json(states),
          items.map((i) => i.flowId),
          items.map((i) => i.vehicleId),
          json(items.flatMap((i) => i.candidates)),
        ],
        undefined,
        STATE_ROW_TYPES,
      );
      this.events.committed();
      const byId = groupByVehicle(rows);
      return items.map((i) => this.mergeReport(i, byId.get(i.vehicleId)));
    },
    (i) => this.completeCommandOne(i),
  );

  /**
   * The state a completion or a state report answers with: the report merged over the stored
   * state its statement read (newer-or-equal wins, SPEC §3, as in the write), so no second
   * statement reads it back. The snapshot is the statement's: it holds every write committed
   * before the statement began. A write another instance commits while the statement runs may
   * keep a property of the report from being stored; the answer then has the report's value,
   * which the unit sent, as if the report had come first. `undefined` rows: the vehicle was
   * deleted meanwhile.
   */
  private mergeReport(item: Pick<CompletionItem, 'vehicleId' | 'state'>, rows: Row[] | undefined): VehicleState {
    if (rows === undefined) return {};
    const merged = stateFromRows(rows);
    for (const [name, v] of Object.entries(item.state)) {
      if (supersedes(v, merged[name])) merged[name] = v;
    }
    return this.remember(item.vehicleId, merged);
  }

  async getVehicle(vehicleId: string): Promise<Vehicle | undefined> {
    return this.vehicleReads.submit(vehicleId);
  }

  async startCommand(
    record: Omit<CommandRecord, 'adapter'>,
  ): Promise<{ vehicle: Vehicle | undefined; begun: boolean }> {
    return this.commandStarts.submit(record);
  }

  async mergeState(vehicleId: string, reported: VehicleState, cause?: ChangeCause): Promise<VehicleState> {
    const normalized = normalizeState(reported);
    const unsent = this.unsent(vehicleId, normalized);
    // Nothing of the report can change what is stored: the stored state is the answer (and no
    // event: nothing was recorded).
    if (Object.keys(unsent).length === 0) return this.getState(vehicleId);
    const candidates = stateCandidates(vehicleId, flowOf(cause), normalized, new Date().toISOString());
    return this.stateWrites.submit({ vehicleId, state: normalized, unsent, candidates });
  }

  /**
   * State reports, coalesced as the command path's calls are (batcher.ts): at a fleet's report
   * rate, one statement per report took PostgreSQL CPU and pool connections from commands (the
   * bench's command p99 under ingestion). A vehicle appears once per statement (an upsert may not
   * touch a row twice): a second report of it goes in the next statement, in order.
   */
  private readonly stateWrites = new Batcher<StateItem, VehicleState>(
    async (items) => {
      const results = new Array<VehicleState>(items.length);
      let pending = items.map((item, i) => ({ item, i }));
      while (pending.length > 0) {
        const seen = new Set<string>();
        const round: typeof pending = [];
        const later: typeof pending = [];
        for (const p of pending) {
          if (seen.has(p.item.vehicleId)) later.push(p);
          else {
            seen.add(p.item.vehicleId);
            round.push(p);
          }
        }
        const merged = await this.writeStates(round.map((p) => p.item));
        for (const [k, p] of round.entries()) results[p.i] = merged[k]!;
        pending = later;
      }
      return results;
    },
    (item) => this.writeOneState(item),
    // One statement at a time and at most 64 reports in it: a command's statements never queue in
    // PostgreSQL behind more than one short report statement.
    1,
    64,
  );

  /** Several vehicles' reports (each vehicle once) in one statement (MERGE_STATES_SQL). */
  private async writeStates(items: StateItem[]): Promise<VehicleState[]> {
    if (items.length === 1) return [await this.writeOneState(items[0]!)];
    const states = items.flatMap((i) =>
      Object.entries(i.unsent).map(([property, v]) => ({
        vehicle_id: i.vehicleId,
        property,
        ts: v.timestamp,
        value: v.value,
      })),
    );
    const { rows } = await this.db.q(
      MERGE_STATES_SQL,
      [json(states), items.map((i) => i.vehicleId), json(items.flatMap((i) => i.candidates))],
      undefined,
      STATE_ROW_TYPES,
    );
    this.events.committed();
    const byId = groupByVehicle(rows);
    return items.map((i) => this.mergeReport(i, byId.get(i.vehicleId)));
  }

  /**
   * One vehicle's state write and the read of its stored state in one statement (upsertState,
   * snapshotState), answered by mergeReport. `before`: data-modifying CTEs that run in the same
   * statement (a completion's UPDATE of its record), with their parameters, which come first.
   */
  private async writeOneState(
    item: Pick<CompletionItem, 'vehicleId' | 'state' | 'unsent' | 'candidates'>,
    before: { ctes: string; params: unknown[] } = { ctes: '', params: [] },
  ): Promise<VehicleState> {
    const vehicle = `$${before.params.length + 1}`;
    const state = `$${before.params.length + 2}`;
    const candidates = `$${before.params.length + 3}`;
    const ids = `ARRAY[${vehicle}::text]`;
    try {
      const { rows } = await this.db.q(
        `WITH ${before.ctes}merged AS (${upsertState(stateOf(vehicle, state), ids)}),
         ${eventCtes(candidates, ids, before.ctes !== '')}
         none AS (SELECT 1)
         ${snapshotState(ids)}`,
        [...before.params, item.vehicleId, json(item.unsent), json(item.candidates)],
        undefined,
        STATE_ROW_TYPES,
      );
      this.events.committed();
      return this.mergeReport(item, rows.length > 0 ? rows : undefined);
    } catch (err) {
      // The vehicle was deleted meanwhile (a command's record went with it): nothing to keep.
      if (errorCode(err) === '23503') return {};
      throw err;
    }
  }

  async completeCommand(
    flowId: string,
    completion: CommandCompletion,
    vehicleId: string,
    state: VehicleState,
  ): Promise<VehicleState> {
    const normalized = normalizeState(state);
    return this.commandCompletions.submit({
      flowId,
      completion,
      vehicleId,
      state: normalized,
      unsent: this.unsent(vehicleId, normalized),
      candidates: [
        finishedCandidate(flowId, vehicleId, completion),
        ...stateCandidates(vehicleId, flowId, normalized, completion.completed_at),
      ],
    });
  }

  private async completeCommandOne(item: CompletionItem): Promise<VehicleState> {
    // One round trip: the record's UPDATE and the upsert are data-modifying CTEs (both run,
    // whatever the other does), and the statement reads the stored state for mergeReport.
    return this.writeOneState(item, {
      ctes: `finished AS (${FINISH_COMMAND_SQL} RETURNING *), `,
      params: finishCommandValues(item.flowId, item.completion),
    });
  }

  async getState(vehicleId: string): Promise<VehicleState> {
    return this.stateReads.submit(vehicleId);
  }

  async beginCommand(c: CommandRecord): Promise<boolean> {
    return this.commandBegins.submit(c);
  }

  private async beginCommandOne(c: CommandRecord): Promise<boolean> {
    try {
      const { rowCount } = await this.db.q(
        `INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
           problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'IN_FLIGHT', $8, $9, $10, $11::jsonb, $12, $13, $14, $15)
         ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING`,
        commandInsertValues(c, ENCODE),
      );
      return (rowCount ?? 0) > 0;
    } catch (err) {
      if (errorCode(err) === '23503') throw new StoreConflictError('vehicle');
      if (errorCode(err) === '23505') throw new StoreConflictError('flow_id');
      throw err;
    }
  }

  async resolveCommand(
    flowId: string,
    resolution: CommandResolution,
    vehicleId: string,
    state: VehicleState,
  ): Promise<void> {
    const normalized = normalizeState(state);
    // Stands in for the completion's `finished` CTE; its candidates hold no CommandFinished.
    const event = commandOutcomeResolvedEvent(
      { flow_id: flowId, fleet_id: '', vehicle_id: vehicleId, command: '', requested_at: '' },
      resolution,
    );
    await this.writeOneState(
      {
        vehicleId,
        state: normalized,
        unsent: normalized,
        candidates: stateCandidates(vehicleId, flowId, normalized, resolution.resolved_at),
      },
      {
        ctes: `finished AS (UPDATE commands SET status = $2, problem_type = $3, detail = $4, delivery = 'DELIVERED'
            WHERE flow_id = $1 AND status = 'OUTCOME_UNKNOWN' RETURNING *),
          resolved AS (INSERT INTO events (id, fleet_id, vehicle_id, type, envelope)
            SELECT $5::jsonb->'metadata'->>'id', f.fleet_id, f.vehicle_id, 'CommandOutcomeResolved',
              jsonb_build_object('metadata', ($5::jsonb->'metadata') || jsonb_build_object('fleet_id', f.fleet_id),
                'data', ($5::jsonb->'data') || jsonb_build_object('command', f.command,
                  'requested_at', to_jsonb(to_char(f.requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))))
            FROM finished f), `,
        params: [flowId, resolution.status, resolution.problem_type, resolution.detail, json(event)],
      },
    );
  }
}

/** A start statement's row for one record (START_COMMANDS_SQL, START_COMMAND_SQL). */
function startedFromRow(row: Row | undefined): { vehicle: Vehicle | undefined; begun: boolean } {
  return { vehicle: row?.vehicle_id == null ? undefined : vehicleFromRow(row), begun: row?.start_begun === true };
}

/** A command's completion on its way to the batched statement. */
type StateItem = Pick<CompletionItem, 'vehicleId' | 'state' | 'unsent' | 'candidates'>;

interface CompletionItem {
  flowId: string;
  completion: CommandCompletion;
  vehicleId: string;
  /** The unit's report, normalized: what the answer merges over the stored state. */
  state: VehicleState;
  /** What of it can change the stored state (unsent): what the statement writes. */
  unsent: VehicleState;
  /** The events the statement may write (state-events-sql.ts). */
  candidates: Candidate[];
}

/** Timestamps go to the database as parsed instants, so a malformed one fails here, not in SQL. */
function normalizeState(state: VehicleState): VehicleState {
  const out: VehicleState = {};
  for (const [name, v] of Object.entries(state)) {
    // Canonical ISO UTC (what the state catalogue passes on) from its cache; anything else parsed.
    let timestamp = parseTimestamp(v.timestamp)?.iso;
    if (timestamp === undefined) {
      const ms = Date.parse(v.timestamp);
      if (!Number.isFinite(ms)) throw new TypeError(`invalid timestamp: ${v.timestamp}`);
      timestamp = new Date(ms).toISOString();
    }
    out[name] = { timestamp, value: v.value ?? null };
  }
  return out;
}
