// Single-use tokens per integration and token type, with a configured maximum of open
// (unused, unexpired) tokens and a lifetime.
//
// Minting takes the row lock of the type's config row before counting open tokens, so
// concurrent minters queue on it and the maximum holds (captaind counted in a read transaction
// and inserted in another, so concurrent callers could exceed it). Consuming is one
// conditional UPDATE (status 'unused' and not expired) whose changed-row count decides: exactly
// one consumer wins any race. Status rules: nothing goes back to unused, abused is final (an
// abused token cannot be re-enabled), an expired token cannot be used.
import { z } from 'zod';
import { ConflictError, InvalidStateTransitionError, NotFoundError, UnauthenticatedError, ValidationError } from '../../db/errors.js';
import { toBigInt } from '../../db/codec.js';
import type { Tx } from '../../db/tx.js';
import { TOKEN_STATUSES } from './0001_init.js';
import { IdentityStore, explainNoChange, type Row } from './base.js';
import { credentialMatches, newCredential, parseCredential } from './credentials.js';
import { INTEGRATIONS } from './integrations.js';
import { parseInput, toId } from './validate.js';

export const TOKEN_CONFIGS = 'identity_token_configs';
export const TOKENS = 'identity_tokens';

export type TokenStatus = (typeof TOKEN_STATUSES)[number];

/** Allowed status changes: never back to unused; abused is final. */
export const TOKEN_TRANSITIONS: Readonly<Record<TokenStatus, readonly TokenStatus[]>> = {
  unused: ['used', 'disabled', 'abused'],
  used: ['abused'],
  disabled: ['abused'],
  abused: [],
};

export interface TokenConfig {
  integrationId: bigint;
  tokenType: string;
  maxOpen: number;
  lifetimeSeconds: number;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface Token {
  id: string;
  integrationId: bigint;
  tokenType: string;
  status: TokenStatus;
  expiresAt: Date;
  usedAt: Date | null;
  createdBy: string;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

const TokenType = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z][a-z0-9_.-]*$/, 'lowercase letters, digits and _ . -, starting with a letter');
const TokenId = z.string().regex(/^[0-9a-f]{24}$/, 'a token id (24 hex characters)');
const Version = z.number().int().min(1);

function toConfig(r: Row): TokenConfig {
  return {
    integrationId: r.integration_id as bigint,
    tokenType: String(r.token_type),
    maxOpen: Number(r.max_open),
    lifetimeSeconds: Number(r.lifetime_seconds),
    version: Number(r.version),
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
  };
}

function toToken(r: Row): Token {
  return {
    id: String(r.id),
    integrationId: r.integration_id as bigint,
    tokenType: String(r.token_type),
    status: r.status as TokenStatus,
    expiresAt: r.expires_at as Date,
    usedAt: (r.used_at as Date | null) ?? null,
    createdBy: String(r.created_by),
    version: Number(r.version),
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
  };
}

const ConfigInput = z
  .object({
    integrationId: z.unknown(),
    tokenType: TokenType,
    maxOpen: z.number().int().min(0).max(1_000_000),
    lifetimeSeconds: z
      .number()
      .int()
      .min(1)
      .max(366 * 86400),
  })
  .strict();

export class TokenConfigs extends IdentityStore {
  async create(input: {
    integrationId: bigint | number | string;
    tokenType: string;
    maxOpen: number;
    lifetimeSeconds: number;
  }): Promise<TokenConfig> {
    const v = parseInput(ConfigInput, input);
    const integrationId = toId(v.integrationId, 'integrationId');
    this.writable('create token config', false);
    await this.liveIntegration(integrationId);
    const now = this.now();
    const row = await this.rows.insert(TOKEN_CONFIGS, {
      integration_id: integrationId,
      token_type: v.tokenType,
      max_open: v.maxOpen,
      lifetime_seconds: v.lifetimeSeconds,
      version: 1,
      created_at: now,
      updated_at: now,
    });
    await this.record({
      action: 'identity.token_config.create',
      entity: 'token_config',
      entityId: `${integrationId}/${v.tokenType}`,
      table: TOKEN_CONFIGS,
      after: row,
    });
    return toConfig(row);
  }

  /**
   * Creates the type's config, or sets it to these values (HTTP PUT): under the integration's row
   * lock, which create and every other config change of the integration take first, so two
   * callers configuring the same new type one after the other create it once and then replace
   * it. The same values again change nothing (no new version, no audit entry).
   */
  async put(input: {
    integrationId: bigint | number | string;
    tokenType: string;
    maxOpen: number;
    lifetimeSeconds: number;
  }): Promise<{ created: boolean; config: TokenConfig }> {
    const v = parseInput(ConfigInput, input);
    const integrationId = toId(v.integrationId, 'integrationId');
    this.writable('configure token type', false);
    await this.liveIntegration(integrationId);
    const current = await this.rows.get(TOKEN_CONFIGS, { integration_id: integrationId, token_type: v.tokenType }, { lock: true });
    if (!current) return { created: true, config: await this.create(input) };
    const config = toConfig(current);
    if (config.maxOpen === v.maxOpen && config.lifetimeSeconds === v.lifetimeSeconds) return { created: false, config };
    return {
      created: false,
      config: await this.update(integrationId, v.tokenType, {
        expectedVersion: config.version,
        maxOpen: v.maxOpen,
        lifetimeSeconds: v.lifetimeSeconds,
      }),
    };
  }

  /** The integration, locked; NotFoundError / InvalidStateTransitionError when it is missing or deleted. */
  private async liveIntegration(integrationId: bigint): Promise<void> {
    const integ = await this.rows.get(INTEGRATIONS, { id: integrationId }, { lock: true });
    if (!integ) throw new NotFoundError(`integration ${integrationId} not found`, { field: 'integrationId' });
    if (integ.deleted_at) throw new InvalidStateTransitionError(`integration ${integrationId} is deleted`, { field: 'integrationId' });
  }

  async get(integrationId: bigint | number | string, tokenType: string): Promise<TokenConfig | undefined> {
    const row = await this.rows.get(TOKEN_CONFIGS, {
      integration_id: toId(integrationId, 'integrationId'),
      token_type: parseInput(TokenType, tokenType, 'tokenType'),
    });
    return row ? toConfig(row) : undefined;
  }

  async update(
    integrationId: bigint | number | string,
    tokenType: string,
    input: { expectedVersion: number; maxOpen?: number; lifetimeSeconds?: number },
  ): Promise<TokenConfig> {
    const iid = toId(integrationId, 'integrationId');
    const type = parseInput(TokenType, tokenType, 'tokenType');
    const v = parseInput(
      z
        .object({
          expectedVersion: Version,
          maxOpen: z.number().int().min(0).max(1_000_000).optional(),
          lifetimeSeconds: z
            .number()
            .int()
            .min(1)
            .max(366 * 86400)
            .optional(),
        })
        .strict(),
      input,
    );
    const set: Row = {};
    if (v.maxOpen !== undefined) set.max_open = v.maxOpen;
    if (v.lifetimeSeconds !== undefined) set.lifetime_seconds = v.lifetimeSeconds;
    if (!Object.keys(set).length) throw new ValidationError('input: nothing to change (maxOpen or lifetimeSeconds)', { field: 'input' });
    this.writable('update token config', false);
    const r = await this.rows.update(TOKEN_CONFIGS, { integration_id: iid, token_type: type }, set, { expectVersion: v.expectedVersion });
    if (!r.ok) explainNoChange('token config', `${iid}/${type}`, r.before, v.expectedVersion);
    await this.record({
      action: 'identity.token_config.update',
      entity: 'token_config',
      entityId: `${iid}/${type}`,
      table: TOKEN_CONFIGS,
      before: r.before,
      after: r.after,
    });
    return toConfig(r.after);
  }

  async delete(integrationId: bigint | number | string, tokenType: string, opts: { expectedVersion?: number } = {}): Promise<void> {
    const iid = toId(integrationId, 'integrationId');
    const type = parseInput(TokenType, tokenType, 'tokenType');
    if (opts.expectedVersion !== undefined) parseInput(Version, opts.expectedVersion, 'expectedVersion');
    this.writable('delete token config', false);
    const r = await this.rows.delete(TOKEN_CONFIGS, { integration_id: iid, token_type: type }, { expectVersion: opts.expectedVersion });
    if (!r.ok) explainNoChange('token config', `${iid}/${type}`, r.before, opts.expectedVersion);
    await this.record({
      action: 'identity.token_config.delete',
      entity: 'token_config',
      entityId: `${iid}/${type}`,
      table: TOKEN_CONFIGS,
      before: r.before,
    });
  }
}

export class Tokens extends IdentityStore {
  #encode(col: string, v: unknown): never {
    return this.tx.codec(TOKENS).encode({ [col]: v })[col] as never;
  }

  /** Open tokens (unused and not yet expired) of a type. */
  async countOpen(integrationId: bigint | number | string, tokenType: string): Promise<number> {
    const iid = toId(integrationId, 'integrationId');
    const type = parseInput(TokenType, tokenType, 'tokenType');
    const r = await this.tx.db
      .selectFrom(TOKENS)
      .select((eb) => eb.fn.countAll().as('n'))
      .where('integration_id', '=', this.#encode('integration_id', iid))
      .where('token_type', '=', type)
      .where('status', '=', 'unused')
      .where('expires_at', '>', this.#encode('expires_at', this.now()))
      .executeTakeFirstOrThrow();
    return Number(toBigInt((r as { n: unknown }).n));
  }

  /**
   * Mints a token if fewer than the configured maximum are open. `token` is shown once.
   * ConflictError (details.reason "token_limit") when the maximum is reached.
   */
  async mint(input: { integrationId: bigint | number | string; tokenType: string }): Promise<{ token: string; record: Token }> {
    const v = parseInput(z.object({ integrationId: z.unknown(), tokenType: TokenType }).strict(), input);
    const iid = toId(v.integrationId, 'integrationId');
    this.writable('mint token', false);
    // The config row is the mint lock: concurrent minters of this type queue here, and each
    // counts only after the previous one committed.
    const config = await this.rows.get(TOKEN_CONFIGS, { integration_id: iid, token_type: v.tokenType }, { lock: true });
    if (!config) throw new NotFoundError(`no token config for integration ${iid} and type ${v.tokenType}`, { field: 'tokenType' });
    const integ = await this.rows.get(INTEGRATIONS, { id: iid });
    if (!integ || integ.deleted_at) throw new InvalidStateTransitionError(`integration ${iid} is deleted`, { field: 'integrationId' });
    const max = Number(config.max_open);
    const open = await this.countOpen(iid, v.tokenType);
    if (open >= max) {
      throw new ConflictError(`open token limit reached for type ${v.tokenType} (${max})`, {
        reason: 'token_limit',
        max,
        open,
        field: 'tokenType',
      });
    }
    const now = this.now();
    const cred = newCredential('token');
    const row = await this.rows.insert(TOKENS, {
      id: cred.id,
      integration_id: iid,
      token_type: v.tokenType,
      secret_hash: cred.hash,
      status: 'unused',
      expires_at: new Date(now.getTime() + Number(config.lifetime_seconds) * 1000),
      used_at: null,
      created_by: `${this.actor.type}:${this.actor.id}`,
      version: 1,
      created_at: now,
      updated_at: now,
    });
    await this.record({ action: 'identity.token.mint', entity: 'token', entityId: cred.id, table: TOKENS, after: row });
    return { token: cred.value, record: toToken(row) };
  }

  async get(id: string): Promise<Token | undefined> {
    const row = await this.rows.get(TOKENS, { id: parseInput(TokenId, id, 'id') });
    return row ? toToken(row) : undefined;
  }

  /**
   * Consumes a presented token of `tokenType` (and of `integrationId` when given): succeeds
   * exactly once. Unknown or wrong tokens fail with UnauthenticatedError; a token already
   * used, disabled, abused or expired with InvalidStateTransitionError.
   */
  async consume(presented: string, opts: { tokenType: string; integrationId?: bigint | number | string }): Promise<Token> {
    const type = parseInput(TokenType, opts.tokenType, 'tokenType');
    const iid = opts.integrationId === undefined ? undefined : toId(opts.integrationId, 'integrationId');
    this.writable('consume token', false);
    const cred = parseCredential('token', presented);
    const stored = cred ? await this.rows.get(TOKENS, { id: cred.id }) : undefined;
    const matches = credentialMatches('token', cred, stored ? String(stored.secret_hash) : undefined);
    if (!stored || !matches || stored.token_type !== type || (iid !== undefined && stored.integration_id !== iid)) {
      throw new UnauthenticatedError('invalid token');
    }
    // A deleted integration's tokens are dead, like its keys.
    const integ = await this.rows.get(INTEGRATIONS, { id: stored.integration_id });
    if (!integ || integ.deleted_at) throw new UnauthenticatedError('invalid token');
    const now = this.now();
    const id = cred!.id;
    const r = await this.rows.update(
      TOKENS,
      { id },
      { status: 'used', used_at: now },
      { expect: { status: 'unused' }, where: (eb) => eb('expires_at', '>', this.#encode('expires_at', now)) },
    );
    if (!r.ok) this.#explain(id, r.before, 'used', now);
    await this.record({ action: 'identity.token.consume', entity: 'token', entityId: id, table: TOKENS, before: r.before, after: r.after });
    return toToken(r.after);
  }

  /** Changes a token's status under the transition rules (and expectedVersion when given). */
  async setStatus(id: string, status: TokenStatus, opts: { expectedVersion?: number } = {}): Promise<Token> {
    const tid = parseInput(TokenId, id, 'id');
    const target = parseInput(z.enum(TOKEN_STATUSES), status, 'status');
    if (opts.expectedVersion !== undefined) parseInput(Version, opts.expectedVersion, 'expectedVersion');
    const from = (Object.keys(TOKEN_TRANSITIONS) as TokenStatus[]).filter((s) => TOKEN_TRANSITIONS[s].includes(target));
    if (from.length === 0) throw new InvalidStateTransitionError(`no token may become ${target}`, { field: 'status' });
    this.writable('set token status', false);
    const now = this.now();
    const set: Row = { status: target };
    if (target === 'used') set.used_at = now;
    const r = await this.rows.update(TOKENS, { id: tid }, set, {
      expectVersion: opts.expectedVersion,
      where: (eb) => {
        const allowed = eb('status', 'in', from);
        return target === 'used' ? eb.and([allowed, eb('expires_at', '>', this.#encode('expires_at', now))]) : allowed;
      },
    });
    if (!r.ok) {
      if (r.before && opts.expectedVersion !== undefined && Number(r.before.version) !== opts.expectedVersion)
        explainNoChange('token', tid, r.before, opts.expectedVersion);
      this.#explain(tid, r.before, target, now);
    }
    await this.record({ action: 'identity.token.status', entity: 'token', entityId: tid, table: TOKENS, before: r.before, after: r.after });
    return toToken(r.after);
  }

  #explain(id: string, before: Row | undefined, target: TokenStatus, now: Date): never {
    if (!before) throw new NotFoundError(`token ${id} not found`, { id });
    const status = before.status as TokenStatus;
    if (!TOKEN_TRANSITIONS[status].includes(target)) {
      throw new InvalidStateTransitionError(`token ${id} is ${status} and cannot become ${target}`, { id, from: status, to: target });
    }
    if (target === 'used' && (before.expires_at as Date).getTime() <= now.getTime()) {
      throw new InvalidStateTransitionError(`token ${id} expired at ${(before.expires_at as Date).toISOString()} and cannot be used`, {
        id,
        from: status,
        to: target,
      });
    }
    throw new InvalidStateTransitionError(`token ${id} cannot become ${target}`, { id, from: status, to: target });
  }
}

/**
 * A read-only look at a presented token (no state change): is it valid now? It refuses what
 * consume would refuse, with the same errors (a deleted integration's token is invalid).
 */
export async function inspectToken(tx: Tx, presented: string, opts: { now?: Date } = {}): Promise<Token> {
  const cred = parseCredential('token', presented);
  const raw = cred ? await tx.db.selectFrom(TOKENS).selectAll().where('id', '=', cred.id).executeTakeFirst() : undefined;
  const row = raw ? tx.codec(TOKENS).decode<Row>(raw as Row) : undefined;
  if (!credentialMatches('token', cred, row ? String(row.secret_hash) : undefined) || !row) throw new UnauthenticatedError('invalid token');
  // As in consume: a deleted integration's tokens are dead, so inspecting one must not call it valid.
  const integ = await tx.db
    .selectFrom(INTEGRATIONS)
    .select('deleted_at')
    .where('id', '=', tx.codec(INTEGRATIONS).encode({ id: row.integration_id }).id as never)
    .executeTakeFirst();
  if (!integ || integ.deleted_at) throw new UnauthenticatedError('invalid token');
  const t = toToken(row);
  if (t.status !== 'unused' || t.expiresAt.getTime() <= (opts.now ?? new Date()).getTime()) {
    throw new InvalidStateTransitionError(
      `token ${t.id} is not usable (${t.expiresAt.getTime() <= (opts.now ?? new Date()).getTime() ? 'expired' : t.status})`,
      { id: t.id },
    );
  }
  return t;
}
