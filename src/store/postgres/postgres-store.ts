import type { ChangeCause, Migration, Store } from '../store.js';
import { ApiClients } from './api-clients.js';
import { CommandPath } from './command-path.js';
import { CommandRecords } from './commands.js';
import { PostgresConnection, type PostgresConnectionOptions } from './connection.js';
import { ConsoleAccounts } from './console-accounts.js';
import { Credentials } from './credentials.js';
import { IdempotencyKeys } from './idempotency-keys.js';
import { migrate } from './migrate.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';
import { PostgresEventLog } from './postgres-event-log.js';
import { Vehicles } from './vehicles.js';

export interface PostgresStoreOptions extends PostgresConnectionOptions {
  /** Overrides the migration list (tests). */
  migrations?: readonly Migration[];
}

/**
 * The production engine (SPEC §7): any number of instances share one database. Every guarantee
 * that must hold across instances (single flight, idempotency, unique units, credential CAS)
 * is a constraint or a single conditional statement, never a read-then-write in process memory.
 *
 * This class only puts the engine's parts together and hands each Store method to the part that
 * owns it: the pool (connection.ts), the command path's batched statements (command-path.ts),
 * and the rows of each kind (vehicles.ts, commands.ts, credentials.ts, api-clients.ts,
 * console-accounts.ts, idempotency-keys.ts).
 */
export class PostgresStore implements Store {
  readonly engine = 'postgres';
  private readonly options: PostgresStoreOptions;
  private readonly migrations: readonly Migration[];
  private readonly db: PostgresConnection;
  /** The outbox's read side; the parts' writes insert each change's events in their own transaction. */
  readonly events: PostgresEventLog;
  private readonly commandPath: CommandPath;
  private readonly vehicles: Vehicles;
  private readonly commands: CommandRecords;
  private readonly credentials: Credentials;
  private readonly clients: ApiClients;
  private readonly accounts: ConsoleAccounts;
  private readonly idempotencyKeys: IdempotencyKeys;

  constructor(options: PostgresStoreOptions) {
    this.options = options;
    this.migrations = options.migrations ?? POSTGRES_MIGRATIONS;
    const db = new PostgresConnection(options);
    this.db = db;
    this.events = new PostgresEventLog(
      (text, params, client) => db.q(text, params, client),
      (fn) => db.tx(fn),
    );
    this.commandPath = new CommandPath(db, this.events);
    this.vehicles = new Vehicles(db, this.events);
    this.commands = new CommandRecords(db, this.events);
    this.credentials = new Credentials(db);
    this.clients = new ApiClients(db);
    this.accounts = new ConsoleAccounts(db);
    this.idempotencyKeys = new IdempotencyKeys(db);
  }

  migrate(): Promise<void> {
    return migrate(this.db, this.options, this.migrations);
  }

  async ping(): Promise<void> {
    await this.db.q('SELECT 1');
  }

  close(): Promise<void> {
    return this.db.close();
  }

  // The command path (command-path.ts).

  getVehicle(...args: Parameters<Store['getVehicle']>) {
    return this.commandPath.getVehicle(...args);
  }

  startCommand(...args: Parameters<Store['startCommand']>) {
    return this.commandPath.startCommand(...args);
  }

  beginCommand(...args: Parameters<Store['beginCommand']>) {
    return this.commandPath.beginCommand(...args);
  }

  completeCommand(...args: Parameters<Store['completeCommand']>) {
    return this.commandPath.completeCommand(...args);
  }

  resolveCommand(...args: Parameters<Store['resolveCommand']>) {
    return this.commandPath.resolveCommand(...args);
  }

  mergeState(...args: Parameters<Store['mergeState']>) {
    return this.commandPath.mergeState(...args);
  }

  getState(...args: Parameters<Store['getState']>) {
    return this.commandPath.getState(...args);
  }

  // Command records (commands.ts).

  finishCommand(...args: Parameters<Store['finishCommand']>) {
    return this.commands.finishCommand(...args);
  }

  getCommand(...args: Parameters<Store['getCommand']>) {
    return this.commands.getCommand(...args);
  }

  listCommands(...args: Parameters<Store['listCommands']>) {
    return this.commands.listCommands(...args);
  }

  expireCommands(...args: Parameters<Store['expireCommands']>) {
    return this.commands.expireCommands(...args);
  }

  // Vehicles (vehicles.ts).

  insertVehicle(...args: Parameters<Store['insertVehicle']>) {
    return this.vehicles.insertVehicle(...args);
  }

  findVehicleByUnit(...args: Parameters<Store['findVehicleByUnit']>) {
    return this.vehicles.findVehicleByUnit(...args);
  }

  listVehicles(...args: Parameters<Store['listVehicles']>) {
    return this.vehicles.listVehicles(...args);
  }

  updateVehicle(...args: Parameters<Store['updateVehicle']>) {
    return this.vehicles.updateVehicle(...args);
  }

  deleteVehicle(
    vehicleId: string,
    expectedVersion?: number,
    cause?: ChangeCause,
  ): Promise<boolean | 'version-mismatch'> {
    // Its state goes with it: what this instance last read of it must not outlive it.
    this.commandPath.forget(vehicleId);
    return this.vehicles.deleteVehicle(vehicleId, expectedVersion, cause);
  }

  setSetupStatus(...args: Parameters<Store['setSetupStatus']>) {
    return this.vehicles.setSetupStatus(...args);
  }

  setLifeStatus(...args: Parameters<Store['setLifeStatus']>) {
    return this.vehicles.setLifeStatus(...args);
  }

  countVehicles() {
    return this.vehicles.countVehicles();
  }

  listStaleSetups(...args: Parameters<Store['listStaleSetups']>) {
    return this.vehicles.listStaleSetups(...args);
  }

  setBrandOffline(...args: Parameters<Store['setBrandOffline']>) {
    return this.vehicles.setBrandOffline(...args);
  }

  // Credentials (credentials.ts).

  createCredentials(...args: Parameters<Store['createCredentials']>) {
    return this.credentials.createCredentials(...args);
  }

  getCredentials(...args: Parameters<Store['getCredentials']>) {
    return this.credentials.getCredentials(...args);
  }

  listCredentials(...args: Parameters<Store['listCredentials']>) {
    return this.credentials.listCredentials(...args);
  }

  deleteCredentials(...args: Parameters<Store['deleteCredentials']>) {
    return this.credentials.deleteCredentials(...args);
  }

  updateCredentialsState(...args: Parameters<Store['updateCredentialsState']>) {
    return this.credentials.updateCredentialsState(...args);
  }

  // Idempotency keys (idempotency-keys.ts).

  claimIdempotencyKey(...args: Parameters<Store['claimIdempotencyKey']>) {
    return this.idempotencyKeys.claimIdempotencyKey(...args);
  }

  completeIdempotencyKey(...args: Parameters<Store['completeIdempotencyKey']>) {
    return this.idempotencyKeys.completeIdempotencyKey(...args);
  }

  releaseIdempotencyKey(...args: Parameters<Store['releaseIdempotencyKey']>) {
    return this.idempotencyKeys.releaseIdempotencyKey(...args);
  }

  purgeIdempotencyKeys(...args: Parameters<Store['purgeIdempotencyKeys']>) {
    return this.idempotencyKeys.purgeIdempotencyKeys(...args);
  }

  // API clients (api-clients.ts).

  createClient(...args: Parameters<Store['createClient']>) {
    return this.clients.createClient(...args);
  }

  getClient(...args: Parameters<Store['getClient']>) {
    return this.clients.getClient(...args);
  }

  listClients(...args: Parameters<Store['listClients']>) {
    return this.clients.listClients(...args);
  }

  deleteClient(...args: Parameters<Store['deleteClient']>) {
    return this.clients.deleteClient(...args);
  }

  // Console users, sessions and sign-in failures (console-accounts.ts).

  createUser(...args: Parameters<Store['createUser']>) {
    return this.accounts.createUser(...args);
  }

  getUser(...args: Parameters<Store['getUser']>) {
    return this.accounts.getUser(...args);
  }

  getUserByEmail(...args: Parameters<Store['getUserByEmail']>) {
    return this.accounts.getUserByEmail(...args);
  }

  listUsers(...args: Parameters<Store['listUsers']>) {
    return this.accounts.listUsers(...args);
  }

  updateUser(...args: Parameters<Store['updateUser']>) {
    return this.accounts.updateUser(...args);
  }

  deleteUser(...args: Parameters<Store['deleteUser']>) {
    return this.accounts.deleteUser(...args);
  }

  createSession(...args: Parameters<Store['createSession']>) {
    return this.accounts.createSession(...args);
  }

  getSession(...args: Parameters<Store['getSession']>) {
    return this.accounts.getSession(...args);
  }

  deleteSession(...args: Parameters<Store['deleteSession']>) {
    return this.accounts.deleteSession(...args);
  }

  deleteUserSessions(...args: Parameters<Store['deleteUserSessions']>) {
    return this.accounts.deleteUserSessions(...args);
  }

  purgeSessions(...args: Parameters<Store['purgeSessions']>) {
    return this.accounts.purgeSessions(...args);
  }

  noteSignInFailure(...args: Parameters<Store['noteSignInFailure']>) {
    return this.accounts.noteSignInFailure(...args);
  }

  getSignInFailures(...args: Parameters<Store['getSignInFailures']>) {
    return this.accounts.getSignInFailures(...args);
  }

  clearSignInFailures(...args: Parameters<Store['clearSignInFailures']>) {
    return this.accounts.clearSignInFailures(...args);
  }
}
