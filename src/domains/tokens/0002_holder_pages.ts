// tokens/0002_holder_pages: the orders an address's balances and a holder's ledger page in, as
// indexes, so a page starts at the last row seen instead of sorting everything that address or
// holder has. Each new index has the old one as its prefix, so the old one is dropped (after the
// new one exists: MySQL keeps an index a foreign key needs until another one covers it).
import { createIndex } from '../../schema/builder.js';
import { defineMigration } from '../../migrations/migration.js';

export default defineMigration(import.meta.url, {
  domain: 'tokens',
  version: 2,
  name: 'holder_pages',
  ops: [
    createIndex('token_balances', 'ix_token_balances_address_mint', ['address', 'mint_hash']),
    { op: 'dropIndex', table: 'token_balances', name: 'ix_token_balances_address' },
    createIndex('token_ledger', 'ix_token_ledger_holder_pages', ['mint_hash', 'address', 'block_height', 'cause_kind', 'cause_ref']),
    { op: 'dropIndex', table: 'token_ledger', name: 'ix_token_ledger_holder' },
  ],
});
