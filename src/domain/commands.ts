/**
 * The command catalogue (SPEC §1). A command has a kebab-case path segment and an UPPER_SNAKE
 * capability; combined commands also name the single commands they are made of, in the order
 * they run when the unit cannot execute them natively.
 */
export const COMMANDS = [
  'REQUEST_VEHICLE_STATE',
  'ENABLE_DRIVING',
  'DISABLE_DRIVING',
  'UNLOCK_CENTRAL_LOCK',
  'LOCK_CENTRAL_LOCK',
  'UNLOCK_AND_ENABLE_DRIVING',
  'LOCK_AND_DISABLE_DRIVING',
  'UNLOCK_TOP_CASE',
  'LOCK_TOP_CASE',
  'DRAW_ATTENTION',
  'UNLOCK_BATTERY_COMPARTMENT',
] as const;

export type CommandName = (typeof COMMANDS)[number];

/**
 * Steps of the combined commands. Unlock comes before enable-driving so a customer is never
 * left with a drivable car they cannot get into; securing locks first, then immobilizes.
 */
export const COMBINED_STEPS: Partial<Record<CommandName, readonly CommandName[]>> = {
  UNLOCK_AND_ENABLE_DRIVING: ['UNLOCK_CENTRAL_LOCK', 'ENABLE_DRIVING'],
  LOCK_AND_DISABLE_DRIVING: ['LOCK_CENTRAL_LOCK', 'DISABLE_DRIVING'],
};

export function isCombined(command: CommandName): boolean {
  return COMBINED_STEPS[command] !== undefined;
}

/** `UNLOCK_CENTRAL_LOCK` → `unlock-central-lock` */
export function commandToPath(command: CommandName): string {
  return command.toLowerCase().replaceAll('_', '-');
}

/** `unlock-central-lock` → `UNLOCK_CENTRAL_LOCK`, or undefined for an unknown segment. */
export function commandFromPath(segment: string): CommandName | undefined {
  if (!/^[a-z]+(-[a-z]+)*$/.test(segment)) return undefined;
  const name = segment.toUpperCase().replaceAll('-', '_');
  return (COMMANDS as readonly string[]).includes(name) ? (name as CommandName) : undefined;
}

export function isCommandName(value: unknown): value is CommandName {
  return typeof value === 'string' && (COMMANDS as readonly string[]).includes(value);
}
