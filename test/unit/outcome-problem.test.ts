import { describe, expect, it } from 'vitest';
import { PROBLEMS } from '../../src/domain/problems.js';
import { commandStatus, outcomeToFailure } from '../../src/services/outcome-problem.js';
import type { CommandOutcome } from '../../src/telematics/adapter.js';

const ctx = { vehicleId: 'V1', step: 'LOCK_CENTRAL_LOCK' as const, timeoutMs: 20_000 };

type Failed = Exclude<CommandOutcome, { kind: 'succeeded' }>;

// SPEC §1/§2: every adapter outcome other than success maps to one problem, one delivery and
// one record status, whatever the adapter.
const TABLE: Array<[Failed, ReturnType<typeof outcomeToFailure>, 'FAILED' | 'OUTCOME_UNKNOWN']> = [
  [
    { kind: 'unavailable', reason: 'The broker is unreachable.' },
    {
      key: 'service-unavailable',
      delivery: 'NOT_DELIVERED',
      detail: "The command to vehicle 'V1' was not sent: The broker is unreachable. Retry later.",
      extensions: { delivery: 'NOT_DELIVERED' },
    },
    'FAILED',
  ],
  [
    { kind: 'not-connected' },
    {
      key: 'vehicle/no-connection',
      delivery: 'NOT_DELIVERED',
      detail: "The vehicle 'V1' did not establish a connection. The command was not delivered.",
      extensions: { delivery: 'NOT_DELIVERED' },
    },
    'FAILED',
  ],
  [
    { kind: 'not-connected', reason: 'Last seen 3 min ago.' },
    {
      key: 'vehicle/no-connection',
      delivery: 'NOT_DELIVERED',
      detail: "The vehicle 'V1' did not establish a connection. Last seen 3 min ago. The command was not delivered.",
      extensions: { delivery: 'NOT_DELIVERED' },
    },
    'FAILED',
  ],
  [
    { kind: 'no-answer', delivered: true },
    {
      key: 'vehicle/no-connection',
      delivery: 'DELIVERED_OUTCOME_UNKNOWN',
      detail:
        "The vehicle 'V1' received the command but did not report its outcome within 20 s. Request the vehicle state before retrying.",
      extensions: { delivery: 'DELIVERED_OUTCOME_UNKNOWN' },
    },
    'OUTCOME_UNKNOWN',
  ],
  [
    { kind: 'no-answer', delivered: false },
    {
      key: 'vehicle/no-connection',
      delivery: 'NOT_DELIVERED',
      detail:
        "The vehicle 'V1' did not answer within 20 s; the command was not delivered and will not be delivered later.",
      extensions: { delivery: 'NOT_DELIVERED' },
    },
    'FAILED',
  ],
  [
    { kind: 'refused', reason: 'the vehicle is moving' },
    {
      key: 'vehicle/conflicting-state',
      delivery: 'DELIVERED',
      detail: "The vehicle 'V1' refused 'lock-central-lock': the vehicle is moving",
      extensions: {},
    },
    'FAILED',
  ],
  [
    { kind: 'failed', reason: 'actuator jammed' },
    {
      key: 'telematics-unit/error',
      delivery: 'DELIVERED',
      detail: "The telematics unit of vehicle 'V1' failed to execute 'lock-central-lock': actuator jammed",
      extensions: {},
    },
    'FAILED',
  ],
  [
    { kind: 'not-supported', reason: 'no lock fitted' },
    {
      key: 'vehicle/command-not-supported',
      delivery: 'DELIVERED',
      detail: "The command 'lock-central-lock' is not supported by the vehicle 'V1': no lock fitted",
      extensions: {},
    },
    'FAILED',
  ],
  [
    { kind: 'third-party-error', provider: 'Smartcar', reason: 'upstream 500' },
    {
      key: 'third-party/error',
      delivery: 'NOT_DELIVERED',
      detail: 'An error occurred at the Smartcar API: upstream 500',
      extensions: { provider: 'Smartcar' },
    },
    'FAILED',
  ],
  [
    { kind: 'third-party-error', provider: 'Smartcar', reason: 'rate limited', request_id: 'r-1', retry_after_s: 1.2 },
    {
      key: 'third-party/error',
      delivery: 'NOT_DELIVERED',
      detail: 'An error occurred at the Smartcar API: rate limited (request id r-1)',
      extensions: { provider: 'Smartcar', provider_request_id: 'r-1', retry_after_seconds: 1.2 },
    },
    'FAILED',
  ],
];

describe('outcomeToFailure', () => {
  it.each(TABLE)('maps %j', (outcome, expected, status) => {
    const failure = outcomeToFailure(outcome, ctx);
    expect(failure).toEqual(expected);
    expect(PROBLEMS[failure.key]).toBeDefined();
    expect(commandStatus(failure)).toBe(status);
  });

  it('covers every outcome kind but success', () => {
    const kinds = new Set(TABLE.map(([o]) => o.kind));
    expect([...kinds].sort()).toEqual(
      ['failed', 'no-answer', 'not-connected', 'not-supported', 'refused', 'third-party-error', 'unavailable'].sort(),
    );
  });

  it('records a success as SUCCEEDED', () => {
    expect(commandStatus(undefined)).toBe('SUCCEEDED');
  });
});
