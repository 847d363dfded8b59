/**
 * The flags of Node that `fleetgate serve` is meant to run with. `npm start`, the systemd unit in
 * docs/deploy.md, `npm run cluster` and the benchmark start it so; test/unit/node-flags.test.ts
 * keeps them in step.
 *
 * `--max-semi-space-size=32`: V8's young generation gets 32 MB semi-spaces instead of 16. With
 * thousands of state reports a second, a report's and a command's short-lived objects then die
 * in the young generation instead of being copied by scavenges that hold the API thread. In the
 * benchmark this cut the store's part of a command under ingestion from p99 5.6 to 1.1 ms, and
 * the command p99 from 50 to 33 ms (docs/performance.md). The price is up to 64 MB of memory.
 */
export const SERVE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];

/** The flags of SERVE_NODE_FLAGS this process was started without (its arguments, or NODE_OPTIONS). */
export function missingServeFlags(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env.NODE_OPTIONS ?? '',
): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)]);
  return SERVE_NODE_FLAGS.filter((flag) => !given.has(flag));
}
