import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { PROBLEMS, ProblemError, type ProblemKey, problemTypeUri } from '../domain/problems.js';
import { StoreUnavailableError } from '../store/store.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * Where `type_documentation` links point: the configured public URL, or one derived from the
 * listen address. Never the request's `Host` header, which any client can set.
 */
export type PublicBase = string | (() => string);

const resolveBase = (base: PublicBase): string => (typeof base === 'function' ? base() : base);

/** The problem document (RFC 9457): extension members first, fixed members win. */
export function problemBody(
  base: PublicBase,
  key: ProblemKey,
  detail: string,
  flowId: string,
  extensions: Record<string, unknown> = {},
): Record<string, unknown> {
  const def = PROBLEMS[key];
  return {
    ...extensions,
    type: problemTypeUri(key),
    type_documentation: `${resolveBase(base)}${problemTypeUri(key)}`,
    title: def.title,
    status: def.status,
    detail,
    flow_id: flowId,
  };
}

/** How long a client should wait before retrying, in seconds (RFC 9110 §10.2.3). */
const SERVICE_UNAVAILABLE_RETRY_S = 5;

/**
 * The `Retry-After` header of a problem, from its type and members: a third party's own wait
 * (`retry_after_seconds`), or a fixed short wait when fleetgate's database or broker is down.
 */
export function retryAfterHeader(key: ProblemKey, extensions: Record<string, unknown>): string | undefined {
  const seconds = extensions.retry_after_seconds;
  if (typeof seconds === 'number' && Number.isFinite(seconds)) return String(Math.ceil(seconds));
  if (key === 'service-unavailable') return String(SERVICE_UNAVAILABLE_RETRY_S);
  return undefined;
}

/** Renders one problem: the fixed members, then extension members. */
export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  base: PublicBase,
  key: ProblemKey,
  detail: string,
  extensions: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): FastifyReply {
  const body = problemBody(base, key, detail, request.id, extensions);
  const retryAfter = retryAfterHeader(key, extensions);
  if (retryAfter !== undefined) reply.header('Retry-After', retryAfter);
  for (const [name, value] of Object.entries(headers)) reply.header(name, value);
  reply.header('X-Flow-ID', request.id);
  return reply.status(PROBLEMS[key].status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
}

/**
 * A problem written as a whole HTTP/1.1 response, for errors Node's HTTP parser raises before
 * any request object exists (`clientError`): the connection is closed after it.
 */
export function rawProblemResponse(base: PublicBase, key: ProblemKey, detail: string, flowId: string): string {
  const def = PROBLEMS[key];
  const body = JSON.stringify(problemBody(base, key, detail, flowId));
  return [
    `HTTP/1.1 ${def.status} ${STATUS_CODES[def.status] ?? 'Error'}`,
    `Content-Type: ${PROBLEM_CONTENT_TYPE}`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Flow-ID: ${flowId}`,
    'Connection: close',
    '',
    body,
  ].join('\r\n');
}

interface ValidationItem {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

const CONTEXT_NAMES: Record<string, string> = { body: '', querystring: '', params: '', headers: '' };

function fieldName(key: string): string {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(key) ? key : '<a key that is not a field name (not shown)>';
}

/** Turns Ajv errors into `[{field, message}]`, naming each field as the client wrote it. */
export function validationErrors(
  items: readonly ValidationItem[],
  context: string | undefined,
): { field: string; message: string }[] {
  return items.map((item) => {
    const path = item.instancePath
      .split('/')
      .slice(1)
      .map((seg) => seg.replaceAll('~1', '/').replaceAll('~0', '~'));
    if (item.keyword === 'required') path.push(String(item.params.missingProperty));
    // A key the client sent is named only when it looks like a field name: a mislabelled body can
    // turn a whole JSON text, password included, into one key, which must not be echoed.
    if (item.keyword === 'additionalProperties') path.push(fieldName(String(item.params.additionalProperty)));
    let field = path.reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : acc ? `${acc}.${seg}` : seg), '');
    if (!field) field = context && context in CONTEXT_NAMES ? context : 'body';
    let message = item.message ?? 'is invalid';
    if (item.keyword === 'additionalProperties') message = 'is not a known field';
    if (item.keyword === 'enum' || (item.keyword === 'anyOf' && Array.isArray(item.params.allowedValues))) {
      message = `must be one of ${(item.params.allowedValues as unknown[]).join(', ')}`;
    }
    return { field, message };
  });
}

/** Framework error codes that are the client's fault, by the problem they answer. */
const FRAMEWORK_PROBLEMS: Record<string, ProblemKey> = {
  FST_ERR_BAD_URL: 'malformed-request',
  FST_ERR_MAX_PARAM_LENGTH: 'uri-too-long',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'malformed-request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid-json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid-json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'content-too-large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported-media-type',
  FST_ERR_CTP_INVALID_TYPE: 'unsupported-media-type',
};

/**
 * The one error handler: every error becomes problem+json. Domain errors carry their type;
 * framework errors are mapped by code; anything else is a bug, logged with the flow_id.
 */
export function problemErrorHandler(base: PublicBase, options: { bodyLimit?: number } = {}) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (error instanceof ProblemError) {
      return sendProblem(request, reply, base, error.key, error.message, error.extensions, error.headers);
    }
    if (error.validation) {
      // A path parameter names a resource: one that cannot exist names nothing (RFC 9110 §15.5.5).
      if (error.validationContext === 'params') {
        return sendProblem(request, reply, base, 'resource-not-found', `Nothing is found at ${pathOf(request)}.`);
      }
      const errors = validationErrors(error.validation as ValidationItem[], error.validationContext);
      const detail = errors.map((e) => `${e.field}: ${e.message}`).join('; ');
      return sendProblem(request, reply, base, 'validation-error', detail, { errors });
    }
    if (error instanceof StoreUnavailableError) {
      request.log.error({ err: error }, 'database unavailable');
      return sendProblem(
        request,
        reply,
        base,
        'service-unavailable',
        'The database of this fleetgate instance cannot be reached. Retry later.',
      );
    }
    const mapped = error.code ? FRAMEWORK_PROBLEMS[error.code] : undefined;
    if (mapped === 'unsupported-media-type') {
      const given = request.headers['content-type'] ?? '';
      return sendProblem(
        request,
        reply,
        base,
        mapped,
        `Content-Type '${given.slice(0, 100)}' is not accepted here; send application/json.`,
        {},
        { [request.method === 'PATCH' ? 'Accept-Patch' : 'Accept-Post']: 'application/json' },
      );
    }
    if (mapped === 'content-too-large') {
      discardRestOfBody(request, reply);
      const limit = options.bodyLimit ? ` of ${options.bodyLimit} bytes` : '';
      return sendProblem(request, reply, base, mapped, `The request body is larger than the limit${limit}.`);
    }
    if (mapped === 'uri-too-long') {
      return sendProblem(request, reply, base, mapped, 'A path segment is longer than this server reads.');
    }
    if (mapped) {
      return sendProblem(request, reply, base, mapped, `The request is malformed: ${error.message}`);
    }
    if (error.statusCode === 429) {
      return sendProblem(request, reply, base, 'too-many-requests', error.message);
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      request.log.warn({ err: error }, 'client error without a problem mapping');
      return sendProblem(request, reply, base, 'validation-error', error.message, {
        errors: [{ field: 'request', message: error.message }],
      });
    }
    request.log.error({ err: error }, 'unhandled error');
    return sendProblem(
      request,
      reply,
      base,
      'internal-server-error',
      `An internal error occurred. Please contact support and quote the flow_id ${request.id}.`,
    );
  };
}

/** Most a refused body is read and discarded for, so its sender can read the 413 (see below). */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Fastify closes the connection after a refused body, which resets a client still sending it
 * (a 20 MiB upload sees EPIPE, never the 413). Reading the rest and discarding it lets the client
 * finish and read the answer; the length delimits the body, so the connection stays in sync. A
 * body beyond DISCARD_MAX_BYTES is cut off.
 */
function discardRestOfBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.complete || raw.destroyed) return;
  reply.removeHeader('connection');
  let discarded = 0;
  raw.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DISCARD_MAX_BYTES) raw.socket.destroy();
  });
  raw.resume();
}

/** The request's path for a detail message, bounded and without its query (which may hold secrets). */
export function pathOf(request: FastifyRequest): string {
  const path = request.url.split('?')[0] ?? '';
  return `${request.method} ${path.length > 200 ? `${path.slice(0, 200)}…` : path}`;
}
