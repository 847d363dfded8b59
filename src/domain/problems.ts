/**
 * The problem catalogue (SPEC §2): the single source of every problem type fleetgate answers
 * with. `type`, `title` and `status` are fixed per type; titles follow the reference document
 * where it gives them. The HTTP error handler renders these, the docs pages served under
 * /problems/... are generated from `description`, and a test asserts docs/problems.md lists
 * exactly these types.
 */
export const PROBLEMS = {
  'validation-error': {
    status: 400,
    title: 'The request is invalid.',
    description:
      'A path parameter, query parameter, header or body field is invalid. The `errors` member lists each invalid field with its location (`field`) and what is wrong (`message`).',
  },
  'invalid-json': {
    status: 400,
    title: 'The request body is not valid JSON.',
    description: 'The request body could not be parsed as JSON. The detail says where parsing stopped.',
  },
  'malformed-request': {
    status: 400,
    title: 'The request is not well-formed HTTP.',
    description:
      'The request could not be read as HTTP/1.1 (RFC 9112): for example an invalid request line, a header with forbidden characters, both `Transfer-Encoding` and `Content-Length`, bare line feeds, invalid percent-encoding in the path, or no `Host` header. The connection is closed after this answer.',
  },
  'referenced-resource-not-found': {
    status: 400,
    title: 'A referenced resource cannot be found.',
    description:
      'The body names something that does not exist, for example an unknown `vehicle_model_id` or `credentials_id`.',
  },
  'invalid-credentials': {
    status: 401,
    title: 'The credentials are invalid.',
    description:
      'The access token is missing, malformed, forged or expired, or the client id and secret do not match. Request a new token at `POST /auth/oauth/token`.',
  },
  'forbidden-resource': {
    status: 403,
    title: 'Access to the resource is forbidden.',
    description: 'The access token is valid but lacks the scope the endpoint needs. The detail names the scope.',
  },
  'resource-not-found': {
    status: 404,
    title: 'The resource cannot be found.',
    description:
      'The path names nothing the caller may see: an unknown vehicle, a vehicle of another fleet, or an unknown command.',
  },
  'method-not-allowed': {
    status: 405,
    title: 'The method is not allowed for this resource.',
    description:
      'The path exists but does not support the request method. The `Allow` header lists the methods it supports.',
  },
  'request-timeout': {
    status: 408,
    title: 'The request was not received in time.',
    description:
      'The request headers or body did not arrive within the time this server waits. The connection is closed.',
  },
  'events/cursor-expired': {
    status: 410,
    title: 'The event cursor is older than the retained events.',
    description:
      'The events after this cursor were deleted (retention, `--event-retention-hours`). Events in between are lost to this reader: read again without `after` (from the oldest retained event) and reconcile with `GET /vehicles/{id}` and its state.',
  },
  'vehicle/command-not-supported': {
    status: 409,
    title: 'The command is not supported by the vehicle.',
    description:
      "The vehicle lacks the command capability. This answer is given every time, before anything is sent to the vehicle; see the vehicle's `capabilities.commands`.",
  },
  'vehicle/conflicting-state': {
    status: 409,
    title: 'The vehicle is in a state that conflicts with the command.',
    description:
      "The telematics unit refused the command because of the vehicle's state, for example locking while the vehicle moves or the ignition is on. Nothing was changed.",
  },
  'vehicle/conflicting-command': {
    status: 409,
    title: 'Another command is being executed for the vehicle.',
    description:
      'Only one command at a time runs per vehicle, across all fleetgate instances. Retry once the first command has finished.',
  },
  'vehicle/conflicting-setup-status': {
    status: 409,
    title: 'The setup status of the vehicle conflicts with the request.',
    description:
      "The vehicle's setup has not succeeded yet (`setup_status` is `IN_PROGRESS` or `FAILED`), so it cannot take commands.",
  },
  'conflicting-resource': {
    status: 409,
    title: 'The resource conflicts with an existing resource.',
    description: 'For example, the telematics unit is already part of a vehicle, or the resource is still in use.',
  },
  'resource-modified': {
    status: 412,
    title: 'The resource has been modified.',
    description: 'The `If-Match` header does not match the current `ETag` of the resource. Read it again and retry.',
  },
  'content-too-large': {
    status: 413,
    title: 'The request body is too large.',
    description: 'The request body is larger than this endpoint accepts. The detail gives the limit in bytes.',
  },
  'uri-too-long': {
    status: 414,
    title: 'The request URI is too long.',
    description: 'A path segment or the whole target is longer than this server reads.',
  },
  'unsupported-media-type': {
    status: 415,
    title: 'The media type of the request body is not supported.',
    description:
      'The `Content-Type` of the body is not one the endpoint reads; the `Accept-Post` or `Accept-Patch` header lists those it does (usually `application/json`).',
  },
  'expectation-failed': {
    status: 417,
    title: 'The expectation cannot be met.',
    description:
      'The `Expect` header holds something other than `100-continue`, the only expectation HTTP/1.1 defines.',
  },
  'request-header-fields-too-large': {
    status: 431,
    title: 'The request header fields are too large.',
    description: 'The request headers together are larger than this server reads. The connection is closed.',
  },
  'too-many-requests': {
    status: 429,
    title: 'Too many requests.',
    description: 'The client exceeded its rate limit. Retry after the number of seconds in the `Retry-After` header.',
  },
  'internal-server-error': {
    status: 500,
    title: 'Internal Server Error',
    description:
      'A bug in fleetgate. Quote the `flow_id` when reporting it; the server log holds the details under that id.',
  },
  'telematics-unit/error': {
    status: 500,
    title: 'The telematics unit reported an error.',
    description:
      "The command reached the telematics unit, which reported that it failed to execute it. The detail carries the unit's reason.",
  },
  'third-party/error': {
    status: 502,
    title: 'An error occurred at a third party API or protocol.',
    description:
      'The OEM or third-party telematics API answered with an error or an unusable response. The detail names the provider and its request id.',
  },
  'service-unavailable': {
    status: 503,
    title: 'The service is unavailable.',
    description:
      "fleetgate's own database or message broker cannot be reached. Retry later; `/health/ready` reports when it is back.",
  },
  'vehicle/no-connection': {
    status: 504,
    title: 'No connection to vehicle',
    description:
      'The telematics unit is not connected, or did not answer within the time budget. The `delivery` member says whether the command was `NOT_DELIVERED` (safe to retry) or `DELIVERED_OUTCOME_UNKNOWN` (request the vehicle state before retrying). Commands are never queued for later delivery.',
  },
} as const satisfies Record<string, { status: number; title: string; description: string }>;

export type ProblemKey = keyof typeof PROBLEMS;

export const PROBLEM_KEYS = Object.keys(PROBLEMS) as ProblemKey[];

export function problemTypeUri(key: ProblemKey): string {
  return `/problems/${key}`;
}

/**
 * A domain error carrying a problem type. Services and adapters throw these; the one HTTP error
 * handler renders them as problem+json. `extensions` become extra members of the problem.
 */
export class ProblemError extends Error {
  readonly key: ProblemKey;
  readonly status: number;
  readonly extensions: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(
    key: ProblemKey,
    detail: string,
    extensions: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'ProblemError';
    this.key = key;
    this.status = PROBLEMS[key].status;
    this.extensions = extensions;
    this.headers = headers;
  }
}

export function isProblemError(e: unknown): e is ProblemError {
  return e instanceof ProblemError;
}

/** One invalid field of a request: where (`field`, as the client wrote it) and what is wrong. */
export interface FieldError {
  field: string;
  message: string;
}

type HeaderMap = Record<string, string>;

/** 400 validation-error for one field, with a detail of its own. */
function invalidField(detail: string, field: string, message: string, extensions: Record<string, unknown> = {}) {
  return new ProblemError('validation-error', detail, { ...extensions, errors: [{ field, message }] });
}

/**
 * One constructor per problem fleetgate answers with, grouped by type in the catalogue's order:
 * each problem's detail is written here once, and reads the same wherever it comes from (the
 * catalogue above fixes type, title and status). `headers` parameters take what only the HTTP
 * layer knows, such as an RFC 6750 `WWW-Authenticate` challenge.
 */
export const problems = {
  // 400 validation-error

  /** Every invalid field at once, each in `errors`; the detail lists them. */
  validation(errors: readonly FieldError[]): ProblemError {
    return new ProblemError('validation-error', errors.map((e) => `${e.field}: ${e.message}`).join('; '), {
      errors: [...errors],
    });
  },
  /** One invalid field. */
  field(field: string, message: string): ProblemError {
    return problems.validation([{ field, message }]);
  },
  /** A request that cannot be valid, said in a sentence (e.g. a rule of a nested value). */
  invalidRequest(message: string): ProblemError {
    return new ProblemError('validation-error', `${message}.`);
  },
  idempotencyKeyReused(): ProblemError {
    return invalidField(
      'Idempotency-Key: this key was already used for a different command or vehicle.',
      'Idempotency-Key',
      'already used for another request; use a new key per command',
    );
  },
  unknownEventTypes(unknown: readonly string[], known: readonly string[]): ProblemError {
    return invalidField(
      `types: unknown event type(s) ${unknown.join(', ')}.`,
      'types',
      `unknown: ${unknown.join(', ')}; known: ${known.join(', ')}`,
    );
  },
  unknownTopics(unknown: readonly string[], known: readonly string[]): ProblemError {
    return invalidField(
      `Unknown topic(s): ${unknown.join(', ')}.`,
      'topics',
      `unknown: ${unknown.join(', ')}; known: ${known.join(', ')}`,
    );
  },
  notAnEventCursor(field: string, cursor: string): ProblemError {
    return invalidField(
      `${field}: '${cursor}' is not an event cursor.`,
      field,
      'not a cursor this feed handed out (next_cursor, or an SSE id)',
    );
  },
  invalidPageToken(): ProblemError {
    return invalidField(
      'page_token: not a page token of this list',
      'page_token',
      'must be a next_page_token returned by this list',
    );
  },
  invalidIfMatch(): ProblemError {
    return invalidField(
      'The If-Match header must be an ETag of this resource, e.g. "3".',
      'If-Match',
      'must be a quoted ETag as returned in the ETag header',
    );
  },
  /** A form body that is JSON: the client sent JSON without its Content-Type. */
  jsonSentAsForm(): ProblemError {
    return new ProblemError(
      'validation-error',
      'The body looks like JSON but is sent as application/x-www-form-urlencoded; send it with Content-Type: application/json (or as a form).',
      { errors: [{ field: 'Content-Type', message: 'does not match the body' }], error: 'invalid_request' },
    );
  },
  /** Secrets in the query string (`found`: the parameter names). */
  credentialsInUrl(found: readonly string[]): ProblemError {
    return new ProblemError(
      'validation-error',
      `Credentials must not be sent in the URL (${found.join(', ')}): send client credentials with HTTP Basic in the Authorization header or in the form body, and access tokens as 'Authorization: Bearer'. Treat a secret sent this way as exposed and rotate it.`,
      {
        error: 'invalid_request',
        errors: found.map((name) => ({
          field: `query.${name}`,
          message: 'credentials go in the Authorization header or the request body, never in the URL',
        })),
      },
    );
  },
  grantTypeMissing(): ProblemError {
    return invalidField('grant_type is missing; send grant_type=client_credentials.', 'grant_type', 'is required', {
      error: 'invalid_request',
    });
  },
  grantTypeUnsupported(grant: string): ProblemError {
    return invalidField(
      `grant_type '${grant}' is not supported; fleetgate issues tokens for client_credentials only.`,
      'grant_type',
      'must be client_credentials',
      { error: 'unsupported_grant_type' },
    );
  },
  scopeNotGranted(denied: readonly string[]): ProblemError {
    return invalidField(
      `The client may not request scope(s) ${denied.join(', ')}.`,
      'scope',
      `not granted to this client: ${denied.join(', ')}`,
      { error: 'invalid_scope' },
    );
  },

  // 400 referenced-resource-not-found

  referencedCredentialsNotFound(credentialsId: string, brand: string): ProblemError {
    return new ProblemError(
      'referenced-resource-not-found',
      `The credentials '${credentialsId}' for telematics brand ${brand} cannot be found.`,
      { errors: [{ field: 'credentials_id', message: 'no such credentials of this brand in the fleet' }] },
    );
  },
  vehicleModelNotFound(modelId: string, brand: string): ProblemError {
    return new ProblemError(
      'referenced-resource-not-found',
      `The vehicle model '${modelId}' of telematics brand ${brand} cannot be found.`,
      {
        errors: [
          {
            field: 'vehicle_model_id',
            message: `unknown model; see GET /telematics-brands/${brand}/available-vehicle-models`,
          },
        ],
      },
    );
  },

  // 400 invalid-json, malformed-request

  /** `reason`: where the parser stopped. */
  invalidJson(reason: string): ProblemError {
    return new ProblemError('invalid-json', `The request body is not valid JSON: ${reason}.`);
  },
  missingHost(): ProblemError {
    return new ProblemError('malformed-request', 'An HTTP/1.1 request must carry a Host header (RFC 9112 §3.2).');
  },

  // 401 invalid-credentials

  clientCredentialsMissing(): ProblemError {
    return new ProblemError(
      'invalid-credentials',
      'Client credentials are missing; use HTTP Basic client_id:client_secret.',
      { error: 'invalid_client' },
    );
  },
  wrongClientSecret(): ProblemError {
    return new ProblemError('invalid-credentials', 'The client id or client secret is wrong.', {
      error: 'invalid_client',
    });
  },
  /** `header`: whether an Authorization header was sent at all. */
  bearerTokenMissing(header: boolean, headers: HeaderMap): ProblemError {
    return new ProblemError(
      'invalid-credentials',
      header
        ? 'The Authorization header is not a bearer token; send `Authorization: Bearer <access_token>`.'
        : 'The Authorization header is missing; send `Authorization: Bearer <access_token>`.',
      {},
      headers,
    );
  },
  accessTokenMalformed(): ProblemError {
    return new ProblemError('invalid-credentials', 'The access token is malformed.');
  },
  accessTokenInvalid(): ProblemError {
    return new ProblemError('invalid-credentials', 'The access token is invalid.');
  },
  accessTokenExpired(): ProblemError {
    return new ProblemError('invalid-credentials', 'The access token has expired; request a new one.');
  },
  accessTokenWithoutFleetOrScope(): ProblemError {
    return new ProblemError('invalid-credentials', 'The access token lacks its fleet or scope.');
  },
  accessTokenClientGone(): ProblemError {
    return new ProblemError('invalid-credentials', 'The API client of this access token no longer exists.');
  },
  metricsTokenRequired(headers: HeaderMap): ProblemError {
    return new ProblemError(
      'invalid-credentials',
      '/metrics needs `Authorization: Bearer <metrics token>` (the --metrics-token setting).',
      {},
      headers,
    );
  },
  notSignedIn(): ProblemError {
    return new ProblemError('invalid-credentials', 'Not signed in to the console.');
  },
  wrongEmailOrPassword(): ProblemError {
    return new ProblemError('invalid-credentials', 'The email or password is wrong.');
  },
  consoleSessionUnknown(): ProblemError {
    return new ProblemError('invalid-credentials', 'The console session is unknown or ended; sign in again.');
  },
  consoleSessionExpired(): ProblemError {
    return new ProblemError('invalid-credentials', 'The console session has expired; sign in again.');
  },

  // 403 forbidden-resource

  tokenLacksScope(scope: string, headers: HeaderMap): ProblemError {
    return new ProblemError(
      'forbidden-resource',
      `The access token lacks the scope '${scope}' this endpoint needs.`,
      { required_scope: scope },
      headers,
    );
  },
  roleLacksScope(role: string, scope: string): ProblemError {
    return new ProblemError(
      'forbidden-resource',
      `The console role '${role}' lacks the scope '${scope}' this endpoint needs.`,
      { required_scope: scope },
    );
  },
  consoleHeaderMissing(header: string): ProblemError {
    return new ProblemError(
      'forbidden-resource',
      `A request with the console's session cookie must carry the header ${header}.`,
    );
  },
  originRefused(origin: string): ProblemError {
    return new ProblemError('forbidden-resource', `Requests from the origin '${origin}' are refused.`);
  },

  // 404 resource-not-found

  /** A vehicle: also another fleet's (never 403). */
  vehicleNotFound(vehicleId: string): ProblemError {
    return new ProblemError('resource-not-found', `The vehicle with ID '${vehicleId}' cannot be found.`);
  },
  /** A command path segment that names no command. */
  commandNotFound(command: string): ProblemError {
    return new ProblemError('resource-not-found', `The command '${command}' does not exist.`);
  },
  telematicsBrandNotFound(brand: string): ProblemError {
    return new ProblemError('resource-not-found', `The telematics brand '${brand}' cannot be found.`);
  },
  credentialsNotFound(credentialsId: string): ProblemError {
    return new ProblemError('resource-not-found', `The credentials '${credentialsId}' cannot be found.`);
  },
  apiClientNotFound(clientId: string): ProblemError {
    return new ProblemError('resource-not-found', `The API client '${clientId}' does not exist.`);
  },
  userNotFound(userId: string): ProblemError {
    return new ProblemError('resource-not-found', `The user '${userId}' does not exist.`);
  },
  webhookNotFound(id: string): ProblemError {
    return new ProblemError('resource-not-found', `The webhook with ID '${id}' cannot be found.`);
  },
  webhookDeliveryNotFound(id: string, deliveryId: string): ProblemError {
    return new ProblemError('resource-not-found', `The delivery '${deliveryId}' of webhook '${id}' cannot be found.`);
  },
  eventConsumerNotFound(id: string): ProblemError {
    return new ProblemError('resource-not-found', `No event consumer '${id}' exists in this fleet.`);
  },

  // 410 events/cursor-expired

  /** `field`: the parameter that carried the cursor. */
  cursorExpired(field: string, cursor: string): ProblemError {
    return new ProblemError(
      'events/cursor-expired',
      `The events after cursor '${cursor}' are no longer retained; read from the oldest retained event (without ${field}).`,
      { cursor },
    );
  },

  // 409 vehicle/...

  /** `command`: as it appears in the path. */
  commandNotSupported(command: string, vehicleId: string): ProblemError {
    return new ProblemError(
      'vehicle/command-not-supported',
      `The command '${command}' is not supported by the vehicle '${vehicleId}'.`,
    );
  },
  /** Single flight per vehicle. */
  conflictingCommand(vehicleId: string): ProblemError {
    return new ProblemError(
      'vehicle/conflicting-command',
      `Another command is being executed for the vehicle '${vehicleId}'.`,
    );
  },
  /** The first request with the same Idempotency-Key (flow `flowId`) has not finished. */
  idempotentRequestInFlight(flowId: string): ProblemError {
    return new ProblemError(
      'vehicle/conflicting-command',
      `A request with this Idempotency-Key is still being executed (flow ${flowId}).`,
      { original_flow_id: flowId },
    );
  },
  setupNotSucceeded(vehicle: {
    vehicle_id: string;
    setup_status: string;
    setup_failure_reason: string | null;
  }): ProblemError {
    const reason = vehicle.setup_failure_reason ? ` (${vehicle.setup_failure_reason})` : '';
    return new ProblemError(
      'vehicle/conflicting-setup-status',
      `The setup of vehicle '${vehicle.vehicle_id}' is ${vehicle.setup_status}${reason}; it cannot take commands yet.`,
      { setup_status: vehicle.setup_status },
    );
  },

  // 409 conflicting-resource

  unitAlreadyUsed(unitId: string, brand: string): ProblemError {
    return new ProblemError(
      'conflicting-resource',
      `The telematics unit '${unitId}' of brand ${brand} is already part of a vehicle.`,
    );
  },

  credentialsInUse(credentialsId: string): ProblemError {
    return new ProblemError(
      'conflicting-resource',
      `The credentials '${credentialsId}' are still used by vehicles; delete those vehicles first.`,
    );
  },
  userEmailTaken(email: string): ProblemError {
    return new ProblemError('conflicting-resource', `A user with the email '${email}' exists already.`);
  },
  tooManyEventConsumers(count: number): ProblemError {
    return new ProblemError(
      'conflicting-resource',
      `The fleet has ${count} event consumers, the most it may have; delete one first.`,
    );
  },

  // 412 resource-modified

  /** If-Match no longer matches. */
  vehicleModified(vehicleId: string): ProblemError {
    return new ProblemError(
      'resource-modified',
      `The vehicle '${vehicleId}' was modified since the given ETag; read it again.`,
    );
  },

  // 429 too-many-requests (each with its Retry-After)

  rateLimited(maxPerMinute: number, retryAfterS: number): ProblemError {
    return new ProblemError(
      'too-many-requests',
      `Rate limit of ${maxPerMinute} requests per minute exceeded; retry in ${retryAfterS} s.`,
      {},
      { 'Retry-After': String(retryAfterS) },
    );
  },
  tokenRequestsThrottled(retryAfterS: number): ProblemError {
    return new ProblemError(
      'too-many-requests',
      `Too many failed attempts for this client; retry in ${retryAfterS} s.`,
      { error: 'temporarily_unavailable' },
      { 'Retry-After': String(retryAfterS) },
    );
  },
  signInThrottled(retryAfterS: number): ProblemError {
    return new ProblemError(
      'too-many-requests',
      `Too many failed sign-ins for this account; try again in ${retryAfterS} s.`,
      {},
      { 'Retry-After': String(retryAfterS) },
    );
  },

  // 503 service-unavailable

  unitNotProvisioned(): ProblemError {
    return new ProblemError(
      'service-unavailable',
      'The unit could not be provisioned in the message broker; nothing was added. Retry later.',
    );
  },

  shuttingDown(): ProblemError {
    return new ProblemError('service-unavailable', 'This fleetgate instance is shutting down; retry on another.');
  },
  brokerUnreachable(): ProblemError {
    return new ProblemError('service-unavailable', 'The message broker (RabbitMQ) cannot be reached; retry later.');
  },
  amqpNotConfigured(): ProblemError {
    return new ProblemError(
      'service-unavailable',
      'This fleetgate publishes no events over AMQP: its operator has not set --amqp-url (FLEETGATE_AMQP_URL).',
    );
  },
  webhookBusy(): ProblemError {
    return new ProblemError('service-unavailable', 'The webhook is being changed by others; retry.');
  },
};
