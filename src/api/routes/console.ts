import { createHash } from 'node:crypto';
import { bundleConsole, type ConsoleBundle } from '../../console/bundle.js';
import type { Api, ApiDeps } from '../server.js';

interface Built extends ConsoleBundle {
  /** Content hash, so the asset URLs change with the code and may be cached for good. */
  version: string;
}

const escapeJsonForHtml = (value: unknown): string => JSON.stringify(value).replace(/</g, '\\u003c');

/**
 * The console at /console, served by fleetgate itself. It is a client of the public API
 * (same routes, problems and event stream as any integrator); this only serves its page and assets.
 */
export function consoleRoutes(app: Api, { config }: ApiDeps): void {
  let built: Promise<Built> | undefined;
  const bundle = (): Promise<Built> => {
    built ??= bundleConsole().then(
      (b) => ({ ...b, version: createHash('sha256').update(b.js).update(b.css).digest('hex').slice(0, 12) }),
      (err: unknown) => {
        built = undefined;
        throw err;
      },
    );
    return built;
  };

  const tileOrigin = config.consoleTileUrl ? new URL(config.consoleTileUrl.replace(/[{}]/g, '')).origin : '';
  const settings = { tileUrl: config.consoleTileUrl ?? null, tileAttribution: config.consoleTileAttribution ?? null };
  // Leaflet positions tiles and markers with inline styles, hence style-src 'unsafe-inline'.
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    `img-src 'self' data:${tileOrigin ? ` ${tileOrigin}` : ''}`,
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ].join('; ');

  app.get('/console', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/console/', 302));

  app.get('/console/', { schema: { hide: true } }, async (_request, reply) => {
    const { version } = await bundle();
    reply
      .type('text/html; charset=utf-8')
      .header('Content-Security-Policy', csp)
      .header('X-Content-Type-Options', 'nosniff')
      .header('Referrer-Policy', 'same-origin')
      .header('Cache-Control', 'no-cache');
    return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fleetgate console</title>
<link rel="stylesheet" href="/console/assets/${version}/console.css">
<script type="application/json" id="console-settings">${escapeJsonForHtml(settings)}</script>
<script type="module" src="/console/assets/${version}/console.js"></script>
</head>
<body><div id="app"></div><noscript>The fleetgate console needs JavaScript.</noscript></body>
</html>
`;
  });

  app.get<{ Params: { version: string; file: string } }>(
    '/console/assets/:version/:file',
    { schema: { hide: true } },
    async (request, reply) => {
      const b = await bundle();
      const { file, version } = request.params;
      if (file !== 'console.js' && file !== 'console.css') return reply.callNotFound();
      reply
        .type(file.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8')
        .header('X-Content-Type-Options', 'nosniff')
        .header('Cache-Control', version === b.version ? 'public, max-age=31536000, immutable' : 'no-cache');
      return file.endsWith('.js') ? b.js : b.css;
    },
  );
}
