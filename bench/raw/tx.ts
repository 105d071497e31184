// One transaction on one pooled connection of a raw driver: BEGIN (or START TRANSACTION), the
// work, COMMIT; ROLLBACK when the work throws. The raw sides of every workload share it.
import type mysql from 'mysql2/promise';
import type pg from 'pg';

interface Connection {
  query(sql: string): Promise<unknown>;
  release(): void;
}

async function inTx<C extends Connection, T>(c: C, begin: string, fn: (c: C) => Promise<T>): Promise<T> {
  try {
    await c.query(begin);
    try {
      const r = await fn(c);
      await c.query('COMMIT');
      return r;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    }
  } finally {
    c.release();
  }
}

export async function pgTx<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>, readOnly = false): Promise<T> {
  return inTx(await pool.connect(), readOnly ? 'START TRANSACTION READ ONLY' : 'BEGIN', fn);
}

export async function myTx<T>(pool: mysql.Pool, fn: (c: mysql.PoolConnection) => Promise<T>, readOnly = false): Promise<T> {
  return inTx(await pool.getConnection(), readOnly ? 'START TRANSACTION READ ONLY' : 'START TRANSACTION', fn);
}
