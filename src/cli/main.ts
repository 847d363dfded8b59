import { Command, Option } from 'commander';
import { createApp } from '../app.js';
import { type Config, ConfigError, cliEnv, flagKey, loadConfig, nodeOptions, SETTINGS } from '../config.js';
import { COMMANDS, commandFromPath, commandToPath } from '../domain/commands.js';
import { createApiClient, SCOPES } from '../services/auth-service.js';
import { UserService } from '../services/user-service.js';
import { createStore } from '../store/registry.js';
import type { Store } from '../store/store.js';
import { ADAPTER_DEFINITIONS } from '../telematics/registry.js';
import { ApiCaller, CliError } from './api-caller.js';
import { missingServeFlags } from './node-flags.js';

type Flags = Partial<Record<string, string>>;

/** Adds every setting of config.ts as a flag, so `serve --help` lists them all. */
function withSettings(cmd: Command, only?: ReadonlyArray<keyof Config>): Command {
  for (const s of SETTINGS) {
    if (only && !(only as readonly string[]).includes(s.key)) continue;
    // A boolean flag alone means true (`--webhooks-allow-private-urls`).
    const long = s.kind === 'boolean' ? `${s.flag} [value]` : `${s.flag} <value>`;
    cmd.addOption(new Option(long, `${s.description} [env ${s.env}${s.default ? `, default ${s.default}` : ''}]`));
  }
  return cmd;
}

/** Maps commander's camelCase option names back to Config keys. */
function settingsFrom(opts: Record<string, unknown>): Flags {
  const flags: Flags = {};
  for (const s of SETTINGS) {
    const name = flagKey(s.flag);
    if (opts[name] !== undefined) flags[s.key] = String(opts[name]);
  }
  return flags;
}

/** Runs `fn` on the configured store, migrated, and closes it afterwards. */
async function withStore(opts: Record<string, unknown>, fn: (store: Store) => Promise<void>): Promise<void> {
  const config = loadOrExit(settingsFrom(opts));
  const store = await createStore({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    sqliteWalLimitMb: config.sqliteWalLimitMb,
  });
  try {
    await store.migrate();
    await fn(store);
  } finally {
    await store.close();
  }
}

function fail(message: string): never {
  process.stderr.write(`fleetgate: ${message}\n`);
  process.exit(1);
}

function loadOrExit(flags: Flags): Readonly<Config> {
  try {
    return loadConfig(flags);
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  }
}

const program = new Command('fleetgate')
  .description('fleetgate — self-hostable Vehicle Commands API for shared-mobility fleets')
  .showHelpAfterError();

withSettings(
  program.command('serve').description('Run the API (SQLite + embedded MQTT broker unless configured otherwise)'),
).action(async (opts: Record<string, unknown>) => {
  const config = loadOrExit(settingsFrom(opts));
  const app = await createApp(config).catch((e: Error) => fail(`cannot start: ${e.message}`));
  const out = process.stdout;
  out.write(`\nfleetgate is running (instance ${config.instanceId})\n`);
  out.write(`  API          ${app.url}   docs: ${app.url}/docs   OpenAPI: ${app.url}/openapi.json\n`);
  out.write(`  MQTT broker  ${app.mqttUrl}${config.mqttUrl ? ' (external)' : ' (embedded)'}\n`);
  for (const adapter of app.adapters.values()) {
    if (adapter.endpoint) out.write(`  ${adapter.brand.padEnd(12)} ${adapter.endpoint}\n`);
  }
  out.write(`  console      ${app.url}/console\n`);
  out.write(`  database     ${config.databaseUrl ? 'PostgreSQL' : `SQLite in ${config.dataDir}`}\n\n`);
  out.write('Next steps (see README.md "Quick start"):\n');
  out.write(
    `  1. npx fleetgate clients create --fleet my-fleet --scope vehicles --scope vehicle-commands --json${config.databaseUrl ? ' --database-url <url>' : ` --data-dir ${config.dataDir}`}\n`,
  );
  out.write(`  2. curl -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials ${app.url}/auth/oauth/token\n`);
  out.write(
    `  3. add a vehicle: POST ${app.url}/vehicles {"telematics_brand":"FLEETGATE","telematics_unit_id":"unit-1","vehicle_model_id":"fleetgate-car-v1","password":"<12+ chars>"}\n`,
  );
  out.write(
    `  4. npx fleetgate simulate --mqtt-url ${app.mqttUrl} --unit unit-1 --password <same> --model fleetgate-car-v1\n`,
  );
  out.write(
    `  5. curl -X POST ${app.url}/vehicles/<vehicle_id>/commands/unlock-central-lock -H 'Authorization: Bearer <access_token>'\n\n`,
  );
  const missing = missingServeFlags(process.execArgv, nodeOptions());
  if (missing.length > 0) {
    app.logger.info({ missing }, 'node was started without the flags fleetgate serve runs best with (docs/deploy.md)');
  }
  let stopping = false;
  let forced = false;
  const stop = async (signal: string) => {
    if (stopping) {
      // A second signal while draining: end running commands now, each as outcome unknown.
      if (!forced) {
        forced = true;
        app.logger.warn({ signal, running: app.commands.running }, 'stopping now: ending running commands');
        app.commands.abortAll();
      }
      return;
    }
    stopping = true;
    app.logger.info({ signal }, 'stopping: draining running commands (a second signal ends them now)');
    const since = performance.now();
    await app.stop();
    app.logger.info({ ms: Math.round(performance.now() - since) }, 'stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
});

const clients = program.command('clients').description('Manage API clients');
withSettings(
  clients
    .command('create')
    .description('Create an API client of a fleet; prints its secret once')
    .requiredOption('--fleet <fleet_id>', 'the fleet the client belongs to')
    .option('--scope <scope...>', `scopes (${SCOPES.join(', ')}); repeat or list`, [])
    .option('--name <name>', 'a name for the client')
    .option('--json', 'print {"client_id", "client_secret"} as JSON on the last line'),
  ['dataDir', 'databaseUrl', 'logLevel'],
).action(async (opts: Record<string, unknown>) => {
  await withStore(opts, async (store) => {
    const scopes = (opts.scope as string[]).flatMap((s) => s.split(/[ ,]+/)).filter(Boolean);
    const created = await createApiClient(store, {
      fleetId: String(opts.fleet),
      scopes,
      name: opts.name as string | undefined,
    }).catch((e: Error) => fail(e.message));
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({ client_id: created.client_id, client_secret: created.client_secret, fleet_id: created.fleet_id, scopes: created.scopes })}\n`,
      );
    } else {
      process.stdout.write(
        `client_id:     ${created.client_id}\nclient_secret: ${created.client_secret}\nfleet:         ${created.fleet_id}\nscopes:        ${created.scopes.join(' ')}\n\nThe secret is shown only now; fleetgate keeps only its hash.\n`,
      );
    }
  });
});

withSettings(
  clients
    .command('list')
    .description('List API clients (never their secrets)')
    .option('--fleet <fleet_id>', 'only this fleet')
    .option('--json', 'one JSON object per line'),
  ['dataDir', 'databaseUrl', 'logLevel'],
).action(async (opts: Record<string, unknown>) => {
  await withStore(opts, async (store) => {
    const list = await store.listClients(opts.fleet as string | undefined);
    for (const { secret_hash: _hidden, ...c } of list) {
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(c)}\n`
          : `${c.client_id}  ${c.fleet_id}  ${c.scopes.join(' ')}  ${c.created_at}  ${c.name}\n`,
      );
    }
    if (!opts.json) process.stderr.write(`${list.length} client(s)\n`);
  });
});

withSettings(
  clients
    .command('delete')
    .argument('<client_id>')
    .description('Delete an API client: its tokens are refused within a minute'),
  ['dataDir', 'databaseUrl', 'logLevel'],
).action(async (clientId: string, opts: Record<string, unknown>) => {
  await withStore(opts, async (store) => {
    if (!(await store.deleteClient(clientId))) fail(`no API client '${clientId}'`);
    process.stdout.write(`deleted ${clientId}\n`);
  });
});

const users = program.command('users').description('Manage console users (people who sign in at /console)');
withSettings(
  users
    .command('create')
    .description('Create a console user of a fleet')
    .requiredOption('--fleet <fleet_id>', 'the fleet the user belongs to')
    .requiredOption('--email <email>', 'what the user signs in with')
    .requiredOption('--role <role>', 'viewer (sees everything), operator (also sends commands) or admin (everything)')
    .requiredOption('--password <pw>', 'at least 10 characters; stored as a scrypt hash')
    .option('--json', 'print the user as JSON'),
  ['dataDir', 'databaseUrl', 'logLevel'],
).action(async (opts: Record<string, unknown>) => {
  await withStore(opts, async (store) => {
    const user = await new UserService(store, { sessionTtlMinutes: 1 })
      .create({
        fleetId: String(opts.fleet),
        email: String(opts.email),
        role: String(opts.role),
        password: String(opts.password),
      })
      .catch((e: Error) => fail(e.message));
    process.stdout.write(
      opts.json
        ? `${JSON.stringify(user)}\n`
        : `created ${user.role} ${user.email} of fleet ${user.fleet_id} (${user.user_id}); sign in at /console\n`,
    );
  });
});

withSettings(
  users
    .command('list')
    .description('List console users (never their passwords)')
    .option('--fleet <fleet_id>', 'only this fleet')
    .option('--json', 'one JSON object per line'),
  ['dataDir', 'databaseUrl', 'logLevel'],
).action(async (opts: Record<string, unknown>) => {
  await withStore(opts, async (store) => {
    const list = await new UserService(store, { sessionTtlMinutes: 1 }).list(opts.fleet as string | undefined);
    for (const u of list) {
      process.stdout.write(
        opts.json ? `${JSON.stringify(u)}\n` : `${u.user_id}  ${u.fleet_id}  ${u.role.padEnd(8)}  ${u.email}\n`,
      );
    }
    if (!opts.json) process.stderr.write(`${list.length} user(s)\n`);
  });
});

withSettings(
  users.command('delete').argument('<email>').description('Delete a console user; its sessions end at once'),
  ['dataDir', 'databaseUrl', 'logLevel'],
).action(async (email: string, opts: Record<string, unknown>) => {
  await withStore(opts, async (store) => {
    if (!(await new UserService(store, { sessionTtlMinutes: 1 }).deleteByEmail(email))) fail(`no user '${email}'`);
    process.stdout.write(`deleted ${email}\n`);
  });
});

const simulators = ADAPTER_DEFINITIONS.flatMap((d) => (d.simulator ? [d.simulator] : []));
const simulate = program
  .command('simulate')
  .description(`Run simulated units or vendor fakes: ${simulators.map((s) => s.summary).join('; ')}`);
for (const option of simulators.flatMap((s) => s.options)) {
  simulate.option(option.flags, option.description, option.default);
}
simulate
  .option('--unit <id>', 'telematics unit id of one unit')
  .option('--password <pw>', 'its password, as given when the vehicle was added')
  .option('--model <vehicle_model_id>', 'its model, e.g. fleetgate-car-v1')
  .option('--units-file <file>', 'JSON array of {"unitId","password","model"} to run many units')
  .option('--report-interval-ms <ms>', 'periodic state report interval', '30000')
  .option('--answer-delay-ms <ms>', 'fixed answer delay (default: realistic 300–800 ms)')
  .option('--no-drive', 'vehicles stand still')
  .option('--duration-s <s>', 'stop after this many seconds')
  .action(async (opts: Record<string, string | boolean | undefined>) => {
    const controller = new AbortController();
    process.on('SIGINT', () => controller.abort());
    process.on('SIGTERM', () => controller.abort());
    const simulator = simulators.find((s) => opts[s.selectedBy] !== undefined && opts[s.selectedBy] !== false);
    if (!simulator) fail(`give one of: ${simulators.map((s) => s.summary).join('; ')}`);
    process.exitCode = await simulator.run(opts, {
      out: process.stdout,
      // Control words from a terminal or a pipe switch units offline, silent, failing… (README "Simulator").
      input: process.stdin,
      signal: controller.signal,
      fail,
    });
    // A pipe that is still open would keep the process alive after the simulation ended.
    process.stdin.destroy();
  });

// HTTP commands for operators: they call a running fleetgate with client credentials.
function withApi(cmd: Command): Command {
  return cmd
    .option('--api-url <url>', 'fleetgate API base URL [env FLEETGATE_API_URL]')
    .option('--client-id <id>', 'API client id [env FLEETGATE_CLIENT_ID]')
    .option('--client-secret <secret>', 'API client secret [env FLEETGATE_CLIENT_SECRET]')
    .option('--no-token-cache', 'fetch a new token instead of reusing the cached one (~/.cache/fleetgate/tokens)');
}

function callerFrom(opts: Record<string, unknown>): ApiCaller {
  const env = cliEnv();
  const url = (opts.apiUrl as string | undefined) ?? env.apiUrl ?? 'http://127.0.0.1:3000';
  const id = (opts.clientId as string | undefined) ?? env.clientId;
  const secret = (opts.clientSecret as string | undefined) ?? env.clientSecret;
  if (!id || !secret) fail('give --client-id and --client-secret (or FLEETGATE_CLIENT_ID / FLEETGATE_CLIENT_SECRET)');
  return new ApiCaller(url, id, secret, opts.tokenCache === false ? undefined : env.tokenCacheDir);
}

const vehicles = program.command('vehicles').description('Manage vehicles through the API');
withApi(
  vehicles
    .command('add')
    .description('Add a vehicle')
    .requiredOption('--brand <brand>', 'telematics brand, e.g. FLEETGATE')
    .requiredOption('--unit <id>', 'telematics unit id')
    .option('--model <vehicle_model_id>', 'vehicle model id')
    .option('--password <pw>', 'unit password (FLEETGATE)')
    .option('--credentials-id <id>', 'credentials (SMARTCAR)')
    .option('--tag <tag...>', 'tags'),
).action(async (opts: Record<string, unknown>) => {
  const body: Record<string, unknown> = { telematics_brand: opts.brand, telematics_unit_id: opts.unit };
  if (opts.model) body.vehicle_model_id = opts.model;
  if (opts.password) body.password = opts.password;
  if (opts.credentialsId) body.credentials_id = opts.credentialsId;
  if (opts.tag) body.tags = opts.tag;
  await callerFrom(opts).print('POST', '/vehicles', body);
});
withApi(vehicles.command('list').description('List vehicles').option('--limit <n>', 'page size', '50')).action(
  async (opts: Record<string, unknown>) => {
    await callerFrom(opts).print('GET', `/vehicles?limit=${Number(opts.limit)}`);
  },
);
withApi(vehicles.command('get').argument('<vehicle_id>').description('Show a vehicle')).action(
  async (id: string, opts: Record<string, unknown>) => {
    await callerFrom(opts).print('GET', `/vehicles/${encodeURIComponent(id)}`);
  },
);
withApi(
  program
    .command('command')
    .argument('<vehicle_id>')
    .argument('<command>', 'e.g. unlock-central-lock')
    .option('--idempotency-key <key>', 'Idempotency-Key header')
    .description('Send a command to a vehicle and print the answer'),
).action(async (id: string, command: string, opts: Record<string, unknown>) => {
  if (!commandFromPath(command)) {
    // A capability name (`UNLOCK_CENTRAL_LOCK`, as in `capabilities.commands`) names the command too.
    const named = COMMANDS.find((c) => c === command.toUpperCase().replaceAll('-', '_'));
    fail(
      named
        ? `'${command}' is a capability name; the command is '${commandToPath(named)}': fleetgate command ${id} ${commandToPath(named)}`
        : `unknown command '${command}'; one of: ${COMMANDS.map(commandToPath).join(', ')}`,
    );
  }
  const headers: Record<string, string> = opts.idempotencyKey ? { 'Idempotency-Key': String(opts.idempotencyKey) } : {};
  await callerFrom(opts).print(
    'POST',
    `/vehicles/${encodeURIComponent(id)}/commands/${encodeURIComponent(command)}`,
    undefined,
    headers,
  );
});

const webhooks = program.command('webhooks').description('Manage webhook subscriptions of the fleet (scope events)');
withApi(
  webhooks
    .command('create')
    .description('Subscribe a URL to events; prints the signing secret once')
    .requiredOption('--url <url>', 'where to POST each event')
    .option('--event-type <type...>', 'event types to deliver (default: all)'),
).action(async (opts: Record<string, unknown>) => {
  const body: Record<string, unknown> = { url: opts.url };
  if (opts.eventType) body.event_types = opts.eventType;
  await callerFrom(opts).print('POST', '/webhooks', body);
});
withApi(webhooks.command('list').description("List the fleet's webhook subscriptions")).action(
  async (opts: Record<string, unknown>) => {
    await callerFrom(opts).print('GET', '/webhooks?limit=500');
  },
);
withApi(webhooks.command('delete').argument('<webhook_id>').description('Delete a webhook subscription')).action(
  async (id: string, opts: Record<string, unknown>) => {
    await callerFrom(opts).print('DELETE', `/webhooks/${encodeURIComponent(id)}`);
  },
);

const events = program.command('events').description("Read the fleet's events (scope events.ro)");
withApi(
  events
    .command('tail')
    .description('Print events as they happen, one JSON envelope per line (follows GET /events/stream)')
    .option('--after <cursor>', 'start after this cursor (a next_cursor or SSE id)')
    .option('--from-start', 'start with the oldest retained event')
    .option('--types <types>', 'comma-separated event types')
    .option('--vehicle-id <id>', "only this vehicle's events"),
).action(async (opts: Record<string, unknown>) => {
  const caller = callerFrom(opts);
  const filter = new URLSearchParams();
  if (opts.types) filter.set('types', String(opts.types));
  if (opts.vehicleId) filter.set('vehicle_id', String(opts.vehicleId));
  let after = opts.after as string | undefined;
  const print = (data: string) => process.stdout.write(`${data}\n`);
  if (opts.fromStart && after === undefined) {
    // The backlog through pull pages, then the stream from where they end.
    for (;;) {
      const q = new URLSearchParams(filter);
      q.set('limit', '1000');
      if (after) q.set('after', after);
      const res = await caller.call('GET', `/events?${q}`);
      const page = res.body as { items: unknown[]; next_cursor: string; detail?: string };
      if (res.status !== 200) fail(`GET /events answered ${res.status}: ${page?.detail ?? ''}`);
      for (const e of page.items) print(JSON.stringify(e));
      after = page.next_cursor;
      if (page.items.length === 0) break;
    }
  }
  const controller = new AbortController();
  process.on('SIGINT', () => controller.abort());
  process.on('SIGTERM', () => controller.abort());
  const query = filter.size > 0 ? `?${filter}` : '';
  await caller
    .follow(`/events/stream${query}`, after, (_id, data) => print(data), controller.signal)
    .catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)));
});

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // Problems and connection errors are one readable line; a stack trace only for real bugs.
  if (e instanceof CliError) fail(e.message);
  throw e;
}
