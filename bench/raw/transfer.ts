// The raw two-row transfer (perf-baselines' transfer, on the same database and durability as
// Coffer): lock both accounts in id order, check the balance, debit, credit, insert one ledger
// row, commit. Tables bench_accounts and bench_ledger are the bench's own.
import { randomBytes } from 'node:crypto';
import type { Raw } from '../lib/backends.js';

export interface TransferSetup {
  accounts: string[];
  initial: bigint;
}

export async function setupTransfer(raw: Raw, n: number): Promise<TransferSetup> {
  const b = randomBytes(20 * n);
  const accounts = Array.from({ length: n }, (_, i) => `0x${b.toString('hex', 20 * i, 20 * i + 20)}`);
  const initial = 1_000_000_000_000n;
  if (raw.kind === 'sqlite') {
    raw.db.exec(`CREATE TABLE bench_accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL) STRICT;
      CREATE TABLE bench_ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, from_id TEXT NOT NULL, to_id TEXT NOT NULL, amount INTEGER NOT NULL, created_at INTEGER NOT NULL) STRICT;`);
    const ins = raw.db.prepare('INSERT INTO bench_accounts (id, balance) VALUES (?, ?)');
    raw.db.transaction(() => accounts.forEach((a) => ins.run(a, initial)))();
  } else if (raw.kind === 'postgres') {
    await raw.pool.query('CREATE TABLE bench_accounts (id VARCHAR(42) PRIMARY KEY, balance BIGINT NOT NULL)');
    await raw.pool.query(
      'CREATE TABLE bench_ledger (id BIGSERIAL PRIMARY KEY, from_id VARCHAR(42) NOT NULL, to_id VARCHAR(42) NOT NULL, amount BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())',
    );
    await raw.pool.query('INSERT INTO bench_accounts (id, balance) SELECT unnest($1::varchar[]), $2', [accounts, initial.toString()]);
    await raw.pool.query('VACUUM ANALYZE bench_accounts');
  } else {
    await raw.pool.query(
      'CREATE TABLE bench_accounts (id VARCHAR(42) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB',
    );
    await raw.pool.query(
      'CREATE TABLE bench_ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, from_id VARCHAR(42) CHARACTER SET ascii NOT NULL, to_id VARCHAR(42) CHARACTER SET ascii NOT NULL, amount BIGINT NOT NULL, created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE=InnoDB',
    );
    await raw.pool.query('INSERT INTO bench_accounts (id, balance) VALUES ?', [accounts.map((a) => [a, initial.toString()])]);
  }
  return { accounts, initial };
}

function pickTwo(n: number): [number, number] {
  const a = (Math.random() * n) | 0;
  let b = (Math.random() * (n - 1)) | 0;
  if (b >= a) b++;
  return [a, b];
}

const sqliteCache = new WeakMap<object, (a: string, b: string, amt: number) => boolean>();

/** One transfer in its own durable transaction; false when the balance did not cover it. */
export async function rawTransfer(raw: Raw, s: TransferSetup): Promise<boolean> {
  const [i, j] = pickTwo(s.accounts.length);
  const a = s.accounts[i]!;
  const b = s.accounts[j]!;
  const amt = 1 + ((Math.random() * 1000) | 0);
  if (raw.kind === 'sqlite') {
    let fn = sqliteCache.get(raw.db);
    if (!fn) {
      const db = raw.db;
      const get = db.prepare('SELECT balance FROM bench_accounts WHERE id = ?').pluck();
      const deb = db.prepare('UPDATE bench_accounts SET balance = balance - ? WHERE id = ?');
      const cre = db.prepare('UPDATE bench_accounts SET balance = balance + ? WHERE id = ?');
      const led = db.prepare('INSERT INTO bench_ledger (from_id, to_id, amount, created_at) VALUES (?, ?, ?, ?)');
      const t = db.transaction((x: string, y: string, n: number) => {
        if ((get.get(x) as number) < n) return false;
        deb.run(n, x);
        cre.run(n, y);
        led.run(x, y, n, Date.now());
        return true;
      });
      fn = (x, y, n) => t.immediate(x, y, n);
      sqliteCache.set(raw.db, fn);
    }
    return fn(a, b, amt);
  }
  for (;;) {
    if (raw.kind === 'postgres') {
      const c = await raw.pool.connect();
      try {
        await c.query('BEGIN');
        const r = await c.query({
          name: 't_lock',
          text: 'SELECT id, balance FROM bench_accounts WHERE id = ANY($1::varchar[]) ORDER BY id FOR UPDATE',
          values: [[a, b]],
        });
        const bal = BigInt((r.rows as { id: string; balance: string }[]).find((x) => x.id === a)!.balance);
        if (bal < BigInt(amt)) {
          await c.query('ROLLBACK');
          return false;
        }
        await c.query({ name: 't_deb', text: 'UPDATE bench_accounts SET balance = balance - $1 WHERE id = $2', values: [amt, a] });
        await c.query({ name: 't_cre', text: 'UPDATE bench_accounts SET balance = balance + $1 WHERE id = $2', values: [amt, b] });
        await c.query({
          name: 't_led',
          text: 'INSERT INTO bench_ledger (from_id, to_id, amount) VALUES ($1, $2, $3)',
          values: [a, b, amt],
        });
        await c.query('COMMIT');
        return true;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => {});
        const code = (e as { code?: string }).code;
        if (code === '40P01' || code === '40001') continue;
        throw e;
      } finally {
        c.release();
      }
    }
    const c = await raw.pool.getConnection();
    try {
      await c.query('START TRANSACTION');
      const [rows] = await c.execute('SELECT id, balance FROM bench_accounts WHERE id IN (?, ?) ORDER BY id FOR UPDATE', [a, b]);
      const bal = BigInt((rows as { id: string; balance: string }[]).find((x) => x.id === a)!.balance);
      if (bal < BigInt(amt)) {
        await c.query('ROLLBACK');
        return false;
      }
      await c.execute('UPDATE bench_accounts SET balance = balance - ? WHERE id = ?', [amt, a]);
      await c.execute('UPDATE bench_accounts SET balance = balance + ? WHERE id = ?', [amt, b]);
      await c.execute('INSERT INTO bench_ledger (from_id, to_id, amount) VALUES (?, ?, ?)', [a, b, amt]);
      await c.query('COMMIT');
      return true;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      const code = (e as { code?: string }).code;
      if (code === 'ER_LOCK_DEADLOCK' || code === 'ER_LOCK_WAIT_TIMEOUT') continue;
      throw e;
    } finally {
      c.release();
    }
  }
}

/** Sum of balances (must not change) and ledger rows. */
export async function transferTotals(raw: Raw): Promise<{ sum: bigint; ledger: number }> {
  if (raw.kind === 'sqlite') {
    const r = raw.db.prepare('SELECT (SELECT sum(balance) FROM bench_accounts) AS s, (SELECT count(*) FROM bench_ledger) AS l').get() as {
      s: number | bigint;
      l: number | bigint;
    };
    return { sum: BigInt(r.s), ledger: Number(r.l) };
  }
  if (raw.kind === 'postgres') {
    const r = (
      await raw.pool.query('SELECT (SELECT sum(balance) FROM bench_accounts)::text AS s, (SELECT count(*) FROM bench_ledger)::int AS l')
    ).rows[0] as { s: string; l: number };
    return { sum: BigInt(r.s), ledger: r.l };
  }
  const [rows] = await raw.pool.query(
    'SELECT CAST((SELECT sum(balance) FROM bench_accounts) AS CHAR) AS s, (SELECT count(*) FROM bench_ledger) AS l',
  );
  const r = (rows as { s: string; l: string }[])[0]!;
  return { sum: BigInt(r.s), ledger: Number(r.l) };
}
