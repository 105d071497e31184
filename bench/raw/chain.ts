// The chain workloads written against the raw drivers the way a careful engineer would: prepared
// (named) statements, one multi-row statement per table and block (unnest arrays on PostgreSQL,
// VALUES ? lists on MySQL, a prepared single-row INSERT in one transaction on SQLite), the
// same rows, the same cursor, health, mempool and finality bookkeeping, one durable commit per
// block. These are the denominators of the Coffer / raw ratios.
import type Database from 'better-sqlite3';
import type mysql from 'mysql2/promise';
import type pg from 'pg';
import type { IngestBlockInput } from '../../src/domains/chain/types.js';
import type { Raw } from '../lib/backends.js';
import { myTx, pgTx } from './tx.js';

type SqliteStmts = ReturnType<typeof sqliteStatements>;
const sqliteCache = new WeakMap<Database.Database, SqliteStmts>();

function sqliteStatements(db: Database.Database) {
  const s = {
    cursor: db.prepare('SELECT height, block_hash, finalized_height FROM chain_cursors WHERE chain_id = ?'),
    block: db.prepare('INSERT INTO chain_blocks (chain_id, height, hash, parent_hash, block_time, tx_count) VALUES (?, ?, ?, ?, ?, ?)'),
    tx: db.prepare(
      'INSERT INTO chain_transactions (chain_id, tx_hash, block_height, block_hash, index_in_block, action_type, action_version, payload, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    out: db.prepare(
      'INSERT INTO chain_tx_outputs (chain_id, tx_hash, address, value, block_height, index_in_block) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    mempool: db.prepare('SELECT tx_hash FROM chain_mempool WHERE chain_id = ? AND tx_hash IN (SELECT value FROM json_each(?))'),
    tip: db.prepare(
      'UPDATE chain_cursors SET height = ?, block_hash = ?, waiting_for_next_hash = 0, finalized_height = ? WHERE chain_id = ? AND height IS ?',
    ),
    health: db.prepare(
      'UPDATE chain_sync_health SET current_height = ?, lag = CASE WHEN latest_height IS NULL THEN NULL ELSE max(latest_height - ?, 0) END, updated_at = ? WHERE chain_id = ?',
    ),
    prune: db.prepare('DELETE FROM chain_undo WHERE chain_id = ? AND height <= ?'),
    chain: db.prepare('SELECT confirmations FROM chain_chains WHERE chain_id = ?'),
    getTx: db.prepare(
      'SELECT chain_id, tx_hash, block_height, block_hash, index_in_block, action_type, action_version, payload, address FROM chain_transactions WHERE chain_id = ? AND tx_hash = ?',
    ),
    getOutputs: db.prepare('SELECT tx_hash, address, value FROM chain_tx_outputs WHERE chain_id = ? AND tx_hash = ?'),
    getJoined: db.prepare(
      `SELECT t.chain_id, t.tx_hash, t.block_height, t.block_hash, t.index_in_block, t.action_type, t.action_version, t.payload, t.address, o.address AS out_address, o.value AS out_value
       FROM chain_transactions t LEFT JOIN chain_tx_outputs o ON o.chain_id = t.chain_id AND o.tx_hash = t.tx_hash WHERE t.chain_id = ? AND t.tx_hash = ?`,
    ),
    blockAt: db.prepare('SELECT hash FROM chain_blocks WHERE chain_id = ? AND height = ?'),
    undoAbove: db.prepare('SELECT id FROM chain_undo WHERE chain_id = ? AND height > ? ORDER BY id DESC'),
    delOutputs: db.prepare(
      'DELETE FROM chain_tx_outputs WHERE chain_id = ? AND tx_hash IN (SELECT tx_hash FROM chain_transactions WHERE chain_id = ? AND block_height > ?)',
    ),
    delTxs: db.prepare('DELETE FROM chain_transactions WHERE chain_id = ? AND block_height > ?'),
    delBlocks: db.prepare('DELETE FROM chain_blocks WHERE chain_id = ? AND height > ?'),
  };
  const ingest = db.transaction((b: IngestBlockInput, confirmations: number) => {
    const cur = s.cursor.get(b.chainId) as
      { height: number | null; block_hash: string | null; finalized_height: number | null } | undefined;
    if (!cur) throw new Error(`unknown chain ${b.chainId}`);
    const h = Number(b.height);
    if (cur.height !== null && (h !== cur.height + 1 || b.parentHash !== cur.block_hash))
      throw new Error(`block ${h} does not extend tip ${cur.height}`);
    s.block.run(b.chainId, h, b.blockHash, b.parentHash, b.time.getTime(), b.transactions.length);
    for (const t of b.transactions)
      s.tx.run(b.chainId, t.txHash, h, b.blockHash, t.indexInBlock, t.actionType, t.actionVersion, t.payload, t.address);
    for (const t of b.transactions)
      for (const o of t.outputs) s.out.run(b.chainId, t.txHash, o.address, o.value.toString(), h, t.indexInBlock);
    s.mempool.all(b.chainId, JSON.stringify(b.transactions.map((t) => t.txHash)));
    const candidate = h - confirmations + 1;
    const finalized =
      candidate >= 0 && (cur.finalized_height === null || candidate > cur.finalized_height) ? candidate : cur.finalized_height;
    if (s.tip.run(h, b.blockHash, finalized, b.chainId, cur.height).changes !== 1) throw new Error('tip moved');
    s.health.run(h, h, Date.now(), b.chainId);
    if (finalized !== null && finalized !== cur.finalized_height) s.prune.run(b.chainId, finalized);
  });
  const getTx = db.transaction((chainId: string, hash: string) => {
    const t = s.getTx.get(chainId, hash);
    if (!t) return null;
    return { ...(t as object), outputs: s.getOutputs.all(chainId, hash) };
  });
  const rollback = db.transaction((chainId: string, fork: number) => {
    const cur = s.cursor.get(chainId) as { height: number; finalized_height: number | null };
    if (cur.finalized_height !== null && fork < cur.finalized_height) throw new Error('below finality');
    const forkBlock = s.blockAt.get(chainId, fork) as { hash: string } | undefined;
    if (!forkBlock) throw new Error(`no block at ${fork}`);
    s.undoAbove.all(chainId, fork);
    s.delOutputs.run(chainId, chainId, fork);
    s.delTxs.run(chainId, fork);
    const removed = s.delBlocks.run(chainId, fork).changes;
    if (s.tip.run(fork, forkBlock.hash, cur.finalized_height, chainId, cur.height).changes !== 1) throw new Error('tip moved');
    s.health.run(fork, fork, Date.now(), chainId);
    return removed;
  });
  return { ...s, ingest, getTx, rollback };
}

function stmts(db: Database.Database): SqliteStmts {
  let s = sqliteCache.get(db);
  if (!s) {
    s = sqliteStatements(db);
    sqliteCache.set(db, s);
  }
  return s;
}

// ---------------------------------------------------------------- PostgreSQL (named statements)

const PG = {
  lock: { name: 'b_lock', text: 'SELECT height, block_hash, finalized_height FROM chain_cursors WHERE chain_id = $1 FOR UPDATE' },
  block: {
    name: 'b_block',
    text: 'INSERT INTO chain_blocks (chain_id, height, hash, parent_hash, block_time, tx_count) VALUES ($1, $2, $3, $4, $5, $6)',
  },
  txs: {
    name: 'b_txs',
    text: `INSERT INTO chain_transactions (chain_id, tx_hash, block_height, block_hash, index_in_block, action_type, action_version, payload, address)
           SELECT $1, t.h, $2, $3, t.i, t.at, t.av, t.p, t.a FROM unnest($4::varchar[], $5::int[], $6::varchar[], $7::int[], $8::bytea[], $9::varchar[]) AS t(h, i, at, av, p, a)`,
  },
  outs: {
    name: 'b_outs',
    text: `INSERT INTO chain_tx_outputs (chain_id, tx_hash, address, value, block_height, index_in_block)
           SELECT $1, o.h, o.a, o.v, $2, o.i FROM unnest($3::varchar[], $4::varchar[], $5::numeric[], $6::int[]) AS o(h, a, v, i)`,
  },
  mempool: { name: 'b_mempool', text: 'SELECT tx_hash FROM chain_mempool WHERE chain_id = $1 AND tx_hash = ANY($2::varchar[])' },
  tip: {
    name: 'b_tip',
    text: 'UPDATE chain_cursors SET height = $1, block_hash = $2, waiting_for_next_hash = false, finalized_height = $3 WHERE chain_id = $4 AND height IS NOT DISTINCT FROM $5::bigint',
  },
  health: {
    name: 'b_health',
    text: 'UPDATE chain_sync_health SET current_height = $1, lag = CASE WHEN latest_height IS NULL THEN NULL ELSE GREATEST(latest_height - $1, 0) END, updated_at = $2 WHERE chain_id = $3',
  },
  prune: { name: 'b_prune', text: 'DELETE FROM chain_undo WHERE chain_id = $1 AND height <= $2' },
  getTx: {
    name: 'b_get_tx',
    text: 'SELECT chain_id, tx_hash, block_height, block_hash, index_in_block, action_type, action_version, payload, address FROM chain_transactions WHERE chain_id = $1 AND tx_hash = $2',
  },
  getOutputs: { name: 'b_get_outputs', text: 'SELECT tx_hash, address, value FROM chain_tx_outputs WHERE chain_id = $1 AND tx_hash = $2' },
  getJoined: {
    name: 'b_get_joined',
    text: `SELECT t.chain_id, t.tx_hash, t.block_height, t.block_hash, t.index_in_block, t.action_type, t.action_version, t.payload, t.address, o.address AS out_address, o.value AS out_value
           FROM chain_transactions t LEFT JOIN chain_tx_outputs o ON o.chain_id = t.chain_id AND o.tx_hash = t.tx_hash WHERE t.chain_id = $1 AND t.tx_hash = $2`,
  },
  blockAt: { name: 'b_block_at', text: 'SELECT hash FROM chain_blocks WHERE chain_id = $1 AND height = $2' },
  undoAbove: { name: 'b_undo_above', text: 'SELECT id FROM chain_undo WHERE chain_id = $1 AND height > $2 ORDER BY id DESC' },
  delOutputs: {
    name: 'b_del_outputs',
    text: 'DELETE FROM chain_tx_outputs o USING chain_transactions t WHERE t.chain_id = $1 AND t.block_height > $2 AND o.chain_id = t.chain_id AND o.tx_hash = t.tx_hash',
  },
  delTxs: { name: 'b_del_txs', text: 'DELETE FROM chain_transactions WHERE chain_id = $1 AND block_height > $2' },
  delBlocks: { name: 'b_del_blocks', text: 'DELETE FROM chain_blocks WHERE chain_id = $1 AND height > $2' },
};

async function pgIngest(pool: pg.Pool, b: IngestBlockInput, confirmations: number): Promise<void> {
  await pgTx(pool, async (c) => {
    const cur = (await c.query({ ...PG.lock, values: [b.chainId] })).rows[0] as {
      height: string | null;
      block_hash: string | null;
      finalized_height: string | null;
    };
    const curH = cur.height === null ? null : BigInt(cur.height);
    if (curH !== null && (b.height !== curH + 1n || b.parentHash !== cur.block_hash))
      throw new Error(`block ${b.height} does not extend tip ${curH}`);
    const h = b.height.toString();
    await c.query({ ...PG.block, values: [b.chainId, h, b.blockHash, b.parentHash, b.time, b.transactions.length] });
    const ts = b.transactions;
    await c.query({
      ...PG.txs,
      values: [
        b.chainId,
        h,
        b.blockHash,
        ts.map((t) => t.txHash),
        ts.map((t) => t.indexInBlock),
        ts.map((t) => t.actionType),
        ts.map((t) => t.actionVersion),
        ts.map((t) => t.payload),
        ts.map((t) => t.address),
      ],
    });
    const oh: string[] = [];
    const oa: string[] = [];
    const ov: string[] = [];
    const oi: number[] = [];
    for (const t of ts)
      for (const o of t.outputs) (oh.push(t.txHash), oa.push(o.address), ov.push(o.value.toString()), oi.push(t.indexInBlock));
    await c.query({ ...PG.outs, values: [b.chainId, h, oh, oa, ov, oi] });
    await c.query({ ...PG.mempool, values: [b.chainId, ts.map((t) => t.txHash)] });
    const fin0 = cur.finalized_height === null ? null : BigInt(cur.finalized_height);
    const candidate = b.height - BigInt(confirmations) + 1n;
    const finalized = candidate >= 0n && (fin0 === null || candidate > fin0) ? candidate : fin0;
    const r = await c.query({
      ...PG.tip,
      values: [h, b.blockHash, finalized === null ? null : finalized.toString(), b.chainId, cur.height],
    });
    if (r.rowCount !== 1) throw new Error('tip moved');
    await c.query({ ...PG.health, values: [h, new Date(), b.chainId] });
    if (finalized !== null && finalized !== fin0) await c.query({ ...PG.prune, values: [b.chainId, finalized.toString()] });
  });
}

// A rollback is rare and its range predicates (height > $2) are only well planned with the
// actual value: its statements run unnamed, so PostgreSQL plans each one for the values given.
// (As named statements they switch to a generic plan after five runs; in the first full run
// that made the raw rollback of 10 blocks take 5.3 s on the 10M-row table.)
const unnamed = (q: { text: string }) => ({ text: q.text });

async function pgRollback(pool: pg.Pool, chainId: string, fork: bigint): Promise<number> {
  return pgTx(pool, async (c) => {
    const cur = (await c.query({ ...unnamed(PG.lock), values: [chainId] })).rows[0] as { height: string; finalized_height: string | null };
    if (cur.finalized_height !== null && fork < BigInt(cur.finalized_height)) throw new Error('below finality');
    const f = fork.toString();
    const fb = (await c.query({ ...unnamed(PG.blockAt), values: [chainId, f] })).rows[0] as { hash: string } | undefined;
    if (!fb) throw new Error(`no block at ${fork}`);
    await c.query({ ...unnamed(PG.undoAbove), values: [chainId, f] });
    await c.query({ ...unnamed(PG.delOutputs), values: [chainId, f] });
    await c.query({ ...unnamed(PG.delTxs), values: [chainId, f] });
    const removed = (await c.query({ ...unnamed(PG.delBlocks), values: [chainId, f] })).rowCount ?? 0;
    const r = await c.query({ ...unnamed(PG.tip), values: [f, fb.hash, cur.finalized_height, chainId, cur.height] });
    if (r.rowCount !== 1) throw new Error('tip moved');
    await c.query({ ...unnamed(PG.health), values: [f, new Date(), chainId] });
    return removed;
  });
}

// ---------------------------------------------------------------- MySQL/MariaDB (execute = server-side prepared)

type MyRow = Record<string, any>;

async function myIngest(pool: mysql.Pool, b: IngestBlockInput, confirmations: number): Promise<void> {
  await myTx(pool, async (c) => {
    const [rows] = await c.execute('SELECT height, block_hash, finalized_height FROM chain_cursors WHERE chain_id = ? FOR UPDATE', [
      b.chainId,
    ]);
    const cur = (rows as MyRow[])[0]!;
    const curH = cur.height === null ? null : BigInt(cur.height);
    if (curH !== null && (b.height !== curH + 1n || b.parentHash !== cur.block_hash))
      throw new Error(`block ${b.height} does not extend tip ${curH}`);
    const h = b.height.toString();
    await c.execute('INSERT INTO chain_blocks (chain_id, height, hash, parent_hash, block_time, tx_count) VALUES (?, ?, ?, ?, ?, ?)', [
      b.chainId,
      h,
      b.blockHash,
      b.parentHash,
      b.time,
      b.transactions.length,
    ]);
    const ts = b.transactions;
    await c.query(
      'INSERT INTO chain_transactions (chain_id, tx_hash, block_height, block_hash, index_in_block, action_type, action_version, payload, address) VALUES ?',
      [ts.map((t) => [b.chainId, t.txHash, h, b.blockHash, t.indexInBlock, t.actionType, t.actionVersion, t.payload, t.address])],
    );
    await c.query('INSERT INTO chain_tx_outputs (chain_id, tx_hash, address, value, block_height, index_in_block) VALUES ?', [
      ts.flatMap((t) => t.outputs.map((o) => [b.chainId, t.txHash, o.address, o.value.toString(), h, t.indexInBlock])),
    ]);
    await c.query('SELECT tx_hash FROM chain_mempool WHERE chain_id = ? AND tx_hash IN (?)', [b.chainId, ts.map((t) => t.txHash)]);
    const fin0 = cur.finalized_height === null ? null : BigInt(cur.finalized_height);
    const candidate = b.height - BigInt(confirmations) + 1n;
    const finalized = candidate >= 0n && (fin0 === null || candidate > fin0) ? candidate : fin0;
    const [r] = await c.execute(
      'UPDATE chain_cursors SET height = ?, block_hash = ?, waiting_for_next_hash = 0, finalized_height = ? WHERE chain_id = ? AND height <=> ?',
      [h, b.blockHash, finalized === null ? null : finalized.toString(), b.chainId, cur.height],
    );
    if ((r as { affectedRows: number }).affectedRows !== 1) throw new Error('tip moved');
    await c.execute(
      'UPDATE chain_sync_health SET current_height = ?, lag = CASE WHEN latest_height IS NULL THEN NULL ELSE GREATEST(latest_height - ?, 0) END, updated_at = ? WHERE chain_id = ?',
      [h, h, new Date(), b.chainId],
    );
    if (finalized !== null && finalized !== fin0)
      await c.execute('DELETE FROM chain_undo WHERE chain_id = ? AND height <= ?', [b.chainId, finalized.toString()]);
  });
}

async function myRollback(pool: mysql.Pool, chainId: string, fork: bigint): Promise<number> {
  return myTx(pool, async (c) => {
    const [rows] = await c.execute('SELECT height, block_hash, finalized_height FROM chain_cursors WHERE chain_id = ? FOR UPDATE', [
      chainId,
    ]);
    const cur = (rows as MyRow[])[0]!;
    if (cur.finalized_height !== null && fork < BigInt(cur.finalized_height)) throw new Error('below finality');
    const f = fork.toString();
    const [fbRows] = await c.execute('SELECT hash FROM chain_blocks WHERE chain_id = ? AND height = ?', [chainId, f]);
    const fb = (fbRows as MyRow[])[0];
    if (!fb) throw new Error(`no block at ${fork}`);
    await c.execute('SELECT id FROM chain_undo WHERE chain_id = ? AND height > ? ORDER BY id DESC', [chainId, f]);
    await c.execute(
      'DELETE o FROM chain_tx_outputs o JOIN chain_transactions t ON o.chain_id = t.chain_id AND o.tx_hash = t.tx_hash WHERE t.chain_id = ? AND t.block_height > ?',
      [chainId, f],
    );
    await c.execute('DELETE FROM chain_transactions WHERE chain_id = ? AND block_height > ?', [chainId, f]);
    const [del] = await c.execute('DELETE FROM chain_blocks WHERE chain_id = ? AND height > ?', [chainId, f]);
    const [r] = await c.execute(
      'UPDATE chain_cursors SET height = ?, block_hash = ?, waiting_for_next_hash = 0, finalized_height = ? WHERE chain_id = ? AND height = ?',
      [f, fb.hash, cur.finalized_height, chainId, cur.height],
    );
    if ((r as { affectedRows: number }).affectedRows !== 1) throw new Error('tip moved');
    await c.execute(
      'UPDATE chain_sync_health SET current_height = ?, lag = CASE WHEN latest_height IS NULL THEN NULL ELSE GREATEST(latest_height - ?, 0) END, updated_at = ? WHERE chain_id = ?',
      [f, f, new Date(), chainId],
    );
    return (del as { affectedRows: number }).affectedRows;
  });
}

const MY_GET_TX =
  'SELECT chain_id, tx_hash, block_height, block_hash, index_in_block, action_type, action_version, payload, address FROM chain_transactions WHERE chain_id = ? AND tx_hash = ?';
const MY_GET_OUTPUTS = 'SELECT tx_hash, address, value FROM chain_tx_outputs WHERE chain_id = ? AND tx_hash = ?';
const MY_GET_JOINED = `SELECT t.chain_id, t.tx_hash, t.block_height, t.block_hash, t.index_in_block, t.action_type, t.action_version, t.payload, t.address, o.address AS out_address, o.value AS out_value
  FROM chain_transactions t LEFT JOIN chain_tx_outputs o ON o.chain_id = t.chain_id AND o.tx_hash = t.tx_hash WHERE t.chain_id = ? AND t.tx_hash = ?`;

// ---------------------------------------------------------------- public surface

/** Stores one block, its transactions and outputs, advances cursor and health; one durable commit. */
export async function rawIngest(raw: Raw, b: IngestBlockInput, confirmations: number): Promise<void> {
  if (raw.kind === 'sqlite') return void stmts(raw.db).ingest.immediate(b, confirmations);
  if (raw.kind === 'postgres') return pgIngest(raw.pool, b, confirmations);
  return myIngest(raw.pool, b, confirmations);
}

/** Rolls the chain back to `fork` (blocks, transactions and outputs above it). */
export async function rawRollback(raw: Raw, chainId: string, fork: bigint): Promise<number> {
  if (raw.kind === 'sqlite') return stmts(raw.db).rollback.immediate(chainId, Number(fork));
  if (raw.kind === 'postgres') return pgRollback(raw.pool, chainId, fork);
  return myRollback(raw.pool, chainId, fork);
}

/** A transaction and its outputs, the two statements Coffer's store issues, in one read-only transaction. */
export async function rawGetTx(raw: Raw, chainId: string, hash: string): Promise<unknown> {
  if (raw.kind === 'sqlite') return stmts(raw.db).getTx.deferred(chainId, hash);
  if (raw.kind === 'postgres') {
    return pgTx(
      raw.pool,
      async (c) => {
        const t = (await c.query({ ...PG.getTx, values: [chainId, hash] })).rows[0];
        if (!t) return null;
        return { ...t, outputs: (await c.query({ ...PG.getOutputs, values: [chainId, hash] })).rows };
      },
      true,
    );
  }
  return myTx(
    raw.pool,
    async (c) => {
      const [rows] = await c.execute(MY_GET_TX, [chainId, hash]);
      const t = (rows as MyRow[])[0];
      if (!t) return null;
      const [outs] = await c.execute(MY_GET_OUTPUTS, [chainId, hash]);
      return { ...t, outputs: outs };
    },
    true,
  );
}

/** The same answer from one statement (a LEFT JOIN), no explicit transaction: the fewest round trips possible. */
export async function rawGetTxJoined(raw: Raw, chainId: string, hash: string): Promise<unknown> {
  if (raw.kind === 'sqlite') {
    const rows = stmts(raw.db).getJoined.all(chainId, hash);
    return rows.length ? rows : null;
  }
  if (raw.kind === 'postgres') {
    const r = await raw.pool.query({ ...PG.getJoined, values: [chainId, hash] });
    return r.rows.length ? r.rows : null;
  }
  const [rows] = await raw.pool.execute(MY_GET_JOINED, [chainId, hash]);
  return (rows as MyRow[]).length ? rows : null;
}
