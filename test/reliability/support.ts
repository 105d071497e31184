// Shared machinery of the reliability suite: the short/long switch, `coffer serve` and CLI child
// processes, an HTTP client that records status and latency, API keys, private throw-away
// PostgreSQL and MariaDB servers (so restarting them never disturbs anyone else's tests), a
// small tmpfs for disk-full, percentiles, and the figures each test prints and keeps in
// test-artifacts/reliability/ for docs/reliability.md.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { systemActor } from '../../src/domains/audit/actor.js';
import { identity } from '../../src/domains/identity/index.js';
import { Coffer } from '../../src/db/store.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** `npm run test:reliability` sets COFFER_RELIABILITY=long; `npm test` runs the short version. */
export const LONG = process.env.COFFER_RELIABILITY === 'long';
export const MODE = LONG ? 'long' : 'short';
export const pick = <T>(short: T, long: T): T => (LONG ? long : short);

export const rnd = (n: number) => Math.floor(Math.random() * n);
export const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

// ---------------------------------------------------------------- figures

/** Prints the figures of one test and keeps them as JSON for the report. */
export function report(name: string, figures: Record<string, unknown>): void {
  const text = JSON.stringify(figures, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  console.log(`reliability ${name}: ${text}`);
  const dir = join(ROOT, 'test-artifacts', 'reliability', MODE);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name.replace(/[^A-Za-z0-9._-]+/g, '_')}.json`), `${JSON.stringify(JSON.parse(text), null, 2)}\n`);
}

export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const median = (values: readonly number[]) => percentile(values, 50);
export const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------- cleanup of everything started here

const cleanups = new Set<() => void>();

/** Registers a synchronous last-resort cleanup (run at exit if the test did not run it itself). */
export function onExit(fn: () => void): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

process.on('exit', () => {
  // Last registered first: a server is stopped before its directory is removed.
  for (const fn of [...cleanups].reverse()) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
});

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join('/tmp', prefix));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  const off = onExit(remove);
  return {
    dir,
    remove: () => {
      off();
      remove();
    },
  };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------- coffer serve and the CLI

export interface ServeProcess {
  base: string;
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string | null>;
  alive(): boolean;
  /** The last 64 KB of stdout and stderr, for failure messages. */
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<number | string | null>;
}

/** Starts `coffer serve --port 0` on 127.0.0.1 and resolves once it prints "listening on". */
export async function startServe(url: string, env: Record<string, string> = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), 'serve', '--host', '127.0.0.1', '--port', '0', '--db', url], {
    cwd: ROOT,
    env: {
      ...process.env,
      COFFER_DATABASE_URL: '',
      DATABASE_URL: '',
      COFFER_LOG_LEVEL: 'warn',
      COFFER_RATE_LIMIT_PER_SECOND: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let running = true;
  const exited = new Promise<number | string | null>((resolve) =>
    child.on('exit', (code, signal) => {
      running = false;
      resolve(signal ?? code);
    }),
  );
  const off = onExit(() => {
    if (running) child.kill('SIGKILL');
  });
  void exited.then(off);
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`coffer serve did not start within 60 s:\n${out}`)), 60_000);
    const onData = () => {
      const m = /listening on (http:\/\/[^ \n]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`coffer serve exited (${code}) before listening:\n${out}`));
    });
  });
  return {
    base,
    pid: child.pid!,
    child,
    exited,
    alive: () => running,
    output: () => out,
    kill: async (signal = 'SIGKILL') => {
      if (running) child.kill(signal);
      return exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `coffer <args>` as a user would. */
export function cofferCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), ...args], {
      cwd: ROOT,
      env: { ...process.env, COFFER_DATABASE_URL: '', DATABASE_URL: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** RSS of a process in bytes, from /proc/<pid>/status (undefined once it is gone). */
export async function rssOf(pid: number): Promise<number | undefined> {
  try {
    const { readFile } = await import('node:fs/promises');
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- API keys

/** Migrates the database and creates an API key with every scope; returns its Authorization header. */
export async function adminKey(url: string): Promise<string> {
  const coffer = await Coffer.open({ url });
  try {
    const created = await coffer.write(async (tx) => {
      const id = identity(tx, systemActor('reliability'));
      const integration = (await id.integrations.findByName('reliability')) ?? (await id.integrations.create({ name: 'reliability' }));
      return id.keys.create({
        integrationId: integration.id,
        name: `k${Date.now()}${rnd(1e6)}`,
        scopes: ['*:admin'],
        expiresAt: new Date(Date.now() + 86_400_000),
      });
    });
    return `Bearer ${created.key}`;
  } finally {
    await coffer.close();
  }
}

// ---------------------------------------------------------------- HTTP

export interface Reply {
  /** HTTP status; 0 when no response arrived (connection refused or reset, timeout). */
  status: number;
  body: any;
  ms: number;
  /** The network error when status is 0. */
  error?: string;
}

const toWire = (v: unknown) =>
  JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : Buffer.isBuffer(x) ? x.toString('hex') : x));

export class Http {
  base: string;
  readonly authorization: string;
  constructor(base: string, authorization: string) {
    this.base = base;
    this.authorization = authorization;
  }

  async call(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<Reply> {
    const started = performance.now();
    try {
      const res = await fetch(`${this.base}${path}`, {
        method,
        headers: { authorization: this.authorization, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: toWire(body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON
      }
      return { status: res.status, body: parsed, ms: performance.now() - started };
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      return { status: 0, body: null, ms: performance.now() - started, error: err.cause?.code ?? err.cause?.message ?? err.message };
    }
  }
}

// ---------------------------------------------------------------- private database servers

function pgBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(root, versions[0]!, 'bin') : undefined;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

function uidOf(user: string): number | undefined {
  const r = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : undefined;
}

/**
 * Why a private server of this kind cannot run here, or undefined. When the suite's server URL
 * is set (a full test machine, as CI is), a missing tool is a failure, not a skip.
 */
export function privateServerUnavailable(kind: 'postgres' | 'mariadb'): string | undefined {
  const why = (() => {
    if (!isRoot()) return 'needs root (to run the server as its own OS user)';
    if (kind === 'postgres') {
      if (!pgBin()) return 'PostgreSQL server binaries (initdb, pg_ctl) not installed';
      if (uidOf('postgres') === undefined) return 'no postgres OS user';
      return undefined;
    }
    if (!existsSync('/usr/sbin/mariadbd') || spawnSync('sh', ['-c', 'command -v mariadb-install-db']).status !== 0)
      return 'MariaDB server binaries (mariadbd, mariadb-install-db) not installed';
    if (uidOf('mysql') === undefined) return 'no mysql OS user';
    return undefined;
  })();
  const env = kind === 'postgres' ? 'COFFER_TEST_POSTGRES_URL' : 'COFFER_TEST_MYSQL_URL';
  if (why && process.env[env])
    throw new Error(`private ${kind} server for the restart tests: ${why}, but ${env} is set, so this machine must run them`);
  return why;
}

export interface PrivateServer {
  kind: 'postgres' | 'mariadb';
  port: number;
  /** Admin URL of the server (no database). */
  adminUrl: string;
  /** URL of the database `coffer` created on it. */
  url: string;
  /** Graceful stop (PostgreSQL -m fast / mysqladmin shutdown) or a crash (PostgreSQL -m immediate / SIGKILL). */
  stop(how: 'graceful' | 'crash'): Promise<void>;
  start(): Promise<void>;
  running(): boolean;
  /** Runs SQL as the admin on its own connection. */
  query(sqlText: string): Promise<unknown[]>;
  dispose(): Promise<void>;
}

function run(cmd: string, args: string[], opts: { user?: string } = {}): { status: number | null; out: string } {
  const r = opts.user
    ? spawnSync('runuser', ['-u', opts.user, '--', cmd, ...args], { encoding: 'utf8' })
    : spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** A throw-away PostgreSQL cluster (initdb into /tmp) on a free loopback port with a private socket dir. */
export async function privatePostgres(): Promise<PrivateServer> {
  const bin = pgBin()!;
  const t = tempDir('coffer-pg-');
  const uid = uidOf('postgres')!;
  chownSync(t.dir, uid, uid);
  const data = join(t.dir, 'data');
  const sock = join(t.dir, 'sock');
  mkdirSync(sock);
  chownSync(sock, uid, uid);
  const init = run(join(bin, 'initdb'), ['-D', data, '--auth=trust', '-U', 'postgres', '-E', 'UTF8', '--no-instructions'], {
    user: 'postgres',
  });
  if (init.status !== 0) {
    t.remove();
    throw new Error(`initdb failed: ${init.out}`);
  }
  const port = await freePort();
  let up = false;
  const ctl = (args: string[]) => run(join(bin, 'pg_ctl'), ['-D', data, ...args], { user: 'postgres' });
  const startIt = async () => {
    const r = ctl([
      '-l',
      join(t.dir, 'log'),
      '-w',
      '-t',
      '60',
      '-o',
      `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c shared_buffers=32MB -c max_connections=60`,
      'start',
    ]);
    if (r.status !== 0) throw new Error(`pg_ctl start failed: ${r.out}`);
    up = true;
  };
  const off = onExit(() => {
    if (up) ctl(['-m', 'immediate', '-w', 'stop']);
    t.remove();
  });
  await startIt();
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const query = async (q: string) => {
    const c = new pg.Client({ connectionString: adminUrl, application_name: 'coffer-reliability', connectionTimeoutMillis: 5000 });
    await c.connect();
    try {
      return (await c.query(q)).rows;
    } finally {
      await c.end();
    }
  };
  await query('CREATE DATABASE coffer');
  return {
    kind: 'postgres',
    port,
    adminUrl,
    url: `postgres://postgres@127.0.0.1:${port}/coffer`,
    stop: async (how) => {
      const r = ctl(['-m', how === 'graceful' ? 'fast' : 'immediate', '-w', '-t', '60', 'stop']);
      if (r.status !== 0) throw new Error(`pg_ctl stop failed: ${r.out}`);
      up = false;
    },
    start: startIt,
    running: () => up,
    query,
    dispose: async () => {
      off();
      if (up) ctl(['-m', 'immediate', '-w', 'stop']);
      up = false;
      t.remove();
    },
  };
}

/** A throw-away MariaDB server (mariadb-install-db into /tmp), run as a child process on a free loopback port. */
export async function privateMariadb(): Promise<PrivateServer> {
  const t = tempDir('coffer-my-');
  const uid = uidOf('mysql')!;
  chownSync(t.dir, uid, uid);
  const data = join(t.dir, 'data');
  const sock = join(t.dir, 'sock');
  const install = run('mariadb-install-db', [
    '--no-defaults',
    '--user=mysql',
    `--datadir=${data}`,
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
  ]);
  if (install.status !== 0) {
    t.remove();
    throw new Error(`mariadb-install-db failed: ${install.out}`);
  }
  const port = await freePort();
  const adminUrl = `mysql://root@127.0.0.1:${port}/mysql`;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const query = async (q: string) => {
    const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout: 5000 });
    try {
      const [rows] = await c.query(q);
      return rows as unknown[];
    } finally {
      await c.end();
    }
  };
  const startIt = async () => {
    const c = spawn(
      '/usr/sbin/mariadbd',
      [
        '--no-defaults',
        '--user=mysql',
        `--datadir=${data}`,
        `--port=${port}`,
        `--socket=${sock}`,
        '--bind-address=127.0.0.1',
        `--pid-file=${join(t.dir, 'mariadbd.pid')}`,
        `--log-error=${join(t.dir, 'error.log')}`,
        '--innodb-buffer-pool-size=32M',
        '--skip-log-bin',
        '--max-connections=80',
      ],
      { stdio: 'ignore' },
    );
    child = c;
    exited = new Promise((r) => c.on('exit', () => r()));
    void exited.then(() => {
      if (child === c) child = undefined;
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await query('SELECT 1');
        return;
      } catch (e) {
        if (!child || Date.now() > deadline) throw new Error(`mariadbd did not come up: ${(e as Error).message}`);
        await sleep(100);
      }
    }
  };
  const off = onExit(() => {
    child?.kill('SIGKILL');
    t.remove();
  });
  await startIt();
  await query('CREATE DATABASE coffer CHARACTER SET utf8mb4 COLLATE utf8mb4_bin');
  return {
    kind: 'mariadb',
    port,
    adminUrl,
    url: `mysql://root@127.0.0.1:${port}/coffer`,
    stop: async (how) => {
      if (!child) return;
      if (how === 'crash') child.kill('SIGKILL');
      else {
        const r = run('mysqladmin', ['--no-defaults', '-uroot', `--socket=${sock}`, 'shutdown']);
        if (r.status !== 0) throw new Error(`mysqladmin shutdown failed: ${r.out}`);
      }
      await exited;
    },
    start: startIt,
    running: () => child !== undefined,
    query,
    dispose: async () => {
      off();
      if (child) {
        child.kill('SIGKILL');
        await exited;
      }
      t.remove();
    },
  };
}

// ---------------------------------------------------------------- a small filesystem

/** Mounts a tmpfs of `bytes` under /tmp; undefined with the reason when mounting is not allowed here. */
export function smallFilesystem(bytes: number): { dir: string; dispose: () => void } | { unavailable: string } {
  if (!isRoot()) return { unavailable: 'mounting a tmpfs needs root' };
  const t = tempDir('coffer-full-');
  const r = run('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', t.dir]);
  if (r.status !== 0) {
    t.remove();
    return { unavailable: `mount -t tmpfs failed: ${r.out.trim()}` };
  }
  let mounted = true;
  const unmount = () => {
    if (!mounted) return;
    const u = run('umount', [t.dir]);
    if (u.status !== 0) run('umount', ['-l', t.dir]);
    mounted = false;
    t.remove();
  };
  const off = onExit(unmount);
  return {
    dir: t.dir,
    dispose: () => {
      off();
      unmount();
    },
  };
}

export { sleep };
