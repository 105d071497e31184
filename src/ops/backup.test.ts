// `coffer backup` and `coffer restore`: round trips in every format across every available
// backend, snapshots taken while writers run, and every way a backup or restore can go wrong
// (damaged files, missing tools, full disks, interruptions, non-empty targets).
import assert from 'node:assert/strict';
import fs, { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { sql } from 'kysely';
import { toBigInt } from '../db/codec.js';
import { ConfigError, MigrationError, StorageFullError, UniqueViolationError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { verifyAuditLog } from '../domains/audit/verify.js';
import type { Migration } from '../migrations/migration.js';
import { appendBlock, appendLink, fixtureProblems, OPS_MIGRATIONS, opsFixture } from '../../test/fixtures/ops-fixture.js';
import {
  appendAudit,
  appendChainBlock,
  AVAILABLE,
  chainCursorProblems,
  dumpAll,
  filledSource,
  heldBy,
  holdTargetLock,
  Pool,
  type FilledSource,
} from '../../test/fixtures/ops-helpers.js';
import { headerOf, logicalLines, sections, withDuplicateRow, writeLogical } from '../../test/fixtures/logical-edit.js';
import { ALL_BACKENDS, skipReason, type BackendName } from '../../test/harness.js';
import { backupDatabase } from './backup.js';
import { dataTables, describeCoffer, listTables } from './db.js';
import { InterruptedError, VerificationError } from './errors.js';
import type { LogicalHeader } from './logical.js';
import { fileDigest, readManifestFile } from './manifest.js';
import { describeMarker, MARKER_TABLE, readMarker } from './marker.js';
import { SilentProgress } from './progress.js';
import { detectBackupKind, restoreDatabase, restoreInto } from './restore.js';
import { collectStats } from './sizes.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-backup-test-'));
let n = 0;
const file = (name: string) => join(dir, `${++n}-${name}`);

const NATIVE: Record<BackendName, string> = { memory: 'logical', sqlite: 'sqlite', postgres: 'pg_dump', mysql: 'mysqldump' };

type Counted = 'fxo_links' | 'fxo_blocks' | 'audit_log';

async function counts(c: Coffer): Promise<Record<Counted, bigint>> {
  return c.read(async (tx) => {
    const out = { fxo_links: 0n, fxo_blocks: 0n, audit_log: 0n };
    for (const t of Object.keys(out) as Counted[]) {
      out[t] = toBigInt(
        (
          (await tx.db
            .selectFrom(t)
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()) as { n: unknown }
        ).n,
      );
    }
    return out;
  });
}

/**
 * A Ctrl-C that lands while the first batch of a restore is being written: the loader's check
 * before that batch sees none, everything after it sees the signal aborted.
 */
function ctrlCDuringFirstBatch(): { signal: AbortSignal; progress: SilentProgress } {
  const ac = new AbortController();
  let reads = -1;
  const progress = new (class extends SilentProgress {
    override phase(name: string, totalRows: number | null, unit?: string) {
      super.phase(name, totalRows, unit);
      if (name === 'restore') reads = 0;
    }
  })();
  const signal = new Proxy(ac.signal, {
    get(t, p) {
      if (p === 'aborted' && reads >= 0 && ++reads === 2) ac.abort();
      const v: unknown = Reflect.get(t, p, t);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
  return { signal, progress };
}

describe('backup and restore', () => {
  const pool = new Pool();
  const sources = new Map<BackendName, FilledSource>();
  const logical = new Map<BackendName, string>();
  before(async () => {
    await Promise.all(
      AVAILABLE.map(async (b) => {
        const s = await filledSource(pool, b);
        sources.set(b, s);
        const f = file(`${b}.logical`);
        await backupDatabase(s.coffer, f, { format: 'logical', batchSize: 5 });
        logical.set(b, f);
      }),
    );
  });
  after(async () => {
    await pool.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  // Round trips run six at a time: most of their time is the target server applying migrations.
  describe('round trips', { concurrency: 6 }, () => {
    for (const from of ALL_BACKENDS) {
      for (const to of ALL_BACKENDS) {
        const skip = skipReason(from) ?? skipReason(to);
        test(`logical backup of ${from} restores into ${to}, verified against its manifest`, skip ? { skip } : {}, async () => {
          const f = logical.get(from)!;
          assert.equal(detectBackupKind(f), 'logical');
          const { coffer: target } = await pool.emptyTarget(to);
          const r = await restoreDatabase(f, target, { batchSize: 4 });
          assert.equal(r.kind, 'logical');
          assert.equal(r.verified, true);
          assert.deepEqual(await dumpAll(target), sources.get(from)!.dump);
          assert.equal(await readMarker(target.engine.reader, target.dialect), null);
          assert.equal((await verifyAuditLog(target)).ok, true);
        });
      }
    }

    for (const b of ALL_BACKENDS.filter((x) => x !== 'memory')) {
      test(
        `native backup of ${b} (${NATIVE[b]}) restores into ${b}, verified against its manifest`,
        skipReason(b) ? { skip: skipReason(b) } : {},
        async () => {
          const s = sources.get(b)!;
          const f = file(`${b}.native`);
          const r = await backupDatabase(s.coffer, f, { batchSize: 5 });
          assert.equal(r.kind, NATIVE[b]);
          assert.ok(existsSync(f) && existsSync(`${f}.manifest.json`));
          // Only this backup's own files: the round trips run concurrently in the same directory.
          assert.ok(!existsSync(`${f}.partial`) && !existsSync(`${f}.manifest.json.partial`), 'no partial file is left');
          const m = readManifestFile(f)!;
          assert.equal(m.kind, NATIVE[b]);
          assert.equal(m.file?.sha256, r.sha256);
          assert.equal(detectBackupKind(f), NATIVE[b]);
          // Into a database the service already migrated (empty tables, seed rows, trigger functions).
          const { coffer: target } = await pool.emptyTarget(b);
          await target.migrator.apply();
          const rr = await restoreDatabase(f, target);
          assert.equal(rr.verified, true);
          assert.deepEqual(await dumpAll(target), s.dump);
          assert.equal((await verifyAuditLog(target)).ok, true);
        },
      );
    }

    for (const to of ALL_BACKENDS) {
      test(
        `a SQLite file backup restores into ${to}`,
        skipReason(to) || skipReason('sqlite') ? { skip: skipReason(to) ?? skipReason('sqlite') } : {},
        async () => {
          const s = sources.get('sqlite')!;
          const f = file('sqlite-any.backup');
          await backupDatabase(s.coffer, f, { format: 'native' });
          const { coffer: target } = await pool.emptyTarget(to);
          const r = await restoreDatabase(f, target, { batchSize: 7 });
          assert.equal(r.kind, 'sqlite');
          assert.equal(r.verified, true);
          assert.deepEqual(await dumpAll(target), s.dump);
        },
      );
    }
  });

  // The runner checks the order of migrations only within a domain, so two builds may list the
  // same migrations across domains in different orders, and so order their tables differently.
  const reordered: readonly Migration[] = [opsFixture, ...OPS_MIGRATIONS.filter((m) => m !== opsFixture)];
  const tableOrder = (c: Coffer) => dataTables(c.schema).map((t) => t.name);
  describe('a build that lists the migrations across domains in another order', { concurrency: 4 }, () => {
    for (const b of ALL_BACKENDS) {
      test(`restores a logical backup of ${b} in the backup's table order`, skipReason(b) ? { skip: skipReason(b) } : {}, async () => {
        const s = sources.get(b)!;
        const target = await pool.open((await pool.database(b)).url, { migrate: 'skip', migrations: reordered });
        assert.notDeepEqual(tableOrder(target), tableOrder(s.coffer), 'the two builds order the tables differently');
        assert.deepEqual([...tableOrder(target)].sort(), [...tableOrder(s.coffer)].sort());
        const r = await restoreDatabase(logical.get(b)!, target, { batchSize: 4 });
        assert.equal(r.verified, true);
        assert.deepEqual(await dumpAll(target), s.dump);
        assert.equal(await readMarker(target.engine.reader, target.dialect), null);
        assert.deepEqual(await target.migrator.verify(), [], 'the target has every migration of that build');
      });
    }
  });

  test('a logical backup whose header lists a table before one its foreign keys reference is refused, the target untouched', async () => {
    const s = sources.get(AVAILABLE[0]!)!;
    const lines = gunzipSync(readFileSync(logical.get(s.backend)!))
      .toString('utf8')
      .split('\n');
    const header = JSON.parse(lines[0]!) as LogicalHeader;
    const child = dataTables(s.coffer.schema).find((t) => t.foreignKeys.some((fk) => fk.refTable !== t.name))!;
    const parent = child.foreignKeys.find((fk) => fk.refTable !== child.name)!.refTable;
    const [entry] = header.tables.splice(
      header.tables.findIndex((t) => t.name === child.name),
      1,
    );
    header.tables.splice(
      header.tables.findIndex((t) => t.name === parent),
      0,
      entry!,
    );
    const edited = file('child-first.logical');
    writeFileSync(edited, gzipSync([JSON.stringify(header), ...lines.slice(1)].join('\n')));
    const { coffer: target } = await pool.emptyTarget('sqlite');
    await assert.rejects(
      restoreDatabase(edited, target),
      (e: unknown) =>
        e instanceof ConfigError && e.message.includes(`is damaged: it lists table ${child.name} before ${parent}, which its foreign key`),
    );
    assert.equal(await readMarker(target.engine.reader, target.dialect), null, 'the target was not touched');
  });

  describe('a logical backup whose sections disagree with its header', () => {
    for (const to of ALL_BACKENDS) {
      test(
        `is refused naming the table and its position, before the target on ${to} is touched`,
        skipReason(to) ? { skip: skipReason(to) } : {},
        async () => {
          const s = sources.get(AVAILABLE[0]!)!;
          const lines = logicalLines(logical.get(s.backend)!);
          const header = headerOf(lines);
          const names = header.tables.map((t) => t.name);
          // Two neighbours the header can list either way round (neither references the other),
          // so only the order of the sections gives the edit away.
          const fks = new Map(dataTables(s.coffer.schema).map((t) => [t.name, t.foreignKeys.map((fk) => fk.refTable)]));
          const i = names.findIndex((name, k) => k + 1 < names.length && !fks.get(names[k + 1]!)!.includes(name));
          const [a, b] = [names[i]!, names[i + 1]!];
          [header.tables[i], header.tables[i + 1]] = [header.tables[i + 1]!, header.tables[i]!];
          const swapped = file('swapped-header.logical');
          writeLogical(swapped, [JSON.stringify(header), ...lines.slice(1)]);
          // Cut short after a whole section: every section present is intact, the rest missing.
          const secs = sections(lines);
          const cutAfter = secs.get(names[names.length - 3]!)!.end;
          const truncated = file('whole-sections.logical');
          writeLogical(truncated, lines.slice(0, cutAfter + 1));
          const count = names.length;
          const { coffer: target } = await pool.emptyTarget(to);
          for (const [f, message] of [
            [
              swapped,
              `its header lists table ${b} at position ${i + 1} of ${count}, but section ${i + 1} is table ${a} (position ${i + 2} of ${count} in its header)`,
            ],
            [
              truncated,
              `its header lists table ${names[count - 2]} at position ${count - 1} of ${count}, but the file ends after ${count - 2} table section(s)`,
            ],
          ] as const) {
            await assert.rejects(
              restoreDatabase(f, target),
              (e: unknown) => e instanceof ConfigError && e.message.includes(`backup file ${f} is damaged or truncated: ${message}`),
            );
            assert.equal(await readMarker(target.engine.reader, target.dialect), null, 'the target was not marked');
            assert.deepEqual([...(await listTables(target.engine.reader, target.dialect))], [], 'nor migrated');
          }
        },
      );
    }
  });

  describe('a restore that fails part way', () => {
    /** A copy of the first source's logical backup every check accepts, whose load stops at a duplicate key in a late table. */
    const failingBackup = (name: string) => {
      const s = sources.get(AVAILABLE[0]!)!;
      const good = logical.get(s.backend)!;
      const counts = sections(logicalLines(good));
      const table = [...counts.entries()].filter(([, x]) => x.rows > 1).pop()![0];
      const bad = file(name);
      withDuplicateRow(good, table, bad);
      return { s, good, bad };
    };

    for (const to of ALL_BACKENDS) {
      test(
        `into a ${to} database that existed before leaves it marked failed, saying why and what to do`,
        skipReason(to) ? { skip: skipReason(to) } : {},
        async () => {
          const { s, good, bad } = failingBackup('duplicate-row.logical');
          const { coffer: target } = await pool.emptyTarget(to);
          let message = '';
          await assert.rejects(restoreDatabase(bad, target, { batchSize: 4 }), (e: unknown) => {
            message = (e as Error).message;
            return (
              e instanceof UniqueViolationError &&
              message.includes(
                `${describeCoffer(target)} is left marked as a failed restore (table coffer_ops_progress; ${describeCoffer(target)} existed before this restore, so it is not removed)`,
              ) &&
              /fix the cause and run the same coffer restore again to resume it, or add --discard to throw away what was loaded$/.test(
                message,
              )
            );
          });
          const marker = (await readMarker(target.engine.reader, target.dialect))!;
          assert.equal(marker.state, 'failed');
          assert.ok(marker.tables.size > 0, 'rows were loaded before the failure');
          assert.ok(message.startsWith(String(marker.info.error)), 'the marker records why');
          assert.match(describeMarker(marker), /state failed: /);
          // Run again, the restore resumes (and stops at the same row); run with an intact copy
          // of the backup (the cause fixed), it resumes to a verified result.
          const progress = new SilentProgress();
          await assert.rejects(restoreDatabase(bad, target, { batchSize: 4, progress }), (e: unknown) => e instanceof UniqueViolationError);
          assert.ok(
            progress.notes.some((x) => /^resuming an incomplete restore .* state failed: /.test(x)),
            progress.notes.join('\n'),
          );
          const r = await restoreDatabase(good, target, { batchSize: 4 });
          assert.equal(r.resumed, true);
          assert.equal(r.verified, true);
          assert.deepEqual(await dumpAll(target), s.dump);
          assert.equal(await readMarker(target.engine.reader, target.dialect), null);
        },
      );
    }

    for (const to of ALL_BACKENDS) {
      test(
        `into a ${to} target that coffer restore opens: a SQLite file it created is removed with its -wal/-shm and folder, an existing target is kept`,
        skipReason(to) ? { skip: skipReason(to) } : {},
        async () => {
          const { good, bad } = failingBackup('duplicate-row-into.logical');
          // A SQLite target in a folder that does not exist yet: restore creates both.
          const folder = join(dir, `${++n}-new`);
          const url = to === 'sqlite' ? `sqlite:${join(folder, 'sub', 'restored.db')}` : (await pool.database(to)).url;
          const path = to === 'sqlite' ? url.slice('sqlite:'.length) : null;
          const existed = to === 'postgres' || to === 'mysql';
          const into = { url, migrations: OPS_MIGRATIONS, open: () => pool.open(url, { migrate: 'skip' }) };
          await assert.rejects(restoreInto(bad, into, { batchSize: 4 }), (e: unknown) => {
            assert.ok(e instanceof UniqueViolationError, String(e));
            if (path)
              assert.ok(
                e.message.endsWith(`; removed ${path} and the folder(s) created for it, which this restore had created`),
                e.message,
              );
            if (existed) assert.match(e.message, /is left marked as a failed restore .* existed before this restore, so it is not removed/);
            return true;
          });
          if (path) {
            for (const f of [path, `${path}-wal`, `${path}-shm`]) assert.equal(existsSync(f), false, `${f} was removed`);
            assert.equal(existsSync(folder), false, 'and the folders made for it');
            // A backup this build cannot restore creates nothing at all: it is refused first.
            const future = file('future.logical');
            const lines = logicalLines(good);
            const header = headerOf(lines);
            header.migrations.push({ ...header.migrations[0]!, version: 9999, name: 'from_the_future' });
            writeLogical(future, [JSON.stringify(header), ...lines.slice(1)]);
            await assert.rejects(
              restoreInto(future, into),
              (e: unknown) =>
                e instanceof MigrationError && /which this build of Coffer does not know: upgrade Coffer first$/.test(e.message),
            );
            assert.equal(existsSync(folder), false, 'nothing was created');
          }
          if (existed) {
            const t = await pool.open(url, { migrate: 'skip' });
            assert.equal((await readMarker(t.engine.reader, t.dialect))?.state, 'failed');
          }
          // The good backup restores into the same place.
          const r = await restoreInto(good, into, existed ? { discard: true } : {});
          assert.equal(r.verified, true);
          if (path) assert.ok(existsSync(path));
        },
      );
    }
    for (const to of ALL_BACKENDS) {
      test(
        `into ${to}: an error that comes with a Ctrl-C is reported as the error (the target marked failed), not as an interruption`,
        skipReason(to) ? { skip: skipReason(to) } : {},
        async () => {
          const s = sources.get(AVAILABLE[0]!)!;
          const good = logical.get(s.backend)!;
          // The first table loaded refuses its first batch (a row written twice).
          const lines = logicalLines(good);
          const first = headerOf(lines).tables[0]!.name;
          assert.ok(sections(lines).get(first)!.rows > 0, `${first} has rows`);
          const bad = file('duplicate-first-row.logical');
          withDuplicateRow(good, first, bad);
          const { coffer: target } = await pool.emptyTarget(to);
          const { signal, progress } = ctrlCDuringFirstBatch();
          let message = '';
          await assert.rejects(restoreDatabase(bad, target, { batchSize: 4, signal, progress }), (e: unknown) => {
            message = (e as Error).message;
            assert.ok(e instanceof UniqueViolationError, String(e));
            assert.match(message, /is left marked as a failed restore/);
            return true;
          });
          assert.equal(signal.aborted, true, 'the Ctrl-C did land');
          const marker = (await readMarker(target.engine.reader, target.dialect))!;
          assert.equal(marker.state, 'failed');
          assert.ok(message.startsWith(`${String(marker.info.error)}; `), 'the marker records the error');
          assert.equal(marker.tables.get(first)?.rowsDone ?? 0, 0, 'its first batch was not loaded');
        },
      );
    }

    test(
      'a SQLite file the restore created but cannot remove is marked failed with the reason, so no later run resumes it unawares',
      { skip: skipReason('sqlite') },
      async () => {
        const s = sources.get(AVAILABLE[0]!)!;
        const good = logical.get(s.backend)!;
        const table = [...sections(logicalLines(good)).entries()].filter(([, x]) => x.rows > 1).pop()![0];
        const bad = file('duplicate-row-stuck.logical');
        withDuplicateRow(good, table, bad);
        const folder = join(dir, `${++n}-stuck`);
        const path = join(folder, 'restored.db');
        const url = `sqlite:${path}`;
        // The file cannot be removed (as a file in a folder the process may not write, or one
        // another program holds open on some systems): fs.rmSync refuses that one path.
        const rm = fs.rmSync;
        fs.rmSync = (p, o) => {
          if (p === path) throw Object.assign(new Error(`EBUSY: resource busy or locked, rm '${p}'`), { code: 'EBUSY' });
          rm(p, o);
        };
        syncBuiltinESMExports();
        const into = { url, migrations: OPS_MIGRATIONS, open: () => pool.open(url, { migrate: 'skip' }) };
        let message = '';
        try {
          await assert.rejects(restoreInto(bad, into, { batchSize: 4 }), (e: unknown) => {
            message = (e as Error).message;
            assert.ok(e instanceof UniqueViolationError, String(e));
            assert.ok(
              e.message.includes(`; this restore created ${path} but could not remove ${path} (EBUSY: `) &&
                e.message.endsWith(
                  `: it is marked as a failed restore (table ${MARKER_TABLE}), which coffer doctor reports; delete it by hand`,
                ),
              e.message,
            );
            return true;
          });
        } finally {
          fs.rmSync = rm;
          syncBuiltinESMExports();
        }
        const left = await pool.open(url, { migrate: 'skip' });
        const marker = (await readMarker(left.engine.reader, left.dialect))!;
        assert.equal(marker.state, 'failed');
        assert.ok(message.startsWith(`${String(marker.info.error)}; `), 'the marker records the error');
        // Run again, the restore says what it resumes.
        const progress = new SilentProgress();
        assert.equal((await restoreDatabase(good, left, { progress })).verified, true);
        assert.ok(
          progress.notes.some((x) => /^resuming an incomplete restore .* state failed: /.test(x)),
          progress.notes.join('\n'),
        );
      },
    );
  });

  describe('one restore at a time into a target', () => {
    for (const to of ALL_BACKENDS) {
      test(
        `into ${to}: a restore into a target whose lock another run holds is refused up front, naming that run, and touches nothing`,
        skipReason(to) ? { skip: skipReason(to) } : {},
        async () => {
          const s = sources.get(AVAILABLE[0]!)!;
          const f = logical.get(s.backend)!;
          const url = to === 'sqlite' ? `sqlite:${join(dir, `${++n}-locked`, 'restored.db')}` : (await pool.database(to)).url;
          const path = to === 'sqlite' ? url.slice('sqlite:'.length) : null;
          const into = { url, migrations: OPS_MIGRATIONS, open: () => pool.open(url, { migrate: 'skip' }) };
          const other = await holdTargetLock(pool, url, 'copy');
          if (to === 'memory') {
            // A memory:// database is private to the Coffer that opened it: nothing to lock.
            assert.equal((await restoreInto(f, into)).verified, true);
            return;
          }
          const refused = (e: unknown) => e instanceof ConfigError && heldBy(to, 'copy', `${path}.coffer-lock`).test(e.message);
          await assert.rejects(restoreInto(f, into), refused);
          if (path) assert.equal(existsSync(path), false, 'no database was created');
          const target = await pool.open(url, { migrate: 'skip' });
          await assert.rejects(restoreDatabase(f, target), refused);
          assert.deepEqual([...(await listTables(target.engine.reader, target.dialect))], [], 'nothing was written to the target');
          await other.release();
          assert.equal((await restoreDatabase(f, target)).verified, true);
          assert.deepEqual(await dumpAll(target), s.dump);
        },
      );
    }
  });

  const live = AVAILABLE.filter((b) => b !== 'memory');
  describe('snapshots under load', { concurrency: 3 }, () => {
    for (const b of live) {
      for (const format of ['native', 'logical'] as const) {
        test(`a ${format} backup of ${b} taken while writers run is a consistent snapshot`, async () => {
          const db = await pool.database(b);
          const src = await pool.open(db.url);
          for (let i = 0; i < 5; i++) {
            await appendLink(src);
            await appendBlock(src);
          }
          await appendAudit(src, 5, 'before');
          await appendChainBlock(src, 'regtest-1');
          await appendChainBlock(src, 'regtest-1');
          let stop = false;
          let writes = 0;
          const writer = async (fn: () => Promise<void>) => {
            while (!stop) {
              await fn();
              writes++;
              // SQLite calls complete synchronously: yield so timers and the backup get turns.
              await new Promise((r) => setImmediate(r));
            }
          };
          const writers = [
            writer(() => appendLink(src)),
            writer(() => appendBlock(src)),
            writer(() => appendAudit(src, 1, `w${writes}`)),
            writer(() => appendChainBlock(src, 'regtest-1')),
          ];
          while (writes < 10) await new Promise((r) => setTimeout(r, 5));
          const f = file(`${b}-${format}-live.backup`);
          const before = writes;
          let report;
          try {
            report = await backupDatabase(src, f, { format, batchSize: 2 });
          } finally {
            stop = true;
            await Promise.all(writers);
          }
          assert.ok(writes > before, `writers kept committing during the backup (${writes - before} writes)`);
          const { coffer: target } = await pool.emptyTarget(b);
          const r = await restoreDatabase(f, target, { batchSize: 3 });
          assert.equal(r.verified, true);
          // The restored database is one moment of the source: every invariant holds.
          assert.deepEqual(await target.read((tx) => fixtureProblems(tx)), []);
          // The chain domain's cursor matches the blocks it points at.
          assert.deepEqual(await target.read((tx) => chainCursorProblems(tx)), []);
          assert.ok((await target.read((tx) => tx.db.selectFrom('chain_blocks').select('height').execute())).length >= 2);
          const audit = await verifyAuditLog(target);
          assert.equal(audit.ok, true, JSON.stringify(audit.firstBad));
          const restored = await counts(target);
          const now = await counts(src);
          assert.equal(audit.verified, restored.audit_log);
          assert.ok(restored.fxo_blocks >= 5n && restored.fxo_links >= 5n);
          assert.ok(
            restored.fxo_links + restored.fxo_blocks + restored.audit_log < now.fxo_links + now.fxo_blocks + now.audit_log,
            'the source moved on after the snapshot',
          );
          assert.equal(report.tables.find((t) => t.name === 'fxo_blocks')!.rows, Number(restored.fxo_blocks));
        });
      }
    }
  });

  test('a backup of an older schema restores into this build (new domains start empty)', async () => {
    const db = await pool.database('sqlite');
    const older = await pool.open(db.url, { migrations: OPS_MIGRATIONS.filter((m) => m !== opsFixture) });
    await older.write((tx) => tx.insert('fx_counters', { name: 'from-the-past', value: 7n }));
    const f = file('older.logical');
    await backupDatabase(older, f, { format: 'logical' });
    const { coffer: target } = await pool.emptyTarget(AVAILABLE.includes('postgres') ? 'postgres' : 'sqlite');
    const r = await restoreDatabase(f, target);
    assert.equal(r.verified, true);
    const dump = await dumpAll(target);
    assert.equal(dump.fx_counters!.length, 1);
    assert.equal(dump.fxo_links!.length, 0);
    assert.deepEqual((await target.migrator.verify()).length, 0, 'the target has every migration of this build');
  });

  test('a restore into a non-empty database is refused unless forced', async () => {
    const s = sources.get(AVAILABLE[0]!)!;
    const target = await pool.open((await pool.database(AVAILABLE.includes('sqlite') ? 'sqlite' : AVAILABLE[0]!)).url);
    await target.write((tx) => tx.insert('fx_counters', { name: 'precious', value: 1n }));
    await assert.rejects(
      restoreDatabase(logical.get(s.backend)!, target),
      (e: unknown) => e instanceof ConfigError && /is not empty \(fx_counters: 1 rows\)/.test(e.message) && /--force/.test(e.message),
    );
    assert.equal((await dumpAll(target)).fx_counters!.length, 1, 'nothing was touched');
    const r = await restoreDatabase(logical.get(s.backend)!, target, { force: true });
    assert.equal(r.verified, true);
    assert.deepEqual(await dumpAll(target), s.dump);
  });

  test('an interrupted restore is marked incomplete and resumes to a verified result', async () => {
    const s = sources.get(AVAILABLE.includes('postgres') ? 'postgres' : AVAILABLE[0]!)!;
    const to = AVAILABLE.includes('mysql') ? 'mysql' : 'sqlite';
    const { coffer: target } = await pool.emptyTarget(to);
    const ac = new AbortController();
    const progress = new (class extends SilentProgress {
      override add(rows: number, bytes: number, table?: string) {
        super.add(rows, bytes, table);
        if (this.snapshot().phase === 'restore' && this.snapshot().rows >= 30) ac.abort();
      }
    })();
    await assert.rejects(
      restoreDatabase(logical.get(s.backend)!, target, { batchSize: 3, signal: ac.signal, progress }),
      (e: unknown) => e instanceof InterruptedError && /marked incomplete/.test(e.message),
    );
    const marker = await readMarker(target.engine.reader, target.dialect);
    assert.equal(marker?.info.operation, 'restore');
    const r = await restoreDatabase(logical.get(s.backend)!, target, { batchSize: 3 });
    assert.equal(r.resumed, true);
    assert.equal(r.verified, true);
    assert.deepEqual(await dumpAll(target), s.dump);
  });

  test('an interrupted backup leaves no file behind', async () => {
    const s = sources.get(AVAILABLE.includes('sqlite') ? 'sqlite' : AVAILABLE[0]!)!;
    for (const format of ['logical', 'native'] as const) {
      const f = file(`interrupted-${format}.backup`);
      const ac = new AbortController();
      const progress = new (class extends SilentProgress {
        override add(rows: number, bytes: number, table?: string) {
          super.add(rows, bytes, table);
          if (this.snapshot().rows >= 1) ac.abort();
        }
      })();
      await assert.rejects(
        backupDatabase(s.coffer, f, { format: s.backend === 'memory' ? 'logical' : format, batchSize: 2, signal: ac.signal, progress }),
        (e: unknown) => e instanceof InterruptedError && /nothing was written/.test(e.message),
      );
      assert.ok(
        !existsSync(f) && !existsSync(`${f}.partial`) && !existsSync(`${f}.manifest.json`),
        'neither the file nor a partial remains',
      );
    }
    // Ctrl-C while the written file's SHA-256 is computed (minutes for a large native dump).
    const f = file('interrupted-digest.backup');
    const ac = new AbortController();
    const progress = new (class extends SilentProgress {
      override note(message: string) {
        super.note(message);
        if (message.startsWith('computing the SHA-256 of')) ac.abort();
      }
    })();
    await assert.rejects(
      backupDatabase(s.coffer, f, { signal: ac.signal, progress }),
      (e: unknown) => e instanceof InterruptedError && /nothing was written/.test(e.message),
    );
    assert.ok(!existsSync(f) && !existsSync(`${f}.partial`) && !existsSync(`${f}.manifest.json`), 'neither the file nor a partial remains');
  });

  test('a damaged or truncated logical backup is refused before the target is touched', async () => {
    const s = sources.get(AVAILABLE[0]!)!;
    const text = gunzipSync(readFileSync(logical.get(s.backend)!)).toString('utf8');
    const lines = text.split('\n');
    // One value changed inside a row: that table's checksum no longer matches.
    const i = lines.findIndex((l) => l.startsWith('["'));
    const edited = file('edited.logical');
    writeFileSync(edited, gzipSync([...lines.slice(0, i), lines[i]!.replace(/^\["/, '["X'), ...lines.slice(i + 1)].join('\n')));
    const { coffer: t1 } = await pool.emptyTarget('sqlite');
    await assert.rejects(
      restoreDatabase(edited, t1),
      (e: unknown) => e instanceof ConfigError && /is damaged or truncated: table \w+ holds \d+ rows with checksum/.test(e.message),
    );
    assert.equal(await readMarker(t1.engine.reader, t1.dialect), null, 'the file is read through before the target is marked');
    assert.deepEqual([...(await listTables(t1.engine.reader, t1.dialect))], [], 'nor migrated');
    const truncated = file('truncated.logical');
    writeFileSync(truncated, gzipSync(lines.slice(0, Math.floor(lines.length / 2)).join('\n')));
    const { coffer: t2 } = await pool.emptyTarget('sqlite');
    await assert.rejects(
      restoreDatabase(truncated, t2),
      (e: unknown) => e instanceof ConfigError && /damaged or truncated/.test(e.message),
    );
    const cut = file('cut.logical');
    const gz = readFileSync(logical.get(s.backend)!);
    writeFileSync(cut, gz.subarray(0, Math.floor(gz.length * 0.6)));
    await assert.rejects(
      restoreDatabase(cut, t2, { discard: true }),
      (e: unknown) => e instanceof ConfigError && /damaged or truncated/.test(e.message),
    );
    const r = await restoreDatabase(logical.get(s.backend)!, t2, { discard: true });
    assert.equal(r.verified, true);
    const junk = file('junk.backup');
    writeFileSync(junk, 'hello');
    await assert.rejects(restoreDatabase(junk, t2), (e: unknown) => e instanceof ConfigError && /is not a Coffer backup/.test(e.message));
  });

  /** A native backup of `backend` with one byte changed: its restore is refused and the target left unmarked. */
  async function refusedWhenTampered(backend: BackendName): Promise<{ f: string; target: Coffer }> {
    const f = file(`${backend}-tampered.backup`);
    await backupDatabase(sources.get(backend)!.coffer, f);
    const bytes = readFileSync(f);
    bytes[bytes.length - 100] = (bytes[bytes.length - 100]! + 1) % 256;
    writeFileSync(f, bytes);
    const { coffer: target } = await pool.emptyTarget(backend);
    await assert.rejects(
      restoreDatabase(f, target),
      (e: unknown) => e instanceof ConfigError && /does not match its manifest/.test(e.message),
    );
    assert.equal(await readMarker(target.engine.reader, target.dialect), null);
    return { f, target };
  }

  test(
    'a native backup that no longer matches its manifest is refused before the target is touched',
    { skip: skipReason('postgres') },
    async () => {
      const { f, target } = await refusedWhenTampered('postgres');
      rmSync(`${f}.manifest.json`);
      await assert.rejects(
        restoreDatabase(f, target),
        (e: unknown) => e instanceof ConfigError && /manifest\.json is missing/.test(e.message) && !/--no-verify/.test(e.message),
      );
      // --no-verify does not make a native restore possible without its manifest: the message
      // above no longer suggests it.
      await assert.rejects(
        restoreDatabase(f, target, { verify: false }),
        (e: unknown) => e instanceof ConfigError && /manifest\.json is missing/.test(e.message),
      );
    },
  );

  test(
    'a SQLite file backup that no longer matches its manifest is refused before the target is touched, saying what to do',
    { skip: skipReason('sqlite') },
    async () => {
      await refusedWhenTampered('sqlite');
      // An intact file whose manifest records another SHA-256: refused with what to do, and
      // --no-verify restores it as it is, saying it was not checked.
      const f = file('sqlite-manifest-mismatch.backup');
      await backupDatabase(sources.get('sqlite')!.coffer, f, { format: 'native' });
      const m = JSON.parse(readFileSync(`${f}.manifest.json`, 'utf8'));
      m.file.sha256 = '0'.repeat(64);
      m.file.sha256HeaderFree = '0'.repeat(64);
      writeFileSync(`${f}.manifest.json`, JSON.stringify(m));
      const { coffer: target } = await pool.emptyTarget('sqlite');
      await assert.rejects(
        restoreDatabase(f, target),
        (e: unknown) =>
          e instanceof ConfigError &&
          /does not match its manifest \(its SHA-256 differs\): the backup was changed or replaced after it was taken; restore an intact copy of it or another backup \(to restore this file as it is, unchecked, add --no-verify\)/.test(
            e.message,
          ),
      );
      const r = await restoreDatabase(f, target, { verify: false });
      assert.equal(r.verified, false);
      assert.equal(r.verifiedAgainst, null);
      assert.ok(
        r.notes.some((n) => /was not checked against its manifest's size and SHA-256 \(--no-verify\)/.test(n)),
        r.notes.join('\n'),
      );
      assert.deepEqual(await dumpAll(target), sources.get('sqlite')!.dump);
    },
  );

  test(
    'a SQLite file backup that a program opened (which switches it to WAL) still restores, verified against its manifest',
    { skip: skipReason('sqlite') },
    async () => {
      const s = sources.get('sqlite')!;
      // legacy: a manifest written before sha256HeaderFree existed.
      for (const legacy of [false, true]) {
        const f = file(`opened${legacy ? '-legacy' : ''}.backup`);
        await backupDatabase(s.coffer, f, { format: 'native' });
        if (legacy) {
          const m = JSON.parse(readFileSync(`${f}.manifest.json`, 'utf8'));
          assert.ok(m.file.sha256HeaderFree, 'new manifests record it');
          delete m.file.sha256HeaderFree;
          writeFileSync(`${f}.manifest.json`, JSON.stringify(m));
        }
        const before = readFileSync(f);
        const opened = await pool.open(`sqlite:${f}`, { migrate: 'skip' });
        await collectStats(opened);
        await opened.close();
        const after = readFileSync(f);
        assert.notDeepEqual(after.subarray(0, 100), before.subarray(0, 100), 'opening it rewrote its header (the case under test)');
        assert.deepEqual(after.subarray(100), before.subarray(100), 'and nothing else');
        const { coffer: target } = await pool.emptyTarget('sqlite');
        const r = await restoreDatabase(f, target);
        assert.equal(r.verifiedAgainst, 'manifest');
        assert.ok(
          r.notes.some((n) => /differs from its manifest only in the SQLite header's journal mode and change counter/.test(n)),
          r.notes.join('\n'),
        );
        assert.deepEqual(await dumpAll(target), s.dump);
      }
    },
  );

  test(
    'a SQLite file backup without its manifest is verified against the file itself, and says so',
    { skip: skipReason('sqlite') },
    async () => {
      const s = sources.get('sqlite')!;
      const f = file('no-manifest.backup');
      await backupDatabase(s.coffer, f, { format: 'native' });
      rmSync(`${f}.manifest.json`);
      const { coffer: target } = await pool.emptyTarget('sqlite');
      const r = await restoreDatabase(f, target);
      assert.equal(r.verified, true);
      assert.equal(r.verifiedAgainst, 'backup file');
      assert.deepEqual(await dumpAll(target), s.dump);
    },
  );

  for (const format of ['logical', 'sqlite'] as const) {
    test(`a ${format} restore in which several tables differ names the first differing row of each and marks the target failed`, async () => {
      const s = sources.get('sqlite')!;
      let f = logical.get('sqlite')!;
      if (format === 'sqlite') {
        f = file('several-differ.backup');
        await backupDatabase(s.coffer, f, { format: 'native' });
      }
      const { coffer: target } = await pool.emptyTarget('sqlite');
      await target.migrator.apply();
      // Something in the target changes rows as they arrive, in two tables.
      await sql`create trigger tamper_entries after insert on fx_entries begin update fx_entries set memo = 'tampered' where rowid = new.rowid; end`.execute(
        target.engine.writer,
      );
      await sql`create trigger tamper_counters after insert on fx_counters begin update fx_counters set value = 4242 where rowid = new.rowid; end`.execute(
        target.engine.writer,
      );
      await assert.rejects(restoreDatabase(f, target, { batchSize: 2 }), (e: unknown) => {
        assert.ok(e instanceof VerificationError, String(e));
        assert.match(
          e.message,
          /table fx_entries: same row count \(\d+\) but the content checksums differ; first difference: table fx_entries: row .* differs in column\(s\) memo/,
        );
        assert.match(
          e.message,
          /table fx_counters: same row count \(\d+\) but the content checksums differ; first difference: table fx_counters: row .* differs in column\(s\) value/,
        );
        return true;
      });
      assert.equal((await readMarker(target.engine.reader, target.dialect))?.state, 'failed');
    });
  }

  test('a verification failure marks the target failed even when the first differing row cannot be looked up', async () => {
    const f = file('vanishing.logical');
    writeFileSync(f, readFileSync(logical.get('sqlite')!));
    const { coffer: target } = await pool.emptyTarget('sqlite');
    await target.migrator.apply();
    await sql`create trigger tamper_counters after insert on fx_counters begin update fx_counters set value = 4242 where rowid = new.rowid; end`.execute(
      target.engine.writer,
    );
    // The backup disappears once loaded: the search for the differing row cannot read it.
    const progress = new (class extends SilentProgress {
      override phase(name: string, total: number | null, unit?: string) {
        super.phase(name, total, unit);
        if (name === 'verify') rmSync(f);
      }
    })();
    await assert.rejects(restoreDatabase(f, target, { progress }), (e: unknown) => {
      assert.ok(e instanceof VerificationError, String(e));
      assert.match(
        e.message,
        /table fx_counters: same row count \(\d+\) but the content checksums differ \(the first differing row could not be found: /,
      );
      return true;
    });
    assert.equal((await readMarker(target.engine.reader, target.dialect))?.state, 'failed');
  });

  test('Ctrl-C while a backup file is checked against its manifest stops the check, and is an interruption, not a mismatch', async () => {
    for (const b of live) {
      const f = file(`${b}-checked.native`);
      await backupDatabase(sources.get(b)!.coffer, f);
      // The manifest no longer describes the file: the check, run to its end, refuses it.
      const manifest = JSON.parse(readFileSync(`${f}.manifest.json`, 'utf8')) as { file: { bytes: number } };
      manifest.file.bytes += 1;
      writeFileSync(`${f}.manifest.json`, JSON.stringify(manifest));
      const { coffer: target } = await pool.emptyTarget(b);
      await assert.rejects(
        restoreDatabase(f, target),
        (e: unknown) => e instanceof ConfigError && /does not match its manifest/.test(e.message),
      );
      // A real backup is big: its read stops at the signal, not at its end.
      await assert.rejects(fileDigest(f, {}, AbortSignal.abort()), (e: unknown) => e instanceof InterruptedError);
      const ac = new AbortController();
      const progress = new (class extends SilentProgress {
        override note(message: string) {
          super.note(message);
          if (message.startsWith(`checking ${f} against its manifest`)) ac.abort();
        }
      })();
      await assert.rejects(
        restoreDatabase(f, target, { signal: ac.signal, progress }),
        (e: unknown) =>
          e instanceof InterruptedError && e.message === `restore interrupted while checking ${f}: nothing was written to the target`,
        b,
      );
      assert.deepEqual([...(await listTables(target.engine.reader, target.dialect))], [], 'nothing was written to the target');
    }
  });

  for (const b of ['postgres', 'mysql'] as const) {
    test(
      `a native restore into ${b} that fails says what the target holds and that running it again starts over`,
      skipReason(b) ? { skip: skipReason(b) } : {},
      async () => {
        const s = sources.get(b)!;
        const f = file(`${b}-fails.native`);
        await backupDatabase(s.coffer, f);
        const { coffer: target } = await pool.emptyTarget(b);
        let failing = f;
        if (b === 'postgres') {
          // Not an object of the dump, but its table fx_counters needs the type name.
          await sql`create type fx_counters as enum ('x')`.execute(target.engine.writer);
        } else {
          // The same backup with a statement the server refuses after its first rows (anything
          // in the target in the dump's way is refused before the restore starts): the mysql
          // client stops there, with part of the backup loaded. Same manifest id, new digest.
          failing = file('mysql-fails-part-way.native');
          const text = gunzipSync(readFileSync(f)).toString('utf8');
          const at = text.indexOf(';\n', text.indexOf('INSERT INTO')) + 2;
          writeFileSync(failing, gzipSync(Buffer.from(`${text.slice(0, at)}SELECT coffer_test_no_such_function();\n${text.slice(at)}`)));
          const d = await fileDigest(failing);
          const m = readManifestFile(f)!;
          writeFileSync(
            `${failing}.manifest.json`,
            JSON.stringify({ ...m, file: { name: basename(failing), bytes: d.bytes, sha256: d.sha256 } }, null, 2),
          );
        }
        const db = describeCoffer(target);
        await assert.rejects(restoreDatabase(failing, target), (e: unknown) => {
          const m = (e as Error).message;
          const holds =
            b === 'postgres'
              ? 'it holds none of the backup (pg_restore rolled back)'
              : 'it may hold part of the backup (the mysql client stops at the failing statement)';
          assert.ok(
            m.endsWith(
              `; ${db} is left marked as a failed restore (table coffer_ops_progress; ${db} existed before this restore, so it is not removed); ${holds}: coffer doctor reports it and nothing should use it; fix the cause and run the same coffer restore again to start it over (a native restore cannot resume), or add --discard to restore another backup into it instead`,
            ),
            m,
          );
          return true;
        });
        assert.equal((await readMarker(target.engine.reader, target.dialect))?.state, 'failed');
        if (b === 'postgres')
          assert.deepEqual([...(await listTables(target.engine.reader, target.dialect))], [MARKER_TABLE], 'nothing was loaded');
        if (b === 'postgres') await sql`drop type fx_counters`.execute(target.engine.writer);
        const progress = new SilentProgress();
        const r = await restoreDatabase(f, target, { progress });
        assert.equal(r.verified, true);
        assert.ok(
          progress.notes.some((x) => x.startsWith(`starting the failed restore from ${f} over (a native restore cannot resume)`)),
          progress.notes.join('\n'),
        );
        assert.deepEqual(await dumpAll(target), s.dump);
      },
    );
  }

  test('a native restore never replaces a table of another application', { skip: skipReason('postgres') }, async () => {
    const srcDb = await pool.database('postgres');
    const src = await pool.open(srcDb.url);
    await src.write((tx) => tx.insert('fx_counters', { name: 'n', value: 1n }));
    await sql`create table legacy_things (x int)`.execute(src.engine.writer);
    const f = file('pg-with-legacy.backup');
    await backupDatabase(src, f);
    const { coffer: target } = await pool.emptyTarget('postgres');
    await sql`create table legacy_things (y text)`.execute(target.engine.writer);
    await sql`insert into legacy_things values ('theirs')`.execute(target.engine.writer);
    await assert.rejects(
      restoreDatabase(f, target),
      (e: unknown) => e instanceof ConfigError && /has table\(s\) legacy_things that the backup would replace/.test(e.message),
    );
    assert.deepEqual((await sql<{ y: string }>`select y from legacy_things`.execute(target.engine.reader)).rows, [{ y: 'theirs' }]);
    assert.equal(await readMarker(target.engine.reader, target.dialect), null, 'nothing was started');
  });

  test('native backups restore only into their own backend', async () => {
    for (const b of live.filter((x) => x !== 'sqlite')) {
      const f = file(`${b}-cross.backup`);
      await backupDatabase(sources.get(b)!.coffer, f);
      const { coffer: target } = await pool.emptyTarget('sqlite');
      await assert.rejects(
        restoreDatabase(f, target),
        (e: unknown) => e instanceof ConfigError && /restores only into/.test(e.message) && /--format logical/.test(e.message),
      );
    }
  });

  test('without pg_dump / mysqldump: --format native fails with one clear line, auto falls back to the logical format', async () => {
    const saved = process.env.PATH;
    process.env.PATH = join(dir, 'no-tools-here');
    try {
      for (const b of live.filter((x) => x !== 'sqlite')) {
        const tool = b === 'postgres' ? 'pg_dump' : 'mysqldump';
        await assert.rejects(
          backupDatabase(sources.get(b)!.coffer, file('no-tool.backup'), { format: 'native' }),
          (e: unknown) =>
            e instanceof ConfigError && new RegExp(`${tool} not found on PATH`).test(e.message) && /--format logical/.test(e.message),
        );
        const f = file('fallback.backup');
        const r = await backupDatabase(sources.get(b)!.coffer, f);
        assert.equal(r.kind, 'logical');
        assert.ok(r.notes.some((x) => x.includes(`${tool} is not installed`)));
        assert.equal(detectBackupKind(f), 'logical');
      }
    } finally {
      process.env.PATH = saved;
    }
  });

  test('backup file problems get one clear error: existing file, folder, missing folder, full disk', async () => {
    const s = sources.get(AVAILABLE[0]!)!;
    const f = file('exists.backup');
    writeFileSync(f, 'x');
    await assert.rejects(backupDatabase(s.coffer, f), (e: unknown) => e instanceof ConfigError && /already exists/.test(e.message));
    await assert.rejects(backupDatabase(s.coffer, dir), (e: unknown) => e instanceof ConfigError && /is a directory/.test(e.message));
    // A regular file is refused wherever it is, /dev/shm included (it was once taken for a device
    // and appended to); a new name there is an ordinary backup with its manifest.
    if (existsSync('/dev/shm')) {
      const shm = join('/dev/shm', `coffer-backup-test-${process.pid}-${++n}`);
      writeFileSync(shm, 'precious');
      try {
        await assert.rejects(
          backupDatabase(s.coffer, shm, { format: 'logical' }),
          (e: unknown) => e instanceof ConfigError && /backup file \/dev\/shm\/.* already exists: choose a new name/.test(e.message),
        );
        assert.equal(readFileSync(shm, 'utf8'), 'precious', 'nothing was appended');
        const fresh = `${shm}.new`;
        try {
          const r = await backupDatabase(s.coffer, fresh, { format: 'logical' });
          assert.equal(r.manifestFile, `${fresh}.manifest.json`);
          assert.equal(detectBackupKind(fresh), 'logical');
        } finally {
          rmSync(fresh, { force: true });
          rmSync(`${fresh}.manifest.json`, { force: true });
        }
      } finally {
        rmSync(shm, { force: true });
      }
    }
    await assert.rejects(
      backupDatabase(s.coffer, join(dir, 'missing', 'x.backup')),
      (e: unknown) => e instanceof ConfigError && /no such file or directory/.test(e.message),
    );
    if (existsSync('/dev/full')) {
      await assert.rejects(
        backupDatabase(s.coffer, '/dev/full', { format: 'logical' }),
        (e: unknown) => e instanceof StorageFullError && /disk is full/.test(e.message),
      );
    }
  });
});
