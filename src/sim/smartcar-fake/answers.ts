/** What the fake answers with: a status, a body and headers, and Smartcar's error object. */

const DOC_BASE = 'https://smartcar.com/docs/errors/api-errors';

/** Smartcar error object (docs: "API errors"): every error answer has this shape. */
interface SmartcarErrorBody {
  type: string;
  code: string | null;
  description: string;
  docURL: string;
  statusCode: number;
  requestId: string;
  resolution: { type: string | null };
  suggestedUserMessage: string;
}

export class HttpAnswer {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
    /** Raw text instead of JSON (malformed answers). */
    readonly raw?: string,
  ) {}
}

export function errorAnswer(
  requestId: string,
  status: number,
  type: string,
  code: string | null,
  description: string,
  resolution: string | null = null,
  headers: Record<string, string> = {},
): HttpAnswer {
  const page = type.toLowerCase().replaceAll('_', '-');
  const body: SmartcarErrorBody = {
    type,
    code,
    description,
    docURL: `${DOC_BASE}/${page}-errors${code ? `#${code.toLowerCase().replaceAll('_', '-')}` : ''}`,
    statusCode: status,
    requestId,
    resolution: { type: resolution },
    suggestedUserMessage: description,
  };
  return new HttpAnswer(status, body, headers);
}

/** 404 RESOURCE_NOT_FOUND:PATH, Smartcar's answer to a path or vehicle it does not know. */
export function notFound(requestId: string, description = 'The requested resource does not exist.'): HttpAnswer {
  return errorAnswer(requestId, 404, 'RESOURCE_NOT_FOUND', 'PATH', description);
}
