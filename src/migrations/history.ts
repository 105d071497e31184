// The migration history table. It is created by the runner itself (before any migration can
// run) and is part of the logical schema, so parity covers it too.
import { c, tableDef } from '../schema/builder.js';

export const HISTORY_TABLE = 'coffer_migrations';

export const historyTable = tableDef(HISTORY_TABLE, {
  domain: 'core',
  columns: {
    domain: c.varchar(64),
    version: c.int(),
    name: c.varchar(200),
    checksum: c.hex(64),
    /** applied, or running while a MySQL migration (non-transactional DDL) is part-way. */
    state: c.enum(['applied', 'running']),
    steps_done: c.int({ default: 0 }),
    applied_at: c.timestamp(),
    duration_ms: c.int({ default: 0 }),
  },
  primaryKey: ['domain', 'version'],
  checks: { ck_coffer_migrations_version: 'version > 0' },
});
