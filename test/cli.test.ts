// The `coffer` command line as a user runs it: one clear line and exit code 2 for a bad URL or
// an unreachable server, refusal (exit 3) naming an edited migration file, and `serve` answering
// /health, /ready and /metrics.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'coffer-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/coffer.js of `root` (default: the package `cwd` names, or this one) in `cwd`. */
function coffer(args: string[], opts: { cwd?: string; root?: string; env?: Record<string, string> } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const cwd = opts.cwd ?? ROOT;
    const child = spawn(process.execPath, [join(opts.root ?? cwd, 'bin/coffer.js'), ...args], {
      cwd,
      env: { ...process.env, COFFER_DATABASE_URL: '', DATABASE_URL: '', ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function oneErrorLine(r: Result, pattern: RegExp): void {
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^coffer: error: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('--help lists the commands', async () => {
  const r = await coffer(['--help']);
  assert.equal(r.code, 0);
  for (const cmd of ['serve', 'migrate', 'status', 'config', 'schema']) assert.match(r.stdout, new RegExp(`\\b${cmd}\\b`));
});

test('a malformed URL gives one line and exit code 2', async () => {
  for (const url of ['oracle://db/x', 'postgres://host-without-db', 'sqlite:']) {
    const r = await coffer(['status', '--db', url]);
    assert.equal(r.code, 2, r.stderr);
    oneErrorLine(r, /database\.url/);
  }
});

test('a "%" in a URL password that is not percent-encoding gives one line and exit code 2, without the password', async () => {
  const r = await coffer(['status', '--db', 'postgres://app:50%off@127.0.0.1:1/coffer']);
  assert.equal(r.code, 2, r.stderr);
  oneErrorLine(r, /database\.url: the password holds a "%" that is not percent-encoding \(write a literal % as %25\)/);
  assert.doesNotMatch(r.stderr, /50%off/);
});

test('an unreachable server gives one line and exit code 2, with the password redacted', async () => {
  for (const url of ['postgres://app:hunter2@127.0.0.1:1/coffer', 'mysql://app:hunter2@127.0.0.1:1/coffer']) {
    const r = await coffer(['migrate', '--db', url]);
    assert.equal(r.code, 2, r.stderr);
    oneErrorLine(r, /cannot connect to .*127\.0\.0\.1:1.*ECONNREFUSED/);
    assert.doesNotMatch(r.stderr, /hunter2/);
  }
});

test('a bad setting from the environment names the field and exits 2', async () => {
  const r = await coffer(['config'], { env: { COFFER_PORT: 'eighty' } });
  assert.equal(r.code, 2);
  oneErrorLine(r, /server\.port/);
});

test('config prints the effective configuration with secrets redacted', async () => {
  const r = await coffer(['config', '--db', 'postgres://app:hunter2@db.internal:5432/coffer'], { env: { COFFER_PORT: '9999' } });
  assert.equal(r.code, 0, r.stderr);
  const cfg = JSON.parse(r.stdout);
  assert.equal(cfg.database.url, 'postgres://app:***@db.internal:5432/coffer');
  assert.equal(cfg.server.port, 9999);
  assert.doesNotMatch(r.stdout, /hunter2/);
});

test('migrate, migrate status and status on an SQLite file', async () => {
  const db = `sqlite:${join(tmp, 'status.db')}`;
  const dry = await coffer(['migrate', '--dry-run', '--db', db]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /CREATE TABLE IF NOT EXISTS "coffer_migrations"/);
  assert.match(dry.stdout, /-- core\/0001_init \(src\/domains\/core\/0001_init\.ts\)/);
  const m = await coffer(['migrate', '--db', db]);
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stdout, /applied \d+ migration\(s\)/);
  const again = await coffer(['migrate', '--db', db]);
  assert.match(again.stdout, /nothing to apply/);
  const st = await coffer(['migrate', 'status', '--json', '--db', db]);
  assert.equal(st.code, 0, st.stderr);
  const states = JSON.parse(st.stdout) as { state: string }[];
  assert.ok(states.length > 0 && states.every((s) => s.state === 'applied'));
  const status = await coffer(['status', '--json', '--db', db]);
  assert.equal(status.code, 0, status.stderr);
  const report = JSON.parse(status.stdout);
  assert.equal(report.backend, 'sqlite');
  assert.match(report.server, /^SQLite 3\./);
  assert.deepEqual(report.migrations.pending, []);
  assert.equal(report.tables.coffer_migrations, String(states.length));
  assert.equal(report.tables.coffer_meta, '0');
});

test('`coffer migrate --db URL status` reads the database named before "status"', async () => {
  // Run where a default ./data/coffer.db would be created if --db were dropped.
  const cwd = mkdtempSync(join(tmp, 'cwd-'));
  const db = `sqlite:${join(tmp, 'parent-flag.db')}`;
  const m = await coffer(['migrate', '--db', db], { cwd, root: ROOT });
  assert.equal(m.code, 0, m.stderr);
  for (const args of [
    ['migrate', '--db', db, 'status', '--json'],
    ['migrate', 'status', '--db', db, '--json'],
  ]) {
    const st = await coffer(args, { cwd, root: ROOT });
    assert.equal(st.code, 0, `${args.join(' ')}: ${st.stderr}`);
    const states = JSON.parse(st.stdout) as { state: string }[];
    assert.ok(states.length > 0 && states.every((s) => s.state === 'applied'), `${args.join(' ')}: ${st.stdout}`);
  }
  assert.ok(!existsSync(join(cwd, 'data')), 'the default database was not created');
  // Two different databases for one command: refused, naming both (passwords redacted).
  const twice = await coffer(['migrate', '--db', db, 'status', '--db', 'postgres://app:hunter2@127.0.0.1:1/other'], { cwd, root: ROOT });
  assert.equal(twice.code, 2, twice.stderr);
  oneErrorLine(
    twice,
    /--db is given twice, before and after "status" \(sqlite:.*parent-flag\.db and postgres:\/\/app:\*\*\*@127\.0\.0\.1:1\/other\): give it once/,
  );
  assert.doesNotMatch(twice.stderr, /hunter2/);
});

test('an edited landed migration makes `coffer migrate` and `coffer serve` refuse, naming the file', async () => {
  // A copy of the package whose migration file is then edited, as a developer would.
  const pkg = join(tmp, 'pkg');
  for (const part of ['bin', 'src', 'package.json', 'tsconfig.json']) cpSync(join(ROOT, part), join(pkg, part), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
  const db = `sqlite:${join(tmp, 'edited.db')}`;
  const first = await coffer(['migrate', '--db', db], { cwd: pkg });
  assert.equal(first.code, 0, first.stderr);
  const file = join(pkg, 'src/domains/core/0001_init.ts');
  writeFileSync(file, readFileSync(file, 'utf8').replace('c.varchar(128)', 'c.varchar(129)'));
  for (const args of [['migrate'], ['serve', '--port', '0'], ['migrate', 'status']]) {
    const r = await coffer([...args, '--db', db], { cwd: pkg });
    assert.equal(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /core\/0001_init.*src\/domains\/core\/0001_init\.ts/);
  }
});

test('serve --no-migrate refuses a database with pending migrations', async () => {
  const r = await coffer(['serve', '--no-migrate', '--port', '0', '--db', `sqlite:${join(tmp, 'fresh.db')}`]);
  assert.equal(r.code, 3);
  oneErrorLine(r, /pending.*coffer migrate/);
});

test('serve migrates, answers /health, /ready and /metrics, and stops cleanly on SIGTERM', async () => {
  const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), 'serve', '--port', '0', '--db', `sqlite:${join(tmp, 'serve.db')}`], {
    cwd: ROOT,
    env: { ...process.env, COFFER_LOG_LEVEL: 'warn' },
  });
  let stdout = '';
  const exited = new Promise<number | null>((r) => child.on('close', r));
  const base = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /listening on (http:\/\/[^ ]+)/.exec(stdout);
      if (m) resolve(m[1]!);
    });
    void exited.then(() => reject(new Error(`serve exited: ${stdout}`)));
  });
  try {
    const health = await fetch(`${base}/health`);
    assert.equal(health.status, 200);
    const ready = await fetch(`${base}/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), {
      status: 'ready',
      backend: 'sqlite',
      migrations: 'current',
      databases: [{ name: 'default', status: 'ready' }],
    });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      'coffer_pool_connections_total',
      'coffer_pool_connections_idle',
      'coffer_pool_waiting_requests',
      'coffer_pool_connections_created',
      'coffer_pool_connections_closed',
      'coffer_store_operation_duration_seconds_bucket',
      'coffer_transaction_retries_total',
      'coffer_store_operation_errors_total',
    ]) {
      assert.match(metrics, new RegExp(`^# TYPE ${name.replace(/_bucket$/, '')} `, 'm'), name);
    }
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0);
});
