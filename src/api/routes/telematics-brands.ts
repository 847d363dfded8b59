import { Type } from 'typebox';
import { problems } from '../../domain/problems.js';
import { scopedProblemResponses, VehicleModelSchema } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const Brand = Type.Object({
  telematics_brand: Type.String(),
  name: Type.String(),
  requires_password: Type.Boolean(),
  requires_credentials: Type.Boolean(),
  vehicle_model_count: Type.Integer(),
});

/** The brands fleetgate speaks and the models each supports, with capabilities. */
export function telematicsBrandRoutes(app: Api, { adapters }: ApiDeps): void {
  app.get(
    '/telematics-brands',
    {
      config: { scope: 'vehicles.ro' },
      schema: {
        tags: ['Telematics'],
        operationId: 'listTelematicsBrands',
        summary: 'List telematics brands',
        response: { 200: Type.Object({ items: Type.Array(Brand) }), ...scopedProblemResponses() },
      },
    },
    async () => ({
      items: [...adapters.values()].map((a) => ({
        telematics_brand: a.brand,
        name: a.displayName,
        requires_password: a.requiresUnitPassword,
        requires_credentials: a.requiresCredentials ?? false,
        vehicle_model_count: a.models.length,
      })),
    }),
  );

  app.get(
    '/telematics-brands/:brand/available-vehicle-models',
    {
      config: { scope: 'vehicles.ro' },
      schema: {
        tags: ['Telematics'],
        operationId: 'listAvailableVehicleModels',
        summary: 'Vehicle models of a brand, with their capabilities',
        params: Type.Object({ brand: Type.String({ maxLength: 32 }) }),
        response: {
          200: Type.Object({ items: Type.Array(VehicleModelSchema) }),
          ...scopedProblemResponses(404),
        },
      },
    },
    async (request) => {
      const adapter = adapters.get(request.params.brand);
      if (!adapter) throw problems.telematicsBrandNotFound(request.params.brand);
      return {
        items: adapter.models.map((m) => ({
          id: m.id,
          brand: m.brand,
          model: m.model,
          vehicle_type: m.vehicle_type,
          capabilities: m.capabilities,
        })),
      };
    },
  );
}
