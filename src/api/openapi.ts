import type { SwaggerTransform, SwaggerTransformObject } from '@fastify/swagger';
import { scopeDescriptions, TOKEN_PATH } from './routes/auth.js';

/**
 * What /openapi.json says beyond the route schemas, so that generated clients get it right:
 * security schemes and each operation's security, and two corrections to what @fastify/swagger
 * infers (it marks every request body and every defaulted query parameter required).
 */

/** The oauth2 client-credentials flow that API routes use, and HTTP Basic for the token endpoint. */
export function securitySchemes(publicUrl: string | undefined) {
  return {
    oauth2: {
      type: 'oauth2' as const,
      description: `OAuth2 client credentials (RFC 6749 §4.4): the access token goes in \`Authorization: Bearer …\`. Metadata (RFC 8414): \`/.well-known/oauth-authorization-server\`.`,
      flows: {
        clientCredentials: {
          tokenUrl: `${publicUrl?.replace(/\/+$/, '') ?? ''}${TOKEN_PATH}`,
          scopes: scopeDescriptions(),
        },
      },
    },
    clientBasic: {
      type: 'http' as const,
      scheme: 'basic',
      description: 'HTTP Basic `client_id:client_secret`, for the token endpoint only.',
    },
  };
}

/** A route's security follows the scope it needs (`config.scope`); a route without one is public. */
export const documentRoute: SwaggerTransform = ({ schema, url, route }) => {
  const scope = (route.config as { scope?: string } | undefined)?.scope;
  if (!schema || schema.hide) return { schema, url };
  if (scope) {
    // A bearer token is an oauth2 access token; other ways in (a console session) stay beside it.
    const declared = (schema.security as Array<Record<string, string[]>> | undefined) ?? [{ bearer: [] }];
    const security = declared.map((requirement) => ('bearer' in requirement ? { oauth2: [scope] } : requirement));
    return { schema: { ...schema, security }, url };
  }
  return { schema: { security: [], ...schema }, url };
};

interface JsonSchemaLike {
  required?: unknown[];
  minProperties?: number;
  default?: unknown;
}
interface Operation {
  parameters?: Array<{ in: string; required?: boolean; schema?: JsonSchemaLike }>;
  requestBody?: { required?: boolean; content?: Record<string, { schema?: JsonSchemaLike }> };
}

/** TypeBox writes string enums without `type`; generators then type them `unknown`. */
function typeStringEnums(node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) typeStringEnums(item);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  const schema = node as { enum?: unknown[]; type?: unknown };
  if (Array.isArray(schema.enum) && schema.type === undefined && schema.enum.every((v) => typeof v === 'string')) {
    schema.type = 'string';
  }
  for (const value of Object.values(node)) typeStringEnums(value);
}

export const finishDocument: SwaggerTransformObject = (documentObject) => {
  const document = (
    'openapiObject' in documentObject ? documentObject.openapiObject : documentObject.swaggerObject
  ) as {
    paths?: Record<string, Record<string, Operation>>;
  };
  typeStringEnums(document);
  for (const operations of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      if (typeof operation !== 'object' || operation === null) continue;
      // A parameter with a default may be left out (e.g. `limit`).
      for (const parameter of operation.parameters ?? []) {
        if (parameter.in === 'query' && parameter.schema?.default !== undefined) parameter.required = false;
      }
      // A POST without a body is validated as `{}` (server.ts), so a body schema that `{}`
      // satisfies is optional (e.g. a command's empty body).
      const body = operation.requestBody;
      const schemas = Object.values(body?.content ?? {}).map((media) => media.schema);
      if (body && schemas.length > 0 && schemas.every((s) => s && !s.required?.length && !s.minProperties)) {
        body.required = false;
      }
    }
  }
  return document as ReturnType<SwaggerTransformObject>;
};
