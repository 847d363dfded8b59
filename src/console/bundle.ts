import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export interface ConsoleBundle {
  js: string;
  css: string;
}

const ENTRY = fileURLToPath(new URL('./web/main.tsx', import.meta.url));

/**
 * Bundles the console (Preact + Leaflet, from node_modules) into one script and one stylesheet,
 * in memory, once per process: nothing is fetched from a CDN, and `npm start` needs no build
 * step. Takes a few hundred milliseconds, so it runs on the first request for the console.
 */
export async function bundleConsole(): Promise<ConsoleBundle> {
  const result = await build({
    entryPoints: [ENTRY],
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
