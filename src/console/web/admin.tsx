import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, get, type SessionInfo, type Vehicle } from './api.js';
import { ConfirmDialog, Loading, ProblemBox } from './components.js';
import { time } from './format.js';
import { navigate } from './router.js';

interface Brand {
  telematics_brand: string;
  name: string;
  requires_password: boolean;
  requires_credentials: boolean;
}
interface Model {
  id: string;
  brand: string;
  model: string;
  vehicle_type: string;
}

/** Add a vehicle: brand → model → the fields that brand needs. */
export function AddVehicle() {
  const [brands, setBrands] = useState<Brand[]>();
  const [brand, setBrand] = useState('');
  const [models, setModels] = useState<Model[]>([]);
  const [credentials, setCredentials] = useState<Array<{ credentials_id: string; name: string | null }>>([]);
  const [form, setForm] = useState({ model: '', unit: '', password: '', credentials: '', plate: '', tags: '' });
  const [error, setError] = useState<unknown>();
  const chosen = brands?.find((b) => b.telematics_brand === brand);

  useEffect(() => {
    get<{ items: Brand[] }>('/telematics-brands').then((r) => setBrands(r.items), setError);
  }, []);
  useEffect(() => {
    if (!brand) return;
    setModels([]);
    get<{ items: Model[] }>(`/telematics-brands/${encodeURIComponent(brand)}/available-vehicle-models`).then(
      (r) => setModels(r.items),
      setError,
    );
    if (brands?.find((b) => b.telematics_brand === brand)?.requires_credentials) {
      get<{ items: Array<{ credentials_id: string; name: string | null }> }>('/credentials?limit=500').then(
        (r) => setCredentials(r.items),
        setError,
      );
    }
  }, [brand, brands]);

  const field = (key: keyof typeof form) => (e: Event) =>
    setForm({ ...form, [key]: (e.currentTarget as HTMLInputElement).value });

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    const body: Record<string, unknown> = { telematics_brand: brand, telematics_unit_id: form.unit.trim() };
    if (form.model) body.vehicle_model_id = form.model;
    if (chosen?.requires_password) body.password = form.password;
    if (chosen?.requires_credentials) body.credentials_id = form.credentials;
    if (form.plate.trim()) body.master_data = { license_plate: form.plate.trim() };
    const tags = form.tags
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    if (tags.length > 0) body.tags = tags;
    try {
      const { body: v } = await api<Vehicle>('POST', '/vehicles', { body });
      navigate('vehicles', v.vehicle_id);
    } catch (err) {
      setError(err);
    }
  };

  if (!brands) return error ? <ProblemBox error={error} /> : <Loading what="telematics brands" />;
  return (
    <>
      <h1>Add a vehicle</h1>
      <form class="grid-form" onSubmit={submit}>
        <label>
          Telematics brand
          <select required value={brand} onChange={(e) => setBrand(e.currentTarget.value)}>
            <option value="">Choose…</option>
            {brands.map((b) => (
              <option key={b.telematics_brand} value={b.telematics_brand}>
                {b.name}
              </option>
            ))}
          </select>
        </label>
        {brand && (
          <>
            <label>
              Vehicle model
              <select value={form.model} onChange={field('model')}>
                <option value="">Derived by the brand</option>
                {models.map((m) => (
                  <option key={m.id} value={m.id}>
                    {m.brand} {m.model} ({m.vehicle_type.toLowerCase()})
                  </option>
                ))}
              </select>
            </label>
            <label>
              Telematics unit id
              <input required value={form.unit} onInput={field('unit')} />
            </label>
            {chosen?.requires_password && (
              <label>
                Unit password
                <input
                  type="password"
                  autoComplete="new-password"
                  required
                  minLength={12}
                  value={form.password}
                  onInput={field('password')}
                />
              </label>
            )}
            {chosen?.requires_credentials && (
              <label>
                Credentials
                <select required value={form.credentials} onChange={field('credentials')}>
                  <option value="">Choose…</option>
                  {credentials.map((c) => (
                    <option key={c.credentials_id} value={c.credentials_id}>
                      {c.name ?? c.credentials_id}
                    </option>
                  ))}
                </select>
              </label>
            )}
            <label>
              Licence plate
              <input value={form.plate} onInput={field('plate')} />
            </label>
            <label>
              Tags (comma separated)
              <input value={form.tags} onInput={field('tags')} />
            </label>
            <div class="actions">
              <button type="submit" class="primary">
                Add vehicle
              </button>
            </div>
          </>
        )}
      </form>
      <ProblemBox error={error} />
    </>
  );
}

interface Client {
  client_id: string;
  name: string;
  scopes: string[];
  created_at: string;
  client_secret?: string;
}

/** API clients of the fleet; a new client's secret is shown once. */
export function ClientsPage({ session }: { session: SessionInfo }) {
  const [clients, setClients] = useState<Client[]>();
  const [error, setError] = useState<unknown>();
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>([]);
  const [created, setCreated] = useState<Client>();
  const [deleting, setDeleting] = useState<Client>();

  const load = useCallback(() => get<{ items: Client[] }>('/clients').then((r) => setClients(r.items), setError), []);
  useEffect(() => {
    void load();
  }, [load]);

  const create = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      const { body } = await api<Client>('POST', '/clients', { body: { name: name || undefined, scopes } });
      setCreated(body);
      setName('');
      setScopes([]);
      await load();
    } catch (err) {
      setError(err);
    }
  };
  const remove = async (c: Client) => {
    setDeleting(undefined);
    try {
      await api('DELETE', `/clients/${encodeURIComponent(c.client_id)}`);
      await load();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <>
      <h1>API clients</h1>
      {created && (
        <div class="secret" role="status">
          <p>
            Client <code>{created.client_id}</code> created. Its secret is shown only now; copy it:
          </p>
          <label>
            Client secret
            <input readOnly value={created.client_secret} onFocus={(e) => e.currentTarget.select()} />
          </label>
        </div>
      )}
      <form class="grid-form" onSubmit={create}>
        <label>
          Name
          <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <fieldset>
          <legend>Scopes</legend>
          {session.scopes.map((s) => (
            <label key={s} class="inline">
              <input
                type="checkbox"
                checked={scopes.includes(s)}
                onChange={(e) => setScopes(e.currentTarget.checked ? [...scopes, s] : scopes.filter((x) => x !== s))}
              />
              {s}
            </label>
          ))}
        </fieldset>
        <div class="actions">
          <button type="submit" class="primary" disabled={scopes.length === 0}>
            Create API client
          </button>
        </div>
      </form>
      <ProblemBox error={error} />
      {!clients ? (
        <Loading what="API clients" />
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Client id</th>
                <th scope="col">Name</th>
                <th scope="col">Scopes</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {clients.map((c) => (
                <tr key={c.client_id}>
                  <td>
                    <code>{c.client_id}</code>
                  </td>
                  <td>{c.name}</td>
                  <td>{c.scopes.join(' ')}</td>
                  <td>{time(c.created_at)}</td>
                  <td>
                    <button
                      type="button"
                      class="danger"
                      onClick={() => setDeleting(c)}
                      aria-label={`Delete ${c.client_id}`}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {deleting && (
        <ConfirmDialog
          title="Delete API client?"
          onConfirm={() => void remove(deleting)}
          onCancel={() => setDeleting(undefined)}
        >
          <p>{deleting.client_id}: its tokens are refused from now on.</p>
        </ConfirmDialog>
      )}
    </>
  );
}

interface Webhook {
  webhook_id: string;
  url: string;
  event_types: string[] | null;
  enabled: boolean;
  disabled_reason: string | null;
  created_at: string;
  secret?: string;
}

/** Webhooks of the fleet (Standard Webhooks); the signing secret is shown once. */
export function WebhooksPage() {
  const [hooks, setHooks] = useState<Webhook[]>();
  const [error, setError] = useState<unknown>();
  const [url, setUrl] = useState('');
  const [created, setCreated] = useState<Webhook>();
  const [deleting, setDeleting] = useState<Webhook>();
  const idOf = (w: Webhook) => w.webhook_id;

  const load = useCallback(() => get<{ items: Webhook[] }>('/webhooks').then((r) => setHooks(r.items), setError), []);
  useEffect(() => {
    void load();
  }, [load]);

  const create = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      const { body } = await api<Webhook>('POST', '/webhooks', { body: { url } });
      setCreated(body);
      setUrl('');
      await load();
    } catch (err) {
      setError(err);
    }
  };
  const remove = async (w: Webhook) => {
    setDeleting(undefined);
    try {
      await api('DELETE', `/webhooks/${encodeURIComponent(idOf(w))}`);
      await load();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <>
      <h1>Webhooks</h1>
      {created?.secret && (
        <div class="secret" role="status">
          <label>
            Signing secret (shown only now)
            <input readOnly value={created.secret} />
          </label>
        </div>
      )}
      <form class="grid-form" onSubmit={create}>
        <label>
          Endpoint URL
          <input type="url" required value={url} onInput={(e) => setUrl(e.currentTarget.value)} />
        </label>
        <div class="actions">
          <button type="submit" class="primary">
            Add webhook
          </button>
        </div>
      </form>
      <ProblemBox error={error} />
      {hooks && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Id</th>
                <th scope="col">URL</th>
                <th scope="col">Events</th>
                <th scope="col">Status</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {hooks.map((w) => (
                <tr key={idOf(w)}>
                  <td>
                    <code>{idOf(w)}</code>
                  </td>
                  <td>{w.url}</td>
                  <td>{w.event_types?.join(', ') || 'all'}</td>
                  <td>{w.enabled ? 'enabled' : `disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ''}`}</td>
                  <td>
                    <button
                      type="button"
                      class="danger"
                      onClick={() => setDeleting(w)}
                      aria-label={`Delete webhook ${w.url}`}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {deleting && (
        <ConfirmDialog
          title="Delete webhook?"
          onConfirm={() => void remove(deleting)}
          onCancel={() => setDeleting(undefined)}
        >
          <p>{deleting.url} receives no more events.</p>
        </ConfirmDialog>
      )}
    </>
  );
}

interface User {
  user_id: string;
  email: string;
  role: string;
  created_at: string;
}
const ROLES = ['viewer', 'operator', 'admin'];

/** Console users of the fleet: add, change role, remove. */
export function UsersPage({ session }: { session: SessionInfo }) {
  const [users, setUsers] = useState<User[]>();
  const [error, setError] = useState<unknown>();
  const [form, setForm] = useState({ email: '', role: 'viewer', password: '' });
  const [deleting, setDeleting] = useState<User>();

  const load = useCallback(() => get<{ items: User[] }>('/users').then((r) => setUsers(r.items), setError), []);
  useEffect(() => {
    void load();
  }, [load]);

  const run = async (work: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await work();
      await load();
    } catch (err) {
      setError(err);
    }
  };
  const create = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      await api('POST', '/users', { body: form });
      setForm({ email: '', role: 'viewer', password: '' });
    });
  };

  return (
    <>
      <h1>Users</h1>
      <form class="grid-form" onSubmit={create}>
        <label>
          Email
          <input
            type="email"
            required
            value={form.email}
            onInput={(e) => setForm({ ...form, email: e.currentTarget.value })}
          />
        </label>
        <label>
          Role
          <select value={form.role} onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Password
          <input
            type="password"
            autoComplete="new-password"
            required
            minLength={10}
            value={form.password}
            onInput={(e) => setForm({ ...form, password: e.currentTarget.value })}
          />
        </label>
        <div class="actions">
          <button type="submit" class="primary">
            Add user
          </button>
        </div>
      </form>
      <ProblemBox error={error} />
      {!users ? (
        <Loading what="users" />
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Added</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {users.map((u) => (
                <tr key={u.user_id}>
                  <td>{u.email}</td>
                  <td>
                    <select
                      aria-label={`Role of ${u.email}`}
                      value={u.role}
                      disabled={u.user_id === session.user.user_id}
                      onChange={(e) => {
                        const role = e.currentTarget.value;
                        void run(() => api('PATCH', `/users/${u.user_id}`, { body: { role } }));
                      }}
                    >
                      {ROLES.map((r) => (
                        <option key={r}>{r}</option>
                      ))}
                    </select>
                  </td>
                  <td>{time(u.created_at)}</td>
                  <td>
                    {u.user_id !== session.user.user_id && (
                      <button
                        type="button"
                        class="danger"
                        onClick={() => setDeleting(u)}
                        aria-label={`Remove ${u.email}`}
                      >
                        Remove
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {deleting && (
        <ConfirmDialog
          title="Remove user?"
          onConfirm={() => {
            const u = deleting;
            setDeleting(undefined);
            void run(() => api('DELETE', `/users/${u.user_id}`));
          }}
          onCancel={() => setDeleting(undefined)}
        >
          <p>{deleting.email} can no longer sign in; open sessions end now.</p>
        </ConfirmDialog>
      )}
    </>
  );
}
