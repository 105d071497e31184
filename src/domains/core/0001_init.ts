// core/0001_init: instance-wide metadata (instance id, creation time, settings that must
// travel with the database, such as the active encryption key id).
import { c, createTable } from '../../schema/builder.js';
import { defineMigration } from '../../migrations/migration.js';

export default defineMigration(import.meta.url, {
  domain: 'core',
  version: 1,
  name: 'init',
  ops: [
    createTable('coffer_meta', {
      domain: 'core',
      columns: {
        meta_key: c.varchar(128),
        meta_value: c.text(),
        updated_at: c.timestamp(),
      },
      primaryKey: ['meta_key'],
    }),
  ],
});
