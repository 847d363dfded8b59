import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { QOS_COMMANDS, TOPIC_COMMANDS, unitTopic } from '../../src/telematics/fleetgate-mqtt/protocol.js';

const RESPONSES = 'fleetgate/v1/units/+/responses';
const TIMEOUT_MS = 5_000;

/**
 * The bare MQTT request/reply of floors B and C: publish a fleetgate/v1 command to a unit (QoS 1,
 * as fleetgate does), resolve with the unit's final answer. No validation, store or state.
 */
export class MqttRequester {
  private readonly pending = new Map<string, { resolve: (payload: Buffer) => void; timer: NodeJS.Timeout }>();

  private constructor(private readonly client: MqttClient) {
    client.on('message', (_topic, payload) => {
      // The id is the only thing needed: a cheap parse, as a bare floor should be.
      const id = (JSON.parse(payload.toString()) as { id?: string }).id;
      const p = id === undefined ? undefined : this.pending.get(id);
      if (!p) return;
      this.pending.delete(id!);
      clearTimeout(p.timer);
      p.resolve(payload);
    });
  }

  static async start(client: MqttClient): Promise<MqttRequester> {
    const r = new MqttRequester(client);
    // QoS 0 on the reply leg, like fleetgate's own subscription.
    await client.subscribeAsync(RESPONSES, { qos: 0 });
    return r;
  }

  request(unitId: string): Promise<Buffer> {
    const id = randomUUID();
    const now = new Date();
    const payload =
      '{"v":1,"id":"' +
      id +
      '","command":"UNLOCK_CENTRAL_LOCK","issued_at":"' +
      now.toISOString() +
      '","expires_at":"' +
      new Date(now.getTime() + 15_000).toISOString() +
      '"}';
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer from ${unitId}`));
      }, TIMEOUT_MS);
      this.pending.set(id, { resolve, timer });
      this.client.publish(unitTopic(unitId, TOPIC_COMMANDS), payload, { qos: QOS_COMMANDS }, (err) => {
        if (!err) return;
        this.pending.delete(id);
        clearTimeout(timer);
        reject(err);
      });
    });
  }
}
