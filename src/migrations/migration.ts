// A migration: forward-only, versioned per domain, written once as logical operations and
// compiled to every dialect. Its checksum covers the operations, so editing a landed
// migration is detected on every open.
import { fileURLToPath } from 'node:url';
import { relative } from 'node:path';
import { canonicalJson, sha256Hex } from '../util/canonical-json.js';
import type { Operation } from '../schema/model.js';

export interface Migration {
  domain: string;
  version: number;
  name: string;
  /** Source file, relative to the package root, named in error messages. */
  file: string;
  ops: readonly Operation[];
}

const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function defineMigration(moduleUrl: string, m: Omit<Migration, 'file'>): Migration {
  if (!/^[a-z][a-z0-9_]*$/.test(m.domain)) throw new Error(`migration domain "${m.domain}" must be snake_case`);
  if (!Number.isInteger(m.version) || m.version < 1)
    throw new Error(`migration ${m.domain}/${m.version}: version must be a positive integer`);
  if (!/^[a-z0-9_]+$/.test(m.name)) throw new Error(`migration ${m.domain}/${m.version}: name must be snake_case`);
  const path = moduleUrl.startsWith('file:') ? fileURLToPath(moduleUrl) : moduleUrl;
  return { ...m, file: relative(PACKAGE_ROOT, path) };
}

/** "chain/0001_init" */
export function migrationId(m: Pick<Migration, 'domain' | 'version' | 'name'>): string {
  return `${m.domain}/${String(m.version).padStart(4, '0')}_${m.name}`;
}

/** SHA-256 of the canonical JSON of what the migration does (not of its comments). */
export function migrationChecksum(m: Migration): string {
  return sha256Hex(canonicalJson({ domain: m.domain, version: m.version, name: m.name, ops: m.ops as never }));
}
