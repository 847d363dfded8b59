/**
 * PostgreSQL schema, as numbered migrations applied in order under an advisory lock and recorded
 * in `schema_migrations`. Never edit a released migration: add the next number.
 */
import type { Migration } from '../store.js';

export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE api_clients (
  client_id   text PRIMARY KEY,
  fleet_id    text NOT NULL,
  name        text NOT NULL,
  secret_hash text NOT NULL,
  scopes      jsonb NOT NULL,
  created_at  timestamptz NOT NULL
);

CREATE TABLE credentials (
  credentials_id   text COLLATE "C" PRIMARY KEY,
  fleet_id         text NOT NULL,
  telematics_brand text NOT NULL,
  name             text,
  sealed_secret    text NOT NULL,
  sealed_state     text,
  version          integer NOT NULL,
  created_at       timestamptz NOT NULL,
  modified_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX credentials_fleet_idx ON credentials (fleet_id, credentials_id);

CREATE TABLE vehicles (
  vehicle_id              text COLLATE "C" PRIMARY KEY,
  fleet_id                text NOT NULL,
  telematics_brand        text NOT NULL,
  telematics_unit_id      text NOT NULL,
  vehicle_model_id        text NOT NULL,
  unit_password_hash      text,
  -- RESTRICT: credentials cannot be deleted while a vehicle uses them.
  credentials_id          text COLLATE "C" REFERENCES credentials (credentials_id) ON DELETE RESTRICT,
  capabilities            jsonb NOT NULL,
  master_data             jsonb NOT NULL,
  custom_fields           jsonb NOT NULL,
  tags                    jsonb NOT NULL,
  operation_status        text NOT NULL,
  setup_status            text NOT NULL,
  setup_failure_reason    text,
  life_status             text NOT NULL,
  life_status_modified_at timestamptz NOT NULL,
  version                 integer NOT NULL,
  created_at              timestamptz NOT NULL,
  modified_at             timestamptz NOT NULL,
  CONSTRAINT vehicles_telematics_unit_key UNIQUE (telematics_brand, telematics_unit_id)
);
CREATE UNIQUE INDEX vehicles_fleet_idx ON vehicles (fleet_id, vehicle_id);
CREATE INDEX vehicles_fleet_brand_idx ON vehicles (fleet_id, telematics_brand, vehicle_id);
CREATE INDEX vehicles_fleet_setup_idx ON vehicles (fleet_id, setup_status, vehicle_id);
CREATE INDEX vehicles_credentials_idx ON vehicles (credentials_id) WHERE credentials_id IS NOT NULL;
CREATE INDEX vehicles_stale_setup_idx ON vehicles (created_at) WHERE setup_status = 'IN_PROGRESS';

-- One row per (vehicle, tag), kept in step with vehicles.tags, so a tag filter walks an index
-- in vehicle_id order instead of sorting every match.
CREATE TABLE vehicle_tags (
  fleet_id   text NOT NULL,
  tag        text NOT NULL,
  vehicle_id text COLLATE "C" NOT NULL REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  PRIMARY KEY (fleet_id, tag, vehicle_id)
);
CREATE INDEX vehicle_tags_vehicle_idx ON vehicle_tags (vehicle_id);

CREATE TABLE vehicle_state (
  vehicle_id text COLLATE "C" NOT NULL REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  property   text NOT NULL,
  ts         timestamptz NOT NULL,
  value      jsonb NOT NULL,
  PRIMARY KEY (vehicle_id, property)
);

CREATE TABLE commands (
  flow_id      text COLLATE "C" PRIMARY KEY,
  fleet_id     text NOT NULL,
  client_id    text NOT NULL,
  vehicle_id   text COLLATE "C" NOT NULL REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  command      text NOT NULL,
  adapter      text NOT NULL,
  instance_id  text NOT NULL,
  status       text NOT NULL,
  problem_type text,
  detail       text,
  delivery     text,
  steps        jsonb,
  requested_at timestamptz NOT NULL,
  deadline_at  timestamptz NOT NULL,
  completed_at timestamptz,
  duration_ms  integer
);
-- Single flight per vehicle (SPEC §1), enforced by the database so it holds across instances.
CREATE UNIQUE INDEX commands_single_flight_idx ON commands (vehicle_id) WHERE status = 'IN_FLIGHT';
CREATE INDEX commands_vehicle_idx ON commands (vehicle_id, requested_at, flow_id);
CREATE INDEX commands_deadline_idx ON commands (deadline_at) WHERE status = 'IN_FLIGHT';

CREATE TABLE idempotency_keys (
  fleet_id    text NOT NULL,
  key         text NOT NULL,
  vehicle_id  text COLLATE "C" NOT NULL REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  command     text NOT NULL,
  flow_id     text NOT NULL,
  status_code integer,
  response    jsonb,
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (fleet_id, key)
);
CREATE INDEX idempotency_keys_vehicle_idx ON idempotency_keys (vehicle_id);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
`,
  },
  {
    version: 2,
    name: 'console users and sessions',
    sql: `
CREATE TABLE console_users (
  user_id       text PRIMARY KEY,
  fleet_id      text NOT NULL,
  email         text NOT NULL UNIQUE,
  role          text NOT NULL,
  password_hash text NOT NULL,
  created_at    timestamptz NOT NULL,
  modified_at   timestamptz NOT NULL
);
CREATE INDEX console_users_fleet_idx ON console_users (fleet_id, email);

CREATE TABLE console_sessions (
  session_hash text PRIMARY KEY,
  user_id      text NOT NULL REFERENCES console_users (user_id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

CREATE TABLE sign_in_failures (
  throttle_key    text PRIMARY KEY,
  failures        integer NOT NULL,
  last_failure_at timestamptz NOT NULL
);
CREATE INDEX sign_in_failures_last_idx ON sign_in_failures (last_failure_at);

-- The console user who sent a command (SPEC §9); NULL for API clients.
ALTER TABLE commands ADD COLUMN user_id text, ADD COLUMN user_email text;
`,
  },
  {
    version: 3,
    name: 'event outbox, trips, event cursors, channel records',
    sql: `
-- The outbox (docs/events.md), written in the same transaction as the change each row describes.
-- seq comes from a sequence before commit, so seq order is not commit order: a reader could see
-- seq 11 committed while seq 10 is still in flight, and skip 10 for good. So every row records its
-- transaction (xid), and readers order by (xid, seq) and read only rows of transactions older
-- than every one still running (pg_snapshot_xmin): those never change any more.
CREATE TABLE events (
  seq        bigserial PRIMARY KEY,
  xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
  id         text NOT NULL,
  fleet_id   text NOT NULL,
  vehicle_id text NOT NULL,
  type       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  envelope   jsonb NOT NULL
);
CREATE INDEX events_feed_idx ON events (xid, seq);
CREATE INDEX events_fleet_idx ON events (fleet_id, xid, seq);

CREATE TABLE event_feed (
  key   text PRIMARY KEY,
  value text NOT NULL
);

-- The start of each vehicle's running trip (ignition turned ON), for the Trip event.
CREATE TABLE vehicle_trips (
  vehicle_id text COLLATE "C" PRIMARY KEY REFERENCES vehicles (vehicle_id) ON DELETE CASCADE,
  start      jsonb NOT NULL
);

-- Durable named cursors of delivery channels, with the lease of the instance delivering.
CREATE TABLE event_cursors (
  name        text PRIMARY KEY,
  position    text,
  owner       text,
  lease_until timestamptz NOT NULL DEFAULT 'epoch'
);

CREATE TABLE channel_records (
  kind     text NOT NULL,
  id       text COLLATE "C" NOT NULL,
  fleet_id text NOT NULL,
  doc      jsonb NOT NULL,
  version  integer NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE INDEX channel_records_fleet_idx ON channel_records (kind, fleet_id, id);

CREATE TABLE channel_logs (
  id         bigserial PRIMARY KEY,
  kind       text NOT NULL,
  record_id  text NOT NULL,
  entry      jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_logs_record_idx ON channel_logs (kind, record_id, id);
CREATE INDEX channel_logs_created_idx ON channel_logs (created_at);
`,
  },
];
