import { readFileSync } from 'node:fs';
import { beforeAll, expect, it } from 'vitest';
import { CLIENT_TYPES, clientTypes, lintDocument, openapiDocument } from '../../scripts/openapi.js';

// The OpenAPI document is fit for code generation: Redocly's recommended rules pass with no
// error and no warning (rules switched off only in redocly.yaml, each with its reason), and the
// committed client types are what `npm run client` makes of today's document.
let document: Record<string, unknown>;
beforeAll(async () => {
  document = await openapiDocument();
}, 60_000);

it('redocly lint (recommended rules): 0 errors, 0 warnings', () => {
  const result = lintDocument(document, 'json');
  expect(result, result.output).toMatchObject({ errors: 0, warnings: 0 });
}, 120_000);

it('clients/typescript/schema.d.ts is up to date with /openapi.json (else run `npm run client`)', async () => {
  const expected = await clientTypes(document);
  expect(
    readFileSync(CLIENT_TYPES, 'utf8') === expected,
    'clients/typescript/schema.d.ts is stale: npm run client',
  ).toBe(true);
});

it('every operation has an operationId, a tag and a summary; errors are problem+json except the token endpoint', () => {
  const paths = document.paths as Record<string, Record<string, any>>;
  for (const [path, operations] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(operation.operationId, where).toMatch(/^[a-z][A-Za-z]+$/);
      expect(operation.tags?.length, where).toBeGreaterThan(0);
      expect(operation.summary, where).toBeTruthy();
      for (const [status, response] of Object.entries<any>(operation.responses)) {
        if (!/^[45]/.test(status) || path === '/health/ready') continue;
        const types = Object.keys(response.content ?? {});
        expect(types, `${where} ${status}`).toEqual(
          path === '/auth/oauth/token' ? ['application/json'] : ['application/problem+json'],
        );
      }
    }
  }
});
