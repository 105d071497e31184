// Operator commands read a database that exists. Opening a SQLite path creates the file (and
// its folder), so a typo in --db used to give an empty new database: stats said 0 rows, backup
// failed on a missing table, doctor reported schema drift. It is a configuration error instead.
import { existsSync } from 'node:fs';
import type { CofferConfig } from '../config/config.js';
import { ConfigError } from '../db/errors.js';
import { parseDatabaseUrl } from '../db/url.js';

export function requireExistingDatabase(config: CofferConfig, flag = '--db'): void {
  const t = parseDatabaseUrl(config.database.url);
  if (t.backend === 'sqlite' && !t.memory && !existsSync(t.path)) {
    throw new ConfigError(`no database at ${t.path} (${flag}): check the path; \`coffer migrate\` creates a new database`, {
      field: 'database.url',
    });
  }
}
