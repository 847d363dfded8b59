import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import type { AdapterSetting } from './telematics/adapter.js';
import { ADAPTER_DEFINITIONS } from './telematics/registry.js';

/**
 * fleetgate's settings. This module is the only one that reads process.env: every setting has a
 * `FLEETGATE_*` variable and a CLI flag; the config is validated once, with every error reported
 * together, then frozen. docs/configuration.md lists the same table. Each telematics adapter
 * declares its own settings in its definition (telematics/<brand>/definition.ts); they land in
 * `adapters[brand]`.
 */
export interface Config {
  /** HTTP listen port; 0 picks a free one. */
  port: number;
  host: string;
  /** Absolute base URL under which clients reach this API, for `type_documentation` links. */
  publicUrl: string | undefined;
  dataDir: string;
  /** postgres://… selects the PostgreSQL engine; unset means SQLite in dataDir. */
  databaseUrl: string | undefined;
  /** SQLite's write-ahead log file is kept near this size under load and emptied when idle (MB). */
  sqliteWalLimitMb: number;
  /** mqtt://… selects an external broker; unset starts the embedded one on mqttPort. */
  mqttUrl: string | undefined;
  mqttPort: number;
  mqttHost: string;
  /** fleetgate's own broker account on an external broker. */
  mqttUsername: string | undefined;
  mqttPassword: string | undefined;
  /**
   * How units are provisioned in an external broker: through Mosquitto's dynamic security
   * plugin, or `none` when the operator's broker authenticates units by other means.
   */
  mqttProvisioning: MqttProvisioning;
  /** Master secret for token signing and encryption at rest; generated into dataDir when unset. */
  secretKey: string | undefined;
  commandTimeoutMs: number;
  /** A request's headers and body must arrive within this (slow or stalled bodies: 408). */
  requestBodyTimeoutMs: number;
  /** Longest a request may take from arrival to answer (503 beyond); exceeds the command budget. */
  requestTimeoutMs: number;
  /** Addresses or CIDR ranges of reverse proxies whose forwarding headers are trusted; none when empty. */
  trustedProxies: string[];
  tokenTtlSeconds: number;
  /** When set, `/metrics` answers only `Authorization: Bearer <metricsToken>`. */
  metricsToken: string | undefined;
  /** `host:port` of a listener serving only `/metrics`; the API then does not serve it. */
  metricsAddress: string | undefined;
  /** Requests per minute per API client. */
  rateLimitPerMinute: number;
  /** A vehicle whose unit has not connected within this time ends setup FAILED. */
  setupTimeoutSeconds: number;
  /** Events older than this are deleted (docs/events.md). */
  eventRetentionHours: number;
  /** A webhook delivery is retried this long; a subscription failing that long is disabled. */
  webhooksRetrySeconds: number;
  /** How long a webhook receiver may take to answer one delivery. */
  webhooksTimeoutMs: number;
  /**
   * How long the instance delivering a webhook subscription holds it without renewing: after a
   * crash, another instance continues the subscription once this has passed.
   */
  webhooksLeaseMs: number;
  /** Allow webhook URLs on private, loopback or link-local addresses (SSRF guard off). */
  webhooksAllowPrivateUrls: boolean;
  logLevel: string;
  instanceId: string;
  /** Settings (by key, e.g. `port`, `teltonikaPort`) that took their default: neither flag nor environment set them. */
  defaulted: readonly string[];
  /** Each adapter's own settings by brand, named as its definition names them (e.g. `TELTONIKA.port`). */
  adapters: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** mqtt.js logs every packet when the `DEBUG` variable asks for it (it costs even when off). */
  mqttPacketLog: boolean;
  /**
   * amqp://… : publish every event to this RabbitMQ (its path is fleetgate's virtual host) and
   * offer AMQP event consumers; unset = no AMQP.
   */
  amqpUrl: string | undefined;
  /** Where event consumers reach RabbitMQ (`amqp[s]://host:port`); default: the host of amqpUrl. */
  amqpPublicUrl: string | undefined;
  /** RabbitMQ's management HTTP API; default: http://<amqpUrl's host>:15672 with amqpUrl's account. */
  amqpManagementUrl: string | undefined;
  /** How long a console sign-in lasts. */
  consoleSessionMinutes: number;
  /** Map tiles of the console (`{z}/{x}/{y}` template); unset = vehicles on a plain background. */
  consoleTileUrl: string | undefined;
  consoleTileAttribution: string | undefined;
}

export const MQTT_PROVISIONING = ['mosquitto-dynsec', 'none'] as const;
export type MqttProvisioning = (typeof MQTT_PROVISIONING)[number];

type Source = Record<string, string | undefined>;

export interface Setting {
  /** The flag's camelCase name: a Config key, or an adapter setting's flag key (e.g. `teltonikaPort`). */
  key: string;
  env: string;
  flag: string;
  kind: 'int' | 'string' | 'url' | 'boolean';
  default?: string;
  min?: number;
  max?: number;
  protocols?: string[];
  description: string;
  /** For an adapter's setting: its brand and its name in the adapter's settings. */
  adapter?: { brand: string; name: string };
}

const CORE_SETTINGS: readonly Setting[] = [
  {
    key: 'port',
    env: 'FLEETGATE_PORT',
    flag: '--port',
    kind: 'int',
    default: '3000',
    min: 0,
    max: 65535,
    description: 'HTTP port (0 = any free port).',
  },
  {
    key: 'host',
    env: 'FLEETGATE_HOST',
    flag: '--host',
    kind: 'string',
    default: '127.0.0.1',
    description:
      'Listen address of the HTTP API and the Teltonika port. The default serves this machine only; `0.0.0.0` serves every network.',
  },
  {
    key: 'publicUrl',
    env: 'FLEETGATE_PUBLIC_URL',
    flag: '--public-url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    description:
      "Base URL clients use to reach the API (e.g. `https://fleet.example.com`), for the absolute `type_documentation` links of problems. Default: this instance's listen address (loopback when listening on `0.0.0.0`); never taken from a request's Host header.",
  },
  {
    key: 'dataDir',
    env: 'FLEETGATE_DATA_DIR',
    flag: '--data-dir',
    kind: 'string',
    default: './data',
    description: 'Directory of the SQLite database and the generated secret key.',
  },
  {
    key: 'databaseUrl',
    env: 'FLEETGATE_DATABASE_URL',
    flag: '--database-url',
    kind: 'url',
    protocols: ['postgres:', 'postgresql:'],
    description: 'PostgreSQL connection URL; unset = embedded SQLite in the data dir.',
  },
  {
    key: 'sqliteWalLimitMb',
    env: 'FLEETGATE_SQLITE_WAL_LIMIT_MB',
    flag: '--sqlite-wal-limit-mb',
    kind: 'int',
    default: '64',
    min: 1,
    max: 65_536,
    description:
      'SQLite only: the size its write-ahead log file (`fleetgate.db-wal`) is kept near. Past it, the log is copied into the database and started over, and the file cut back to this size; once writes pause for a second or two, the file is emptied. Under heavy write load the file can outgrow the limit by what is written in a fraction of a second (by at most the limit again plus that); each start-over holds writes back for a few to tens of milliseconds.',
  },
  {
    key: 'mqttUrl',
    env: 'FLEETGATE_MQTT_URL',
    flag: '--mqtt-url',
    kind: 'url',
    protocols: ['mqtt:', 'mqtts:', 'tcp:'],
    description: 'External MQTT broker; unset = embedded broker on --mqtt-port.',
  },
  {
    key: 'mqttPort',
    env: 'FLEETGATE_MQTT_PORT',
    flag: '--mqtt-port',
    kind: 'int',
    default: '1883',
    min: 0,
    max: 65535,
    description: 'Embedded MQTT broker port (0 = any free port).',
  },
  {
    key: 'mqttHost',
    env: 'FLEETGATE_MQTT_HOST',
    flag: '--mqtt-host',
    kind: 'string',
    default: '127.0.0.1',
    description: 'Embedded MQTT broker listen address; `0.0.0.0` lets units on other machines connect.',
  },
  {
    key: 'mqttUsername',
    env: 'FLEETGATE_MQTT_USERNAME',
    flag: '--mqtt-username',
    kind: 'string',
    description: "fleetgate's own account on an external broker.",
  },
  {
    key: 'mqttPassword',
    env: 'FLEETGATE_MQTT_PASSWORD',
    flag: '--mqtt-password',
    kind: 'string',
    description: 'Password of that account.',
  },
  {
    key: 'mqttProvisioning',
    env: 'FLEETGATE_MQTT_PROVISIONING',
    flag: '--mqtt-provisioning',
    kind: 'string',
    default: 'mosquitto-dynsec',
    description:
      "With --mqtt-url: how units' credentials and topic permissions get into the broker. `mosquitto-dynsec` = fleetgate provisions each unit through Mosquitto's dynamic security plugin (its account must be a dynsec admin); `none` = the operator's broker authenticates units by other means (e.g. EMQX HTTP auth), see docs/deploy.md.",
  },
  {
    key: 'secretKey',
    env: 'FLEETGATE_SECRET_KEY',
    flag: '--secret-key',
    kind: 'string',
    description:
      'Master secret (≥ 32 characters) for token signing and encryption at rest. Required with several instances; generated into <data-dir>/secret.key when unset.',
  },
  {
    key: 'commandTimeoutMs',
    env: 'FLEETGATE_COMMAND_TIMEOUT_MS',
    flag: '--command-timeout-ms',
    kind: 'int',
    default: '15000',
    min: 100,
    max: 120000,
    description: 'Time budget of one command, from request to answer.',
  },
  {
    key: 'requestBodyTimeoutMs',
    env: 'FLEETGATE_REQUEST_BODY_TIMEOUT_MS',
    flag: '--request-body-timeout-ms',
    kind: 'int',
    default: '10000',
    min: 100,
    max: 600000,
    description:
      "A request's headers and body must have arrived within this time; beyond it the answer is 408 `request-timeout` and the connection is closed (a client that never sends its body cannot hold a connection).",
  },
  {
    key: 'requestTimeoutMs',
    env: 'FLEETGATE_REQUEST_TIMEOUT_MS',
    flag: '--request-timeout-ms',
    kind: 'int',
    default: '60000',
    min: 1000,
    max: 3_600_000,
    description:
      'Longest a request may take from its arrival to its answer; beyond it the answer is 503 `service-unavailable` and the connection is closed. Must exceed --command-timeout-ms by at least 5 s, so commands always answer by their own budget; by default 60 s or the command timeout + 15 s, whichever is longer.',
  },
  {
    key: 'trustedProxies',
    env: 'FLEETGATE_TRUSTED_PROXIES',
    flag: '--trusted-proxies',
    kind: 'string',
    description:
      'Comma-separated addresses or CIDR ranges (e.g. `10.0.0.5,192.168.0.0/16`) of reverse proxies in front of fleetgate. Only from these are `X-Forwarded-For`, `-Proto` and `-Host` believed (client address for per-address limits and logs). Unset: none, the connecting address is the client.',
  },
  {
    key: 'tokenTtlSeconds',
    env: 'FLEETGATE_TOKEN_TTL_SECONDS',
    flag: '--token-ttl-seconds',
    kind: 'int',
    default: '900',
    min: 30,
    max: 86400,
    description: 'Lifetime of access tokens.',
  },
  {
    key: 'metricsToken',
    env: 'FLEETGATE_METRICS_TOKEN',
    flag: '--metrics-token',
    kind: 'string',
    description:
      'When set, `/metrics` answers only requests with `Authorization: Bearer <token>` (Prometheus: `authorization: {credentials: <token>}`). Default: unprotected.',
  },
  {
    key: 'metricsAddress',
    env: 'FLEETGATE_METRICS_ADDRESS',
    flag: '--metrics-address',
    kind: 'string',
    description:
      'Serve `/metrics` on its own `host:port` (e.g. `10.0.0.5:9464`, port 0 = any free port) instead of on the API port. Default: on the API port.',
  },
  {
    key: 'rateLimitPerMinute',
    env: 'FLEETGATE_RATE_LIMIT_PER_MINUTE',
    flag: '--rate-limit-per-minute',
    kind: 'int',
    default: '6000',
    min: 1,
    max: 10_000_000,
    description: 'Requests per minute per API client (429 beyond).',
  },
  {
    key: 'setupTimeoutSeconds',
    env: 'FLEETGATE_SETUP_TIMEOUT_SECONDS',
    flag: '--setup-timeout-seconds',
    kind: 'int',
    default: '604800',
    min: 1,
    max: 31_536_000,
    description: 'A unit that has not connected this long after its vehicle was added ends setup FAILED.',
  },
  {
    key: 'eventRetentionHours',
    env: 'FLEETGATE_EVENT_RETENTION_HOURS',
    flag: '--event-retention-hours',
    kind: 'int',
    default: '72',
    min: 1,
    max: 8760,
    description: 'How long events are kept for pull, stream and channels to read; older ones are deleted.',
  },
  {
    key: 'webhooksRetrySeconds',
    env: 'FLEETGATE_WEBHOOKS_RETRY_SECONDS',
    flag: '--webhooks-retry-seconds',
    kind: 'int',
    default: '86400',
    min: 1,
    max: 604_800,
    description:
      'How long a failing webhook delivery is retried (exponential backoff with jitter); a subscription failing this long is disabled.',
  },
  {
    key: 'webhooksTimeoutMs',
    env: 'FLEETGATE_WEBHOOKS_TIMEOUT_MS',
    flag: '--webhooks-timeout-ms',
    kind: 'int',
    default: '10000',
    min: 100,
    max: 60_000,
    description: 'How long a webhook receiver may take to answer a delivery before it counts as failed.',
  },
  {
    key: 'webhooksLeaseMs',
    env: 'FLEETGATE_WEBHOOKS_LEASE_MS',
    flag: '--webhooks-lease-ms',
    kind: 'int',
    default: '15000',
    min: 1100,
    max: 3_600_000,
    description:
      'With several instances: each webhook subscription is delivered by one instance at a time, which holds its lease this long and renews it before every delivery. When that instance dies, another continues the subscription within this time (+ 1 s) after its last renewal. Must exceed --webhooks-timeout-ms by at least 1000 ms; by default 15 s or the timeout + 5 s, whichever is longer.',
  },
  {
    key: 'webhooksAllowPrivateUrls',
    env: 'FLEETGATE_WEBHOOKS_ALLOW_PRIVATE_URLS',
    flag: '--webhooks-allow-private-urls',
    kind: 'boolean',
    default: 'false',
    description:
      'Allow webhook URLs that are or resolve to private, loopback or link-local addresses (refused by default against SSRF).',
  },
  {
    key: 'logLevel',
    env: 'FLEETGATE_LOG_LEVEL',
    flag: '--log-level',
    kind: 'string',
    default: 'info',
    description: 'fatal, error, warn, info, debug, trace or silent.',
  },
  {
    key: 'instanceId',
    env: 'FLEETGATE_INSTANCE_ID',
    flag: '--instance-id',
    kind: 'string',
    description: 'Name of this instance in command records and logs. Default: random.',
  },
  {
    key: 'consoleSessionMinutes',
    env: 'FLEETGATE_CONSOLE_SESSION_MINUTES',
    flag: '--console-session-minutes',
    kind: 'int',
    default: '720',
    min: 1,
    max: 43_200,
    description: 'Lifetime of a console sign-in (its cookie expires with it).',
  },
  {
    key: 'consoleTileUrl',
    env: 'FLEETGATE_CONSOLE_TILE_URL',
    flag: '--console-tile-url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    description:
      "Map tile URL template of the console's map, e.g. `https://tile.openstreetmap.org/{z}/{x}/{y}.png` (mind the tile server's usage policy). Unset = vehicles on a plain background, no requests leave the browser.",
  },
  {
    key: 'consoleTileAttribution',
    env: 'FLEETGATE_CONSOLE_TILE_ATTRIBUTION',
    flag: '--console-tile-attribution',
    kind: 'string',
    description: 'Attribution shown on the map for those tiles, e.g. `© OpenStreetMap contributors`.',
  },
  {
    key: 'amqpUrl',
    env: 'FLEETGATE_AMQP_URL',
    flag: '--amqp-url',
    kind: 'url',
    protocols: ['amqp:', 'amqps:'],
    description:
      "RabbitMQ to publish every event to, with publisher confirms, e.g. `amqp://fleetgate:pw@rabbit:5672/fleetgate` (the path is fleetgate's virtual host; the account needs the `administrator` tag to manage event consumers). Unset = no AMQP (`/event-consumers` answers 503).",
  },
  {
    key: 'amqpPublicUrl',
    env: 'FLEETGATE_AMQP_PUBLIC_URL',
    flag: '--amqp-public-url',
    kind: 'url',
    protocols: ['amqp:', 'amqps:'],
    description:
      'Scheme, host and port that event consumers connect to, e.g. `amqps://events.example.com:5671`; goes into the `amqp_url` returned by `POST /event-consumers`. Default: the host and port of --amqp-url.',
  },
  {
    key: 'amqpManagementUrl',
    env: 'FLEETGATE_AMQP_MANAGEMENT_URL',
    flag: '--amqp-management-url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    description:
      "RabbitMQ's management HTTP API, through which fleetgate creates each event consumer's user, permissions and queues. Default: `http://<--amqp-url host>:15672` with --amqp-url's account.",
  },
];

/** `--teltonika-port` → `teltonikaPort`. */
export function flagKey(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

/** `--teltonika-port` → `FLEETGATE_TELTONIKA_PORT`. */
function flagEnv(flag: string): string {
  return `FLEETGATE_${flag.replace(/^--/, '').replaceAll('-', '_').toUpperCase()}`;
}

function adapterSetting(brand: string, s: AdapterSetting): Setting {
  const { name, ...rest } = s;
  return { ...rest, key: flagKey(s.flag), env: flagEnv(s.flag), adapter: { brand, name } };
}

/** Every setting: fleetgate's own, then each adapter's from its definition. */
export const SETTINGS: readonly Setting[] = [
  ...CORE_SETTINGS,
  ...ADAPTER_DEFINITIONS.flatMap((d) => d.settings.map((s) => adapterSetting(d.brand, s))),
];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export class ConfigError extends Error {
  constructor(readonly errors: string[]) {
    super(`invalid configuration:\n  - ${errors.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Builds the config from flags (already parsed, keyed by Config key) over environment variables
 * over defaults. Throws ConfigError listing every invalid setting.
 */
export function loadConfig(
  flags: Partial<Record<string, string | number | undefined>> = {},
  env: Source = process.env,
): Readonly<Config> {
  const errors: string[] = [];
  const out: Record<string, unknown> = {};
  const defaulted: string[] = [];
  for (const s of SETTINGS) {
    const fromFlag = flags[s.key];
    if (fromFlag === undefined && env[s.env] === undefined) defaulted.push(s.key);
    const raw = fromFlag !== undefined ? String(fromFlag) : (env[s.env] ?? s.default);
    const origin = fromFlag !== undefined ? s.flag : `${s.env}`;
    if (raw === undefined || raw === '') {
      out[s.key] = undefined;
      continue;
    }
    if (s.kind === 'int') {
      const n = /^-?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
      if (!Number.isSafeInteger(n) || (s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max)) {
        errors.push(`${origin}: '${raw}' is not a whole number from ${s.min} to ${s.max}`);
        continue;
      }
      out[s.key] = n;
    } else if (s.kind === 'boolean') {
      const v = raw.trim().toLowerCase();
      if (!['true', 'false', '1', '0', 'yes', 'no'].includes(v)) {
        errors.push(`${origin}: '${raw}' is not true or false`);
        continue;
      }
      out[s.key] = ['true', '1', 'yes'].includes(v);
    } else if (s.kind === 'url') {
      let u: URL | undefined;
      try {
        u = new URL(raw);
      } catch {
        u = undefined;
      }
      if (!u || (s.protocols && !s.protocols.includes(u.protocol))) {
        errors.push(
          `${origin}: '${redact(raw)}' is not a URL starting with ${s.protocols?.map((p) => `${p}//`).join(' or ')}`,
        );
        continue;
      }
      out[s.key] = s.key === 'publicUrl' ? raw.replace(/\/+$/, '') : raw;
    } else {
      out[s.key] = raw;
    }
  }
  if (typeof out.logLevel === 'string' && !LOG_LEVELS.includes(out.logLevel)) {
    errors.push(`log level: '${out.logLevel}' is not one of ${LOG_LEVELS.join(', ')}`);
  }
  if (typeof out.secretKey === 'string' && out.secretKey.length < 32) {
    errors.push('secret key: must be at least 32 characters');
  }
  if (!(MQTT_PROVISIONING as readonly unknown[]).includes(out.mqttProvisioning)) {
    errors.push(`MQTT provisioning: '${out.mqttProvisioning}' is not one of ${MQTT_PROVISIONING.join(', ')}`);
  }
  if ((out.mqttUsername === undefined) !== (out.mqttPassword === undefined)) {
    errors.push('MQTT username and password must be set together');
  }
  if (typeof out.metricsAddress === 'string' && !parseHostPort(out.metricsAddress)) {
    errors.push(`metrics address: '${out.metricsAddress}' is not host:port with a port from 0 to 65535`);
  }
  if (typeof out.metricsToken === 'string' && out.metricsToken.length < 16) {
    errors.push('metrics token: must be at least 16 characters');
  }
  if (typeof out.consoleTileUrl === 'string' && !/\{z\}.*\{x\}.*\{y\}/.test(out.consoleTileUrl)) {
    errors.push('console tile URL: must hold {z}, {x} and {y}');
  }
  for (const rule of OUTLASTING) outlast(out, defaulted, errors, rule);
  const proxies = typeof out.trustedProxies === 'string' ? out.trustedProxies.split(',').map((p) => p.trim()) : [];
  for (const proxy of proxies.filter(Boolean)) {
    const [address, bits, extra] = proxy.split('/');
    const family = isIP(address ?? '');
    const maxBits = family === 6 ? 128 : 32;
    if (
      family === 0 ||
      extra !== undefined ||
      (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= maxBits))
    ) {
      errors.push(`trusted proxies: '${proxy}' is not an IP address or CIDR range`);
    }
  }
  out.trustedProxies = proxies.filter(Boolean);
  checkAmqp(out, errors);
  if (errors.length > 0) throw new ConfigError(errors);
  const adapters: Record<string, Record<string, unknown>> = {};
  for (const d of ADAPTER_DEFINITIONS) adapters[d.brand] = {};
  for (const s of SETTINGS) {
    if (!s.adapter) continue;
    adapters[s.adapter.brand]![s.adapter.name] = out[s.key];
    delete out[s.key];
  }
  for (const brand of Object.keys(adapters)) Object.freeze(adapters[brand]);
  out.adapters = Object.freeze(adapters);
  out.mqttPacketLog = Boolean(env.DEBUG);
  out.dataDir = path.resolve(out.dataDir as string);
  out.instanceId ??= `fg-${randomUUID().slice(0, 8)}`;
  out.defaulted = Object.freeze(defaulted);
  return Object.freeze(out as unknown as Config);
}

interface OutlastRule {
  longer: [key: string, label: string];
  shorter: [key: string, label: string];
  floor: number;
  defaultMargin: number;
  minMargin: number;
}

/**
 * Durations that must outlast others; each default grows with the budget it must outlast rather
 * than refusing it. The request timeout outlasts a command; the webhook lease outlasts a whole
 * delivery, so that no other instance sends while one is in flight.
 */
const OUTLASTING: readonly OutlastRule[] = [
  {
    longer: ['requestTimeoutMs', 'request timeout'],
    shorter: ['commandTimeoutMs', 'command timeout'],
    floor: 60_000,
    defaultMargin: 15_000,
    minMargin: 5000,
  },
  {
    longer: ['webhooksLeaseMs', 'webhooks lease'],
    shorter: ['webhooksTimeoutMs', 'webhooks timeout'],
    floor: 15_000,
    defaultMargin: 5000,
    minMargin: 1000,
  },
];

/**
 * A duration that must exceed another by `minMargin` ms: when defaulted it becomes the larger of
 * `floor` and the other + `defaultMargin`; when set too short it is an error.
 */
function outlast(
  out: Record<string, unknown>,
  defaulted: readonly string[],
  errors: string[],
  rule: OutlastRule,
): void {
  const [longKey, longLabel] = rule.longer;
  const [shortKey, shortLabel] = rule.shorter;
  const short = out[shortKey];
  if (typeof short !== 'number') return;
  if (defaulted.includes(longKey)) out[longKey] = Math.max(rule.floor, short + rule.defaultMargin);
  const long = out[longKey];
  if (typeof long === 'number' && long < short + rule.minMargin) {
    errors.push(
      `${longLabel}: ${long} ms must exceed the ${shortLabel} (${short} ms) by at least ${rule.minMargin} ms`,
    );
  }
}

/** `host:port` (IPv6 hosts in brackets) into its parts; undefined when malformed. */
export function parseHostPort(value: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(value.trim());
  const host = m?.[1];
  const port = Number(m?.[2]);
  if (!host || port > 65535) return undefined;
  return { host, port };
}

/** The AMQP settings that a URL's syntax alone does not settle. */
function checkAmqp(out: Record<string, unknown>, errors: string[]): void {
  const amqp = typeof out.amqpUrl === 'string' ? new URL(out.amqpUrl) : undefined;
  if (!amqp) {
    if (out.amqpPublicUrl !== undefined || out.amqpManagementUrl !== undefined) {
      errors.push('--amqp-public-url and --amqp-management-url need --amqp-url');
    }
    return;
  }
  if (amqp.hostname === '') errors.push(`AMQP URL '${redact(String(out.amqpUrl))}' names no host`);
  if (amqp.search !== '' || amqp.hash !== '') {
    errors.push(`AMQP URL '${redact(String(out.amqpUrl))}': query parameters and fragments are not supported`);
  }
  const path = amqp.pathname.replace(/^\//, '');
  if (path.includes('/')) {
    errors.push(
      `AMQP URL '${redact(String(out.amqpUrl))}': the virtual host must be one path segment (a '/' in it is written %2F)`,
    );
  }
  if (typeof out.amqpPublicUrl === 'string') {
    const pub = new URL(out.amqpPublicUrl);
    if (pub.username !== '' || pub.password !== '' || !['', '/'].includes(pub.pathname)) {
      errors.push(
        '--amqp-public-url: give only scheme, host and port; user, password and virtual host are added per consumer',
      );
    }
  }
}

/** The virtual host an AMQP URL names: its path (RFC 3986-decoded), `/` when it has none. */
export function amqpVhost(url: string): string {
  const path = new URL(url).pathname.replace(/^\//, '');
  return path === '' ? '/' : decodeURIComponent(path);
}

/** Hides the password part of a URL for error messages and logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
}

/** What the CLI's API commands read from the environment (the only other use of process.env). */
export function cliEnv(env: Source = process.env): {
  apiUrl?: string;
  clientId?: string;
  clientSecret?: string;
  /** Where the CLI caches access tokens: $XDG_CACHE_HOME/fleetgate/tokens, else ~/.cache/fleetgate/tokens. */
  tokenCacheDir: string;
} {
  return {
    apiUrl: env.FLEETGATE_API_URL,
    clientId: env.FLEETGATE_CLIENT_ID,
    clientSecret: env.FLEETGATE_CLIENT_SECRET,
    tokenCacheDir: path.join(
      env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(homedir(), '.cache'),
      'fleetgate',
      'tokens',
    ),
  };
}

/** NODE_OPTIONS, for `serve` to tell whether Node runs with the flags it should (src/cli/node-flags.ts). */
export function nodeOptions(env: Source = process.env): string {
  return env.NODE_OPTIONS ?? '';
}
