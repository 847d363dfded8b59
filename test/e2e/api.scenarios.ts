import { SignJWT } from 'jose';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config.js';
import { COMMANDS, commandToPath } from '../../src/domain/commands.js';
import { PROBLEMS, type ProblemKey } from '../../src/domain/problems.js';
import { FLEETGATE_MODELS } from '../../src/telematics/fleetgate-mqtt/models.js';
import { EXPECTED_STATE } from '../helpers/expected-state.js';
import type { Harness, HttpResult } from '../helpers/harness.js';

/** Starts one fleetgate for the scenarios; overrides are config settings (as Harness.start takes). */
export type StartHarness = (overrides?: Partial<Record<keyof Config, string | number>>) => Promise<Harness>;

/**
 * The core end-to-end scenarios over real HTTP and MQTT, run against any topology: the embedded
 * defaults (api.test.ts) and PostgreSQL + Mosquitto (production.test.ts). `start` must give a
 * fleetgate whose units connect to `app.mqttUrl`.
 */
export function apiScenarios(name: string, start: StartHarness): void {
  describe(name, () => {
    let h: Harness;
    let token: string;
    let otherFleetToken: string;

    beforeAll(async () => {
      h = await start();
      token = await h.token('fleet-a');
      otherFleetToken = await h.token('fleet-b');
    });
    afterAll(async () => {
      await h?.close();
    });

    /** SPEC §2: the fixed members, the flow id in body and header, and the content type. */
    function expectProblem(res: HttpResult, key: ProblemKey): void {
      const def = PROBLEMS[key];
      expect(res.status, res.text).toBe(def.status);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.body).toMatchObject({ type: `/problems/${key}`, title: def.title, status: def.status });
      expect(typeof res.body.detail).toBe('string');
      expect(res.body.type_documentation).toBe(`${h.url}/problems/${key}`);
      expect(res.body.flow_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.headers.get('x-flow-id')).toBe(res.body.flow_id);
    }

    const cmd = (vehicleId: string, command: string, options: Parameters<Harness['request']>[2] = {}) =>
      h.request('POST', `/vehicles/${vehicleId}/commands/${command}`, { token, ...options });
    /** An MQTT client logged in as a unit, not a simulated one: it does what the test tells it. */
    const connectAsUnit = (unitId: string, password: string) =>
      mqtt.connectAsync(h.app.mqttUrl, { clientId: unitId, username: unitId, password, reconnectPeriod: 0 });

    describe('SPEC §1 commands: every command of every model', () => {
      for (const model of FLEETGATE_MODELS) {
        it(`${model.id}: supported commands answer 200 with the new state; others 409 command-not-supported`, async () => {
          const { vehicleId } = await h.vehicle(token, model.id);
          for (const command of COMMANDS) {
            const res = await cmd(vehicleId, commandToPath(command));
            if (!model.capabilities.commands.includes(command)) {
              expectProblem(res, 'vehicle/command-not-supported');
              continue;
            }
            expect(res.status, `${command}: ${res.text}`).toBe(200);
            expect(res.headers.get('x-flow-id')).toMatch(/^[0-9a-f-]{36}$/);
            for (const [prop, value] of Object.entries(EXPECTED_STATE[command] ?? {})) {
              expect(res.body[prop]?.value, `${command} → ${prop}`).toEqual(value);
              expect(Date.parse(res.body[prop].timestamp)).not.toBeNaN();
            }
            // Only properties the vehicle's state capabilities allow.
            for (const prop of Object.keys(res.body)) {
              expect(model.capabilities.vehicle_state).toContain(prop.toUpperCase());
            }
          }
          const state = await h.request('GET', `/vehicles/${vehicleId}/state`, { token });
          expect(state.status).toBe(200);
          expect(Object.keys(state.body).length).toBeGreaterThan(0);
        });
      }

      it("accepts the reference's empty body with Content-Type application/json, and {}", async () => {
        const { vehicleId } = await h.vehicle(token);
        const empty = await cmd(vehicleId, 'unlock-central-lock', {
          rawBody: '',
          headers: { 'content-type': 'application/json' },
        });
        expect(empty.status, empty.text).toBe(200);
        expect(empty.body.central_lock.value).toBe('UNLOCKED');
        const obj = await cmd(vehicleId, 'lock-central-lock', { body: {} });
        expect(obj.status).toBe(200);
      });

      it('lists every command with its record, newest first, paginated', async () => {
        const { vehicleId } = await h.vehicle(token);
        await cmd(vehicleId, 'unlock-central-lock');
        await cmd(vehicleId, 'lock-central-lock');
        await cmd(vehicleId, 'request-vehicle-state');
        const page1 = await h.request('GET', `/vehicles/${vehicleId}/commands?limit=2`, { token });
        expect(page1.status).toBe(200);
        expect(page1.body.items.map((c: { command: string }) => c.command)).toEqual([
          'REQUEST_VEHICLE_STATE',
          'LOCK_CENTRAL_LOCK',
        ]);
        expect(page1.body.items[0]).toMatchObject({ status: 'SUCCEEDED', adapter: 'FLEETGATE', vehicle_id: vehicleId });
        expect(page1.body.next_page_token).toBeTruthy();
        const page2 = await h.request(
          'GET',
          `/vehicles/${vehicleId}/commands?limit=2&page_token=${page1.body.next_page_token}`,
          { token },
        );
        expect(page2.body.items.map((c: { command: string }) => c.command)).toEqual(['UNLOCK_CENTRAL_LOCK']);
        expect(page2.body.next_page_token).toBeNull();
      });
    });

    describe('SPEC §1 command rules', () => {
      it('unknown command → 404 resource-not-found', async () => {
        const { vehicleId } = await h.vehicle(token);
        expectProblem(await cmd(vehicleId, 'open-sunroof'), 'resource-not-found');
        expectProblem(await cmd(vehicleId, 'UNLOCK_CENTRAL_LOCK'), 'resource-not-found');
      });

      it('setup not finished → 409 conflicting-setup-status', async () => {
        const { vehicleId } = await h.vehicle(token, 'fleetgate-car-v1', { connect: false });
        expectProblem(await cmd(vehicleId, 'unlock-central-lock'), 'vehicle/conflicting-setup-status');
      });

      it('two concurrent commands to one vehicle → one 200 and one 409 conflicting-command', async () => {
        const { vehicleId } = await h.vehicle(token, 'fleetgate-car-v1', { answerDelayMs: 150 });
        const [a, b] = await Promise.all([cmd(vehicleId, 'unlock-central-lock'), cmd(vehicleId, 'lock-central-lock')]);
        const statuses = [a.status, b.status].sort();
        expect(statuses).toEqual([200, 409]);
        expectProblem(a.status === 409 ? a : b, 'vehicle/conflicting-command');
        // The vehicle takes commands again once the first ended.
        expect((await cmd(vehicleId, 'request-vehicle-state')).status).toBe(200);
      });

      it('offline unit → 504 no-connection at once, NOT_DELIVERED', async () => {
        const { vehicleId, unit } = await h.vehicle(token);
        await unit.setBehaviour('offline');
        await h.waitFor(async () => (await h.app.store.getVehicle(vehicleId))?.life_status === 'OFFLINE');
        const started = Date.now();
        const res = await cmd(vehicleId, 'unlock-central-lock');
        expectProblem(res, 'vehicle/no-connection');
        expect(res.body.delivery).toBe('NOT_DELIVERED');
        expect(Date.now() - started).toBeLessThan(500);
      });

      it('silent unit → 504 within the budget; accept-only → DELIVERED_OUTCOME_UNKNOWN', async () => {
        const { vehicleId, unit } = await h.vehicle(token);
        await unit.setBehaviour('silent');
        let started = Date.now();
        let res = await cmd(vehicleId, 'unlock-central-lock');
        expectProblem(res, 'vehicle/no-connection');
        expect(res.body.delivery).toBe('NOT_DELIVERED');
        expect(Date.now() - started).toBeLessThan(1500 + 1000);
        await unit.setBehaviour('accept-only');
        started = Date.now();
        res = await cmd(vehicleId, 'unlock-central-lock');
        expectProblem(res, 'vehicle/no-connection');
        expect(res.body.delivery).toBe('DELIVERED_OUTCOME_UNKNOWN');
        const records = await h.request('GET', `/vehicles/${vehicleId}/commands`, { token });
        expect(records.body.items[0]).toMatchObject({
          status: 'OUTCOME_UNKNOWN',
          delivery: 'DELIVERED_OUTCOME_UNKNOWN',
        });
        expect(records.body.items[1]).toMatchObject({ status: 'FAILED', delivery: 'NOT_DELIVERED' });
      });

      it('refusal because of the vehicle state → 409 conflicting-state; unit failure → 500 telematics-unit/error', async () => {
        const { vehicleId, unit } = await h.vehicle(token);
        unit.setMoving(true);
        expectProblem(await cmd(vehicleId, 'lock-central-lock'), 'vehicle/conflicting-state');
        unit.setMoving(false);
        await unit.setBehaviour('fail');
        expectProblem(await cmd(vehicleId, 'unlock-central-lock'), 'telematics-unit/error');
      });

      it('a native combined command that is refused answers 409 conflicting-state without steps', async () => {
        const { vehicleId, unit } = await h.vehicle(token);
        unit.setMoving(true);
        const res = await cmd(vehicleId, 'lock-and-disable-driving');
        expectProblem(res, 'vehicle/conflicting-state');
        expect(res.body.steps).toBeUndefined();
        unit.setMoving(false);
      });

      it('Idempotency-Key: a retry returns the stored result and executes once', async () => {
        const { vehicleId, unit } = await h.vehicle(token);
        const before = unit.stats.commands;
        const key = `key-${Date.now()}`;
        const first = await cmd(vehicleId, 'unlock-central-lock', { headers: { 'idempotency-key': key } });
        const second = await cmd(vehicleId, 'unlock-central-lock', { headers: { 'idempotency-key': key } });
        expect(first.status).toBe(200);
        expect(second.status).toBe(200);
        expect(second.body).toEqual(first.body);
        expect(unit.stats.commands - before).toBe(1);
        // The same key for another command is a client error.
        expectProblem(
          await cmd(vehicleId, 'lock-central-lock', { headers: { 'idempotency-key': key } }),
          'validation-error',
        );
        // Concurrent duplicates: one executes, the other is told it is still running or replays.
        const key2 = `key2-${Date.now()}`;
        const n = unit.stats.commands;
        const [x, y] = await Promise.all([
          cmd(vehicleId, 'lock-central-lock', { headers: { 'idempotency-key': key2 } }),
          cmd(vehicleId, 'lock-central-lock', { headers: { 'idempotency-key': key2 } }),
        ]);
        expect([x.status, y.status]).toContain(200);
        expect(unit.stats.commands - n).toBe(1);
      });
    });

    describe('SPEC §5 access', () => {
      it('missing, malformed, forged, alg none and expired tokens → 401', async () => {
        const { vehicleId } = await h.vehicle(token);
        const path = `/vehicles/${vehicleId}`;
        // RFC 6750 §3: a challenge on every 401; an error code only when a token was sent.
        const missing = await h.request('GET', path);
        expectProblem(missing, 'invalid-credentials');
        expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="fleetgate"');
        const notJwt = await h.request('GET', path, { headers: { authorization: 'Bearer not-a-jwt' } });
        expectProblem(notJwt, 'invalid-credentials');
        expect(notJwt.headers.get('www-authenticate')).toMatch(/^Bearer realm="fleetgate", error="invalid_token"/);
        const otherScheme = await h.request('GET', path, { headers: { authorization: 'Basic abc' } });
        expectProblem(otherScheme, 'invalid-credentials');
        expect(otherScheme.headers.get('www-authenticate')).toBe('Bearer realm="fleetgate"');
        const claims = { fleet_id: 'fleet-a', scope: 'vehicles vehicle-commands' };
        const forged = await new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer('fleetgate')
          .setAudience('fleetgate-api')
          .setSubject('x')
          .setExpirationTime('5m')
          .sign(new TextEncoder().encode('some-other-key-some-other-key-123'));
        expectProblem(await h.request('GET', path, { token: forged }), 'invalid-credentials');
        const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, iss: 'fleetgate', aud: 'fleetgate-api', sub: 'x', exp: Math.floor(Date.now() / 1000) + 300 })}.`;
        expectProblem(await h.request('GET', path, { token: none }), 'invalid-credentials');
        const expiredHarness = await start({ tokenTtlSeconds: 30 });
        try {
          const t = await expiredHarness.token('fleet-a');
          const [, payload] = t.split('.');
          const decoded = JSON.parse(Buffer.from(payload!, 'base64url').toString());
          expect(decoded.exp - decoded.iat).toBe(30);
        } finally {
          await expiredHarness.close();
        }
        // A token that expired: signed with the right key via the service, with a past expiry.
        const key = (h.app.auth as unknown as { signingKey: Uint8Array }).signingKey;
        const expired = await new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer('fleetgate')
          .setAudience('fleetgate-api')
          .setSubject('x')
          .setIssuedAt(Math.floor(Date.now() / 1000) - 1000)
          .setExpirationTime(Math.floor(Date.now() / 1000) - 100)
          .sign(key);
        const res = await h.request('GET', path, { token: expired });
        expectProblem(res, 'invalid-credentials');
        expect(res.body.detail).toMatch(/expired/);
      });

      it('wrong client secret → 401 invalid_client; form body and Basic both work; unknown grant → 400 unsupported_grant_type', async () => {
        const c = await h.client('fleet-a', ['vehicles.ro']);
        const basic = (id: string, secret: string) => ({
          authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`,
        });
        // RFC 6749 §5.2: application/json with `error`, the problem members beside it.
        const expectOAuthError = (res: HttpResult, key: ProblemKey, error: string) => {
          expect(res.status, res.text).toBe(PROBLEMS[key].status);
          expect(res.headers.get('content-type')).toMatch(/^application\/json/);
          expect(res.headers.get('cache-control')).toBe('no-store');
          expect(res.body).toMatchObject({ error, type: `/problems/${key}`, status: PROBLEMS[key].status });
          expect(res.body.error_description).toBe(res.body.detail);
          expect(res.headers.get('x-flow-id')).toBe(res.body.flow_id);
        };
        const wrong = await h.request('POST', '/auth/oauth/token?grant_type=client_credentials', {
          headers: basic(c.client_id, 'wrong'),
        });
        expectOAuthError(wrong, 'invalid-credentials', 'invalid_client');
        expect(wrong.headers.get('www-authenticate')).toBe('Basic realm="fleetgate"');
        expectOAuthError(
          await h.request('POST', '/auth/oauth/token?grant_type=password', {
            headers: basic(c.client_id, c.client_secret),
          }),
          'validation-error',
          'unsupported_grant_type',
        );
        const form = await h.request('POST', '/auth/oauth/token', {
          rawBody: `grant_type=client_credentials&client_id=${c.client_id}&client_secret=${encodeURIComponent(c.client_secret)}`,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        });
        expect(form.status).toBe(200);
        expect(form.body).toMatchObject({ token_type: 'bearer', expires_in: 900, scope: 'vehicles.ro' });
      });

      it('every route without its scope → 403 forbidden-resource', async () => {
        const { vehicleId } = await h.vehicle(token);
        const ro = await h.token('fleet-a', ['vehicles.ro']);
        const commandsOnly = await h.token('fleet-a', ['vehicle-commands']);
        const cases: Array<[string, string, string, unknown?]> = [
          ['POST', `/vehicles/${vehicleId}/commands/unlock-central-lock`, ro],
          [
            'POST',
            '/vehicles',
            ro,
            {
              telematics_brand: 'FLEETGATE',
              telematics_unit_id: 'x',
              vehicle_model_id: 'fleetgate-car-v1',
              password: 'abcdefghijklmnop',
            },
          ],
          ['PATCH', `/vehicles/${vehicleId}`, ro, { tags: ['a'] }],
          ['DELETE', `/vehicles/${vehicleId}`, ro],
          ['GET', '/vehicles', commandsOnly],
          ['GET', `/vehicles/${vehicleId}`, commandsOnly],
          ['GET', `/vehicles/${vehicleId}/state`, commandsOnly],
          ['GET', `/vehicles/${vehicleId}/commands`, commandsOnly],
          ['GET', '/telematics-brands', commandsOnly],
          ['GET', '/telematics-brands/FLEETGATE/available-vehicle-models', commandsOnly],
          ['POST', '/credentials', ro, { telematics_brand: 'SMARTCAR' }],
          ['GET', '/credentials', commandsOnly],
        ];
        for (const [method, path, t, body] of cases) {
          const res = await h.request(method, path, { token: t, body });
          expectProblem(res, 'forbidden-resource');
          expect(res.headers.get('www-authenticate')).toMatch(
            /^Bearer realm="fleetgate", error="insufficient_scope", scope="[a-z.-]+"$/,
          );
        }
      });

      it("another fleet's vehicle is 404 on every route, never 403", async () => {
        const { vehicleId } = await h.vehicle(token);
        const t = otherFleetToken;
        for (const [method, path, body] of [
          ['GET', `/vehicles/${vehicleId}`],
          ['PATCH', `/vehicles/${vehicleId}`, { tags: ['x'] }],
          ['DELETE', `/vehicles/${vehicleId}`],
          ['GET', `/vehicles/${vehicleId}/state`],
          ['GET', `/vehicles/${vehicleId}/commands`],
          ['POST', `/vehicles/${vehicleId}/commands/unlock-central-lock`],
          ['POST', `/vehicles/${vehicleId}/commands/no-such-command`],
        ] as Array<[string, string, unknown?]>) {
          expectProblem(await h.request(method, path, { token: t, body }), 'resource-not-found');
        }
        const list = await h.request('GET', '/vehicles', { token: t });
        expect(list.body.items.map((v: { vehicle_id: string }) => v.vehicle_id)).not.toContain(vehicleId);
        // And the vehicle is untouched.
        expect((await h.request('GET', `/vehicles/${vehicleId}`, { token })).status).toBe(200);
      });
    });

    describe('SPEC §4 vehicles', () => {
      it('add → 201 IN_PROGRESS, then SUCCEEDED and ONLINE when the unit connects; ETag and If-Match', async () => {
        const unitId = `unit-life-${Date.now()}`;
        const add = await h.request('POST', '/vehicles', {
          token,
          body: {
            telematics_brand: 'FLEETGATE',
            telematics_unit_id: unitId,
            vehicle_model_id: 'fleetgate-car-v1',
            password: 'secret-password-123',
            master_data: { license_plate: 'B-FG 123', vin: 'WVWZZZ1JZXW000001', fuel_type: 'ELECTRIC' },
            custom_fields: { station: 'north' },
            tags: ['berlin', 'ev'],
          },
        });
        expect(add.status, add.text).toBe(201);
        expect(add.body).toMatchObject({
          setup_status: 'IN_PROGRESS',
          operation_status: 'OPERATING',
          telematics_unit: { id: unitId, brand: 'FLEETGATE' },
          life_status: { value: 'OFFLINE' },
          tags: ['berlin', 'ev'],
        });
        expect(add.text).not.toContain('secret-password-123');
        expect(add.text).not.toContain('password');
        expect(add.headers.get('etag')).toBe('"1"');
        const id = add.body.vehicle_id;

        const dup = await h.request('POST', '/vehicles', {
          token: otherFleetToken,
          body: {
            telematics_brand: 'FLEETGATE',
            telematics_unit_id: unitId,
            vehicle_model_id: 'fleetgate-car-v1',
            password: 'another-password-1',
          },
        });
        expectProblem(dup, 'conflicting-resource');

        const { FleetgateUnit } = await import('../../src/sim/fleetgate-unit.js');
        const unit = new FleetgateUnit({
          mqttUrl: h.app.mqttUrl,
          unitId,
          password: 'secret-password-123',
          model: 'fleetgate-car-v1',
          answerDelayMs: 0,
          drive: false,
        });
        h.units.push(unit);
        await unit.start();
        await h.waitFor(async () => {
          const v = await h.app.store.getVehicle(id);
          return v?.setup_status === 'SUCCEEDED' && v.life_status === 'ONLINE';
        });
        const got = await h.request('GET', `/vehicles/${id}`, { token });
        expect(got.body).toMatchObject({ setup_status: 'SUCCEEDED', life_status: { value: 'ONLINE' } });
        expect(got.body.capabilities.commands).toContain('UNLOCK_CENTRAL_LOCK');
        const etag = got.headers.get('etag')!;

        const patched = await h.request('PATCH', `/vehicles/${id}`, {
          token,
          body: { custom_fields: { station: null, zone: 'z1' }, operation_status: 'MAINTENANCE' },
          headers: { 'if-match': etag },
        });
        expect(patched.status, patched.text).toBe(200);
        expect(patched.body.custom_fields).toEqual({ zone: 'z1' });
        expect(patched.body.operation_status).toBe('MAINTENANCE');
        expect(patched.headers.get('etag')).not.toBe(etag);
        expectProblem(
          await h.request('PATCH', `/vehicles/${id}`, { token, body: { tags: ['x'] }, headers: { 'if-match': etag } }),
          'resource-modified',
        );
        expectProblem(
          await h.request('DELETE', `/vehicles/${id}`, { token, headers: { 'if-match': etag } }),
          'resource-modified',
        );
        const del = await h.request('DELETE', `/vehicles/${id}`, {
          token,
          headers: { 'if-match': patched.headers.get('etag')! },
        });
        expect(del.status).toBe(204);
        expectProblem(await h.request('GET', `/vehicles/${id}`, { token }), 'resource-not-found');
      });

      it('validation errors name the field; unknown model → referenced-resource-not-found; bad JSON → invalid-json', async () => {
        let res = await h.request('POST', '/vehicles', {
          token,
          body: { telematics_brand: 'FLEETGATE', telematics_unit_id: 'u 1', extra: 1 },
        });
        expectProblem(res, 'validation-error');
        const fields = res.body.errors.map((e: { field: string }) => e.field);
        expect(fields).toEqual(expect.arrayContaining(['telematics_unit_id', 'extra']));
        res = await h.request('POST', '/vehicles', {
          token,
          body: {
            telematics_brand: 'FLEETGATE',
            telematics_unit_id: 'u1',
            master_data: { license_plate: 'X'.repeat(31) },
          },
        });
        expectProblem(res, 'validation-error');
        expect(res.body.errors[0].field).toBe('master_data.license_plate');
        res = await h.request('POST', '/vehicles', {
          token,
          body: {
            telematics_brand: 'FLEETGATE',
            telematics_unit_id: 'u1',
            vehicle_model_id: 'nope',
            password: 'abcdefghijklmn',
          },
        });
        expectProblem(res, 'referenced-resource-not-found');
        res = await h.request('POST', '/vehicles', {
          token,
          body: { telematics_brand: 'NOPE', telematics_unit_id: 'u1' },
        });
        expectProblem(res, 'validation-error');
        expect(res.body.errors[0].field).toBe('telematics_brand');
        res = await h.request('POST', '/vehicles', {
          token,
          body: { telematics_brand: 'FLEETGATE', telematics_unit_id: 'u1', vehicle_model_id: 'fleetgate-car-v1' },
        });
        expectProblem(res, 'validation-error');
        expect(res.body.errors[0].field).toBe('password');
        res = await h.request('POST', '/vehicles', {
          token,
          rawBody: '{"telematics_brand": ',
          headers: { 'content-type': 'application/json' },
        });
        expectProblem(res, 'invalid-json');
        res = await h.request('POST', '/vehicles', {
          token,
          rawBody: '{"__proto__": {"x": 1}}',
          headers: { 'content-type': 'application/json' },
        });
        expect(res.status).toBe(400);
        res = await h.request('GET', '/vehicles?limit=0', { token });
        expectProblem(res, 'validation-error');
        expect(res.body.errors[0].field).toBe('limit');
        res = await h.request('GET', '/vehicles?page_token=garbage!', { token });
        expectProblem(res, 'validation-error');
      });

      it('lists with cursor pagination and filters by brand, tags and setup status', async () => {
        const t = await h.token(`fleet-list-${Date.now()}`);
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          const res = await h.request('POST', '/vehicles', {
            token: t,
            body: {
              telematics_brand: 'FLEETGATE',
              telematics_unit_id: `list-${Date.now()}-${i}`,
              vehicle_model_id: 'fleetgate-kickscooter-v1',
              password: 'abcdefghijklmnop',
              tags: i % 2 ? ['odd'] : ['even', 'x'],
            },
          });
          ids.push(res.body.vehicle_id);
        }
        const seen: string[] = [];
        let pageToken: string | null = null;
        do {
          const res: HttpResult = await h.request(
            'GET',
            `/vehicles?limit=2${pageToken ? `&page_token=${pageToken}` : ''}`,
            { token: t },
          );
          expect(res.status).toBe(200);
          expect(res.body.items.length).toBeLessThanOrEqual(2);
          seen.push(...res.body.items.map((v: { vehicle_id: string }) => v.vehicle_id));
          pageToken = res.body.next_page_token;
        } while (pageToken);
        expect(seen.sort()).toEqual([...ids].sort());
        const even = await h.request('GET', '/vehicles?tags=even,x', { token: t });
        expect(even.body.items).toHaveLength(3);
        const odd = await h.request('GET', '/vehicles?tags=odd&setup_status=IN_PROGRESS&telematics_brand=FLEETGATE', {
          token: t,
        });
        expect(odd.body.items).toHaveLength(2);
        const none = await h.request('GET', '/vehicles?setup_status=SUCCEEDED', { token: t });
        expect(none.body.items).toHaveLength(0);
      });

      it('brands and models with capabilities', async () => {
        const brands = await h.request('GET', '/telematics-brands', { token });
        expect(brands.body.items.map((b: { telematics_brand: string }) => b.telematics_brand)).toContain('FLEETGATE');
        const models = await h.request('GET', '/telematics-brands/FLEETGATE/available-vehicle-models', { token });
        expect(models.body.items.map((m: { id: string }) => m.id)).toEqual(FLEETGATE_MODELS.map((m) => m.id));
        expectProblem(
          await h.request('GET', '/telematics-brands/NOPE/available-vehicle-models', { token }),
          'resource-not-found',
        );
      });
    });

    describe('devices and hostile input', () => {
      it('malformed device payloads never crash the server or corrupt state', async () => {
        const { vehicleId, unitId, password } = await h.vehicle(token);
        await cmd(vehicleId, 'unlock-central-lock');
        const before = (await h.request('GET', `/vehicles/${vehicleId}/state`, { token })).body;
        const rogue = await connectAsUnit(unitId, password);
        const base = `fleetgate/v1/units/${unitId}`;
        const future = new Date(Date.now() + 86400_000).toISOString();
        for (const payload of [
          'not json',
          '{"v":1,"state":{"central_lock":{"timestamp":"2020-01-01T00:00:00.000Z","value":"OPEN_WIDE"}}}',
          `{"v":1,"state":{"central_lock":{"timestamp":"${future}","value":"LOCKED"}}}`,
          '{"v":1,"state":{"position":{"timestamp":"2030-01-01T00:00:00Z","value":{"lat":999,"lon":0}}}}',
          '{"v":1,"state":[]}',
          '{"v":1,"id":"nope","status":"SUCCEEDED"}',
          'x'.repeat(200_000),
          '\u0000\u0001\u0002',
        ]) {
          await rogue.publishAsync(`${base}/state`, payload, { qos: 1 });
          await rogue.publishAsync(`${base}/responses`, payload, { qos: 1 });
        }
        await rogue.endAsync();
        const after = await h.request('GET', `/vehicles/${vehicleId}/state`, { token });
        expect(after.status).toBe(200);
        expect(after.body.central_lock).toEqual(before.central_lock);
        expect(after.body.position).toEqual(before.position);
        expect((await h.request('GET', '/health/live')).status).toBe(200);
      });

      it("a command answer's invalid or unknown properties are dropped; the valid ones answer and are stored", async () => {
        const { vehicleId, unitId, password, unit } = await h.vehicle(token);
        await unit.stop();
        await h.waitFor(async () => (await h.app.store.getVehicle(vehicleId))?.life_status === 'OFFLINE');
        // A unit of our own that answers every command with some good and some bad properties.
        const rogue = await connectAsUnit(unitId, password);
        const base = `fleetgate/v1/units/${unitId}`;
        rogue.on('message', (_topic, payload) => {
          const { id } = JSON.parse(payload.toString()) as { id: string };
          const at = new Date().toISOString();
          const state = {
            central_lock: { timestamp: at, value: 'UNLOCKED' },
            ignition: { timestamp: at, value: 'SIDEWAYS' },
            not_a_property: { timestamp: at, value: 1 },
            mileage_in_kilometers: { timestamp: 'yesterday', value: 5 },
          };
          rogue.publish(`${base}/responses`, JSON.stringify({ v: 1, id, status: 'SUCCEEDED', state }), { qos: 1 });
        });
        await rogue.subscribeAsync(`${base}/commands`, { qos: 1 });
        const online = JSON.stringify({ v: 1, status: 'online', timestamp: new Date().toISOString() });
        await rogue.publishAsync(`${base}/status`, online, { qos: 1, retain: true });
        await h.waitFor(async () => (await h.app.store.getVehicle(vehicleId))?.life_status === 'ONLINE');

        const res = await cmd(vehicleId, 'unlock-central-lock');
        await rogue.endAsync();
        expect(res.status).toBe(200);
        expect(res.body.central_lock.value).toBe('UNLOCKED');
        expect(res.body).not.toHaveProperty('not_a_property');
        expect(res.body.ignition?.value).not.toBe('SIDEWAYS');
        expect(res.body.mileage_in_kilometers?.timestamp).not.toBe('yesterday');
        const stored = (await h.request('GET', `/vehicles/${vehicleId}/state`, { token })).body;
        expect(stored.central_lock.value).toBe('UNLOCKED');
        expect(stored).not.toHaveProperty('not_a_property');
        expect(stored.ignition?.value).not.toBe('SIDEWAYS');
      });

      it('a unit cannot publish as another unit', async () => {
        const a = await h.vehicle(token);
        const b = await h.vehicle(token);
        await cmd(b.vehicleId, 'lock-central-lock');
        const rogue = await connectAsUnit(a.unitId, a.password);
        const forged = JSON.stringify({
          v: 1,
          state: { central_lock: { timestamp: new Date().toISOString(), value: 'UNLOCKED' } },
        });
        // aedes drops unauthorized QoS 0 publishes silently, or closes the client.
        await rogue.publishAsync(`fleetgate/v1/units/${b.unitId}/state`, forged, { qos: 0 }).catch(() => {});
        // Barrier: the QoS 0 publish may still be in flight. A report on the rogue's own topic, sent
        // after it on the same connection (MQTT keeps one connection's order), is stored only
        // after the forged one was handled; once it shows, the forged one had its chance.
        const marker = new Date(Date.now() + 1).toISOString();
        const own = JSON.stringify({ v: 1, state: { central_lock: { timestamp: marker, value: 'UNLOCKED' } } });
        const closed = new Promise<false>((resolve) => rogue.once('close', () => resolve(false)));
        const sent = await Promise.race([
          rogue.publishAsync(`fleetgate/v1/units/${a.unitId}/state`, own, { qos: 1 }).then(
            () => true,
            () => false,
          ),
          closed,
        ]);
        // A closed connection (aedes refused the forged publish) needs no barrier.
        if (sent) {
          await h.waitFor(
            async () =>
              (await h.request('GET', `/vehicles/${a.vehicleId}/state`, { token })).body.central_lock?.timestamp ===
              marker,
          );
        }
        await rogue.endAsync(true).catch(() => {});
        const state = await h.request('GET', `/vehicles/${b.vehicleId}/state`, { token });
        expect(state.body.central_lock.value).toBe('LOCKED');
        // A wrong password is refused outright.
        await expect(
          mqtt.connectAsync(h.app.mqttUrl, {
            clientId: a.unitId,
            username: a.unitId,
            password: 'wrong-password',
            reconnectPeriod: 0,
          }),
        ).rejects.toThrow();
      });
    });

    describe('SPEC §2 and §7 operations', () => {
      it('serves a documentation page for every problem type, /openapi.json, /docs, health and metrics', async () => {
        for (const key of Object.keys(PROBLEMS)) {
          const res = await h.request('GET', `/problems/${key}`);
          expect(res.status, key).toBe(200);
          expect(res.headers.get('content-type')).toContain('text/html');
          expect(res.text).toContain(PROBLEMS[key as ProblemKey].title.replaceAll("'", '&#39;'));
        }
        const openapi = await h.request('GET', '/openapi.json');
        expect(openapi.status).toBe(200);
        expect(openapi.body.openapi).toBe('3.1.0');
        expect(Object.keys(openapi.body.paths)).toEqual(
          expect.arrayContaining([
            '/vehicles',
            '/vehicles/{vehicle_id}',
            '/vehicles/{vehicle_id}/commands/{command}',
            '/auth/oauth/token',
          ]),
        );
        expect((await h.request('GET', '/docs')).status).toBeLessThan(400);
        expect((await h.request('GET', '/health/live')).status).toBe(200);
        const ready = await h.request('GET', '/health/ready');
        expect(ready.status).toBe(200);
        expect(ready.body.checks).toEqual({ instance: 'ok', database: 'ok', broker: 'ok' });
        const metrics = await h.request('GET', '/metrics');
        expect(metrics.text).toContain('fleetgate_http_request_duration_seconds');
        expect(metrics.text).toContain('fleetgate_command_duration_seconds');
      });

      it("unknown paths → 404 problem; a caller's X-Flow-ID UUID is kept", async () => {
        expectProblem(await h.request('GET', '/nope'), 'resource-not-found');
        const flow = '5e77e3e3-48ab-4955-8ab3-1c62339096ab';
        const res = await h.request('GET', '/nope', { headers: { 'x-flow-id': flow } });
        expect(res.body.flow_id).toBe(flow);
        expect(res.headers.get('x-flow-id')).toBe(flow);
      });

      it('rate limit → 429 too-many-requests with Retry-After', async () => {
        const limited = await start({ rateLimitPerMinute: 3 });
        try {
          const t = await limited.token('fleet-rl', ['vehicles.ro']);
          let last: HttpResult | undefined;
          for (let i = 0; i < 4; i++) last = await limited.request('GET', '/vehicles', { token: t });
          expect(last!.status).toBe(429);
          expect(last!.body.type).toBe('/problems/too-many-requests');
          expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
        } finally {
          await limited.close();
        }
      });
    });
  });
}
