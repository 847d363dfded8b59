/** The console's only way to the server: fleetgate's public API, with the session cookie. */

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  flow_id?: string;
  delivery?: string;
  [extension: string]: unknown;
}

/** An answer that was not 2xx, as the problem fleetgate sent (or one made up for a network failure). */
export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.title} ${problem.detail}`);
  }
}

export interface SessionInfo {
  user: { user_id: string; fleet_id: string; email: string; role: 'viewer' | 'operator' | 'admin' };
  scopes: string[];
}

export interface Vehicle {
  vehicle_id: string;
  telematics_unit: { id: string; brand: string; model: string };
  capabilities: { commands: string[]; vehicle_state: string[] };
  setup_status: string;
  setup_failure_reason?: string | null;
  life_status: { value: string; modified_at: string };
  operation_status: string;
  master_data: Record<string, string | undefined>;
  custom_fields: Record<string, string>;
  tags: string[];
  created_at: string;
  modified_at: string;
}

export type VehicleState = Record<string, { timestamp: string; value: unknown }>;

export interface CommandRecord {
  flow_id: string;
  command: string;
  client_id: string;
  user_email?: string | null;
  status: string;
  problem_type: string | null;
  detail: string | null;
  delivery: string | null;
  requested_at: string;
  completed_at: string | null;
  duration_ms: number | null;
}

export interface EventEnvelope {
  metadata: { id: string; type: string; occurred_at: string; vehicle_id?: string | null; [k: string]: unknown };
  data: Record<string, unknown>;
}

let onUnauthorized: (problem: Problem) => void = () => {};

/** Called when the session is gone (expired, signed out elsewhere, user removed). */
export function setUnauthorizedHandler(handler: (problem: Problem) => void): void {
  onUnauthorized = handler;
}

/**
 * Calls the API. Every request carries `x-fleetgate-console`, which fleetgate requires of
 * cookie-authenticated changes (CSRF defence); errors become ApiError with the problem.
 */
export async function api<T>(
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; quiet401?: boolean } = {},
): Promise<{ body: T; headers: Headers }> {
  const headers: Record<string, string> = { 'x-fleetgate-console': '1', ...(options.headers ?? {}) };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
  } catch (e) {
    throw new ApiError({
      type: 'network',
      title: 'fleetgate cannot be reached.',
      status: 0,
      detail: `The request ${method} ${path} got no answer (${e instanceof Error ? e.message : String(e)}).`,
    });
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const problem: Problem =
      body && typeof body === 'object' && 'title' in body
        ? (body as Problem)
        : { type: 'unknown', title: `HTTP ${res.status}`, status: res.status, detail: text.slice(0, 300) };
    if (res.status === 401 && !options.quiet401) onUnauthorized(problem);
    throw new ApiError(problem);
  }
  return { body: body as T, headers: res.headers };
}

export const get = async <T>(path: string): Promise<T> => (await api<T>('GET', path)).body;

/** Every vehicle of the fleet, page by page (the console shows the whole fleet). */
export async function allVehicles(max = 5000): Promise<Vehicle[]> {
  const out: Vehicle[] = [];
  let token: string | null = null;
  do {
    const query: string = token ? `&page_token=${encodeURIComponent(token)}` : '';
    const page: { items: Vehicle[]; next_page_token: string | null } = await get(`/vehicles?limit=500${query}`);
    out.push(...page.items);
    token = page.next_page_token;
  } while (token && out.length < max);
  return out;
}

/** Runs `fn` over `items` with at most `limit` at once. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
