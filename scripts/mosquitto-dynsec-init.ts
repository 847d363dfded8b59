// Writes the initial dynamic-security.json of a Mosquitto that fleetgate administers
// (deploy/mosquitto/mosquitto.conf, docs/deploy.md):
//   npx tsx scripts/mosquitto-dynsec-init.ts <file> <admin-username> <admin-password>
// then run fleetgate with --mqtt-username/--mqtt-password set to that account.
import { existsSync, writeFileSync } from 'node:fs';
import { dynsecInitialConfig } from '../src/broker/mosquitto-dynsec.js';

const [file, username, password] = process.argv.slice(2);
if (!file || !username || !password) {
  process.stderr.write('usage: npx tsx scripts/mosquitto-dynsec-init.ts <file> <admin-username> <admin-password>\n');
  process.exit(2);
}
if (existsSync(file)) {
  process.stderr.write(`${file} exists; refusing to overwrite the accounts in it\n`);
  process.exit(1);
}
writeFileSync(file, `${JSON.stringify(dynsecInitialConfig(username, password), null, 2)}\n`, { mode: 0o600 });
process.stderr.write(`wrote ${file} with the dynsec admin '${username}'\n`);
