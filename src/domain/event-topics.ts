import { CHANGE_EVENT_PROPERTIES, type EventType } from './events.js';

/**
 * Event topics: named groups of event types that an event consumer subscribes to, as the
 * reference API's Events API has them (one queue per subscribed topic). docs/events.md lists the
 * same table; a topic's event types must be types of the event catalogue.
 */
export const EVENT_TOPICS = {
  'vehicle-state': {
    description: 'What units report: every recorded state and each change of a property operators act on.',
    event_types: ['VehicleStateRecorded', ...Object.values(CHANGE_EVENT_PROPERTIES)],
  },
  vehicles: {
    description: 'The vehicle lifecycle: added, changed (life, setup, operation status, master data), removed.',
    event_types: ['VehicleAdded', 'VehicleChanged', 'VehicleRemoved'],
  },
  commands: {
    description: 'The end of every command, and the real outcome of one that ended with outcome unknown.',
    event_types: ['CommandFinished', 'CommandOutcomeResolved'],
  },
  trips: {
    description: 'Trips derived from the state stream (ignition on to off).',
    event_types: ['Trip'],
  },
} as const satisfies Record<string, { description: string; event_types: readonly EventType[] }>;

export type EventTopic = keyof typeof EVENT_TOPICS;

export const EVENT_TOPIC_NAMES = Object.keys(EVENT_TOPICS) as EventTopic[];

export function isEventTopic(value: string): value is EventTopic {
  return Object.hasOwn(EVENT_TOPICS, value);
}
