// Timestamps are exact on every backend: the codec takes the years 1000 to 9999 (UTC) that every
// backend stores (a ValidationError naming the field for anything else, before any SQL runs),
// and reads give back the same millisecond, through the codec, through Kysely's raw rows, and
// through a logical backup, a restore and a copy between backends. MySQL/MariaDB's reads are
// parsed by the codec (mysql2 read years 0-99 as 1900-1999), which a time stored by other SQL
// outside the range also shows.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { sql } from 'kysely';
import { encodeValue, parseMysqlDateTime, TIMESTAMP_MAX_MS, TIMESTAMP_MIN_MS } from '../src/db/codec.js';
import { ValidationError } from '../src/db/errors.js';
import { Coffer } from '../src/db/store.js';
import type { Tx } from '../src/db/tx.js';
import { backupDatabase } from '../src/ops/backup.js';
import { copyDatabase } from '../src/ops/copy.js';
import { restoreDatabase } from '../src/ops/restore.js';
import type { Dialect } from '../src/schema/model.js';
import { isStorableTime } from '../src/util/zod-parse.js';
import { createDatabase, forEachBackend, rowCount, skipReason, type BackendName, type TestDatabase } from './harness.js';

const TIMESTAMP = { kind: 'timestamp' } as const;
const DIALECTS: readonly Dialect[] = ['sqlite', 'postgres', 'mysql'];
const iso = (s: string) => new Date(s);

/** "Now" with a millisecond part that is not 0. */
function nowWithMs(): Date {
  const t = Date.now();
  return new Date(t % 1000 === 0 ? t + 7 : t);
}

/** Times every backend stores, and must give back to the millisecond. */
const EDGES: Record<string, Date> = {
  t_min: iso('1000-01-01T00:00:00.000Z'),
  t_max: iso('9999-12-31T23:59:59.999Z'),
  t_before_epoch: new Date(-1),
  t_epoch: new Date(0),
  t_leap: iso('2024-02-29T23:59:59.987Z'),
  t_now: nowWithMs(),
};

/** Times outside the range, each refused on every backend. */
const OUTSIDE: Record<string, Date> = {
  year_50: iso('0050-06-01T00:00:00.000Z'),
  year_0: iso('0000-01-01T00:00:00.000Z'),
  year_999: iso('0999-06-01T12:00:00.000Z'),
  just_before: new Date(TIMESTAMP_MIN_MS - 1),
  just_after: new Date(TIMESTAMP_MAX_MS + 1),
  year_275760: new Date(8.64e15),
};

/** MySQL's text of an instant, as the server sends it ('YYYY-MM-DD hh:mm:ss.fff'). */
const mysqlText = (d: Date) => d.toISOString().replace('T', ' ').replace('Z', '');

test('the range is 1000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z, as the domains check it', () => {
  assert.equal(new Date(TIMESTAMP_MIN_MS).toISOString(), '1000-01-01T00:00:00.000Z');
  assert.equal(new Date(TIMESTAMP_MAX_MS).toISOString(), '9999-12-31T23:59:59.999Z');
  for (const ms of [TIMESTAMP_MIN_MS - 1, TIMESTAMP_MIN_MS, 0, TIMESTAMP_MAX_MS, TIMESTAMP_MAX_MS + 1]) {
    const inCodec = ms >= TIMESTAMP_MIN_MS && ms <= TIMESTAMP_MAX_MS;
    assert.equal(isStorableTime(ms), inCodec, `util/zod-parse.ts disagrees with the codec at ${ms}`);
  }
});

test('the codec takes every time in the range and refuses the rest, naming the field, on every dialect', () => {
  for (const d of DIALECTS) {
    for (const [name, v] of Object.entries(EDGES)) {
      const out = encodeValue(d, TIMESTAMP, v, name);
      assert.deepEqual(out, d === 'sqlite' ? BigInt(v.getTime()) : v, `${d} ${name}`);
    }
    for (const [name, v] of Object.entries(OUTSIDE)) {
      assert.throws(
        () => encodeValue(d, TIMESTAMP, v, `row.${name}`),
        (e: unknown) =>
          e instanceof ValidationError &&
          e.message === `row.${name}: must be within the years 1000 to 9999 (UTC)` &&
          (e.details as { field?: string }).field === `row.${name}`,
        `${d} ${name}`,
      );
    }
    for (const v of [new Date(NaN), '2024-01-01T00:00:00Z', Date.now()]) {
      assert.throws(
        () => encodeValue(d, TIMESTAMP, v, 'at'),
        (e: unknown) => e instanceof ValidationError && e.message === 'at: expected a valid Date',
      );
    }
  }
});

test('parseMysqlDateTime reads every millisecond of the years 0 to 9999 exactly', () => {
  const first = Date.UTC(2000, 0, 1) - 2000 * 365.2425 * 86_400_000; // 0000-01-01T00:00:00.000Z
  assert.equal(new Date(first).toISOString(), '0000-01-01T00:00:00.000Z');
  fc.assert(
    fc.property(fc.integer({ min: first, max: TIMESTAMP_MAX_MS }), (ms) => {
      const d = new Date(ms);
      assert.equal(parseMysqlDateTime(mysqlText(d)).getTime(), ms, mysqlText(d));
    }),
    { numRuns: 5000 },
  );
  const cases: [string, string][] = [
    ['0050-06-01 00:00:00.123', '0050-06-01T00:00:00.123Z'],
    ['0000-02-29 12:00:00.000', '0000-02-29T12:00:00.000Z'], // a leap day of year 0 (1900 had none)
    ['0099-12-31 23:59:59.999', '0099-12-31T23:59:59.999Z'],
    ['0100-01-01 00:00:00.000', '0100-01-01T00:00:00.000Z'],
    ['0999-12-31 23:59:59.999', '0999-12-31T23:59:59.999Z'],
    ['1000-01-01 00:00:00.000', '1000-01-01T00:00:00.000Z'],
    ['9999-12-31 23:59:59.999', '9999-12-31T23:59:59.999Z'],
    ['2024-01-02 03:04:05', '2024-01-02T03:04:05.000Z'],
    ['2024-01-02 03:04:05.1', '2024-01-02T03:04:05.100Z'],
    ['2024-01-02 03:04:05.123456', '2024-01-02T03:04:05.123Z'], // cut to the millisecond, as mysql2 does
    ['2024-01-02', '2024-01-02T00:00:00.000Z'],
    ['0012-03-04', '0012-03-04T00:00:00.000Z'],
  ];
  for (const [text, want] of cases) assert.equal(parseMysqlDateTime(text).toISOString(), want, text);
  for (const bad of ['0000-00-00 00:00:00', '2024-00-10 00:00:00', '2024-13-01', '2024-01-32', '', '2024']) {
    assert.ok(Number.isNaN(parseMysqlDateTime(bad).getTime()), bad);
  }
});

/** Inserts one coffer_meta row per entry of `times` (meta_key = its name). */
async function insertTimes(coffer: Coffer, times: Record<string, Date>): Promise<void> {
  await coffer.write(
    async (tx) => {
      for (const [k, v] of Object.entries(times)) await tx.insert('coffer_meta', { meta_key: `ts_${k}`, meta_value: k, updated_at: v });
    },
    { op: 'test.timestamps' },
  );
}

/** The stored time of every coffer_meta row named ts_*, decoded by the codec, in ms. */
async function storedTimes(coffer: Coffer): Promise<Record<string, number>> {
  return coffer.read(async (tx) => {
    const rows = await tx.db.selectFrom('coffer_meta').selectAll().where('meta_key', 'like', 'ts_%').execute();
    const codec = tx.codec('coffer_meta');
    const out: Record<string, number> = {};
    for (const r of rows) out[String(r.meta_key).slice(3)] = codec.decode<{ updated_at: Date }>(r).updated_at.getTime();
    return out;
  });
}

const msOf = (times: Record<string, Date>) => Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.getTime()]));

/** The server's own text of a stored time (UTC, to the millisecond), or its integer on SQLite. */
async function serverText(tx: Tx, key: string): Promise<string> {
  const q =
    tx.dialect === 'postgres'
      ? sql<{
          v: string;
        }>`select to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') as v from coffer_meta where meta_key = ${key}`
      : tx.dialect === 'mysql'
        ? sql<{ v: string }>`select date_format(updated_at, '%Y-%m-%d %H:%i:%s.%f') as v from coffer_meta where meta_key = ${key}`
        : sql<{ v: string }>`select cast(updated_at as text) as v from coffer_meta where meta_key = ${key}`;
  return String((await q.execute(tx.db)).rows[0]!.v);
}

forEachBackend('timestamps', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
  });

  test('times at the range edges, before 1970 and now round-trip to the millisecond', async () => {
    await insertTimes(coffer, EDGES);
    assert.deepEqual(await storedTimes(coffer), msOf(EDGES));
    await coffer.read(async (tx) => {
      for (const [k, v] of Object.entries(EDGES)) {
        // What the server holds is the instant itself (a write that shifted it would show here).
        const want = coffer.dialect === 'sqlite' ? String(v.getTime()) : mysqlText(v);
        assert.equal((await serverText(tx, `ts_${k}`)).slice(0, want.length), want, k);
        // Rows Kysely returns without the codec carry the exact instant too (a Date, or ms on SQLite).
        const raw = (await tx.selectWhere('coffer_meta', { meta_key: `ts_${k}` }))[0]!.updated_at;
        assert.equal(raw instanceof Date ? raw.getTime() : Number(raw), v.getTime(), k);
      }
      // A lookup by time finds the row: the encoded value is what was stored.
      const found = await tx.selectWhere('coffer_meta', { updated_at: EDGES.t_min! });
      assert.deepEqual(
        found.map((r) => r.meta_key),
        ['ts_t_min'],
      );
    });
  });

  test('a time outside the years 1000-9999 is refused with a ValidationError naming the field, and nothing is written', async () => {
    const before = await rowCount(coffer, 'coffer_meta');
    for (const [k, v] of Object.entries(OUTSIDE)) {
      await assert.rejects(
        coffer.write(
          async (tx) => {
            await tx.insert('coffer_meta', { meta_key: `bad_ok_${k}`, meta_value: 'fine', updated_at: EDGES.t_now! });
            await tx.insert('coffer_meta', { meta_key: `bad_${k}`, meta_value: k, updated_at: v });
          },
          { op: 'test.timestamps' },
        ),
        (e: unknown) =>
          e instanceof ValidationError &&
          (e.details as { field?: string }).field === 'updated_at' &&
          /^updated_at: must be within the years 1000 to 9999 \(UTC\)$/.test(e.message),
        k,
      );
      await assert.rejects(
        coffer.write((tx) => tx.updateWhere('coffer_meta', { updated_at: v }, { meta_key: 'ts_t_epoch' }), { op: 'test.timestamps' }),
        (e: unknown) => e instanceof ValidationError && (e.details as { field?: string }).field === 'updated_at',
        k,
      );
    }
    assert.equal(await rowCount(coffer, 'coffer_meta'), before);
    assert.equal((await storedTimes(coffer)).t_epoch, 0);
  });

  test('a time stored outside the range by other SQL reads back exactly (MySQL years 0-99 are not moved to 1900-1999)', async () => {
    const times: [string, string][] = [
      ['raw_50', '0050-06-01T00:00:00.123Z'],
      ['raw_99', '0099-12-31T23:59:59.999Z'],
      ['raw_999', '0999-12-31T23:59:59.999Z'],
    ];
    // PostgreSQL has no year 0 (1 BC); MySQL/MariaDB and SQLite's integers do.
    if (coffer.dialect !== 'postgres') times.push(['raw_0', '0000-01-15T12:00:00.000Z']);
    await coffer.write(
      async (tx) => {
        for (const [k, t] of times) {
          const d = new Date(t);
          const v =
            tx.dialect === 'sqlite'
              ? sql.lit(d.getTime())
              : tx.dialect === 'postgres'
                ? sql`${mysqlText(d)}::timestamptz`
                : sql`cast(${mysqlText(d)} as datetime(3))`;
          await sql`insert into coffer_meta (meta_key, meta_value, updated_at) values (${`ts_${k}`}, 'raw', ${v})`.execute(tx.db);
        }
      },
      { op: 'test.timestamps' },
    );
    const stored = await storedTimes(coffer);
    for (const [k, t] of times) assert.equal(new Date(stored[k]!).toISOString(), t, k);
  });
});

// A copy and a logical backup/restore between backends carry the edge times exactly; a time
// outside the range in the source stops the copy naming the column instead of carrying it.
const RING: readonly BackendName[] = (['memory', 'sqlite', 'mysql', 'postgres'] as const).filter((b) => !skipReason(b));

describe('timestamps through a copy and a logical backup/restore', { concurrency: 4 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-ts-'));
  const dbs: TestDatabase[] = [];
  const open: Coffer[] = [];
  const openOn = async (b: BackendName, migrate = true) => {
    const d = await createDatabase(b);
    dbs.push(d);
    const c = await Coffer.open({ url: d.url, ...(migrate ? {} : { migrate: 'skip' as const }) });
    open.push(c);
    return c;
  };
  after(async () => {
    for (const c of open) await c.close().catch(() => {});
    for (const d of dbs) await d.drop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  RING.forEach((from, i) => {
    const to = RING[(i + 1) % RING.length]!;
    const back = RING[(i + RING.length - 1) % RING.length]!;
    test(`${from} → ${to} copy and ${from} → ${back} logical restore keep every edge time exact`, async () => {
      const source = await openOn(from);
      await insertTimes(source, EDGES);
      const copied = await openOn(to, false);
      const report = await copyDatabase(source, copied);
      assert.equal(report.verified, true);
      assert.deepEqual(await storedTimes(copied), msOf(EDGES));
      const file = join(dir, `${from}.logical`);
      await backupDatabase(source, file, { format: 'logical' });
      const restored = await openOn(back, false);
      const r = await restoreDatabase(file, restored);
      assert.equal(r.verified, true);
      assert.deepEqual(await storedTimes(restored), msOf(EDGES));
    });

    test(`a ${from} time outside the range stops a copy to ${to}, naming the column`, async () => {
      const source = await openOn(from);
      const y50 = new Date('0050-06-01T00:00:00.000Z');
      const v =
        source.dialect === 'sqlite'
          ? sql.lit(y50.getTime())
          : source.dialect === 'postgres'
            ? sql`${mysqlText(y50)}::timestamptz`
            : sql`cast(${mysqlText(y50)} as datetime(3))`;
      await source.write(
        (tx) => sql`insert into coffer_meta (meta_key, meta_value, updated_at) values ('ts_y50', 'raw', ${v})`.execute(tx.db),
        {
          op: 'test.timestamps',
        },
      );
      assert.equal((await storedTimes(source)).y50, y50.getTime());
      const target = await openOn(to, false);
      await assert.rejects(copyDatabase(source, target), /coffer_meta\.updated_at: must be within the years 1000 to 9999 \(UTC\)/);
    });
  });
});
