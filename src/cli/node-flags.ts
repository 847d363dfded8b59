/**
 * The flags of Node that `fleetgate serve` is meant to run with. `npm start`, the systemd unit in
 * docs/deploy.md, `npm run cluster` and the benchmark start it so; test/unit/node-flags.test.ts
 * keeps them in step.
 *
 * `--max-semi-space-size=32`: V8's young generation gets 32 MB semi-spaces instead of 16. With
 * thousands of state reports a second, a report's and a command's short-lived objects then die
 * in the young generation instead of being copied by scavenges that hold the API thread. In the
 * benchmark this cut the store's part of a command under ingestion from p99 5.6 to 1.1 ms, and
 * the command p99 from 50 to 33 ms (docs/performance.md). The price is up to ~48 MB of memory.
 */
export const SERVE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];

const SEMI_SPACE = /^--max[-_]semi[-_]space[-_]size=(\d+)$/;

/**
 * The flags of SERVE_NODE_FLAGS a process with these arguments and NODE_OPTIONS was started
 * without. A larger young generation than fleetgate's (or V8's underscore spelling) counts as given.
 */
export function missingServeFlags(execArgv: readonly string[], nodeOptions: string): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)];
  const wanted = Number(SEMI_SPACE.exec(SERVE_NODE_FLAGS[0]!)?.[1]);
  const semiSpace = given.some((arg) => Number(SEMI_SPACE.exec(arg)?.[1] ?? 0) >= wanted);
  return semiSpace ? [] : [...SERVE_NODE_FLAGS];
}
