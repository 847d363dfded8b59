import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SERVER_NODE_ARGS } from '../../bench/lib/processes.js';
import { missingServeFlags, SERVE_NODE_FLAGS } from '../../src/cli/node-flags.js';

const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

describe('the node flags of fleetgate serve', () => {
  it('npm start, the documented production entry and its systemd unit, and the benchmark all pass them', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start!;
    const deploy = read('docs/deploy.md');
    const entry = deploy.split('\n').find((line) => line.includes('bin/fleetgate.js serve') && line.startsWith('node'));
    const unit = deploy.split('\n').find((line) => line.startsWith('ExecStart='));
    expect(SERVE_NODE_FLAGS.length).toBeGreaterThan(0);
    for (const flag of SERVE_NODE_FLAGS) {
      expect(start.split(' ')).toContain(flag);
      expect(entry?.split(/\s+/)).toContain(flag);
      expect(unit?.split(/\s+/)).toContain(flag);
      expect(SERVER_NODE_ARGS).toContain(flag);
    }
  });

  it('names what a process started without them lacks, from its arguments or NODE_OPTIONS', () => {
    expect(missingServeFlags([], '')).toEqual([...SERVE_NODE_FLAGS]);
    expect(missingServeFlags([...SERVE_NODE_FLAGS], '')).toEqual([]);
    expect(missingServeFlags(['--import', 'tsx'], ` ${SERVE_NODE_FLAGS.join(' ')} --trace-warnings`)).toEqual([]);
    // A smaller young generation is not what fleetgate measured; a larger one, or V8's spelling, is.
    expect(missingServeFlags(['--max-semi-space-size=8'], '')).toEqual([...SERVE_NODE_FLAGS]);
    expect(missingServeFlags(['--max-semi-space-size=64'], '')).toEqual([]);
    expect(missingServeFlags([], '--max_semi_space_size=32')).toEqual([]);
  });
});
