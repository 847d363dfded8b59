import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isProblemError, type ProblemError } from '../../src/domain/problems.js';
import { SecretBox } from '../../src/lib/secrets.js';
import { CredentialsService } from '../../src/services/credentials-service.js';
import { createStore } from '../../src/store/registry.js';
import type { Store } from '../../src/store/store.js';
import type { TelematicsAdapter } from '../../src/telematics/adapter.js';
import { SMARTCAR_CONNECTED_CAR } from '../../src/telematics/smartcar/models.js';
import { SmartcarAdapter } from '../../src/telematics/smartcar/smartcar-adapter.js';
import { makeVehicle } from '../contract/adapter.contract.js';

const SECRET = 'the-client-secret-value-0123456789';
const REFRESH = 'the-refresh-token-value-9876543210';
const valid = (overrides: Record<string, unknown> = {}) => ({
  telematics_brand: 'SMARTCAR',
  name: 'Berlin account',
  client_id: 'client-abc',
  client_secret: SECRET,
  refresh_token: REFRESH,
  ...overrides,
});

/** A brand that takes no credentials (like FLEETGATE). */
const deviceBrand = { brand: 'DEVICE', requiresUnitPassword: true } as TelematicsAdapter;

let dir: string;
let store: Store;
let secrets: SecretBox;
let service: CredentialsService;

async function problemOf(p: Promise<unknown>): Promise<ProblemError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!isProblemError(e)) throw new Error(`expected a ProblemError, got ${String(e)}`);
  return e;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-credentials-'));
  store = await createStore({ dataDir: dir });
  await store.migrate();
  secrets = new SecretBox(randomBytes(32));
  service = new CredentialsService(
    store,
    secrets,
    new Map<string, TelematicsAdapter>([
      ['SMARTCAR', new SmartcarAdapter()],
      ['DEVICE', deviceBrand],
    ]),
  );
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('create', () => {
  it('stores the credentials sealed and answers a view without secrets', async () => {
    const view = await service.create('fleet-a', valid());
    expect(view).toEqual({
      credentials_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      telematics_brand: 'SMARTCAR',
      name: 'Berlin account',
      client_id: 'client-abc',
      created_at: expect.any(String),
    });
    const rec = await store.getCredentials(view.credentials_id);
    expect(rec?.fleet_id).toBe('fleet-a');
    expect(rec?.sealed_state).toBeNull();
    expect(rec?.sealed_secret).not.toContain(SECRET);
    expect(rec?.sealed_secret).not.toContain(REFRESH);
    // Sealed for this row only (associated data = credentials id).
    expect(JSON.parse(secrets.open(rec!.sealed_secret, view.credentials_id))).toEqual({
      client_id: 'client-abc',
      client_secret: SECRET,
      refresh_token: REFRESH,
    });
    expect(() => secrets.open(rec!.sealed_secret, 'other-id')).toThrow();
  });

  it('takes a missing name as null', async () => {
    const view = await service.create('fleet-a', valid({ name: undefined }));
    expect(view.name).toBeNull();
  });

  // SPEC §2 validation-error: say which field
  it('names every invalid field at once, never echoing secret values', async () => {
    const p = await problemOf(
      service.create('fleet-a', {
        telematics_brand: 'SMARTCAR',
        client_id: '',
        client_secret: 42,
        name: 'x'.repeat(101),
      }),
    );
    expect(p.key).toBe('validation-error');
    expect((p.extensions.errors as { field: string }[]).map((e) => e.field).sort()).toEqual([
      'client_id',
      'client_secret',
      'name',
      'refresh_token',
    ]);
    const leaky = await problemOf(service.create('fleet-a', valid({ client_secret: SECRET, surprise: SECRET })));
    expect(leaky.extensions.errors).toEqual([{ field: 'surprise', message: 'is not a field of SMARTCAR credentials' }]);
    expect(JSON.stringify(leaky.extensions) + leaky.message).not.toContain(SECRET);
  });

  it('refuses brands that take no credentials and unknown brands', async () => {
    for (const brand of ['DEVICE', 'NOPE', 7]) {
      const p = await problemOf(service.create('fleet-a', valid({ telematics_brand: brand })));
      expect(p.key).toBe('validation-error');
      expect(p.extensions.errors).toEqual([
        { field: 'telematics_brand', message: expect.stringContaining('SMARTCAR') },
      ]);
    }
  });

  it('refuses a body that is not an object', async () => {
    for (const body of [null, [], 'x']) {
      const p = await problemOf(service.create('fleet-a', body));
      expect(p.extensions.errors).toEqual([{ field: 'body', message: 'must be a JSON object' }]);
    }
  });
});

describe('list and get', () => {
  it('pages through the fleet’s credentials only', async () => {
    const created = [];
    for (let i = 0; i < 3; i++) created.push(await service.create('fleet-list', valid({ name: `n${i}` })));
    await service.create('fleet-other', valid());
    const ids = created.map((c) => c.credentials_id).sort();

    const first = await service.list('fleet-list', 2);
    expect(first.items.map((c) => c.credentials_id)).toEqual(ids.slice(0, 2));
    expect(first.next_page_token).toEqual(expect.any(String));
    const second = await service.list('fleet-list', 2, first.next_page_token!);
    expect(second.items.map((c) => c.credentials_id)).toEqual(ids.slice(2));
    expect(second.next_page_token).toBeNull();
    for (const item of [...first.items, ...second.items]) {
      expect(Object.keys(item).sort()).toEqual([
        'client_id',
        'created_at',
        'credentials_id',
        'name',
        'telematics_brand',
      ]);
    }
  });

  it('refuses a bad limit or page token', async () => {
    for (const limit of [0, 101, 1.5]) {
      expect((await problemOf(service.list('fleet-list', limit))).extensions.errors).toEqual([
        { field: 'limit', message: expect.any(String) },
      ]);
    }
    expect((await problemOf(service.list('fleet-list', 10, 'not-a-token!'))).key).toBe('validation-error');
  });

  // SPEC §1/§4 spirit: another fleet's resource is 404, never 403
  it('answers resource-not-found for unknown ids and other fleets’ credentials', async () => {
    const view = await service.create('fleet-a', valid());
    expect(await service.get('fleet-a', view.credentials_id)).toEqual(view);
    expect((await problemOf(service.get('fleet-b', view.credentials_id))).key).toBe('resource-not-found');
    expect((await problemOf(service.get('fleet-a', 'no-such-id'))).key).toBe('resource-not-found');
  });
});

describe('delete', () => {
  it('refuses while a vehicle uses the credentials, then deletes', async () => {
    const view = await service.create('fleet-del', valid());
    const vehicle = makeVehicle(SMARTCAR_CONNECTED_CAR, `unit-${randomBytes(4).toString('hex')}`, {
      vehicle_id: `V${randomBytes(5).toString('hex').toUpperCase()}`,
      fleet_id: 'fleet-del',
      credentials_id: view.credentials_id,
    });
    await store.insertVehicle(vehicle);
    expect((await problemOf(service.delete('fleet-del', view.credentials_id))).key).toBe('conflicting-resource');
    expect((await problemOf(service.delete('fleet-other', view.credentials_id))).key).toBe('resource-not-found');
    await store.deleteVehicle(vehicle.vehicle_id);
    await service.delete('fleet-del', view.credentials_id);
    expect(await store.getCredentials(view.credentials_id)).toBeUndefined();
    expect((await problemOf(service.delete('fleet-del', view.credentials_id))).key).toBe('resource-not-found');
  });
});
