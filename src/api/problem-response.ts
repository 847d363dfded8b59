import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { PROBLEMS, ProblemError, type ProblemKey, problemTypeUri } from '../domain/problems.js';
import { StoreUnavailableError } from '../store/store.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Absolute base URL of this API as the client sees it (for `type_documentation`). */
export function baseUrl(request: FastifyRequest, publicUrl: string | undefined): string {
  if (publicUrl) return publicUrl;
  const host =
    request.headers.host && /^[A-Za-z0-9.:[\]-]{1,255}$/.test(request.headers.host)
      ? request.headers.host
      : 'localhost';
  return `${request.protocol}://${host}`;
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

/** Renders one problem (SPEC §2): the fixed members, then extension members. */
export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  publicUrl: string | undefined,
  key: ProblemKey,
  detail: string,
  extensions: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): FastifyReply {
  const def = PROBLEMS[key];
  const body = {
    ...extensions,
    type: problemTypeUri(key),
    type_documentation: `${baseUrl(request, publicUrl)}${problemTypeUri(key)}`,
    title: def.title,
    status: def.status,
    detail,
    flow_id: request.id,
  };
  const retryAfter = retryAfterHeader(key, extensions);
  if (retryAfter !== undefined) reply.header('Retry-After', retryAfter);
  for (const [name, value] of Object.entries(headers)) reply.header(name, value);
  return reply.status(def.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
}

interface ValidationItem {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

const CONTEXT_NAMES: Record<string, string> = { body: '', querystring: '', params: '', headers: '' };

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
    if (item.keyword === 'additionalProperties') path.push(String(item.params.additionalProperty));
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

/**
 * The one error handler: every error becomes problem+json. Domain errors carry their type;
 * framework errors are mapped by code; anything else is a bug, logged with the flow_id.
 */
export function problemErrorHandler(publicUrl: string | undefined) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (error instanceof ProblemError) {
      return sendProblem(request, reply, publicUrl, error.key, error.message, error.extensions, error.headers);
    }
    if (error.validation) {
      const errors = validationErrors(error.validation as ValidationItem[], error.validationContext);
      const detail = errors.map((e) => `${e.field}: ${e.message}`).join('; ');
      return sendProblem(request, reply, publicUrl, 'validation-error', detail, { errors });
    }
    if (error instanceof StoreUnavailableError) {
      request.log.error({ err: error }, 'database unavailable');
      return sendProblem(
        request,
        reply,
        publicUrl,
        'service-unavailable',
        'The database of this fleetgate instance cannot be reached. Retry later.',
      );
    }
    switch (error.code) {
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return sendProblem(
          request,
          reply,
          publicUrl,
          'validation-error',
          `Content-Type: '${request.headers['content-type'] ?? ''}' is not accepted; send application/json.`,
          {
            errors: [{ field: 'Content-Type', message: 'must be application/json' }],
          },
        );
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendProblem(
          request,
          reply,
          publicUrl,
          'validation-error',
          'The request body is larger than this endpoint accepts.',
          {
            errors: [{ field: 'body', message: 'too large' }],
          },
        );
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return sendProblem(request, reply, publicUrl, 'validation-error', 'Content-Length does not match the body.', {
          errors: [{ field: 'Content-Length', message: 'does not match the body' }],
        });
    }
    if (error.statusCode === 429) {
      return sendProblem(request, reply, publicUrl, 'too-many-requests', error.message);
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      request.log.warn({ err: error }, 'client error without a problem mapping');
      return sendProblem(request, reply, publicUrl, 'validation-error', error.message, {
        errors: [{ field: 'request', message: error.message }],
      });
    }
    request.log.error({ err: error }, 'unhandled error');
    return sendProblem(
      request,
      reply,
      publicUrl,
      'internal-server-error',
      `An internal error occurred. Please contact support and quote the flow_id ${request.id}.`,
    );
  };
}
