import { EventEmitter } from 'node:events';

/** Domain events, for metrics and logs within one instance. */
export type DomainEvent =
  | {
      type: 'vehicle.added' | 'vehicle.modified' | 'vehicle.deleted';
      vehicle_id: string;
      fleet_id: string;
      /** The request that caused it (SPEC §2). */
      flow_id?: string;
    }
  | { type: 'vehicle.state'; vehicle_id: string; fleet_id: string }
  /** State values a unit reported that the catalogue refused (counted in metrics). */
  | { type: 'state.rejected'; vehicle_id: string; properties: string[] }
  | { type: 'vehicle.setup'; vehicle_id: string }
  | { type: 'vehicle.life'; vehicle_id: string; online: boolean }
  | {
      type: 'command.finished';
      vehicle_id: string;
      fleet_id: string;
      flow_id: string;
      command: string;
      adapter: string;
      outcome: string;
      duration_ms: number;
    };

export class EventBus {
  private readonly emitter = new EventEmitter();

  emit(event: DomainEvent): void {
    this.emitter.emit('event', event);
  }

  on(listener: (event: DomainEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
