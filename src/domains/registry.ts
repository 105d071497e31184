// Every domain's migrations, in the order they were written. New migrations are appended;
// landed ones are never edited or reordered (the checksum check enforces it).
import type { Migration } from '../migrations/migration.js';
import chain0001 from './chain/0001_undo_journal.js';
import core0001 from './core/0001_init.js';

export const MIGRATIONS: readonly Migration[] = [
  core0001,
  chain0001,
];
