import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import ts from 'typescript';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { Harness } from '../helpers/harness.js';

// Issue 19 (OpenAPI fit for code generation): the worked example of docs/api.md, exactly as
// written there, type-checks against the committed client types (openapi-typescript) and runs
// with openapi-fetch against a real fleetgate and a simulated unit.
const ROOT = path.resolve(import.meta.dirname, '../..');
const CLIENT_DIR = path.join(ROOT, 'clients', 'typescript');

function docsExample(): string {
  const docs = readFileSync(path.join(ROOT, 'docs', 'api.md'), 'utf8');
  const m = /<!-- typed-client-example: start -->\n```ts\n([\s\S]*?)```\n<!-- typed-client-example: end -->/.exec(docs);
  if (!m) throw new Error('docs/api.md has no typed-client example block');
  return m[1]!;
}

/** Type errors of each source placed beside schema.d.ts, under the repository's compiler options. */
function typeErrors(sources: Record<string, string>): Record<string, string[]> {
  const files = Object.fromEntries(
    Object.keys(sources).map((name) => [name, path.join(CLIENT_DIR, `${name}-${process.pid}.run.ts`)]),
  );
  for (const [name, source] of Object.entries(sources)) writeFileSync(files[name]!, source);
  try {
    const tsconfig = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile);
    const { options } = ts.parseJsonConfigFileContent(tsconfig.config, ts.sys, ROOT);
    // One program for all of them: the library types are read once.
    const program = ts.createProgram(Object.values(files), { ...options, noEmit: true });
    return Object.fromEntries(
      Object.entries(files).map(([name, file]) => [
        name,
        ts
          .getPreEmitDiagnostics(program, program.getSourceFile(file))
          .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')),
      ]),
    );
  } finally {
    for (const file of Object.values(files)) rmSync(file, { force: true });
  }
}

let h: Harness;
let unit: FleetgateUnit | undefined;
beforeAll(async () => {
  h = await Harness.start();
});
afterAll(async () => {
  await unit?.stop();
  await h?.close();
});

it('the docs/api.md example type-checks against clients/typescript/schema.d.ts', () => {
  const example = docsExample();
  const errors = typeErrors({
    example,
    // The types have teeth: a misspelt command, or a field the API does not have, does not compile.
    typo: example.replace("send('unlock-top-case')", "send('unlock-top-cas')"),
    field: example.replace('setup = data.setup_status', 'setup = data.setup_state'),
  });
  expect(errors.example).toEqual([]);
  expect(errors.typo!.join('\n')).toMatch(/'"unlock-top-cas"' is not assignable/);
  expect(errors.field!.join('\n')).toMatch(/setup_state/);
}, 120_000);

it('the docs/api.md example runs against fleetgate: token, vehicle, command, problem', async () => {
  const client = await h.client('fleet-typed', ['vehicles', 'vehicle-commands']);
  const unitId = `typed-${process.pid}`;
  const unitPassword = `pw-${unitId}-0123456789`;
  const file = path.join(CLIENT_DIR, `run-${process.pid}.run.ts`);
  writeFileSync(file, docsExample());
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        FLEETGATE_URL: h.url,
        CLIENT_ID: client.client_id,
        CLIENT_SECRET: client.client_secret,
        UNIT_ID: unitId,
        UNIT_PASSWORD: unitPassword,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const unitStarted: Promise<void>[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      // The vehicle exists now, so its unit may connect (as a real one would, powered on).
      if (line.startsWith('added vehicle ')) {
        unit = new FleetgateUnit({
          mqttUrl: h.app.mqttUrl,
          unitId,
          password: unitPassword,
          model: 'fleetgate-car-v1',
          answerDelayMs: 0,
          drive: false,
        });
        unitStarted.push(unit.start());
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    await Promise.all(unitStarted);
    // What the example printed, for whoever reads the test log.
    console.info(`docs/api.md example printed:\n${lines.join('\n')}`);
    expect(code, `${lines.join('\n')}\n${stderr}`).toBe(0);
    expect(lines).toEqual([
      expect.stringMatching(/^added vehicle [0-9A-Z]+, setup IN_PROGRESS$/),
      'setup SUCCEEDED',
      'unlock-and-enable-driving: central lock UNLOCKED, driving enabled true',
      expect.stringMatching(
        /^unlock-top-case: 409 The command is not supported by the vehicle\. \(flow [0-9a-f-]{36}\)$/,
      ),
    ]);
  } finally {
    rmSync(file, { force: true });
  }
}, 120_000);
