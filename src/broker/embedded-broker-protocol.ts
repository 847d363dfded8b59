/** The messages between the API's thread and the embedded broker's (embedded-broker-thread.ts). */

/** fleetgate's own broker accounts are named so; no unit may log in under such a name. */
export const SERVICE_USERNAME_PREFIX = 'fleetgate-service-';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface BrokerThreadData {
  host: string;
  port: number;
  /** fleetgate's own account: full access. */
  service: { username: string; password: string };
  authCacheTtlMs: number;
  /** The levels the API's logger writes: the thread sends no other records. */
  logLevels: LogLevel[];
}

/** API thread → broker thread. */
export type ToBrokerThread =
  /**
   * A unit's login checked. `unavailable`: fleetgate is not ready for units yet (its adapters have
   * not subscribed): CONNACK "server unavailable", and the unit tries again.
   */
  | { type: 'authenticated'; id: number; ok: boolean; failed?: string; unavailable?: true }
  | { type: 'provision-unit' | 'remove-unit'; id: number; username: string }
  | { type: 'close'; id: number };

/** Broker thread → API thread. */
export type FromBrokerThread =
  | { type: 'listening'; port: number }
  | { type: 'listen-failed'; message: string; code?: string }
  | { type: 'authenticate'; id: number; username: string; password: string }
  | { type: 'done'; id: number }
  | { type: 'log'; level: LogLevel; fields: Record<string, unknown>; message: string };
