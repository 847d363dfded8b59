import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../../src/domain/events.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import {
  type CommandRecord,
  type ConsoleUser,
  type CredentialsRecord,
  CursorExpiredError,
  InvalidCursorError,
  type Store,
  StoreConflictError,
} from '../../src/store/store.js';

export type StoreFactory = () => Promise<{ store: Store; cleanup: () => Promise<void> }>;

const uid = (prefix: string): string => `${prefix}-${randomUUID()}`;
const at = (ms: number): string => new Date(ms).toISOString();
const T0 = Date.UTC(2025, 0, 15, 12, 0, 0, 123);
/** Far enough ahead that expireCommands in another test never touches these records. */
const FAR_DEADLINE = at(Date.UTC(2200, 0, 1));

export function vehicle(overrides: Partial<Vehicle> = {}): Vehicle {
  return {
    vehicle_id: uid('V'),
    fleet_id: uid('fleet'),
    telematics_brand: 'fleetgate-mqtt',
    telematics_unit_id: uid('unit'),
    vehicle_model_id: 'generic-car',
    unit_password_hash: 'scrypt$abc',
    credentials_id: null,
    capabilities: {
      commands: ['LOCK_CENTRAL_LOCK', 'UNLOCK_CENTRAL_LOCK'],
      vehicle_state: ['POSITION', 'CENTRAL_LOCK'],
    },
    master_data: { vin: 'WVWZZZ1JZXW000001', license_plate: 'B-FG 1', vehicle_type: 'CAR' },
    custom_fields: { depot: 'north', 'with "quotes"': 'ü ✓' },
    tags: ['berlin', 'ev'],
    operation_status: 'OPERATING',
    setup_status: 'IN_PROGRESS',
    setup_failure_reason: null,
    life_status: 'OFFLINE',
    life_status_modified_at: at(T0),
    version: 1,
    created_at: at(T0),
    modified_at: at(T0),
    ...overrides,
  };
}

export function command(v: Pick<Vehicle, 'vehicle_id' | 'fleet_id'>, overrides: Partial<CommandRecord> = {}) {
  const record: CommandRecord = {
    flow_id: randomUUID(),
    fleet_id: v.fleet_id,
    client_id: 'fgc_test',
    user_id: null,
    user_email: null,
    vehicle_id: v.vehicle_id,
    command: 'UNLOCK_CENTRAL_LOCK',
    adapter: 'fleetgate-mqtt',
    instance_id: 'instance-a',
    status: 'IN_FLIGHT',
    problem_type: null,
    detail: null,
    delivery: null,
    steps: null,
    requested_at: at(T0),
    deadline_at: FAR_DEADLINE,
    completed_at: null,
    duration_ms: null,
    ...overrides,
  };
  return record;
}

function credentials(overrides: Partial<CredentialsRecord> = {}): CredentialsRecord {
  return {
    credentials_id: uid('cred'),
    fleet_id: uid('fleet'),
    telematics_brand: 'smartcar',
    name: 'Smartcar EU',
    sealed_secret: 'v1.sealed-secret',
    sealed_state: null,
    version: 1,
    created_at: at(T0),
    modified_at: at(T0),
    ...overrides,
  };
}

/**
 * The persistence contract (src/store/store.ts), run against every engine. Most tests share one
 * store and isolate themselves with random fleet/vehicle ids; the few that assert database-wide
 * counts (expiry, purge, stale setups) open a fresh store of their own.
 */
/** A command's completion: it succeeded, delivered, at `completedAt`. */
export function succeededAt(completedAt: string, durationMs = 1) {
  return {
    status: 'SUCCEEDED' as const,
    problem_type: null,
    detail: null,
    delivery: 'DELIVERED' as const,
    steps: null,
    completed_at: completedAt,
    duration_ms: durationMs,
  };
}

export function storeContract(name: string, factory: StoreFactory): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    const extra: Array<() => Promise<void>> = [];

    async function fresh(): Promise<Store> {
      const f = await factory();
      extra.push(f.cleanup);
      return f.store;
    }

    beforeAll(async () => {
      ({ store, cleanup } = await factory());
    });
    afterEach(async () => {
      for (const c of extra.splice(0)) await c();
    });
    afterAll(async () => {
      await cleanup?.();
    });

    async function added(overrides: Partial<Vehicle> = {}): Promise<Vehicle> {
      const v = vehicle(overrides);
      await store.insertVehicle(v);
      return v;
    }

    describe('lifecycle', () => {
      it('pings, migrates again without change, and closes idempotently', async () => {
        const s = await fresh();
        await expect(s.ping()).resolves.toBeUndefined();
        await s.migrate();
        const v = vehicle();
        await s.insertVehicle(v);
        await s.migrate();
        expect(await s.getVehicle(v.vehicle_id)).toEqual(v);
        await s.close();
        await s.close();
        await expect(s.ping()).rejects.toThrow();
      });
    });

    describe('clients', () => {
      it('stores and returns an API client with its scopes', async () => {
        const client = {
          client_id: uid('fgc'),
          fleet_id: uid('fleet'),
          name: 'dispatch',
          secret_hash: 'scrypt$xyz',
          scopes: ['vehicle-commands', 'vehicles.ro'],
          created_at: at(T0),
        };
        await store.createClient(client);
        expect(await store.getClient(client.client_id)).toEqual(client);
        expect(await store.getClient(uid('fgc'))).toBeUndefined();
      });

      it("lists a fleet's clients oldest first and deletes one", async () => {
        const fleet = uid('fleet');
        const make = (i: number) => ({
          client_id: uid('fgc'),
          fleet_id: fleet,
          name: `c${i}`,
          secret_hash: 'scrypt$xyz',
          scopes: ['vehicles.ro'],
          created_at: at(T0 + i),
        });
        const [a, b] = [make(2), make(1)];
        await store.createClient(a);
        await store.createClient(b);
        await store.createClient({ ...make(0), fleet_id: uid('other') });
        expect((await store.listClients(fleet)).map((c) => c.name)).toEqual(['c1', 'c2']);
        expect((await store.listClients()).length).toBeGreaterThanOrEqual(3);
        expect(await store.deleteClient(a.client_id)).toBe(true);
        expect(await store.deleteClient(a.client_id)).toBe(false);
        expect(await store.getClient(a.client_id)).toBeUndefined();
        expect((await store.listClients(fleet)).map((c) => c.client_id)).toEqual([b.client_id]);
      });
    });

    // SPEC §9: console users belong to one fleet; sessions are stored as hashes only.
    describe('console users and sessions', () => {
      const user = (overrides: Partial<ConsoleUser> = {}): ConsoleUser => ({
        user_id: uid('fgu'),
        fleet_id: uid('fleet'),
        email: `${uid('person')}@example.com`,
        role: 'operator',
        password_hash: 'scrypt$xyz',
        created_at: at(T0),
        modified_at: at(T0),
        ...overrides,
      });

      it('stores a user, finds it by id and email, refuses a second user with the email', async () => {
        const u = user();
        await store.createUser(u);
        expect(await store.getUser(u.user_id)).toEqual(u);
        expect(await store.getUserByEmail(u.email)).toEqual(u);
        expect(await store.getUserByEmail(`x${u.email}`)).toBeUndefined();
        await expect(store.createUser(user({ email: u.email, fleet_id: uid('other') }))).rejects.toEqual(
          new StoreConflictError('email'),
        );
      });

      it("lists a fleet's users by email, changes role and password, deletes one with its sessions", async () => {
        const fleet = uid('fleet');
        const b = user({ fleet_id: fleet, email: `b-${uid('p')}@example.com` });
        const a = user({ fleet_id: fleet, email: `a-${uid('p')}@example.com`, role: 'viewer' });
        await store.createUser(b);
        await store.createUser(a);
        await store.createUser(user());
        expect((await store.listUsers(fleet)).map((u) => u.user_id)).toEqual([a.user_id, b.user_id]);
        const changed = await store.updateUser(a.user_id, { role: 'admin' }, at(T0 + 5));
        expect(changed).toEqual({ ...a, role: 'admin', modified_at: at(T0 + 5) });
        expect(await store.updateUser(a.user_id, { password_hash: 'scrypt$new' }, at(T0 + 6))).toMatchObject({
          role: 'admin',
          password_hash: 'scrypt$new',
        });
        expect(await store.updateUser(uid('fgu'), { role: 'viewer' }, at(T0))).toBeUndefined();

        const session = { session_hash: uid('h'), user_id: a.user_id, created_at: at(T0), expires_at: at(T0 + 1000) };
        await store.createSession(session);
        expect(await store.getSession(session.session_hash)).toEqual({
          session,
          user: { ...a, role: 'admin', password_hash: 'scrypt$new', modified_at: at(T0 + 6) },
        });
        expect(await store.deleteUser(a.user_id)).toBe(true);
        expect(await store.deleteUser(a.user_id)).toBe(false);
        expect(await store.getSession(session.session_hash)).toBeUndefined();
        expect((await store.listUsers(fleet)).map((u) => u.user_id)).toEqual([b.user_id]);
      });

      it('ends one session, all of a user, and purges the expired ones', async () => {
        const s = await fresh();
        const u = user();
        await s.createUser(u);
        const session = (i: number, expires: number) => ({
          session_hash: `h${i}`,
          user_id: u.user_id,
          created_at: at(T0),
          expires_at: at(expires),
        });
        for (const [i, exp] of [
          [1, T0 + 10],
          [2, T0 + 20],
          [3, T0 + 30],
        ] as const)
          await s.createSession(session(i, exp));
        await s.deleteSession('h3');
        expect(await s.getSession('h3')).toBeUndefined();
        expect(await s.purgeSessions(at(T0 + 15))).toBe(1);
        expect(await s.getSession('h1')).toBeUndefined();
        expect(await s.getSession('h2')).toBeDefined();
        await s.deleteUserSessions(u.user_id);
        expect(await s.getSession('h2')).toBeUndefined();
      });

      it('counts failed sign-ins per key, and forgets them when cleared or stale', async () => {
        const s = await fresh();
        expect(await s.noteSignInFailure(['acct:a', 'pair:a|1'], at(T0))).toEqual([
          { throttle_key: 'acct:a', failures: 1, last_failure_at: at(T0) },
          { throttle_key: 'pair:a|1', failures: 1, last_failure_at: at(T0) },
        ]);
        await Promise.all([s.noteSignInFailure(['acct:a'], at(T0 + 1)), s.noteSignInFailure(['acct:a'], at(T0 + 1))]);
        await s.noteSignInFailure(['acct:old'], at(T0 - 100_000));
        expect(await s.getSignInFailures(['acct:a', 'acct:none', 'acct:old'])).toEqual([
          { throttle_key: 'acct:a', failures: 3, last_failure_at: at(T0 + 1) },
          { throttle_key: 'acct:old', failures: 1, last_failure_at: at(T0 - 100_000) },
        ]);
        await s.clearSignInFailures(['acct:a'], at(T0 - 50_000));
        expect(await s.getSignInFailures(['acct:a', 'pair:a|1', 'acct:old'])).toEqual([
          { throttle_key: 'pair:a|1', failures: 1, last_failure_at: at(T0) },
        ]);
      });

      it('records the console user who sent a command', async () => {
        const v = await added({ setup_status: 'SUCCEEDED' });
        const { adapter: _adapter, ...record } = command(v, { user_id: 'fgu_1', user_email: 'ops@example.com' });
        expect((await store.startCommand(record)).begun).toBe(true);
        expect(await store.getCommand(record.flow_id)).toMatchObject({
          user_id: 'fgu_1',
          user_email: 'ops@example.com',
          client_id: 'fgc_test',
        });
        const other = command(await added(), { user_id: 'fgu_2', user_email: 'b@example.com' });
        expect(await store.beginCommand(other)).toBe(true);
        expect((await store.listCommands(other.vehicle_id, 5))[0]).toMatchObject({ user_email: 'b@example.com' });
      });
    });

    describe('vehicles', () => {
      it('round-trips every field exactly, JSON and timestamps included', async () => {
        const v = await added({ setup_failure_reason: 'x', unit_password_hash: null });
        expect(await store.getVehicle(v.vehicle_id)).toEqual(v);
        expect(await store.findVehicleByUnit(v.telematics_brand, v.telematics_unit_id)).toEqual(v);
        expect(await store.getVehicle(uid('V'))).toBeUndefined();
        expect(await store.findVehicleByUnit(v.telematics_brand, uid('unit'))).toBeUndefined();
        expect(await store.findVehicleByUnit('other-brand', v.telematics_unit_id)).toBeUndefined();
      });

      it('finds each unit of many looked up at once (a reconnect storm), unknown ones as undefined', async () => {
        const vs = await Promise.all(Array.from({ length: 5 }, () => added()));
        const lookups = [
          ...vs.map((v) => [v.telematics_brand, v.telematics_unit_id] as const),
          [vs[0]!.telematics_brand, uid('unit')] as const,
          ['other-brand', vs[1]!.telematics_unit_id] as const,
        ];
        const found = await Promise.all(lookups.map(([brand, unit]) => store.findVehicleByUnit(brand, unit)));
        expect(found).toEqual([...vs, undefined, undefined]);
      });

      it("records a brand's ONLINE vehicles OFFLINE page by page, in unit id order, each with its event", async () => {
        const brand = uid('BRAND');
        const fleet = uid('fleet');
        const vs = await Promise.all(
          ['u3', 'u1', 'u4', 'u2'].map((unit) =>
            added({ fleet_id: fleet, telematics_brand: brand, telematics_unit_id: unit, life_status: 'ONLINE' }),
          ),
        );
        const offline = await added({ telematics_brand: brand, telematics_unit_id: 'u0', life_status: 'OFFLINE' });
        const other = await added({ telematics_unit_id: uid('unit'), life_status: 'ONLINE' }); // another brand
        await store.setLifeStatus(vs[2]!.vehicle_id, 'OFFLINE', at(T0 + 1)); // u4
        const t = at(T0 + 60_000);
        const first = await store.setBrandOffline(brand, t, 2);
        expect(first).toEqual([
          { vehicle_id: vs[1]!.vehicle_id, telematics_unit_id: 'u1' },
          { vehicle_id: vs[3]!.vehicle_id, telematics_unit_id: 'u2' },
        ]);
        expect(await store.setBrandOffline(brand, t, 2, 'u2')).toEqual([
          { vehicle_id: vs[0]!.vehicle_id, telematics_unit_id: 'u3' },
        ]);
        expect(await store.setBrandOffline(brand, t, 2)).toEqual([]);
        for (const v of [vs[0]!, vs[1]!, vs[3]!]) {
          expect(await store.getVehicle(v.vehicle_id)).toEqual({
            ...v,
            life_status: 'OFFLINE',
            life_status_modified_at: t,
          });
        }
        expect((await store.getVehicle(vs[2]!.vehicle_id))?.life_status_modified_at).toBe(at(T0 + 1));
        expect(await store.getVehicle(offline.vehicle_id)).toEqual(offline);
        expect(await store.getVehicle(other.vehicle_id)).toEqual(other);
        const changed = (await store.events.read({ fleet_id: fleet, limit: 100 })).items
          .map((i) => i.event)
          .filter((e) => e.metadata.type === 'VehicleChanged' && e.metadata.occurred_at === t);
        expect(changed.map((e) => e.metadata.vehicle_id).sort()).toEqual(
          [vs[0]!, vs[1]!, vs[3]!].map((v) => v.vehicle_id).sort(),
        );
        for (const e of changed) {
          expect(e.data).toMatchObject({
            reasons: ['LIFE_STATUS_CHANGED'],
            vehicle: { life_status: { value: 'OFFLINE' } },
          });
        }
      });

      it('refuses a brand/unit pair that exists, even in another fleet', async () => {
        const v = await added();
        const dup = vehicle({ telematics_unit_id: v.telematics_unit_id });
        const err = await store.insertVehicle(dup).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StoreConflictError);
        expect((err as StoreConflictError).constraint).toBe('telematics_unit');
        expect(await store.getVehicle(dup.vehicle_id)).toBeUndefined();
        // The same unit id under another brand is a different unit.
        await store.insertVehicle(vehicle({ telematics_unit_id: v.telematics_unit_id, telematics_brand: 'teltonika' }));
      });

      it('refuses credentials that do not exist', async () => {
        const err = await store.insertVehicle(vehicle({ credentials_id: uid('cred') })).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StoreConflictError);
      });

      it('lists one fleet in vehicle_id order with keyset pagination', async () => {
        const fleet = uid('fleet');
        const ids = Array.from({ length: 7 }, (_, i) => `${'GFEDCBA'[i]}${randomUUID().slice(0, 6)}`);
        for (const id of ids) await added({ vehicle_id: id, fleet_id: fleet });
        await added(); // another fleet
        const sorted = [...ids].sort();
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.listVehicles({ fleet_id: fleet, limit: 3, after });
          expect(page.length).toBeLessThanOrEqual(3);
          seen.push(...page.map((v) => v.vehicle_id));
          if (page.length < 3) break;
          after = page.at(-1)!.vehicle_id;
        }
        expect(seen).toEqual(sorted);
        const all = await store.listVehicles({ fleet_id: fleet, limit: 100 });
        expect(all.every((v) => v.fleet_id === fleet)).toBe(true);
        expect(await store.listVehicles({ fleet_id: uid('fleet'), limit: 10 })).toEqual([]);
      });

      it('orders ids bytewise (uppercase before lowercase), the same on every engine', async () => {
        const fleet = uid('fleet');
        for (const id of ['b1', 'B2', 'a3', 'A4', '_5', '05'])
          await added({ vehicle_id: `${id}-${fleet}`, fleet_id: fleet });
        const page = await store.listVehicles({ fleet_id: fleet, limit: 10 });
        expect(page.map((v) => v.vehicle_id.slice(0, 2))).toEqual(['05', 'A4', 'B2', '_5', 'a3', 'b1']);
      });

      it('filters by brand, setup status and tags (every tag given), with pagination', async () => {
        const fleet = uid('fleet');
        const mk = (id: string, o: Partial<Vehicle>) => added({ vehicle_id: `${id}-${fleet}`, fleet_id: fleet, ...o });
        await mk('a', { tags: ['berlin', 'ev'], telematics_brand: 'teltonika', setup_status: 'SUCCEEDED' });
        await mk('b', { tags: ['berlin'], telematics_brand: 'teltonika', setup_status: 'IN_PROGRESS' });
        await mk('c', { tags: ['berlin', 'ev', 'vip'], telematics_brand: 'fleetgate-mqtt', setup_status: 'SUCCEEDED' });
        await mk('d', { tags: [], telematics_brand: 'teltonika', setup_status: 'FAILED' });
        await mk('e', { tags: ['ev', 'berlin'], telematics_brand: 'teltonika', setup_status: 'SUCCEEDED' });
        await added({ tags: ['berlin', 'ev'] }); // another fleet, same tags
        const ids = async (f: Partial<Parameters<Store['listVehicles']>[0]>) =>
          (await store.listVehicles({ fleet_id: fleet, limit: 100, ...f })).map((v) => v.vehicle_id[0]);

        expect(await ids({ telematics_brand: 'teltonika' })).toEqual(['a', 'b', 'd', 'e']);
        expect(await ids({ setup_status: 'SUCCEEDED' })).toEqual(['a', 'c', 'e']);
        expect(await ids({ tags: ['berlin'] })).toEqual(['a', 'b', 'c', 'e']);
        expect(await ids({ tags: ['ev', 'berlin'] })).toEqual(['a', 'c', 'e']);
        expect(await ids({ tags: ['berlin', 'ev', 'vip'] })).toEqual(['c']);
        expect(await ids({ tags: ['nowhere'] })).toEqual([]);
        expect(await ids({ tags: [] })).toEqual(['a', 'b', 'c', 'd', 'e']);
        expect(await ids({ tags: ['ev'], telematics_brand: 'teltonika', setup_status: 'SUCCEEDED' })).toEqual([
          'a',
          'e',
        ]);
        expect(await ids({ tags: ['berlin'], limit: 2 })).toEqual(['a', 'b']);
        expect(await ids({ tags: ['berlin'], after: `b-${fleet}`, limit: 2 })).toEqual(['c', 'e']);
        expect(await ids({ telematics_brand: 'teltonika', after: `b-${fleet}` })).toEqual(['d', 'e']);
      });

      it('applies a patch with optimistic versioning and keeps the tag filter in step', async () => {
        const v = await added({ tags: ['old', 'kept'] });
        expect(await store.getVehicle(v.vehicle_id)).toEqual(v); // read once: an engine may keep it
        const later = at(T0 + 60_000);
        const updated = await store.updateVehicle(
          v.vehicle_id,
          { tags: ['kept', 'new'], master_data: { license_plate: 'B-XY 2' }, operation_status: 'MAINTENANCE' },
          1,
          later,
        );
        expect(updated).toEqual({
          ...v,
          tags: ['kept', 'new'],
          master_data: { license_plate: 'B-XY 2' },
          operation_status: 'MAINTENANCE',
          version: 2,
          modified_at: later,
        });
        expect(await store.getVehicle(v.vehicle_id)).toEqual(updated);
        expect(await store.listVehicles({ fleet_id: v.fleet_id, tags: ['old'], limit: 10 })).toEqual([]);
        expect(await store.listVehicles({ fleet_id: v.fleet_id, tags: ['new', 'kept'], limit: 10 })).toEqual([updated]);

        // A stale version changes nothing.
        expect(await store.updateVehicle(v.vehicle_id, { custom_fields: {} }, 1, later)).toBe('version-mismatch');
        expect(await store.getVehicle(v.vehicle_id)).toEqual(updated);
        // No expected version: always applies.
        const again = await store.updateVehicle(v.vehicle_id, { custom_fields: { a: 'b' } }, undefined, later);
        expect(again).toMatchObject({ version: 3, custom_fields: { a: 'b' }, tags: ['kept', 'new'] });
        expect(await store.updateVehicle(uid('V'), {}, undefined, later)).toBeUndefined();
        expect(await store.updateVehicle(uid('V'), {}, 1, later)).toBeUndefined();
      });

      it('lets exactly one of two concurrent updates on the same version win', async () => {
        const v = await added();
        const results = await Promise.all(
          ['a', 'b'].map((x) => store.updateVehicle(v.vehicle_id, { custom_fields: { x } }, 1, at(T0 + 1))),
        );
        expect(results.filter((r) => r === 'version-mismatch')).toHaveLength(1);
        expect((await store.getVehicle(v.vehicle_id))?.version).toBe(2);
      });

      it('deletes a vehicle with its state, commands, tags and idempotency keys', async () => {
        const v = await added();
        await store.mergeState(v.vehicle_id, { central_lock: { timestamp: at(T0), value: 'LOCKED' } });
        const c = command(v);
        expect(await store.beginCommand(c)).toBe(true);
        const key = { fleet_id: v.fleet_id, key: uid('idem'), vehicle_id: v.vehicle_id, command: c.command };
        expect(await store.claimIdempotencyKey({ ...key, flow_id: c.flow_id, created_at: at(T0) })).toEqual({
          claimed: true,
        });

        expect(await store.deleteVehicle(v.vehicle_id, 2)).toBe('version-mismatch');
        expect(await store.getVehicle(v.vehicle_id)).toBeDefined();
        expect(await store.deleteVehicle(v.vehicle_id, 1)).toBe(true);
        expect(await store.getVehicle(v.vehicle_id)).toBeUndefined();
        expect(await store.getState(v.vehicle_id)).toEqual({});
        expect(await store.getCommand(c.flow_id)).toBeUndefined();
        expect(await store.listCommands(v.vehicle_id, 10)).toEqual([]);
        expect(await store.deleteVehicle(v.vehicle_id)).toBe(false);

        // Everything is gone: the unit, id and key can be used again.
        await store.insertVehicle(v);
        expect(await store.listVehicles({ fleet_id: v.fleet_id, tags: ['berlin'], limit: 10 })).toEqual([v]);
        expect(await store.getState(v.vehicle_id)).toEqual({});
        expect(await store.beginCommand(command(v))).toBe(true);
        const claim = await store.claimIdempotencyKey({ ...key, flow_id: randomUUID(), created_at: at(T0) });
        expect(claim.claimed).toBe(true);
        expect(await store.deleteVehicle(v.vehicle_id)).toBe(true);
      });

      it('sets setup status as a compare-and-set that bumps the version only on change', async () => {
        const v = await added();
        const t1 = at(T0 + 1_000);
        const caps = { commands: ['LOCK_CENTRAL_LOCK' as const], vehicle_state: ['POSITION'] };
        expect(
          await store.setSetupStatus(
            v.vehicle_id,
            { status: 'SUCCEEDED', reason: null, capabilities: caps, at: t1 },
            'IN_PROGRESS',
          ),
        ).toBe(true);
        expect(await store.getVehicle(v.vehicle_id)).toEqual({
          ...v,
          setup_status: 'SUCCEEDED',
          capabilities: caps,
          version: 2,
          modified_at: t1,
        });
        // A late timeout must not turn a finished setup into FAILED.
        const t2 = at(T0 + 2_000);
        expect(
          await store.setSetupStatus(v.vehicle_id, { status: 'FAILED', reason: 'timeout', at: t2 }, 'IN_PROGRESS'),
        ).toBe(false);
        expect((await store.getVehicle(v.vehicle_id))?.version).toBe(2);
        // Same status and reason, no capabilities: nothing changes.
        expect(await store.setSetupStatus(v.vehicle_id, { status: 'SUCCEEDED', reason: null, at: t2 })).toBe(false);
        expect(
          await store.setSetupStatus(v.vehicle_id, { status: 'SUCCEEDED', reason: null, capabilities: caps, at: t2 }),
        ).toBe(false);
        // Unconditional: a re-setup with a reason, then clearing it.
        expect(await store.setSetupStatus(v.vehicle_id, { status: 'FAILED', reason: 'unit rejected', at: t2 })).toBe(
          true,
        );
        expect(await store.getVehicle(v.vehicle_id)).toMatchObject({
          setup_status: 'FAILED',
          setup_failure_reason: 'unit rejected',
          capabilities: caps,
          version: 3,
          modified_at: t2,
        });
        expect(
          await store.setSetupStatus(v.vehicle_id, { status: 'IN_PROGRESS', reason: null, at: t2 }, 'FAILED'),
        ).toBe(true);
        expect(await store.getVehicle(v.vehicle_id)).toMatchObject({ setup_failure_reason: null, version: 4 });
        expect(await store.setSetupStatus(uid('V'), { status: 'FAILED', reason: null, at: t2 })).toBe(false);
      });

      it('lets exactly one of concurrent setup completions win', async () => {
        const v = await added();
        const results = await Promise.all(
          (['SUCCEEDED', 'FAILED', 'SUCCEEDED', 'FAILED'] as const).map((status) =>
            store.setSetupStatus(v.vehicle_id, { status, reason: null, at: at(T0 + 1) }, 'IN_PROGRESS'),
          ),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect((await store.getVehicle(v.vehicle_id))?.version).toBe(2);
      });

      it('sets life status only when it differs, without touching the ETag version', async () => {
        const v = await added();
        const t1 = at(T0 + 5_000);
        expect(await store.setLifeStatus(v.vehicle_id, 'ONLINE', t1)).toBe(true);
        expect(await store.getVehicle(v.vehicle_id)).toEqual({
          ...v,
          life_status: 'ONLINE',
          life_status_modified_at: t1,
        });
        expect(await store.setLifeStatus(v.vehicle_id, 'ONLINE', at(T0 + 9_000))).toBe(false);
        expect((await store.getVehicle(v.vehicle_id))?.life_status_modified_at).toBe(t1);
        expect(await store.setLifeStatus(v.vehicle_id, 'OFFLINE', at(T0 + 9_000))).toBe(true);
        expect(await store.getVehicle(v.vehicle_id)).toMatchObject({ life_status: 'OFFLINE', version: 1 });
        expect(await store.setLifeStatus(uid('V'), 'ONLINE', t1)).toBe(false);
      });

      it('counts vehicles per brand, setup status and life status', async () => {
        const brand = `COUNT_${uid('b')
          .toUpperCase()
          .replace(/[^A-Z0-9]/g, '')}`.slice(0, 32);
        const mine = async () =>
          (await store.countVehicles())
            .filter((c) => c.telematics_brand === brand)
            .sort((a, b) => `${a.setup_status}${a.life_status}`.localeCompare(`${b.setup_status}${b.life_status}`));
        expect(await mine()).toEqual([]);
        const fleet = uid('fleet');
        const ids = [uid('V'), uid('V'), uid('V')];
        for (const [i, id] of ids.entries()) {
          await store.insertVehicle(
            vehicle({
              vehicle_id: id,
              fleet_id: fleet,
              telematics_brand: brand,
              telematics_unit_id: id,
              setup_status: i === 0 ? 'IN_PROGRESS' : 'SUCCEEDED',
            }),
          );
        }
        await store.setLifeStatus(ids[1]!, 'ONLINE', at(T0 + 1));
        expect(await mine()).toEqual([
          { telematics_brand: brand, setup_status: 'IN_PROGRESS', life_status: 'OFFLINE', count: 1 },
          { telematics_brand: brand, setup_status: 'SUCCEEDED', life_status: 'OFFLINE', count: 1 },
          { telematics_brand: brand, setup_status: 'SUCCEEDED', life_status: 'ONLINE', count: 1 },
        ]);
      });

      it('lists setups still in progress that started before a moment', async () => {
        // Database-wide operation: this test lives in its own era so other tests' rows never qualify.
        const s = store;
        const E = Date.UTC(1990, 0, 1);
        const fleet = uid('fleet');
        const mk = async (id: string, createdMs: number, status: Vehicle['setup_status']) => {
          const v = vehicle({ vehicle_id: id, fleet_id: fleet, created_at: at(createdMs), setup_status: status });
          await s.insertVehicle(v);
        };
        await mk('old-1', E - 3_000, 'IN_PROGRESS');
        await mk('old-2', E - 2_000, 'IN_PROGRESS');
        await mk('old-done', E - 5_000, 'SUCCEEDED');
        await mk('old-failed', E - 5_000, 'FAILED');
        await mk('new', E, 'IN_PROGRESS');
        expect((await s.listStaleSetups(at(E), 10)).map((v) => v.vehicle_id)).toEqual(['old-1', 'old-2']);
        expect((await s.listStaleSetups(at(E), 1)).map((v) => v.vehicle_id)).toEqual(['old-1']);
        expect(await s.listStaleSetups(at(E - 3_000), 10)).toEqual([]);
      });
    });

    describe('vehicle state', () => {
      // SPEC §3
      it('merges per property: newer or equal timestamps win, older never overwrite', async () => {
        const v = await added();
        const first = await store.mergeState(v.vehicle_id, {
          central_lock: { timestamp: at(T0 + 10), value: 'LOCKED' },
          position: { timestamp: at(T0 + 10), value: { lat: 52.52, lon: 13.405 } },
        });
        expect(first).toEqual({
          central_lock: { timestamp: at(T0 + 10), value: 'LOCKED' },
          position: { timestamp: at(T0 + 10), value: { lat: 52.52, lon: 13.405 } },
        });
        // One millisecond older loses; the other property in the same report still wins.
        const second = await store.mergeState(v.vehicle_id, {
          central_lock: { timestamp: at(T0 + 9), value: 'UNLOCKED' },
          driving_enabled: { timestamp: at(T0 + 1), value: false },
        });
        expect(second).toEqual({ ...first, driving_enabled: { timestamp: at(T0 + 1), value: false } });
        // Equal timestamp replaces (a repeated report of the same moment is the latest word).
        const third = await store.mergeState(v.vehicle_id, {
          central_lock: { timestamp: at(T0 + 10), value: 'UNLOCKED' },
          position: { timestamp: at(T0 + 11), value: { lat: 1.5, lon: -2.25 } },
        });
        expect(third).toEqual({
          central_lock: { timestamp: at(T0 + 10), value: 'UNLOCKED' },
          position: { timestamp: at(T0 + 11), value: { lat: 1.5, lon: -2.25 } },
          driving_enabled: { timestamp: at(T0 + 1), value: false },
        });
        expect(await store.getState(v.vehicle_id)).toEqual(third);
        expect(await store.mergeState(v.vehicle_id, {})).toEqual(third);
        expect(await store.getState(uid('V'))).toEqual({});
      });

      it('ends with the newest value per property whatever order concurrent reports arrive in', async () => {
        const v = await added();
        const reports = Array.from({ length: 20 }, (_, i) => ({
          mileage_in_kilometers: { timestamp: at(T0 + i), value: i },
          speed_in_kilometers_per_hour: { timestamp: at(T0 + 100 - i), value: i },
        }));
        await Promise.all([...reports].reverse().map((r) => store.mergeState(v.vehicle_id, r)));
        expect(await store.getState(v.vehicle_id)).toEqual({
          mileage_in_kilometers: { timestamp: at(T0 + 19), value: 19 },
          speed_in_kilometers_per_hour: { timestamp: at(T0 + 100), value: 0 },
        });
      });

      it("answers each of many vehicles' concurrent reports with its own state, a missing vehicle's with {}", async () => {
        const vehicles = await Promise.all(Array.from({ length: 6 }, () => added()));
        const missing = uid('V');
        const answers = await Promise.all([
          ...vehicles.map((v, i) =>
            store.mergeState(v.vehicle_id, { mileage_in_kilometers: { timestamp: at(T0 + i), value: i } }),
          ),
          store.mergeState(missing, { mileage_in_kilometers: { timestamp: at(T0), value: 99 } }),
          ...vehicles.map((v, i) =>
            store.mergeState(v.vehicle_id, { ignition: { timestamp: at(T0 + 50 + i), value: 'ON' } }),
          ),
        ]);
        expect(answers[vehicles.length]).toEqual({});
        for (const [i, v] of vehicles.entries()) {
          expect(answers[i]?.mileage_in_kilometers).toEqual({ timestamp: at(T0 + i), value: i });
          expect(await store.getState(v.vehicle_id)).toEqual({
            mileage_in_kilometers: { timestamp: at(T0 + i), value: i },
            ignition: { timestamp: at(T0 + 50 + i), value: 'ON' },
          });
        }
        expect(await store.getState(missing)).toEqual({});
      });

      it('keeps nothing for a vehicle that does not exist', async () => {
        const id = uid('V');
        expect(await store.mergeState(id, { ignition: { timestamp: at(T0), value: 'ON' } })).toEqual({});
        expect(await store.getState(id)).toEqual({});
      });
    });

    describe('commands', () => {
      const succeeded = (durationMs: number) => succeededAt(at(T0 + durationMs), durationMs);
      // SPEC §1: one command at a time per vehicle
      it('allows one command in flight per vehicle', async () => {
        const v = await added();
        const other = await added();
        const c1 = command(v);
        expect(await store.beginCommand(c1)).toBe(true);
        const c2 = command(v);
        expect(await store.beginCommand(c2)).toBe(false);
        expect(await store.getCommand(c2.flow_id)).toBeUndefined();
        expect(await store.beginCommand(command(other))).toBe(true);
        expect(await store.getCommand(c1.flow_id)).toEqual(c1);

        await store.finishCommand(c1.flow_id, {
          status: 'SUCCEEDED',
          problem_type: null,
          detail: null,
          delivery: 'DELIVERED',
          steps: null,
          completed_at: at(T0 + 150),
          duration_ms: 150,
        });
        expect(await store.beginCommand(c2)).toBe(true);
      });

      // SPEC §1: across all fleetgate instances
      it('lets exactly one of 20 concurrent begins win', async () => {
        const v = await added();
        const results = await Promise.all(Array.from({ length: 20 }, () => store.beginCommand(command(v))));
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await store.listCommands(v.vehicle_id, 100)).toHaveLength(1);
      });

      // The command path's first step: the vehicle read and the begin in one call.
      it('starts a command only for a set-up vehicle of the fleet that has the command', async () => {
        const start = (v: Pick<Vehicle, 'vehicle_id' | 'fleet_id'>, overrides: Partial<CommandRecord> = {}) => {
          const { adapter: _adapter, ...record } = command(v, overrides);
          return { record, result: store.startCommand(record) };
        };
        const ready = await added({ setup_status: 'SUCCEEDED', telematics_brand: 'brand-x' });

        const ok = start(ready);
        expect(await ok.result).toEqual({ vehicle: ready, begun: true });
        expect(await store.getCommand(ok.record.flow_id)).toEqual({ ...ok.record, adapter: 'brand-x' });

        // Single flight: the vehicle is read all the same.
        expect(await start(ready).result).toEqual({ vehicle: ready, begun: false });

        const other = await added({ setup_status: 'SUCCEEDED' });
        const foreign = start({ ...other, fleet_id: 'another-fleet' });
        expect(await foreign.result).toEqual({ vehicle: other, begun: false });
        const unsupported = start(other, { command: 'DRAW_ATTENTION' });
        expect(await unsupported.result).toEqual({ vehicle: other, begun: false });
        const settingUp = await added();
        expect(await start(settingUp).result).toEqual({ vehicle: settingUp, begun: false });
        const missing = start({ vehicle_id: uid('V'), fleet_id: other.fleet_id });
        expect(await missing.result).toEqual({ vehicle: undefined, begun: false });
        for (const r of [foreign, unsupported, missing])
          expect(await store.getCommand(r.record.flow_id)).toBeUndefined();
      });

      it('lets exactly one of 20 concurrent starts for a vehicle begin, and starts other vehicles alongside', async () => {
        const v = await added({ setup_status: 'SUCCEEDED' });
        const others = await Promise.all(Array.from({ length: 5 }, () => added({ setup_status: 'SUCCEEDED' })));
        const strip = ({ adapter: _adapter, ...record }: CommandRecord) => record;
        const [mine, theirs] = await Promise.all([
          Promise.all(Array.from({ length: 20 }, () => store.startCommand(strip(command(v))))),
          Promise.all(others.map((o) => store.startCommand(strip(command(o))))),
        ]);
        expect(mine.filter((r) => r.begun)).toHaveLength(1);
        expect(mine.every((r) => r.vehicle?.vehicle_id === v.vehicle_id)).toBe(true);
        expect(theirs.map((r) => [r.vehicle?.vehicle_id, r.begun])).toEqual(others.map((o) => [o.vehicle_id, true]));
      });

      it('records the completion of a command', async () => {
        const v = await added();
        const c = command(v, { command: 'UNLOCK_AND_ENABLE_DRIVING' });
        await store.beginCommand(c);
        const completion = {
          status: 'FAILED' as const,
          problem_type: 'telematics-unit/error',
          detail: 'step 2 failed',
          delivery: 'DELIVERED' as const,
          steps: [
            { command: 'UNLOCK_CENTRAL_LOCK' as const, outcome: 'SUCCEEDED' as const },
            {
              command: 'ENABLE_DRIVING' as const,
              outcome: 'FAILED' as const,
              problem_type: 'telematics-unit/error',
              detail: 'immobilizer fault',
            },
          ],
          completed_at: at(T0 + 1_234),
          duration_ms: 1_234,
        };
        await store.finishCommand(c.flow_id, completion);
        expect(await store.getCommand(c.flow_id)).toEqual({ ...c, ...completion });
        expect(await store.getCommand(randomUUID())).toBeUndefined();
      });

      it('completes a command: finishes the record and merges its state in one step', async () => {
        const v = await added();
        await store.mergeState(v.vehicle_id, {
          central_lock: { timestamp: at(T0 + 10), value: 'LOCKED' },
          mileage_in_kilometers: { timestamp: at(T0 + 50), value: 100 },
        });
        const c = command(v);
        await store.beginCommand(c);
        const completion = succeeded(300);
        await store.mergeState(v.vehicle_id, { ignition: { timestamp: at(T0 + 30), value: 'OFF' } });
        const merged = await store.completeCommand(c.flow_id, completion, v.vehicle_id, {
          central_lock: { timestamp: at(T0 + 20), value: 'UNLOCKED' },
          // Older than what is stored: the stored value stays (SPEC §3).
          mileage_in_kilometers: { timestamp: at(T0 + 40), value: 90 },
          // The same time, another value: the report wins, as in mergeState.
          ignition: { timestamp: at(T0 + 30), value: 'ON' },
        });
        const expected = {
          central_lock: { timestamp: at(T0 + 20), value: 'UNLOCKED' },
          mileage_in_kilometers: { timestamp: at(T0 + 50), value: 100 },
          ignition: { timestamp: at(T0 + 30), value: 'ON' },
        };
        expect(merged).toEqual(expected);
        // The answer is what is stored.
        expect(await store.getState(v.vehicle_id)).toEqual(expected);
        expect(await store.getCommand(c.flow_id)).toEqual({ ...c, ...completion });
        // The vehicle takes the next command: the record is no longer in flight.
        expect(await store.beginCommand(command(v))).toBe(true);
        // With no state to merge, the record is finished all the same.
        const other = await added();
        const c2 = command(other);
        await store.beginCommand(c2);
        expect(
          await store.completeCommand(c2.flow_id, { ...completion, status: 'FAILED' }, other.vehicle_id, {}),
        ).toEqual({});
        expect((await store.getCommand(c2.flow_id))?.status).toBe('FAILED');
      });

      // The engines group concurrent writes (SQLite: one transaction, PostgreSQL: one statement).
      it('completes concurrent commands each on its own, one of them for a vehicle deleted meanwhile', async () => {
        const vehicles = await Promise.all(Array.from({ length: 8 }, () => added()));
        const records = vehicles.map((v) => command(v));
        expect(await Promise.all(records.map((c) => store.beginCommand(c)))).toEqual(records.map(() => true));
        const gone = vehicles[3]!;
        expect(await store.deleteVehicle(gone.vehicle_id)).toBe(true);
        const completion = succeeded(300);
        const merged = await Promise.all(
          vehicles.map((v, i) =>
            store.completeCommand(records[i]!.flow_id, completion, v.vehicle_id, {
              mileage_in_kilometers: { timestamp: at(T0 + 200), value: i },
            }),
          ),
        );
        for (const [i, v] of vehicles.entries()) {
          if (v === gone) {
            expect(merged[i]).toEqual({});
            expect(await store.getState(v.vehicle_id)).toEqual({});
            continue;
          }
          expect(merged[i]).toEqual({ mileage_in_kilometers: { timestamp: at(T0 + 200), value: i } });
          expect((await store.getCommand(records[i]!.flow_id))?.status).toBe('SUCCEEDED');
        }
      });

      it('lists commands newest first with a flow_id cursor', async () => {
        const v = await added();
        const flows: CommandRecord[] = [];
        // Three share a timestamp: flow_id breaks the tie.
        for (const ms of [0, 10, 10, 10, 20, 30]) {
          const c = command(v, { requested_at: at(T0 + ms) });
          expect(await store.beginCommand(c)).toBe(true);
          await store.finishCommand(c.flow_id, {
            status: 'SUCCEEDED',
            problem_type: null,
            detail: null,
            delivery: 'DELIVERED',
            steps: null,
            completed_at: at(T0 + ms + 1),
            duration_ms: 1,
          });
          flows.push(c);
        }
        const expected = [...flows]
          .sort((a, b) => b.requested_at.localeCompare(a.requested_at) || (a.flow_id < b.flow_id ? 1 : -1))
          .map((c) => c.flow_id);
        const seen: string[] = [];
        let before: string | undefined;
        for (;;) {
          const page = await store.listCommands(v.vehicle_id, 2, before);
          seen.push(...page.map((c) => c.flow_id));
          if (page.length < 2) break;
          before = page.at(-1)!.flow_id;
        }
        expect(seen).toEqual(expected);
        expect((await store.listCommands(v.vehicle_id, 1))[0]).toMatchObject({ status: 'SUCCEEDED', duration_ms: 1 });
        expect(await store.listCommands(v.vehicle_id, 10, randomUUID())).toEqual([]);
        expect(await store.listCommands(uid('V'), 10)).toEqual([]);
      });

      it('expires in-flight commands whose deadline passed as OUTCOME_UNKNOWN', async () => {
        // Database-wide operation: this test lives in its own era so other tests' rows never qualify.
        const s = store;
        const E = Date.UTC(1991, 0, 1);
        const v = vehicle();
        const w = vehicle();
        await s.insertVehicle(v);
        await s.insertVehicle(w);
        const stale = command(v, { requested_at: at(E), deadline_at: at(E + 15_000) });
        const live = command(w, { requested_at: at(E + 10_000), deadline_at: at(E + 25_000) });
        const done = command(w, { requested_at: at(E - 60_000), deadline_at: at(E - 45_000) });
        await s.beginCommand(done);
        await s.finishCommand(done.flow_id, {
          status: 'SUCCEEDED',
          problem_type: null,
          detail: null,
          delivery: 'DELIVERED',
          steps: null,
          completed_at: at(E - 59_000),
          duration_ms: 1_000,
        });
        await s.beginCommand(stale);
        await s.beginCommand(live);

        // The deadline itself is not past it.
        expect(await s.expireCommands(at(E + 15_000))).toBe(0);
        const now = at(E + 20_000);
        expect(await s.expireCommands(now)).toBe(1);
        expect(await s.getCommand(stale.flow_id)).toMatchObject({
          status: 'OUTCOME_UNKNOWN',
          delivery: 'DELIVERED_OUTCOME_UNKNOWN',
          completed_at: now,
          duration_ms: 20_000,
        });
        expect((await s.getCommand(live.flow_id))?.status).toBe('IN_FLIGHT');
        expect((await s.getCommand(done.flow_id))?.status).toBe('SUCCEEDED');
        expect(await s.expireCommands(now)).toBe(0);
        // The vehicle is free again.
        expect(await s.beginCommand(command(v))).toBe(true);
      });

      it('lets a late completion win over a deadline expiry, never over another completion', async () => {
        // Its own era, as above: expireCommands is database-wide.
        const s = store;
        const E = Date.UTC(1992, 0, 1);
        const v = vehicle();
        await s.insertVehicle(v);
        const late = command(v, { requested_at: at(E), deadline_at: at(E + 15_000) });
        await s.beginCommand(late);
        // At least this one (the test above leaves an earlier era's record in flight).
        expect(await s.expireCommands(at(E + 20_000))).toBeGreaterThanOrEqual(1);
        const expired = await s.getCommand(late.flow_id);
        // The expiry says only what is known: no claim that an instance stopped.
        expect(expired?.detail).not.toMatch(/stopped before it finished/);
        expect(expired?.detail).toMatch(/could not reach the database/);
        // The outcome written once the database was back replaces the expiry's guess.
        const real = { ...succeeded(300), completed_at: at(E + 900), duration_ms: 900 };
        await s.completeCommand(late.flow_id, real, v.vehicle_id, {
          central_lock: { timestamp: at(E + 800), value: 'UNLOCKED' },
        });
        expect(await s.getCommand(late.flow_id)).toEqual({ ...late, ...real });
        // A completion never overwrites another one, nor does an expiry.
        await s.finishCommand(late.flow_id, { ...real, status: 'FAILED', problem_type: 'telematics-unit/error' });
        expect(await s.expireCommands(at(E + 60_000))).toBe(0);
        expect(await s.getCommand(late.flow_id)).toEqual({ ...late, ...real });
      });
    });

    // SPEC §8: every change writes its events in the same transaction (the outbox).
    describe('events (outbox)', () => {
      /** All of a fleet's events, oldest first, through the feed's pages. */
      async function eventsOf(s: Store, fleetId: string, pageSize = 3): Promise<EventEnvelope[]> {
        const out: EventEnvelope[] = [];
        let after: string | undefined;
        for (let i = 0; i < 100; i++) {
          const page = await s.events.read({ fleet_id: fleetId, after, limit: pageSize });
          out.push(...page.items.map((e) => e.event));
          if (page.items.length === 0) return out;
          // A full page continues from its last event; a short one from the feed's head.
          if (page.items.length === pageSize) expect(page.next_cursor).toBe(page.items.at(-1)!.cursor);
          after = page.next_cursor;
        }
        throw new Error('feed does not end');
      }
      const types = (events: EventEnvelope[]) => events.map((e) => e.metadata.type);
      const succeeded = (durationMs: number) => succeededAt(at(T0 + durationMs), durationMs);

      it('writes VehicleAdded, VehicleChanged with reasons and VehicleRemoved with the cause’s flow id', async () => {
        const v = vehicle();
        const flow = randomUUID();
        await store.insertVehicle(v, { flow_id: flow });
        const patched = await store.updateVehicle(
          v.vehicle_id,
          { master_data: { ...v.master_data, license_plate: 'B-FG 2' }, operation_status: 'MAINTENANCE' },
          undefined,
          at(T0 + 1),
          { flow_id: flow },
        );
        expect(patched).toMatchObject({ version: 2 });
        expect(await store.setLifeStatus(v.vehicle_id, 'ONLINE', at(T0 + 2))).toBe(true);
        expect(await store.setLifeStatus(v.vehicle_id, 'ONLINE', at(T0 + 3))).toBe(false);
        expect(await store.setSetupStatus(v.vehicle_id, { status: 'SUCCEEDED', reason: null, at: at(T0 + 4) })).toBe(
          true,
        );
        expect(await store.deleteVehicle(v.vehicle_id, undefined, { flow_id: flow })).toBe(true);
        const events = await eventsOf(store, v.fleet_id);
        expect(types(events)).toEqual([
          'VehicleAdded',
          'VehicleChanged',
          'VehicleChanged',
          'VehicleChanged',
          'VehicleRemoved',
        ]);
        const [added_, patch, life, setup, removed] = events as [
          EventEnvelope,
          EventEnvelope,
          EventEnvelope,
          EventEnvelope,
          EventEnvelope,
        ];
        expect(added_.metadata).toMatchObject({
          fleet_id: v.fleet_id,
          vehicle_id: v.vehicle_id,
          flow_id: flow,
          schema_major_version: 1,
        });
        expect(added_.metadata.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
        expect(added_.data.vehicle).toMatchObject({ vehicle_id: v.vehicle_id, setup_status: 'IN_PROGRESS' });
        expect(JSON.stringify(events)).not.toContain('scrypt');
        expect(patch.data.reasons).toEqual(['MASTER_DATA_CHANGED', 'OPERATION_STATUS_CHANGED']);
        expect(patch.data.vehicle).toMatchObject({ operation_status: 'MAINTENANCE', version: 2 });
        expect(life.data.reasons).toEqual(['LIFE_STATUS_CHANGED']);
        expect(life.metadata.flow_id).not.toBe(flow);
        expect(setup.data.reasons).toEqual(['SETUP_STATUS_CHANGED']);
        expect(removed.metadata.flow_id).toBe(flow);
        expect(new Set(events.map((e) => e.metadata.id)).size).toBe(5);
      });

      it('writes each of many life-status changes arriving at once (a reconnect storm) with its event', async () => {
        const fleet = uid('fleet');
        const vs = await Promise.all(Array.from({ length: 8 }, () => added({ fleet_id: fleet })));
        await store.setLifeStatus(vs[7]!.vehicle_id, 'ONLINE', at(T0 + 1));
        const changes = [
          ...vs.map((v, i) => [v.vehicle_id, at(T0 + 10 + i)] as const),
          [uid('V'), at(T0 + 20)] as const, // deleted meanwhile, say
        ];
        const results = await Promise.all(changes.map(([id, t]) => store.setLifeStatus(id, 'ONLINE', t)));
        expect(results).toEqual([true, true, true, true, true, true, true, false, false]);
        for (const [i, v] of vs.entries()) {
          expect(await store.getVehicle(v.vehicle_id)).toEqual({
            ...v,
            life_status: 'ONLINE',
            life_status_modified_at: at(T0 + (i === 7 ? 1 : 10 + i)),
          });
        }
        const life = (await eventsOf(store, fleet, 100)).filter((e) => e.metadata.type === 'VehicleChanged');
        expect(life).toHaveLength(8);
        const byVehicle = new Map(life.map((e) => [e.metadata.vehicle_id, e]));
        for (const [i, v] of vs.slice(0, 7).entries()) {
          const e = byVehicle.get(v.vehicle_id)!;
          expect(e.metadata.occurred_at).toBe(at(T0 + 10 + i));
          expect(e.data.reasons).toEqual(['LIFE_STATUS_CHANGED']);
          expect(e.data.vehicle).toMatchObject({ life_status: { value: 'ONLINE', modified_at: at(T0 + 10 + i) } });
        }
        // And back, all at once: each vehicle OFFLINE, one more event each.
        const back = await Promise.all(vs.map((v) => store.setLifeStatus(v.vehicle_id, 'OFFLINE', at(T0 + 30))));
        expect(back.every(Boolean)).toBe(true);
        expect((await store.listVehicles({ fleet_id: fleet, limit: 100 })).map((v) => v.life_status)).toEqual(
          Array(8).fill('OFFLINE'),
        );
        expect((await eventsOf(store, fleet, 100)).filter((e) => e.metadata.type === 'VehicleChanged')).toHaveLength(
          16,
        );
      });

      it('writes state events only when the write stores something, …Changed only when the value changed', async () => {
        const v = await added({
          capabilities: {
            commands: ['LOCK_CENTRAL_LOCK'],
            vehicle_state: ['CENTRAL_LOCK', 'POSITION', 'IGNITION', 'MILEAGE_IN_KILOMETERS'],
          },
        });
        const pos = { lat: 52.5, lon: 13.4 };
        const report = {
          central_lock: { timestamp: at(T0 + 10), value: 'LOCKED' },
          position: { timestamp: at(T0 + 10), value: pos },
        };
        await store.mergeState(v.vehicle_id, report, { flow_id: 'f-1' });
        // The same report again stores nothing: no event.
        await store.mergeState(v.vehicle_id, report);
        // A newer position, the lock as it was: recorded, but the lock did not change.
        await store.mergeState(v.vehicle_id, {
          central_lock: { timestamp: at(T0 + 20), value: 'LOCKED' },
          position: { timestamp: at(T0 + 20), value: { lat: 52.6, lon: 13.4 } },
        });
        // An older report stores nothing.
        await store.mergeState(v.vehicle_id, { central_lock: { timestamp: at(T0 + 5), value: 'UNLOCKED' } });
        await store.mergeState(v.vehicle_id, { central_lock: { timestamp: at(T0 + 30), value: 'UNLOCKED' } });
        const events = (await eventsOf(store, v.fleet_id)).filter((e) => e.metadata.type !== 'VehicleAdded');
        expect(types(events)).toEqual([
          'VehicleStateRecorded',
          'CentralLockStatusChanged',
          'VehicleStateRecorded',
          'VehicleStateRecorded',
          'CentralLockStatusChanged',
        ]);
        expect(events[0]!.metadata.flow_id).toBe('f-1');
        expect(events[1]!.metadata.flow_id).toBe('f-1');
        expect(events[0]!.data).toEqual({ state: report });
        expect(events[1]!.data).toEqual({
          property: 'central_lock',
          value: 'LOCKED',
          timestamp: at(T0 + 10),
          previous: null,
        });
        expect(events[4]!.data).toEqual({
          property: 'central_lock',
          value: 'UNLOCKED',
          timestamp: at(T0 + 30),
          previous: 'LOCKED',
        });
      });

      it('derives a Trip from ignition ON → OFF with start and end position and mileage', async () => {
        const v = await added();
        const p1 = { lat: 52.5, lon: 13.4 };
        const p2 = { lat: 52.6, lon: 13.5 };
        await store.mergeState(v.vehicle_id, {
          ignition: { timestamp: at(T0), value: 'OFF' },
          mileage_in_kilometers: { timestamp: at(T0), value: 100 },
          position: { timestamp: at(T0), value: p1 },
        });
        await store.mergeState(v.vehicle_id, { ignition: { timestamp: at(T0 + 1_000), value: 'ON' } });
        await store.mergeState(v.vehicle_id, {
          ignition: { timestamp: at(T0 + 1_000), value: 'ON' },
          mileage_in_kilometers: { timestamp: at(T0 + 60_000), value: 104.5 },
          position: { timestamp: at(T0 + 60_000), value: p2 },
        });
        const c = command(v);
        await store.beginCommand(c);
        await store.completeCommand(c.flow_id, succeeded(120_000), v.vehicle_id, {
          ignition: { timestamp: at(T0 + 120_000), value: 'OFF' },
        });
        const events = await eventsOf(store, v.fleet_id);
        expect(types(events).filter((t) => t !== 'VehicleStateRecorded')).toEqual([
          'VehicleAdded',
          'IgnitionChanged',
          'IgnitionChanged',
          'IgnitionChanged',
          'Trip',
          'CommandFinished',
        ]);
        const trip = events.find((e) => e.metadata.type === 'Trip')!;
        expect(trip.metadata.flow_id).toBe(c.flow_id);
        expect(trip.data).toEqual({
          started_at: at(T0 + 1_000),
          ended_at: at(T0 + 120_000),
          duration_seconds: 119,
          start_position: p1,
          end_position: p2,
          start_mileage_in_kilometers: 100,
          end_mileage_in_kilometers: 104.5,
          distance_in_kilometers: 4.5,
        });
        const finished = events.find((e) => e.metadata.type === 'CommandFinished')!;
        expect(finished.metadata).toMatchObject({ flow_id: c.flow_id, fleet_id: v.fleet_id, vehicle_id: v.vehicle_id });
        expect(finished.data).toEqual({
          command: c.command,
          outcome: 'SUCCEEDED',
          problem_type: null,
          detail: null,
          delivery: 'DELIVERED',
          steps: null,
          duration_ms: 120_000,
          client_id: c.client_id,
          user_id: null,
          user_email: null,
          requested_at: c.requested_at,
          completed_at: at(T0 + 120_000),
        });
      });

      it('writes CommandFinished for finished and expired records, none for a vehicle deleted meanwhile', async () => {
        const v = await added();
        const c = command(v);
        await store.beginCommand(c);
        await store.finishCommand(c.flow_id, { ...succeeded(5), status: 'FAILED', problem_type: 'x/y' });
        const gone = await added();
        const g = command(gone);
        await store.beginCommand(g);
        await store.deleteVehicle(gone.vehicle_id);
        await store.completeCommand(g.flow_id, succeeded(5), gone.vehicle_id, {
          central_lock: { timestamp: at(T0), value: 'LOCKED' },
        });
        expect(types(await eventsOf(store, v.fleet_id))).toEqual(['VehicleAdded', 'CommandFinished']);
        expect(types(await eventsOf(store, gone.fleet_id))).toEqual(['VehicleAdded', 'VehicleRemoved']);
        // Database-wide: on a store of its own.
        const s = await fresh();
        const E = Date.UTC(1992, 0, 1);
        const w = vehicle();
        await s.insertVehicle(w);
        const stale = command(w, { requested_at: at(E), deadline_at: at(E + 1) });
        await s.beginCommand(stale);
        expect(await s.expireCommands(at(E + 10))).toBe(1);
        const [, expired] = await eventsOf(s, w.fleet_id);
        expect(expired).toMatchObject({
          metadata: { type: 'CommandFinished', flow_id: stale.flow_id },
          data: { outcome: 'OUTCOME_UNKNOWN', delivery: 'DELIVERED_OUTCOME_UNKNOWN' },
        });
      });

      it('settles a command of unknown outcome with its late answer: record, state and events in one step', async () => {
        const v = await added();
        const c = command(v);
        await store.beginCommand(c);
        await store.finishCommand(c.flow_id, {
          ...succeeded(1_000),
          status: 'OUTCOME_UNKNOWN',
          problem_type: 'vehicle/no-connection',
          delivery: 'DELIVERED_OUTCOME_UNKNOWN',
        });
        await store.mergeState(v.vehicle_id, { central_lock: { timestamp: at(T0), value: 'LOCKED' } });
        const resolution = {
          status: 'SUCCEEDED' as const,
          problem_type: null,
          detail: null,
          resolved_at: at(T0 + 2_000),
        };
        const late = { central_lock: { timestamp: at(T0 + 1_500), value: 'UNLOCKED' } };
        await store.resolveCommand(c.flow_id, resolution, v.vehicle_id, late);
        expect(await store.getCommand(c.flow_id)).toMatchObject({
          status: 'SUCCEEDED',
          delivery: 'DELIVERED',
          problem_type: null,
        });
        expect(await store.getState(v.vehicle_id)).toEqual(late);
        // Settled once: a second late answer changes the record no more.
        await store.resolveCommand(c.flow_id, { ...resolution, status: 'FAILED' }, v.vehicle_id, {});
        expect((await store.getCommand(c.flow_id))?.status).toBe('SUCCEEDED');
        const events = (await eventsOf(store, v.fleet_id)).filter((e) => e.metadata.flow_id === c.flow_id);
        expect(types(events).sort()).toEqual(
          ['CentralLockStatusChanged', 'CommandFinished', 'CommandOutcomeResolved', 'VehicleStateRecorded'].sort(),
        );
        expect(events.find((e) => e.metadata.type === 'CommandOutcomeResolved')).toMatchObject({
          metadata: { fleet_id: v.fleet_id, vehicle_id: v.vehicle_id },
          data: {
            command: c.command,
            outcome: 'SUCCEEDED',
            previous_outcome: 'OUTCOME_UNKNOWN',
            requested_at: c.requested_at,
            resolved_at: at(T0 + 2_000),
          },
        });
      });

      it('reads in commit order with filters, skips past what filters leave out, and never shows another fleet', async () => {
        const v = await added();
        const w = await added({ fleet_id: v.fleet_id });
        const other = await added();
        for (let i = 1; i <= 4; i++) {
          await store.mergeState(v.vehicle_id, {
            central_lock: { timestamp: at(T0 + i), value: i % 2 ? 'LOCKED' : 'UNLOCKED' },
          });
          await store.mergeState(w.vehicle_id, { position: { timestamp: at(T0 + i), value: { lat: i, lon: 0 } } });
        }
        const all = await eventsOf(store, v.fleet_id, 2);
        expect(all.every((e) => e.metadata.fleet_id === v.fleet_id)).toBe(true);
        expect(all.filter((e) => e.metadata.vehicle_id === other.vehicle_id)).toEqual([]);
        expect(all).toHaveLength(2 + 4 * 3);
        const ids = all.map((e) => e.metadata.id);
        const locks = await store.events.read({
          fleet_id: v.fleet_id,
          types: ['CentralLockStatusChanged'],
          vehicle_id: v.vehicle_id,
          limit: 10,
        });
        expect(locks.items.map((e) => e.event.data.value)).toEqual(['LOCKED', 'UNLOCKED', 'LOCKED', 'UNLOCKED']);
        expect(locks.items.map((e) => e.event.metadata.id)).toEqual(
          ids.filter((id) => locks.items.some((e) => e.event.metadata.id === id)),
        );
        // Nothing after the last match: the cursor moves past the events the filter left out.
        const after = await store.events.read({
          fleet_id: v.fleet_id,
          types: ['CentralLockStatusChanged'],
          after: locks.next_cursor,
          limit: 10,
        });
        expect(after.items).toEqual([]);
        await store.mergeState(v.vehicle_id, { central_lock: { timestamp: at(T0 + 9), value: 'LOCKED' } });
        const next = await store.events.read({
          fleet_id: v.fleet_id,
          types: ['CentralLockStatusChanged'],
          after: after.next_cursor,
          limit: 10,
        });
        expect(next.items.map((e) => e.event.data.value)).toEqual(['LOCKED']);
        await expect(store.events.read({ after: 'not-a-cursor', limit: 1 })).rejects.toBeInstanceOf(InvalidCursorError);
      });

      it('prunes the oldest events in bounded batches; a cursor before them is expired', async () => {
        const s = await fresh();
        const v = vehicle();
        await s.insertVehicle(v);
        for (let i = 1; i <= 5; i++) {
          await s.mergeState(v.vehicle_id, { position: { timestamp: at(T0 + i), value: { lat: i, lon: 0 } } });
        }
        const first = await s.events.read({ limit: 2 });
        expect(await s.events.prune(at(Date.now() + 60_000), 2)).toBe(2);
        expect(await s.events.prune(at(Date.now() - 3600_000), 100)).toBe(0);
        await expect(s.events.read({ after: first.items[0]!.cursor, limit: 1 })).rejects.toBeInstanceOf(
          CursorExpiredError,
        );
        // The cursor of the last pruned event is still good: nothing after it is gone.
        const rest = await s.events.read({ after: first.next_cursor, limit: 10 });
        expect(rest.items).toHaveLength(4);
        expect((await s.events.read({ limit: 10 })).items).toEqual(rest.items);
        expect(await s.events.head()).toBe(rest.next_cursor);
      });

      it('leases a durable cursor to one owner at a time; an expired lease passes on', async () => {
        const name = uid('cursor');
        expect(await store.events.acquireCursor(name, 'a', 60_000, null)).toEqual({ position: null });
        expect(await store.events.acquireCursor(name, 'b', 60_000, null)).toBeUndefined();
        expect(await store.events.advanceCursor(name, 'a', '7')).toBe(true);
        expect(await store.events.advanceCursor(name, 'b', '8')).toBe(false);
        expect(await store.events.acquireCursor(name, 'a', 60_000, null)).toEqual({ position: '7' });
        await store.events.releaseCursor(name, 'a');
        expect(await store.events.acquireCursor(name, 'b', 1, null)).toEqual({ position: '7' });
        await new Promise((r) => setTimeout(r, 20));
        // b's lease of 1 ms ran out: a takes over where b left it.
        expect(await store.events.acquireCursor(name, 'a', 60_000, null)).toEqual({ position: '7' });
        expect(await store.events.advanceCursor(name, 'b', '9')).toBe(false);
        expect(await store.events.getCursor(name)).toEqual({ position: '7' });
        // Advancing with a renewal extends the lease: b still cannot take it after a's 1 ms one ran out.
        expect(await store.events.acquireCursor(name, 'a', 1, null)).toEqual({ position: '7' });
        expect(await store.events.advanceCursor(name, 'a', '8', 60_000)).toBe(true);
        await new Promise((r) => setTimeout(r, 20));
        expect(await store.events.acquireCursor(name, 'b', 60_000, null)).toBeUndefined();
        expect(await store.events.acquireCursor(name, 'a', 60_000, null)).toEqual({ position: '8' });
        await store.events.deleteCursor(name);
        expect(await store.events.getCursor(name)).toBeUndefined();
        const shared = uid('cursor');
        expect(
          await Promise.all(['x', 'y', 'z'].map((o) => store.events.acquireCursor(shared, o, 60_000, '1'))),
        ).toEqual(expect.arrayContaining([undefined, undefined, { position: '1' }]));
      });

      it('keeps channel records with compare-and-swap versions, and their logs', async () => {
        const fleet = uid('fleet');
        const id = uid('wh');
        expect(await store.events.putRecord('webhook', { id, fleet_id: fleet, doc: { url: 'a' } }, 0)).toBe(1);
        expect(await store.events.putRecord('webhook', { id, fleet_id: fleet, doc: { url: 'b' } }, 0)).toBeUndefined();
        expect(await store.events.putRecord('webhook', { id, fleet_id: fleet, doc: { url: 'b' } }, 1)).toBe(2);
        expect(await store.events.putRecord('webhook', { id, fleet_id: fleet, doc: { url: 'c' } }, 1)).toBeUndefined();
        expect(await store.events.getRecord('webhook', id)).toEqual({
          id,
          fleet_id: fleet,
          doc: { url: 'b' },
          version: 2,
        });
        expect(await store.events.getRecord('other-kind', id)).toBeUndefined();
        const id2 = `${id}-2`;
        await store.events.putRecord('webhook', { id: id2, fleet_id: fleet, doc: {} });
        expect((await store.events.listRecords('webhook', fleet, 10)).map((r) => r.id)).toEqual([id, id2]);
        expect((await store.events.listRecords('webhook', fleet, 10, id)).map((r) => r.id)).toEqual([id2]);
        expect(await store.events.listRecords('webhook', uid('fleet'), 10)).toEqual([]);
        const l1 = await store.events.appendLog('webhook', id, { n: 1 });
        const l2 = await store.events.appendLog('webhook', id, { n: 2 });
        expect(l2).toBeGreaterThan(l1);
        expect(await store.events.listLog('webhook', id, 10)).toEqual([
          { id: l2, entry: { n: 2 } },
          { id: l1, entry: { n: 1 } },
        ]);
        expect(await store.events.listLog('webhook', id, 10, l2)).toEqual([{ id: l1, entry: { n: 1 } }]);
        expect(await store.events.getLog('webhook', id, l1)).toEqual({ n: 1 });
        const [l3, l4, l5] = await store.events.appendLogs('webhook', id, [{ n: 3 }, { n: 4 }, { n: 5 }]);
        expect([l3! > l2, l4! > l3!, l5! > l4!]).toEqual([true, true, true]);
        expect((await store.events.listLog('webhook', id, 3)).map((l) => l.entry)).toEqual([
          { n: 5 },
          { n: 4 },
          { n: 3 },
        ]);
        expect(await store.events.appendLogs('webhook', id, [])).toEqual([]);
        expect(await store.events.getLog('webhook', id, l4!)).toEqual({ n: 4 });
        expect(await store.events.deleteRecord('webhook', id)).toBe(true);
        expect(await store.events.deleteRecord('webhook', id)).toBe(false);
        expect(await store.events.listLog('webhook', id, 10)).toEqual([]);
      });
    });

    describe('idempotency keys', () => {
      /** A claim of a new key for a LOCK_CENTRAL_LOCK to `v`, by a new flow. */
      const keyClaim = (v: Vehicle, overrides: { key?: string; created_at?: string } = {}) => ({
        fleet_id: v.fleet_id,
        key: uid('idem'),
        vehicle_id: v.vehicle_id,
        command: 'LOCK_CENTRAL_LOCK' as const,
        flow_id: randomUUID(),
        created_at: at(T0),
        ...overrides,
      });
      it('claims a key once and then returns the stored record', async () => {
        const v = await added();
        const rec = keyClaim(v);
        expect(await store.claimIdempotencyKey(rec)).toEqual({ claimed: true });
        const retry = { ...rec, flow_id: randomUUID(), created_at: at(T0 + 5) };
        expect(await store.claimIdempotencyKey(retry)).toEqual({
          claimed: false,
          existing: { ...rec, status_code: null, response: null },
        });
        const response = { central_lock: { timestamp: at(T0), value: 'LOCKED' }, note: 'ü', list: [1, null] };
        await store.completeIdempotencyKey(rec.fleet_id, rec.key, 200, response);
        expect(await store.claimIdempotencyKey(retry)).toEqual({
          claimed: false,
          existing: { ...rec, status_code: 200, response },
        });
        // Keys are scoped per fleet.
        const w = await added();
        expect(await store.claimIdempotencyKey({ ...rec, fleet_id: w.fleet_id, vehicle_id: w.vehicle_id })).toEqual({
          claimed: true,
        });
      });

      it('lets exactly one of concurrent claims of a key win', async () => {
        const v = await added();
        const key = uid('idem');
        const results = await Promise.all(
          Array.from({ length: 10 }, () => store.claimIdempotencyKey(keyClaim(v, { key }))),
        );
        expect(results.filter((r) => r.claimed)).toHaveLength(1);
        const flows = new Set(results.map((r) => (r.claimed ? undefined : r.existing.flow_id)));
        flows.delete(undefined);
        expect(flows.size).toBe(1);
      });

      it('releases only a pending key of the same flow', async () => {
        const v = await added();
        const rec = keyClaim(v);
        await store.claimIdempotencyKey(rec);
        await store.releaseIdempotencyKey(rec.fleet_id, rec.key, randomUUID());
        expect((await store.claimIdempotencyKey(rec)).claimed).toBe(false);
        await store.releaseIdempotencyKey(rec.fleet_id, rec.key, rec.flow_id);
        expect((await store.claimIdempotencyKey(rec)).claimed).toBe(true);
        await store.completeIdempotencyKey(rec.fleet_id, rec.key, 409, { type: '/problems/x' });
        await store.releaseIdempotencyKey(rec.fleet_id, rec.key, rec.flow_id);
        expect(await store.claimIdempotencyKey(rec)).toMatchObject({ claimed: false, existing: { status_code: 409 } });
      });

      it('purges keys created before a moment', async () => {
        // Database-wide operation: this test lives in its own era so other tests' rows never qualify.
        const s = store;
        const E = Date.UTC(1992, 0, 1);
        const v = vehicle();
        await s.insertVehicle(v);
        const claim = (key: string, ms: number) => s.claimIdempotencyKey(keyClaim(v, { key, created_at: at(ms) }));
        await claim('k1', E - 2);
        await claim('k2', E - 1);
        await claim('k3', E);
        expect(await s.purgeIdempotencyKeys(at(E))).toBe(2);
        expect(await s.purgeIdempotencyKeys(at(E))).toBe(0);
        expect((await claim('k1', E)).claimed).toBe(true);
        expect((await claim('k3', E)).claimed).toBe(false);
      });
    });

    describe('credentials', () => {
      it('creates, reads, lists by keyset and deletes credentials', async () => {
        const fleet = uid('fleet');
        const records = ['c', 'a', 'b'].map((p) => credentials({ credentials_id: `${p}-${fleet}`, fleet_id: fleet }));
        for (const r of records) await store.createCredentials(r);
        await store.createCredentials(credentials());
        const dup = await store.createCredentials(records[0]!).catch((e: unknown) => e);
        expect(dup).toBeInstanceOf(StoreConflictError);

        expect(await store.getCredentials(records[0]!.credentials_id)).toEqual(records[0]);
        expect(await store.getCredentials(uid('cred'))).toBeUndefined();
        const page1 = await store.listCredentials(fleet, 2);
        expect(page1.map((r) => r.credentials_id[0])).toEqual(['a', 'b']);
        const page2 = await store.listCredentials(fleet, 2, page1.at(-1)!.credentials_id);
        expect(page2).toEqual([records[0]]);

        const v = await added({ fleet_id: fleet, credentials_id: records[1]!.credentials_id });
        expect(await store.getVehicle(v.vehicle_id)).toEqual(v);
        expect(await store.deleteCredentials(records[1]!.credentials_id)).toBe('in-use');
        expect(await store.getCredentials(records[1]!.credentials_id)).toEqual(records[1]);
        await store.deleteVehicle(v.vehicle_id);
        expect(await store.deleteCredentials(records[1]!.credentials_id)).toBe('deleted');
        expect(await store.deleteCredentials(records[1]!.credentials_id)).toBe('not-found');
        expect(await store.getCredentials(records[1]!.credentials_id)).toBeUndefined();
      });

      it('updates token state by compare-and-swap on the version', async () => {
        const c = credentials();
        await store.createCredentials(c);
        const t1 = at(T0 + 1_000);
        expect(await store.updateCredentialsState(c.credentials_id, 1, 'v1.state-a', t1)).toBe(true);
        expect(await store.getCredentials(c.credentials_id)).toEqual({
          ...c,
          sealed_state: 'v1.state-a',
          version: 2,
          modified_at: t1,
        });
        expect(await store.updateCredentialsState(c.credentials_id, 1, 'v1.stale', at(T0 + 2_000))).toBe(false);
        expect((await store.getCredentials(c.credentials_id))?.sealed_state).toBe('v1.state-a');

        // Two instances rotating the same refresh token: exactly one wins.
        const results = await Promise.all(
          ['x', 'y'].map((s) => store.updateCredentialsState(c.credentials_id, 2, `v1.${s}`, at(T0 + 3_000))),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect((await store.getCredentials(c.credentials_id))?.version).toBe(3);
        expect(await store.updateCredentialsState(uid('cred'), 1, 'x', t1)).toBe(false);
      });
    });
  });
}
