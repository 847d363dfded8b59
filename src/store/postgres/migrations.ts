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
    name: 'event consumers',
    sql: `
CREATE TABLE event_consumers (
  event_consumer_id text PRIMARY KEY,
  fleet_id          text NOT NULL,
  topics            jsonb NOT NULL,
  queues            jsonb NOT NULL,
  created_at        timestamptz NOT NULL
);
CREATE INDEX event_consumers_fleet_idx ON event_consumers (fleet_id, created_at);
`,
  },
];
