// audit/0001_init: the hash-chained audit log, its head pointer, and the row history of every
// mutable table. audit_log and audit_row_history are append-only, enforced by the database:
// triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on every backend.
import { c, createTable } from '../../schema/builder.js';
import { defineMigration } from '../../migrations/migration.js';
import type { Dialect, TriggerDef } from '../../schema/model.js';
import { ACTOR_TYPES } from './actor.js';

export const GENESIS_HASH = '0'.repeat(64);
const APPEND_ONLY_TABLES = ['audit_log', 'audit_row_history'] as const;

export const APPEND_ONLY_TRIGGERS: readonly TriggerDef[] = APPEND_ONLY_TABLES.flatMap((t) => [
  { table: t, name: `trg_${t}_no_update` },
  { table: t, name: `trg_${t}_no_delete` },
]);

// The SQLSTATE CFA01 is what src/db/driver-errors.ts maps to AppendOnlyViolationError.
function appendOnlySql(d: Dialect): string[] {
  if (d === 'postgres') {
    return [
      `CREATE OR REPLACE FUNCTION coffer_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'CFA01', MESSAGE = 'CFA01: ' || TG_TABLE_NAME || ' is append-only', TABLE = TG_TABLE_NAME;
END
$$`,
      // Statement-level, so TRUNCATE (which fires no row triggers) is refused too.
      ...APPEND_ONLY_TABLES.flatMap((t) => [
        `CREATE TRIGGER "trg_${t}_no_update" BEFORE UPDATE ON "${t}" FOR EACH STATEMENT EXECUTE FUNCTION coffer_append_only()`,
        `CREATE TRIGGER "trg_${t}_no_delete" BEFORE DELETE OR TRUNCATE ON "${t}" FOR EACH STATEMENT EXECUTE FUNCTION coffer_append_only()`,
      ]),
    ];
  }
  if (d === 'mysql') {
    // Idempotent (a resumed MySQL migration may run a step twice). TRUNCATE is DDL on MySQL and
    // fires no trigger: withhold the DROP privilege from the service user (docs/audit.md).
    return APPEND_ONLY_TABLES.flatMap((t) => [
      `DROP TRIGGER IF EXISTS \`trg_${t}_no_update\``,
      `CREATE TRIGGER \`trg_${t}_no_update\` BEFORE UPDATE ON \`${t}\` FOR EACH ROW SIGNAL SQLSTATE 'CFA01' SET MESSAGE_TEXT = 'CFA01: ${t} is append-only'`,
      `DROP TRIGGER IF EXISTS \`trg_${t}_no_delete\``,
      `CREATE TRIGGER \`trg_${t}_no_delete\` BEFORE DELETE ON \`${t}\` FOR EACH ROW SIGNAL SQLSTATE 'CFA01' SET MESSAGE_TEXT = 'CFA01: ${t} is append-only'`,
    ]);
  }
  return APPEND_ONLY_TABLES.flatMap((t) => [
    `CREATE TRIGGER "trg_${t}_no_update" BEFORE UPDATE ON "${t}" BEGIN SELECT RAISE(ABORT, 'CFA01: ${t} is append-only'); END`,
    `CREATE TRIGGER "trg_${t}_no_delete" BEFORE DELETE ON "${t}" BEGIN SELECT RAISE(ABORT, 'CFA01: ${t} is append-only'); END`,
  ]);
}

/** The SQL that creates the append-only triggers on a dialect (tests re-create them after tampering). */
export function appendOnlyTriggerSql(d: Dialect): readonly string[] {
  return appendOnlySql(d);
}

const genesis = `INTO audit_head (id, seq, hash) VALUES (1, 0, '${GENESIS_HASH}')`;

export default defineMigration(import.meta.url, {
  domain: 'audit',
  version: 1,
  name: 'init',
  ops: [
    createTable('audit_log', {
      domain: 'audit',
      columns: {
        seq: c.bigint(),
        at: c.timestamp(),
        actor_type: c.enum(ACTOR_TYPES),
        actor_id: c.varchar(128),
        action: c.varchar(128),
        domain: c.varchar(64),
        entity: c.varchar(64),
        entity_id: c.varchar(256),
        change_set: c.json({ nullable: true }),
        prev_hash: c.hex(64),
        hash: c.hex(64),
      },
      primaryKey: ['seq'],
      unique: { uq_audit_log_hash: ['hash'] },
      indexes: { ix_audit_log_entity: ['domain', 'entity', 'entity_id', 'seq'] },
      checks: { ck_audit_log_seq: 'seq >= 1' },
    }),
    createTable('audit_head', {
      domain: 'audit',
      columns: { id: c.int(), seq: c.bigint(), hash: c.hex(64) },
      primaryKey: ['id'],
      checks: { ck_audit_head_single: 'id = 1', ck_audit_head_seq: 'seq >= 0' },
    }),
    createTable('audit_row_history', {
      domain: 'audit',
      columns: {
        id: c.serial(),
        at: c.timestamp(),
        table_name: c.varchar(63),
        row_key: c.varchar(512),
        op: c.enum(['insert', 'update', 'delete']),
        before_image: c.json({ nullable: true }),
        after_image: c.json({ nullable: true }),
        actor_type: c.enum(ACTOR_TYPES),
        actor_id: c.varchar(128),
      },
      primaryKey: ['id'],
      indexes: { ix_audit_row_history_row: ['table_name', 'row_key', 'id'] },
      checks: {
        ck_audit_row_history_images:
          "(op = 'insert' AND before_image IS NULL AND after_image IS NOT NULL) OR " +
          "(op = 'update' AND before_image IS NOT NULL AND after_image IS NOT NULL) OR " +
          "(op = 'delete' AND before_image IS NOT NULL AND after_image IS NULL)",
      },
    }),
    {
      op: 'raw',
      sql: {
        postgres: [`INSERT ${genesis} ON CONFLICT (id) DO NOTHING`, ...appendOnlySql('postgres')],
        mysql: [`INSERT IGNORE ${genesis}`, ...appendOnlySql('mysql')],
        sqlite: [`INSERT OR IGNORE ${genesis}`, ...appendOnlySql('sqlite')],
      },
      triggers: APPEND_ONLY_TRIGGERS,
    },
  ],
});
