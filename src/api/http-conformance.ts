import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { PROBLEMS, type ProblemKey, problems } from '../domain/problems.js';
import { isUuid } from '../lib/ids.js';
import {
  PROBLEM_CONTENT_TYPE,
  type PublicBase,
  pathOf,
  problemBody,
  rawProblemResponse,
  sendProblem,
} from './problem-response.js';

// RFC 9110 and RFC 9457 where Fastify and Node answer on their own: every error fleetgate gives,
// even one Node's HTTP parser raises before a request exists, is problem+json with a flow id.

/** What llhttp's error codes mean, in words a client's developer can act on. */
const PARSER_ERRORS: Record<string, { key: ProblemKey; detail: string }> = {
  HPE_HEADER_OVERFLOW: {
    key: 'request-header-fields-too-large',
    detail: 'The request line and headers together exceed the size this server reads.',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    key: 'request-timeout',
    detail: 'The request did not arrive completely within the time this server waits.',
  },
  ERR_HTTP_HEADERS_TIMEOUT: {
    key: 'request-timeout',
    detail: 'The request headers did not arrive within the time this server waits.',
  },
  HPE_UNEXPECTED_CONTENT_LENGTH: {
    key: 'malformed-request',
    detail: 'The request has both Transfer-Encoding and Content-Length (RFC 9112 §6.1); send one.',
  },
  HPE_LF_EXPECTED: { key: 'malformed-request', detail: 'Lines of the request must end with CRLF (RFC 9112 §2.2).' },
  HPE_CR_EXPECTED: { key: 'malformed-request', detail: 'Lines of the request must end with CRLF (RFC 9112 §2.2).' },
  HPE_INVALID_URL: { key: 'malformed-request', detail: 'The request target is not a valid URI path.' },
  HPE_INVALID_METHOD: { key: 'malformed-request', detail: 'The request method is not a valid HTTP method.' },
  HPE_INVALID_VERSION: { key: 'malformed-request', detail: 'The request line does not end with HTTP/1.0 or HTTP/1.1.' },
  HPE_INVALID_HEADER_TOKEN: { key: 'malformed-request', detail: 'A header name or value has a forbidden character.' },
  HPE_INVALID_CONTENT_LENGTH: {
    key: 'malformed-request',
    detail: 'Content-Length is invalid, or sent together with Transfer-Encoding (RFC 9112 §6.1).',
  },
  HPE_INVALID_TRANSFER_ENCODING: {
    key: 'malformed-request',
    detail: 'Transfer-Encoding must end with chunked (RFC 9112 §6.1).',
  },
  HPE_INVALID_CHUNK_SIZE: { key: 'malformed-request', detail: 'A chunk size of the chunked body is invalid.' },
};

/** Grace for a client to read its error answer before the connection is closed under it. */
const LINGER_MS = 2_000;

/**
 * Fastify's `clientErrorHandler`: Node's HTTP parser refused the bytes on a connection (or the
 * request timed out). Answer with a problem when nothing has been written on the socket for the
 * current request, then close gracefully: unread bytes are discarded, not met with a reset that
 * could destroy the answer before the client reads it.
 */
export function clientErrorProblem(base: PublicBase, logger: Logger): (error: Error, socket: Socket) => void {
  const answered = new WeakSet<Socket>();
  return (error, socket) => {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (answered.has(socket)) return;
    answered.add(socket);
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (code === 'ECONNRESET' || socket.destroyed || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const known = PARSER_ERRORS[code] ?? {
      key: 'malformed-request' as const,
      detail: 'The request is not valid HTTP/1.1 (RFC 9112).',
    };
    // llhttp's reason names the rule broken ("Expected CRLF after version"), never the bytes sent.
    const reason = (error as { reason?: unknown }).reason;
    const detail = typeof reason === 'string' && reason ? `${known.detail} (${reason.slice(0, 100)})` : known.detail;
    const flowId = randomUUID();
    logger.debug({ flow_id: flowId, code, remote: socket.remoteAddress }, 'malformed request refused');
    socket.end(rawProblemResponse(base, known.key, detail, flowId));
    discardAndClose(socket);
  };
}

function discardAndClose(socket: Socket): void {
  socket.removeAllListeners('data');
  socket.on('data', () => {});
  socket.resume();
  socket.once('end', () => socket.destroy());
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/** Writes a problem on a raw Node response, for requests Node answers before Fastify sees them. */
function writeProblem(base: PublicBase, req: IncomingMessage, res: ServerResponse, key: ProblemKey, detail: string) {
  const given = req.headers['x-flow-id'];
  const flowId = isUuid(given) ? given : randomUUID();
  const body = JSON.stringify(problemBody(base, key, detail, flowId));
  res.shouldKeepAlive = false;
  res.writeHead(PROBLEMS[key].status, {
    'Content-Type': PROBLEM_CONTENT_TYPE,
    'Content-Length': Buffer.byteLength(body),
    'X-Flow-ID': flowId,
    Connection: 'close',
  });
  res.end(body);
}

/**
 * `Expect` (RFC 9110 §10.1.1): anything but `100-continue` is 417. For `100-continue`, a body
 * announced larger than the limit is refused before the client sends it.
 */
export function handleExpectations(server: Server, base: PublicBase, bodyLimit: number): void {
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    writeProblem(
      base,
      req,
      res,
      'expectation-failed',
      `Expect: '${String(req.headers.expect).slice(0, 100)}' cannot be met; only 100-continue is supported.`,
    );
  });
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const length = Number(req.headers['content-length']);
    if (Number.isFinite(length) && length > bodyLimit) {
      writeProblem(
        base,
        req,
        res,
        'content-too-large',
        `The request body is larger than the limit of ${bodyLimit} bytes.`,
      );
      return;
    }
    res.writeContinue();
    server.emit('request', req, res);
  });
}

/**
 * Knows every route's methods so that a path that exists but not for the request's method is
 * answered 405 with `Allow` (RFC 9110 §15.5.6) rather than 404.
 */
export class MethodTable {
  private readonly routes: { pattern: RegExp; methods: Set<string> }[] = [];

  add(url: string, methods: string | string[]): void {
    const source = url
      .split('/')
      .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    const pattern = new RegExp(`^${source}$`);
    let entry = this.routes.find((r) => r.pattern.source === pattern.source);
    if (!entry) {
      entry = { pattern, methods: new Set() };
      this.routes.push(entry);
    }
    for (const m of Array.isArray(methods) ? methods : [methods]) entry.methods.add(m.toUpperCase());
  }

  /** The methods the path supports, or none when no route matches it. */
  allowed(path: string): string[] {
    const methods = new Set<string>();
    for (const r of this.routes) if (r.pattern.test(path)) for (const m of r.methods) methods.add(m);
    return [...methods].sort();
  }
}

/** The not-found handler: 405 with `Allow` where the path exists, else 404. */
export function notFoundOrMethodNotAllowed(base: PublicBase, table: MethodTable) {
  return (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const path = request.url.split('?')[0] ?? '';
    const allowed = table.allowed(path);
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      return sendProblem(
        request,
        reply,
        base,
        'method-not-allowed',
        `${request.method} is not allowed on this path; use ${allowed.join(', ')}.`,
        {},
        { Allow: allowed.join(', ') },
      );
    }
    return sendProblem(request, reply, base, 'resource-not-found', `Nothing is found at ${pathOf(request)}.`);
  };
}

/** RFC 9112 §3.2: an HTTP/1.1 request without `Host` is answered 400. */
export function requireHost(request: FastifyRequest): void {
  if (request.raw.httpVersion === '1.1' && !request.headers.host) {
    throw problems.missingHost();
  }
}
