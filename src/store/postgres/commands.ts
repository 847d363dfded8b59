import { commandFinishedEvent } from '../../domain/events.js';
import { type CommandCompletion, type CommandRecord, EXPIRED_COMMAND } from '../store.js';
import { FINISH_COMMAND_SQL, finishCommandValues } from './command-path-sql.js';
import type { PostgresConnection } from './connection.js';
import type { PostgresEventLog } from './postgres-event-log.js';
import { commandFromRow } from './rows.js';

/**
 * Command records outside the command path's batched statements (command-path.ts): finishing one
 * without a report, reading and listing them, and expiring those past their deadline.
 */
export class CommandRecords {
  constructor(
    private readonly db: PostgresConnection,
    private readonly events: PostgresEventLog,
  ) {}

  async finishCommand(flowId: string, c: CommandCompletion): Promise<void> {
    await this.events.transaction(async (client) => {
      const { rows } = await this.db.q(`${FINISH_COMMAND_SQL} RETURNING *`, finishCommandValues(flowId, c), client);
      if (rows[0]) await this.events.insert(client, [commandFinishedEvent(commandFromRow(rows[0]))]);
    });
  }

  async getCommand(flowId: string): Promise<CommandRecord | undefined> {
    const { rows } = await this.db.q('SELECT * FROM commands WHERE flow_id = $1', [flowId]);
    return rows[0] && commandFromRow(rows[0]);
  }

  async listCommands(vehicleId: string, limit: number, before?: string): Promise<CommandRecord[]> {
    const { rows } =
      before === undefined
        ? await this.db.q(
            'SELECT * FROM commands WHERE vehicle_id = $1 ORDER BY requested_at DESC, flow_id DESC LIMIT $2',
            [vehicleId, limit],
          )
        : // A cursor that is not one of this vehicle's commands yields an empty page.
          await this.db.q(
            `SELECT c.* FROM commands c JOIN commands k ON k.flow_id = $2 AND k.vehicle_id = $1
              WHERE c.vehicle_id = $1 AND (c.requested_at, c.flow_id) < (k.requested_at, k.flow_id)
              ORDER BY c.requested_at DESC, c.flow_id DESC LIMIT $3`,
            [vehicleId, before, limit],
          );
    return rows.map(commandFromRow);
  }

  async expireCommands(now: string): Promise<number> {
    return this.events.transaction(async (c) => {
      const { rows } = await this.db.q(
        `UPDATE commands
          SET status = 'OUTCOME_UNKNOWN', delivery = 'DELIVERED_OUTCOME_UNKNOWN',
              problem_type = COALESCE(problem_type, $2), detail = COALESCE(detail, $3),
              completed_at = $1,
              -- Capped: a record left in flight for weeks must not overflow the integer column.
              duration_ms = LEAST(2147483647, GREATEST(0, round(extract(epoch FROM ($1::timestamptz - requested_at)) * 1000)))::integer
        WHERE status = 'IN_FLIGHT' AND deadline_at < $1 RETURNING *`,
        [now, EXPIRED_COMMAND.problem_type, EXPIRED_COMMAND.detail],
        c,
      );
      await this.events.insert(
        c,
        rows.map((r) => commandFinishedEvent(commandFromRow(r))),
      );
      return rows.length;
    });
  }
}
