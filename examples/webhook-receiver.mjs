// A webhook receiver for fleetgate events (docs/events.md): verifies each delivery's Standard
// Webhooks signature with the `standardwebhooks` library, answers 204, prints one line per event
// and deduplicates by metadata.id (delivery is at least once).
//   WEBHOOK_SECRET=whsec_… PORT=4000 node examples/webhook-receiver.mjs
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

const webhook = new Webhook(process.env.WEBHOOK_SECRET);
const seen = new Set();

http
  .createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      let event;
      try {
        // Throws unless the signature and a timestamp within 5 minutes check out.
        event = webhook.verify(body, req.headers);
      } catch (err) {
        console.log(`rejected: ${err.message}`);
        res.writeHead(400).end();
        return;
      }
      res.writeHead(204).end();
      if (seen.has(event.metadata.id)) return;
      seen.add(event.metadata.id);
      const { type, vehicle_id, occurred_at } = event.metadata;
      const extra = type === 'VehicleChanged' ? ` ${event.data.reasons.join(',')}` : 'previous' in event.data ? ` ${event.data.previous} → ${event.data.value}` : type === 'CommandFinished' ? ` ${event.data.command} ${event.data.outcome}` : type === 'Trip' ? ` ${event.data.distance_in_kilometers} km in ${event.data.duration_seconds} s` : '';
      console.log(`${occurred_at} ${type} ${vehicle_id}${extra} (verified)`);
    });
  })
  .listen(Number(process.env.PORT ?? 4000), '127.0.0.1', () =>
    console.log(`listening on http://127.0.0.1:${process.env.PORT ?? 4000}/`),
  );
