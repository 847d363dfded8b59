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

/**
 * Constructors of the problems that arise in more than one place, so each reads the same
 * wherever it comes from (the catalogue above fixes type, title and status; these the detail).
 */
export const problems = {
  /** 400: every invalid field at once, each in `errors`; the detail lists them. */
  validation(errors: readonly FieldError[]): ProblemError {
    return new ProblemError('validation-error', errors.map((e) => `${e.field}: ${e.message}`).join('; '), {
      errors: [...errors],
    });
  },
  /** 400 for one field. */
  field(field: string, message: string): ProblemError {
    return problems.validation([{ field, message }]);
  },
  /** 404 for a vehicle: also for another fleet's (never 403). */
  vehicleNotFound(vehicleId: string): ProblemError {
    return new ProblemError('resource-not-found', `The vehicle with ID '${vehicleId}' cannot be found.`);
  },
  /** 412: If-Match no longer matches. */
  vehicleModified(vehicleId: string): ProblemError {
    return new ProblemError(
      'resource-modified',
      `The vehicle '${vehicleId}' was modified since the given ETag; read it again.`,
    );
  },
  /** 409: single flight per vehicle. */
  conflictingCommand(vehicleId: string): ProblemError {
    return new ProblemError(
      'vehicle/conflicting-command',
      `Another command is being executed for the vehicle '${vehicleId}'.`,
    );
  },
};
