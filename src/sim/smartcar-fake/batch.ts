/** `POST /vehicles/{id}/batch`: several GET endpoints of one vehicle in one request. */
import { errorAnswer, HttpAnswer } from './answers.js';
import type { FakeSwitches } from './faults.js';
import { type FakeVehicle, type UnitSystem, vehicleEndpoint } from './vehicle-endpoints.js';

export function batchEndpoint(
  rid: string,
  v: FakeVehicle,
  body: unknown,
  unitSystem: UnitSystem,
  s: FakeSwitches,
): HttpAnswer {
  const requests = (body as { requests?: unknown } | undefined)?.requests;
  if (
    !Array.isArray(requests) ||
    requests.length === 0 ||
    !requests.every((r) => typeof r?.path === 'string' && r.path.startsWith('/'))
  ) {
    return errorAnswer(rid, 400, 'VALIDATION', 'PARAMETER', '"requests" must be a non-empty array of {path}.');
  }
  // Smartcar batch: one answer per path, each with its own code, body and headers.
  const responses = (requests as { path: string }[]).map(({ path: p }) => {
    const answer = vehicleEndpoint(rid, 'GET', v, p.slice(1), undefined, unitSystem, s);
    return { path: p, code: answer.status, body: answer.body, headers: answer.headers };
  });
  return new HttpAnswer(200, { responses });
}
