// The one place every table of the logical schema is classified: how its changes are kept
// (row history, append-only, derived from the chain, or exempt with a stated reason) and which
// of its columns hold secrets. Redaction in the audit log and row history, and `coffer secrets
// rotate`, read secret columns from here only, so they cannot drift apart. The test
// "every table of the logical schema is classified" fails when a migration adds a table that
// is not listed here: add its line (in your domain's block) when you add the table.

/** encrypted: an envelope ciphertext (src/secrets); hashed: a one-way hash of a credential. */
export type SecretKind = 'encrypted' | 'hashed';

export type TablePolicy =
  /** Business rows that change: every insert, update and delete goes through rowHistory(tx, actor). */
  | { kind: 'mutable'; secrets?: Readonly<Record<string, SecretKind>> }
  /** Rows are only ever inserted; the database refuses UPDATE and DELETE where `enforced` says so. */
  | { kind: 'append_only'; enforced: 'trigger' | 'code'; secrets?: Readonly<Record<string, SecretKind>> }
  /** Rows derived from chain data (journaled in chain_undo, reverted on a reorg): the chain is their history. */
  | { kind: 'derived'; secrets?: Readonly<Record<string, SecretKind>> }
  /** Not business data (journals, cursors, leases); the reason says why no history is kept. */
  | { kind: 'exempt'; reason: string; secrets?: Readonly<Record<string, SecretKind>> };

export const TABLE_POLICY: Readonly<Record<string, TablePolicy>> = {
  // core
  coffer_migrations: { kind: 'exempt', reason: 'migration journal, written only by the migrator under its lock' },
  coffer_meta: { kind: 'mutable' },

  // chain (classified by the audit domain from the chain migrations; the chain owner may tighten)
  chain_undo: { kind: 'exempt', reason: 'reorg undo journal: itself the before-images of derived rows, pruned at finality' },
  chain_chains: {
    kind: 'exempt',
    reason: 'chain registry written by the chain domain at setup; changes are recorded in the audit log by its owner',
  },
  chain_cursors: { kind: 'exempt', reason: 'sync cursor, advanced with every block' },
  chain_sync_health: { kind: 'exempt', reason: 'sync health gauge, overwritten on every poll' },
  chain_blocks: { kind: 'derived' },
  chain_transactions: { kind: 'derived' },
  chain_tx_outputs: { kind: 'derived' },
  chain_mempool: { kind: 'exempt', reason: 'mempool: transient, evicted by capacity and leases' },

  // tokens (classified by the audit domain from the comments of tokens/0001_init; the tokens owner should confirm)
  token_unconfirmed_mints: { kind: 'exempt', reason: 'unconfirmed submissions awaiting their anchoring transaction, pruned by retention' },
  token_unconfirmed_invoices: {
    kind: 'exempt',
    reason: 'unconfirmed submissions awaiting their anchoring transaction, pruned by retention',
  },
  token_sell_offers: { kind: 'exempt', reason: 'signed, content-addressed offers (the hash is the record); pruned by retention' },
  token_buy_offers: { kind: 'exempt', reason: 'signed, content-addressed offers (the hash is the record); pruned by retention' },
  token_invoice_signatures: { kind: 'exempt', reason: 'signatures over content-addressed invoices' },
  token_mints: { kind: 'derived' },
  token_invoices: { kind: 'derived' },
  token_ledger: { kind: 'derived' },
  token_balances: { kind: 'derived' },
  token_payments: { kind: 'derived' },
  token_onchain_actions: { kind: 'derived' },
  token_reservations: { kind: 'exempt', reason: 'escrow reservations: NOT YET under row history (tokens domain to adopt rowHistory)' },

  // identity
  identity_users: { kind: 'mutable', secrets: { mfa_secret: 'encrypted' } },
  identity_roles: { kind: 'mutable' },
  identity_role_scopes: { kind: 'mutable' },
  identity_user_roles: { kind: 'mutable' },
  identity_sessions: { kind: 'mutable', secrets: { secret_hash: 'hashed' } },
  identity_integrations: { kind: 'mutable' },
  identity_api_keys: { kind: 'mutable', secrets: { secret_hash: 'hashed' } },
  identity_token_configs: { kind: 'mutable' },
  identity_tokens: { kind: 'mutable', secrets: { secret_hash: 'hashed' } },

  // audit
  audit_log: { kind: 'append_only', enforced: 'trigger' },
  audit_row_history: { kind: 'append_only', enforced: 'trigger' },
  audit_head: { kind: 'exempt', reason: 'pointer to the last audit entry, advanced with every entry and checked by `coffer audit verify`' },
};

export const REDACTED = '[redacted]';

/** The policy of a table, or undefined when it is not classified (a test refuses that). */
export function tablePolicy(table: string): TablePolicy | undefined {
  return Object.prototype.hasOwnProperty.call(TABLE_POLICY, table) ? TABLE_POLICY[table] : undefined;
}

export function secretColumns(table: string): Readonly<Record<string, SecretKind>> {
  return tablePolicy(table)?.secrets ?? {};
}

/** Every encrypted column of every table: what `coffer secrets rotate` walks. */
export function encryptedColumns(): { table: string; column: string }[] {
  const out: { table: string; column: string }[] = [];
  for (const [table, p] of Object.entries(TABLE_POLICY)) {
    for (const [column, kind] of Object.entries(p.secrets ?? {})) if (kind === 'encrypted') out.push({ table, column });
  }
  return out;
}

export function isMutable(table: string): boolean {
  return tablePolicy(table)?.kind === 'mutable';
}

/** Key names treated as secret wherever they appear in free-form audit details (a safety net). */
const SECRET_KEY = /(secret|password|passphrase|private_?key|preimage|mnemonic|seed|token_?value|api_?key_?value|credential)/i;

/** A row image with its secret columns replaced by "[redacted]" (null stays null). */
export function redactRow<T extends Record<string, unknown> | null | undefined>(table: string, row: T): T {
  if (!row) return row;
  const secrets = secretColumns(table);
  const out: Record<string, unknown> = { ...row };
  for (const col of Object.keys(secrets)) if (out[col] !== null && out[col] !== undefined) out[col] = REDACTED;
  return out as T;
}

/** Redacts, at any depth, values under keys that look like secrets. */
export function redactDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactDeep);
  if (value && typeof value === 'object' && !(value instanceof Date) && !(value instanceof Uint8Array)) {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [
        k,
        SECRET_KEY.test(k) && v !== null && v !== undefined ? REDACTED : redactDeep(v),
      ]),
    );
  }
  return value;
}
