// The native dump tools (pg_dump / pg_restore, mysqldump / mysql): finding them, passing
// credentials without putting the password on a command line, and turning their failures into
// one clear line. Nothing here decides *when* to use them; backup.ts and restore.ts do.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { ConfigError } from '../db/errors.js';
import type { DbTarget, ServerTarget } from '../db/url.js';

export type ToolName = 'pg_dump' | 'pg_restore' | 'mysqldump' | 'mysql';

const PACKAGE: Record<ToolName, string> = {
  pg_dump: 'postgresql-client',
  pg_restore: 'postgresql-client',
  mysqldump: 'mariadb-client or mysql-client',
  mysql: 'mariadb-client or mysql-client',
};

/** The tool's path on PATH, or null. */
export function findTool(name: ToolName, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

export function requireTool(name: ToolName, alternative: string): string {
  const p = findTool(name);
  if (!p) throw new ConfigError(`${name} not found on PATH (install ${PACKAGE[name]}, or ${alternative})`, { tool: name });
  return p;
}

export interface ToolRun {
  child: ChildProcess;
  /** Resolves when the tool exits 0; rejects with its last stderr lines otherwise. */
  done: Promise<void>;
  kill(): void;
}

/** Starts a tool; `cleanup` runs once it has exited (removing a credentials file). */
export function runTool(
  path: string,
  name: ToolName,
  args: string[],
  env: Record<string, string | undefined>,
  opts: { stdin?: 'pipe' | 'ignore'; stdout?: 'pipe' | 'ignore'; cleanup?: () => void } = {},
): ToolRun {
  const child = spawn(path, args, { env: { ...process.env, ...env }, stdio: [opts.stdin ?? 'ignore', opts.stdout ?? 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      opts.cleanup?.();
      reject(
        e.code === 'ENOENT'
          ? new ConfigError(`${name} not found at ${path} (install ${PACKAGE[name]})`, { tool: name })
          : new Error(`${name} failed to start: ${e.message}`),
      );
    });
    child.on('close', (code, signal) => {
      opts.cleanup?.();
      if (code === 0) return resolve();
      const lines = stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !/^(warning|WARNING):.*password/i.test(l));
      // The line that says what went wrong, not the SQL text the tools echo after it.
      const errorLine = lines.find((l) => /\b(error|fatal|denied|not found|no such|failed|could not)\b/i.test(l));
      const why = errorLine ?? (lines.slice(-2).join(' / ') || (signal ? `killed by ${signal}` : `exit code ${code}`));
      reject(new ToolError(`${name} failed: ${why}`, name, stderr));
    });
  });
  return { child, done, kill: () => child.kill('SIGTERM') };
}

export class ToolError extends Error {
  readonly tool: ToolName;
  readonly stderr: string;
  constructor(message: string, tool: ToolName, stderr: string) {
    super(message);
    this.name = 'ToolError';
    this.tool = tool;
    this.stderr = stderr;
  }
}

/** libpq environment for a PostgreSQL URL (the password travels in PGPASSWORD, never in argv). */
export function pgEnv(t: ServerTarget): Record<string, string | undefined> {
  return {
    PGHOST: t.host,
    PGPORT: String(t.port),
    PGUSER: t.user,
    PGPASSWORD: t.password,
    PGDATABASE: t.database,
    PGSSLMODE: t.ssl.mode === 'prefer' ? 'require' : t.ssl.mode,
    PGSSLROOTCERT: t.ssl.caFile,
    PGAPPNAME: 'coffer-backup',
    PGCONNECT_TIMEOUT: '10',
  };
}

/** The MySQL/MariaDB client flavour of a tool (their SSL flags differ). */
let flavour: Promise<'mariadb' | 'mysql'> | undefined;
export function clientFlavour(toolPath: string): Promise<'mariadb' | 'mysql'> {
  flavour ??= new Promise((resolve) => {
    const c = spawn(toolPath, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', () => resolve(/mariadb/i.test(out) ? 'mariadb' : 'mysql'));
    c.on('error', () => resolve('mysql'));
  });
  return flavour;
}

/**
 * A private [client] option file (mode 0600 in a 0700 folder) carrying host, user, password and
 * TLS settings; pass `--defaults-extra-file=<path>` as the tool's first argument.
 */
export async function mysqlOptionFile(toolPath: string, t: ServerTarget): Promise<{ path: string; cleanup: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-my-'));
  const path = join(dir, 'client.cnf');
  const lines = ['[client]', `host=${t.host}`, `port=${t.port}`, `user=${t.user}`];
  if (t.password !== undefined) lines.push(`password="${t.password.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
  if (t.ssl.mode !== 'disable') {
    const maria = (await clientFlavour(toolPath)) === 'mariadb';
    if (maria) {
      lines.push('ssl');
      if (t.ssl.mode === 'verify-ca' || t.ssl.mode === 'verify-full') lines.push('ssl-verify-server-cert');
    } else {
      lines.push(`ssl-mode=${t.ssl.mode === 'verify-full' ? 'VERIFY_IDENTITY' : t.ssl.mode === 'verify-ca' ? 'VERIFY_CA' : 'REQUIRED'}`);
    }
    if (t.ssl.caFile) lines.push(`ssl-ca=${t.ssl.caFile}`);
  }
  writeFileSync(path, `${lines.join('\n')}\n`, { mode: 0o600 });
  let removed = false;
  return {
    path,
    cleanup: () => {
      if (removed) return;
      removed = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function serverTarget(t: DbTarget): ServerTarget {
  if (t.backend === 'sqlite') throw new Error('not a server database');
  return t;
}
