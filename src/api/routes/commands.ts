import { type Static, Type } from 'typebox';
import { COMMANDS, commandFromPath, commandToPath } from '../../domain/commands.js';
import { ProblemError, problems } from '../../domain/problems.js';
import { decodePageToken, encodePageToken } from '../../lib/pagination.js';
import {
  CommandPage,
  CommandParams,
  ListCommandsQuery,
  scopedProblemResponses,
  VehicleIdParam,
  VehicleState,
} from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      pattern: '^[\\x21-\\x7E]{1,255}$',
      description: 'A retry with the same key returns the stored result and never executes twice (kept 24 h).',
    }),
  ),
});

const CommandBody = Type.Object({}, { additionalProperties: false, description: 'Empty, or `{}`.' });

/** The Vehicle Commands API. */
export function commandRoutes(app: Api, { commands, config }: ApiDeps): void {
  app.post(
    '/vehicles/:vehicle_id/commands/:command',
    {
      config: { scope: 'vehicle-commands' },
      schema: {
        tags: ['Commands'],
        summary: 'Send a command to a vehicle',
        description: `Synchronous: answers once the vehicle answered, or after the time budget (${config.commandTimeoutMs / 1000} s). Commands: ${COMMANDS.map(commandToPath).join(', ')}.`,
        operationId: 'sendVehicleCommand',
        params: CommandParams,
        headers: IdempotencyHeaders,
        body: CommandBody,
        response: { 200: VehicleState, ...scopedProblemResponses(404, 409, 502, 504) },
      },
    },
    async (request, reply) => {
      const command = commandFromPath(request.params.command);
      if (!command) {
        throw problems.commandNotFound(request.params.command);
      }
      const result = await commands.execute(request.principal!, request.params.vehicle_id, command, {
        flowId: request.id,
        idempotencyKey: request.headers['idempotency-key'],
        logger: request.log,
      });
      if (result.kind === 'problem') throw new ProblemError(result.key, result.detail, result.extensions);
      // The catalogue validated every value; the schema's static type cannot see that.
      return reply.send(result.state as Static<typeof VehicleState>);
    },
  );

  app.get(
    '/vehicles/:vehicle_id/commands',
    {
      config: { scope: 'vehicles.ro' },
      schema: {
        tags: ['Commands'],
        summary: 'List the commands sent to a vehicle, newest first',
        operationId: 'listVehicleCommands',
        params: VehicleIdParam,
        querystring: ListCommandsQuery,
        response: { 200: CommandPage, ...scopedProblemResponses(404) },
      },
    },
    async (request) => {
      const { limit, page_token } = request.query;
      const before = page_token === undefined ? undefined : decodePageToken(page_token, 'c');
      const rows = await commands.list(request.principal!, request.params.vehicle_id, limit + 1, before);
      const items = rows.slice(0, limit);
      const last = items.at(-1);
      return {
        items: items.map(({ fleet_id: _fleet, deadline_at: _deadline, ...rest }) => rest),
        next_page_token: rows.length > limit && last ? encodePageToken('c', last.flow_id) : null,
      };
    },
  );
}
