import { pbkdf2Sync, randomBytes, randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { BrokerProvisioner } from '../telematics/adapter.js';

/**
 * Mosquitto's dynamic security plugin API (Mosquitto ≥ 2.0): JSON commands published on the
 * control topic, answers on its response topic, each echoing the command's `correlationData`.
 */
export const DYNSEC_CONTROL_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = '$CONTROL/dynamic-security/v1/response';

const DEFAULT_TIMEOUT_MS = 5_000;
/** Role names are namespaced so fleetgate never touches roles an operator made by hand. */
const UNIT_ROLE_PREFIX = 'fleetgate-unit-';
// Unit-side topic leaves of fleetgate/v1 (docs/mqtt-protocol.md §7), as in the embedded broker.
const UNIT_PUBLISH_LEAVES = ['state', 'responses', 'status'];
const UNIT_SUBSCRIBE_LEAF = 'commands';

export interface DynsecCommand {
  command: string;
  [field: string]: unknown;
}

interface DynsecResponse {
  command: string;
  error?: string;
  correlationData?: string;
  data?: unknown;
}

/** A dynsec command the broker answered with an error. */
export class DynsecError extends Error {
  constructor(
    readonly command: string,
    readonly brokerError: string,
  ) {
    super(`Mosquitto dynamic security: ${command} failed: ${brokerError}`);
    this.name = 'DynsecError';
  }
}

interface Pending {
  command: string;
  resolve: (r: DynsecResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export interface MosquittoDynsecOptions {
  /** How long one request may wait for the broker's answer. */
  timeoutMs?: number;
  logger?: Logger;
}

/** The ACLs of one unit's role: its own unit topics and nothing else (default ACLs deny). */
export function unitAcls(topicPrefix: string): Array<{ acltype: string; topic: string; allow: true }> {
  return [
    ...UNIT_PUBLISH_LEAVES.map((leaf) => ({
      acltype: 'publishClientSend',
      topic: topicPrefix + leaf,
      allow: true as const,
    })),
    { acltype: 'subscribePattern', topic: topicPrefix + UNIT_SUBSCRIBE_LEAF, allow: true },
    { acltype: 'publishClientReceive', topic: topicPrefix + UNIT_SUBSCRIBE_LEAF, allow: true },
  ];
}

/**
 * Provisions fleetgate/v1 units in an external Mosquitto through its dynamic security plugin
 * (SPEC §5: a unit may only publish as itself and only read its own commands). fleetgate's own
 * MQTT client must be a dynsec admin (see deploy/mosquitto/). Each unit gets a client whose
 * username and client id are its unit id, and a role `fleetgate-unit-<id>` with its topics.
 *
 * Every instance subscribes to the shared response topic; correlation ids keep each instance's
 * answers apart. Both operations are idempotent, so a retry or a race between instances is safe.
 */
export class MosquittoDynsecProvisioner implements BrokerProvisioner {
  private readonly pending = new Map<string, Pending>();
  private readonly timeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly onMessage = (topic: string, payload: Buffer) => {
    if (topic === DYNSEC_RESPONSE_TOPIC) this.onResponse(payload);
  };

  private constructor(
    private readonly mqtt: MqttClient,
    options: MosquittoDynsecOptions,
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.logger = options.logger;
  }

  /** Subscribes to the response topic (mqtt.js resubscribes after reconnects) and checks access. */
  static async start(mqtt: MqttClient, options: MosquittoDynsecOptions = {}): Promise<MosquittoDynsecProvisioner> {
    const p = new MosquittoDynsecProvisioner(mqtt, options);
    mqtt.on('message', p.onMessage);
    try {
      // mqtt.js rejects a subscription the broker refused (SUBACK 0x80).
      const granted = await mqtt.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 }).catch(() => [{ qos: 128 }]);
      if (granted.some((g) => g.qos === 128)) {
        throw new Error(
          `Mosquitto dynamic security: the broker refused fleetgate's subscription to ${DYNSEC_RESPONSE_TOPIC}; is the plugin loaded and fleetgate's account a dynsec admin?`,
        );
      }
      // Fails fast at start-up when the account cannot administer dynsec (no answer → timeout).
      await p.request([{ command: 'getDefaultACLAccess' }]);
    } catch (e) {
      p.close();
      throw e;
    }
    return p;
  }

  async provisionUnit(username: string, password: string, topicPrefix: string): Promise<void> {
    const rolename = UNIT_ROLE_PREFIX + username;
    const client = { username, password, clientid: username, roles: [{ rolename }] };
    const [role, created] = await this.request([
      { command: 'createRole', rolename, acls: unitAcls(topicPrefix) },
      { command: 'createClient', ...client },
    ]);
    if (role?.error && !/already exists/i.test(role.error)) throw new DynsecError('createRole', role.error);
    if (!created?.error) return;
    if (!/already exists/i.test(created.error)) throw new DynsecError('createClient', created.error);
    // A unit re-added (or provisioned by two instances at once): same client, new password.
    const [modified] = await this.request([{ command: 'modifyClient', ...client }]);
    if (modified?.error) throw new DynsecError('modifyClient', modified.error);
  }

  /** Deletes the unit's client (Mosquitto disconnects it at once) and its role. */
  async removeUnit(username: string): Promise<void> {
    const responses = await this.request([
      { command: 'deleteClient', username },
      { command: 'deleteRole', rolename: UNIT_ROLE_PREFIX + username },
    ]);
    for (const r of responses) {
      if (r.error && !/not found/i.test(r.error)) throw new DynsecError(r.command, r.error);
    }
  }

  /**
   * Sends one batch of dynsec commands and resolves with their responses in order. Rejects when
   * fleetgate is not connected to the broker or no answer came within the timeout.
   */
  async request(commands: DynsecCommand[]): Promise<DynsecResponse[]> {
    if (!this.mqtt.connected) throw new Error('not connected to the MQTT broker');
    const tagged = commands.map((c) => ({ ...c, correlationData: randomUUID() }));
    const answers = tagged.map(
      (c) =>
        new Promise<DynsecResponse>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.pending.delete(c.correlationData);
            reject(new Error(`Mosquitto dynamic security: no answer to ${c.command} within ${this.timeoutMs} ms`));
          }, this.timeoutMs);
          this.pending.set(c.correlationData, { command: c.command, resolve, reject, timer });
        }),
    );
    // Mark them handled now: if one rejects early, Promise.all below still settles the others.
    for (const a of answers) a.catch(() => undefined);
    this.mqtt.publish(DYNSEC_CONTROL_TOPIC, JSON.stringify({ commands: tagged }), { qos: 1 }, (err) => {
      if (!err) return;
      for (const c of tagged) this.fail(c.correlationData, err);
    });
    return Promise.all(answers);
  }

  /** Stops listening; requests still waiting fail. */
  close(): void {
    this.mqtt.off('message', this.onMessage);
    for (const id of [...this.pending.keys()]) this.fail(id, new Error('provisioner closed'));
  }

  private fail(id: string, err: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.reject(err);
  }

  private onResponse(payload: Buffer): void {
    let parsed: { responses?: DynsecResponse[] };
    try {
      parsed = JSON.parse(payload.toString('utf8'));
    } catch {
      this.logger?.warn('dropped a malformed dynamic security response');
      return;
    }
    for (const r of parsed.responses ?? []) {
      // Answers to other instances' requests carry correlation ids unknown here.
      const p = typeof r.correlationData === 'string' ? this.pending.get(r.correlationData) : undefined;
      if (!p) continue;
      this.pending.delete(r.correlationData!);
      clearTimeout(p.timer);
      p.resolve(r);
    }
  }
}

// Mosquitto 2.0's dynsec password hashing: PBKDF2-SHA512 over a random 12-byte salt.
const DYNSEC_HASH_ITERATIONS = 101;

/**
 * The initial dynamic-security.json for a broker that fleetgate administers: one admin client
 * (fleetgate's own account) whose role may administer dynsec and use every topic, and default
 * ACLs that deny everything else. Equivalent to `mosquitto_ctrl dynsec init` plus the topic
 * access that init leaves out (it grants no publishing to normal topics).
 */
export function dynsecInitialConfig(adminUsername: string, adminPassword: string): Record<string, unknown> {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(adminPassword, salt, DYNSEC_HASH_ITERATIONS, 64, 'sha512');
  const allow = (acltype: string, topic: string) => ({ acltype, topic, allow: true });
  return {
    clients: [
      {
        username: adminUsername,
        textName: 'fleetgate service account',
        password: hash.toString('base64'),
        salt: salt.toString('base64'),
        iterations: DYNSEC_HASH_ITERATIONS,
        roles: [{ rolename: 'fleetgate-service' }],
      },
    ],
    roles: [
      {
        rolename: 'fleetgate-service',
        acls: [
          // '#' does not match topics starting with '$' (MQTT 3.1.1 §4.7.2): the control topic is explicit.
          allow('publishClientSend', '$CONTROL/dynamic-security/#'),
          allow('publishClientReceive', '$CONTROL/dynamic-security/#'),
          allow('subscribePattern', '$CONTROL/dynamic-security/#'),
          allow('publishClientReceive', '$SYS/#'),
          allow('subscribePattern', '$SYS/#'),
          allow('publishClientSend', '#'),
          allow('publishClientReceive', '#'),
          allow('subscribePattern', '#'),
          allow('unsubscribePattern', '#'),
        ],
      },
    ],
    defaultACLAccess: {
      publishClientSend: false,
      publishClientReceive: false,
      subscribe: false,
      unsubscribe: true,
    },
  };
}
