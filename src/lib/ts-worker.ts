import path from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * The URL of the module `name` beside the module at `importMetaUrl` (pass `import.meta.url`),
 * with that module's own extension: `.ts` when run from source, `.js` when built.
 */
export function siblingModule(importMetaUrl: string, name: string): URL {
  return new URL(`./${name}${path.extname(new URL(importMetaUrl).pathname)}`, importMetaUrl);
}

/**
 * Starts a worker thread on a module of this project. Run from source (tsx, vitest), the module is
 * a `.ts` file that a new thread cannot load by itself (loader hooks are per thread): the thread
 * first registers tsx's loader, then imports it. Built or plain JavaScript modules start directly.
 */
export function startModuleWorker(module: URL, options: WorkerOptions = {}): Worker {
  if (!module.pathname.endsWith('.ts')) return new Worker(module, options);
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap =
    `import(${JSON.stringify(tsx)})` +
    `.then((api) => { api.register(); return import(${JSON.stringify(module.href)}); })` +
    // An error while loading would otherwise be an unhandled rejection inside the thread.
    '.catch((error) => { process.nextTick(() => { throw error; }); });';
  return new Worker(bootstrap, { ...options, eval: true });
}
