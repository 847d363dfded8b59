import type { Logger } from 'pino';
import type { AdapterContext, BrokerProvisioner, CommandOutcome, TelematicsAdapter } from '../telematics/adapter.js';
import type { CredentialsService } from './credentials-service.js';
import type { VehicleService } from './vehicle-service.js';

/** What every adapter's context is made of; the composition root and the tests pass the same parts. */
export interface AdapterContextParts {
  logger: Logger;
  instanceId: string;
  listenHost: string;
  mqtt: AdapterContext['mqtt'];
  sharedBroker: boolean;
  broker: BrokerProvisioner;
  vehicles: VehicleService;
  credentials: CredentialsService;
  /** Settles commands that ended OUTCOME_UNKNOWN when their answer comes late (CommandService.onLateAnswer). */
  lateAnswers?: (flowId: string, outcome: CommandOutcome) => Promise<void>;
}

/**
 * The narrow context of one adapter: lookups and reports bound to its brand, the credentials
 * port, and its own settings — never the store or the config (STYLE: adapters translate).
 */
export function createAdapterContext<S>(
  adapter: Pick<TelematicsAdapter, 'brand'>,
  settings: S,
  parts: AdapterContextParts,
): AdapterContext<S> {
  const { brand } = adapter;
  const { vehicles } = parts;
  return {
    logger: parts.logger.child({ adapter: brand }),
    instanceId: parts.instanceId,
    listenHost: parts.listenHost,
    mqtt: parts.mqtt,
    sharedBroker: parts.sharedBroker,
    broker: parts.broker,
    vehicles: {
      byUnit: (unitId) => vehicles.units.find(brand, unitId),
      lastReportedAt: (unitId) => vehicles.lastReportedAt(brand, unitId),
    },
    credentials: parts.credentials,
    sink: {
      state: async (unitId, state) => {
        await vehicles.onStateReport(brand, unitId, state);
      },
      connection: (unitId, online, at) => vehicles.onConnectionChange(brand, unitId, online, at),
      setupResult: (vehicleId, result, force) => vehicles.setSetupResult(vehicleId, result, force),
      credentialsRevoked: (credentialsId, reason) => vehicles.failCredentialsVehicles(credentialsId, reason),
      lateAnswer: async (flowId, outcome) => {
        if (parts.lateAnswers) await parts.lateAnswers(flowId, outcome);
        else parts.logger.warn({ flow_id: flowId }, 'a late command answer arrived with nothing to settle it');
      },
    },
    settings,
  };
}
