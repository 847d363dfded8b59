import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { flagKey, SETTINGS } from '../../src/config.js';
import { ADAPTER_DEFINITIONS } from '../../src/telematics/registry.js';

// STYLE.md: a telematics brand is one folder under src/telematics/ and one registry line; the
// shared adapter contract runs against every one of them.

const root = path.resolve(import.meta.dirname, '../..');
const folders = readdirSync(path.join(root, 'src/telematics'), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();

describe('telematics registry', () => {
  it('registers every folder under src/telematics/ exactly once', () => {
    expect(ADAPTER_DEFINITIONS.map((d) => d.folder).sort()).toEqual(folders);
  });

  it.each(folders)('%s has a definition whose adapter is its brand', (folder) => {
    const definition = ADAPTER_DEFINITIONS.find((d) => d.folder === folder)!;
    expect(definition.create().brand).toBe(definition.brand);
    expect(ADAPTER_DEFINITIONS.filter((d) => d.brand === definition.brand)).toHaveLength(1);
  });

  it.each(folders)('%s runs the shared adapter contract suite', (folder) => {
    const file = path.join(root, 'test/contract', `adapter-${folder}.test.ts`);
    expect(existsSync(file), `test/contract/adapter-${folder}.test.ts`).toBe(true);
    expect(readFileSync(file, 'utf8')).toMatch(/\badapterContract\(/);
  });

  it('offers every adapter setting as a flag, a FLEETGATE_* variable and a row of docs/configuration.md', () => {
    const docs = readFileSync(path.join(root, 'docs/configuration.md'), 'utf8');
    for (const d of ADAPTER_DEFINITIONS) {
      for (const s of d.settings) {
        const setting = SETTINGS.find((x) => x.flag === s.flag);
        expect(setting?.adapter).toEqual({ brand: d.brand, name: s.name });
        expect(setting?.env).toBe(`FLEETGATE_${s.flag.slice(2).replaceAll('-', '_').toUpperCase()}`);
        expect(docs).toContain(`| \`${s.flag}\` | \`${setting?.env}\` |`);
      }
    }
  });

  it('selects each simulator by one of its own options', () => {
    for (const d of ADAPTER_DEFINITIONS) {
      if (!d.simulator) continue;
      const keys = d.simulator.options.map((o) => flagKey(o.flags.split(/[ ,<[]/)[0]!));
      expect(keys).toContain(d.simulator.selectedBy);
    }
  });
});
