import type { Static } from 'typebox';
import { etagOf, versionFromIfMatch } from '../etag.js';
import {
  AddVehicleBody,
  ListVehiclesQuery,
  PatchVehicleBody,
  scopedProblemResponses,
  Vehicle,
  VehicleIdParam,
  VehiclePage,
  VehicleState,
} from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

/** Vehicle lifecycle and management, and the latest known state. */
export function vehicleRoutes(app: Api, { vehicles }: ApiDeps): void {
  app.post(
    '/vehicles',
    {
      config: { scope: 'vehicles' },
      schema: {
        tags: ['Vehicles'],
        operationId: 'addVehicle',
        summary: 'Add a vehicle',
        description:
          'Answers 201 at once with `setup_status` IN_PROGRESS; setup ends SUCCEEDED once the unit is verified (it connected, or the third-party API confirmed it) or FAILED with a reason.',
        body: AddVehicleBody,
        response: { 201: Vehicle, ...scopedProblemResponses(409) },
      },
    },
    async (request, reply) => {
      const vehicle = await vehicles.add(request.principal!, request.body, { flowId: request.id, logger: request.log });
      reply.header('ETag', etagOf(vehicle)).header('Location', `/vehicles/${vehicle.vehicle_id}`);
      return reply.status(201).send(vehicles.view(vehicle));
    },
  );

  app.get(
    '/vehicles',
    {
      config: { scope: 'vehicles.ro' },
      schema: {
        tags: ['Vehicles'],
        operationId: 'listVehicles',
        summary: "List the fleet's vehicles",
        description:
          'Cursor pagination: pass `next_page_token` as `page_token` for the next page; null on the last page.',
        querystring: ListVehiclesQuery,
        response: { 200: VehiclePage, ...scopedProblemResponses() },
      },
    },
    async (request) => {
      const q = request.query;
      const tags = q.tags?.flatMap((t) => t.split(',')).filter(Boolean);
      const page = await vehicles.list(request.principal!, { ...q, tags });
      return { items: page.items.map((v) => vehicles.view(v)), next_page_token: page.next_page_token };
    },
  );

  app.get(
    '/vehicles/:vehicle_id',
    {
      config: { scope: 'vehicles.ro' },
      schema: {
        tags: ['Vehicles'],
        operationId: 'getVehicle',
        summary: 'Get a vehicle',
        params: VehicleIdParam,
        response: { 200: Vehicle, ...scopedProblemResponses(404) },
      },
    },
    async (request, reply) => {
      const vehicle = await vehicles.get(request.principal!, request.params.vehicle_id);
      reply.header('ETag', etagOf(vehicle));
      return vehicles.view(vehicle);
    },
  );

  app.patch(
    '/vehicles/:vehicle_id',
    {
      config: { scope: 'vehicles' },
      schema: {
        tags: ['Vehicles'],
        operationId: 'updateVehicle',
        summary: 'Change master data, custom fields, tags or operation status',
        description:
          'Objects merge member by member; a member set to null is removed. `tags` replaces the list. Send `If-Match` with the ETag to guard against lost updates (412 when it no longer matches).',
        params: VehicleIdParam,
        body: PatchVehicleBody,
        response: { 200: Vehicle, ...scopedProblemResponses(404, 412) },
      },
    },
    async (request, reply) => {
      const ifMatch = versionFromIfMatch(request.headers['if-match']);
      const vehicle = await vehicles.update(
        request.principal!,
        request.params.vehicle_id,
        request.body as never,
        ifMatch,
        { flowId: request.id, logger: request.log },
      );
      reply.header('ETag', etagOf(vehicle));
      return vehicles.view(vehicle);
    },
  );

  app.delete(
    '/vehicles/:vehicle_id',
    {
      config: { scope: 'vehicles' },
      schema: {
        tags: ['Vehicles'],
        operationId: 'deleteVehicle',
        summary: 'Delete a vehicle',
        description:
          "Removes the vehicle, its state and command records, and revokes its unit's access. Honours If-Match.",
        params: VehicleIdParam,
        response: { 204: { type: 'null', description: 'Deleted.' }, ...scopedProblemResponses(404, 412) },
      },
    },
    async (request, reply) => {
      const ifMatch = versionFromIfMatch(request.headers['if-match']);
      await vehicles.remove(request.principal!, request.params.vehicle_id, ifMatch, {
        flowId: request.id,
        logger: request.log,
      });
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/vehicles/:vehicle_id/state',
    {
      config: { scope: 'vehicles.ro' },
      schema: {
        tags: ['Vehicles'],
        operationId: 'getVehicleState',
        summary: 'Latest known vehicle state',
        description: 'Does not contact the vehicle; use the request-vehicle-state command for a fresh one.',
        params: VehicleIdParam,
        response: { 200: VehicleState, ...scopedProblemResponses(404) },
      },
    },
    async (request) =>
      (await vehicles.state(request.principal!, request.params.vehicle_id)) as Static<typeof VehicleState>,
  );
}
