// Least privilege per domain on PostgreSQL: one role per domain (<prefix>_<domain>) with
// grants on that domain's tables only. Every domain records its changes, so every role may
// INSERT into the audit log and the row history and advance the audit head, but no role may
// UPDATE, DELETE or TRUNCATE them (the audit domain's role may also read them, for
// `coffer audit verify`). Every role may read the migration history, so a service running as
// it can open Coffer with migrations verified. Applying is idempotent and converges: each
// role's table privileges are revoked and granted afresh.
import { sql } from 'kysely';
import type { Coffer } from '../../db/store.js';
import { ConfigError, ValidationError } from '../../db/errors.js';
import { HISTORY_TABLE } from '../../migrations/history.js';
import { tablePolicy } from '../audit/policy.js';

export interface DomainRole {
  role: string;
  domain: string;
  /** table → privileges granted on it. */
  grants: Record<string, string>;
}

export interface RolesPlan {
  database: string;
  schema: string;
  roles: DomainRole[];
  statements: string[];
}

const AUDIT_LOG_TABLES = ['audit_log', 'audit_row_history'];
const AUDIT_HEAD = 'audit_head';

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

export function roleName(prefix: string, domain: string): string {
  return `${prefix}_${domain}`;
}

/** What each domain's role may do, from the logical schema alone. */
export function domainRoles(coffer: Coffer, prefix = 'coffer'): DomainRole[] {
  if (!/^[a-z][a-z0-9_]{0,39}$/.test(prefix))
    throw new ValidationError('prefix: lowercase letters, digits and _, starting with a letter, at most 40', { field: 'prefix' });
  const domains = [...new Set([...coffer.schema.tables.values()].map((t) => t.domain))].sort();
  const hasAudit = AUDIT_LOG_TABLES.every((t) => coffer.schema.tables.has(t)) && coffer.schema.tables.has(AUDIT_HEAD);
  return domains.map((domain) => {
    const grants: Record<string, string> = {};
    for (const t of [...coffer.schema.tables.values()].filter((x) => x.domain === domain).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = tablePolicy(t.name);
      if (t.name === HISTORY_TABLE) grants[t.name] = 'SELECT';
      else if (AUDIT_LOG_TABLES.includes(t.name)) grants[t.name] = 'SELECT, INSERT';
      else if (t.name === AUDIT_HEAD) grants[t.name] = 'SELECT, UPDATE (seq, hash)';
      else if (p?.kind === 'append_only') grants[t.name] = 'SELECT, INSERT';
      else grants[t.name] = 'SELECT, INSERT, UPDATE, DELETE';
    }
    if (coffer.schema.tables.has(HISTORY_TABLE)) grants[HISTORY_TABLE] ??= 'SELECT';
    if (hasAudit && domain !== 'audit') {
      for (const t of AUDIT_LOG_TABLES) grants[t] = 'INSERT';
      grants[AUDIT_HEAD] = 'SELECT, UPDATE (seq, hash)';
    }
    return { role: roleName(prefix, domain), domain, grants };
  });
}

/** The statements that create (if missing) and grant each role; `login` lets the roles log in. */
export async function planRoles(coffer: Coffer, opts: { prefix?: string; login?: boolean } = {}): Promise<RolesPlan> {
  if (coffer.dialect !== 'postgres') {
    throw new ConfigError(
      `per-domain roles are created on PostgreSQL only (this database is ${coffer.engine.label}); on MySQL/MariaDB grant per table by hand (docs/audit.md)`,
      { field: 'database.url' },
    );
  }
  const where = await coffer.read(
    async (tx) =>
      (await sql<{ db: string; schema: string }>`select current_database() as db, current_schema() as schema`.execute(tx.db)).rows[0]!,
    { op: 'identity.roles' },
  );
  const roles = domainRoles(coffer, opts.prefix);
  const statements: string[] = [];
  for (const r of roles) {
    const role = ident(r.role);
    statements.push(
      `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${literal(r.role)}) THEN CREATE ROLE ${role}; END IF; END $$`,
      `ALTER ROLE ${role} ${opts.login ? 'LOGIN' : 'NOLOGIN'} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS`,
      `REVOKE ALL ON ALL TABLES IN SCHEMA ${ident(where.schema)} FROM ${role}`,
      `GRANT CONNECT ON DATABASE ${ident(where.db)} TO ${role}`,
      `GRANT USAGE ON SCHEMA ${ident(where.schema)} TO ${role}`,
    );
    for (const [table, privs] of Object.entries(r.grants)) {
      statements.push(`GRANT ${privs} ON TABLE ${ident(where.schema)}.${ident(table)} TO ${role}`);
    }
  }
  return { database: where.db, schema: where.schema, roles, statements };
}

/** Runs the plan in one transaction (the connected user needs CREATEROLE and to own the tables). */
export async function applyRoles(coffer: Coffer, opts: { prefix?: string; login?: boolean } = {}): Promise<RolesPlan> {
  const plan = await planRoles(coffer, opts);
  await coffer.write(
    async (tx) => {
      for (const s of plan.statements) await sql.raw(s).execute(tx.db);
    },
    { op: 'identity.roles' },
  );
  return plan;
}
