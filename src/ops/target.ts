// Getting a target database ready for a copy or restore: it must be empty (or be the
// incomplete target of the same operation, which then resumes), it is marked incomplete before
// the first row arrives, and it gets Coffer's own migrations, so it has exactly the schema
// this build of Coffer defines.
//
// "Empty" allows the rows migrations themselves insert (seed rows, such as the audit head's
// genesis row): a freshly migrated database counts as empty. Those seed rows are cleared from
// the tables being loaded before the first batch, since the source brings its own version.
import { toBigInt } from '../db/codec.js';
import { ConfigError } from '../db/errors.js';
import { Coffer } from '../db/store.js';
import { HISTORY_TABLE } from '../migrations/history.js';
import type { Migration } from '../migrations/migration.js';
import type { Schema } from '../schema/model.js';
import { dataTables, dependencyOrder, dropTables, listTables, opsDb, readBatches, type OpsDb } from './db.js';
import {
  createMarker,
  describeMarker,
  failureOf,
  MARKER_TABLE,
  readMarker,
  setMarkerState,
  type Marker,
  type MarkerInfo,
} from './marker.js';
import type { Progress } from './progress.js';
import { keyColumns, keyString } from './rows.js';
import type { TablePlan } from './transfer.js';

const seedCache = new WeakMap<readonly Migration[], Promise<Map<string, Set<string>>>>();

/** Primary keys of the rows the migrations themselves insert, per table (found by migrating a scratch in-memory database). */
export function migrationSeeds(migrations: readonly Migration[]): Promise<Map<string, Set<string>>> {
  let p = seedCache.get(migrations);
  if (!p) {
    p = (async () => {
      const scratch = await Coffer.open({ url: 'memory://', migrations, name: 'coffer-seed-probe' });
      try {
        const out = new Map<string, Set<string>>();
        for (const t of dataTables(scratch.schema)) {
          const keys = new Set<string>();
          for await (const batch of readBatches(scratch.engine.reader, 'sqlite', t, keyColumns(t), { batchSize: 1000 })) {
            for (const r of batch) keys.add(keyString(t, r));
          }
          if (keys.size) out.set(t.name, keys);
        }
        return out;
      } finally {
        await scratch.close();
      }
    })();
    seedCache.set(migrations, p);
  }
  return p;
}

/** Coffer data tables that exist in the database and hold rows other than migration seed rows. */
export async function nonEmptyTables(
  db: OpsDb,
  schema: Schema,
  migrations: readonly Migration[],
): Promise<{ table: string; rows: bigint }[]> {
  const live = await listTables(db.reader, db.dialect);
  const seeds = await migrationSeeds(migrations);
  const out: { table: string; rows: bigint }[] = [];
  for (const t of dataTables(schema)) {
    if (!live.has(t.name)) continue;
    const r = await db.reader
      .selectFrom(t.name)
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirst();
    const n = toBigInt((r as { n: unknown } | undefined)?.n);
    if (n === 0n) continue;
    const seeded = seeds.get(t.name);
    if (seeded && n <= BigInt(seeded.size)) {
      let onlySeeds = true;
      for await (const batch of readBatches(db.reader, db.dialect, t, keyColumns(t), { batchSize: 1000 })) {
        if (batch.some((row) => !seeded.has(keyString(t, row)))) onlySeeds = false;
      }
      if (onlySeeds) continue;
    }
    out.push({ table: t.name, rows: n });
  }
  return out;
}

/**
 * Empties the tables about to be loaded of the rows the migrations seeded (the source brings
 * its own version of them), once per operation: the marker records that it happened.
 */
export async function clearSeedRows(db: OpsDb, plans: readonly TablePlan[], marker: Marker | null): Promise<void> {
  if (marker?.info.seedsCleared) return;
  await db.writer.transaction().execute(async (trx) => {
    for (const p of [...plans].reverse()) {
      const r = await trx
        .selectFrom(p.table.name)
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirst();
      if (toBigInt((r as { n: unknown } | undefined)?.n) === 0n) continue;
      try {
        await trx.deleteFrom(p.table.name).execute();
      } catch (e) {
        throw new ConfigError(
          `cannot clear the rows a migration inserted into ${p.table.name} before loading it (${(e as Error).message}); load into a database where that table is empty`,
          { table: p.table.name },
        );
      }
    }
    await setMarkerState(trx, db.dialect, 'running', { seedsCleared: true });
  });
}

/** Drops every Coffer table (data tables children first, then the history and the marker). */
export async function dropCofferTables(db: OpsDb, schema: Schema): Promise<string[]> {
  const live = await listTables(db.writer, db.dialect);
  const names = [
    ...dependencyOrder([...schema.tables.values()])
      .reverse()
      .map((t) => t.name),
    MARKER_TABLE,
  ].filter((n, i, all) => live.has(n) && all.indexOf(n) === i);
  // The history table goes after every data table (it has no foreign keys either way).
  const ordered = [...names.filter((n) => n !== HISTORY_TABLE), ...names.filter((n) => n === HISTORY_TABLE)];
  await dropTables(db.writer, db.dialect, ordered);
  return ordered;
}

export interface PrepareOptions {
  info: MarkerInfo;
  /** Throw away an incomplete copy/restore found in the target, then start over. */
  discard?: boolean;
  /** Replace a non-empty target's Coffer tables. */
  force?: boolean;
  progress: Progress;
  /** How to resume, for the refusal message (e.g. "coffer copy --from …"). */
  command: string;
}

/**
 * Checks the target and marks it incomplete; returns the marker of the run being resumed (or
 * null for a fresh start). The target is migrated afterwards by the caller.
 */
export async function prepareTarget(target: Coffer, opts: PrepareOptions): Promise<Marker | null> {
  const db = opsDb(target);
  // A history this build cannot apply on top of (edited or unknown migrations) is refused
  // before anything is written to the target.
  await target.migrator.verify();
  let marker = await readMarker(db.writer, db.dialect);
  if (marker) {
    if (opts.discard) {
      const dropped = await dropCofferTables(db, target.schema);
      opts.progress.note(`discarded ${describeMarker(marker)}: dropped ${dropped.length} table(s) from ${db.describe}`);
      marker = null;
    } else if (marker.state === 'failed' && !failureOf(marker)!.resumable) {
      throw new ConfigError(
        `target ${db.describe} holds ${describeMarker(marker)}: it cannot be resumed; add --discard to throw it away and start over`,
        { field: 'to' },
      );
    } else if (marker.info.operation !== opts.info.operation || marker.info.sourceId !== opts.info.sourceId) {
      throw new ConfigError(
        `target ${db.describe} holds ${describeMarker(marker)}: resume it with the same source, or add --discard to throw it away`,
        { field: 'to' },
      );
    } else {
      opts.progress.note(`resuming ${describeMarker(marker)}`);
      // A restore that stopped on an error resumes like an interrupted one; running again.
      if (marker.state === 'failed') await setMarkerState(db.writer, db.dialect, 'running', { error: undefined, failedAt: undefined });
      return marker;
    }
  }
  const busy = await nonEmptyTables(db, target.schema, target.migrator.migrations);
  if (busy.length) {
    if (!opts.force) {
      throw new ConfigError(
        `target ${db.describe} is not empty (${busy
          .slice(0, 3)
          .map((b) => `${b.table}: ${b.rows} rows`)
          .join(', ')}${busy.length > 3 ? ', …' : ''}): ${opts.command} needs an empty database; add --force to replace its Coffer tables`,
        { field: 'to' },
      );
    }
    const dropped = await dropCofferTables(db, target.schema);
    opts.progress.note(`--force: dropped ${dropped.length} Coffer table(s) from ${db.describe}`);
  }
  await createMarker(db, opts.info);
  return null;
}
