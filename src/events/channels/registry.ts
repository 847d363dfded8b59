import { AMQP_CHANNEL } from './amqp/amqp-channel.js';
import type { ChannelContext, ChannelDefinition, DeliveryChannel } from './channel.js';
import { webhooksChannel } from './webhooks/webhook-channel.js';

/**
 * Every delivery channel fleetgate has: adding one is a folder under events/channels/ and one
 * line here.
 */
export const CHANNELS: readonly ChannelDefinition[] = [webhooksChannel, AMQP_CHANNEL];

export function createChannels(context: ChannelContext): DeliveryChannel[] {
  return CHANNELS.map((definition) =>
    definition.create({ ...context, logger: context.logger.child({ channel: definition.name }) }),
  );
}
