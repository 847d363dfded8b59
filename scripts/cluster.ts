// `npm run cluster -- --instances N`: the production topology on this machine (docs/deploy.md).
// Starts a Mosquitto with the shipped configuration (deploy/mosquitto/) on a free port, a fresh
// database on a PostgreSQL server, and N fleetgate instances on free ports sharing both. When all
// are ready it prints ONE JSON line on stdout:
//   {"api": ["http://127.0.0.1:…", …], "mqtt_url": "mqtt://127.0.0.1:…", "database_url": "postgres://…"}
// With --amqp it also creates a virtual host of its own on a RabbitMQ (default the local one) and
// the instances publish events there ("amqp_url" in the JSON line); the vhost goes on exit.
// Progress and the instances' logs go to stderr. SIGINT/SIGTERM stops everything it started
// (instances first: they drain running commands) and drops the database unless --keep-database.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { redact } from '../src/config.js';
import { resolveAmqpUrls } from '../src/events/channels/amqp/amqp-channel.js';
import { RabbitmqManagement, seg } from '../src/events/channels/amqp/rabbitmq-management.js';
import { type FleetgateProcess, startFleetgateProcess } from './lib/fleetgate-process.js';
import { type MosquittoServer, startMosquittoServer } from './lib/mosquitto-server.js';

const USAGE = `usage: npm run cluster -- [--instances N] [--database-url postgres://…] [--keep-database]
                           [--amqp] [--amqp-server-url amqp://…]
                           [--command-timeout-ms MS] [--log-level LEVEL]

  --instances N        fleetgate instances to start (default 2, at most 16)
  --database-url URL   PostgreSQL server to create the cluster's database on
                       (default postgres://root@127.0.0.1:5432/test; its database is only
                       used to run CREATE DATABASE / DROP DATABASE)
  --keep-database      do not drop the database on exit
  --amqp               publish events to RabbitMQ: a fresh virtual host on --amqp-server-url
  --amqp-server-url    RabbitMQ with an administrator account and its management plugin
                       (default amqp://guest:guest@127.0.0.1:5672; API on port 15672)
  --command-timeout-ms passed to every instance (default: fleetgate's default)
  --log-level          the instances' log level (default info)
`;

const log = (line: string) => process.stderr.write(`cluster: ${line}\n`);

function options() {
  const { values } = parseArgs({
    options: {
      instances: { type: 'string', default: '2' },
      'database-url': { type: 'string', default: 'postgres://root@127.0.0.1:5432/test' },
      'keep-database': { type: 'boolean', default: false },
      amqp: { type: 'boolean', default: false },
      'amqp-server-url': { type: 'string', default: 'amqp://guest:guest@127.0.0.1:5672' },
      'command-timeout-ms': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stderr.write(USAGE);
    process.exit(0);
  }
  const instances = Number(values.instances);
  if (!Number.isInteger(instances) || instances < 1 || instances > 16) {
    process.stderr.write(`--instances: '${values.instances}' is not a whole number from 1 to 16\n${USAGE}`);
    process.exit(2);
  }
  return { ...values, instances };
}

/** Creates `fleetgate_cluster_<random>` on the server and returns its URL and how to drop it. */
async function createDatabase(serverUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `fleetgate_cluster_${randomBytes(5).toString('hex')}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 5_000 });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/** Creates the vhost `fleetgate_cluster_<random>` on the RabbitMQ and returns its URL and how to delete it. */
async function createVhost(serverUrl: string): Promise<{ url: string; remove: () => Promise<void> }> {
  const name = `fleetgate_cluster_${randomBytes(5).toString('hex')}`;
  const { managementUrl } = resolveAmqpUrls({
    amqpUrl: serverUrl,
    amqpPublicUrl: undefined,
    amqpManagementUrl: undefined,
  });
  const api = new RabbitmqManagement(managementUrl);
  const user = decodeURIComponent(new URL(serverUrl).username || 'guest');
  await api.put(`/vhosts/${seg(name)}`, {});
  await api.put(`/permissions/${seg(name)}/${seg(user)}`, { configure: '.*', write: '.*', read: '.*' });
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    remove: async () => {
      // The consumers' users outlive the vhost otherwise.
      const granted = (await api.get(`/vhosts/${seg(name)}/permissions`)) as Array<{ user: string }>;
      for (const g of granted) if (g.user !== user) await api.delete(`/users/${seg(g.user)}`);
      await api.delete(`/vhosts/${seg(name)}`);
    },
  };
}

async function main(): Promise<void> {
  const opts = options();
  let broker: MosquittoServer | undefined;
  let database: { url: string; drop: () => Promise<void> } | undefined;
  let vhost: { url: string; remove: () => Promise<void> } | undefined;
  const instances: FleetgateProcess[] = [];
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-cluster-'));

  let stopping: Promise<void> | undefined;
  const stop = (reason: string) => {
    stopping ??= (async () => {
      log(`stopping (${reason}): draining ${instances.length} instance(s)`);
      const codes = await Promise.all(instances.map((p) => p.stop()));
      log(`instances exited: ${codes.join(', ')}`);
      await broker?.close().catch((e: Error) => log(`stopping Mosquitto failed: ${e.message}`));
      await vhost?.remove().then(
        () => log('RabbitMQ virtual host deleted'),
        (e: Error) => log(`deleting the RabbitMQ virtual host failed: ${e.message}`),
      );
      if (database && !opts['keep-database']) {
        await database.drop().then(
          () => log('database dropped'),
          (e: Error) => log(`dropping the database failed: ${e.message}`),
        );
      } else if (database) {
        log(`database kept: ${redact(database.url)}`);
      }
      rmSync(dataDir, { recursive: true, force: true });
    })();
    return stopping;
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      void stop(signal).then(() => process.exit(0));
    });
  }

  try {
    broker = await startMosquittoServer({ detached: true });
    log(`Mosquitto ${broker.url} (dynamic security; fleetgate's account '${broker.adminUsername}')`);
    database = await createDatabase(opts['database-url']);
    log(`database ${redact(database.url)}`);
    const settings: Record<string, string | number> = {
      'database-url': database.url,
      'mqtt-url': broker.url,
      'mqtt-username': broker.adminUsername,
      'mqtt-password': broker.adminPassword,
      // Every instance must sign and seal with the same key (docs/deploy.md).
      'secret-key': randomBytes(32).toString('base64url'),
      'teltonika-port': 0,
      'data-dir': dataDir,
      'log-level': opts['log-level'],
    };
    if (opts['command-timeout-ms']) settings['command-timeout-ms'] = opts['command-timeout-ms'];
    if (opts.amqp) {
      vhost = await createVhost(opts['amqp-server-url']);
      settings['amqp-url'] = vhost.url;
      log(`RabbitMQ ${redact(vhost.url)}`);
    }
    const start = (i: number) =>
      startFleetgateProcess({ settings, instanceId: `fg-${i + 1}`, echo: process.stderr, detached: true }).then((p) => {
        instances.push(p);
        log(`instance fg-${i + 1} ready at ${p.url}`);
        void p.exited.then((code) => {
          if (!stopping) log(`instance fg-${i + 1} exited unexpectedly (${code})`);
        });
        return p;
      });
    // The first one migrates the empty database; the others start together.
    const first = await start(0);
    const rest = await Promise.all(Array.from({ length: opts.instances - 1 }, (_, i) => start(i + 1)));
    const api = [first, ...rest].map((p) => p.url);
    const amqp = vhost ? { amqp_url: vhost.url } : {};
    process.stdout.write(`${JSON.stringify({ api, mqtt_url: broker.url, database_url: database.url, ...amqp })}\n`);
    log('ready; Ctrl-C (SIGINT) or SIGTERM stops everything');
  } catch (e) {
    log(`start failed: ${e instanceof Error ? e.message : String(e)}`);
    await stop('start failed');
    process.exit(1);
  }
}

await main();
