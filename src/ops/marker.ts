// The "incomplete" marker a copy or restore keeps in its target: a table, coffer_ops_progress,
// created before the first row is written and dropped only after the target verified. While it
// exists the target is incomplete: Coffer's doctor reports it, backup refuses the database,
// and copy/restore resume from it (or discard it with --discard). Each batch of rows and its
// progress row are written in one transaction, so a kill at any moment resumes exactly.
// State failed: a verification found differences (info.problems; only --discard moves on), or
// a restore into a database that existed before stopped on an error (info.error; the same
// restore resumes it once the cause is fixed).
import { sql, type Kysely } from 'kysely';
import { decodeValue, encodeValue, TableCodec } from '../db/codec.js';
import type { Dialect } from '../schema/model.js';
import { c, tableDef } from '../schema/builder.js';
import { createTableSteps } from '../schema/compile.js';
import { listTables, type OpsDb } from './db.js';
import type { Row } from './rows.js';

export const MARKER_TABLE = 'coffer_ops_progress';
/** The marker's header row; table rows use the table's name. */
const HEADER = '*';

export const markerTable = tableDef(MARKER_TABLE, {
  domain: 'core',
  columns: {
    item: c.varchar(128),
    state: c.enum(['running', 'done', 'failed']),
    rows_done: c.bigint({ default: 0 }),
    last_key: c.json({ nullable: true }),
    info: c.json({ nullable: true }),
    updated_at: c.timestamp(),
  },
  primaryKey: ['item'],
});

export interface MarkerInfo {
  /** copy, restore (logical or SQLite file) or restore-native (pg_restore / mysql client). */
  operation: 'copy' | 'restore' | 'restore-native';
  /** Redacted source URL or backup file path. */
  source: string;
  startedAt: string;
  /** The backup's manifest id or the source's description, to recognise a resume. */
  sourceId: string;
  [k: string]: unknown;
}

export interface TableProgress {
  state: 'running' | 'done' | 'failed';
  rowsDone: number;
  /** Portable primary key of the last row written. */
  lastKey: Row | null;
}

export interface Marker {
  info: MarkerInfo;
  state: 'running' | 'done' | 'failed';
  tables: Map<string, TableProgress>;
  updatedAt: Date;
}

export async function hasMarker(db: Kysely<any>, d: Dialect): Promise<boolean> {
  return (await listTables(db, d)).has(MARKER_TABLE);
}

export async function readMarker(db: Kysely<any>, d: Dialect): Promise<Marker | null> {
  if (!(await hasMarker(db, d))) return null;
  const rows = await db.selectFrom(MARKER_TABLE).selectAll().execute();
  const codec = new TableCodec(d, markerTable);
  let header: Row | undefined;
  const tables = new Map<string, TableProgress>();
  for (const raw of rows) {
    const r = codec.decode<Row>(raw as Row);
    if (r.item === HEADER) header = r;
    else
      tables.set(String(r.item), {
        state: r.state as TableProgress['state'],
        rowsDone: Number(r.rows_done),
        lastKey: (r.last_key as Row | null) ?? null,
      });
  }
  if (!header) {
    return {
      info: { operation: 'copy', source: '(unknown)', startedAt: '', sourceId: '' },
      state: 'failed',
      tables,
      updatedAt: new Date(0),
    };
  }
  return { info: header.info as MarkerInfo, state: header.state as Marker['state'], tables, updatedAt: header.updated_at as Date };
}

/** Creates the marker with its header row (state running). */
export async function createMarker(db: OpsDb, info: MarkerInfo): Promise<void> {
  const d = db.dialect;
  await db.writer.transaction().execute(async (trx) => {
    for (const s of createTableSteps(d, markerTable, { ifNotExists: true })) {
      // MySQL has no CREATE INDEX IF NOT EXISTS; the marker has no secondary index anyway.
      await sql.raw(s.sql).execute(trx);
    }
    await trx.deleteFrom(MARKER_TABLE).execute();
    await trx
      .insertInto(MARKER_TABLE)
      .values(new TableCodec(d, markerTable).encode({ item: HEADER, state: 'running', rows_done: 0n, info, updated_at: new Date() }))
      .execute();
  });
}

/** Records a table's progress (inside the transaction that wrote its rows). */
export async function recordProgress(trx: Kysely<any>, d: Dialect, table: string, p: TableProgress): Promise<void> {
  const enc = new TableCodec(d, markerTable).encode({
    state: p.state,
    rows_done: BigInt(p.rowsDone),
    last_key: p.lastKey,
    updated_at: new Date(),
  });
  const r = await trx.updateTable(MARKER_TABLE).set(enc).where('item', '=', table).executeTakeFirst();
  if (BigInt(r.numUpdatedRows ?? 0n) === 0n) {
    await trx
      .insertInto(MARKER_TABLE)
      .values({ ...enc, item: table })
      .execute();
  }
}

export async function setMarkerState(
  db: Kysely<any>,
  d: Dialect,
  state: Marker['state'],
  extra: Record<string, unknown> = {},
): Promise<void> {
  const cur = await db.selectFrom(MARKER_TABLE).select('info').where('item', '=', HEADER).executeTakeFirst();
  const info = { ...((cur ? decodeValue({ kind: 'json' }, (cur as Row).info) : {}) as Row), ...extra };
  await db
    .updateTable(MARKER_TABLE)
    .set({
      state,
      info: encodeValue(d, { kind: 'json' }, info, 'info'),
      updated_at: encodeValue(d, { kind: 'timestamp' }, new Date(), 'updated_at'),
    })
    .where('item', '=', HEADER)
    .execute();
}

export async function dropMarker(db: Kysely<any>, d: Dialect): Promise<void> {
  await sql.raw(`DROP TABLE IF EXISTS ${d === 'mysql' ? `\`${MARKER_TABLE}\`` : `"${MARKER_TABLE}"`}`).execute(db);
}

/**
 * Why a marker is in state failed: a restore that stopped on an error records it (`error`,
 * resumable once the cause is fixed); a failed verification records its problems (only
 * --discard moves on from it). Null for a marker that has not failed.
 */
export function failureOf(m: Marker): { reason: string; resumable: boolean } | null {
  if (m.state !== 'failed') return null;
  if (typeof m.info.error === 'string') return { reason: m.info.error, resumable: true };
  return { reason: Array.isArray(m.info.problems) ? 'its verification failed' : 'no reason recorded', resumable: false };
}

/** One line describing a marker, for refusals and doctor. */
export function describeMarker(m: Marker): string {
  const done = [...m.tables.values()].reduce((n, t) => n + t.rowsDone, 0);
  const verb = m.info.operation === 'copy' ? 'copy' : 'restore';
  const failure = failureOf(m);
  const why = failure ? `: ${failure.reason.length > 200 ? `${failure.reason.slice(0, 200)}…` : failure.reason}` : '';
  return `an incomplete ${verb} from ${m.info.source} (started ${m.info.startedAt || 'at an unknown time'}, ${done} rows written, state ${m.state}${why})`;
}
