import { randomBytes } from 'node:crypto';
import { RabbitmqManagement, seg } from '../../src/events/channels/amqp/rabbitmq-management.js';

/** The RabbitMQ tests run against (its management plugin enabled); each test uses a vhost of its own. */
export const TEST_AMQP_URL = process.env.FLEETGATE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const TEST_AMQP_MANAGEMENT_URL =
  process.env.FLEETGATE_TEST_AMQP_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672';

export interface TestVhost {
  vhost: string;
  /** TEST_AMQP_URL with this vhost as its path. */
  amqpUrl: string;
  managementUrl: string;
  management: RabbitmqManagement;
  /** Deletes the vhost (its queues and exchanges) and every user that had permissions in it but guest. */
  remove: () => Promise<void>;
}

/** A fresh, uniquely named vhost on the test RabbitMQ, where the test account may do anything. */
export async function createTestVhost(): Promise<TestVhost> {
  const vhost = `fleetgate-test-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const management = new RabbitmqManagement(TEST_AMQP_MANAGEMENT_URL);
  const admin = new URL(TEST_AMQP_URL).username || 'guest';
  await management.put(`/vhosts/${seg(vhost)}`, {});
  await management.put(`/permissions/${seg(vhost)}/${seg(admin)}`, { configure: '.*', write: '.*', read: '.*' });
  const url = new URL(TEST_AMQP_URL);
  url.pathname = `/${seg(vhost)}`;
  let removed = false;
  return {
    vhost,
    amqpUrl: url.toString(),
    managementUrl: TEST_AMQP_MANAGEMENT_URL,
    management,
    remove: async () => {
      if (removed) return;
      removed = true;
      const users = (await management.get(`/vhosts/${seg(vhost)}/permissions`)) as Array<{ user: string }>;
      for (const { user } of users) if (user !== admin) await management.delete(`/users/${seg(user)}`);
      await management.delete(`/vhosts/${seg(vhost)}`);
    },
  };
}
