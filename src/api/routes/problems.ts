import { PROBLEM_KEYS, PROBLEMS, problemTypeUri } from '../../domain/problems.js';
import type { Api, ApiDeps } from '../server.js';

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const code = (s: string): string => escapeHtml(s).replace(/`([^`]+)`/g, '<code>$1</code>');

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · fleetgate</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}code{background:#f3f3f3;padding:0 .2em}td,th{padding:.2em .6em;text-align:left}</style>
</head><body>${body}</body></html>`;
}

/**
 * `type_documentation` points at a page fleetgate serves itself. The pages are made from
 * the problem catalogue, so every type has one and none is stale.
 */
export function problemRoutes(app: Api, _deps: ApiDeps): void {
  app.get('/problems', { schema: { hide: true } }, async (_request, reply) => {
    const rows = PROBLEM_KEYS.map(
      (k) =>
        `<tr><td><a href="${problemTypeUri(k)}"><code>${problemTypeUri(k)}</code></a></td><td>${PROBLEMS[k].status}</td><td>${escapeHtml(PROBLEMS[k].title)}</td></tr>`,
    ).join('');
    return reply
      .type('text/html; charset=utf-8')
      .send(
        page(
          'Problem types',
          `<h1>Problem types</h1><p>Every error is <code>application/problem+json</code> with <code>type</code>, <code>type_documentation</code>, <code>title</code>, <code>status</code>, <code>detail</code> and <code>flow_id</code>.</p><table><tr><th>type</th><th>status</th><th>title</th></tr>${rows}</table>`,
        ),
      );
  });
  for (const key of PROBLEM_KEYS) {
    const def = PROBLEMS[key];
    const html = page(
      def.title,
      `<p><a href="/problems">All problem types</a></p><h1><code>${problemTypeUri(key)}</code></h1><p><strong>${def.status}</strong> — ${escapeHtml(def.title)}</p><p>${code(def.description)}</p>`,
    );
    app.get(problemTypeUri(key), { schema: { hide: true } }, async (_request, reply) =>
      reply.type('text/html; charset=utf-8').send(html),
    );
  }
}
