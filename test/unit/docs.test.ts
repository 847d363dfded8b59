import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGES } from '../../scripts/reference-docs.js';
import { PROBLEM_KEYS, problemTypeUri } from '../../src/domain/problems.js';

describe('reference docs stay true to the code', () => {
  for (const [file, render] of Object.entries(PAGES)) {
    it(`${file} is what \`npm run docs\` generates`, () => {
      expect(readFileSync(file, 'utf8'), `run npm run docs to refresh ${file}`).toBe(render());
    });
  }

  it("docs/problems.md lists exactly the catalogue's problem types (SPEC §2)", () => {
    const listed = [...readFileSync('docs/problems.md', 'utf8').matchAll(/^\| `(\/problems\/[a-z/-]+)` \|/gm)].map(
      (m) => m[1],
    );
    expect(listed.sort()).toEqual(PROBLEM_KEYS.map(problemTypeUri).sort());
  });

  it("docs/events.md lists exactly the catalogue's event types (SPEC §8)", async () => {
    const { EVENT_TYPES } = await import('../../src/domain/events.js');
    const listed = [...readFileSync('docs/events.md', 'utf8').matchAll(/^\| `([A-Za-z]+)` \|/gm)].map((m) => m[1]);
    expect(listed.filter((t) => /^[A-Z]/.test(t!)).sort()).toEqual([...EVENT_TYPES].sort());
  });

  it('docs/performance.md stays a sizing guide: at most 250 lines, every result file it links committed', () => {
    const text = readFileSync('docs/performance.md', 'utf8');
    expect(text.trimEnd().split('\n').length).toBeLessThanOrEqual(250);
    const links = [...text.matchAll(/\]\((\.\.\/[^)#\s]+|[a-z-]+\.md)(?:#[^)]*)?\)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(10);
    for (const link of links) expect(existsSync(path.join('docs', link)), link).toBe(true);
  });
});
