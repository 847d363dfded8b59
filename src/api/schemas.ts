import { type Static, Type } from 'typebox';
import { COMMANDS, commandToPath } from '../domain/commands.js';
import { PROBLEM_KEYS, PROBLEMS, problemTypeUri } from '../domain/problems.js';
import { STATE_CATALOGUE, type StatePropertyDefinition } from '../domain/state-catalogue.js';
import { FUEL_TYPES, OPERATION_STATUSES, SETUP_STATUSES, VEHICLE_TYPES } from '../domain/vehicle.js';
import type { CommandStep as CommandStepRecord, Delivery } from '../store/store.js';

/**
 * JSON schemas of the HTTP API. The same schemas validate requests (Fastify/Ajv) and generate
 * /openapi.json, so the documentation cannot drift from what is enforced.
 */

const Str = (max: number, extra: object = {}) => Type.String({ minLength: 1, maxLength: max, ...extra });

export const VehicleIdParam = Type.Object({
  vehicle_id: Type.String({ pattern: '^[0-9A-Z]{1,64}$', description: 'The opaque vehicle id.' }),
});

export const CommandParams = Type.Object({
  vehicle_id: VehicleIdParam.properties.vehicle_id,
  // An unknown name fails this and answers 404: path parameters name resources.
  command: Type.Enum(COMMANDS.map(commandToPath), { description: 'The command in kebab-case.' }),
});

export const MasterData = Type.Object(
  {
    vin: Type.Optional(
      Type.String({ pattern: '^[A-HJ-NPR-Z0-9]{17}$', description: 'ISO 3779 VIN: 17 characters, no I, O or Q.' }),
    ),
    license_plate: Type.Optional(Str(30)),
    brand: Type.Optional(Str(100)),
    model: Type.Optional(Str(100)),
    fuel_type: Type.Optional(Type.Enum(FUEL_TYPES)),
    vehicle_type: Type.Optional(Type.Enum(VEHICLE_TYPES)),
  },
  { additionalProperties: false },
);

// PATCH: each member may be null to remove it.
const MasterDataPatch = Type.Object(
  Object.fromEntries(
    Object.entries(MasterData.properties).map(([k, v]) => [k, Type.Optional(Type.Union([Type.Null(), v]))]),
  ),
  { additionalProperties: false },
);

const CustomFields = Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), Type.String({ maxLength: 1000 }), {
  maxProperties: 50,
  description: 'Free string fields of the operator (≤ 50, keys ≤ 64 characters of A–Z a–z 0–9 _ . -).',
});
const CustomFieldsPatch = Type.Record(
  Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
  Type.Union([Type.Null(), Type.String({ maxLength: 1000 })]),
  {
    maxProperties: 50,
  },
);
const Tag = Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' });
const Tags = Type.Array(Tag, { maxItems: 50 });

const OperationStatus = Type.Enum(OPERATION_STATUSES);
const SetupStatus = Type.Enum(SETUP_STATUSES);

export const AddVehicleBody = Type.Object(
  {
    telematics_brand: Type.String({ pattern: '^[A-Z][A-Z0-9_]{0,31}$', description: 'See GET /telematics-brands.' }),
    telematics_unit_id: Type.String({
      pattern: '^[A-Za-z0-9_.:-]{1,64}$',
      description: "The unit's id at its brand (MQTT unit id, IMEI, provider vehicle id).",
    }),
    vehicle_model_id: Type.Optional(Type.String({ maxLength: 64 })),
    password: Type.Optional(
      Type.String({
        minLength: 12,
        maxLength: 128,
        description:
          "The unit's own password, for brands whose units authenticate (FLEETGATE). Stored hashed; never returned.",
      }),
    ),
    credentials_id: Type.Optional(Type.String({ maxLength: 64 })),
    master_data: Type.Optional(MasterData),
    custom_fields: Type.Optional(CustomFields),
    tags: Type.Optional(Tags),
    operation_status: Type.Optional(OperationStatus),
  },
  { additionalProperties: false },
);

export const PatchVehicleBody = Type.Object(
  {
    master_data: Type.Optional(MasterDataPatch),
    custom_fields: Type.Optional(CustomFieldsPatch),
    tags: Type.Optional(Tags),
    operation_status: Type.Optional(OperationStatus),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const ListVehiclesQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    page_token: Type.Optional(Type.String({ maxLength: 400 })),
    telematics_brand: Type.Optional(Type.String({ maxLength: 32 })),
    setup_status: Type.Optional(SetupStatus),
    tags: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.:,-]{1,650}$' }), {
        maxItems: 10,
        description: 'Vehicles carrying all these tags; repeat the parameter or separate by commas.',
      }),
    ),
  },
  { additionalProperties: false },
);

export const ListCommandsQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    page_token: Type.Optional(Type.String({ maxLength: 400 })),
  },
  { additionalProperties: false },
);

function stateValueSchema(p: StatePropertyDefinition) {
  const t = p.type;
  switch (t.kind) {
    case 'boolean':
      return Type.Boolean();
    case 'enum':
      return Type.Enum(t.values);
    case 'position':
      return Type.Object({
        lat: Type.Number({ minimum: -90, maximum: 90 }),
        lon: Type.Number({ minimum: -180, maximum: 180 }),
      });
    case 'number':
      return t.integer
        ? Type.Integer({ minimum: t.minimum, maximum: t.maximum })
        : Type.Number({ minimum: t.minimum, maximum: t.maximum });
  }
}

export const VehicleState = Type.Object(
  Object.fromEntries(
    STATE_CATALOGUE.map((p) => [
      p.name,
      Type.Optional(
        Type.Object(
          { timestamp: Type.String({ format: 'date-time' }), value: stateValueSchema(p) },
          {
            description: `${p.description}${p.type.kind === 'number' && p.type.unit ? ` Unit: ${p.type.unit}.` : ''} Needs state capability ${p.capability}.`,
          },
        ),
      ),
    ]),
  ),
  { description: "Vehicle state: only properties the vehicle's state capabilities allow." },
);

export const Capabilities = Type.Object({
  commands: Type.Array(Type.Enum(COMMANDS)),
  vehicle_state: Type.Array(Type.String()),
});

export const Vehicle = Type.Object({
  vehicle_id: Type.String(),
  vehicle_model_id: Type.String(),
  telematics_unit: Type.Object({ id: Type.String(), brand: Type.String(), model: Type.String() }),
  capabilities: Capabilities,
  setup_status: SetupStatus,
  setup_failure_reason: Type.Optional(Type.String()),
  life_status: Type.Object({
    value: Type.Union([Type.Literal('ONLINE'), Type.Literal('OFFLINE')]),
    modified_at: Type.String({ format: 'date-time' }),
  }),
  operation_status: OperationStatus,
  credentials_id: Type.Optional(Type.String()),
  master_data: MasterData,
  custom_fields: Type.Record(Type.String(), Type.String()),
  tags: Type.Array(Type.String()),
  created_at: Type.String({ format: 'date-time' }),
  modified_at: Type.String({ format: 'date-time' }),
});

export const VehiclePage = Type.Object({
  items: Type.Array(Vehicle),
  next_page_token: Type.Union([Type.String(), Type.Null()]),
});

const DELIVERIES = ['NOT_DELIVERED', 'DELIVERED', 'DELIVERED_OUTCOME_UNKNOWN'] as const satisfies readonly Delivery[];

export const CommandStep = Type.Object({
  command: Type.Enum(COMMANDS),
  outcome: Type.Enum([
    'SUCCEEDED',
    'FAILED',
    'NOT_EXECUTED',
  ] as const satisfies readonly CommandStepRecord['outcome'][]),
  problem_type: Type.Optional(Type.String({ description: 'The problem type of a failed step.' })),
  detail: Type.Optional(Type.String()),
});

export const CommandRecord = Type.Object({
  flow_id: Type.String({ format: 'uuid' }),
  vehicle_id: Type.String(),
  client_id: Type.String({ description: 'The API client; `console` for a command sent from the console.' }),
  user_id: Type.Union([Type.String(), Type.Null()], {
    description: 'The console user who sent it; null for API clients.',
  }),
  user_email: Type.Union([Type.String(), Type.Null()], { description: "That user's email at the time." }),
  command: Type.Enum(COMMANDS),
  adapter: Type.String(),
  instance_id: Type.String(),
  status: Type.Enum(['IN_FLIGHT', 'SUCCEEDED', 'FAILED', 'OUTCOME_UNKNOWN'] as const),
  problem_type: Type.Union([Type.String(), Type.Null()]),
  detail: Type.Union([Type.String(), Type.Null()]),
  delivery: Type.Union([Type.Enum(DELIVERIES), Type.Null()], {
    description:
      'Whether the unit got the command: DELIVERED, NOT_DELIVERED (safe to retry), DELIVERED_OUTCOME_UNKNOWN (request the state before retrying); null while in flight or when it never reached delivery.',
  }),
  steps: Type.Union([Type.Array(CommandStep), Type.Null()], {
    description: 'Each step of a combined command run as ordered steps; null otherwise.',
  }),
  requested_at: Type.String({ format: 'date-time' }),
  completed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  duration_ms: Type.Union([Type.Integer(), Type.Null()]),
});

export const CommandPage = Type.Object({
  items: Type.Array(CommandRecord),
  next_page_token: Type.Union([Type.String(), Type.Null()]),
});

export const Problem = Type.Object(
  {
    type: Type.Enum(PROBLEM_KEYS.map(problemTypeUri), { description: 'The problem type; see /problems.' }),
    type_documentation: Type.String({ format: 'uri' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    flow_id: Type.String({ format: 'uuid' }),
  },
  { additionalProperties: true, description: 'RFC 9457 problem details (application/problem+json).' },
);

/** `Problem` as the shared schema `components.schemas.Problem` (server.ts registers it). */
export const PROBLEM_SCHEMA_ID = 'Problem';
const ProblemRef = Type.Unsafe<Static<typeof Problem>>({ $ref: `${PROBLEM_SCHEMA_ID}#` });

type ProblemStatus = number | '4xx' | '5xx';
type ProblemResponse = {
  description: string;
  headers?: Record<string, { type: string; description: string }>;
  content: { 'application/problem+json': { schema: typeof ProblemRef } };
};

const RETRY_AFTER = { 'Retry-After': { type: 'integer', description: 'Seconds to wait before retrying.' } };
const PROBLEM_HEADERS: Partial<Record<ProblemStatus, ProblemResponse['headers']>> = {
  401: {
    'WWW-Authenticate': {
      type: 'string',
      description: 'RFC 6750 challenge, e.g. `Bearer realm="fleetgate", error="invalid_token"`.',
    },
  },
  403: {
    'WWW-Authenticate': {
      type: 'string',
      description: 'RFC 6750 challenge with `error="insufficient_scope"` and the `scope` needed.',
    },
  },
  429: RETRY_AFTER,
  503: RETRY_AFTER,
};

function problemDescription(status: ProblemStatus): string {
  if (status === '4xx') return 'The request is malformed (its URL, headers or body).';
  if (status === '5xx') return 'fleetgate failed to answer.';
  const keys = PROBLEM_KEYS.filter((k) => PROBLEMS[k].status === status);
  if (keys.length === 0) return `Problem with status ${status}.`;
  return `Problem ${keys.map((k) => `\`${problemTypeUri(k)}\``).join(' or ')}.`;
}

/**
 * Error responses of a route, each `application/problem+json` with the shared Problem schema
 * and a description naming the problem types of that status, e.g.
 * `response: { 200: Vehicle, ...problemResponses(404, 409) }`. The OpenAPI lint in `npm test`
 * (scripts/openapi.ts) fails for a route that declares no 4xx.
 */
export function problemResponses(...statuses: ProblemStatus[]): Record<ProblemStatus, ProblemResponse> {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: problemDescription(status),
        ...(PROBLEM_HEADERS[status] ? { headers: PROBLEM_HEADERS[status] } : {}),
        content: { 'application/problem+json': { schema: ProblemRef } },
      },
    ]),
  ) as Record<ProblemStatus, ProblemResponse>;
}

/**
 * The problems any route that needs a scope can answer: 400 (invalid parameters), 401 (token),
 * 403 (scope), 429 (rate limit), 500 (a bug), 503 (database down, also while checking the
 * token), plus the route's own `statuses`.
 */
export function scopedProblemResponses(...statuses: ProblemStatus[]): Record<ProblemStatus, ProblemResponse> {
  return problemResponses(400, 401, 403, 429, 500, 503, ...statuses);
}

export const TokenResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer(),
  scope: Type.String(),
});

export const VehicleModelSchema = Type.Object({
  id: Type.String(),
  brand: Type.String(),
  model: Type.String(),
  vehicle_type: Type.String(),
  capabilities: Capabilities,
});

export const UserRole = Type.Enum(['viewer', 'operator', 'admin'] as const, {
  description: 'viewer sees everything of its fleet; operator also sends commands; admin may do everything.',
});

export const User = Type.Object({
  user_id: Type.String(),
  fleet_id: Type.String(),
  email: Type.String(),
  role: UserRole,
  created_at: Type.String({ format: 'date-time' }),
  modified_at: Type.String({ format: 'date-time' }),
});

export const ApiClientView = Type.Object({
  client_id: Type.String(),
  fleet_id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  created_at: Type.String({ format: 'date-time' }),
});
