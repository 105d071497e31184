// Copy of the chain tables from an SQLite file to PostgreSQL with the raw drivers: one
// iterating statement per table on the source (constant memory), unnest INSERTs of `batch`
// rows per statement and transaction on the target, in foreign-key order. The target schema
// exists (created by Coffer's migrations).
import type Database from 'better-sqlite3';
import type pg from 'pg';

type Row = Record<string, any>;
const ms = (v: unknown) => (v === null || v === undefined ? null : new Date(Number(v)));
const str = (v: unknown) => (v === null || v === undefined ? null : String(v));

interface TablePlan {
  table: string;
  order: string;
  columns: [name: string, pgType: string, convert: (v: unknown) => unknown][];
}

const id = (v: unknown) => (v === undefined ? null : v);
const PLANS: TablePlan[] = [
  {
    table: 'chain_chains',
    order: 'chain_id',
    columns: [
      ['chain_id', 'varchar', id],
      ['name', 'varchar', id],
      ['network', 'varchar', id],
      ['confirmations', 'int', id],
      ['mempool_capacity', 'int', id],
      ['created_at', 'timestamptz', ms],
    ],
  },
  {
    table: 'chain_cursors',
    order: 'chain_id',
    columns: [
      ['chain_id', 'varchar', id],
      ['height', 'bigint', str],
      ['block_hash', 'varchar', id],
      ['waiting_for_next_hash', 'boolean', (v) => Number(v) !== 0],
      ['finalized_height', 'bigint', str],
    ],
  },
  {
    table: 'chain_sync_health',
    order: 'chain_id',
    columns: [
      ['chain_id', 'varchar', id],
      ['current_height', 'bigint', str],
      ['latest_height', 'bigint', str],
      ['lag', 'bigint', str],
      ['updated_at', 'timestamptz', ms],
    ],
  },
  {
    table: 'chain_blocks',
    order: 'chain_id, height',
    columns: [
      ['chain_id', 'varchar', id],
      ['height', 'bigint', str],
      ['hash', 'varchar', id],
      ['parent_hash', 'varchar', id],
      ['block_time', 'timestamptz', ms],
      ['tx_count', 'int', id],
    ],
  },
  {
    table: 'chain_transactions',
    order: 'chain_id, tx_hash',
    columns: [
      ['chain_id', 'varchar', id],
      ['tx_hash', 'varchar', id],
      ['block_height', 'bigint', str],
      ['block_hash', 'varchar', id],
      ['index_in_block', 'int', id],
      ['action_type', 'varchar', id],
      ['action_version', 'int', id],
      ['payload', 'bytea', id],
      ['address', 'varchar', id],
    ],
  },
  {
    table: 'chain_tx_outputs',
    order: 'chain_id, tx_hash, address',
    columns: [
      ['chain_id', 'varchar', id],
      ['tx_hash', 'varchar', id],
      ['address', 'varchar', id],
      ['value', 'numeric', str],
      ['block_height', 'bigint', str],
      ['index_in_block', 'int', id],
    ],
  },
];

/** Copies the chain tables; returns the rows written. */
export async function rawCopyChain(src: Database.Database, dst: pg.Pool, batch = 5000): Promise<number> {
  let total = 0;
  const c = await dst.connect();
  try {
    for (const p of PLANS) {
      const names = p.columns.map(([n]) => n);
      const text = `INSERT INTO ${p.table} (${names.join(', ')}) SELECT * FROM unnest(${p.columns.map(([, t], i) => `$${i + 1}::${t}[]`).join(', ')})`;
      const q = { name: `copy_${p.table}`, text };
      let cols: unknown[][] = p.columns.map(() => []);
      const flush = async () => {
        if (!cols[0]!.length) return;
        await c.query('BEGIN');
        await c.query({ ...q, values: cols });
        await c.query('COMMIT');
        total += cols[0]!.length;
        cols = p.columns.map(() => []);
      };
      for (const r of src.prepare(`SELECT ${names.join(', ')} FROM ${p.table} ORDER BY ${p.order}`).iterate() as Iterable<Row>) {
        p.columns.forEach(([n, , conv], i) => cols[i]!.push(conv(r[n])));
        if (cols[0]!.length >= batch) await flush();
      }
      await flush();
    }
  } finally {
    c.release();
  }
  return total;
}
