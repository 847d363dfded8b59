import { useEffect, useErrorBoundary, useMemo, useState } from 'preact/hooks';
import { AddVehicle, ClientsPage, UsersPage, WebhooksPage } from './admin.js';
import { ApiError, api, type SessionInfo, setUnauthorizedHandler } from './api.js';
import { Loading, ProblemBox } from './components.js';
import { followEvents, type LiveStatus } from './live.js';
import { LiveContext, LiveHub } from './live-context.js';
import { Overview } from './overview.js';
import { href, useRoute } from './router.js';
import { SignIn } from './sign-in.js';
import { VehiclePage } from './vehicle.js';

export function App() {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [notice, setNotice] = useState<string>();
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    // The first refusal says why (expired, ended); requests still under way may follow it.
    setUnauthorizedHandler((problem) => {
      setNotice((shown) => shown ?? problem.detail);
      setSession(null);
    });
    api<SessionInfo>('GET', '/auth/session', { quiet401: true }).then(
      ({ body }) => setSession(body),
      (err: unknown) => {
        if (err instanceof ApiError && err.problem.status === 401) setSession(null);
        else setError(err);
      },
    );
  }, []);

  if (error) return <ProblemBox error={error} />;
  if (session === undefined) return <Loading what="the console" />;
  if (session === null) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(s) => {
          setNotice(undefined);
          setSession(s);
        }}
      />
    );
  }
  return <Shell session={session} onSignedOut={() => setSession(null)} />;
}

const LIVE_TEXT: Record<LiveStatus, string> = {
  connecting: 'Connecting to live updates…',
  live: 'Live',
  lost: 'Live updates lost — reconnecting…',
};

function Shell({ session, onSignedOut }: { session: SessionInfo; onSignedOut: () => void }) {
  const route = useRoute();
  const hub = useMemo(() => new LiveHub(), []);
  // A bug in a page shows as a problem, never as a blank page.
  const [crash, resetCrash] = useErrorBoundary();
  useEffect(() => {
    if (crash) resetCrash();
  }, [route.join('/')]);
  const [live, setLive] = useState<LiveStatus>('connecting');
  const isAdmin = session.user.role === 'admin';

  useEffect(
    () => followEvents({ onEvent: (e) => hub.emit(e), onStatus: setLive, onLive: () => hub.wentLive() }),
    [hub],
  );

  const signOut = async () => {
    await api('DELETE', '/auth/session').catch(() => undefined);
    onSignedOut();
  };

  const [first, second] = route;
  let page = <Overview session={session} />;
  if (first === 'vehicles' && second) page = <VehiclePage key={second} vehicleId={second} session={session} />;
  else if (first === 'admin' && isAdmin && second === 'add-vehicle') page = <AddVehicle />;
  else if (first === 'admin' && isAdmin && second === 'clients') page = <ClientsPage session={session} />;
  else if (first === 'admin' && isAdmin && second === 'webhooks') page = <WebhooksPage />;
  else if (first === 'admin' && isAdmin && second === 'users') page = <UsersPage session={session} />;

  return (
    <LiveContext.Provider value={hub}>
      <header class="top">
        <a class="brand" href={href()}>
          fleetgate
        </a>
        <nav aria-label="Main">
          <a href={href()}>Fleet</a>
          {isAdmin && (
            <>
              <a href={href('admin', 'add-vehicle')}>Add vehicle</a>
              <a href={href('admin', 'clients')}>API clients</a>
              <a href={href('admin', 'webhooks')}>Webhooks</a>
              <a href={href('admin', 'users')}>Users</a>
            </>
          )}
        </nav>
        <span class={`live live-${live}`} role="status" aria-live="polite">
          {LIVE_TEXT[live]}
        </span>
        <span class="who">
          {session.user.email} · {session.user.role} · fleet {session.user.fleet_id}
        </span>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>{crash ? <ProblemBox error={crash} /> : page}</main>
    </LiveContext.Provider>
  );
}
