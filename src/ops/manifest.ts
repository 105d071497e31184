// The manifest of a backup: which Coffer and which migrations made it, and every table's
// columns, row count and content checksum (rows.ts), plus the backup file's size and SHA-256.
// It sits beside the backup as FILE.manifest.json (and at the end of a logical backup), and a
// restore verifies the restored database against it.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { ConfigError } from '../db/errors.js';
import type { Migration } from '../migrations/migration.js';
import { dataTables, schemaOfHistory, type AppliedMigration, type LiveSchema } from './db.js';
import { fileError } from './errors.js';
import type { TablePlan } from './transfer.js';

export type BackupKind = 'logical' | 'sqlite' | 'pg_dump' | 'mysqldump';

export interface ManifestTable {
  name: string;
  columns: string[];
  rows: number;
  checksum: string;
  /** Next value of the table's serial column at backup time, when it has one. */
  serialNext: string | null;
}

export interface Manifest {
  format: 'coffer-manifest';
  version: 1;
  /** Random id of this backup (a resumed restore recognises its source by it). */
  id: string;
  kind: BackupKind;
  coffer: string;
  createdAt: string;
  source: { backend: string; server: string; describe: string };
  migrations: AppliedMigration[];
  tables: ManifestTable[];
  /** The backup file this manifest describes (sidecar only). */
  file?: { name: string; bytes: number; sha256: string };
}

export const COFFER_VERSION: string = (() => {
  try {
    return String(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version ?? '0.0.0');
  } catch {
    return '0.0.0';
  }
})();

export const newBackupId = (): string => randomUUID();

export function manifestPath(file: string): string {
  return `${file}.manifest.json`;
}

export function validateManifest(x: unknown, where: string): Manifest {
  const m = x as Partial<Manifest> | null;
  if (
    !m ||
    m.format !== 'coffer-manifest' ||
    m.version !== 1 ||
    !Array.isArray(m.tables) ||
    !Array.isArray(m.migrations) ||
    typeof m.id !== 'string'
  ) {
    throw new ConfigError(`${where} is not a Coffer backup manifest (format coffer-manifest, version 1)`, { path: where });
  }
  return m as Manifest;
}

/** The sidecar manifest of a backup file, or null when there is none. */
export function readManifestFile(file: string): Manifest | null {
  const p = manifestPath(file);
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return null;
    throw fileError(e, 'cannot read', p);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(`${p} is not valid JSON (damaged manifest)`, { path: p });
  }
  return validateManifest(parsed, p);
}

/** Size and SHA-256 of a file, streamed. */
export async function fileDigest(path: string): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(path)) {
      h.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch (e) {
    throw fileError(e, 'cannot read', path);
  }
  return { bytes, sha256: h.digest('hex') };
}

/**
 * The schema a backup was taken with (from its migration history, which must be known to this
 * build) and the tables to restore, each with the columns the backup holds.
 */
export function plansFromManifest(
  manifest: Pick<Manifest, 'migrations' | 'tables'>,
  migrations: readonly Migration[],
  where: string,
): { live: LiveSchema; plans: TablePlan[] } {
  const live = schemaOfHistory(migrations, manifest.migrations, where);
  const byName = new Map(manifest.tables.map((t) => [t.name, t]));
  const plans: TablePlan[] = [];
  for (const table of dataTables(live.schema)) {
    const mt = byName.get(table.name);
    if (!mt)
      throw new ConfigError(`${where} has no table ${table.name}, which its migration history creates (damaged backup?)`, { path: where });
    const columns = mt.columns.map((n) => {
      const c = table.columns.find((x) => x.name === n);
      if (!c)
        throw new ConfigError(`${where}: table ${table.name} has column ${n}, which its migration history does not define`, {
          path: where,
        });
      return c;
    });
    if (columns.length !== table.columns.length) {
      throw new ConfigError(
        `${where}: table ${table.name} has ${columns.length} columns, its migration history defines ${table.columns.length}`,
        { path: where },
      );
    }
    plans.push({ table, columns });
    byName.delete(table.name);
  }
  if (byName.size)
    throw new ConfigError(`${where} has table(s) ${[...byName.keys()].join(', ')} that its migration history does not create`, {
      path: where,
    });
  return { live, plans };
}
