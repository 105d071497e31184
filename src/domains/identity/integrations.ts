// Integrations (third parties with API access) and their API keys. A key is shown once, at
// creation, as cfk_<id>_<secret>; only the hash of the secret is stored. Keys have a name
// unique within their integration, scopes, an expiry, an IP allow-list and soft delete; every
// update is optimistic (expectedVersion) and a stale one fails with ConflictError.
import { defineQuery } from '../../db/prepared.js';
import { keysetAfter } from '../../db/keyset.js';
import { dateSchema, pageLimitSchema } from '../../util/zod-parse.js';
import { NO_EDGE_SPACE } from '../../util/text.js';
import { z } from 'zod';
import { InvalidStateTransitionError, NotFoundError, UnauthenticatedError, ForbiddenError, ValidationError } from '../../db/errors.js';
import type { Tx } from '../../db/tx.js';
import { IdentityStore, explainNoChange, type Row } from './base.js';
import { credentialMatches, newCredential, parseCredential } from './credentials.js';
import { ipAllowed, normalizeIpAllow } from './ip-allow.js';
import { normalizeScopes, ScopesSchema, type Scope } from './scopes.js';
import { DEFAULT_PAGE, parseInput, toId } from './validate.js';

export const INTEGRATIONS = 'identity_integrations';
export const API_KEYS = 'identity_api_keys';

export interface Integration {
  id: bigint;
  name: string;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  deletedAt: Date | null;
}

export interface ApiKey {
  /** The public id (the part after cfk_). */
  id: string;
  integrationId: bigint;
  name: string;
  scopes: Scope[];
  ipAllow: string[];
  expiresAt: Date;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  deletedAt: Date | null;
}

/** Who an authenticated API key speaks for. */
export interface KeyPrincipal {
  keyId: string;
  integrationId: bigint;
  integrationName: string;
  scopes: Scope[];
  expiresAt: Date;
  /** The key's IP allow-list (empty: any address). */
  ipAllow: string[];
}

const Name = z
  .string()
  .min(1)
  .max(128)
  .regex(NO_EDGE_SPACE, 'no leading or trailing spaces')
  .regex(/^[A-Za-z0-9][A-Za-z0-9 ._:@-]*$/, 'letters, digits, space and . _ : @ -, starting with a letter or digit');
const KeyId = z.string().regex(/^[0-9a-f]{24}$/, 'an API key id (24 hex characters)');
const Version = z.number().int().min(1);

/** Where a key sits in keys.list's order: the page after it starts with the next key. */
export interface KeyPosition {
  integrationId: bigint | number | string;
  createdAt: Date;
  id: string;
}
const KeyPositionSchema = z
  .object({ integrationId: z.union([z.bigint(), z.number(), z.string()]), createdAt: z.date(), id: KeyId })
  .strict();

function toIntegration(r: Row): Integration {
  return {
    id: r.id as bigint,
    name: String(r.name),
    version: Number(r.version),
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
    deletedAt: (r.deleted_at as Date | null) ?? null,
  };
}

export function toApiKey(r: Row): ApiKey {
  return {
    id: String(r.id),
    integrationId: r.integration_id as bigint,
    name: String(r.name),
    scopes: (r.scopes as Scope[]) ?? [],
    ipAllow: (r.ip_allow as string[]) ?? [],
    expiresAt: r.expires_at as Date,
    version: Number(r.version),
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
    deletedAt: (r.deleted_at as Date | null) ?? null,
  };
}

export class Integrations extends IdentityStore {
  async create(input: { name: string }): Promise<Integration> {
    const { name } = parseInput(z.object({ name: Name }).strict(), input);
    this.writable('create integration', false);
    const now = this.now();
    const row = await this.rows.insert(INTEGRATIONS, { name, live_name: name, version: 1, created_at: now, updated_at: now });
    await this.record({
      action: 'identity.integration.create',
      entity: 'integration',
      entityId: String(row.id),
      table: INTEGRATIONS,
      after: row,
    });
    return toIntegration(row);
  }

  async get(id: bigint | number | string): Promise<Integration | undefined> {
    const row = await this.rows.get(INTEGRATIONS, { id: toId(id, 'id') });
    return row ? toIntegration(row) : undefined;
  }

  /** The live integration with this name. */
  async findByName(name: string): Promise<Integration | undefined> {
    const raw = await this.tx.db.selectFrom(INTEGRATIONS).selectAll().where('live_name', '=', name).executeTakeFirst();
    // Exact match on every backend: MySQL's PAD SPACE would also answer "ops " with "ops".
    return raw && raw.name === name ? toIntegration(this.tx.codec(INTEGRATIONS).decode(raw as Row)) : undefined;
  }

  /** Integrations in id order, a page at a time: `after` the last id seen, `limit` (1–1000, default 100) of them. */
  async list(opts: { includeDeleted?: boolean; after?: bigint | number | string; limit?: number } = {}): Promise<Integration[]> {
    const limit = parseInput(pageLimitSchema, opts.limit, 'limit') ?? DEFAULT_PAGE;
    let q = this.tx.db.selectFrom(INTEGRATIONS).selectAll();
    if (!opts.includeDeleted) q = q.where('deleted_at', 'is', null);
    if (opts.after !== undefined) q = q.where('id', '>', this.tx.codec(INTEGRATIONS).encode({ id: toId(opts.after, 'after') }).id as never);
    const rows = await q.orderBy('id').limit(limit).execute();
    return rows.map((r) => toIntegration(this.tx.codec(INTEGRATIONS).decode(r as Row)));
  }

  async rename(id: bigint | number | string, input: { name: string; expectedVersion: number }): Promise<Integration> {
    const iid = toId(id, 'id');
    const v = parseInput(z.object({ name: Name, expectedVersion: Version }).strict(), input);
    this.writable('rename integration');
    const r = await this.rows.update(
      INTEGRATIONS,
      { id: iid },
      { name: v.name, live_name: v.name },
      { expectVersion: v.expectedVersion, expect: { deleted_at: null } },
    );
    if (!r.ok) explainNoChange('integration', String(iid), r.before, v.expectedVersion);
    await this.record({
      action: 'identity.integration.rename',
      entity: 'integration',
      entityId: String(iid),
      table: INTEGRATIONS,
      before: r.before,
      after: r.after,
    });
    return toIntegration(r.after);
  }

  /** Soft-deletes the integration and revokes its live keys (each with its own history). */
  async delete(id: bigint | number | string, opts: { expectedVersion?: number } = {}): Promise<Integration> {
    const iid = toId(id, 'id');
    if (opts.expectedVersion !== undefined) parseInput(Version, opts.expectedVersion, 'expectedVersion');
    this.writable('delete integration');
    const now = this.now();
    const r = await this.rows.update(
      INTEGRATIONS,
      { id: iid },
      { deleted_at: now, live_name: null },
      { expectVersion: opts.expectedVersion, expect: { deleted_at: null } },
    );
    if (!r.ok) explainNoChange('integration', String(iid), r.before, opts.expectedVersion);
    const keys = await this.tx.db
      .selectFrom(API_KEYS)
      .select('id')
      .where('integration_id', '=', this.tx.codec(API_KEYS).encode({ integration_id: iid }).integration_id as never)
      .where('deleted_at', 'is', null)
      .orderBy('id')
      .execute();
    const entries: Parameters<IdentityStore['recordMany']>[0] = [];
    for (const k of keys) {
      const kr = await this.rows.update(
        API_KEYS,
        { id: String(k.id) },
        { deleted_at: now, live_name: null },
        { expect: { deleted_at: null } },
      );
      if (kr.ok) {
        entries.push({
          action: 'identity.api_key.revoke',
          entity: 'api_key',
          entityId: String(k.id),
          table: API_KEYS,
          before: kr.before,
          after: kr.after,
          details: { reason: 'integration deleted' },
        });
      }
    }
    entries.push({
      action: 'identity.integration.delete',
      entity: 'integration',
      entityId: String(iid),
      table: INTEGRATIONS,
      before: r.before,
      after: r.after,
    });
    await this.recordMany(entries);
    return toIntegration(r.after);
  }
}

const CreateKey = z
  .object({
    integrationId: z.unknown(),
    name: Name,
    scopes: ScopesSchema.min(1),
    expiresAt: dateSchema,
    ipAllow: z.array(z.string()).max(256).default([]),
  })
  .strict();

const UpdateKey = z
  .object({
    expectedVersion: Version,
    name: Name.optional(),
    scopes: ScopesSchema.min(1).optional(),
    expiresAt: dateSchema.optional(),
    ipAllow: z.array(z.string()).max(256).optional(),
  })
  .strict();

export class ApiKeys extends IdentityStore {
  /** Creates a key; `key` is the only time the full credential exists outside its holder. */
  async create(input: {
    integrationId: bigint | number | string;
    name: string;
    scopes: string[];
    expiresAt: Date;
    ipAllow?: string[];
  }): Promise<{ key: string; record: ApiKey }> {
    const v = parseInput(CreateKey, input);
    const integrationId = toId(v.integrationId, 'integrationId');
    const scopes = normalizeScopes(v.scopes);
    const ipAllow = normalizeIpAllow(v.ipAllow);
    const now = this.now();
    if (v.expiresAt.getTime() <= now.getTime()) throw new ValidationError('expiresAt: must be in the future', { field: 'expiresAt' });
    this.writable('create API key', false);
    // Locking the integration keeps a concurrent delete from leaving a live key behind.
    const integ = await this.rows.get(INTEGRATIONS, { id: integrationId }, { lock: true });
    if (!integ) throw new NotFoundError(`integration ${integrationId} not found`, { field: 'integrationId' });
    if (integ.deleted_at) throw new InvalidStateTransitionError(`integration ${integrationId} is deleted`, { field: 'integrationId' });
    const cred = newCredential('api_key');
    const row = await this.rows.insert(API_KEYS, {
      id: cred.id,
      integration_id: integrationId,
      name: v.name,
      live_name: v.name,
      secret_hash: cred.hash,
      scopes,
      ip_allow: ipAllow,
      expires_at: new Date(v.expiresAt.getTime()),
      version: 1,
      created_at: now,
      updated_at: now,
    });
    await this.record({ action: 'identity.api_key.create', entity: 'api_key', entityId: cred.id, table: API_KEYS, after: row });
    return { key: cred.value, record: toApiKey(row) };
  }

  async get(id: string): Promise<ApiKey | undefined> {
    const kid = parseInput(KeyId, id, 'id');
    const row = await this.rows.get(API_KEYS, { id: kid });
    return row ? toApiKey(row) : undefined;
  }

  /**
   * Keys in (integration, creation time, id) order, a page at a time: `after` the last key seen
   * (its own position in that order), `limit` (1–1000, default 100) of them.
   */
  async list(
    opts: { integrationId?: bigint | number | string; includeRevoked?: boolean; after?: KeyPosition; limit?: number } = {},
  ): Promise<ApiKey[]> {
    const limit = parseInput(pageLimitSchema, opts.limit, 'limit') ?? DEFAULT_PAGE;
    const codec = this.tx.codec(API_KEYS);
    let q = this.tx.db.selectFrom(API_KEYS).selectAll();
    if (opts.integrationId !== undefined)
      q = q.where(
        'integration_id',
        '=',
        codec.encode({ integration_id: toId(opts.integrationId, 'integrationId') }).integration_id as never,
      );
    if (!opts.includeRevoked) q = q.where('deleted_at', 'is', null);
    if (opts.after !== undefined) {
      const a = parseInput(KeyPositionSchema, opts.after, 'after');
      const integrationId = toId(a.integrationId, 'after.integrationId');
      if (opts.integrationId !== undefined && integrationId !== toId(opts.integrationId, 'integrationId'))
        throw new ValidationError('after: a position in another integration', { field: 'after' });
      const e = codec.encode({ integration_id: integrationId, created_at: a.createdAt, id: a.id });
      // Within one integration the order starts at created_at, so the index range starts there.
      const cols = [
        { column: 'integration_id', value: e.integration_id },
        { column: 'created_at', value: e.created_at },
        { column: 'id', value: e.id },
      ];
      q = q.where((eb) => keysetAfter(eb, opts.integrationId !== undefined ? cols.slice(1) : cols));
    }
    const rows = await q.orderBy('integration_id').orderBy('created_at').orderBy('id').limit(limit).execute();
    return rows.map((r) => toApiKey(codec.decode(r as Row)));
  }

  /** Changes a live key if it is still at expectedVersion; ConflictError when someone changed it first. */
  async update(
    id: string,
    input: { expectedVersion: number; name?: string; scopes?: string[]; expiresAt?: Date; ipAllow?: string[] },
  ): Promise<ApiKey> {
    const kid = parseInput(KeyId, id, 'id');
    const v = parseInput(UpdateKey, input);
    const set: Row = {};
    if (v.name !== undefined) Object.assign(set, { name: v.name, live_name: v.name });
    if (v.scopes !== undefined) set.scopes = normalizeScopes(v.scopes);
    if (v.ipAllow !== undefined) set.ip_allow = normalizeIpAllow(v.ipAllow);
    if (v.expiresAt !== undefined) {
      if (v.expiresAt.getTime() <= this.now().getTime())
        throw new ValidationError('expiresAt: must be in the future', { field: 'expiresAt' });
      set.expires_at = new Date(v.expiresAt.getTime());
    }
    if (Object.keys(set).length === 0)
      throw new ValidationError('input: nothing to change (name, scopes, expiresAt or ipAllow)', { field: 'input' });
    this.writable('update API key');
    const r = await this.rows.update(API_KEYS, { id: kid }, set, { expectVersion: v.expectedVersion, expect: { deleted_at: null } });
    if (!r.ok) explainNoChange('API key', kid, r.before, v.expectedVersion);
    await this.record({
      action: 'identity.api_key.update',
      entity: 'api_key',
      entityId: kid,
      table: API_KEYS,
      before: r.before,
      after: r.after,
    });
    return toApiKey(r.after);
  }

  /** Revokes (soft-deletes) a key; its name becomes free for a new key. */
  async revoke(id: string, opts: { expectedVersion?: number } = {}): Promise<ApiKey> {
    const kid = parseInput(KeyId, id, 'id');
    if (opts.expectedVersion !== undefined) parseInput(Version, opts.expectedVersion, 'expectedVersion');
    this.writable('revoke API key');
    const r = await this.rows.update(
      API_KEYS,
      { id: kid },
      { deleted_at: this.now(), live_name: null },
      { expectVersion: opts.expectedVersion, expect: { deleted_at: null } },
    );
    if (!r.ok) explainNoChange('API key', kid, r.before, opts.expectedVersion);
    await this.record({
      action: 'identity.api_key.revoke',
      entity: 'api_key',
      entityId: kid,
      table: API_KEYS,
      before: r.before,
      after: r.after,
    });
    return toApiKey(r.after);
  }
}

/**
 * Authenticates a presented API key (works in a read transaction). Unknown, wrong, revoked and
 * expired keys, and keys of deleted integrations, all fail alike with UnauthenticatedError; a
 * valid key used from an address outside its allow-list fails with ForbiddenError.
 */
const API_KEY_BY_ID = defineQuery('identity.apiKeyById', (db, $) =>
  db
    .selectFrom(`${API_KEYS} as k`)
    .innerJoin(`${INTEGRATIONS} as i`, 'i.id', 'k.integration_id')
    .select([
      'k.id',
      'k.integration_id',
      'k.secret_hash',
      'k.scopes',
      'k.ip_allow',
      'k.expires_at',
      'k.deleted_at',
      'i.name as integration_name',
      'i.deleted_at as integration_deleted_at',
    ])
    .where('k.id', '=', $(0)),
);

export async function authenticateApiKey(tx: Tx, presented: string, opts: { ip?: string; now?: Date } = {}): Promise<KeyPrincipal> {
  const cred = parseCredential('api_key', presented);
  // Every request authenticates: a compiled, prepared query (db/prepared.ts).
  const raw = cred ? (await tx.query(API_KEY_BY_ID, [cred.id]))[0] : undefined;
  const { integration_name: integrationName, integration_deleted_at: integrationDeleted, ...keyCols } = (raw ?? {}) as Row;
  const row = raw ? tx.codec(API_KEYS).decode<Row>(keyCols) : undefined;
  const matches = credentialMatches('api_key', cred, row ? String(row.secret_hash) : undefined);
  const now = opts.now ?? new Date();
  if (!row || !matches) throw new UnauthenticatedError('invalid API key');
  if (
    row.deleted_at ||
    (integrationDeleted !== null && integrationDeleted !== undefined) ||
    (row.expires_at as Date).getTime() <= now.getTime()
  ) {
    throw new UnauthenticatedError('invalid API key');
  }
  const ipAllow = (row.ip_allow as string[]) ?? [];
  if (!ipAllowed(ipAllow, opts.ip)) throw new ForbiddenError('this API key may not be used from this address', { keyId: String(row.id) });
  return {
    keyId: String(row.id),
    integrationId: row.integration_id as bigint,
    integrationName: String(integrationName),
    scopes: (row.scopes as Scope[]) ?? [],
    expiresAt: row.expires_at as Date,
    ipAllow,
  };
}
