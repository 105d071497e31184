// Schema snapshots: the full DDL of every dialect, generated from the migrations and committed
// under schema/, so a review shows exactly what each backend gets and drift fails a test.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyTable } from '../migrations/history.js';
import { migrationId, type Migration } from '../migrations/migration.js';
import { migrationSteps } from '../migrations/runner.js';
import { createTableSteps } from './compile.js';
import { DIALECTS, type Dialect } from './model.js';

export function snapshotSql(d: Dialect, migrations: readonly Migration[]): string {
  const parts = [
    `-- Coffer schema for ${d}. Generated from the migrations by \`coffer schema --write\`; do not edit.`,
    `-- bootstrap: migration history\n${createTableSteps(d, historyTable, { ifNotExists: true }).map((s) => `${s.sql};`).join('\n')}`,
  ];
  for (const m of migrations) parts.push(`-- ${migrationId(m)} (${m.file})\n${migrationSteps(d, m).map((s) => `${s.sql};`).join('\n')}`);
  return `${parts.join('\n\n')}\n`;
}

export function snapshotPath(dir: string, d: Dialect): string {
  return join(dir, `${d}.sql`);
}

/** Writes every dialect's snapshot; returns the files written. */
export function writeSnapshots(dir: string, migrations: readonly Migration[]): string[] {
  mkdirSync(dir, { recursive: true });
  return DIALECTS.map((d) => {
    const p = snapshotPath(dir, d);
    writeFileSync(p, snapshotSql(d, migrations));
    return p;
  });
}

/** The snapshot files that differ from what the migrations generate now. */
export function staleSnapshots(dir: string, migrations: readonly Migration[]): string[] {
  return DIALECTS.filter((d) => {
    const p = snapshotPath(dir, d);
    return !existsSync(p) || readFileSync(p, 'utf8') !== snapshotSql(d, migrations);
  }).map((d) => snapshotPath(dir, d));
}
