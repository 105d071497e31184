// The machine, versions and server settings a run was measured with, for the report.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(new URL(`../../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string })
      .version;
  } catch {
    return '?';
  }
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memGiB: number;
  os: string;
  node: string;
  packages: Record<string, string>;
  sqlite: string;
  postgres?: Record<string, string>;
  mysql?: Record<string, string>;
  wrk?: string;
  loadAvgAtStart: number[];
}

export async function machineInfo(): Promise<MachineInfo> {
  const mem = new Database(':memory:');
  const sqlite = (mem.prepare('select sqlite_version() as v').get() as { v: string }).v;
  mem.close();
  const info: MachineInfo = {
    cpu: os.cpus()[0]?.model ?? '?',
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    packages: Object.fromEntries(['better-sqlite3', 'pg', 'mysql2', 'kysely', 'fastify', 'zod'].map((p) => [p, pkgVersion(p)])),
    sqlite,
    loadAvgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
  try {
    info.wrk = execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]!
      .trim();
  } catch (e) {
    const out = String((e as { stdout?: string }).stdout ?? '')
      .split('\n')[0]
      ?.trim();
    if (out) info.wrk = out;
  }
  const pgUrl = process.env.COFFER_TEST_POSTGRES_URL;
  if (pgUrl) {
    const c = new pg.Client({ connectionString: pgUrl });
    try {
      await c.connect();
      const out: Record<string, string> = { version: String((await c.query('show server_version')).rows[0].server_version) };
      for (const k of [
        'shared_buffers',
        'synchronous_commit',
        'fsync',
        'wal_sync_method',
        'full_page_writes',
        'max_wal_size',
        'work_mem',
      ]) {
        out[k] = String((await c.query(`show ${k}`)).rows[0][k]);
      }
      info.postgres = out;
    } catch {
      /* unreachable: reported by the workloads */
    } finally {
      await c.end().catch(() => {});
    }
  }
  const myUrl = process.env.COFFER_TEST_MYSQL_URL;
  if (myUrl) {
    try {
      const u = new URL(myUrl);
      const c = await mysql.createConnection({
        host: u.hostname,
        port: Number(u.port || 3306),
        user: decodeURIComponent(u.username) || 'root',
        password: decodeURIComponent(u.password),
      });
      try {
        const [[v]] = (await c.query('SELECT VERSION() AS v')) as unknown as [[{ v: string }]];
        const out: Record<string, string> = { version: v.v };
        const [rows] = await c.query(
          "SHOW VARIABLES WHERE Variable_name IN ('innodb_buffer_pool_size','innodb_flush_log_at_trx_commit','innodb_flush_method','innodb_doublewrite','log_bin','sync_binlog','innodb_log_file_size')",
        );
        for (const r of rows as { Variable_name: string; Value: string }[]) out[r.Variable_name] = r.Value;
        info.mysql = out;
      } finally {
        await c.end();
      }
    } catch {
      /* reported by the workloads */
    }
  }
  return info;
}
