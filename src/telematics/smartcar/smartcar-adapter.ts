import type { Vehicle } from '../../domain/vehicle.js';
import type {
  AdapterContext,
  CommandOutcome,
  CommandRequest,
  CredentialsField,
  TelematicsAdapter,
} from '../adapter.js';
import { NO_CONNECTION_CODES, outcomeFromFailure } from './error-mapping.js';
import { deriveCapabilities, grantedReadPaths, READ_VEHICLE_INFO, SMARTCAR_BRAND, SMARTCAR_MODELS } from './models.js';
import {
  describeFailure,
  isSmartcarError,
  SMARTCAR_PROVIDER,
  SmartcarClient,
  SmartcarError,
  type SmartcarFailure,
} from './smartcar-client.js';
import { type BatchReading, readPathsFor, stateFromBatch } from './state-mapping.js';
import { CredentialsRevokedError, CredentialsUnusableError, TokenManager } from './token-manager.js';

export interface SmartcarAdapterOptions {
  /** Clock of token expiry decisions (tests move it forward). */
  now?: () => number;
  /** Refresh access tokens this long before they expire. Default 5 minutes. */
  refreshBeforeExpiryMs?: number;
  /** Lease of one token refresh across instances. Default 20 s. */
  leaseMs?: number;
  /** Poll interval while another instance refreshes. Default 25 ms. */
  pollMs?: number;
  /** Budget of the verification when a vehicle is added. Default 30 s. */
  setupTimeoutMs?: number;
  /** Longest single HTTP call to Smartcar. Default 30 s. */
  httpTimeoutMs?: number;
}

/** Time kept back from a command's budget for the retry after a rate-limit wait. */
const RETRY_MARGIN_MS = 200;
const MAX_RATE_LIMIT_RETRIES = 5;

/**
 * Telematics brand SMARTCAR: vehicles reached through Smartcar's API v2.0 with the fleet's stored
 * credentials (`credentials_id`; the unit id is Smartcar's vehicle id). It translates commands to
 * Smartcar requests and Smartcar's answers to outcomes; tokens live in token-manager.ts, the
 * error table in error-mapping.ts.
 */
export class SmartcarAdapter implements TelematicsAdapter {
  readonly brand = SMARTCAR_BRAND;
  readonly displayName = 'Smartcar (connected-car API v2.0)';
  readonly models = SMARTCAR_MODELS;
  readonly requiresUnitPassword = false;
  readonly requiresCredentials = true;
  readonly credentialsFields: readonly CredentialsField[] = [
    { name: 'client_id', secret: false, description: 'Client id of the Smartcar application.' },
    { name: 'client_secret', secret: true, description: 'Client secret of the Smartcar application.' },
    {
      name: 'refresh_token',
      secret: true,
      description: 'Refresh token of the Smartcar account the vehicles are connected to (from Smartcar Connect).',
    },
  ];

  private ctx: AdapterContext | undefined;
  private client: SmartcarClient | undefined;
  private tokens: TokenManager | undefined;
  private stopping = new AbortController();
  private readonly setups = new Set<Promise<void>>();

  constructor(private readonly options: SmartcarAdapterOptions = {}) {}

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    this.stopping = new AbortController();
    const client = new SmartcarClient({
      apiUrl: String(ctx.settings.apiUrl),
      authUrl: String(ctx.settings.authUrl),
      ...(this.options.httpTimeoutMs !== undefined ? { timeoutMs: this.options.httpTimeoutMs } : {}),
    });
    this.client = client;
    this.tokens = new TokenManager({
      credentials: ctx.credentials,
      client,
      instanceId: ctx.instanceId,
      logger: ctx.logger,
      onRevoked: (id, reason) => ctx.sink.credentialsRevoked(id, reason),
      ...(this.options.now ? { now: this.options.now } : {}),
      ...(this.options.refreshBeforeExpiryMs !== undefined
        ? { refreshBeforeExpiryMs: this.options.refreshBeforeExpiryMs }
        : {}),
      ...(this.options.leaseMs !== undefined ? { leaseMs: this.options.leaseMs } : {}),
      ...(this.options.pollMs !== undefined ? { pollMs: this.options.pollMs } : {}),
    });
  }

  /** A verification cut short by a shutdown runs again (the vehicle service hands it back). */
  resumeSetup(vehicle: Vehicle): void {
    this.verifyInBackground(vehicle);
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.idle();
  }

  /** Resolves once every running setup verification has ended. */
  async idle(): Promise<void> {
    while (this.setups.size > 0) await Promise.allSettled([...this.setups]);
  }

  async onVehicleAdded(vehicle: Vehicle): Promise<void> {
    this.verifyInBackground(vehicle);
  }

  async onVehicleRemoved(): Promise<void> {
    // Nothing to release: the Smartcar connection belongs to the owner's account, and
    // disconnecting it would also cut off any other application of the operator.
  }

  async execute(request: CommandRequest): Promise<CommandOutcome> {
    const { vehicle, command, signal } = request;
    const log = this.context().logger.child({ flow_id: request.flowId, vehicle_id: vehicle.vehicle_id });
    const sent = { action: false };
    const seen: Observation = {};
    let outcome: CommandOutcome;
    try {
      switch (command) {
        case 'LOCK_CENTRAL_LOCK':
        case 'UNLOCK_CENTRAL_LOCK': {
          const action = command === 'LOCK_CENTRAL_LOCK' ? 'LOCK' : 'UNLOCK';
          await this.call(vehicle, signal, request.deadline, async (token) => {
            sent.action = true;
            try {
              return await this.api().security(token, vehicle.telematics_unit_id, action, signal);
            } catch (e) {
              // An error answer means Smartcar did not carry the action out.
              if (isSmartcarError(e) && e.failure.kind === 'api') sent.action = false;
              throw e;
            }
          });
          outcome = {
            kind: 'succeeded',
            state: {
              central_lock: { timestamp: new Date().toISOString(), value: action === 'LOCK' ? 'LOCKED' : 'UNLOCKED' },
            },
          };
          break;
        }
        case 'REQUEST_VEHICLE_STATE':
          outcome = await this.requestState(request, seen, log);
          break;
        default:
          outcome = { kind: 'not-supported', reason: `Smartcar offers no '${command}' for this vehicle` };
      }
    } catch (e) {
      if (isSmartcarError(e)) seen.failure = e.failure;
      outcome = this.outcomeOf(e, sent.action, log);
    }
    await this.reportConnectivity(
      vehicle.telematics_unit_id,
      outcome.kind === 'succeeded' ? true : online(seen.failure),
    );
    return outcome;
  }

  /**
   * Smartcar tells whether a vehicle is reachable only when asked: a reading or action that went
   * through means ONLINE, an ASLEEP/UNREACHABLE answer means OFFLINE (SPEC §4 life_status).
   */
  private async reportConnectivity(unitId: string, isOnline: boolean | undefined): Promise<void> {
    if (isOnline === undefined) return;
    try {
      await this.context().sink.connection(unitId, isOnline, new Date());
    } catch (e) {
      this.ctx?.logger.warn({ err: e, unit_id: unitId }, 'could not record Smartcar vehicle connectivity');
    }
  }

  /** Batched reads of every endpoint the vehicle's state capabilities need (Smartcar batch). */
  private async requestState(
    request: CommandRequest,
    seen: Observation,
    log: AdapterContext['logger'],
  ): Promise<CommandOutcome> {
    const { vehicle, signal } = request;
    const paths = readPathsFor(vehicle.capabilities);
    if (paths.length === 0)
      return { kind: 'not-supported', reason: 'no Smartcar reading was granted for this vehicle' };
    const { items, requestId } = await this.call(vehicle, signal, request.deadline, (token) =>
      this.api().batch(token, vehicle.telematics_unit_id, paths, signal),
    );
    const { state, failures } = stateFromBatch(items, new Date(), requestId);
    if (Object.keys(state).length > 0) {
      if (failures.length > 0) {
        log.debug(
          { failures: failures.map((f) => ({ path: f.path, why: describeFailure(f.failure) })) },
          'partial Smartcar reading',
        );
      }
      return { kind: 'succeeded', state };
    }
    // Nothing readable: answer with the failure that says most. A vehicle without a fuel tank
    // (or battery) answering COMPATIBILITY on the other energy path says nothing.
    const telling =
      failures.find(
        (f) =>
          !(
            f.failure.kind === 'api' &&
            f.failure.type === 'COMPATIBILITY' &&
            (f.path === '/battery' || f.path === '/fuel')
          ),
      ) ?? failures[0];
    if (!telling) {
      return {
        kind: 'third-party-error',
        provider: SMARTCAR_PROVIDER,
        reason: 'the batch answer held no readings',
        ...(requestId ? { request_id: requestId } : {}),
      };
    }
    seen.failure = telling.failure;
    return outcomeFromFailure(telling.failure);
  }

  /**
   * Runs one Smartcar call with a valid access token. A 401 gets one token refresh; a rate
   * limit is waited out when its Retry-After fits before the command's deadline, else it
   * surfaces (→ 502 with the retry time).
   */
  private async call<T>(
    vehicle: Vehicle,
    signal: AbortSignal,
    deadline: Date,
    fn: (accessToken: string) => Promise<T>,
  ): Promise<T> {
    const credentialsId = vehicle.credentials_id;
    if (!credentialsId) throw new CredentialsUnusableError('', `vehicle '${vehicle.vehicle_id}' has no credentials_id`);
    const tokens = this.tokenManager();
    let reauthenticated = false;
    let rateLimitRetries = 0;
    for (;;) {
      const token = await tokens.accessToken(credentialsId, signal);
      try {
        return await fn(token);
      } catch (e) {
        if (!isSmartcarError(e) || e.failure.kind !== 'api') throw e;
        const f = e.failure;
        if (f.type === 'AUTHENTICATION' && !reauthenticated) {
          reauthenticated = true;
          await tokens.invalidate(credentialsId, token);
          continue;
        }
        if (f.type === 'RATE_LIMIT' && f.retryAfterS !== undefined && rateLimitRetries < MAX_RATE_LIMIT_RETRIES) {
          const waitMs = Math.max(f.retryAfterS * 1000, 50);
          if (Date.now() + waitMs + RETRY_MARGIN_MS < deadline.getTime()) {
            rateLimitRetries++;
            await abortableSleep(waitMs, signal);
            continue;
          }
        }
        throw e;
      }
    }
  }

  private outcomeOf(e: unknown, actionSent: boolean, log: AdapterContext['logger']): CommandOutcome {
    if (e instanceof CredentialsRevokedError) {
      return { kind: 'third-party-error', provider: SMARTCAR_PROVIDER, reason: e.reason };
    }
    if (e instanceof CredentialsUnusableError) {
      log.error({ credentials_id: e.credentialsId }, e.message);
      return { kind: 'failed', reason: e.message };
    }
    if (isSmartcarError(e)) {
      log.info({ smartcar: describeFailure(e.failure) }, 'smartcar call failed');
      return outcomeFromFailure(e.failure, actionSent);
    }
    throw e;
  }

  private verifyInBackground(vehicle: Vehicle): void {
    const run = this.verify(vehicle).catch((e) =>
      this.ctx?.logger.error({ err: e, vehicle_id: vehicle.vehicle_id }, 'smartcar setup verification crashed'),
    );
    const tracked = run.finally(() => this.setups.delete(tracked));
    this.setups.add(tracked);
  }

  /**
   * Setup (SPEC §4): the vehicle exists under the credentials' grant, and its capabilities are
   * the model's narrowed to the granted permissions and to what Smartcar says the vehicle can do.
   */
  private async verify(vehicle: Vehicle): Promise<void> {
    const ctx = this.context();
    const budget = this.options.setupTimeoutMs ?? 30_000;
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(budget)]);
    const deadline = new Date(Date.now() + budget);
    const fail = (reason: string) => ctx.sink.setupResult(vehicle.vehicle_id, { ok: false, reason });
    const unit = vehicle.telematics_unit_id;
    try {
      const creds = vehicle.credentials_id ? await ctx.credentials.read(vehicle.credentials_id) : undefined;
      if (!creds || creds.fleet_id !== vehicle.fleet_id || creds.telematics_brand !== SMARTCAR_BRAND) {
        await fail('The vehicle needs the credentials_id of SMARTCAR credentials of its fleet.');
        return;
      }
      const permissions = await this.call(vehicle, signal, deadline, (t) => this.api().permissions(t, unit, signal));
      if (permissions.includes(READ_VEHICLE_INFO)) {
        const a = await this.call(vehicle, signal, deadline, (t) => this.api().attributes(t, unit, signal));
        ctx.logger.info(
          { vehicle_id: vehicle.vehicle_id, make: a.make, model: a.model, year: a.year },
          'smartcar vehicle found',
        );
      }
      const incapable = new Set<string>();
      const readPaths = grantedReadPaths(permissions);
      let probe: BatchReading | undefined;
      if (readPaths.length > 0) {
        const { items, requestId } = await this.call(vehicle, signal, deadline, (t) =>
          this.api().batch(t, unit, readPaths, signal),
        );
        probe = stateFromBatch(items, new Date(), requestId);
        for (const f of probe.failures) {
          if (f.failure.kind === 'api' && f.failure.type === 'COMPATIBILITY') incapable.add(f.path);
        }
      }
      const capabilities = deriveCapabilities(permissions, incapable);
      if (capabilities.commands.length === 0) {
        await fail(
          `Smartcar grants no permission fleetgate can use for vehicle '${unit}' (granted: ${permissions.join(', ') || 'none'}). ` +
            'Reconnect it in Smartcar Connect with control_security and/or read_location, read_odometer, read_battery, read_fuel, read_security.',
        );
        return;
      }
      await ctx.sink.setupResult(vehicle.vehicle_id, { ok: true, capabilities });
      // The probe's readings are the vehicle's first state (reported once capabilities are set,
      // so the service keeps them); Smartcar pushes nothing to fleetgate by itself.
      if (probe && Object.keys(probe.state).length > 0) await ctx.sink.state(unit, probe.state);
      const asleep = probe?.failures.some((f) => online(f.failure) === false);
      if (probe) await this.reportConnectivity(unit, !asleep);
    } catch (e) {
      if (this.stopping.signal.aborted) return; // resumed by the next start
      await fail(this.setupFailureReason(e, unit));
    }
  }

  private setupFailureReason(e: unknown, unit: string): string {
    if (e instanceof CredentialsRevokedError || e instanceof CredentialsUnusableError) return e.message;
    if (!isSmartcarError(e)) {
      this.ctx?.logger.error({ err: e }, 'smartcar setup verification failed unexpectedly');
      return `fleetgate could not verify vehicle '${unit}' with Smartcar because of an internal error; see the server log.`;
    }
    const f: SmartcarFailure = e.failure;
    const rid = 'requestId' in f && f.requestId ? ` (Smartcar request id ${f.requestId})` : '';
    if (f.kind === 'api' && f.type === 'RESOURCE_NOT_FOUND') {
      return `Smartcar knows no vehicle '${unit}' connected to these credentials${rid}. Use the Smartcar vehicle id as telematics_unit_id.`;
    }
    if (f.kind === 'api' && f.type === 'PERMISSION') {
      return `Smartcar refused to describe vehicle '${unit}': ${f.description}${rid}`;
    }
    return `Smartcar could not verify vehicle '${unit}': ${describeFailure(f)}${rid}. Delete the vehicle and add it again once Smartcar answers.`;
  }

  private context(): AdapterContext {
    if (!this.ctx) throw new Error('SmartcarAdapter used before start()');
    return this.ctx;
  }

  private api(): SmartcarClient {
    if (!this.client) throw new Error('SmartcarAdapter used before start()');
    return this.client;
  }

  private tokenManager(): TokenManager {
    if (!this.tokens) throw new Error('SmartcarAdapter used before start()');
    return this.tokens;
  }
}

/** What a command learnt about the vehicle besides its outcome. */
interface Observation {
  failure?: SmartcarFailure;
}

/** Whether a failure says the vehicle is offline (false); undefined when it says nothing about it. */
function online(failure: SmartcarFailure | undefined): boolean | undefined {
  if (failure?.kind !== 'api' || failure.type !== 'VEHICLE_STATE') return undefined;
  // Any other VEHICLE_STATE answer (door open, ignition on…) came from a reachable vehicle.
  return !(failure.code !== null && NO_CONNECTION_CODES.has(failure.code));
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = () => {
      clearTimeout(timer);
      reject(new SmartcarError({ kind: 'timeout', detail: 'waiting out a Smartcar rate limit' }));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', fail);
      resolve();
    }, ms);
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}
