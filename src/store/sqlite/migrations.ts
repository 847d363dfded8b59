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
    name: 'console users and sessions',
    sql: `
CREATE TABLE console_users (
  user_id       TEXT PRIMARY KEY,
  fleet_id      TEXT NOT NULL,
  email         TEXT NOT NULL UNIQUE,
  role          TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  created_at    INTEGER NOT NULL,
  modified_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX console_users_fleet_idx ON console_users (fleet_id, email);

CREATE TABLE console_sessions (
  session_hash TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL REFERENCES console_users (user_id) ON DELETE CASCADE,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

CREATE TABLE sign_in_failures (
  throttle_key    TEXT PRIMARY KEY,
  failures        INTEGER NOT NULL,
  last_failure_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sign_in_failures_last_idx ON sign_in_failures (last_failure_at);

-- The console user who sent a command (SPEC §9); NULL for API clients.
ALTER TABLE commands ADD COLUMN user_id TEXT;
ALTER TABLE commands ADD COLUMN user_email TEXT;
`,
  },
  {
    version: 3,
    name: 'event outbox, trips, event cursors, channel records',
    sql: `
-- The outbox (docs/events.md): written in the same transaction as the change each row describes.
-- seq is assigned under SQLite's single write lock, so seq order is commit order.
CREATE TABLE events (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  id          TEXT NOT NULL,
  fleet_id    TEXT NOT NULL,
  vehicle_id  TEXT NOT NULL,
  type        TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  envelope    TEXT NOT NULL
) STRICT;
CREATE INDEX events_fleet_idx ON events (fleet_id, seq);

-- Where pruning has reached (a cursor before it answers "expired"), and other feed-wide values.
CREATE TABLE event_feed (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

-- The start of each vehicle's running trip (ignition turned ON), for the Trip event.
CREATE TABLE vehicle_trips (
  vehicle_id TEXT PRIMARY KEY REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  start      TEXT NOT NULL
) STRICT;

-- Durable named cursors of delivery channels, with the lease of the instance delivering.
CREATE TABLE event_cursors (
  name        TEXT PRIMARY KEY,
  position    TEXT,
  owner       TEXT,
  lease_until INTEGER NOT NULL DEFAULT 0
) STRICT;

-- What delivery channels keep (webhook subscriptions, event consumers) and their logs.
CREATE TABLE channel_records (
  kind     TEXT NOT NULL,
  id       TEXT NOT NULL,
  fleet_id TEXT NOT NULL,
  doc      TEXT NOT NULL,
  version  INTEGER NOT NULL,
  PRIMARY KEY (kind, id)
) STRICT;
CREATE INDEX channel_records_fleet_idx ON channel_records (kind, fleet_id, id);

CREATE TABLE channel_logs (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  kind       TEXT NOT NULL,
  record_id  TEXT NOT NULL,
  entry      TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX channel_logs_record_idx ON channel_logs (kind, record_id, id);
`,
  },
];
