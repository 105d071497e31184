// One chain database per backend that grows through the scaling stages (10k → 1M → 10M
// transactions): bulk-filled with the best raw technique of each backend (the fill is set-up,
// not measured), then measured through Coffer and the raw driver at each size. Both sides
// append blocks to the same chain of the same database, so they always see the same size
// (memory://'s raw side runs on Coffer's own connection).
import { chain } from '../../src/domains/chain/store.js';
import { BENCH_CHAIN, randomHashes } from './chain-data.js';
import { newBenchDb, type BackendName, type BenchDb, type Raw } from './backends.js';

/** Finality depth of the bench chain: deep enough for 100-block reorgs. */
export const CONFIRMATIONS = 1000;
const FILL_TX_PER_BLOCK = 1000;
const KEY_SAMPLE = 100_000;

interface FillChunk {
  hashes: string[];
  blocks: { height: bigint; hash: string; parent: string; time: Date; txCount: number }[];
}

export interface Tip {
  height: bigint;
  hash: string;
}

export class ChainFixture {
  readonly bench: BenchDb;
  readonly backend: BackendName;
  raw!: Raw;
  /** Tip of the chain (both sides append to it). */
  tip: Tip = { height: -1n, hash: '0'.repeat(64) };
  /** Transactions stored (Coffer's database). */
  rows = 0;
  /** Rows added by the bulk fill only (the "size" of a stage). */
  filled = 0;
  /** A uniform sample of the filled transaction hashes, for point reads. */
  readonly keys: string[] = [];
  #seen = 0;

  private constructor(bench: BenchDb) {
    this.bench = bench;
    this.backend = bench.backend;
  }

  static async create(backend: BackendName): Promise<ChainFixture> {
    const bench = await newBenchDb(backend);
    const f = new ChainFixture(bench);
    await bench.coffer.write(
      (tx) => chain(tx).registerChain({ chainId: BENCH_CHAIN, name: 'Bench', network: 'main', confirmations: CONFIRMATIONS }),
      {
        op: 'bench.registerChain',
      },
    );
    f.raw = await bench.openRaw();
    return f;
  }

  /** Records a block appended by either side. */
  advance(tip: Tip, txs: number): void {
    this.tip = tip;
    this.rows += txs;
  }

  /** Records a rollback to `tip` that removed `txs` transactions. */
  rollback(tip: Tip, txs: number): void {
    this.advance(tip, -txs);
  }

  #sample(hashes: readonly string[]): void {
    for (const h of hashes) {
      this.#seen++;
      if (this.keys.length < KEY_SAMPLE) this.keys.push(h);
      else {
        const j = Math.floor(Math.random() * this.#seen);
        if (j < KEY_SAMPLE) this.keys[j] = h;
      }
    }
  }

  /**
   * Bulk-fills the chain until `filled` reaches `target` transactions (blocks of 1000, one
   * output each, no payload). Hashes are random but inserted in ascending order per chunk, and
   * the fill's addresses ascend with the height, so every index grows by appends: a 10M-row
   * table builds in minutes. Measured blocks then insert random keys all over these indexes.
   */
  async growTo(target: number, log: (m: string) => void = () => {}): Promise<void> {
    if (this.filled >= target) return;
    const t0 = Date.now();
    const before = this.filled;
    while (this.filled < target) {
      const n = Math.min(target - this.filled, 100_000);
      const chunk = this.#chunk(n);
      await this.#insert(chunk);
      this.filled += n;
      this.rows += n;
      this.#sample(chunk.hashes);
      if (this.filled - before >= 1_000_000 && (this.filled / 1_000_000) % 1 === 0)
        log(`  filled ${this.filled.toLocaleString('en-US')} transactions`);
    }
    await this.#analyze();
    log(`  fill to ${target.toLocaleString('en-US')} transactions took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }

  #chunk(n: number): FillChunk {
    const hashes = randomHashes(n).sort();
    const nBlocks = Math.ceil(n / FILL_TX_PER_BLOCK);
    const blockHashes = randomHashes(nBlocks);
    const blocks: { height: bigint; hash: string; parent: string; time: Date; txCount: number }[] = [];
    let parent = this.tip.hash;
    let h = this.tip.height;
    for (let b = 0; b < nBlocks; b++) {
      h += 1n;
      const count = Math.min(FILL_TX_PER_BLOCK, n - b * FILL_TX_PER_BLOCK);
      blocks.push({ height: h, hash: blockHashes[b]!, parent, time: new Date(1_700_000_000_000 + Number(h) * 60_000), txCount: count });
      parent = blockHashes[b]!;
    }
    this.tip = { height: h, hash: parent };
    return { hashes, blocks };
  }

  async #insert(c: FillChunk): Promise<void> {
    const tip = this.tip;
    const finalized = tip.height - BigInt(CONFIRMATIONS) + 1n;
    const fin = finalized >= 0n ? finalized : null;
    const addr = (h: bigint, s: string) => `F${h.toString().padStart(12, '0')}${s}`;
    const txRows = (from: number, to: number) => {
      const out: unknown[][] = [];
      for (let i = from; i < to; i++) {
        const b = c.blocks[Math.floor(i / FILL_TX_PER_BLOCK)]!;
        out.push([BENCH_CHAIN, c.hashes[i]!, b.height, b.hash, i % FILL_TX_PER_BLOCK, addr(b.height, 's'), addr(b.height, 'o')]);
      }
      return out;
    };
    const n = c.hashes.length;
    if (this.raw.kind === 'sqlite') {
      // SQLite (a file, or memory://'s one connection): synchronous prepared statements, one transaction.
      const db = this.raw.db;
      const insB = db.prepare(
        'INSERT INTO chain_blocks (chain_id, height, hash, parent_hash, block_time, tx_count) VALUES (?, ?, ?, ?, ?, ?)',
      );
      const insT = db.prepare(
        'INSERT INTO chain_transactions (chain_id, tx_hash, block_height, block_hash, index_in_block, address) VALUES (?, ?, ?, ?, ?, ?)',
      );
      const insO = db.prepare(
        'INSERT INTO chain_tx_outputs (chain_id, tx_hash, address, value, block_height, index_in_block) VALUES (?, ?, ?, ?, ?, ?)',
      );
      // Set-up only: the rows are consistent by construction, so foreign keys are not checked
      // while filling (they are during every measurement).
      db.pragma('foreign_keys = OFF');
      try {
        db.transaction(() => {
          for (const b of c.blocks) insB.run(BENCH_CHAIN, b.height, b.hash, b.parent, b.time.getTime(), b.txCount);
          for (const r of txRows(0, n)) {
            insT.run(r[0], r[1], r[2], r[3], r[4], r[5]);
            insO.run(r[0], r[1], r[6], '100000', r[2], r[4]);
          }
          db.prepare('UPDATE chain_cursors SET height = ?, block_hash = ?, finalized_height = ? WHERE chain_id = ?').run(
            tip.height,
            tip.hash,
            fin,
            BENCH_CHAIN,
          );
          db.prepare('UPDATE chain_sync_health SET current_height = ? WHERE chain_id = ?').run(tip.height, BENCH_CHAIN);
        }).immediate();
      } finally {
        db.pragma('foreign_keys = ON');
      }
      return;
    }
    if (this.raw.kind === 'postgres') {
      const cl = await this.raw.pool.connect();
      try {
        await cl.query('BEGIN');
        // Set-up only: foreign-key triggers off for the fill (the rows are consistent by construction).
        await cl.query('SET LOCAL session_replication_role = replica');
        await cl.query(
          `INSERT INTO chain_blocks (chain_id, height, hash, parent_hash, block_time, tx_count)
           SELECT $1, * FROM unnest($2::bigint[], $3::varchar[], $4::varchar[], $5::timestamptz[], $6::int[])`,
          [
            BENCH_CHAIN,
            c.blocks.map((b) => b.height.toString()),
            c.blocks.map((b) => b.hash),
            c.blocks.map((b) => b.parent),
            c.blocks.map((b) => b.time),
            c.blocks.map((b) => b.txCount),
          ],
        );
        for (let s = 0; s < n; s += 25_000) {
          const rows = txRows(s, Math.min(n, s + 25_000));
          const col = (k: number) => rows.map((r) => (typeof r[k] === 'bigint' ? (r[k] as bigint).toString() : r[k]));
          await cl.query(
            `INSERT INTO chain_transactions (chain_id, tx_hash, block_height, block_hash, index_in_block, address)
             SELECT $1, * FROM unnest($2::varchar[], $3::bigint[], $4::varchar[], $5::int[], $6::varchar[])`,
            [BENCH_CHAIN, col(1), col(2), col(3), col(4), col(5)],
          );
          await cl.query(
            `INSERT INTO chain_tx_outputs (chain_id, tx_hash, address, value, block_height, index_in_block)
             SELECT $1, h, a, 100000, bh, i FROM unnest($2::varchar[], $3::varchar[], $4::bigint[], $5::int[]) AS o(h, a, bh, i)`,
            [BENCH_CHAIN, col(1), col(6), col(2), col(4)],
          );
        }
        await cl.query('UPDATE chain_cursors SET height = $1, block_hash = $2, finalized_height = $3 WHERE chain_id = $4', [
          tip.height.toString(),
          tip.hash,
          fin?.toString() ?? null,
          BENCH_CHAIN,
        ]);
        await cl.query('UPDATE chain_sync_health SET current_height = $1 WHERE chain_id = $2', [tip.height.toString(), BENCH_CHAIN]);
        await cl.query('COMMIT');
      } catch (e) {
        await cl.query('ROLLBACK').catch(() => {});
        throw e;
      } finally {
        cl.release();
      }
      return;
    }
    const cn = await this.raw.pool.getConnection();
    try {
      // Set-up only: no foreign-key checks while filling (the rows are consistent by construction).
      await cn.query('SET foreign_key_checks = 0');
      await cn.query('START TRANSACTION');
      await cn.query('INSERT INTO chain_blocks (chain_id, height, hash, parent_hash, block_time, tx_count) VALUES ?', [
        c.blocks.map((b) => [BENCH_CHAIN, b.height.toString(), b.hash, b.parent, b.time, b.txCount]),
      ]);
      for (let s = 0; s < n; s += 2000) {
        const rows = txRows(s, Math.min(n, s + 2000)).map((r) => r.map((x) => (typeof x === 'bigint' ? x.toString() : x)));
        await cn.query('INSERT INTO chain_transactions (chain_id, tx_hash, block_height, block_hash, index_in_block, address) VALUES ?', [
          rows.map((r) => r.slice(0, 6)),
        ]);
        await cn.query('INSERT INTO chain_tx_outputs (chain_id, tx_hash, address, value, block_height, index_in_block) VALUES ?', [
          rows.map((r) => [r[0], r[1], r[6], '100000', r[2], r[4]]),
        ]);
      }
      await cn.query('UPDATE chain_cursors SET height = ?, block_hash = ?, finalized_height = ? WHERE chain_id = ?', [
        tip.height.toString(),
        tip.hash,
        fin?.toString() ?? null,
        BENCH_CHAIN,
      ]);
      await cn.query('UPDATE chain_sync_health SET current_height = ? WHERE chain_id = ?', [tip.height.toString(), BENCH_CHAIN]);
      await cn.query('COMMIT');
    } catch (e) {
      await cn.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      await cn.query('SET foreign_key_checks = 1').catch(() => {});
      cn.release();
    }
  }

  /**
   * Planner statistics for the filled tables (PostgreSQL, MySQL), as a database that grew to this size in service
   * has them (autovacuum's ANALYZE; `coffer copy`/`restore` end with one too). Without them a
   * bulk-filled PostgreSQL table has no column statistics, and the planner turns Coffer's
   * 1,000-key duplicate check into a sequential scan (0.3 s per block at 1M rows) that the raw
   * side, which runs no such check, never pays.
   */
  async #analyze(): Promise<void> {
    const tables = ['chain_blocks', 'chain_transactions', 'chain_tx_outputs'];
    if (this.raw.kind === 'postgres') for (const t of tables) await this.raw.pool.query(`ANALYZE ${t}`);
    else if (this.raw.kind === 'mysql') for (const t of tables) await this.raw.pool.query(`ANALYZE TABLE ${t}`);
    // SQLite's planner needs no statistics for these key lookups; Coffer does not keep sqlite_stat1.
  }

  async close(): Promise<void> {
    await this.bench.close();
  }
}
