/**
 * SQLite schema, as numbered migrations applied in order and recorded in `schema_migrations`.
 * Never edit a released migration: add the next number. Timestamps are epoch milliseconds
 * (INTEGER) so comparisons and ordering are exact; JSON values are TEXT.
 */
import type { Migration } from '../store.js';

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE api_clients (
  client_id   TEXT PRIMARY KEY,
  fleet_id    TEXT NOT NULL,
  name        TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  scopes      TEXT NOT NULL,
  created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE credentials (
  credentials_id   TEXT PRIMARY KEY,
  fleet_id         TEXT NOT NULL,
  telematics_brand TEXT NOT NULL,
  name             TEXT,
  sealed_secret    TEXT NOT NULL,
  sealed_state     TEXT,
  version          INTEGER NOT NULL,
  created_at       INTEGER NOT NULL,
  modified_at      INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX credentials_fleet_idx ON credentials (fleet_id, credentials_id);

CREATE TABLE vehicles (
  vehicle_id              TEXT PRIMARY KEY,
  fleet_id                TEXT NOT NULL,
  telematics_brand        TEXT NOT NULL,
  telematics_unit_id      TEXT NOT NULL,
  vehicle_model_id        TEXT NOT NULL,
  unit_password_hash      TEXT,
  -- RESTRICT: credentials cannot be deleted while a vehicle uses them.
  credentials_id          TEXT REFERENCES credentials (credentials_id) ON DELETE RESTRICT,
  capabilities            TEXT NOT NULL,
  master_data             TEXT NOT NULL,
  custom_fields           TEXT NOT NULL,
  tags                    TEXT NOT NULL,
  operation_status        TEXT NOT NULL,
  setup_status            TEXT NOT NULL,
  setup_failure_reason    TEXT,
  life_status             TEXT NOT NULL,
  life_status_modified_at INTEGER NOT NULL,
  version                 INTEGER NOT NULL,
  created_at              INTEGER NOT NULL,
  modified_at             INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX vehicles_telematics_unit_idx ON vehicles (telematics_brand, telematics_unit_id);
CREATE UNIQUE INDEX vehicles_fleet_idx ON vehicles (fleet_id, vehicle_id);
CREATE INDEX vehicles_fleet_brand_idx ON vehicles (fleet_id, telematics_brand, vehicle_id);
CREATE INDEX vehicles_fleet_setup_idx ON vehicles (fleet_id, setup_status, vehicle_id);
CREATE INDEX vehicles_credentials_idx ON vehicles (credentials_id) WHERE credentials_id IS NOT NULL;
CREATE INDEX vehicles_stale_setup_idx ON vehicles (created_at) WHERE setup_status = 'IN_PROGRESS';

-- One row per (vehicle, tag), kept in step with vehicles.tags, so a tag filter walks an index
-- in vehicle_id order instead of scanning the fleet.
CREATE TABLE vehicle_tags (
  fleet_id   TEXT NOT NULL,
  tag        TEXT NOT NULL,
  vehicle_id TEXT NOT NULL REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  PRIMARY KEY (fleet_id, tag, vehicle_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX vehicle_tags_vehicle_idx ON vehicle_tags (vehicle_id);

CREATE TABLE vehicle_state (
  vehicle_id TEXT NOT NULL REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  property   TEXT NOT NULL,
  ts         INTEGER NOT NULL,
  value      TEXT NOT NULL,
  PRIMARY KEY (vehicle_id, property)
) STRICT, WITHOUT ROWID;

CREATE TABLE commands (
  flow_id      TEXT PRIMARY KEY,
  fleet_id     TEXT NOT NULL,
  client_id    TEXT NOT NULL,
  vehicle_id   TEXT NOT NULL REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  command      TEXT NOT NULL,
  adapter      TEXT NOT NULL,
  instance_id  TEXT NOT NULL,
  status       TEXT NOT NULL,
  problem_type TEXT,
  detail       TEXT,
  delivery     TEXT,
  steps        TEXT,
  requested_at INTEGER NOT NULL,
  deadline_at  INTEGER NOT NULL,
  completed_at INTEGER,
  duration_ms  INTEGER
) STRICT;
-- Single flight per vehicle (SPEC §1), enforced by the database so it holds across instances.
CREATE UNIQUE INDEX commands_single_flight_idx ON commands (vehicle_id) WHERE status = 'IN_FLIGHT';
CREATE INDEX commands_vehicle_idx ON commands (vehicle_id, requested_at, flow_id);
CREATE INDEX commands_deadline_idx ON commands (deadline_at) WHERE status = 'IN_FLIGHT';

CREATE TABLE idempotency_keys (
  fleet_id    TEXT NOT NULL,
  key         TEXT NOT NULL,
  vehicle_id  TEXT NOT NULL REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  command     TEXT NOT NULL,
  flow_id     TEXT NOT NULL,
  status_code INTEGER,
  response    TEXT,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (fleet_id, key)
) STRICT;
CREATE INDEX idempotency_keys_vehicle_idx ON idempotency_keys (vehicle_id);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
`,
  },
  {
    version: 2,
    name: 'event consumers',
    sql: `
CREATE TABLE event_consumers (
  event_consumer_id TEXT PRIMARY KEY,
  fleet_id          TEXT NOT NULL,
  topics            TEXT NOT NULL,
  queues            TEXT NOT NULL,
  created_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX event_consumers_fleet_idx ON event_consumers (fleet_id, created_at);
`,
  },
];
