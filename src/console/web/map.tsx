import L from 'leaflet';
import { useEffect, useRef } from 'preact/hooks';
import { settings } from './settings.js';

export interface MapPoint {
  id: string;
  lat: number;
  lon: number;
  label: string;
  online: boolean;
}

/**
 * The vehicles' last positions on a Leaflet map. Tiles come from the configured tile server;
 * without one the markers sit on a plain background, so the map works offline too.
 */
export function FleetMap({ points, onSelect }: { points: MapPoint[]; onSelect: (id: string) => void }) {
  const element = useRef<HTMLElement>(null);
  const map = useRef<L.Map>();
  const layer = useRef<L.LayerGroup>();
  const fitted = useRef(false);

  useEffect(() => {
    if (!element.current) return;
    const m = L.map(element.current, { zoomControl: true, attributionControl: true, worldCopyJump: true });
    const { tileUrl, tileAttribution } = settings();
    if (tileUrl) L.tileLayer(tileUrl, { attribution: tileAttribution ?? '', maxZoom: 19 }).addTo(m);
    else m.attributionControl.addAttribution('No map tiles configured');
    m.setView([50, 10], 4);
    layer.current = L.layerGroup().addTo(m);
    map.current = m;
    return () => m.remove();
  }, []);

  useEffect(() => {
    const m = map.current;
    const group = layer.current;
    if (!m || !group) return;
    group.clearLayers();
    for (const p of points) {
      L.circleMarker([p.lat, p.lon], {
        radius: 8,
        color: '#fff',
        weight: 2,
        fillColor: p.online ? '#1a7f37' : '#8c959f',
        fillOpacity: 1,
      })
        .bindTooltip(p.label)
        .on('click', () => onSelect(p.id))
        .addTo(group);
    }
    // Fit once, then leave the view to the user as live updates move markers.
    if (!fitted.current && points.length > 0) {
      fitted.current = true;
      m.fitBounds(L.latLngBounds(points.map((p) => [p.lat, p.lon] as [number, number])).pad(0.2), { maxZoom: 15 });
    }
  }, [points, onSelect]);

  return <section ref={element} class="map" aria-label="Map of the vehicles' last positions" />;
}
