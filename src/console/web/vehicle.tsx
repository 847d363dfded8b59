import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import {
  ApiError,
  api,
  type CommandRecord,
  type EventEnvelope,
  get,
  type SessionInfo,
  type Vehicle,
  type VehicleState,
} from './api.js';
import { Badge, ConfirmDialog, Loading, ProblemBox } from './components.js';
import { age, commandPath, commandWords, NEEDS_CONFIRMATION, propertyWords, stateValue, time } from './format.js';
import { useLive } from './live-context.js';
import { navigate } from './router.js';

interface Loaded {
  vehicle: Vehicle;
  etag: string | null;
  state: VehicleState;
  commands: CommandRecord[];
}

type Outcome = { command: string; running: true } | { command: string; running: false; error?: unknown };

export function VehiclePage({ vehicleId, session }: { vehicleId: string; session: SessionInfo }) {
  const [data, setData] = useState<Loaded>();
  const [error, setError] = useState<unknown>();
  const [events, setEvents] = useState<EventEnvelope[]>([]);
  const [eventsError, setEventsError] = useState<unknown>();
  const [confirming, setConfirming] = useState<string>();
  const [outcome, setOutcome] = useState<Outcome>();
  const [now, setNow] = useState(Date.now());
  const reloadTimer = useRef<ReturnType<typeof setTimeout>>();
  const loads = useRef(0);
  const canCommand = session.scopes.includes('vehicle-commands');
  const isAdmin = session.user.role === 'admin';
  const base = `/vehicles/${encodeURIComponent(vehicleId)}`;

  const load = useCallback(async () => {
    // Loads overlap (the first, and the one when the stream went live): an older one that ends
    // last must not show what it read before the newer one.
    const n = ++loads.current;
    const stale = () => n !== loads.current;
    try {
      const [v, state, commands] = await Promise.all([
        api<Vehicle>('GET', base),
        get<VehicleState>(`${base}/state`),
        get<{ items: CommandRecord[] }>(`${base}/commands?limit=20`),
      ]);
      if (stale()) return;
      setData({ vehicle: v.body, etag: v.headers.get('etag'), state, commands: commands.items });
      setError(undefined);
    } catch (err) {
      if (stale()) return;
      setError(err);
    }
    try {
      const recent = await recentEvents(vehicleId);
      if (stale()) return;
      setEvents(recent);
      setEventsError(undefined);
    } catch (err) {
      if (!stale()) setEventsError(err);
    }
  }, [base, vehicleId]);

  useEffect(() => {
    void load();
    const tick = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(tick);
  }, [load]);

  useLive(
    (e) => {
      if (e.metadata.vehicle_id !== vehicleId) return;
      setEvents((list) => [e, ...list].slice(0, 20));
      if (e.metadata.type === 'VehicleRemoved') {
        setError(new ApiError({ type: 'removed', title: 'The vehicle was removed.', status: 404, detail: vehicleId }));
        return;
      }
      clearTimeout(reloadTimer.current);
      reloadTimer.current = setTimeout(() => void load(), 150);
    },
    () => void load(),
  );

  const send = async (capability: string) => {
    setConfirming(undefined);
    setOutcome({ command: capability, running: true });
    try {
      const { body } = await api<VehicleState>('POST', `${base}/commands/${commandPath(capability)}`);
      setData((d) => d && { ...d, state: { ...d.state, ...body } });
      setOutcome({ command: capability, running: false });
    } catch (err) {
      setOutcome({ command: capability, running: false, error: err });
    }
    void load();
  };

  if (error && !data) return <ProblemBox error={error} />;
  if (!data) return <Loading what={`vehicle ${vehicleId}`} />;
  const { vehicle: v, state } = data;
  const plate = v.master_data.license_plate;

  return (
    <>
      <h1>
        {v.vehicle_id}
        {plate && <span class="plate">{plate}</span>}
      </h1>
      <ProblemBox error={error} />
      <p class="status-line">
        <Badge value={v.life_status.value} /> since {time(v.life_status.modified_at)} · setup{' '}
        <Badge value={v.setup_status} />
        {v.setup_failure_reason && <span> ({v.setup_failure_reason})</span>} · {v.operation_status.toLowerCase()}
      </p>

      {canCommand && (
        <section aria-labelledby="commands-h">
          <h2 id="commands-h">Commands</h2>
          <div class="commands">
            {v.capabilities.commands.map((c) => (
              <button
                key={c}
                type="button"
                class={NEEDS_CONFIRMATION.has(c) ? 'warn' : ''}
                disabled={outcome?.running === true}
                onClick={() => (NEEDS_CONFIRMATION.has(c) ? setConfirming(c) : void send(c))}
              >
                {commandWords(c)}
              </button>
            ))}
          </div>
          {outcome && (
            <div class="outcome" role="status" aria-live="polite">
              {outcome.running
                ? `${commandWords(outcome.command)}: waiting for the vehicle…`
                : outcome.error
                  ? `${commandWords(outcome.command)} failed.`
                  : `${commandWords(outcome.command)}: done.`}
            </div>
          )}
          {outcome && !outcome.running && <ProblemBox error={outcome.error} />}
        </section>
      )}
      {confirming && (
        <ConfirmDialog
          title={`${commandWords(confirming)}?`}
          onConfirm={() => void send(confirming)}
          onCancel={() => setConfirming(undefined)}
        >
          <p>
            This {/ENABLE_DRIVING/.test(confirming) ? 'makes the vehicle drivable' : 'opens the vehicle'}:{' '}
            {v.vehicle_id}
            {plate ? ` (${plate})` : ''}.
          </p>
        </ConfirmDialog>
      )}

      <div class="columns">
        <section aria-labelledby="state-h">
          <h2 id="state-h">Latest state</h2>
          {Object.keys(state).length === 0 ? (
            <p class="muted">No state reported yet.</p>
          ) : (
            <table class="state">
              <thead>
                <tr>
                  <th scope="col">Property</th>
                  <th scope="col">Value</th>
                  <th scope="col">Age</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(state)
                  .sort(([a], [b]) => a.localeCompare(b))
                  .map(([name, p]) => (
                    <tr key={name} data-property={name}>
                      <th scope="row">{propertyWords(name)}</th>
                      <td>{stateValue(p.value)}</td>
                      <td class="age" title={p.timestamp}>
                        {age(p.timestamp, now)}
                      </td>
                    </tr>
                  ))}
              </tbody>
            </table>
          )}
        </section>

        <section aria-labelledby="details-h">
          <h2 id="details-h">Vehicle</h2>
          <dl>
            {Object.entries(v.master_data).map(([k, val]) => (
              <div key={k}>
                <dt>{MASTER_LABELS[k] ?? propertyWords(k)}</dt>
                <dd>{val}</dd>
              </div>
            ))}
            <div>
              <dt>Telematics unit</dt>
              <dd>
                {v.telematics_unit.id} ({v.telematics_unit.brand}, {v.telematics_unit.model})
              </dd>
            </div>
            <div>
              <dt>Tags</dt>
              <dd>{v.tags.join(', ') || '—'}</dd>
            </div>
            {Object.entries(v.custom_fields).map(([k, val]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{val}</dd>
              </div>
            ))}
            <div>
              <dt>Commands it supports</dt>
              <dd>{v.capabilities.commands.map(commandWords).join(', ') || '—'}</dd>
            </div>
            <div>
              <dt>State it reports</dt>
              <dd>{v.capabilities.vehicle_state.map((s) => propertyWords(s.toLowerCase())).join(', ') || '—'}</dd>
            </div>
            <div>
              <dt>Added</dt>
              <dd>{time(v.created_at)}</dd>
            </div>
          </dl>
        </section>
      </div>

      <section aria-labelledby="history-h">
        <h2 id="history-h">Command history</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Requested</th>
                <th scope="col">Command</th>
                <th scope="col">Outcome</th>
                <th scope="col">By</th>
                <th scope="col">Took</th>
              </tr>
            </thead>
            <tbody>
              {data.commands.map((c) => (
                <tr key={c.flow_id}>
                  <td>{time(c.requested_at)}</td>
                  <td>{commandWords(c.command)}</td>
                  <td>
                    <Badge value={c.status} />
                    {c.problem_type && <div class="muted">{c.detail ?? c.problem_type}</div>}
                    {c.delivery && c.status !== 'SUCCEEDED' && (
                      <div class="muted">{c.delivery.replace(/_/g, ' ').toLowerCase()}</div>
                    )}
                  </td>
                  <td>{c.user_email ?? `API client ${c.client_id}`}</td>
                  <td>{c.duration_ms === null ? '…' : `${c.duration_ms} ms`}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {data.commands.length === 0 && <p class="muted">No commands yet.</p>}
      </section>

      <section aria-labelledby="events-h">
        <h2 id="events-h">Recent events</h2>
        {eventsError && events.length === 0 ? (
          <ProblemBox error={eventsError} />
        ) : events.length === 0 ? (
          <p class="muted">No events yet.</p>
        ) : (
          <ul class="events">
            {events.map((e) => (
              <li key={e.metadata.id}>
                <time dateTime={e.metadata.occurred_at}>{time(e.metadata.occurred_at)}</time> {e.metadata.type}
              </li>
            ))}
          </ul>
        )}
      </section>

      {isAdmin && <VehicleAdmin loaded={data} onChanged={load} />}
    </>
  );
}

const EVENT_PAGE = 1000;

/**
 * The vehicle's latest events, newest first. The feed reads oldest first (from the start of
 * retention), so this pages to its end, keeping the last few; bounded for chatty vehicles.
 */
async function recentEvents(vehicleId: string, keep = 20, maxPages = 20): Promise<EventEnvelope[]> {
  let recent: EventEnvelope[] = [];
  let after: string | undefined;
  for (let i = 0; i < maxPages; i++) {
    const query = `vehicle_id=${encodeURIComponent(vehicleId)}&limit=${EVENT_PAGE}${after ? `&after=${encodeURIComponent(after)}` : ''}`;
    const page = await get<{ items: EventEnvelope[]; next_cursor: string }>(`/events?${query}`);
    recent = [...recent, ...page.items].slice(-keep);
    if (page.items.length < EVENT_PAGE) break;
    after = page.next_cursor;
  }
  return recent.reverse();
}

const MASTER_FIELDS = [
  ['license_plate', 'Licence plate'],
  ['vin', 'VIN'],
  ['brand', 'Make'],
  ['model', 'Model'],
] as const;
const MASTER_LABELS: Record<string, string> = Object.fromEntries(MASTER_FIELDS);

/** Admins: edit master data and tags (with If-Match), or remove the vehicle. */
function VehicleAdmin({ loaded, onChanged }: { loaded: Loaded; onChanged: () => Promise<void> }) {
  const v = loaded.vehicle;
  const [fields, setFields] = useState<Record<string, string>>(() =>
    Object.fromEntries(MASTER_FIELDS.map(([k]) => [k, v.master_data[k] ?? ''])),
  );
  const [tags, setTags] = useState(v.tags.join(', '));
  const [error, setError] = useState<unknown>();
  const [saved, setSaved] = useState(false);
  const [removing, setRemoving] = useState(false);

  const save = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setSaved(false);
    const master_data = Object.fromEntries(MASTER_FIELDS.map(([k]) => [k, fields[k]?.trim() || null]));
    const tagList = tags
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    try {
      await api('PATCH', `/vehicles/${v.vehicle_id}`, {
        body: { master_data, tags: tagList },
        headers: loaded.etag ? { 'if-match': loaded.etag } : {},
      });
      setSaved(true);
      await onChanged();
    } catch (err) {
      setError(err);
    }
  };

  const remove = async () => {
    setRemoving(false);
    try {
      await api('DELETE', `/vehicles/${v.vehicle_id}`);
      navigate();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <section aria-labelledby="admin-h">
      <h2 id="admin-h">Edit vehicle</h2>
      <form class="grid-form" onSubmit={save}>
        {MASTER_FIELDS.map(([k, label]) => (
          <label key={k}>
            {label}
            <input value={fields[k]} onInput={(e) => setFields({ ...fields, [k]: e.currentTarget.value })} />
          </label>
        ))}
        <label>
          Tags (comma separated)
          <input value={tags} onInput={(e) => setTags(e.currentTarget.value)} />
        </label>
        <div class="actions">
          <button type="submit" class="primary">
            Save changes
          </button>
          <button type="button" class="danger" onClick={() => setRemoving(true)}>
            Remove vehicle
          </button>
        </div>
      </form>
      {saved && <p role="status">Saved.</p>}
      <ProblemBox error={error} />
      {removing && (
        <ConfirmDialog title="Remove vehicle?" onConfirm={() => void remove()} onCancel={() => setRemoving(false)}>
          <p>{v.vehicle_id} and its state and command history are deleted; its unit can no longer connect.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}
