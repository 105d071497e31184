// Every domain's migrations, in the order they were written. New migrations are appended;
// landed ones are never edited (the checksum check refuses an edited one) nor reordered within
// their domain (the runner refuses versions out of order). Order across domains is free as long
// as each migration comes after the tables it references (the runner checks that); backups do
// not depend on it, as a logical backup restores in the table order it was written in.
import type { Migration } from '../migrations/migration.js';
import chain0001 from './chain/0001_undo_journal.js';
import chain0002 from './chain/0002_init.js';
import core0001 from './core/0001_init.js';
import identity0001 from './identity/0001_init.js';
import audit0001 from './audit/0001_init.js';
import tokens0001 from './tokens/0001_init.js';
import identity0002 from './identity/0002_key_listing.js';
import tokens0002 from './tokens/0002_holder_pages.js';

// prettier-ignore
export const MIGRATIONS: readonly Migration[] = [
  core0001,
  chain0001,
  chain0002,
  identity0001,
  audit0001,
  tokens0001,
  identity0002,
  tokens0002,
];
