// `coffer secrets rotate`: re-wraps every ciphertext of every encrypted column (the list in
// src/domains/audit/policy.ts) under the active master key, in small transactions. Rows
// already under the active key never match the batch query (their value starts with
// "cfe1.<active key id>."), so an interrupted run simply resumes where it stopped when run
// again. Each row's change goes through the row history (images redacted) and each batch
// records one audit entry.
import { sql } from 'kysely';
import type { Coffer } from '../db/store.js';
import { ValidationError } from '../db/errors.js';
import type { Tx } from '../db/tx.js';
import { systemActor, type Actor } from '../domains/audit/actor.js';
import { rowHistory } from '../domains/audit/history.js';
import { audit } from '../domains/audit/log.js';
import { encryptedColumns } from '../domains/audit/policy.js';
import { CIPHERTEXT_PREFIX, ciphertextKeyId, type Keyring } from './envelope.js';

type Row = Record<string, unknown>;

export interface RotateOptions {
  keyring: Keyring;
  /** Rows per transaction (default 200). */
  batchSize?: number;
  actor?: Actor;
  /** Stop after this many batches in all (tests simulate an interruption with it). */
  maxBatches?: number;
  onBatch?: (p: { table: string; column: string; rotated: number; skipped: number }) => void;
}

export interface RotateReport {
  activeKeyId: string;
  columns: { table: string; column: string; rotated: number; skipped: number }[];
  /** False when maxBatches stopped the run early. */
  complete: boolean;
}

function keyset(tx: Tx, table: string, pk: readonly string[], last: Row | undefined) {
  if (!last) return undefined;
  const enc = tx.codec(table).encode(last);
  return sql<boolean>`(${sql.join(pk.map((c) => sql.ref(c)))}) > (${sql.join(pk.map((c) => enc[c]))})`;
}

/** The encrypted columns of tables present in this database's schema. */
function columnsOf(coffer: Coffer): { table: string; column: string; pk: readonly string[] }[] {
  return encryptedColumns()
    .filter((c) => coffer.schema.tables.has(c.table))
    .map((c) => ({ ...c, pk: coffer.schema.tables.get(c.table)!.primaryKey }));
}

export async function rotateSecrets(coffer: Coffer, opts: RotateOptions): Promise<RotateReport> {
  const batch = opts.batchSize ?? 200;
  if (!Number.isInteger(batch) || batch < 1 || batch > 10_000)
    throw new ValidationError('batchSize: must be an integer from 1 to 10000', { field: 'batchSize' });
  const actor = opts.actor ?? systemActor('secrets.rotate');
  const active = opts.keyring.activeKeyId;
  const current = `${CIPHERTEXT_PREFIX}.${active}.%`;
  const report: RotateReport = { activeKeyId: active, columns: [], complete: true };
  let batches = 0;
  for (const { table, column, pk } of columnsOf(coffer)) {
    const entry = { table, column, rotated: 0, skipped: 0 };
    report.columns.push(entry);
    let last: Row | undefined;
    for (;;) {
      if (opts.maxBatches !== undefined && batches >= opts.maxBatches) {
        report.complete = false;
        return report;
      }
      batches++;
      const r = await coffer.write(
        async (tx) => {
          let q = tx.db
            .selectFrom(table)
            .select([...pk, column])
            .where(column, 'is not', null)
            .where(column, 'not like', current);
          const after = keyset(tx, table, pk, last);
          if (after) q = q.where(after);
          for (const c of pk) q = q.orderBy(c);
          const rows = (await q.limit(batch).execute()).map((x) => tx.codec(table).decode<Row>(x as Row));
          const rows$ = rowHistory(tx, actor);
          let rotated = 0;
          let skipped = 0;
          const from = new Set<string>();
          for (const row of rows) {
            const key = Object.fromEntries(pk.map((c) => [c, row[c]]));
            const old = String(row[column]);
            const next = opts.keyring.rewrap(old, { table, column, row: key });
            from.add(ciphertextKeyId(old) ?? '?');
            // Compare-and-set: a row changed since it was read is left for the next run.
            const u = await rows$.update(table, key, { [column]: next }, { expect: { [column]: old } });
            if (u.ok) rotated++;
            else skipped++;
          }
          if (rotated) {
            await audit(tx).record({
              actor,
              action: 'secrets.rotate',
              domain: 'secrets',
              entity: 'column',
              entityId: `${table}.${column}`,
              details: { rows: rotated, to_key_id: active, from_key_ids: [...from].sort() },
            });
          }
          const lastRow = rows[rows.length - 1];
          return { n: rows.length, rotated, skipped, last: lastRow ? Object.fromEntries(pk.map((c) => [c, lastRow[c]])) : undefined };
        },
        { op: 'secrets.rotate' },
      );
      entry.rotated += r.rotated;
      entry.skipped += r.skipped;
      opts.onBatch?.({ table, column, rotated: r.rotated, skipped: r.skipped });
      if (r.n < batch) break;
      last = r.last;
    }
  }
  return report;
}

export interface ColumnStatus {
  table: string;
  column: string;
  /** Non-null values per master key id. */
  byKeyId: Record<string, number>;
  /** Non-null values that are not Coffer ciphertexts (should be 0). */
  notEncrypted: number;
}

/** Counts ciphertexts per key id in every encrypted column, paging through each table. */
export async function secretsStatus(coffer: Coffer, opts: { batchSize?: number } = {}): Promise<ColumnStatus[]> {
  const batch = opts.batchSize ?? 1000;
  const out: ColumnStatus[] = [];
  for (const { table, column, pk } of columnsOf(coffer)) {
    const st: ColumnStatus = { table, column, byKeyId: {}, notEncrypted: 0 };
    let last: Row | undefined;
    for (;;) {
      const rows = await coffer.read(
        async (tx) => {
          let q = tx.db
            .selectFrom(table)
            .select([...pk, column])
            .where(column, 'is not', null);
          const after = keyset(tx, table, pk, last);
          if (after) q = q.where(after);
          for (const c of pk) q = q.orderBy(c);
          return (await q.limit(batch).execute()).map((x) => tx.codec(table).decode<Row>(x as Row));
        },
        { op: 'secrets.status' },
      );
      for (const r of rows) {
        const kid = ciphertextKeyId(String(r[column]));
        if (kid) st.byKeyId[kid] = (st.byKeyId[kid] ?? 0) + 1;
        else st.notEncrypted++;
      }
      if (rows.length < batch) break;
      const lastRow = rows[rows.length - 1]!;
      last = Object.fromEntries(pk.map((c) => [c, lastRow[c]]));
    }
    out.push(st);
  }
  return out;
}
