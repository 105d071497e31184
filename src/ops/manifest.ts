// The manifest of a backup: which Coffer and which migrations made it, and every table's
// columns, row count and content checksum (rows.ts), plus the backup file's size and SHA-256.
// It sits beside the backup as FILE.manifest.json (and at the end of a logical backup), and a
// restore verifies the restored database against it.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { ConfigError } from '../db/errors.js';
import type { Migration } from '../migrations/migration.js';
import { dataTables, schemaOfHistory, type AppliedMigration, type LiveSchema } from './db.js';
import { fileError, InterruptedError, throwIfAborted } from './errors.js';
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
  file?: {
    name: string;
    bytes: number;
    sha256: string;
    /**
     * SQLite file backups: the SHA-256 with the header fields that merely opening the file may
     * rewrite zeroed (sqliteHeaderFree). Absent in manifests written before it existed.
     */
    sha256HeaderFree?: string;
  };
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

/**
 * Header bytes of a SQLite file that change when a program opens it and switches it to WAL (as
 * Coffer does on every open, even for `coffer stats`), without any row changing: the file
 * format read/write versions (18–19: 1 rollback journal, 2 WAL), the file change counter
 * (24–27) and the version-valid-for number (92–95). Any real write changes other bytes too.
 */
const SQLITE_OPEN_FIELDS: readonly [number, number][] = [
  [18, 2],
  [24, 4],
  [92, 4],
];

/** A SQLite header with the fields an open may rewrite zeroed. */
export function sqliteHeaderFree(header: Buffer): Buffer {
  const h = Buffer.from(header);
  for (const [at, n] of SQLITE_OPEN_FIELDS) h.fill(0, at, Math.min(at + n, h.length));
  return h;
}

/**
 * The header a rollback-journal SQLite file (as backups are written) had before one open
 * switched it to WAL: versions 1/1 and both counters one lower. Only for manifests written
 * without sha256HeaderFree; null when the header does not show exactly that switch.
 */
export function sqliteHeaderBeforeWal(header: Buffer): Buffer | null {
  if (header.length < 100 || header[18] !== 2 || header[19] !== 2) return null;
  const h = Buffer.from(header);
  h[18] = 1;
  h[19] = 1;
  for (const at of [24, 92]) {
    const n = h.readUInt32BE(at);
    if (n === 0) return null;
    h.writeUInt32BE(n - 1, at);
  }
  return h;
}

export interface FileDigest {
  bytes: number;
  sha256: string;
  /** SHA-256 with the first 100 bytes replaced by each variant's header (SQLite files), by name. */
  variants: Record<string, string | null>;
}

/**
 * Size and SHA-256 of a file, streamed; `variants` also hash it with its header rewritten. An
 * aborted `signal` stops the read (InterruptedError).
 */
export async function fileDigest(
  path: string,
  variants: Record<string, (header: Buffer) => Buffer | null> = {},
  signal?: AbortSignal,
): Promise<FileDigest> {
  const h = createHash('sha256');
  const vh = new Map<string, ReturnType<typeof createHash> | null>();
  let bytes = 0;
  let first = true;
  try {
    for await (const c of createReadStream(path)) {
      throwIfAborted(signal, () => `interrupted while reading ${path}`);
      const chunk = c as Buffer;
      h.update(chunk);
      if (first) {
        // A read stream's first chunk is 64 KiB, or the whole file: the header is in it.
        first = false;
        for (const [name, rewrite] of Object.entries(variants)) {
          const head = chunk.length >= 100 ? rewrite(chunk.subarray(0, 100)) : null;
          vh.set(name, head ? createHash('sha256').update(head).update(chunk.subarray(100)) : null);
        }
      } else for (const x of vh.values()) x?.update(chunk);
      bytes += chunk.length;
    }
  } catch (e) {
    throw e instanceof InterruptedError ? e : fileError(e, 'cannot read', path);
  }
  const out: Record<string, string | null> = {};
  for (const name of Object.keys(variants)) out[name] = vh.get(name)?.digest('hex') ?? null;
  return { bytes, sha256: h.digest('hex'), variants: out };
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
