// The operator commands as an operator runs them: `coffer copy` killed part way (SIGKILL) and
// resumed to a verified result, Ctrl-C leaving the target marked incomplete, progress lines when
// stderr is not a terminal, --json output, exit codes, and one clear line for every
// environment problem (wrong URL, missing tool, missing folder, full disk, non-empty target).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, lstatSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { Coffer } from '../db/store.js';
import { HISTORY_TABLE } from '../migrations/history.js';
import { compileOperation } from '../schema/compile.js';
import { dumpAll, fillEveryTable } from '../../test/fixtures/fill.js';
import { headerOf, logicalLines, sections, withDuplicateRow, writeLogical } from '../../test/fixtures/logical-edit.js';
import { createDatabase, skipReason, type TestDatabase } from '../../test/harness.js';
import { opsDb } from './db.js';
import { createMarker, readMarker } from './marker.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'coffer-ops-cli-'));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Run>; stderr: () => string } {
  const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), ...args], {
    cwd: ROOT,
    env: { ...process.env, COFFER_DATABASE_URL: '', DATABASE_URL: '', ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, stderr: () => stderr };
}

const coffer = (args: string[], env: Record<string, string> = {}) => start(args, env).done;

/** Resolves once a plain progress line reports at least `rows` rows copied (or restored: `phase`). */
async function waitForRows(getStderr: () => string, rows: number, exited: Promise<Run>, phase = 'copy'): Promise<void> {
  for (;;) {
    const seen = [...getStderr().matchAll(new RegExp(`^${phase}: ([\\d,]+) of`, 'gm'))].map((m) => Number(m[1]!.replace(/,/g, '')));
    if (seen.some((n) => n >= rows)) return;
    const r = await Promise.race([exited, new Promise<null>((res) => setTimeout(() => res(null), 25))]);
    if (r) throw new Error(`coffer exited before copying ${rows} rows: ${r.stderr}`);
  }
}

function oneErrorLine(r: Run, pattern: RegExp): void {
  const lines = r.stderr
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('coffer: error:'));
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

describe('operator commands on the command line', () => {
  const dbs: TestDatabase[] = [];
  let sourceUrl = '';
  let sourceDump: Record<string, string[]> = {};
  const targetBackend = skipReason('postgres') ? 'sqlite' : 'postgres';
  const newDb = async (b: 'sqlite' | 'postgres' | 'mysql') => {
    const d = await createDatabase(b);
    dbs.push(d);
    return d;
  };

  before(async () => {
    // The service's own schema (every real domain), filled with extreme values.
    sourceUrl = `sqlite:${join(dir, 'source.db')}`;
    const c = await Coffer.open({ url: sourceUrl });
    try {
      // The audit log is a hash chain: random rows would (rightly) fail doctor's audit.chain check.
      await fillEveryTable(c, { rowsPerTable: 10, exclude: ['audit_log', 'audit_head'] });
      sourceDump = await dumpAll(c);
    } finally {
      await c.close();
    }
  });
  after(async () => {
    for (const d of dbs) await d.drop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Runs `coffer <operation> <args>`, which fails part way, twice: into a new SQLite file (in a
   * new folder), which it removes, then into a database that existed before, which it leaves
   * marked failed, as doctor reports (naming `from`). Returns that database.
   */
  async function failsPartWay(operation: 'copy' | 'restore', args: string[], from: RegExp): Promise<TestDatabase> {
    const folder = join(dir, `${operation}-created-then-failed`);
    const path = join(folder, 'target.db');
    const created = await coffer([operation, ...args, '--to', `sqlite:${path}`]);
    assert.equal(created.code, 1, created.stderr);
    oneErrorLine(
      created,
      new RegExp(
        `; removed ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} and the folder\\(s\\) created for it, which this ${operation} had created$`,
      ),
    );
    for (const f of [path, `${path}-wal`, `${path}-shm`]) assert.equal(existsSync(f), false, `${f} is gone`);
    assert.equal(existsSync(folder), false);

    const target = await newDb(targetBackend);
    if (targetBackend === 'sqlite') {
      const c = await Coffer.open({ url: target.url, migrate: 'skip' });
      await c.close();
    }
    const kept = await coffer([operation, ...args, '--to', target.url]);
    assert.equal(kept.code, 1, kept.stderr);
    oneErrorLine(
      kept,
      new RegExp(
        `is left marked as a failed ${operation} \\(table coffer_ops_progress; .* existed before this ${operation}, so it is not removed\\): coffer doctor reports it and nothing should use it; fix the cause and run the same coffer ${operation} again to resume it, or add --discard to throw away what was loaded$`,
      ),
    );
    const doctor = await coffer(['doctor', '--db', target.url, '--check', 'incomplete']);
    assert.equal(doctor.code, 1);
    assert.match(
      doctor.stdout,
      new RegExp(`ERROR\\s+incomplete\\s+this database is an incomplete ${operation} from ${from.source} \\(.*state failed: `),
    );
    assert.match(doctor.stdout, new RegExp(`→ run the same coffer ${operation} again to resume it once the cause is fixed`));
    return target;
  }

  test('coffer copy killed part way (SIGKILL) resumes to a verified result', async () => {
    const target = await newDb(targetBackend);
    const env = { COFFER_OPS_THROTTLE_MS: '40', COFFER_PROGRESS_INTERVAL_MS: '50' };
    const first = start(['copy', '--from', sourceUrl, '--to', target.url, '--batch-size', '5'], env);
    await waitForRows(first.stderr, 30, first.done);
    first.child.kill('SIGKILL');
    const killed = await first.done;
    assert.equal(killed.signal, 'SIGKILL');
    // Plain periodic progress lines, since stderr is not a terminal.
    assert.match(killed.stderr, /^copy: [\d,]+ of [\d,]+ rows \(\d+%\) · .* rows\/s/m);

    const t = await Coffer.open({ url: target.url, migrate: 'skip' });
    let done: number;
    try {
      const marker = await readMarker(t.engine.reader, t.dialect);
      assert.ok(marker, 'the target is marked incomplete');
      assert.equal(marker.state, 'running');
      done = [...marker.tables.values()].reduce((n, x) => n + x.rowsDone, 0);
      const total = Object.entries(sourceDump)
        .filter(([k]) => k !== 'coffer_migrations')
        .reduce((n, [, v]) => n + v.length, 0);
      assert.ok(done >= 30 && done < total, `${done} of ${total} rows were written before the kill`);
      // Status tells an operator what happened.
      const doctor = await coffer(['doctor', '--db', target.url, '--check', 'incomplete']);
      assert.equal(doctor.code, 1);
      assert.match(doctor.stdout, /ERROR\s+incomplete\s+this database is an incomplete copy from sqlite:.*source\.db/);
      assert.match(doctor.stdout, /→ run the same coffer copy again to resume it/);
    } finally {
      await t.close();
    }

    const second = await coffer(['copy', '--from', sourceUrl, '--to', target.url, '--batch-size', '50']);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /resuming an incomplete copy/);
    assert.match(second.stdout, /\(resumed\)/);
    assert.match(second.stdout, /verified: row counts and content checksums match on both sides/);
    const rows = Number(/: ([\d,]+) rows written/.exec(second.stdout)![1]!.replace(/,/g, ''));
    assert.ok(
      rows > 0 &&
        rows + done ===
          Object.entries(sourceDump)
            .filter(([k]) => k !== 'coffer_migrations')
            .reduce((n, [, v]) => n + v.length, 0),
      'the resumed run copied only the rest',
    );

    const check = await Coffer.open({ url: target.url, migrate: 'verify' });
    try {
      assert.deepEqual(await dumpAll(check), sourceDump);
      assert.equal(await readMarker(check.engine.reader, check.dialect), null);
    } finally {
      await check.close();
    }
  });

  test('Ctrl-C stops coffer copy after the current batch: exit 130, target marked incomplete; --discard starts over', async () => {
    const target = await newDb('sqlite');
    const first = start(['copy', '--from', sourceUrl, '--to', target.url, '--batch-size', '5'], {
      COFFER_OPS_THROTTLE_MS: '40',
      COFFER_PROGRESS_INTERVAL_MS: '50',
    });
    await waitForRows(first.stderr, 20, first.done);
    first.child.kill('SIGINT');
    const r = await first.done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /SIGINT: stopping after the current step/);
    assert.match(
      r.stderr,
      /^coffer: interrupted: copy stopped after \d+ more rows: .* is marked incomplete \(table coffer_ops_progress\); run the same coffer copy again to resume, or add --discard/m,
    );
    const t = await Coffer.open({ url: target.url, migrate: 'skip' });
    try {
      assert.equal((await readMarker(t.engine.reader, t.dialect))?.state, 'running');
    } finally {
      await t.close();
    }
    const again = await coffer(['copy', '--from', sourceUrl, '--to', target.url, '--discard', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /discarded an incomplete copy/);
    const report = JSON.parse(again.stdout);
    assert.equal(report.verified, true);
    assert.equal(report.resumed, false);
  });

  for (const to of [...new Set(['sqlite', targetBackend] as const)]) {
    test(`two runs of the same restore into ${to} at once: the second is refused naming the first (exit 2), the first restores and verifies`, async () => {
      const file = join(dir, `twice-${to}.backup`);
      const b = await coffer(['backup', '--db', sourceUrl, '--to', file, '--format', 'logical']);
      assert.equal(b.code, 0, b.stderr);
      // A new SQLite file (in a new folder) is the case where the second run once took the first
      // run's file for one that existed before, and resumed it while it was being loaded.
      const url = to === 'sqlite' ? `sqlite:${join(dir, `twice-${to}`, 'restored.db')}` : (await newDb(to)).url;
      const args = ['restore', '--from', file, '--to', url, '--batch-size', '5'];
      const first = start(args, { COFFER_OPS_THROTTLE_MS: '40', COFFER_PROGRESS_INTERVAL_MS: '50' });
      await waitForRows(first.stderr, 10, first.done, 'restore');
      const second = await coffer(args);
      assert.equal(second.code, 2, second.stderr);
      const holder =
        to === 'sqlite'
          ? `another coffer restore \\(pid ${first.child.pid} on ${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, started `
          : `another coffer copy or restore \\(it holds the advisory lock: coffer restore pid ${first.child.pid} on `;
      oneErrorLine(
        second,
        new RegExp(`target .* is in use by ${holder}.*; nothing was changed: wait for it to finish, then run this again$`),
      );
      const r = await first.done;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /verified against the manifest/);
      assert.doesNotMatch(r.stdout, /\(resumed\)/);
      const check = await Coffer.open({ url, migrate: 'verify' });
      try {
        assert.deepEqual(await dumpAll(check), sourceDump);
      } finally {
        await check.close();
      }
    });
  }

  test('a SQLite target that is a symbolic link to nothing is refused (exit 2), and nothing is created at its destination', async () => {
    const file = join(dir, 'dangling.backup');
    const b = await coffer(['backup', '--db', sourceUrl, '--to', file, '--format', 'logical']);
    assert.equal(b.code, 0, b.stderr);
    const link = join(dir, 'dangling.db');
    const dest = join(dir, 'dangling-destination', 'real.db');
    symlinkSync(dest, link);
    const [restore, copy] = await Promise.all([
      coffer(['restore', '--from', file, '--to', `sqlite:${link}`]),
      coffer(['copy', '--from', sourceUrl, '--to', `sqlite:${link}`]),
    ]);
    for (const [r, op] of [
      [restore, 'restore'],
      [copy, 'copy'],
    ] as const) {
      assert.equal(r.code, 2, r.stderr);
      oneErrorLine(
        r,
        new RegExp(
          `target sqlite:.*dangling\\.db is a symbolic link to .*real\\.db, which does not exist: ${op} does not create a database through a link; name the database's real path in --to, or remove the link$`,
        ),
      );
    }
    assert.ok(lstatSync(link).isSymbolicLink(), 'the link is left as it was');
    assert.equal(existsSync(join(dir, 'dangling-destination')), false, 'nothing was created where it points');
    assert.equal(existsSync(`${link}.coffer-lock`), false);
  });

  test('backup and restore on the command line, with --json and progress lines', async () => {
    const file = join(dir, 'cli.backup');
    const b = await coffer(['backup', '--db', sourceUrl, '--to', file, '--json'], { COFFER_PROGRESS_INTERVAL_MS: '1' });
    assert.equal(b.code, 0, b.stderr);
    const report = JSON.parse(b.stdout);
    assert.equal(report.kind, 'sqlite');
    assert.ok(existsSync(file) && existsSync(`${file}.manifest.json`));
    assert.ok(
      b.stderr
        .split('\n')
        .filter(Boolean)
        .every((l) => 'progress' in JSON.parse(l) || 'note' in JSON.parse(l)),
      'with --json, progress is JSON lines',
    );
    const target = await newDb(targetBackend);
    const r = await coffer(['restore', '--from', file, '--to', target.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /restored .*cli\.backup \(sqlite\) into .*: [\d,]+ rows in \d+ tables, verified against the manifest/);
    // A second restore into the now non-empty database is refused: one line, exit 2.
    const refused = await coffer(['restore', '--from', file, '--to', target.url]);
    assert.equal(refused.code, 2);
    oneErrorLine(refused, /is not empty .*--force/);
  });

  test('stats, sizes, doctor and status on a SQLite file backup leave it restorable, verified against its manifest', async () => {
    const file = join(dir, 'looked-at.backup');
    const b = await coffer(['backup', '--db', sourceUrl, '--to', file]);
    assert.equal(b.code, 0, b.stderr);
    const before = readFileSync(file);
    for (const cmd of ['stats', 'sizes', 'doctor', 'status']) {
      const r = await coffer([cmd, '--db', `sqlite:${file}`]);
      // doctor exits 1 for a warning; what matters here is what it did to the file.
      assert.ok(r.code === 0 || (cmd === 'doctor' && r.code === 1), `${cmd}: ${r.stderr}`);
    }
    assert.notDeepEqual(readFileSync(file).subarray(0, 100), before.subarray(0, 100), 'the header was rewritten (the case under test)');
    const target = await newDb(targetBackend);
    const r = await coffer(['restore', '--from', file, '--to', target.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /restored .*looked-at\.backup \(sqlite\) into .*, verified against the manifest/);
    assert.match(r.stdout, /note: .* differs from its manifest only in the SQLite header's journal mode and change counter/);
    // Without a manifest beside it, the rows are checked against the file, and the output says so.
    rmSync(`${file}.manifest.json`);
    const bare = await newDb(targetBackend);
    const r2 = await coffer(['restore', '--from', file, '--to', bare.url]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stdout, /verified against the backup file \(no manifest beside it\)/);
    assert.doesNotMatch(r2.stdout, /against the manifest/);
  });

  test('restore checks the backup file and its flags before it creates the target', async () => {
    const junk = join(dir, 'junk.backup');
    writeFileSync(junk, 'not a backup');
    const folder = join(dir, 'restore-target');
    const to = `sqlite:${join(folder, 'restored.db')}`;
    const [missing, notBackup, badBatch] = await Promise.all([
      coffer(['restore', '--from', join(dir, 'no-such.backup'), '--to', to]),
      coffer(['restore', '--from', junk, '--to', to]),
      coffer(['restore', '--from', junk, '--to', to, '--batch-size', '0']),
    ]);
    assert.equal(missing.code, 2, missing.stderr);
    oneErrorLine(missing, /cannot read backup .*no-such\.backup: no such file or directory/);
    assert.equal(notBackup.code, 2, notBackup.stderr);
    oneErrorLine(notBackup, /junk\.backup is not a Coffer backup/);
    assert.equal(badBatch.code, 2, badBatch.stderr);
    oneErrorLine(badBatch, /--batch-size: expected a whole number from 1 to 100000/);
    assert.equal(existsSync(folder), false, 'no target database (or folder) was created');
  });

  test('a backup this build cannot restore, whose sections disagree with its header, or that no longer matches its manifest creates no target', async () => {
    const good = join(dir, 'checked-first.backup');
    const b = await coffer(['backup', '--db', sourceUrl, '--to', good, '--format', 'logical']);
    assert.equal(b.code, 0, b.stderr);
    const lines = logicalLines(good);
    const header = headerOf(lines);
    header.migrations.push({ ...header.migrations[0]!, version: 9999, name: 'from_the_future' });
    const future = join(dir, 'future.backup');
    writeLogical(future, [JSON.stringify(header), ...lines.slice(1)]);
    // A section missing from the middle: the header lists a table the file does not hold there.
    const secs = [...sections(lines).entries()];
    const [gone, at] = secs[2]!;
    const holed = join(dir, 'holed.backup');
    writeLogical(holed, [...lines.slice(0, at.start), ...lines.slice(at.end + 1)]);
    // A SQLite file backup changed after it was taken: its manifest no longer matches it.
    const sqliteFile = join(dir, 'tampered-sqlite.backup');
    const nb = await coffer(['backup', '--db', sourceUrl, '--to', sqliteFile, '--format', 'native']);
    assert.equal(nb.code, 0, nb.stderr);
    const bytes = readFileSync(sqliteFile);
    bytes[bytes.length - 100] = (bytes[bytes.length - 100]! + 1) % 256;
    writeFileSync(sqliteFile, bytes);
    const folder = join(dir, 'never-created');
    const to = `sqlite:${join(folder, 'restored.db')}`;
    const [newer, missing, tampered] = await Promise.all([
      coffer(['restore', '--from', future, '--to', to]),
      coffer(['restore', '--from', holed, '--to', to]),
      coffer(['restore', '--from', sqliteFile, '--to', to]),
    ]);
    assert.equal(tampered.code, 2, tampered.stderr);
    oneErrorLine(tampered, /tampered-sqlite\.backup does not match its manifest \(its SHA-256 differs\)/);
    assert.equal(newer.code, 3, newer.stderr);
    oneErrorLine(
      newer,
      /future\.backup has migration core\/9999_from_the_future, which this build of Coffer does not know: upgrade Coffer first$/,
    );
    assert.equal(missing.code, 2, missing.stderr);
    oneErrorLine(
      missing,
      new RegExp(
        `holed\\.backup is damaged or truncated: its header lists table ${gone} at position 3 of ${secs.length}, but section 3 is table ${secs[3]![0]} \\(position 4 of`,
      ),
    );
    assert.equal(existsSync(folder), false, 'no target database (or folder) was created');
  });

  test('a restore that fails part way removes the SQLite file it created; an existing database is left marked failed, and doctor says why', async () => {
    const good = join(dir, 'part-way.backup');
    const b = await coffer(['backup', '--db', sourceUrl, '--to', good, '--format', 'logical']);
    assert.equal(b.code, 0, b.stderr);
    const table = [...sections(logicalLines(good)).entries()].filter(([, x]) => x.rows > 1).pop()![0];
    const bad = join(dir, 'part-way-duplicate.backup');
    withDuplicateRow(good, table, bad);
    const target = await failsPartWay('restore', ['--from', bad, '--batch-size', '3'], /.*part-way-duplicate\.backup/);
    // Once the cause is fixed (an intact copy of the same backup), the same restore resumes.
    const resumed = await coffer(['restore', '--from', good, '--to', target.url]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /\(resumed\), verified against the manifest/);
  });

  test('copy checks its source and its flags before it creates the target', async () => {
    /** A SQLite database at `path`, opened with this build's migrations (`migrate`) and changed by `edit`. */
    const sqliteDb = async (name: string, migrate: boolean, edit: (c: Coffer) => Promise<unknown> = async () => {}) => {
      const url = `sqlite:${join(dir, name)}`;
      const c = await Coffer.open({ url, migrate: migrate ? 'apply' : 'skip' });
      try {
        await edit(c);
      } finally {
        await c.close();
      }
      return url;
    };
    const notCoffer = await sqliteDb('not-coffer.db', false);
    const newer = await sqliteDb('newer.db', true, (c) =>
      c.write((tx) =>
        tx.insert(HISTORY_TABLE, {
          domain: 'core',
          version: 9999,
          name: 'from_the_future',
          checksum: 'ab'.repeat(32),
          state: 'applied',
          applied_at: new Date(),
        }),
      ),
    );
    const marked = await sqliteDb('marked.db', true, (c) =>
      createMarker(opsDb(c), { operation: 'copy', source: 'elsewhere', sourceId: 'elsewhere', startedAt: new Date().toISOString() }),
    );
    const folder = join(dir, 'copy-target');
    const to = `sqlite:${join(folder, 'copy.db')}`;
    const [empty, future, incomplete, badBatch, unreachable] = await Promise.all([
      coffer(['copy', '--from', notCoffer, '--to', to]),
      coffer(['copy', '--from', newer, '--to', to]),
      coffer(['copy', '--from', marked, '--to', to]),
      coffer(['copy', '--from', sourceUrl, '--to', to, '--batch-size', '0']),
      coffer(['copy', '--from', 'postgres://app:hunter2@127.0.0.1:1/x', '--to', to]),
    ]);
    assert.equal(empty.code, 2, empty.stderr);
    oneErrorLine(empty, /source sqlite:.*not-coffer\.db is not a Coffer database \(it has no migration history\): check --from/);
    assert.equal(future.code, 3, future.stderr);
    oneErrorLine(future, /newer\.db: migration history does not match this build of Coffer \(core\/9999_from_the_future is unknown\)/);
    assert.equal(incomplete.code, 2, incomplete.stderr);
    oneErrorLine(incomplete, /source sqlite:.*marked\.db is itself an incomplete copy from elsewhere .*: finish or discard that first$/);
    assert.equal(badBatch.code, 2, badBatch.stderr);
    oneErrorLine(badBatch, /--batch-size: expected a whole number from 1 to 100000/);
    assert.equal(unreachable.code, 2, unreachable.stderr);
    oneErrorLine(unreachable, /cannot connect to postgres:\/\/app:\*\*\*@127\.0\.0\.1:1\/x/);
    assert.equal(existsSync(folder), false, 'no target database (or folder) was created');
  });

  test('a copy that fails part way removes the SQLite file it created; an existing database is left marked failed, doctor says why, and it resumes once the cause is fixed', async () => {
    // A source the target refuses part way: identity_roles lost its unique index on name (a
    // damaged or hand-edited database) and its last role repeats an earlier name.
    const source = `sqlite:${join(dir, 'repeated-role.db')}`;
    let repeat = 0n;
    const c = await Coffer.open({ url: source });
    try {
      const role = (name: string) =>
        c.write((tx) => tx.insertReturningId('identity_roles', { name, created_at: new Date(), updated_at: new Date() }));
      for (let i = 0; i < 10; i++) await role(`role-${i}`);
      for (const step of compileOperation(c.dialect, { op: 'dropIndex', table: 'identity_roles', name: 'uq_identity_roles_name' }))
        await sql.raw(step.sql).execute(c.engine.writer);
      repeat = await role('role-3');
    } finally {
      await c.close();
    }
    const target = await failsPartWay('copy', ['--from', source, '--batch-size', '3'], /sqlite:.*repeated-role\.db/);
    // The cause fixed (the repeated role deleted from the source), the same copy resumes.
    const fix = await Coffer.open({ url: source, migrate: 'skip' });
    try {
      await fix.write((tx) => tx.db.deleteFrom('identity_roles').where('id', '=', repeat).execute());
    } finally {
      await fix.close();
    }
    const resumed = await coffer(['copy', '--from', source, '--to', target.url]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /\(resumed\)/);
    assert.match(resumed.stdout, /verified: row counts and content checksums match on both sides/);
  });

  test('backup --to - appends to what stdout already holds (a shell `>>`), never truncates it', async () => {
    const out = join(dir, 'appended.log');
    writeFileSync(out, 'precious log line\n');
    const fd = openSync(out, 'a');
    try {
      const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), 'backup', '--db', sourceUrl, '--to', '-'], {
        cwd: ROOT,
        env: { ...process.env, COFFER_DATABASE_URL: '', DATABASE_URL: '' },
        stdio: ['ignore', fd, 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, 0, stderr);
    } finally {
      closeSync(fd);
    }
    const bytes = readFileSync(out);
    assert.equal(bytes.subarray(0, 18).toString(), 'precious log line\n');
    // The gzip stream of the logical backup follows it.
    assert.deepEqual([bytes[18], bytes[19]], [0x1f, 0x8b]);
    // Named as a path, the same regular file is an existing file: refused, pointing at --to -.
    const fd2 = openSync(out, 'a');
    try {
      const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), 'backup', '--db', sourceUrl, '--to', '/dev/stdout'], {
        cwd: ROOT,
        env: { ...process.env, COFFER_DATABASE_URL: '', DATABASE_URL: '' },
        stdio: ['ignore', fd2, 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, 2, stderr);
      oneErrorLine(
        { code, signal: null, stdout: '', stderr },
        /backup file \/dev\/stdout already exists: choose a new name .*; to write to standard output use --to -/,
      );
    } finally {
      closeSync(fd2);
    }
    assert.deepEqual(readFileSync(out), bytes, 'nothing was appended');
  });

  test('maintain, stats, sizes and doctor run and speak JSON', async () => {
    const [m, s, z, d] = await Promise.all([
      coffer(['maintain', '--db', sourceUrl, '--json']),
      coffer(['stats', '--db', sourceUrl, '--json']),
      coffer(['sizes', '--db', sourceUrl]),
      coffer(['doctor', '--db', sourceUrl, '--json']),
    ]);
    assert.equal(m.code, 0, m.stderr);
    assert.deepEqual(
      JSON.parse(m.stdout).steps.map((s: { step: string }) => s.step),
      ['PRAGMA optimize', 'VACUUM', 'PRAGMA wal_checkpoint(TRUNCATE)'],
    );
    assert.equal(s.code, 0, s.stderr);
    const stats = JSON.parse(s.stdout);
    const rows = Object.fromEntries(stats.tables.map((t: { table: string; rows: number }) => [t.table, t.rows]));
    for (const [t, v] of Object.entries(sourceDump)) if (t !== 'coffer_migrations') assert.equal(rows[t], v.length, t);
    assert.equal(z.code, 0, z.stderr);
    assert.match(z.stdout, /^index\s+uq_chain_blocks_hash\s+chain_blocks\s+/m);
    assert.equal(d.code, 0, d.stdout);
    assert.equal(JSON.parse(d.stdout).ok, true);
  });

  test('environment problems get one clear line and a non-zero exit', async () => {
    const results = await Promise.all([
      coffer(['copy', '--from', 'oracle://x/y', '--to', 'sqlite::memory:']),
      coffer(['copy', '--from', sourceUrl, '--to', 'postgres://app:hunter2@127.0.0.1:1/x']),
      coffer(['backup', '--db', 'postgres://app:hunter2@127.0.0.1:1/x', '--to', join(dir, 'x.backup')]),
      coffer(['backup', '--db', sourceUrl, '--to', join(dir, 'missing', 'x.backup')]),
      coffer(['backup', '--db', sourceUrl, '--to', join(dir, 'nothing.backup'), '--format', 'logical', '--batch-size', 'lots']),
      coffer(['restore', '--from', join(dir, 'no-such.backup'), '--to', sourceUrl]),
      coffer(['trim', '--db', sourceUrl, '--set', 'no.such.setting=1']),
    ]);
    const [badUrl, unreachable, unreachableBackup, missingDir, badBatch, noFile, badSetting] = results;
    assert.equal(badUrl!.code, 2);
    oneErrorLine(badUrl!, /database\.url: unsupported scheme "oracle:"/);
    assert.equal(unreachable!.code, 2);
    oneErrorLine(unreachable!, /cannot connect to postgres:\/\/app:\*\*\*@127\.0\.0\.1:1\/x/);
    assert.doesNotMatch(unreachable!.stderr + unreachableBackup!.stderr, /hunter2/);
    assert.equal(unreachableBackup!.code, 2);
    assert.equal(missingDir!.code, 2);
    oneErrorLine(missingDir!, /cannot write backup .*missing\/x\.backup\.partial: no such file or directory/);
    assert.equal(badBatch!.code, 2);
    oneErrorLine(badBatch!, /--batch-size: expected a whole number/);
    assert.equal(noFile!.code, 2);
    oneErrorLine(noFile!, /cannot read backup .*no-such\.backup: no such file or directory/);
    assert.equal(badSetting!.code, 2);
    oneErrorLine(badSetting!, /unknown retention setting no\.such\.setting/);
  });

  test('a retention setting that is not a positive number is refused by name (exit 2), never replaced by its default', async () => {
    const db = await newDb('sqlite');
    const c = await Coffer.open({ url: db.url });
    await c.close();
    const [hours, batch] = await Promise.all([
      coffer(['trim', '--db', db.url, '--set', 'tokens.unconfirmedMints.maxAgeHours=abc']),
      coffer(['trim', '--db', db.url, '--apply', '--set', 'chain.undo.blocksPerBatch=abc']),
    ]);
    assert.equal(hours.code, 2, hours.stderr);
    oneErrorLine(hours, /--set tokens\.unconfirmedMints\.maxAgeHours=abc: expected a positive number/);
    assert.equal(batch.code, 2, batch.stderr);
    oneErrorLine(batch, /--set chain\.undo\.blocksPerBatch=abc: expected a positive whole number/);
  });

  test("a retention age beyond what a timestamp holds is refused by the setting's name (exit 2)", async () => {
    const db = await newDb('sqlite');
    const c = await Coffer.open({ url: db.url });
    await c.close();
    const rule = ['trim', '--db', db.url, '--rule', 'tokens.unconfirmed_mints'];
    const [huge, tooOld, fine] = await Promise.all([
      coffer([...rule, '--set', 'tokens.unconfirmedMints.maxAgeHours=1e10']),
      coffer([...rule, '--apply', '--set', 'tokens.unconfirmedMints.maxAgeHours=9500000']),
      coffer([...rule, '--set', 'tokens.unconfirmedMints.maxAgeHours=8000000']),
    ]);
    for (const [r, v] of [
      [huge, '1e10'],
      [tooOld, '9500000'],
    ] as const) {
      assert.equal(r.code, 2, r.stderr);
      oneErrorLine(
        r,
        new RegExp(
          `--set tokens\\.unconfirmedMints\\.maxAgeHours=${v}: an age of at most \\d+ hours \\(older cutoffs reach back before the year 1000`,
        ),
      );
      assert.doesNotMatch(r.stderr, /received_at/);
    }
    // 8,000,000 hours reach back to about the year 1113: still a time every backend stores.
    assert.equal(fine.code, 0, fine.stderr);
  });

  test('a mistyped SQLite path is a configuration error (exit 2) for commands that read a database, and nothing is created', async () => {
    const typo = join(dir, 'typo-dir', 'coffer.db');
    const runs = await Promise.all([
      coffer(['stats', '--db', `sqlite:${typo}`]),
      coffer(['backup', '--db', `sqlite:${typo}`, '--to', join(dir, 'typo.backup')]),
      coffer(['doctor', '--db', `sqlite:${typo}`]),
      coffer(['audit', 'verify', '--db', `sqlite:${typo}`]),
      coffer(['copy', '--from', `sqlite:${typo}`, '--to', 'sqlite::memory:']),
    ]);
    for (const r of runs) {
      assert.equal(r.code, 2, r.stderr);
      oneErrorLine(r, /no database at .*typo-dir\/coffer\.db \(--(db|from)\)/);
    }
    assert.equal(existsSync(join(dir, 'typo-dir')), false, 'no folder or file was created');
  });

  test('a missing dump tool and a full disk get one clear line too', async () => {
    const runs: Promise<Run>[] = [];
    if (!skipReason('postgres')) {
      const pg = await newDb('postgres');
      const c = await Coffer.open({ url: pg.url });
      await c.close();
      runs.push(
        coffer(['backup', '--db', pg.url, '--to', join(dir, 'pg-native.backup'), '--format', 'native'], { PATH: join(dir, 'empty-path') }),
      );
    }
    if (existsSync('/dev/full')) runs.push(coffer(['backup', '--db', sourceUrl, '--to', '/dev/full', '--format', 'logical']));
    const [noTool, full] = skipReason('postgres') ? [undefined, ...(await Promise.all(runs))] : await Promise.all(runs);
    if (noTool) {
      assert.equal(noTool.code, 2);
      oneErrorLine(noTool, /pg_dump not found on PATH \(install postgresql-client, or back up with --format logical\)/);
    }
    if (full) {
      assert.notEqual(full.code, 0);
      oneErrorLine(full, /cannot write \/dev\/full: the disk is full/);
    }
    assert.ok(noTool || full, 'at least one of the two cases ran');
  });
});
