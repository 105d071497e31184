-- Coffer schema for sqlite. Generated from the migrations by `coffer schema --write`; do not edit.

-- bootstrap: migration history
CREATE TABLE IF NOT EXISTS "coffer_migrations" (
  "domain" TEXT NOT NULL,
  "version" INTEGER NOT NULL,
  "name" TEXT NOT NULL,
  "checksum" TEXT NOT NULL,
  "state" TEXT NOT NULL,
  "steps_done" INTEGER NOT NULL DEFAULT 0,
  "applied_at" INTEGER NOT NULL,
  "duration_ms" INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY ("domain", "version"),
  CONSTRAINT "ck_coffer_migrations_domain_len" CHECK (length("domain") <= 64),
  CONSTRAINT "ck_coffer_migrations_version_int" CHECK ("version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_coffer_migrations_name_len" CHECK (length("name") <= 200),
  CONSTRAINT "ck_coffer_migrations_checksum_hex" CHECK ("checksum" NOT GLOB '*[^0-9a-f]*' AND length("checksum") = 64),
  CONSTRAINT "ck_coffer_migrations_state_enum" CHECK ("state" IN ('applied', 'running')),
  CONSTRAINT "ck_coffer_migrations_steps_done_int" CHECK ("steps_done" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_coffer_migrations_duration_ms_int" CHECK ("duration_ms" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_coffer_migrations_version" CHECK (version > 0)
) STRICT;

-- core/0001_init (src/domains/core/0001_init.ts)
CREATE TABLE "coffer_meta" (
  "meta_key" TEXT NOT NULL,
  "meta_value" TEXT NOT NULL,
  "updated_at" INTEGER NOT NULL,
  PRIMARY KEY ("meta_key"),
  CONSTRAINT "ck_coffer_meta_meta_key_len" CHECK (length("meta_key") <= 128)
) STRICT;

-- chain/0001_undo_journal (src/domains/chain/0001_undo_journal.ts)
CREATE TABLE "chain_undo" (
  "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  "chain_id" TEXT NOT NULL,
  "height" INTEGER NOT NULL,
  "block_hash" TEXT NOT NULL,
  "table_name" TEXT NOT NULL,
  "row_key" TEXT NOT NULL,
  "before_image" TEXT,
  CONSTRAINT "ck_chain_undo_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_chain_undo_block_hash_hex" CHECK ("block_hash" NOT GLOB '*[^0-9a-f]*' AND length("block_hash") = 64),
  CONSTRAINT "ck_chain_undo_table_name_len" CHECK (length("table_name") <= 63),
  CONSTRAINT "ck_chain_undo_row_key_json" CHECK (json_valid("row_key")),
  CONSTRAINT "ck_chain_undo_before_image_json" CHECK (json_valid("before_image")),
  CONSTRAINT "ck_chain_undo_height" CHECK (height >= 0)
) STRICT;
CREATE INDEX "ix_chain_undo_chain_height" ON "chain_undo" ("chain_id", "height");

-- chain/0002_init (src/domains/chain/0002_init.ts)
CREATE TABLE "chain_chains" (
  "chain_id" TEXT NOT NULL,
  "name" TEXT NOT NULL,
  "network" TEXT NOT NULL,
  "confirmations" INTEGER NOT NULL,
  "mempool_capacity" INTEGER NOT NULL,
  "created_at" INTEGER NOT NULL,
  PRIMARY KEY ("chain_id"),
  CONSTRAINT "ck_chain_chains_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_chain_chains_name_len" CHECK (length("name") <= 128),
  CONSTRAINT "ck_chain_chains_network_len" CHECK (length("network") <= 64),
  CONSTRAINT "ck_chain_chains_confirmations_int" CHECK ("confirmations" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_chain_chains_mempool_capacity_int" CHECK ("mempool_capacity" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_chain_chains_confirmations" CHECK (confirmations >= 1),
  CONSTRAINT "ck_chain_chains_mempool_capacity" CHECK (mempool_capacity >= 1)
) STRICT;
CREATE TABLE "chain_cursors" (
  "chain_id" TEXT NOT NULL,
  "height" INTEGER,
  "block_hash" TEXT,
  "waiting_for_next_hash" INTEGER NOT NULL DEFAULT 0,
  "finalized_height" INTEGER,
  PRIMARY KEY ("chain_id"),
  CONSTRAINT "fk_chain_cursors_chain" FOREIGN KEY ("chain_id") REFERENCES "chain_chains" ("chain_id"),
  CONSTRAINT "ck_chain_cursors_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_chain_cursors_block_hash_hex" CHECK ("block_hash" NOT GLOB '*[^0-9a-f]*' AND length("block_hash") = 64),
  CONSTRAINT "ck_chain_cursors_waiting_for_next_hash_bool" CHECK ("waiting_for_next_hash" IN (0, 1)),
  CONSTRAINT "ck_chain_cursors_height" CHECK (height >= 0),
  CONSTRAINT "ck_chain_cursors_tip" CHECK ((height IS NULL AND block_hash IS NULL) OR (height IS NOT NULL AND block_hash IS NOT NULL)),
  CONSTRAINT "ck_chain_cursors_finalized" CHECK (finalized_height >= 0)
) STRICT;
CREATE TABLE "chain_sync_health" (
  "chain_id" TEXT NOT NULL,
  "current_height" INTEGER,
  "latest_height" INTEGER,
  "lag" INTEGER,
  "updated_at" INTEGER NOT NULL,
  PRIMARY KEY ("chain_id"),
  CONSTRAINT "fk_chain_sync_health_chain" FOREIGN KEY ("chain_id") REFERENCES "chain_chains" ("chain_id"),
  CONSTRAINT "ck_chain_sync_health_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_chain_sync_health_current" CHECK (current_height >= 0),
  CONSTRAINT "ck_chain_sync_health_latest" CHECK (latest_height >= 0),
  CONSTRAINT "ck_chain_sync_health_lag" CHECK (lag >= 0)
) STRICT;
CREATE TABLE "chain_blocks" (
  "chain_id" TEXT NOT NULL,
  "height" INTEGER NOT NULL,
  "hash" TEXT NOT NULL,
  "parent_hash" TEXT NOT NULL,
  "block_time" INTEGER NOT NULL,
  "tx_count" INTEGER NOT NULL,
  PRIMARY KEY ("chain_id", "height"),
  CONSTRAINT "fk_chain_blocks_chain" FOREIGN KEY ("chain_id") REFERENCES "chain_chains" ("chain_id"),
  CONSTRAINT "ck_chain_blocks_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_chain_blocks_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_chain_blocks_parent_hash_hex" CHECK ("parent_hash" NOT GLOB '*[^0-9a-f]*' AND length("parent_hash") = 64),
  CONSTRAINT "ck_chain_blocks_tx_count_int" CHECK ("tx_count" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_chain_blocks_height" CHECK (height >= 0),
  CONSTRAINT "ck_chain_blocks_tx_count" CHECK (tx_count >= 0)
) STRICT;
CREATE UNIQUE INDEX "uq_chain_blocks_hash" ON "chain_blocks" ("chain_id", "hash");
CREATE TABLE "chain_transactions" (
  "chain_id" TEXT NOT NULL,
  "tx_hash" TEXT NOT NULL,
  "block_height" INTEGER NOT NULL,
  "block_hash" TEXT NOT NULL,
  "index_in_block" INTEGER NOT NULL,
  "action_type" TEXT,
  "action_version" INTEGER,
  "payload" BLOB,
  "address" TEXT,
  PRIMARY KEY ("chain_id", "tx_hash"),
  CONSTRAINT "fk_chain_transactions_block" FOREIGN KEY ("chain_id", "block_height") REFERENCES "chain_blocks" ("chain_id", "height"),
  CONSTRAINT "ck_chain_transactions_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_chain_transactions_tx_hash_hex" CHECK ("tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("tx_hash") = 64),
  CONSTRAINT "ck_chain_transactions_block_hash_hex" CHECK ("block_hash" NOT GLOB '*[^0-9a-f]*' AND length("block_hash") = 64),
  CONSTRAINT "ck_chain_transactions_index_in_block_int" CHECK ("index_in_block" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_chain_transactions_action_type_len" CHECK (length("action_type") <= 32),
  CONSTRAINT "ck_chain_transactions_action_version_int" CHECK ("action_version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_chain_transactions_address_len" CHECK (length("address") <= 128),
  CONSTRAINT "ck_chain_transactions_index" CHECK (index_in_block >= 0),
  CONSTRAINT "ck_chain_transactions_action_version" CHECK (action_version >= 0)
) STRICT;
CREATE UNIQUE INDEX "uq_chain_transactions_position" ON "chain_transactions" ("chain_id", "block_height", "index_in_block");
CREATE INDEX "ix_chain_transactions_address" ON "chain_transactions" ("chain_id", "address", "block_height", "index_in_block");
CREATE TABLE "chain_tx_outputs" (
  "chain_id" TEXT NOT NULL,
  "tx_hash" TEXT NOT NULL,
  "address" TEXT NOT NULL,
  "value" TEXT NOT NULL,
  "block_height" INTEGER NOT NULL,
  "index_in_block" INTEGER NOT NULL,
  PRIMARY KEY ("chain_id", "tx_hash", "address"),
  CONSTRAINT "fk_chain_tx_outputs_tx" FOREIGN KEY ("chain_id", "tx_hash") REFERENCES "chain_transactions" ("chain_id", "tx_hash"),
  CONSTRAINT "ck_chain_tx_outputs_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_chain_tx_outputs_tx_hash_hex" CHECK ("tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("tx_hash") = 64),
  CONSTRAINT "ck_chain_tx_outputs_address_len" CHECK (length("address") <= 128),
  CONSTRAINT "ck_chain_tx_outputs_value_u256" CHECK (length("value") BETWEEN 1 AND 78 AND "value" NOT GLOB '*[^0-9]*' AND ("value" = '0' OR substr("value", 1, 1) <> '0')),
  CONSTRAINT "ck_chain_tx_outputs_index_in_block_int" CHECK ("index_in_block" BETWEEN -2147483648 AND 2147483647)
) STRICT;
CREATE INDEX "ix_chain_tx_outputs_address" ON "chain_tx_outputs" ("chain_id", "address", "block_height", "index_in_block");
CREATE TABLE "chain_mempool" (
  "chain_id" TEXT NOT NULL,
  "tx_hash" TEXT NOT NULL,
  "content" BLOB NOT NULL,
  "fee" INTEGER NOT NULL,
  "size_bytes" INTEGER NOT NULL,
  "received_at" INTEGER NOT NULL,
  "claimed_by" TEXT,
  "claim_expires_at" INTEGER,
  PRIMARY KEY ("chain_id", "tx_hash"),
  CONSTRAINT "fk_chain_mempool_chain" FOREIGN KEY ("chain_id") REFERENCES "chain_chains" ("chain_id"),
  CONSTRAINT "ck_chain_mempool_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_chain_mempool_tx_hash_hex" CHECK ("tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("tx_hash") = 64),
  CONSTRAINT "ck_chain_mempool_size_bytes_int" CHECK ("size_bytes" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_chain_mempool_claimed_by_len" CHECK (length("claimed_by") <= 128),
  CONSTRAINT "ck_chain_mempool_fee" CHECK (fee >= 0),
  CONSTRAINT "ck_chain_mempool_size" CHECK (size_bytes >= 0),
  CONSTRAINT "ck_chain_mempool_claim" CHECK ((claimed_by IS NULL AND claim_expires_at IS NULL) OR (claimed_by IS NOT NULL AND claim_expires_at IS NOT NULL))
) STRICT;
CREATE INDEX "ix_chain_mempool_fee" ON "chain_mempool" ("chain_id", "fee", "received_at");

-- identity/0001_init (src/domains/identity/0001_init.ts)
CREATE TABLE "identity_users" (
  "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  "username" TEXT NOT NULL,
  "display_name" TEXT,
  "status" TEXT NOT NULL DEFAULT 'active',
  "mfa_secret" TEXT,
  "version" INTEGER NOT NULL DEFAULT 1,
  "created_at" INTEGER NOT NULL,
  "updated_at" INTEGER NOT NULL,
  CONSTRAINT "ck_identity_users_username_len" CHECK (length("username") <= 128),
  CONSTRAINT "ck_identity_users_display_name_len" CHECK (length("display_name") <= 256),
  CONSTRAINT "ck_identity_users_status_enum" CHECK ("status" IN ('active', 'disabled')),
  CONSTRAINT "ck_identity_users_version_int" CHECK ("version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_users_version" CHECK (version >= 1)
) STRICT;
CREATE UNIQUE INDEX "uq_identity_users_username" ON "identity_users" ("username");
CREATE TABLE "identity_roles" (
  "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  "name" TEXT NOT NULL,
  "description" TEXT,
  "version" INTEGER NOT NULL DEFAULT 1,
  "created_at" INTEGER NOT NULL,
  "updated_at" INTEGER NOT NULL,
  CONSTRAINT "ck_identity_roles_name_len" CHECK (length("name") <= 64),
  CONSTRAINT "ck_identity_roles_description_len" CHECK (length("description") <= 512),
  CONSTRAINT "ck_identity_roles_version_int" CHECK ("version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_roles_version" CHECK (version >= 1)
) STRICT;
CREATE UNIQUE INDEX "uq_identity_roles_name" ON "identity_roles" ("name");
CREATE TABLE "identity_role_scopes" (
  "role_id" INTEGER NOT NULL,
  "scope_domain" TEXT NOT NULL,
  "level" TEXT NOT NULL,
  PRIMARY KEY ("role_id", "scope_domain"),
  CONSTRAINT "fk_identity_role_scopes_role" FOREIGN KEY ("role_id") REFERENCES "identity_roles" ("id"),
  CONSTRAINT "ck_identity_role_scopes_scope_domain_len" CHECK (length("scope_domain") <= 64),
  CONSTRAINT "ck_identity_role_scopes_level_enum" CHECK ("level" IN ('read', 'write', 'admin'))
) STRICT;
CREATE TABLE "identity_user_roles" (
  "user_id" INTEGER NOT NULL,
  "role_id" INTEGER NOT NULL,
  "created_at" INTEGER NOT NULL,
  PRIMARY KEY ("user_id", "role_id"),
  CONSTRAINT "fk_identity_user_roles_user" FOREIGN KEY ("user_id") REFERENCES "identity_users" ("id"),
  CONSTRAINT "fk_identity_user_roles_role" FOREIGN KEY ("role_id") REFERENCES "identity_roles" ("id")
) STRICT;
CREATE INDEX "ix_identity_user_roles_role" ON "identity_user_roles" ("role_id");
CREATE TABLE "identity_sessions" (
  "id" TEXT NOT NULL,
  "user_id" INTEGER NOT NULL,
  "secret_hash" TEXT NOT NULL,
  "created_at" INTEGER NOT NULL,
  "expires_at" INTEGER NOT NULL,
  "revoked_at" INTEGER,
  "revoke_reason" TEXT,
  "version" INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY ("id"),
  CONSTRAINT "fk_identity_sessions_user" FOREIGN KEY ("user_id") REFERENCES "identity_users" ("id"),
  CONSTRAINT "ck_identity_sessions_id_hex" CHECK ("id" NOT GLOB '*[^0-9a-f]*' AND length("id") = 24),
  CONSTRAINT "ck_identity_sessions_secret_hash_hex" CHECK ("secret_hash" NOT GLOB '*[^0-9a-f]*' AND length("secret_hash") = 64),
  CONSTRAINT "ck_identity_sessions_revoke_reason_len" CHECK (length("revoke_reason") <= 256),
  CONSTRAINT "ck_identity_sessions_version_int" CHECK ("version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_sessions_expiry" CHECK (expires_at > created_at),
  CONSTRAINT "ck_identity_sessions_revoked" CHECK ((revoked_at IS NULL AND revoke_reason IS NULL) OR revoked_at IS NOT NULL)
) STRICT;
CREATE INDEX "ix_identity_sessions_user" ON "identity_sessions" ("user_id", "expires_at");
CREATE TABLE "identity_integrations" (
  "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  "name" TEXT NOT NULL,
  "live_name" TEXT,
  "version" INTEGER NOT NULL DEFAULT 1,
  "created_at" INTEGER NOT NULL,
  "updated_at" INTEGER NOT NULL,
  "deleted_at" INTEGER,
  CONSTRAINT "ck_identity_integrations_name_len" CHECK (length("name") <= 128),
  CONSTRAINT "ck_identity_integrations_live_name_len" CHECK (length("live_name") <= 128),
  CONSTRAINT "ck_identity_integrations_version_int" CHECK ("version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_integrations_live_name" CHECK ((deleted_at IS NULL AND live_name IS NOT NULL AND live_name = name) OR (deleted_at IS NOT NULL AND live_name IS NULL)),
  CONSTRAINT "ck_identity_integrations_version" CHECK (version >= 1)
) STRICT;
CREATE UNIQUE INDEX "uq_identity_integrations_live_name" ON "identity_integrations" ("live_name");
CREATE TABLE "identity_api_keys" (
  "id" TEXT NOT NULL,
  "integration_id" INTEGER NOT NULL,
  "name" TEXT NOT NULL,
  "live_name" TEXT,
  "secret_hash" TEXT NOT NULL,
  "scopes" TEXT NOT NULL,
  "ip_allow" TEXT NOT NULL,
  "expires_at" INTEGER NOT NULL,
  "version" INTEGER NOT NULL DEFAULT 1,
  "created_at" INTEGER NOT NULL,
  "updated_at" INTEGER NOT NULL,
  "deleted_at" INTEGER,
  PRIMARY KEY ("id"),
  CONSTRAINT "fk_identity_api_keys_integration" FOREIGN KEY ("integration_id") REFERENCES "identity_integrations" ("id"),
  CONSTRAINT "ck_identity_api_keys_id_hex" CHECK ("id" NOT GLOB '*[^0-9a-f]*' AND length("id") = 24),
  CONSTRAINT "ck_identity_api_keys_name_len" CHECK (length("name") <= 128),
  CONSTRAINT "ck_identity_api_keys_live_name_len" CHECK (length("live_name") <= 128),
  CONSTRAINT "ck_identity_api_keys_secret_hash_hex" CHECK ("secret_hash" NOT GLOB '*[^0-9a-f]*' AND length("secret_hash") = 64),
  CONSTRAINT "ck_identity_api_keys_scopes_json" CHECK (json_valid("scopes")),
  CONSTRAINT "ck_identity_api_keys_ip_allow_json" CHECK (json_valid("ip_allow")),
  CONSTRAINT "ck_identity_api_keys_version_int" CHECK ("version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_api_keys_live_name" CHECK ((deleted_at IS NULL AND live_name IS NOT NULL AND live_name = name) OR (deleted_at IS NOT NULL AND live_name IS NULL)),
  CONSTRAINT "ck_identity_api_keys_expiry" CHECK (expires_at > created_at),
  CONSTRAINT "ck_identity_api_keys_version" CHECK (version >= 1)
) STRICT;
CREATE UNIQUE INDEX "uq_identity_api_keys_live_name" ON "identity_api_keys" ("integration_id", "live_name");
CREATE TABLE "identity_token_configs" (
  "integration_id" INTEGER NOT NULL,
  "token_type" TEXT NOT NULL,
  "max_open" INTEGER NOT NULL,
  "lifetime_seconds" INTEGER NOT NULL,
  "version" INTEGER NOT NULL DEFAULT 1,
  "created_at" INTEGER NOT NULL,
  "updated_at" INTEGER NOT NULL,
  PRIMARY KEY ("integration_id", "token_type"),
  CONSTRAINT "fk_identity_token_configs_integration" FOREIGN KEY ("integration_id") REFERENCES "identity_integrations" ("id"),
  CONSTRAINT "ck_identity_token_configs_token_type_len" CHECK (length("token_type") <= 64),
  CONSTRAINT "ck_identity_token_configs_max_open_int" CHECK ("max_open" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_token_configs_lifetime_seconds_int" CHECK ("lifetime_seconds" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_token_configs_version_int" CHECK ("version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_token_configs_max_open" CHECK (max_open >= 0),
  CONSTRAINT "ck_identity_token_configs_lifetime" CHECK (lifetime_seconds >= 1),
  CONSTRAINT "ck_identity_token_configs_version" CHECK (version >= 1)
) STRICT;
CREATE TABLE "identity_tokens" (
  "id" TEXT NOT NULL,
  "integration_id" INTEGER NOT NULL,
  "token_type" TEXT NOT NULL,
  "secret_hash" TEXT NOT NULL,
  "status" TEXT NOT NULL DEFAULT 'unused',
  "expires_at" INTEGER NOT NULL,
  "used_at" INTEGER,
  "created_by" TEXT NOT NULL,
  "version" INTEGER NOT NULL DEFAULT 1,
  "created_at" INTEGER NOT NULL,
  "updated_at" INTEGER NOT NULL,
  PRIMARY KEY ("id"),
  CONSTRAINT "fk_identity_tokens_integration" FOREIGN KEY ("integration_id") REFERENCES "identity_integrations" ("id"),
  CONSTRAINT "ck_identity_tokens_id_hex" CHECK ("id" NOT GLOB '*[^0-9a-f]*' AND length("id") = 24),
  CONSTRAINT "ck_identity_tokens_token_type_len" CHECK (length("token_type") <= 64),
  CONSTRAINT "ck_identity_tokens_secret_hash_hex" CHECK ("secret_hash" NOT GLOB '*[^0-9a-f]*' AND length("secret_hash") = 64),
  CONSTRAINT "ck_identity_tokens_status_enum" CHECK ("status" IN ('unused', 'used', 'disabled', 'abused')),
  CONSTRAINT "ck_identity_tokens_created_by_len" CHECK (length("created_by") <= 160),
  CONSTRAINT "ck_identity_tokens_version_int" CHECK ("version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_identity_tokens_expiry" CHECK (expires_at > created_at),
  CONSTRAINT "ck_identity_tokens_used" CHECK ((status = 'unused' AND used_at IS NULL) OR (status = 'used' AND used_at IS NOT NULL) OR status IN ('disabled', 'abused')),
  CONSTRAINT "ck_identity_tokens_version" CHECK (version >= 1)
) STRICT;
CREATE INDEX "ix_identity_tokens_open" ON "identity_tokens" ("integration_id", "token_type", "status", "expires_at");

-- audit/0001_init (src/domains/audit/0001_init.ts)
CREATE TABLE "audit_log" (
  "seq" INTEGER NOT NULL,
  "at" INTEGER NOT NULL,
  "actor_type" TEXT NOT NULL,
  "actor_id" TEXT NOT NULL,
  "action" TEXT NOT NULL,
  "domain" TEXT NOT NULL,
  "entity" TEXT NOT NULL,
  "entity_id" TEXT NOT NULL,
  "change_set" TEXT,
  "prev_hash" TEXT NOT NULL,
  "hash" TEXT NOT NULL,
  PRIMARY KEY ("seq"),
  CONSTRAINT "ck_audit_log_actor_type_enum" CHECK ("actor_type" IN ('api_key', 'user', 'system')),
  CONSTRAINT "ck_audit_log_actor_id_len" CHECK (length("actor_id") <= 128),
  CONSTRAINT "ck_audit_log_action_len" CHECK (length("action") <= 128),
  CONSTRAINT "ck_audit_log_domain_len" CHECK (length("domain") <= 64),
  CONSTRAINT "ck_audit_log_entity_len" CHECK (length("entity") <= 64),
  CONSTRAINT "ck_audit_log_entity_id_len" CHECK (length("entity_id") <= 256),
  CONSTRAINT "ck_audit_log_change_set_json" CHECK (json_valid("change_set")),
  CONSTRAINT "ck_audit_log_prev_hash_hex" CHECK ("prev_hash" NOT GLOB '*[^0-9a-f]*' AND length("prev_hash") = 64),
  CONSTRAINT "ck_audit_log_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_audit_log_seq" CHECK (seq >= 1)
) STRICT;
CREATE UNIQUE INDEX "uq_audit_log_hash" ON "audit_log" ("hash");
CREATE INDEX "ix_audit_log_entity" ON "audit_log" ("domain", "entity", "entity_id", "seq");
CREATE TABLE "audit_head" (
  "id" INTEGER NOT NULL,
  "seq" INTEGER NOT NULL,
  "hash" TEXT NOT NULL,
  PRIMARY KEY ("id"),
  CONSTRAINT "ck_audit_head_id_int" CHECK ("id" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_audit_head_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_audit_head_single" CHECK (id = 1),
  CONSTRAINT "ck_audit_head_seq" CHECK (seq >= 0)
) STRICT;
CREATE TABLE "audit_row_history" (
  "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  "at" INTEGER NOT NULL,
  "table_name" TEXT NOT NULL,
  "row_key" TEXT NOT NULL,
  "op" TEXT NOT NULL,
  "before_image" TEXT,
  "after_image" TEXT,
  "actor_type" TEXT NOT NULL,
  "actor_id" TEXT NOT NULL,
  CONSTRAINT "ck_audit_row_history_table_name_len" CHECK (length("table_name") <= 63),
  CONSTRAINT "ck_audit_row_history_row_key_len" CHECK (length("row_key") <= 512),
  CONSTRAINT "ck_audit_row_history_op_enum" CHECK ("op" IN ('insert', 'update', 'delete')),
  CONSTRAINT "ck_audit_row_history_before_image_json" CHECK (json_valid("before_image")),
  CONSTRAINT "ck_audit_row_history_after_image_json" CHECK (json_valid("after_image")),
  CONSTRAINT "ck_audit_row_history_actor_type_enum" CHECK ("actor_type" IN ('api_key', 'user', 'system')),
  CONSTRAINT "ck_audit_row_history_actor_id_len" CHECK (length("actor_id") <= 128),
  CONSTRAINT "ck_audit_row_history_images" CHECK ((op = 'insert' AND before_image IS NULL AND after_image IS NOT NULL) OR (op = 'update' AND before_image IS NOT NULL AND after_image IS NOT NULL) OR (op = 'delete' AND before_image IS NOT NULL AND after_image IS NULL))
) STRICT;
CREATE INDEX "ix_audit_row_history_row" ON "audit_row_history" ("table_name", "row_key", "id");
INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TRIGGER "trg_audit_log_no_update" BEFORE UPDATE ON "audit_log" BEGIN SELECT RAISE(ABORT, 'CFA01: audit_log is append-only'); END;
CREATE TRIGGER "trg_audit_log_no_delete" BEFORE DELETE ON "audit_log" BEGIN SELECT RAISE(ABORT, 'CFA01: audit_log is append-only'); END;
CREATE TRIGGER "trg_audit_row_history_no_update" BEFORE UPDATE ON "audit_row_history" BEGIN SELECT RAISE(ABORT, 'CFA01: audit_row_history is append-only'); END;
CREATE TRIGGER "trg_audit_row_history_no_delete" BEFORE DELETE ON "audit_row_history" BEGIN SELECT RAISE(ABORT, 'CFA01: audit_row_history is append-only'); END;

-- tokens/0001_init (src/domains/tokens/0001_init.ts)
CREATE TABLE "token_unconfirmed_mints" (
  "hash" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "title" TEXT NOT NULL,
  "description" TEXT NOT NULL,
  "fraction_count" INTEGER NOT NULL,
  "tags" TEXT NOT NULL,
  "metadata" TEXT,
  "requirements" TEXT,
  "lockup_options" TEXT,
  "feed_url" TEXT,
  "public_key" TEXT NOT NULL,
  "contract_of_sale" TEXT,
  "signature_rule" TEXT NOT NULL,
  "min_signatures" INTEGER,
  "asset_managers" TEXT NOT NULL,
  "owner_address" TEXT NOT NULL,
  "received_at" INTEGER NOT NULL,
  PRIMARY KEY ("hash"),
  CONSTRAINT "ck_token_unconfirmed_mints_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_token_unconfirmed_mints_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_unconfirmed_mints_title_len" CHECK (length("title") <= 200),
  CONSTRAINT "ck_token_unconfirmed_mints_tags_json" CHECK (json_valid("tags")),
  CONSTRAINT "ck_token_unconfirmed_mints_metadata_json" CHECK (json_valid("metadata")),
  CONSTRAINT "ck_token_unconfirmed_mints_requirements_json" CHECK (json_valid("requirements")),
  CONSTRAINT "ck_token_unconfirmed_mints_lockup_options_json" CHECK (json_valid("lockup_options")),
  CONSTRAINT "ck_token_unconfirmed_mints_feed_url_len" CHECK (length("feed_url") <= 2048),
  CONSTRAINT "ck_token_unconfirmed_mints_public_key_hex" CHECK ("public_key" NOT GLOB '*[^0-9a-f]*' AND length("public_key") = 66),
  CONSTRAINT "ck_token_unconfirmed_mints_contract_of_sale_json" CHECK (json_valid("contract_of_sale")),
  CONSTRAINT "ck_token_unconfirmed_mints_signature_rule_enum" CHECK ("signature_rule" IN ('none', 'all', 'one', 'min')),
  CONSTRAINT "ck_token_unconfirmed_mints_min_signatures_int" CHECK ("min_signatures" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_token_unconfirmed_mints_asset_managers_json" CHECK (json_valid("asset_managers")),
  CONSTRAINT "ck_token_unconfirmed_mints_owner_address_len" CHECK (length("owner_address") <= 128),
  CONSTRAINT "ck_token_unconfirmed_mints_fraction_count" CHECK (fraction_count > 0),
  CONSTRAINT "ck_token_unconfirmed_mints_min_signatures" CHECK ((signature_rule = 'min' AND min_signatures >= 1) OR (signature_rule <> 'min' AND min_signatures IS NULL))
) STRICT;
CREATE INDEX "ix_token_unconfirmed_mints_age" ON "token_unconfirmed_mints" ("received_at", "hash");
CREATE INDEX "ix_token_unconfirmed_mints_chain" ON "token_unconfirmed_mints" ("chain_id");
CREATE TABLE "token_mints" (
  "hash" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "title" TEXT NOT NULL,
  "description" TEXT NOT NULL,
  "fraction_count" INTEGER NOT NULL,
  "tags" TEXT NOT NULL,
  "metadata" TEXT,
  "requirements" TEXT,
  "lockup_options" TEXT,
  "feed_url" TEXT,
  "public_key" TEXT NOT NULL,
  "contract_of_sale" TEXT,
  "signature_rule" TEXT NOT NULL,
  "min_signatures" INTEGER,
  "asset_managers" TEXT NOT NULL,
  "owner_address" TEXT NOT NULL,
  "received_at" INTEGER NOT NULL,
  "tx_hash" TEXT NOT NULL,
  "block_height" INTEGER NOT NULL,
  "block_hash" TEXT NOT NULL,
  "matched_height" INTEGER NOT NULL,
  "matched_block_hash" TEXT NOT NULL,
  "credited" INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY ("hash"),
  CONSTRAINT "ck_token_mints_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_token_mints_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_mints_title_len" CHECK (length("title") <= 200),
  CONSTRAINT "ck_token_mints_tags_json" CHECK (json_valid("tags")),
  CONSTRAINT "ck_token_mints_metadata_json" CHECK (json_valid("metadata")),
  CONSTRAINT "ck_token_mints_requirements_json" CHECK (json_valid("requirements")),
  CONSTRAINT "ck_token_mints_lockup_options_json" CHECK (json_valid("lockup_options")),
  CONSTRAINT "ck_token_mints_feed_url_len" CHECK (length("feed_url") <= 2048),
  CONSTRAINT "ck_token_mints_public_key_hex" CHECK ("public_key" NOT GLOB '*[^0-9a-f]*' AND length("public_key") = 66),
  CONSTRAINT "ck_token_mints_contract_of_sale_json" CHECK (json_valid("contract_of_sale")),
  CONSTRAINT "ck_token_mints_signature_rule_enum" CHECK ("signature_rule" IN ('none', 'all', 'one', 'min')),
  CONSTRAINT "ck_token_mints_min_signatures_int" CHECK ("min_signatures" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_token_mints_asset_managers_json" CHECK (json_valid("asset_managers")),
  CONSTRAINT "ck_token_mints_owner_address_len" CHECK (length("owner_address") <= 128),
  CONSTRAINT "ck_token_mints_tx_hash_hex" CHECK ("tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("tx_hash") = 64),
  CONSTRAINT "ck_token_mints_block_hash_hex" CHECK ("block_hash" NOT GLOB '*[^0-9a-f]*' AND length("block_hash") = 64),
  CONSTRAINT "ck_token_mints_matched_block_hash_hex" CHECK ("matched_block_hash" NOT GLOB '*[^0-9a-f]*' AND length("matched_block_hash") = 64),
  CONSTRAINT "ck_token_mints_credited_bool" CHECK ("credited" IN (0, 1)),
  CONSTRAINT "ck_token_mints_fraction_count" CHECK (fraction_count > 0),
  CONSTRAINT "ck_token_mints_min_signatures" CHECK ((signature_rule = 'min' AND min_signatures >= 1) OR (signature_rule <> 'min' AND min_signatures IS NULL)),
  CONSTRAINT "ck_token_mints_heights" CHECK (block_height >= 0 AND matched_height >= block_height)
) STRICT;
CREATE UNIQUE INDEX "uq_token_mints_tx" ON "token_mints" ("chain_id", "tx_hash");
CREATE INDEX "ix_token_mints_credit_due" ON "token_mints" ("chain_id", "credited", "matched_height");
CREATE INDEX "ix_token_mints_owner" ON "token_mints" ("owner_address");
CREATE TABLE "token_sell_offers" (
  "hash" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "mint_hash" TEXT NOT NULL,
  "offerer_address" TEXT NOT NULL,
  "quantity" INTEGER NOT NULL,
  "price" INTEGER NOT NULL,
  "price_unit" TEXT NOT NULL,
  "public_key" TEXT NOT NULL,
  "signature" TEXT NOT NULL,
  "created_at" INTEGER NOT NULL,
  PRIMARY KEY ("hash"),
  CONSTRAINT "ck_token_sell_offers_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_token_sell_offers_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_sell_offers_mint_hash_hex" CHECK ("mint_hash" NOT GLOB '*[^0-9a-f]*' AND length("mint_hash") = 64),
  CONSTRAINT "ck_token_sell_offers_offerer_address_len" CHECK (length("offerer_address") <= 128),
  CONSTRAINT "ck_token_sell_offers_price_unit_len" CHECK (length("price_unit") <= 16),
  CONSTRAINT "ck_token_sell_offers_public_key_hex" CHECK ("public_key" NOT GLOB '*[^0-9a-f]*' AND length("public_key") = 66),
  CONSTRAINT "ck_token_sell_offers_signature_hex" CHECK ("signature" NOT GLOB '*[^0-9a-f]*' AND length("signature") % 2 = 0 AND length("signature") <= 144),
  CONSTRAINT "ck_token_sell_offers_amounts" CHECK (quantity > 0 AND price > 0)
) STRICT;
CREATE INDEX "ix_token_sell_offers_mint" ON "token_sell_offers" ("mint_hash", "created_at", "hash");
CREATE TABLE "token_buy_offers" (
  "hash" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "mint_hash" TEXT NOT NULL,
  "offerer_address" TEXT NOT NULL,
  "quantity" INTEGER NOT NULL,
  "price" INTEGER NOT NULL,
  "price_unit" TEXT NOT NULL,
  "public_key" TEXT NOT NULL,
  "signature" TEXT NOT NULL,
  "created_at" INTEGER NOT NULL,
  "seller_address" TEXT NOT NULL,
  PRIMARY KEY ("hash"),
  CONSTRAINT "ck_token_buy_offers_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_token_buy_offers_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_buy_offers_mint_hash_hex" CHECK ("mint_hash" NOT GLOB '*[^0-9a-f]*' AND length("mint_hash") = 64),
  CONSTRAINT "ck_token_buy_offers_offerer_address_len" CHECK (length("offerer_address") <= 128),
  CONSTRAINT "ck_token_buy_offers_price_unit_len" CHECK (length("price_unit") <= 16),
  CONSTRAINT "ck_token_buy_offers_public_key_hex" CHECK ("public_key" NOT GLOB '*[^0-9a-f]*' AND length("public_key") = 66),
  CONSTRAINT "ck_token_buy_offers_signature_hex" CHECK ("signature" NOT GLOB '*[^0-9a-f]*' AND length("signature") % 2 = 0 AND length("signature") <= 144),
  CONSTRAINT "ck_token_buy_offers_seller_address_len" CHECK (length("seller_address") <= 128),
  CONSTRAINT "ck_token_buy_offers_amounts" CHECK (quantity > 0 AND price > 0)
) STRICT;
CREATE INDEX "ix_token_buy_offers_mint" ON "token_buy_offers" ("mint_hash", "created_at", "hash");
CREATE TABLE "token_unconfirmed_invoices" (
  "hash" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "mint_hash" TEXT NOT NULL,
  "seller_address" TEXT NOT NULL,
  "buyer_address" TEXT NOT NULL,
  "quantity" INTEGER NOT NULL,
  "price" INTEGER NOT NULL,
  "price_unit" TEXT NOT NULL,
  "total_price" INTEGER NOT NULL,
  "payment_address" TEXT NOT NULL,
  "public_key" TEXT NOT NULL,
  "signature" TEXT NOT NULL,
  "created_at" INTEGER NOT NULL,
  "received_at" INTEGER NOT NULL,
  PRIMARY KEY ("hash"),
  CONSTRAINT "ck_token_unconfirmed_invoices_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_token_unconfirmed_invoices_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_unconfirmed_invoices_mint_hash_hex" CHECK ("mint_hash" NOT GLOB '*[^0-9a-f]*' AND length("mint_hash") = 64),
  CONSTRAINT "ck_token_unconfirmed_invoices_seller_address_len" CHECK (length("seller_address") <= 128),
  CONSTRAINT "ck_token_unconfirmed_invoices_buyer_address_len" CHECK (length("buyer_address") <= 128),
  CONSTRAINT "ck_token_unconfirmed_invoices_price_unit_len" CHECK (length("price_unit") <= 16),
  CONSTRAINT "ck_token_unconfirmed_invoices_payment_address_len" CHECK (length("payment_address") <= 128),
  CONSTRAINT "ck_token_unconfirmed_invoices_public_key_hex" CHECK ("public_key" NOT GLOB '*[^0-9a-f]*' AND length("public_key") = 66),
  CONSTRAINT "ck_token_unconfirmed_invoices_signature_hex" CHECK ("signature" NOT GLOB '*[^0-9a-f]*' AND length("signature") % 2 = 0 AND length("signature") <= 144),
  CONSTRAINT "ck_token_unconfirmed_invoices_amounts" CHECK (quantity > 0 AND price > 0 AND total_price = quantity * price),
  CONSTRAINT "ck_token_unconfirmed_invoices_parties" CHECK (buyer_address <> seller_address)
) STRICT;
CREATE INDEX "ix_token_unconfirmed_invoices_age" ON "token_unconfirmed_invoices" ("received_at", "hash");
CREATE INDEX "ix_token_unconfirmed_invoices_mint" ON "token_unconfirmed_invoices" ("mint_hash");
CREATE INDEX "ix_token_unconfirmed_invoices_chain" ON "token_unconfirmed_invoices" ("chain_id");
CREATE TABLE "token_invoices" (
  "hash" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "mint_hash" TEXT NOT NULL,
  "seller_address" TEXT NOT NULL,
  "buyer_address" TEXT NOT NULL,
  "quantity" INTEGER NOT NULL,
  "price" INTEGER NOT NULL,
  "price_unit" TEXT NOT NULL,
  "total_price" INTEGER NOT NULL,
  "payment_address" TEXT NOT NULL,
  "public_key" TEXT NOT NULL,
  "signature" TEXT NOT NULL,
  "created_at" INTEGER NOT NULL,
  "received_at" INTEGER NOT NULL,
  "tx_hash" TEXT NOT NULL,
  "block_height" INTEGER NOT NULL,
  "block_hash" TEXT NOT NULL,
  "matched_height" INTEGER NOT NULL,
  "matched_block_hash" TEXT NOT NULL,
  "status" TEXT NOT NULL,
  "paid_tx_hash" TEXT,
  "paid_height" INTEGER,
  PRIMARY KEY ("hash"),
  CONSTRAINT "ck_token_invoices_hash_hex" CHECK ("hash" NOT GLOB '*[^0-9a-f]*' AND length("hash") = 64),
  CONSTRAINT "ck_token_invoices_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_invoices_mint_hash_hex" CHECK ("mint_hash" NOT GLOB '*[^0-9a-f]*' AND length("mint_hash") = 64),
  CONSTRAINT "ck_token_invoices_seller_address_len" CHECK (length("seller_address") <= 128),
  CONSTRAINT "ck_token_invoices_buyer_address_len" CHECK (length("buyer_address") <= 128),
  CONSTRAINT "ck_token_invoices_price_unit_len" CHECK (length("price_unit") <= 16),
  CONSTRAINT "ck_token_invoices_payment_address_len" CHECK (length("payment_address") <= 128),
  CONSTRAINT "ck_token_invoices_public_key_hex" CHECK ("public_key" NOT GLOB '*[^0-9a-f]*' AND length("public_key") = 66),
  CONSTRAINT "ck_token_invoices_signature_hex" CHECK ("signature" NOT GLOB '*[^0-9a-f]*' AND length("signature") % 2 = 0 AND length("signature") <= 144),
  CONSTRAINT "ck_token_invoices_tx_hash_hex" CHECK ("tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("tx_hash") = 64),
  CONSTRAINT "ck_token_invoices_block_hash_hex" CHECK ("block_hash" NOT GLOB '*[^0-9a-f]*' AND length("block_hash") = 64),
  CONSTRAINT "ck_token_invoices_matched_block_hash_hex" CHECK ("matched_block_hash" NOT GLOB '*[^0-9a-f]*' AND length("matched_block_hash") = 64),
  CONSTRAINT "ck_token_invoices_status_enum" CHECK ("status" IN ('matched', 'paid')),
  CONSTRAINT "ck_token_invoices_paid_tx_hash_hex" CHECK ("paid_tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("paid_tx_hash") = 64),
  CONSTRAINT "ck_token_invoices_amounts" CHECK (quantity > 0 AND price > 0 AND total_price = quantity * price),
  CONSTRAINT "ck_token_invoices_parties" CHECK (buyer_address <> seller_address)
) STRICT;
CREATE UNIQUE INDEX "uq_token_invoices_tx" ON "token_invoices" ("chain_id", "tx_hash");
CREATE INDEX "ix_token_invoices_chain_status" ON "token_invoices" ("chain_id", "status");
CREATE INDEX "ix_token_invoices_buyer" ON "token_invoices" ("buyer_address");
CREATE INDEX "ix_token_invoices_seller" ON "token_invoices" ("seller_address");
CREATE INDEX "ix_token_invoices_mint" ON "token_invoices" ("mint_hash");
CREATE TABLE "token_invoice_signatures" (
  "invoice_hash" TEXT NOT NULL,
  "public_key" TEXT NOT NULL,
  "signature" TEXT NOT NULL,
  "created_at" INTEGER NOT NULL,
  PRIMARY KEY ("invoice_hash", "public_key"),
  CONSTRAINT "ck_token_invoice_signatures_invoice_hash_hex" CHECK ("invoice_hash" NOT GLOB '*[^0-9a-f]*' AND length("invoice_hash") = 64),
  CONSTRAINT "ck_token_invoice_signatures_public_key_hex" CHECK ("public_key" NOT GLOB '*[^0-9a-f]*' AND length("public_key") = 66),
  CONSTRAINT "ck_token_invoice_signatures_signature_hex" CHECK ("signature" NOT GLOB '*[^0-9a-f]*' AND length("signature") % 2 = 0 AND length("signature") <= 144)
) STRICT;
CREATE TABLE "token_ledger" (
  "cause_kind" TEXT NOT NULL,
  "cause_ref" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "mint_hash" TEXT NOT NULL,
  "address" TEXT NOT NULL,
  "delta" INTEGER NOT NULL,
  "tx_hash" TEXT NOT NULL,
  "block_height" INTEGER NOT NULL,
  "block_hash" TEXT NOT NULL,
  "created_at" INTEGER NOT NULL,
  PRIMARY KEY ("cause_kind", "cause_ref"),
  CONSTRAINT "ck_token_ledger_cause_kind_enum" CHECK ("cause_kind" IN ('mint_credit', 'sale_credit', 'sale_debit')),
  CONSTRAINT "ck_token_ledger_cause_ref_len" CHECK (length("cause_ref") <= 128),
  CONSTRAINT "ck_token_ledger_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_ledger_mint_hash_hex" CHECK ("mint_hash" NOT GLOB '*[^0-9a-f]*' AND length("mint_hash") = 64),
  CONSTRAINT "ck_token_ledger_address_len" CHECK (length("address") <= 128),
  CONSTRAINT "ck_token_ledger_tx_hash_hex" CHECK ("tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("tx_hash") = 64),
  CONSTRAINT "ck_token_ledger_block_hash_hex" CHECK ("block_hash" NOT GLOB '*[^0-9a-f]*' AND length("block_hash") = 64),
  CONSTRAINT "ck_token_ledger_delta" CHECK (delta <> 0)
) STRICT;
CREATE INDEX "ix_token_ledger_holder" ON "token_ledger" ("mint_hash", "address");
CREATE INDEX "ix_token_ledger_block" ON "token_ledger" ("chain_id", "block_height");
CREATE TABLE "token_balances" (
  "mint_hash" TEXT NOT NULL,
  "address" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "balance" INTEGER NOT NULL,
  "updated_height" INTEGER NOT NULL,
  PRIMARY KEY ("mint_hash", "address"),
  CONSTRAINT "ck_token_balances_mint_hash_hex" CHECK ("mint_hash" NOT GLOB '*[^0-9a-f]*' AND length("mint_hash") = 64),
  CONSTRAINT "ck_token_balances_address_len" CHECK (length("address") <= 128),
  CONSTRAINT "ck_token_balances_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_balances_balance" CHECK (balance >= 0)
) STRICT;
CREATE INDEX "ix_token_balances_address" ON "token_balances" ("address");
CREATE TABLE "token_reservations" (
  "invoice_hash" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "mint_hash" TEXT NOT NULL,
  "seller_address" TEXT NOT NULL,
  "quantity" INTEGER NOT NULL,
  "state" TEXT NOT NULL,
  "expires_at" INTEGER NOT NULL,
  "created_at" INTEGER NOT NULL,
  PRIMARY KEY ("invoice_hash"),
  CONSTRAINT "ck_token_reservations_invoice_hash_hex" CHECK ("invoice_hash" NOT GLOB '*[^0-9a-f]*' AND length("invoice_hash") = 64),
  CONSTRAINT "ck_token_reservations_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_reservations_mint_hash_hex" CHECK ("mint_hash" NOT GLOB '*[^0-9a-f]*' AND length("mint_hash") = 64),
  CONSTRAINT "ck_token_reservations_seller_address_len" CHECK (length("seller_address") <= 128),
  CONSTRAINT "ck_token_reservations_state_enum" CHECK ("state" IN ('reserved', 'settled', 'released', 'expired')),
  CONSTRAINT "ck_token_reservations_quantity" CHECK (quantity > 0)
) STRICT;
CREATE INDEX "ix_token_reservations_holder" ON "token_reservations" ("mint_hash", "seller_address", "state");
CREATE INDEX "ix_token_reservations_expiry" ON "token_reservations" ("state", "expires_at");
CREATE TABLE "token_payments" (
  "invoice_hash" TEXT NOT NULL,
  "chain_id" TEXT NOT NULL,
  "tx_hash" TEXT NOT NULL,
  "block_height" INTEGER NOT NULL,
  "block_hash" TEXT NOT NULL,
  "recorded_height" INTEGER NOT NULL,
  "recorded_block_hash" TEXT NOT NULL,
  "amount" INTEGER NOT NULL,
  "state" TEXT NOT NULL,
  PRIMARY KEY ("invoice_hash"),
  CONSTRAINT "ck_token_payments_invoice_hash_hex" CHECK ("invoice_hash" NOT GLOB '*[^0-9a-f]*' AND length("invoice_hash") = 64),
  CONSTRAINT "ck_token_payments_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_payments_tx_hash_hex" CHECK ("tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("tx_hash") = 64),
  CONSTRAINT "ck_token_payments_block_hash_hex" CHECK ("block_hash" NOT GLOB '*[^0-9a-f]*' AND length("block_hash") = 64),
  CONSTRAINT "ck_token_payments_recorded_block_hash_hex" CHECK ("recorded_block_hash" NOT GLOB '*[^0-9a-f]*' AND length("recorded_block_hash") = 64),
  CONSTRAINT "ck_token_payments_state_enum" CHECK ("state" IN ('pending', 'settled')),
  CONSTRAINT "ck_token_payments_amount" CHECK (amount > 0),
  CONSTRAINT "ck_token_payments_heights" CHECK (recorded_height >= block_height)
) STRICT;
CREATE UNIQUE INDEX "uq_token_payments_tx" ON "token_payments" ("chain_id", "tx_hash");
CREATE INDEX "ix_token_payments_due" ON "token_payments" ("chain_id", "state", "recorded_height");
CREATE TABLE "token_onchain_actions" (
  "chain_id" TEXT NOT NULL,
  "tx_hash" TEXT NOT NULL,
  "action_type" TEXT NOT NULL,
  "action_version" INTEGER,
  "ref_hash" TEXT,
  "block_height" INTEGER NOT NULL,
  "block_hash" TEXT NOT NULL,
  "index_in_block" INTEGER NOT NULL,
  "outputs" TEXT,
  "state" TEXT NOT NULL,
  "reason" TEXT,
  PRIMARY KEY ("chain_id", "tx_hash"),
  CONSTRAINT "ck_token_onchain_actions_chain_id_len" CHECK (length("chain_id") <= 64),
  CONSTRAINT "ck_token_onchain_actions_tx_hash_hex" CHECK ("tx_hash" NOT GLOB '*[^0-9a-f]*' AND length("tx_hash") = 64),
  CONSTRAINT "ck_token_onchain_actions_action_type_enum" CHECK ("action_type" IN ('mint', 'invoice', 'payment')),
  CONSTRAINT "ck_token_onchain_actions_action_version_int" CHECK ("action_version" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_token_onchain_actions_ref_hash_hex" CHECK ("ref_hash" NOT GLOB '*[^0-9a-f]*' AND length("ref_hash") = 64),
  CONSTRAINT "ck_token_onchain_actions_block_hash_hex" CHECK ("block_hash" NOT GLOB '*[^0-9a-f]*' AND length("block_hash") = 64),
  CONSTRAINT "ck_token_onchain_actions_index_in_block_int" CHECK ("index_in_block" BETWEEN -2147483648 AND 2147483647),
  CONSTRAINT "ck_token_onchain_actions_outputs_json" CHECK (json_valid("outputs")),
  CONSTRAINT "ck_token_onchain_actions_state_enum" CHECK ("state" IN ('pending', 'applied', 'rejected')),
  CONSTRAINT "ck_token_onchain_actions_reason_len" CHECK (length("reason") <= 200)
) STRICT;
CREATE INDEX "ix_token_onchain_actions_state" ON "token_onchain_actions" ("chain_id", "state", "block_height", "index_in_block");
CREATE INDEX "ix_token_onchain_actions_ref" ON "token_onchain_actions" ("ref_hash");
CREATE INDEX "ix_token_onchain_actions_height" ON "token_onchain_actions" ("chain_id", "block_height");

-- identity/0002_key_listing (src/domains/identity/0002_key_listing.ts)
CREATE INDEX "ix_identity_api_keys_listing" ON "identity_api_keys" ("integration_id", "created_at", "id");

-- tokens/0002_holder_pages (src/domains/tokens/0002_holder_pages.ts)
CREATE INDEX "ix_token_balances_address_mint" ON "token_balances" ("address", "mint_hash");
DROP INDEX "ix_token_balances_address";
CREATE INDEX "ix_token_ledger_holder_pages" ON "token_ledger" ("mint_hash", "address", "block_height", "cause_kind", "cause_ref");
DROP INDEX "ix_token_ledger_holder";
