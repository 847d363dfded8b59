import type { CommandName } from '../../src/domain/commands.js';

/** What the state must show after each command, where the vehicle has the property. */
export const EXPECTED_STATE: Partial<Record<CommandName, Record<string, unknown>>> = {
  ENABLE_DRIVING: { driving_enabled: true },
  DISABLE_DRIVING: { driving_enabled: false },
  UNLOCK_CENTRAL_LOCK: { central_lock: 'UNLOCKED' },
  LOCK_CENTRAL_LOCK: { central_lock: 'LOCKED' },
  UNLOCK_AND_ENABLE_DRIVING: { central_lock: 'UNLOCKED', driving_enabled: true },
  LOCK_AND_DISABLE_DRIVING: { central_lock: 'LOCKED', driving_enabled: false },
  UNLOCK_TOP_CASE: { top_case_lock: 'UNLOCKED' },
  LOCK_TOP_CASE: { top_case_lock: 'LOCKED' },
  UNLOCK_BATTERY_COMPARTMENT: { battery_compartment_lock: 'UNLOCKED' },
};
