import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export interface ConsoleBundle {
  js: string;
  css: string;
}

// Beside this module when run from src/; from dist/console/ (`npm run build`), the sources in src/.
const ENTRIES = ['./web/main.tsx', '../../src/console/web/main.tsx'].map((p) =>
  fileURLToPath(new URL(p, import.meta.url)),
);

/**
 * Bundles the console (Preact + Leaflet, from node_modules) into one script and one stylesheet,
 * in memory, once per process: nothing is fetched from a CDN, and `npm start` needs no build
 * step. Takes a few hundred milliseconds, so it runs on the first request for the console.
 */
export async function bundleConsole(): Promise<ConsoleBundle> {
  const entry = ENTRIES.find((p) => existsSync(p));
  if (!entry) throw new Error(`the console's sources are missing (looked for ${ENTRIES.join(', ')})`);
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: 'console',
    loader: { '.png': 'dataurl', '.svg': 'dataurl' },
    logLevel: 'silent',
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'));
  const css = result.outputFiles.find((f) => f.path.endsWith('.css'));
  if (!js || !css) throw new Error('the console bundle lacks its script or stylesheet');
  return { js: js.text, css: css.text };
}
