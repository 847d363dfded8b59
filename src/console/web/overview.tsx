import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { allVehicles, get, mapLimit, type SessionInfo, type Vehicle, type VehicleState } from './api.js';
import { Badge, Loading, ProblemBox } from './components.js';
import { useLive } from './live-context.js';
import { FleetMap, type MapPoint } from './map.js';
import { href, navigate } from './router.js';

/** Positions are read per vehicle; beyond this many the map shows the first ones only. */
const MAP_STATE_LIMIT = 500;

interface Filters {
  q: string;
  brand: string;
  life: string;
  setup: string;
  tag: string;
}

const position = (state: VehicleState | undefined): { lat: number; lon: number } | undefined => {
  const v = state?.position?.value as { lat?: unknown; lon?: unknown } | undefined;
  return typeof v?.lat === 'number' && typeof v?.lon === 'number' ? { lat: v.lat, lon: v.lon } : undefined;
};

export function Overview({ session }: { session: SessionInfo }) {
  const [vehicles, setVehicles] = useState<Vehicle[]>();
  const [states, setStates] = useState<Record<string, VehicleState>>({});
  const [error, setError] = useState<unknown>();
  const [filters, setFilters] = useState<Filters>({ q: '', brand: '', life: '', setup: '', tag: '' });
  const pending = useRef(new Map<string, ReturnType<typeof setTimeout>>());
  const loads = useRef(0);

  const load = useCallback(async () => {
    // Loads overlap (the first, and the one when the stream went live): only the latest is shown.
    const n = ++loads.current;
    const stale = () => n !== loads.current;
    try {
      const list = await allVehicles();
      if (stale()) return;
      setVehicles(list);
      setError(undefined);
      const read = await mapLimit(list.slice(0, MAP_STATE_LIMIT), 6, async (v) => {
        // An overtaken load reads no more states: the newer one reads them all.
        if (stale()) return [v.vehicle_id, {}] as const;
        try {
          return [v.vehicle_id, await get<VehicleState>(`/vehicles/${v.vehicle_id}/state`)] as const;
        } catch {
          return [v.vehicle_id, {}] as const;
        }
      });
      if (stale()) return;
      setStates(Object.fromEntries(read));
    } catch (err) {
      if (!stale()) setError(err);
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  /** One vehicle again, after an event about it (debounced: a command brings several). */
  const refresh = (vehicleId: string, removed: boolean) => {
    clearTimeout(pending.current.get(vehicleId));
    pending.current.set(
      vehicleId,
      setTimeout(async () => {
        pending.current.delete(vehicleId);
        if (removed) {
          setVehicles((list) => list?.filter((v) => v.vehicle_id !== vehicleId));
          return;
        }
        try {
          const [v, s] = await Promise.all([
            get<Vehicle>(`/vehicles/${vehicleId}`),
            get<VehicleState>(`/vehicles/${vehicleId}/state`),
          ]);
          setVehicles((list) => {
            if (!list) return list;
            const i = list.findIndex((x) => x.vehicle_id === vehicleId);
            return i < 0 ? [...list, v] : list.map((x) => (x.vehicle_id === vehicleId ? v : x));
          });
          setStates((all) => ({ ...all, [vehicleId]: s }));
        } catch {
          // Gone meanwhile, or not ours: the next full load settles it.
        }
      }, 150),
    );
  };

  useLive(
    (e) => {
      const id = e.metadata.vehicle_id;
      if (id) refresh(id, e.metadata.type === 'VehicleRemoved');
    },
    () => void load(),
  );

  const brands = useMemo(() => [...new Set(vehicles?.map((v) => v.telematics_unit.brand))].sort(), [vehicles]);
  const tags = useMemo(() => [...new Set(vehicles?.flatMap((v) => v.tags))].sort(), [vehicles]);
  const shown = useMemo(() => {
    const q = filters.q.trim().toLowerCase();
    return (vehicles ?? []).filter(
      (v) =>
        (!q ||
          v.vehicle_id.toLowerCase().includes(q) ||
          (v.master_data.license_plate ?? '').toLowerCase().includes(q) ||
          v.telematics_unit.id.toLowerCase().includes(q)) &&
        (!filters.brand || v.telematics_unit.brand === filters.brand) &&
        (!filters.life || v.life_status.value === filters.life) &&
        (!filters.setup || v.setup_status === filters.setup) &&
        (!filters.tag || v.tags.includes(filters.tag)),
    );
  }, [vehicles, filters]);
  const points = useMemo(
    () =>
      shown.flatMap((v): MapPoint[] => {
        const p = position(states[v.vehicle_id]);
        if (!p) return [];
        const plate = v.master_data.license_plate;
        return [
          {
            id: v.vehicle_id,
            ...p,
            label: plate ? `${v.vehicle_id} · ${plate}` : v.vehicle_id,
            online: v.life_status.value === 'ONLINE',
          },
        ];
      }),
    [shown, states],
  );
  const select = useCallback((id: string) => navigate('vehicles', id), []);

  if (error) return <ProblemBox error={error} />;
  if (!vehicles) return <Loading what="the fleet" />;

  const count = (f: (v: Vehicle) => boolean) => vehicles.filter(f).length;
  const set = (key: keyof Filters) => (e: Event) =>
    setFilters({ ...filters, [key]: (e.currentTarget as HTMLInputElement | HTMLSelectElement).value });

  return (
    <>
      <h1>Fleet {session.user.fleet_id}</h1>
      <ul class="counts" aria-label="Vehicle counts">
        <li>
          <strong>{vehicles.length}</strong> vehicles
        </li>
        <li class="online">
          <strong>{count((v) => v.life_status.value === 'ONLINE')}</strong> online
        </li>
        <li class="offline">
          <strong>{count((v) => v.life_status.value !== 'ONLINE')}</strong> offline
        </li>
        <li class="failed">
          <strong>{count((v) => v.setup_status === 'FAILED')}</strong> setup failed
        </li>
      </ul>
      <FleetMap points={points} onSelect={select} />
      <form class="filters" aria-label="Find vehicles" onSubmit={(e) => e.preventDefault()}>
        <label>
          Search
          <input type="search" placeholder="Vehicle id, licence plate, unit id" value={filters.q} onInput={set('q')} />
        </label>
        <label>
          Brand
          <select value={filters.brand} onChange={set('brand')}>
            <option value="">Any</option>
            {brands.map((b) => (
              <option key={b}>{b}</option>
            ))}
          </select>
        </label>
        <label>
          Life status
          <select value={filters.life} onChange={set('life')}>
            <option value="">Any</option>
            <option>ONLINE</option>
            <option>OFFLINE</option>
          </select>
        </label>
        <label>
          Setup status
          <select value={filters.setup} onChange={set('setup')}>
            <option value="">Any</option>
            <option>IN_PROGRESS</option>
            <option>SUCCEEDED</option>
            <option>FAILED</option>
          </select>
        </label>
        <label>
          Tag
          <select value={filters.tag} onChange={set('tag')}>
            <option value="">Any</option>
            {tags.map((t) => (
              <option key={t}>{t}</option>
            ))}
          </select>
        </label>
      </form>
      <p class="muted" role="status">
        {shown.length} of {vehicles.length} vehicles shown
      </p>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Vehicle</th>
              <th scope="col">Licence plate</th>
              <th scope="col">Unit</th>
              <th scope="col">Brand</th>
              <th scope="col">Life status</th>
              <th scope="col">Setup</th>
              <th scope="col">Central lock</th>
              <th scope="col">Tags</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((v) => (
              <tr key={v.vehicle_id}>
                <td>
                  <a href={href('vehicles', v.vehicle_id)}>{v.vehicle_id}</a>
                </td>
                <td>{v.master_data.license_plate ?? '—'}</td>
                <td>{v.telematics_unit.id}</td>
                <td title={v.telematics_unit.model}>{v.telematics_unit.brand}</td>
                <td>
                  <Badge value={v.life_status.value} />
                </td>
                <td>
                  <Badge value={v.setup_status} />
                </td>
                <td>{String(states[v.vehicle_id]?.central_lock?.value ?? '—')}</td>
                <td>{v.tags.join(', ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
