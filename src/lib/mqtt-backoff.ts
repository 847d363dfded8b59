import type { MqttClient } from 'mqtt';

/**
 * Exponential reconnect back-off with jitter for an mqtt.js client, which on its own retries at
 * one fixed period: before each retry the next period doubles, up to `maxMs`, and a successful
 * connect starts again at `minMs`. Periods are drawn from [base/2, base] (base = minMs · 2^n),
 * so clients that lost the same broker at once do not come back in step.
 */
export function reconnectWithBackoff(client: MqttClient, minMs: number, maxMs: number): void {
  let attempt = 0;
  client.options.reconnectPeriod = jittered(minMs);
  client.on('connect', () => {
    attempt = 0;
    client.options.reconnectPeriod = jittered(minMs);
  });
  client.on('reconnect', () => {
    attempt++;
    client.options.reconnectPeriod = jittered(Math.min(maxMs, minMs * 2 ** attempt));
    // mqtt.js re-arms its reconnect timer (an interval) only when none runs: cleared here, the
    // next failure arms it with the new period.
    (client as unknown as { _clearReconnect?: () => void })._clearReconnect?.();
  });
}

const jittered = (base: number) => Math.round(base / 2 + Math.random() * (base / 2));
