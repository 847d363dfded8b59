import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import path from 'node:path';

/**
 * fleetgate's settings. This module is the only one that reads process.env: every setting has a
 * `FLEETGATE_*` variable and a CLI flag; the config is validated once, with every error reported
 * together, then frozen. docs/configuration.md lists the same table.
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
  /** TCP port for Teltonika units (telematics brand TELTONIKA); 0 picks a free one. */
  teltonikaPort: number;
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
  /** Requests per minute per API client. */
  rateLimitPerMinute: number;
  /** A vehicle whose unit has not connected within this time ends setup FAILED. */
  setupTimeoutSeconds: number;
  logLevel: string;
  instanceId: string;
  /** Settings that took their default because neither flag nor environment set them. */
  defaulted: readonly (keyof Config)[];
  /** Smartcar API base that documented paths such as `/vehicles/{id}/security` are appended to. */
  smartcarApiUrl: string;
  /** Base of Smartcar's `/oauth/token`. */
  smartcarAuthUrl: string;
  /** How long a console sign-in lasts. */
  consoleSessionMinutes: number;
  /** Map tiles of the console (`{z}/{x}/{y}` template); unset = vehicles on a plain background. */
  consoleTileUrl: string | undefined;
  consoleTileAttribution: string | undefined;
}

export const MQTT_PROVISIONING = ['mosquitto-dynsec', 'none'] as const;
export type MqttProvisioning = (typeof MQTT_PROVISIONING)[number];

type Source = Record<string, string | undefined>;

interface Setting {
  key: keyof Config;
  env: string;
  flag: string;
  kind: 'int' | 'string' | 'url';
  default?: string;
  min?: number;
  max?: number;
  protocols?: string[];
  description: string;
}

export const SETTINGS: readonly Setting[] = [
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
    key: 'teltonikaPort',
    env: 'FLEETGATE_TELTONIKA_PORT',
    flag: '--teltonika-port',
    kind: 'int',
    default: '5027',
    min: 0,
    max: 65535,
    description: 'TCP port for Teltonika units, Codec 8/8E/12 (0 = any free port).',
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
    key: 'smartcarApiUrl',
    env: 'FLEETGATE_SMARTCAR_API_URL',
    flag: '--smartcar-api-url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    default: 'https://api.smartcar.com/v2.0',
    description:
      "Smartcar API v2.0 base URL (documented paths such as /vehicles/{id}/security are appended); point it at `fleetgate simulate`'s fake to try SMARTCAR vehicles without an account.",
  },
  {
    key: 'smartcarAuthUrl',
    env: 'FLEETGATE_SMARTCAR_AUTH_URL',
    flag: '--smartcar-auth-url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    default: 'https://auth.smartcar.com',
    description: "Base URL of Smartcar's token endpoint (`/oauth/token` is appended).",
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
  flags: Partial<Record<keyof Config, string | number | undefined>> = {},
  env: Source = process.env,
): Readonly<Config> {
  const errors: string[] = [];
  const out: Record<string, unknown> = {};
  const defaulted: (keyof Config)[] = [];
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
  if (typeof out.consoleTileUrl === 'string' && !/\{z\}.*\{x\}.*\{y\}/.test(out.consoleTileUrl)) {
    errors.push('console tile URL: must hold {z}, {x} and {y}');
  }
  // The default grows with a long command budget rather than refusing it.
  if (defaulted.includes('requestTimeoutMs') && typeof out.commandTimeoutMs === 'number') {
    out.requestTimeoutMs = Math.max(60_000, out.commandTimeoutMs + 15_000);
  }
  if (
    typeof out.requestTimeoutMs === 'number' &&
    typeof out.commandTimeoutMs === 'number' &&
    out.requestTimeoutMs < out.commandTimeoutMs + 5000
  ) {
    errors.push(
      `request timeout: ${out.requestTimeoutMs} ms must exceed the command timeout (${out.commandTimeoutMs} ms) by at least 5000 ms`,
    );
  }
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
  if (errors.length > 0) throw new ConfigError(errors);
  out.dataDir = path.resolve(out.dataDir as string);
  out.instanceId ??= `fg-${randomUUID().slice(0, 8)}`;
  out.defaulted = Object.freeze(defaulted);
  return Object.freeze(out as unknown as Config);
}

/** Hides the password part of a URL for error messages and logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
}

/** What the CLI's API commands read from the environment (the only other use of process.env). */
export function cliEnv(env: Source = process.env): { apiUrl?: string; clientId?: string; clientSecret?: string } {
  return {
    apiUrl: env.FLEETGATE_API_URL,
    clientId: env.FLEETGATE_CLIENT_ID,
    clientSecret: env.FLEETGATE_CLIENT_SECRET,
  };
}
