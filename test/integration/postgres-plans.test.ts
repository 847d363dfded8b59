import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COMPLETE_COMMANDS_SQL,
  MERGE_STATES_SQL,
  START_COMMAND_SQL,
  START_COMMANDS_SQL,
} from '../../src/store/postgres/command-path-sql.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { vehicle } from '../contract/store.contract.js';
import { createTestDatabase } from '../helpers/postgres.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

/** Every table a plan reads in full. */
function sequentialScans(node: PlanNode): string[] {
  const own = node['Node Type'] === 'Seq Scan' && node['Relation Name'] ? [node['Relation Name']] : [];
  return [...own, ...(node.Plans ?? []).flatMap(sequentialScans)];
}

// The batched command-path statements join JSON record sets (which the planner always estimates
// at 100 rows) to the tables. Without key filters, PostgreSQL hash-joined whole tables: every
// completion batch scanned all of `commands`, ever slower as commands accumulate. The plans are
// checked as the server runs them from the store's named statements: generic, on a fleet big
// enough that a full scan is never the cheap choice.
describe('PostgreSQL command path: every table read by key (docs/performance.md)', () => {
  let drop: () => Promise<void>;
  let client: pg.Client;

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    const store = new PostgresStore({ url: db.url });
    await store.migrate();
    const template = vehicle({ setup_status: 'SUCCEEDED' });
    await store.insertVehicle(template);
    await store.close();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(
      `INSERT INTO vehicles (vehicle_id, fleet_id, telematics_brand, telematics_unit_id, vehicle_model_id,
         unit_password_hash, credentials_id, capabilities, master_data, custom_fields, tags, operation_status,
         setup_status, setup_failure_reason, life_status, life_status_modified_at, version, created_at, modified_at)
       SELECT 'V' || i, fleet_id, telematics_brand, 'unit-' || i, vehicle_model_id, unit_password_hash, credentials_id,
         capabilities, master_data, custom_fields, tags, operation_status, setup_status, setup_failure_reason,
         life_status, life_status_modified_at, version, created_at, modified_at
       FROM vehicles, generate_series(1, 5000) AS i WHERE vehicle_id = $1`,
      [template.vehicle_id],
    );
    await client.query(
      `INSERT INTO vehicle_state (vehicle_id, property, ts, value)
       SELECT vehicle_id, p, now(), '1' FROM vehicles, unnest(ARRAY['mileage_in_kilometers', 'ignition', 'central_lock']) AS p`,
    );
    await client.query(
      `INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
         requested_at, deadline_at, completed_at, duration_ms)
       SELECT gen_random_uuid()::text, fleet_id, 'c', vehicle_id, 'UNLOCK_CENTRAL_LOCK', telematics_brand, 'i',
         'SUCCEEDED', now(), now(), now(), 1
       FROM vehicles, generate_series(1, 4)`,
    );
    await client.query(`INSERT INTO vehicle_trips (vehicle_id, start) SELECT vehicle_id, '{}' FROM vehicles`);
    await client.query('ANALYZE');
    await client.query('SET plan_cache_mode = force_generic_plan');
  });

  afterAll(async () => {
    await client?.end();
    await drop?.();
  });

  async function planOf(name: string, sql: string, params: unknown[]): Promise<PlanNode> {
    await client.query(`PREPARE ${name} AS ${sql}`);
    // EXECUTE takes no bind parameters: literals, which the prepared statement's casts type.
    const literals = params.map((p) => client.escapeLiteral(Array.isArray(p) ? `{${p.join(',')}}` : String(p)));
    const { rows } = await client.query(`EXPLAIN (FORMAT JSON) EXECUTE ${name}(${literals.join(', ')})`);
    return (rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]!.Plan;
  }

  it('startCommand reads the vehicles by primary key, not the fleet/setup index or the table', async () => {
    const record = { flow_id: 'f1', fleet_id: 'fleet-a', vehicle_id: 'V17', command: 'UNLOCK_CENTRAL_LOCK' };
    const plan = await planOf('start_commands', START_COMMANDS_SQL, [JSON.stringify([record]), ['V17']]);
    expect(sequentialScans(plan)).toEqual([]);
    expect(JSON.stringify(plan)).not.toContain('vehicles_fleet_setup_idx');
  });

  it('a lone command starts through the vehicles primary key too', async () => {
    const now = new Date().toISOString();
    const plan = await planOf('start_command', START_COMMAND_SQL, [
      'f2',
      'fleet-a',
      'c',
      'V18',
      'UNLOCK_CENTRAL_LOCK',
      'i',
      '',
      '',
      '',
      'null',
      now,
      now,
      '',
      '',
    ]);
    expect(sequentialScans(plan)).toEqual([]);
    expect(JSON.stringify(plan)).not.toContain('vehicles_fleet_setup_idx');
  });

  it('a completion batch updates its records and merges state by key', async () => {
    const plan = await planOf('complete_commands', COMPLETE_COMMANDS_SQL, [
      JSON.stringify([{ flow_id: 'f1', status: 'SUCCEEDED' }]),
      JSON.stringify([{ vehicle_id: 'V17', property: 'ignition', ts: new Date().toISOString(), value: 'OFF' }]),
      ['f1'],
      ['V17'],
      JSON.stringify([{ kind: 'recorded', vehicle_id: 'V17', env: { metadata: {}, data: {} } }]),
    ]);
    // The outbox's CTEs too read vehicles, state and trips by key.
    expect(sequentialScans(plan)).toEqual([]);
  });

  it('a batch of state reports merges state and writes its events by key', async () => {
    const ts = new Date().toISOString();
    const plan = await planOf('merge_states', MERGE_STATES_SQL, [
      JSON.stringify([
        { vehicle_id: 'V17', property: 'ignition', ts, value: 'OFF' },
        { vehicle_id: 'V18', property: 'ignition', ts, value: 'ON' },
      ]),
      ['V17', 'V18'],
      JSON.stringify([{ kind: 'recorded', vehicle_id: 'V17', env: { metadata: {}, data: {} } }]),
    ]);
    expect(sequentialScans(plan)).toEqual([]);
  });
});
