/** Words for people: commands, states, ages. */

/** `UNLOCK_CENTRAL_LOCK` → `Unlock central lock` (the command buttons' accessible names). */
export function commandWords(capability: string): string {
  const words = capability.toLowerCase().replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** `unlock-central-lock` path segment of a command capability. */
export const commandPath = (capability: string): string => capability.toLowerCase().replace(/_/g, '-');

/** Commands that make a vehicle drivable or open it: confirmed before they are sent. */
export const NEEDS_CONFIRMATION = new Set([
  'ENABLE_DRIVING',
  'UNLOCK_CENTRAL_LOCK',
  'UNLOCK_AND_ENABLE_DRIVING',
  'UNLOCK_TOP_CASE',
  'UNLOCK_BATTERY_COMPARTMENT',
]);

/** `central_lock` → `Central lock`. */
export function propertyWords(name: string): string {
  const words = name.replace(/_/g, ' ').replace(/ in (.*)$/, ' ($1)');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function stateValue(value: unknown): string {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'object') {
    const v = value as Record<string, unknown>;
    if (typeof v.lat === 'number' && typeof v.lon === 'number') return `${v.lat.toFixed(5)}, ${v.lon.toFixed(5)}`;
    return JSON.stringify(value);
  }
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return String(value);
}

/** How long ago, in the largest sensible unit. */
export function age(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export const time = (iso: string | null | undefined): string => (iso ? new Date(iso).toLocaleString() : '—');
