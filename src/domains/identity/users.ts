// Users, roles and sessions (DALP's identity domain). A user has roles; a role grants one
// scope level per domain; a user's scopes are the union of their roles'. Sessions are bearer
// credentials (cfs_<id>_<secret>, stored hashed) that expire and can be revoked. A user's MFA
// seed is the one recoverable secret here: an envelope ciphertext bound to the user's row.
import { z } from 'zod';
import { InvalidStateTransitionError, NotFoundError, UnauthenticatedError, ValidationError } from '../../db/errors.js';
import type { Tx } from '../../db/tx.js';
import { defaultKeyring, type Keyring } from '../../secrets/envelope.js';
import { SCOPE_LEVELS, USER_STATUSES } from './0001_init.js';
import { IdentityStore, explainNoChange, type Row } from './base.js';
import { credentialMatches, newCredential, parseCredential } from './credentials.js';
import { normalizeScopes, ScopesSchema, type Scope, type ScopeLevel } from './scopes.js';
import { pageLimitSchema } from '../../util/zod-parse.js';
import { DEFAULT_PAGE, parseInput, toId } from './validate.js';

export const USERS = 'identity_users';
export const ROLES = 'identity_roles';
export const ROLE_SCOPES = 'identity_role_scopes';
export const USER_ROLES = 'identity_user_roles';
export const SESSIONS = 'identity_sessions';

export type UserStatus = (typeof USER_STATUSES)[number];

export interface User {
  id: bigint;
  username: string;
  displayName: string | null;
  status: UserStatus;
  hasMfa: boolean;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface Role {
  id: bigint;
  name: string;
  description: string | null;
  scopes: Scope[];
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface Session {
  id: string;
  userId: bigint;
  createdAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  revokeReason: string | null;
}

export interface SessionPrincipal {
  session: Session;
  user: User;
  scopes: Scope[];
}

const Username = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]*$/, 'letters, digits and . _ @ + -, starting with a letter or digit');
const DisplayName = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[^\u0000-\u001f\u007f]+$/, 'no control characters');
const RoleName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z][a-z0-9_.-]*$/, 'lowercase letters, digits and _ . -, starting with a letter');
const Version = z.number().int().min(1);
const SessionId = z.string().regex(/^[0-9a-f]{24}$/, 'a session id (24 hex characters)');

function toUser(r: Row): User {
  return {
    id: r.id as bigint,
    username: String(r.username),
    displayName: (r.display_name as string | null) ?? null,
    status: r.status as UserStatus,
    hasMfa: r.mfa_secret !== null && r.mfa_secret !== undefined,
    version: Number(r.version),
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
  };
}

function toSession(r: Row): Session {
  return {
    id: String(r.id),
    userId: r.user_id as bigint,
    createdAt: r.created_at as Date,
    expiresAt: r.expires_at as Date,
    revokedAt: (r.revoked_at as Date | null) ?? null,
    revokeReason: (r.revoke_reason as string | null) ?? null,
  };
}

function toRole(r: Row, scopes: Scope[]): Role {
  return {
    id: r.id as bigint,
    name: String(r.name),
    description: (r.description as string | null) ?? null,
    scopes,
    version: Number(r.version),
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
  };
}

/** The scopes of each of the roles, in one statement (a role without scopes maps to []). */
async function rolesScopes(tx: Tx, roleIds: bigint[]): Promise<Map<bigint, Scope[]>> {
  const out = new Map<bigint, Scope[]>(roleIds.map((id) => [id, []]));
  if (!roleIds.length) return out;
  const codec = tx.codec(ROLE_SCOPES);
  const rows = await tx.db
    .selectFrom(ROLE_SCOPES)
    .select(['role_id', 'scope_domain', 'level'])
    .where(
      'role_id',
      'in',
      roleIds.map((id) => codec.encode({ role_id: id }).role_id as never),
    )
    .orderBy('role_id')
    .orderBy('scope_domain')
    .execute();
  for (const raw of rows) {
    const r = codec.decode(raw as Row);
    out.get(r.role_id as bigint)?.push(`${String(r.scope_domain)}:${String(r.level)}`);
  }
  return out;
}

async function roleScopes(tx: Tx, roleId: bigint): Promise<Scope[]> {
  return (await rolesScopes(tx, [roleId])).get(roleId) ?? [];
}

/** The union of the scopes of a user's roles (one level per domain, the highest). */
export async function userScopes(tx: Tx, userId: bigint): Promise<Scope[]> {
  const rows = await tx.db
    .selectFrom(`${USER_ROLES} as ur`)
    .innerJoin(`${ROLE_SCOPES} as s`, 's.role_id', 'ur.role_id')
    .select(['s.scope_domain', 's.level'])
    .where('ur.user_id', '=', tx.codec(USER_ROLES).encode({ user_id: userId }).user_id as never)
    .execute();
  return normalizeScopes(rows.map((r) => `${String(r.scope_domain)}:${String(r.level)}`));
}

export class Users extends IdentityStore {
  #keyring(): Keyring {
    return this.opts.keyring ?? defaultKeyring();
  }

  async create(input: { username: string; displayName?: string }): Promise<User> {
    const v = parseInput(z.object({ username: Username, displayName: DisplayName.optional() }).strict(), input);
    this.writable('create user', false);
    const now = this.now();
    const row = await this.rows.insert(USERS, {
      username: v.username,
      display_name: v.displayName ?? null,
      status: 'active',
      version: 1,
      created_at: now,
      updated_at: now,
    });
    await this.record({ action: 'identity.user.create', entity: 'user', entityId: String(row.id), table: USERS, after: row });
    return toUser(row);
  }

  async get(id: bigint | number | string): Promise<User | undefined> {
    const row = await this.rows.get(USERS, { id: toId(id, 'id') });
    return row ? toUser(row) : undefined;
  }

  async findByUsername(username: string): Promise<User | undefined> {
    const raw = await this.tx.db.selectFrom(USERS).selectAll().where('username', '=', username).executeTakeFirst();
    return raw ? toUser(this.tx.codec(USERS).decode(raw as Row)) : undefined;
  }

  /** Changes display name or status; disabling a user revokes their open sessions. */
  async update(
    id: bigint | number | string,
    input: { expectedVersion: number; displayName?: string | null; status?: UserStatus },
  ): Promise<User> {
    const uid = toId(id, 'id');
    const v = parseInput(
      z
        .object({ expectedVersion: Version, displayName: DisplayName.nullable().optional(), status: z.enum(USER_STATUSES).optional() })
        .strict(),
      input,
    );
    const set: Row = {};
    if (v.displayName !== undefined) set.display_name = v.displayName;
    if (v.status !== undefined) set.status = v.status;
    if (!Object.keys(set).length) throw new ValidationError('input: nothing to change (displayName or status)', { field: 'input' });
    this.writable('update user');
    const r = await this.rows.update(USERS, { id: uid }, set, { expectVersion: v.expectedVersion });
    if (!r.ok) explainNoChange('user', String(uid), r.before, v.expectedVersion);
    const entries: Parameters<IdentityStore['recordMany']>[0] = [];
    if (v.status === 'disabled' && r.before.status !== 'disabled') entries.push(...(await this.#revokeSessions(uid, 'user disabled')));
    entries.push({ action: 'identity.user.update', entity: 'user', entityId: String(uid), table: USERS, before: r.before, after: r.after });
    await this.recordMany(entries);
    return toUser(r.after);
  }

  async #revokeSessions(userId: bigint, reason: string): Promise<Parameters<IdentityStore['recordMany']>[0]> {
    const now = this.now();
    const open = await this.tx.db
      .selectFrom(SESSIONS)
      .select('id')
      .where('user_id', '=', this.tx.codec(SESSIONS).encode({ user_id: userId }).user_id as never)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', this.tx.codec(SESSIONS).encode({ expires_at: now }).expires_at as never)
      .orderBy('id')
      .execute();
    const out: Parameters<IdentityStore['recordMany']>[0] = [];
    for (const s of open) {
      const r = await this.rows.update(
        SESSIONS,
        { id: String(s.id) },
        { revoked_at: now, revoke_reason: reason },
        { expect: { revoked_at: null } },
      );
      if (r.ok)
        out.push({
          action: 'identity.session.revoke',
          entity: 'session',
          entityId: String(s.id),
          table: SESSIONS,
          before: r.before,
          after: r.after,
          details: { reason },
        });
    }
    return out;
  }

  /** Sets (or with null clears) the user's MFA seed, stored encrypted and bound to this row. */
  async setMfaSecret(id: bigint | number | string, secret: Buffer | string | null, opts: { expectedVersion?: number } = {}): Promise<User> {
    const uid = toId(id, 'id');
    if (
      secret !== null &&
      !(typeof secret === 'string' ? secret.length > 0 && secret.length <= 1024 : secret.length > 0 && secret.length <= 1024)
    ) {
      throw new ValidationError('secret: must be 1-1024 bytes', { field: 'secret' });
    }
    if (opts.expectedVersion !== undefined) parseInput(Version, opts.expectedVersion, 'expectedVersion');
    this.writable('set MFA secret');
    const sealed = secret === null ? null : this.#keyring().encrypt(secret, { table: USERS, column: 'mfa_secret', row: { id: uid } });
    const r = await this.rows.update(USERS, { id: uid }, { mfa_secret: sealed }, { expectVersion: opts.expectedVersion });
    if (!r.ok) explainNoChange('user', String(uid), r.before, opts.expectedVersion);
    await this.record({
      action: secret === null ? 'identity.user.mfa_clear' : 'identity.user.mfa_set',
      entity: 'user',
      entityId: String(uid),
      table: USERS,
      before: r.before,
      after: r.after,
    });
    return toUser(r.after);
  }

  /** The user's MFA seed, decrypted (null when none). DecryptionError when the key is wrong or missing. */
  async mfaSecret(id: bigint | number | string): Promise<Buffer | null> {
    const uid = toId(id, 'id');
    const row = await this.rows.get(USERS, { id: uid });
    if (!row) throw new NotFoundError(`user ${uid} not found`, { id: String(uid) });
    if (row.mfa_secret === null || row.mfa_secret === undefined) return null;
    return this.#keyring().decrypt(String(row.mfa_secret), { table: USERS, column: 'mfa_secret', row: { id: uid } });
  }

  async grantRole(userId: bigint | number | string, roleId: bigint | number | string): Promise<void> {
    const uid = toId(userId, 'userId');
    const rid = toId(roleId, 'roleId');
    this.writable('grant role');
    const user = await this.rows.get(USERS, { id: uid });
    if (!user) throw new NotFoundError(`user ${uid} not found`, { field: 'userId' });
    const role = await this.rows.get(ROLES, { id: rid });
    if (!role) throw new NotFoundError(`role ${rid} not found`, { field: 'roleId' });
    const row = await this.rows.insert(USER_ROLES, { user_id: uid, role_id: rid, created_at: this.now() });
    await this.record({
      action: 'identity.user.grant_role',
      entity: 'user',
      entityId: String(uid),
      table: USER_ROLES,
      after: row,
      details: { role: String(role.name) },
    });
  }

  async revokeRole(userId: bigint | number | string, roleId: bigint | number | string): Promise<void> {
    const uid = toId(userId, 'userId');
    const rid = toId(roleId, 'roleId');
    this.writable('revoke role');
    const r = await this.rows.delete(USER_ROLES, { user_id: uid, role_id: rid });
    if (!r.ok) throw new NotFoundError(`user ${uid} does not have role ${rid}`, { field: 'roleId' });
    await this.record({ action: 'identity.user.revoke_role', entity: 'user', entityId: String(uid), table: USER_ROLES, before: r.before });
  }

  async scopes(userId: bigint | number | string): Promise<Scope[]> {
    return userScopes(this.tx, toId(userId, 'userId'));
  }
}

const RoleInput = z.object({ name: RoleName, description: z.string().max(512).optional(), scopes: ScopesSchema }).strict();

export class Roles extends IdentityStore {
  async #toRole(r: Row): Promise<Role> {
    return toRole(r, await roleScopes(this.tx, r.id as bigint));
  }

  async create(input: { name: string; description?: string; scopes: string[] }): Promise<Role> {
    const v = parseInput(RoleInput, input);
    const scopes = normalizeScopes(v.scopes);
    this.writable('create role', false);
    const now = this.now();
    const row = await this.rows.insert(ROLES, {
      name: v.name,
      description: v.description ?? null,
      version: 1,
      created_at: now,
      updated_at: now,
    });
    for (const s of scopes) {
      const i = s.lastIndexOf(':');
      await this.rows.insert(ROLE_SCOPES, { role_id: row.id, scope_domain: s.slice(0, i), level: s.slice(i + 1) as ScopeLevel });
    }
    await this.record({
      action: 'identity.role.create',
      entity: 'role',
      entityId: String(row.id),
      table: ROLES,
      after: row,
      details: { scopes },
    });
    return this.#toRole(row);
  }

  async get(id: bigint | number | string): Promise<Role | undefined> {
    const row = await this.rows.get(ROLES, { id: toId(id, 'id') });
    return row ? this.#toRole(row) : undefined;
  }

  async findByName(name: string): Promise<Role | undefined> {
    const raw = await this.tx.db.selectFrom(ROLES).selectAll().where('name', '=', name).executeTakeFirst();
    return raw ? this.#toRole(this.tx.codec(ROLES).decode(raw as Row)) : undefined;
  }

  /** Roles in name order, a page at a time: `after` the last name seen, `limit` (1–1000, default 100) of them. */
  async list(opts: { after?: string; limit?: number } = {}): Promise<Role[]> {
    const limit = parseInput(pageLimitSchema, opts.limit, 'limit') ?? DEFAULT_PAGE;
    let q = this.tx.db.selectFrom(ROLES).selectAll();
    if (opts.after !== undefined) q = q.where('name', '>', parseInput(RoleName, opts.after, 'after'));
    const rows = (await q.orderBy('name').limit(limit).execute()).map((r) => this.tx.codec(ROLES).decode(r as Row));
    // The page's scopes in one statement, not one per role.
    const scopes = await rolesScopes(
      this.tx,
      rows.map((r) => r.id as bigint),
    );
    return rows.map((r) => toRole(r, scopes.get(r.id as bigint) ?? []));
  }

  /** Replaces the role's scopes if it is still at expectedVersion. */
  async setScopes(id: bigint | number | string, input: { expectedVersion: number; scopes: string[] }): Promise<Role> {
    const rid = toId(id, 'id');
    const v = parseInput(z.object({ expectedVersion: Version, scopes: ScopesSchema }).strict(), input);
    const scopes = normalizeScopes(v.scopes);
    this.writable('set role scopes');
    // Bumping the role's version first takes its row lock and settles the race.
    const r = await this.rows.update(ROLES, { id: rid }, {}, { expectVersion: v.expectedVersion });
    if (!r.ok) explainNoChange('role', String(rid), r.before, v.expectedVersion);
    const current = new Map((await roleScopes(this.tx, rid)).map((s) => [s.slice(0, s.lastIndexOf(':')), s.slice(s.lastIndexOf(':') + 1)]));
    const wanted = new Map(scopes.map((s) => [s.slice(0, s.lastIndexOf(':')), s.slice(s.lastIndexOf(':') + 1)]));
    for (const [domain, level] of current) {
      if (!wanted.has(domain)) await this.rows.delete(ROLE_SCOPES, { role_id: rid, scope_domain: domain });
      else if (wanted.get(domain) !== level)
        await this.rows.update(ROLE_SCOPES, { role_id: rid, scope_domain: domain }, { level: wanted.get(domain) });
    }
    for (const [domain, level] of wanted)
      if (!current.has(domain)) await this.rows.insert(ROLE_SCOPES, { role_id: rid, scope_domain: domain, level });
    await this.record({
      action: 'identity.role.set_scopes',
      entity: 'role',
      entityId: String(rid),
      table: ROLES,
      before: r.before,
      after: r.after,
      details: { before: [...current].map(([d, l]) => `${d}:${l}`), after: scopes },
    });
    return this.#toRole(r.after);
  }

  /** Deletes a role, its scopes and its assignments (each through the row history). */
  async delete(id: bigint | number | string, opts: { expectedVersion?: number } = {}): Promise<void> {
    const rid = toId(id, 'id');
    if (opts.expectedVersion !== undefined) parseInput(Version, opts.expectedVersion, 'expectedVersion');
    this.writable('delete role');
    const role = await this.rows.get(ROLES, { id: rid }, { lock: true });
    if (!role) throw new NotFoundError(`role ${rid} not found`, { id: String(rid) });
    if (opts.expectedVersion !== undefined && Number(role.version) !== opts.expectedVersion)
      explainNoChange('role', String(rid), role, opts.expectedVersion);
    const enc = this.tx.codec(USER_ROLES).encode({ role_id: rid }).role_id as never;
    const holders = await this.tx.db.selectFrom(USER_ROLES).select('user_id').where('role_id', '=', enc).orderBy('user_id').execute();
    for (const h of holders) await this.rows.delete(USER_ROLES, { user_id: h.user_id, role_id: rid });
    const scopes = await this.tx.db
      .selectFrom(ROLE_SCOPES)
      .select('scope_domain')
      .where('role_id', '=', enc)
      .orderBy('scope_domain')
      .execute();
    for (const s of scopes) await this.rows.delete(ROLE_SCOPES, { role_id: rid, scope_domain: String(s.scope_domain) });
    const r = await this.rows.delete(ROLES, { id: rid }, { expectVersion: opts.expectedVersion });
    if (!r.ok) explainNoChange('role', String(rid), r.before, opts.expectedVersion);
    await this.record({
      action: 'identity.role.delete',
      entity: 'role',
      entityId: String(rid),
      table: ROLES,
      before: r.before,
      details: { holders: holders.length },
    });
  }
}

export class Sessions extends IdentityStore {
  /** Opens a session for an active user; `token` is shown once. */
  async create(userId: bigint | number | string, opts: { ttlSeconds: number }): Promise<{ token: string; session: Session }> {
    const uid = toId(userId, 'userId');
    const ttl = parseInput(
      z
        .number()
        .int()
        .min(60)
        .max(30 * 86400),
      opts.ttlSeconds,
      'ttlSeconds',
    );
    this.writable('create session', false);
    const user = await this.rows.get(USERS, { id: uid }, { lock: true });
    if (!user) throw new NotFoundError(`user ${uid} not found`, { field: 'userId' });
    if (user.status !== 'active') throw new InvalidStateTransitionError(`user ${uid} is ${String(user.status)}`, { field: 'userId' });
    const now = this.now();
    const cred = newCredential('session');
    const row = await this.rows.insert(SESSIONS, {
      id: cred.id,
      user_id: uid,
      secret_hash: cred.hash,
      created_at: now,
      expires_at: new Date(now.getTime() + ttl * 1000),
      revoked_at: null,
      revoke_reason: null,
      version: 1,
    });
    await this.record({ action: 'identity.session.create', entity: 'session', entityId: cred.id, table: SESSIONS, after: row });
    return { token: cred.value, session: toSession(row) };
  }

  async revoke(id: string, reason = 'revoked'): Promise<Session> {
    const sid = parseInput(SessionId, id, 'id');
    const why = parseInput(z.string().min(1).max(256), reason, 'reason');
    this.writable('revoke session');
    const r = await this.rows.update(
      SESSIONS,
      { id: sid },
      { revoked_at: this.now(), revoke_reason: why },
      { expect: { revoked_at: null } },
    );
    if (!r.ok) {
      if (!r.before) throw new NotFoundError(`session ${sid} not found`, { id: sid });
      throw new InvalidStateTransitionError(`session ${sid} is already revoked`, { id: sid });
    }
    await this.record({
      action: 'identity.session.revoke',
      entity: 'session',
      entityId: sid,
      table: SESSIONS,
      before: r.before,
      after: r.after,
      details: { reason: why },
    });
    return toSession(r.after);
  }

  /** Revokes every open session of a user; returns how many. */
  async revokeAll(userId: bigint | number | string, reason = 'revoked'): Promise<number> {
    const uid = toId(userId, 'userId');
    const why = parseInput(z.string().min(1).max(256), reason, 'reason');
    this.writable('revoke sessions');
    const now = this.now();
    const open = await this.tx.db
      .selectFrom(SESSIONS)
      .select('id')
      .where('user_id', '=', this.tx.codec(SESSIONS).encode({ user_id: uid }).user_id as never)
      .where('revoked_at', 'is', null)
      .orderBy('id')
      .execute();
    const entries: Parameters<IdentityStore['recordMany']>[0] = [];
    for (const s of open) {
      const r = await this.rows.update(
        SESSIONS,
        { id: String(s.id) },
        { revoked_at: now, revoke_reason: why },
        { expect: { revoked_at: null } },
      );
      if (r.ok)
        entries.push({
          action: 'identity.session.revoke',
          entity: 'session',
          entityId: String(s.id),
          table: SESSIONS,
          before: r.before,
          after: r.after,
          details: { reason: why },
        });
    }
    await this.recordMany(entries);
    return entries.length;
  }
}

/**
 * Authenticates a presented session token (works in a read transaction): unknown, wrong,
 * expired and revoked sessions, and sessions of disabled users, fail alike.
 */
export async function authenticateSession(tx: Tx, presented: string, opts: { now?: Date } = {}): Promise<SessionPrincipal> {
  const cred = parseCredential('session', presented);
  const raw = cred ? await tx.db.selectFrom(SESSIONS).selectAll().where('id', '=', cred.id).executeTakeFirst() : undefined;
  const row = raw ? tx.codec(SESSIONS).decode<Row>(raw as Row) : undefined;
  const matches = credentialMatches('session', cred, row ? String(row.secret_hash) : undefined);
  const now = opts.now ?? new Date();
  if (!row || !matches || row.revoked_at || (row.expires_at as Date).getTime() <= now.getTime())
    throw new UnauthenticatedError('invalid session');
  const userRaw = await tx.db
    .selectFrom(USERS)
    .selectAll()
    .where('id', '=', tx.codec(USERS).encode({ id: row.user_id }).id as never)
    .executeTakeFirst();
  const user = userRaw ? toUser(tx.codec(USERS).decode(userRaw as Row)) : undefined;
  if (!user || user.status !== 'active') throw new UnauthenticatedError('invalid session');
  return { session: toSession(row), user, scopes: await userScopes(tx, user.id) };
}

export { SCOPE_LEVELS };
