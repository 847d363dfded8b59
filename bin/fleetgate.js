#!/usr/bin/env node
// The production entry: runs the compiled CLI in dist/ (`npm run build`). In a checkout without
// a build, or whose sources changed after the last build, it runs the TypeScript sources through
// tsx's loader instead, so `npx fleetgate …` works straight after `npm install`.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const compiled = `${root}dist/cli/main.js`;

/** Newest modification time of the files under `dir`, in ms. */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs);
  }
  return latest;
}

const hasSources = existsSync(`${root}src/cli/main.ts`);
const built = existsSync(compiled) && (!hasSources || statSync(compiled).mtimeMs >= newest(`${root}src`));
if (built) {
  await import(compiled);
} else {
  if (existsSync(compiled))
    process.stderr.write('fleetgate: dist/ is older than src/; running the sources (npm run build updates it)\n');
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
