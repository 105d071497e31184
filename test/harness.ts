// Runs a suite on every backend available: memory and an SQLite file always; PostgreSQL and
// MySQL/MariaDB when COFFER_TEST_POSTGRES_URL / COFFER_TEST_MYSQL_URL are set, and then they
// are mandatory (an unreachable server fails the run, it is not skipped). Every database is
// created with a random name and dropped afterwards.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe } from 'node:test';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { Coffer, type OpenOptions } from '../src/db/store.js';
import { withDatabase } from '../src/db/url.js';
import { toBigInt } from '../src/db/codec.js';

export type BackendName = 'memory' | 'sqlite' | 'postgres' | 'mysql';
export const ALL_BACKENDS: readonly BackendName[] = ['memory', 'sqlite', 'postgres', 'mysql'];

const ENV: Record<'postgres' | 'mysql', string> = { postgres: 'COFFER_TEST_POSTGRES_URL', mysql: 'COFFER_TEST_MYSQL_URL' };

/** Why a backend is skipped, or undefined when it runs. */
export function skipReason(b: BackendName): string | undefined {
  if (b === 'memory' || b === 'sqlite') return undefined;
  return process.env[ENV[b]] ? undefined : `${ENV[b]} not set`;
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

function randomName(): string {
  return `coffer_t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/** Creates an empty database on a backend. */
export async function createDatabase(b: BackendName): Promise<TestDatabase> {
  if (b === 'memory') return { url: 'memory://', drop: async () => {} };
  if (b === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-test-'));
    return { url: `sqlite:${join(dir, 'coffer.db')}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const admin = process.env[ENV[b]]!;
  const name = randomName();
  if (b === 'postgres') {
    const client = new pg.Client({ connectionString: admin, connectionTimeoutMillis: 5000 });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE "${name}"`);
    } finally {
      await client.end();
    }
    return {
      url: withDatabase(admin, name),
      drop: async () => {
        const c = new pg.Client({ connectionString: admin });
        await c.connect();
        try {
          await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        } finally {
          await c.end();
        }
      },
    };
  }
  const u = new URL(admin);
  const connect = () =>
    mysql.createConnection({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username) || 'root',
      password: decodeURIComponent(u.password),
      connectTimeout: 5000,
    });
  const conn = await connect();
  try {
    await conn.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } finally {
    await conn.end();
  }
  return {
    url: withDatabase(admin, name),
    drop: async () => {
      const c = await connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
      } finally {
        await c.end();
      }
    },
  };
}

export interface BackendContext {
  backend: BackendName;
  /** A fresh empty database; dropped when the suite ends. */
  newDatabase(): Promise<TestDatabase>;
  /** Opens Coffer on a fresh database (migrated unless opts.migrate says otherwise); closed and dropped at the end. */
  open(opts?: Omit<OpenOptions, 'url'> & { url?: string }): Promise<Coffer>;
}

/** Declares `title [backend]` suites, one per backend, skipping only those not configured. */
export function forEachBackend(title: string, body: (ctx: BackendContext) => void, only: readonly BackendName[] = ALL_BACKENDS): void {
  for (const backend of only) {
    const skip = skipReason(backend);
    describe(`${title} [${backend}]`, skip ? { skip } : {}, () => {
      const databases: TestDatabase[] = [];
      const open: Coffer[] = [];
      const ctx: BackendContext = {
        backend,
        newDatabase: async () => {
          const d = await createDatabase(backend);
          databases.push(d);
          return d;
        },
        open: async (opts = {}) => {
          const url = opts.url ?? (await ctx.newDatabase()).url;
          const c = await Coffer.open({ ...opts, url });
          open.push(c);
          return c;
        },
      };
      after(async () => {
        for (const c of open) await c.close().catch(() => {});
        for (const d of databases) await d.drop();
      });
      body(ctx);
    });
  }
}

/** How many rows `table` holds, read in its own transaction (tests check that nothing was written). */
export async function rowCount(coffer: Coffer, table: string): Promise<bigint> {
  return coffer.read(async (tx) =>
    toBigInt(
      (
        await tx.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    ),
  );
}
