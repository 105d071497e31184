// identity/0001_init: users, roles (scopes per domain), sessions, integrations with API keys,
// and single-use tokens with their per-type limits. Credentials are stored only as SHA-256
// hashes; the one secret that must be recoverable (a user's MFA seed) is an envelope
// ciphertext (src/secrets). Soft-deleted names are freed for reuse through a `live_name` column
// that is NULL once deleted: a plain unique index then means "unique among live rows" on every
// backend (NULLs never collide), with a CHECK keeping live_name and deleted_at consistent.
import { c, createTable } from '../../schema/builder.js';
import { defineMigration } from '../../migrations/migration.js';

export const SCOPE_LEVELS = ['read', 'write', 'admin'] as const;
export const USER_STATUSES = ['active', 'disabled'] as const;
export const TOKEN_STATUSES = ['unused', 'used', 'disabled', 'abused'] as const;

const LIVE_NAME = `(deleted_at IS NULL AND live_name IS NOT NULL AND live_name = name) OR (deleted_at IS NOT NULL AND live_name IS NULL)`;

export default defineMigration(import.meta.url, {
  domain: 'identity',
  version: 1,
  name: 'init',
  ops: [
    createTable('identity_users', {
      domain: 'identity',
      columns: {
        id: c.serial(),
        username: c.varchar(128),
        display_name: c.varchar(256, { nullable: true }),
        status: c.enum(USER_STATUSES, { default: 'active' }),
        // Envelope ciphertext (cfe1.<key id>.<data>) of the TOTP seed, bound to this row.
        mfa_secret: c.text({ nullable: true }),
        version: c.int({ default: 1 }),
        created_at: c.timestamp(),
        updated_at: c.timestamp(),
      },
      primaryKey: ['id'],
      unique: { uq_identity_users_username: ['username'] },
      checks: { ck_identity_users_version: 'version >= 1' },
    }),
    createTable('identity_roles', {
      domain: 'identity',
      columns: {
        id: c.serial(),
        name: c.varchar(64),
        description: c.varchar(512, { nullable: true }),
        version: c.int({ default: 1 }),
        created_at: c.timestamp(),
        updated_at: c.timestamp(),
      },
      primaryKey: ['id'],
      unique: { uq_identity_roles_name: ['name'] },
      checks: { ck_identity_roles_version: 'version >= 1' },
    }),
    createTable('identity_role_scopes', {
      domain: 'identity',
      columns: {
        role_id: c.bigint(),
        // A domain name ("identity", "chain", …) or "*" for every domain.
        scope_domain: c.varchar(64),
        level: c.enum(SCOPE_LEVELS),
      },
      primaryKey: ['role_id', 'scope_domain'],
      // No cascade: a role's scopes are deleted through the row history, never behind its back.
      foreignKeys: { fk_identity_role_scopes_role: { columns: ['role_id'], references: 'identity_roles', refColumns: ['id'] } },
    }),
    createTable('identity_user_roles', {
      domain: 'identity',
      columns: { user_id: c.bigint(), role_id: c.bigint(), created_at: c.timestamp() },
      primaryKey: ['user_id', 'role_id'],
      indexes: { ix_identity_user_roles_role: ['role_id'] },
      foreignKeys: {
        fk_identity_user_roles_user: { columns: ['user_id'], references: 'identity_users', refColumns: ['id'] },
        fk_identity_user_roles_role: { columns: ['role_id'], references: 'identity_roles', refColumns: ['id'] },
      },
    }),
    createTable('identity_sessions', {
      domain: 'identity',
      columns: {
        id: c.hex(24),
        user_id: c.bigint(),
        secret_hash: c.hex(64),
        created_at: c.timestamp(),
        expires_at: c.timestamp(),
        revoked_at: c.timestamp({ nullable: true }),
        revoke_reason: c.varchar(256, { nullable: true }),
        version: c.int({ default: 1 }),
      },
      primaryKey: ['id'],
      indexes: { ix_identity_sessions_user: ['user_id', 'expires_at'] },
      foreignKeys: { fk_identity_sessions_user: { columns: ['user_id'], references: 'identity_users', refColumns: ['id'] } },
      checks: {
        ck_identity_sessions_expiry: 'expires_at > created_at',
        ck_identity_sessions_revoked: '(revoked_at IS NULL AND revoke_reason IS NULL) OR revoked_at IS NOT NULL',
      },
    }),
    createTable('identity_integrations', {
      domain: 'identity',
      columns: {
        id: c.serial(),
        name: c.varchar(128),
        live_name: c.varchar(128, { nullable: true }),
        version: c.int({ default: 1 }),
        created_at: c.timestamp(),
        updated_at: c.timestamp(),
        deleted_at: c.timestamp({ nullable: true }),
      },
      primaryKey: ['id'],
      unique: { uq_identity_integrations_live_name: ['live_name'] },
      checks: { ck_identity_integrations_live_name: LIVE_NAME, ck_identity_integrations_version: 'version >= 1' },
    }),
    createTable('identity_api_keys', {
      domain: 'identity',
      columns: {
        // The public part of the key (cfk_<id>_<secret>): looked up by it, never secret.
        id: c.hex(24),
        integration_id: c.bigint(),
        name: c.varchar(128),
        live_name: c.varchar(128, { nullable: true }),
        // SHA-256 over "coffer:api_key:v1:<id>:<secret>".
        secret_hash: c.hex(64),
        // ["identity:admin", "chain:read", "*:read", …]
        scopes: c.json(),
        // CIDRs or addresses; empty: any address.
        ip_allow: c.json(),
        expires_at: c.timestamp(),
        version: c.int({ default: 1 }),
        created_at: c.timestamp(),
        updated_at: c.timestamp(),
        deleted_at: c.timestamp({ nullable: true }),
      },
      primaryKey: ['id'],
      unique: { uq_identity_api_keys_live_name: ['integration_id', 'live_name'] },
      foreignKeys: {
        fk_identity_api_keys_integration: { columns: ['integration_id'], references: 'identity_integrations', refColumns: ['id'] },
      },
      checks: {
        ck_identity_api_keys_live_name: LIVE_NAME,
        ck_identity_api_keys_expiry: 'expires_at > created_at',
        ck_identity_api_keys_version: 'version >= 1',
      },
    }),
    createTable('identity_token_configs', {
      domain: 'identity',
      columns: {
        integration_id: c.bigint(),
        token_type: c.varchar(64),
        // Most tokens of this type that may be open (unused and unexpired) at once; 0 stops minting.
        max_open: c.int(),
        lifetime_seconds: c.int(),
        version: c.int({ default: 1 }),
        created_at: c.timestamp(),
        updated_at: c.timestamp(),
      },
      primaryKey: ['integration_id', 'token_type'],
      foreignKeys: {
        fk_identity_token_configs_integration: { columns: ['integration_id'], references: 'identity_integrations', refColumns: ['id'] },
      },
      checks: {
        ck_identity_token_configs_max_open: 'max_open >= 0',
        ck_identity_token_configs_lifetime: 'lifetime_seconds >= 1',
        ck_identity_token_configs_version: 'version >= 1',
      },
    }),
    createTable('identity_tokens', {
      domain: 'identity',
      columns: {
        id: c.hex(24),
        integration_id: c.bigint(),
        token_type: c.varchar(64),
        // SHA-256 over "coffer:token:v1:<id>:<secret>".
        secret_hash: c.hex(64),
        status: c.enum(TOKEN_STATUSES, { default: 'unused' }),
        expires_at: c.timestamp(),
        used_at: c.timestamp({ nullable: true }),
        created_by: c.varchar(160),
        version: c.int({ default: 1 }),
        created_at: c.timestamp(),
        updated_at: c.timestamp(),
      },
      primaryKey: ['id'],
      // Counting open tokens of a type is an index range: (integration, type, 'unused', expires_at > now).
      indexes: { ix_identity_tokens_open: ['integration_id', 'token_type', 'status', 'expires_at'] },
      foreignKeys: {
        fk_identity_tokens_integration: { columns: ['integration_id'], references: 'identity_integrations', refColumns: ['id'] },
      },
      checks: {
        ck_identity_tokens_expiry: 'expires_at > created_at',
        // used_at is set exactly when the token was consumed (a used token may later be marked abused).
        ck_identity_tokens_used:
          "(status = 'unused' AND used_at IS NULL) OR (status = 'used' AND used_at IS NOT NULL) OR status IN ('disabled', 'abused')",
        ck_identity_tokens_version: 'version >= 1',
      },
    }),
  ],
});
