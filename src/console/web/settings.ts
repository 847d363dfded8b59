/** Server-side settings the page carries (`<script id="console-settings">`), e.g. the map's tile server. */
export interface ConsoleSettings {
  tileUrl: string | null;
  tileAttribution: string | null;
}

let cached: ConsoleSettings | undefined;

export function settings(): ConsoleSettings {
  if (!cached) {
    const text = document.getElementById('console-settings')?.textContent ?? '{}';
    cached = { tileUrl: null, tileAttribution: null, ...(JSON.parse(text) as Partial<ConsoleSettings>) };
  }
  return cached;
}
