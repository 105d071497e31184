// identity/0002_key_listing: the order keys.list pages in (integration, creation time, id), as
// an index, so a page starts at the last key seen instead of sorting every key again.
import { createIndex } from '../../schema/builder.js';
import { defineMigration } from '../../migrations/migration.js';

export default defineMigration(import.meta.url, {
  domain: 'identity',
  version: 2,
  name: 'key_listing',
  ops: [createIndex('identity_api_keys', 'ix_identity_api_keys_listing', ['integration_id', 'created_at', 'id'])],
});
