import { randomUUID } from 'node:crypto';
import { type FieldError, problems } from '../domain/problems.js';
import { decodePageToken, encodePageToken, type Page } from '../lib/pagination.js';
import type { SecretBox } from '../lib/secrets.js';
import type { CredentialsRecord, Store } from '../store/store.js';
import type {
  CredentialsField,
  CredentialsPort,
  CredentialsSnapshot,
  TelematicsAdapter,
} from '../telematics/adapter.js';

/**
 * The public view of stored third-party credentials: never a secret, only the fields a brand
 * marks as not secret (e.g. Smartcar's `client_id`).
 */
export interface CredentialsView {
  credentials_id: string;
  telematics_brand: string;
  name: string | null;
  created_at: string;
  [publicField: string]: string | null;
}

const NAME_MAX = 100;
const FIELD_MAX = 4096;
const LIMIT_MAX = 100;
const PAGE_KIND = 'c';

/**
 * Third-party credentials of a fleet (`/credentials`, scope `vehicles`): created once per fleet
 * and account, referenced by vehicles through `credentials_id`. Secrets are sealed with the
 * SecretBox bound to the credentials id before they reach the store and are never returned.
 * Another fleet's credentials are indistinguishable from missing ones (404, never 403).
 */
export class CredentialsService implements CredentialsPort {
  constructor(
    private readonly store: Store,
    private readonly secrets: SecretBox,
    private readonly brands: ReadonlyMap<string, TelematicsAdapter>,
  ) {}

  async create(fleetId: string, input: unknown): Promise<CredentialsView> {
    const { brand, name, values } = this.validate(input);
    const now = new Date().toISOString();
    const credentialsId = randomUUID();
    const record: CredentialsRecord = {
      credentials_id: credentialsId,
      fleet_id: fleetId,
      telematics_brand: brand,
      name,
      sealed_secret: this.secrets.seal(JSON.stringify(values), credentialsId),
      sealed_state: null,
      version: 0,
      created_at: now,
      modified_at: now,
    };
    await this.store.createCredentials(record);
    return this.view(record);
  }

  async list(fleetId: string, limit: number, pageToken?: string): Promise<Page<CredentialsView>> {
    if (!Number.isInteger(limit) || limit < 1 || limit > LIMIT_MAX) {
      throw validation([{ field: 'limit', message: `must be a whole number from 1 to ${LIMIT_MAX}` }]);
    }
    const after = pageToken === undefined ? undefined : decodePageToken(pageToken, PAGE_KIND);
    const rows = await this.store.listCredentials(fleetId, limit + 1, after);
    const items = rows.slice(0, limit);
    const last = items[items.length - 1];
    return {
      items: items.map((r) => this.view(r)),
      next_page_token: rows.length > limit && last ? encodePageToken(PAGE_KIND, last.credentials_id) : null,
    };
  }

  async get(fleetId: string, credentialsId: string): Promise<CredentialsView> {
    return this.view(await this.owned(fleetId, credentialsId));
  }

  async delete(fleetId: string, credentialsId: string): Promise<void> {
    await this.owned(fleetId, credentialsId);
    const result = await this.store.deleteCredentials(credentialsId);
    if (result === 'in-use') {
      throw problems.credentialsInUse(credentialsId);
    }
    if (result === 'not-found') throw notFound(credentialsId);
  }

  /** The credentials port of adapters: opened here, so no adapter holds the SecretBox. */
  async read(credentialsId: string): Promise<CredentialsSnapshot | undefined> {
    const record = await this.store.getCredentials(credentialsId);
    if (!record) return undefined;
    const secret = this.open(record.sealed_secret, credentialsId);
    const state = record.sealed_state === null ? null : this.open(record.sealed_state, credentialsId);
    return {
      credentials_id: record.credentials_id,
      fleet_id: record.fleet_id,
      telematics_brand: record.telematics_brand,
      version: record.version,
      secret: isStringRecord(secret) ? secret : undefined,
      state,
    };
  }

  swapState(credentialsId: string, expectedVersion: number, state: unknown): Promise<boolean> {
    const sealed = this.secrets.seal(JSON.stringify(state), credentialsId);
    return this.store.updateCredentialsState(credentialsId, expectedVersion, sealed, new Date().toISOString());
  }

  /** Opens sealed JSON; undefined when this instance's secret key cannot (never echoes the text). */
  private open(sealed: string, credentialsId: string): unknown {
    try {
      return JSON.parse(this.secrets.open(sealed, credentialsId)) as unknown;
    } catch {
      return undefined;
    }
  }

  private async owned(fleetId: string, credentialsId: string): Promise<CredentialsRecord> {
    const record = await this.store.getCredentials(credentialsId);
    if (!record || record.fleet_id !== fleetId) throw notFound(credentialsId);
    return record;
  }

  /** Checks every member at once and reports each bad field (SPEC §2 validation-error). */
  private validate(input: unknown): { brand: string; name: string | null; values: Record<string, string> } {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw validation([{ field: 'body', message: 'must be a JSON object' }]);
    }
    const body = input as Record<string, unknown>;
    const errors: FieldError[] = [];
    const takers = [...this.brands.values()].filter((a) => (a.credentialsFields?.length ?? 0) > 0);
    const adapter = typeof body.telematics_brand === 'string' ? this.brands.get(body.telematics_brand) : undefined;
    const fields: readonly CredentialsField[] = adapter?.credentialsFields ?? [];
    if (fields.length === 0) {
      errors.push({
        field: 'telematics_brand',
        message: `must be a telematics brand that takes credentials: ${takers.map((a) => a.brand).join(', ') || 'none'}`,
      });
    }
    let name: string | null = null;
    if (body.name !== undefined && body.name !== null) {
      if (typeof body.name !== 'string' || body.name.trim() === '' || body.name.length > NAME_MAX) {
        errors.push({ field: 'name', message: `must be a non-empty string of at most ${NAME_MAX} characters` });
      } else {
        name = body.name;
      }
    }
    const values: Record<string, string> = {};
    for (const f of fields) {
      const v = body[f.name];
      if (typeof v !== 'string' || v.trim() === '' || v.length > FIELD_MAX) {
        errors.push({ field: f.name, message: `is required: ${f.description} (a non-empty string)` });
      } else {
        values[f.name] = v;
      }
    }
    if (adapter && fields.length > 0) {
      const known = new Set(['telematics_brand', 'name', ...fields.map((f) => f.name)]);
      for (const key of Object.keys(body)) {
        if (!known.has(key)) errors.push({ field: key, message: `is not a field of ${adapter.brand} credentials` });
      }
    }
    if (errors.length > 0) throw validation(errors);
    return { brand: body.telematics_brand as string, name, values };
  }

  private view(record: CredentialsRecord): CredentialsView {
    const view: CredentialsView = {
      credentials_id: record.credentials_id,
      telematics_brand: record.telematics_brand,
      name: record.name,
      created_at: record.created_at,
    };
    const publicFields = (this.brands.get(record.telematics_brand)?.credentialsFields ?? []).filter((f) => !f.secret);
    if (publicFields.length === 0) return view;
    // Sealed under another secret key: the view still lists the credentials, without those fields.
    const opened = this.open(record.sealed_secret, record.credentials_id);
    const values: Record<string, unknown> = isStringRecord(opened) ? opened : {};
    for (const f of publicFields) {
      const v = values[f.name];
      if (typeof v === 'string') view[f.name] = v;
    }
    return view;
  }
}

const validation = problems.validation;

function isStringRecord(value: unknown): value is Record<string, string> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === 'string')
  );
}

const notFound = problems.credentialsNotFound;
