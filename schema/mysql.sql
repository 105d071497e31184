-- Coffer schema for mysql. Generated from the migrations by `coffer schema --write`; do not edit.

-- bootstrap: migration history
CREATE TABLE IF NOT EXISTS `coffer_migrations` (
  `domain` VARCHAR(64) NOT NULL,
  `version` INT NOT NULL,
  `name` VARCHAR(200) NOT NULL,
  `checksum` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `state` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `steps_done` INT NOT NULL DEFAULT 0,
  `applied_at` DATETIME(3) NOT NULL,
  `duration_ms` INT NOT NULL DEFAULT 0,
  PRIMARY KEY (`domain`, `version`),
  CONSTRAINT `ck_coffer_migrations_checksum_hex` CHECK (`checksum` REGEXP '^[0-9a-f]*$' AND length(`checksum`) = 64),
  CONSTRAINT `ck_coffer_migrations_state_enum` CHECK (`state` IN ('applied', 'running')),
  CONSTRAINT `ck_coffer_migrations_version` CHECK (version > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- core/0001_init (src/domains/core/0001_init.ts)
CREATE TABLE `coffer_meta` (
  `meta_key` VARCHAR(128) NOT NULL,
  `meta_value` LONGTEXT NOT NULL,
  `updated_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`meta_key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- chain/0001_undo_journal (src/domains/chain/0001_undo_journal.ts)
CREATE TABLE `chain_undo` (
  `id` BIGINT AUTO_INCREMENT NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `height` BIGINT NOT NULL,
  `block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `table_name` VARCHAR(63) NOT NULL,
  `row_key` LONGTEXT NOT NULL,
  `before_image` LONGTEXT,
  PRIMARY KEY (`id`),
  CONSTRAINT `ck_chain_undo_block_hash_hex` CHECK (`block_hash` REGEXP '^[0-9a-f]*$' AND length(`block_hash`) = 64),
  CONSTRAINT `ck_chain_undo_row_key_json` CHECK (json_valid(`row_key`)),
  CONSTRAINT `ck_chain_undo_before_image_json` CHECK (json_valid(`before_image`)),
  CONSTRAINT `ck_chain_undo_height` CHECK (height >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_chain_undo_chain_height` ON `chain_undo` (`chain_id`, `height`);

-- chain/0002_init (src/domains/chain/0002_init.ts)
CREATE TABLE `chain_chains` (
  `chain_id` VARCHAR(64) NOT NULL,
  `name` VARCHAR(128) NOT NULL,
  `network` VARCHAR(64) NOT NULL,
  `confirmations` INT NOT NULL,
  `mempool_capacity` INT NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`chain_id`),
  CONSTRAINT `ck_chain_chains_confirmations` CHECK (confirmations >= 1),
  CONSTRAINT `ck_chain_chains_mempool_capacity` CHECK (mempool_capacity >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE `chain_cursors` (
  `chain_id` VARCHAR(64) NOT NULL,
  `height` BIGINT,
  `block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin,
  `waiting_for_next_hash` TINYINT(1) NOT NULL DEFAULT 0,
  `finalized_height` BIGINT,
  PRIMARY KEY (`chain_id`),
  CONSTRAINT `fk_chain_cursors_chain` FOREIGN KEY (`chain_id`) REFERENCES `chain_chains` (`chain_id`),
  CONSTRAINT `ck_chain_cursors_block_hash_hex` CHECK (`block_hash` REGEXP '^[0-9a-f]*$' AND length(`block_hash`) = 64),
  CONSTRAINT `ck_chain_cursors_waiting_for_next_hash_bool` CHECK (`waiting_for_next_hash` IN (0, 1)),
  CONSTRAINT `ck_chain_cursors_height` CHECK (height >= 0),
  CONSTRAINT `ck_chain_cursors_tip` CHECK ((height IS NULL AND block_hash IS NULL) OR (height IS NOT NULL AND block_hash IS NOT NULL)),
  CONSTRAINT `ck_chain_cursors_finalized` CHECK (finalized_height >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE `chain_sync_health` (
  `chain_id` VARCHAR(64) NOT NULL,
  `current_height` BIGINT,
  `latest_height` BIGINT,
  `lag` BIGINT,
  `updated_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`chain_id`),
  CONSTRAINT `fk_chain_sync_health_chain` FOREIGN KEY (`chain_id`) REFERENCES `chain_chains` (`chain_id`),
  CONSTRAINT `ck_chain_sync_health_current` CHECK (current_height >= 0),
  CONSTRAINT `ck_chain_sync_health_latest` CHECK (latest_height >= 0),
  CONSTRAINT `ck_chain_sync_health_lag` CHECK (lag >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE `chain_blocks` (
  `chain_id` VARCHAR(64) NOT NULL,
  `height` BIGINT NOT NULL,
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `parent_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `block_time` DATETIME(3) NOT NULL,
  `tx_count` INT NOT NULL,
  PRIMARY KEY (`chain_id`, `height`),
  CONSTRAINT `fk_chain_blocks_chain` FOREIGN KEY (`chain_id`) REFERENCES `chain_chains` (`chain_id`),
  CONSTRAINT `ck_chain_blocks_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_chain_blocks_parent_hash_hex` CHECK (`parent_hash` REGEXP '^[0-9a-f]*$' AND length(`parent_hash`) = 64),
  CONSTRAINT `ck_chain_blocks_height` CHECK (height >= 0),
  CONSTRAINT `ck_chain_blocks_tx_count` CHECK (tx_count >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_chain_blocks_hash` ON `chain_blocks` (`chain_id`, `hash`);
CREATE TABLE `chain_transactions` (
  `chain_id` VARCHAR(64) NOT NULL,
  `tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `block_height` BIGINT NOT NULL,
  `block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `index_in_block` INT NOT NULL,
  `action_type` VARCHAR(32),
  `action_version` INT,
  `payload` LONGBLOB,
  `address` VARCHAR(128),
  PRIMARY KEY (`chain_id`, `tx_hash`),
  CONSTRAINT `fk_chain_transactions_block` FOREIGN KEY (`chain_id`, `block_height`) REFERENCES `chain_blocks` (`chain_id`, `height`),
  CONSTRAINT `ck_chain_transactions_tx_hash_hex` CHECK (`tx_hash` REGEXP '^[0-9a-f]*$' AND length(`tx_hash`) = 64),
  CONSTRAINT `ck_chain_transactions_block_hash_hex` CHECK (`block_hash` REGEXP '^[0-9a-f]*$' AND length(`block_hash`) = 64),
  CONSTRAINT `ck_chain_transactions_index` CHECK (index_in_block >= 0),
  CONSTRAINT `ck_chain_transactions_action_version` CHECK (action_version >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_chain_transactions_position` ON `chain_transactions` (`chain_id`, `block_height`, `index_in_block`);
CREATE INDEX `ix_chain_transactions_address` ON `chain_transactions` (`chain_id`, `address`, `block_height`, `index_in_block`);
CREATE TABLE `chain_tx_outputs` (
  `chain_id` VARCHAR(64) NOT NULL,
  `tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `address` VARCHAR(128) NOT NULL,
  `value` VARCHAR(78) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `block_height` BIGINT NOT NULL,
  `index_in_block` INT NOT NULL,
  PRIMARY KEY (`chain_id`, `tx_hash`, `address`),
  CONSTRAINT `fk_chain_tx_outputs_tx` FOREIGN KEY (`chain_id`, `tx_hash`) REFERENCES `chain_transactions` (`chain_id`, `tx_hash`),
  CONSTRAINT `ck_chain_tx_outputs_tx_hash_hex` CHECK (`tx_hash` REGEXP '^[0-9a-f]*$' AND length(`tx_hash`) = 64),
  CONSTRAINT `ck_chain_tx_outputs_value_u256` CHECK (`value` REGEXP '^(0|[1-9][0-9]*)$')
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_chain_tx_outputs_address` ON `chain_tx_outputs` (`chain_id`, `address`, `block_height`, `index_in_block`);
CREATE TABLE `chain_mempool` (
  `chain_id` VARCHAR(64) NOT NULL,
  `tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `content` LONGBLOB NOT NULL,
  `fee` BIGINT NOT NULL,
  `size_bytes` INT NOT NULL,
  `received_at` DATETIME(3) NOT NULL,
  `claimed_by` VARCHAR(128),
  `claim_expires_at` DATETIME(3),
  PRIMARY KEY (`chain_id`, `tx_hash`),
  CONSTRAINT `fk_chain_mempool_chain` FOREIGN KEY (`chain_id`) REFERENCES `chain_chains` (`chain_id`),
  CONSTRAINT `ck_chain_mempool_tx_hash_hex` CHECK (`tx_hash` REGEXP '^[0-9a-f]*$' AND length(`tx_hash`) = 64),
  CONSTRAINT `ck_chain_mempool_fee` CHECK (fee >= 0),
  CONSTRAINT `ck_chain_mempool_size` CHECK (size_bytes >= 0),
  CONSTRAINT `ck_chain_mempool_claim` CHECK ((claimed_by IS NULL AND claim_expires_at IS NULL) OR (claimed_by IS NOT NULL AND claim_expires_at IS NOT NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_chain_mempool_fee` ON `chain_mempool` (`chain_id`, `fee`, `received_at`);

-- identity/0001_init (src/domains/identity/0001_init.ts)
CREATE TABLE `identity_users` (
  `id` BIGINT AUTO_INCREMENT NOT NULL,
  `username` VARCHAR(128) NOT NULL,
  `display_name` VARCHAR(256),
  `status` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'active',
  `mfa_secret` LONGTEXT,
  `version` INT NOT NULL DEFAULT 1,
  `created_at` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`id`),
  CONSTRAINT `ck_identity_users_status_enum` CHECK (`status` IN ('active', 'disabled')),
  CONSTRAINT `ck_identity_users_version` CHECK (version >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_identity_users_username` ON `identity_users` (`username`);
CREATE TABLE `identity_roles` (
  `id` BIGINT AUTO_INCREMENT NOT NULL,
  `name` VARCHAR(64) NOT NULL,
  `description` VARCHAR(512),
  `version` INT NOT NULL DEFAULT 1,
  `created_at` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`id`),
  CONSTRAINT `ck_identity_roles_version` CHECK (version >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_identity_roles_name` ON `identity_roles` (`name`);
CREATE TABLE `identity_role_scopes` (
  `role_id` BIGINT NOT NULL,
  `scope_domain` VARCHAR(64) NOT NULL,
  `level` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (`role_id`, `scope_domain`),
  CONSTRAINT `fk_identity_role_scopes_role` FOREIGN KEY (`role_id`) REFERENCES `identity_roles` (`id`),
  CONSTRAINT `ck_identity_role_scopes_level_enum` CHECK (`level` IN ('read', 'write', 'admin'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE `identity_user_roles` (
  `user_id` BIGINT NOT NULL,
  `role_id` BIGINT NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`user_id`, `role_id`),
  CONSTRAINT `fk_identity_user_roles_user` FOREIGN KEY (`user_id`) REFERENCES `identity_users` (`id`),
  CONSTRAINT `fk_identity_user_roles_role` FOREIGN KEY (`role_id`) REFERENCES `identity_roles` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_identity_user_roles_role` ON `identity_user_roles` (`role_id`);
CREATE TABLE `identity_sessions` (
  `id` VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `user_id` BIGINT NOT NULL,
  `secret_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  `expires_at` DATETIME(3) NOT NULL,
  `revoked_at` DATETIME(3),
  `revoke_reason` VARCHAR(256),
  `version` INT NOT NULL DEFAULT 1,
  PRIMARY KEY (`id`),
  CONSTRAINT `fk_identity_sessions_user` FOREIGN KEY (`user_id`) REFERENCES `identity_users` (`id`),
  CONSTRAINT `ck_identity_sessions_id_hex` CHECK (`id` REGEXP '^[0-9a-f]*$' AND length(`id`) = 24),
  CONSTRAINT `ck_identity_sessions_secret_hash_hex` CHECK (`secret_hash` REGEXP '^[0-9a-f]*$' AND length(`secret_hash`) = 64),
  CONSTRAINT `ck_identity_sessions_expiry` CHECK (expires_at > created_at),
  CONSTRAINT `ck_identity_sessions_revoked` CHECK ((revoked_at IS NULL AND revoke_reason IS NULL) OR revoked_at IS NOT NULL)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_identity_sessions_user` ON `identity_sessions` (`user_id`, `expires_at`);
CREATE TABLE `identity_integrations` (
  `id` BIGINT AUTO_INCREMENT NOT NULL,
  `name` VARCHAR(128) NOT NULL,
  `live_name` VARCHAR(128),
  `version` INT NOT NULL DEFAULT 1,
  `created_at` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL,
  `deleted_at` DATETIME(3),
  PRIMARY KEY (`id`),
  CONSTRAINT `ck_identity_integrations_live_name` CHECK ((deleted_at IS NULL AND live_name IS NOT NULL AND live_name = name) OR (deleted_at IS NOT NULL AND live_name IS NULL)),
  CONSTRAINT `ck_identity_integrations_version` CHECK (version >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_identity_integrations_live_name` ON `identity_integrations` (`live_name`);
CREATE TABLE `identity_api_keys` (
  `id` VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `integration_id` BIGINT NOT NULL,
  `name` VARCHAR(128) NOT NULL,
  `live_name` VARCHAR(128),
  `secret_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `scopes` LONGTEXT NOT NULL,
  `ip_allow` LONGTEXT NOT NULL,
  `expires_at` DATETIME(3) NOT NULL,
  `version` INT NOT NULL DEFAULT 1,
  `created_at` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL,
  `deleted_at` DATETIME(3),
  PRIMARY KEY (`id`),
  CONSTRAINT `fk_identity_api_keys_integration` FOREIGN KEY (`integration_id`) REFERENCES `identity_integrations` (`id`),
  CONSTRAINT `ck_identity_api_keys_id_hex` CHECK (`id` REGEXP '^[0-9a-f]*$' AND length(`id`) = 24),
  CONSTRAINT `ck_identity_api_keys_secret_hash_hex` CHECK (`secret_hash` REGEXP '^[0-9a-f]*$' AND length(`secret_hash`) = 64),
  CONSTRAINT `ck_identity_api_keys_scopes_json` CHECK (json_valid(`scopes`)),
  CONSTRAINT `ck_identity_api_keys_ip_allow_json` CHECK (json_valid(`ip_allow`)),
  CONSTRAINT `ck_identity_api_keys_live_name` CHECK ((deleted_at IS NULL AND live_name IS NOT NULL AND live_name = name) OR (deleted_at IS NOT NULL AND live_name IS NULL)),
  CONSTRAINT `ck_identity_api_keys_expiry` CHECK (expires_at > created_at),
  CONSTRAINT `ck_identity_api_keys_version` CHECK (version >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_identity_api_keys_live_name` ON `identity_api_keys` (`integration_id`, `live_name`);
CREATE TABLE `identity_token_configs` (
  `integration_id` BIGINT NOT NULL,
  `token_type` VARCHAR(64) NOT NULL,
  `max_open` INT NOT NULL,
  `lifetime_seconds` INT NOT NULL,
  `version` INT NOT NULL DEFAULT 1,
  `created_at` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`integration_id`, `token_type`),
  CONSTRAINT `fk_identity_token_configs_integration` FOREIGN KEY (`integration_id`) REFERENCES `identity_integrations` (`id`),
  CONSTRAINT `ck_identity_token_configs_max_open` CHECK (max_open >= 0),
  CONSTRAINT `ck_identity_token_configs_lifetime` CHECK (lifetime_seconds >= 1),
  CONSTRAINT `ck_identity_token_configs_version` CHECK (version >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE `identity_tokens` (
  `id` VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `integration_id` BIGINT NOT NULL,
  `token_type` VARCHAR(64) NOT NULL,
  `secret_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `status` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'unused',
  `expires_at` DATETIME(3) NOT NULL,
  `used_at` DATETIME(3),
  `created_by` VARCHAR(160) NOT NULL,
  `version` INT NOT NULL DEFAULT 1,
  `created_at` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`id`),
  CONSTRAINT `fk_identity_tokens_integration` FOREIGN KEY (`integration_id`) REFERENCES `identity_integrations` (`id`),
  CONSTRAINT `ck_identity_tokens_id_hex` CHECK (`id` REGEXP '^[0-9a-f]*$' AND length(`id`) = 24),
  CONSTRAINT `ck_identity_tokens_secret_hash_hex` CHECK (`secret_hash` REGEXP '^[0-9a-f]*$' AND length(`secret_hash`) = 64),
  CONSTRAINT `ck_identity_tokens_status_enum` CHECK (`status` IN ('unused', 'used', 'disabled', 'abused')),
  CONSTRAINT `ck_identity_tokens_expiry` CHECK (expires_at > created_at),
  CONSTRAINT `ck_identity_tokens_used` CHECK ((status = 'unused' AND used_at IS NULL) OR (status = 'used' AND used_at IS NOT NULL) OR status IN ('disabled', 'abused')),
  CONSTRAINT `ck_identity_tokens_version` CHECK (version >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_identity_tokens_open` ON `identity_tokens` (`integration_id`, `token_type`, `status`, `expires_at`);

-- audit/0001_init (src/domains/audit/0001_init.ts)
CREATE TABLE `audit_log` (
  `seq` BIGINT NOT NULL,
  `at` DATETIME(3) NOT NULL,
  `actor_type` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `actor_id` VARCHAR(128) NOT NULL,
  `action` VARCHAR(128) NOT NULL,
  `domain` VARCHAR(64) NOT NULL,
  `entity` VARCHAR(64) NOT NULL,
  `entity_id` VARCHAR(256) NOT NULL,
  `change_set` LONGTEXT,
  `prev_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (`seq`),
  CONSTRAINT `ck_audit_log_actor_type_enum` CHECK (`actor_type` IN ('api_key', 'user', 'system')),
  CONSTRAINT `ck_audit_log_change_set_json` CHECK (json_valid(`change_set`)),
  CONSTRAINT `ck_audit_log_prev_hash_hex` CHECK (`prev_hash` REGEXP '^[0-9a-f]*$' AND length(`prev_hash`) = 64),
  CONSTRAINT `ck_audit_log_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_audit_log_seq` CHECK (seq >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_audit_log_hash` ON `audit_log` (`hash`);
CREATE INDEX `ix_audit_log_entity` ON `audit_log` (`domain`, `entity`, `entity_id`, `seq`);
CREATE TABLE `audit_head` (
  `id` INT NOT NULL,
  `seq` BIGINT NOT NULL,
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (`id`),
  CONSTRAINT `ck_audit_head_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_audit_head_single` CHECK (id = 1),
  CONSTRAINT `ck_audit_head_seq` CHECK (seq >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE `audit_row_history` (
  `id` BIGINT AUTO_INCREMENT NOT NULL,
  `at` DATETIME(3) NOT NULL,
  `table_name` VARCHAR(63) NOT NULL,
  `row_key` VARCHAR(512) NOT NULL,
  `op` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `before_image` LONGTEXT,
  `after_image` LONGTEXT,
  `actor_type` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `actor_id` VARCHAR(128) NOT NULL,
  PRIMARY KEY (`id`),
  CONSTRAINT `ck_audit_row_history_op_enum` CHECK (`op` IN ('insert', 'update', 'delete')),
  CONSTRAINT `ck_audit_row_history_before_image_json` CHECK (json_valid(`before_image`)),
  CONSTRAINT `ck_audit_row_history_after_image_json` CHECK (json_valid(`after_image`)),
  CONSTRAINT `ck_audit_row_history_actor_type_enum` CHECK (`actor_type` IN ('api_key', 'user', 'system')),
  CONSTRAINT `ck_audit_row_history_images` CHECK ((op = 'insert' AND before_image IS NULL AND after_image IS NOT NULL) OR (op = 'update' AND before_image IS NOT NULL AND after_image IS NOT NULL) OR (op = 'delete' AND before_image IS NOT NULL AND after_image IS NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_audit_row_history_row` ON `audit_row_history` (`table_name`, `row_key`, `id`);
INSERT IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
DROP TRIGGER IF EXISTS `trg_audit_log_no_update`;
CREATE TRIGGER `trg_audit_log_no_update` BEFORE UPDATE ON `audit_log` FOR EACH ROW SIGNAL SQLSTATE 'CFA01' SET MESSAGE_TEXT = 'CFA01: audit_log is append-only';
DROP TRIGGER IF EXISTS `trg_audit_log_no_delete`;
CREATE TRIGGER `trg_audit_log_no_delete` BEFORE DELETE ON `audit_log` FOR EACH ROW SIGNAL SQLSTATE 'CFA01' SET MESSAGE_TEXT = 'CFA01: audit_log is append-only';
DROP TRIGGER IF EXISTS `trg_audit_row_history_no_update`;
CREATE TRIGGER `trg_audit_row_history_no_update` BEFORE UPDATE ON `audit_row_history` FOR EACH ROW SIGNAL SQLSTATE 'CFA01' SET MESSAGE_TEXT = 'CFA01: audit_row_history is append-only';
DROP TRIGGER IF EXISTS `trg_audit_row_history_no_delete`;
CREATE TRIGGER `trg_audit_row_history_no_delete` BEFORE DELETE ON `audit_row_history` FOR EACH ROW SIGNAL SQLSTATE 'CFA01' SET MESSAGE_TEXT = 'CFA01: audit_row_history is append-only';

-- tokens/0001_init (src/domains/tokens/0001_init.ts)
CREATE TABLE `token_unconfirmed_mints` (
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `title` VARCHAR(200) NOT NULL,
  `description` LONGTEXT NOT NULL,
  `fraction_count` BIGINT NOT NULL,
  `tags` LONGTEXT NOT NULL,
  `metadata` LONGTEXT,
  `requirements` LONGTEXT,
  `lockup_options` LONGTEXT,
  `feed_url` VARCHAR(2048),
  `public_key` VARCHAR(66) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `contract_of_sale` LONGTEXT,
  `signature_rule` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `min_signatures` INT,
  `asset_managers` LONGTEXT NOT NULL,
  `owner_address` VARCHAR(128) NOT NULL,
  `received_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`hash`),
  CONSTRAINT `ck_token_unconfirmed_mints_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_token_unconfirmed_mints_tags_json` CHECK (json_valid(`tags`)),
  CONSTRAINT `ck_token_unconfirmed_mints_metadata_json` CHECK (json_valid(`metadata`)),
  CONSTRAINT `ck_token_unconfirmed_mints_requirements_json` CHECK (json_valid(`requirements`)),
  CONSTRAINT `ck_token_unconfirmed_mints_lockup_options_json` CHECK (json_valid(`lockup_options`)),
  CONSTRAINT `ck_token_unconfirmed_mints_public_key_hex` CHECK (`public_key` REGEXP '^[0-9a-f]*$' AND length(`public_key`) = 66),
  CONSTRAINT `ck_token_unconfirmed_mints_contract_of_sale_json` CHECK (json_valid(`contract_of_sale`)),
  CONSTRAINT `ck_token_unconfirmed_mints_signature_rule_enum` CHECK (`signature_rule` IN ('none', 'all', 'one', 'min')),
  CONSTRAINT `ck_token_unconfirmed_mints_asset_managers_json` CHECK (json_valid(`asset_managers`)),
  CONSTRAINT `ck_token_unconfirmed_mints_fraction_count` CHECK (fraction_count > 0),
  CONSTRAINT `ck_token_unconfirmed_mints_min_signatures` CHECK ((signature_rule = 'min' AND min_signatures >= 1) OR (signature_rule <> 'min' AND min_signatures IS NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_token_unconfirmed_mints_age` ON `token_unconfirmed_mints` (`received_at`, `hash`);
CREATE INDEX `ix_token_unconfirmed_mints_chain` ON `token_unconfirmed_mints` (`chain_id`);
CREATE TABLE `token_mints` (
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `title` VARCHAR(200) NOT NULL,
  `description` LONGTEXT NOT NULL,
  `fraction_count` BIGINT NOT NULL,
  `tags` LONGTEXT NOT NULL,
  `metadata` LONGTEXT,
  `requirements` LONGTEXT,
  `lockup_options` LONGTEXT,
  `feed_url` VARCHAR(2048),
  `public_key` VARCHAR(66) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `contract_of_sale` LONGTEXT,
  `signature_rule` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `min_signatures` INT,
  `asset_managers` LONGTEXT NOT NULL,
  `owner_address` VARCHAR(128) NOT NULL,
  `received_at` DATETIME(3) NOT NULL,
  `tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `block_height` BIGINT NOT NULL,
  `block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `matched_height` BIGINT NOT NULL,
  `matched_block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `credited` TINYINT(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (`hash`),
  CONSTRAINT `ck_token_mints_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_token_mints_tags_json` CHECK (json_valid(`tags`)),
  CONSTRAINT `ck_token_mints_metadata_json` CHECK (json_valid(`metadata`)),
  CONSTRAINT `ck_token_mints_requirements_json` CHECK (json_valid(`requirements`)),
  CONSTRAINT `ck_token_mints_lockup_options_json` CHECK (json_valid(`lockup_options`)),
  CONSTRAINT `ck_token_mints_public_key_hex` CHECK (`public_key` REGEXP '^[0-9a-f]*$' AND length(`public_key`) = 66),
  CONSTRAINT `ck_token_mints_contract_of_sale_json` CHECK (json_valid(`contract_of_sale`)),
  CONSTRAINT `ck_token_mints_signature_rule_enum` CHECK (`signature_rule` IN ('none', 'all', 'one', 'min')),
  CONSTRAINT `ck_token_mints_asset_managers_json` CHECK (json_valid(`asset_managers`)),
  CONSTRAINT `ck_token_mints_tx_hash_hex` CHECK (`tx_hash` REGEXP '^[0-9a-f]*$' AND length(`tx_hash`) = 64),
  CONSTRAINT `ck_token_mints_block_hash_hex` CHECK (`block_hash` REGEXP '^[0-9a-f]*$' AND length(`block_hash`) = 64),
  CONSTRAINT `ck_token_mints_matched_block_hash_hex` CHECK (`matched_block_hash` REGEXP '^[0-9a-f]*$' AND length(`matched_block_hash`) = 64),
  CONSTRAINT `ck_token_mints_credited_bool` CHECK (`credited` IN (0, 1)),
  CONSTRAINT `ck_token_mints_fraction_count` CHECK (fraction_count > 0),
  CONSTRAINT `ck_token_mints_min_signatures` CHECK ((signature_rule = 'min' AND min_signatures >= 1) OR (signature_rule <> 'min' AND min_signatures IS NULL)),
  CONSTRAINT `ck_token_mints_heights` CHECK (block_height >= 0 AND matched_height >= block_height)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_token_mints_tx` ON `token_mints` (`chain_id`, `tx_hash`);
CREATE INDEX `ix_token_mints_credit_due` ON `token_mints` (`chain_id`, `credited`, `matched_height`);
CREATE INDEX `ix_token_mints_owner` ON `token_mints` (`owner_address`);
CREATE TABLE `token_sell_offers` (
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `mint_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `offerer_address` VARCHAR(128) NOT NULL,
  `quantity` BIGINT NOT NULL,
  `price` BIGINT NOT NULL,
  `price_unit` VARCHAR(16) NOT NULL,
  `public_key` VARCHAR(66) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `signature` VARCHAR(144) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`hash`),
  CONSTRAINT `ck_token_sell_offers_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_token_sell_offers_mint_hash_hex` CHECK (`mint_hash` REGEXP '^[0-9a-f]*$' AND length(`mint_hash`) = 64),
  CONSTRAINT `ck_token_sell_offers_public_key_hex` CHECK (`public_key` REGEXP '^[0-9a-f]*$' AND length(`public_key`) = 66),
  CONSTRAINT `ck_token_sell_offers_signature_hex` CHECK (`signature` REGEXP '^[0-9a-f]*$' AND length(`signature`) % 2 = 0 AND length(`signature`) <= 144),
  CONSTRAINT `ck_token_sell_offers_amounts` CHECK (quantity > 0 AND price > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_token_sell_offers_mint` ON `token_sell_offers` (`mint_hash`, `created_at`, `hash`);
CREATE TABLE `token_buy_offers` (
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `mint_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `offerer_address` VARCHAR(128) NOT NULL,
  `quantity` BIGINT NOT NULL,
  `price` BIGINT NOT NULL,
  `price_unit` VARCHAR(16) NOT NULL,
  `public_key` VARCHAR(66) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `signature` VARCHAR(144) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  `seller_address` VARCHAR(128) NOT NULL,
  PRIMARY KEY (`hash`),
  CONSTRAINT `ck_token_buy_offers_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_token_buy_offers_mint_hash_hex` CHECK (`mint_hash` REGEXP '^[0-9a-f]*$' AND length(`mint_hash`) = 64),
  CONSTRAINT `ck_token_buy_offers_public_key_hex` CHECK (`public_key` REGEXP '^[0-9a-f]*$' AND length(`public_key`) = 66),
  CONSTRAINT `ck_token_buy_offers_signature_hex` CHECK (`signature` REGEXP '^[0-9a-f]*$' AND length(`signature`) % 2 = 0 AND length(`signature`) <= 144),
  CONSTRAINT `ck_token_buy_offers_amounts` CHECK (quantity > 0 AND price > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_token_buy_offers_mint` ON `token_buy_offers` (`mint_hash`, `created_at`, `hash`);
CREATE TABLE `token_unconfirmed_invoices` (
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `mint_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `seller_address` VARCHAR(128) NOT NULL,
  `buyer_address` VARCHAR(128) NOT NULL,
  `quantity` BIGINT NOT NULL,
  `price` BIGINT NOT NULL,
  `price_unit` VARCHAR(16) NOT NULL,
  `total_price` BIGINT NOT NULL,
  `payment_address` VARCHAR(128) NOT NULL,
  `public_key` VARCHAR(66) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `signature` VARCHAR(144) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  `received_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`hash`),
  CONSTRAINT `ck_token_unconfirmed_invoices_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_token_unconfirmed_invoices_mint_hash_hex` CHECK (`mint_hash` REGEXP '^[0-9a-f]*$' AND length(`mint_hash`) = 64),
  CONSTRAINT `ck_token_unconfirmed_invoices_public_key_hex` CHECK (`public_key` REGEXP '^[0-9a-f]*$' AND length(`public_key`) = 66),
  CONSTRAINT `ck_token_unconfirmed_invoices_signature_hex` CHECK (`signature` REGEXP '^[0-9a-f]*$' AND length(`signature`) % 2 = 0 AND length(`signature`) <= 144),
  CONSTRAINT `ck_token_unconfirmed_invoices_amounts` CHECK (quantity > 0 AND price > 0 AND total_price = quantity * price),
  CONSTRAINT `ck_token_unconfirmed_invoices_parties` CHECK (buyer_address <> seller_address)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_token_unconfirmed_invoices_age` ON `token_unconfirmed_invoices` (`received_at`, `hash`);
CREATE INDEX `ix_token_unconfirmed_invoices_mint` ON `token_unconfirmed_invoices` (`mint_hash`);
CREATE INDEX `ix_token_unconfirmed_invoices_chain` ON `token_unconfirmed_invoices` (`chain_id`);
CREATE TABLE `token_invoices` (
  `hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `mint_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `seller_address` VARCHAR(128) NOT NULL,
  `buyer_address` VARCHAR(128) NOT NULL,
  `quantity` BIGINT NOT NULL,
  `price` BIGINT NOT NULL,
  `price_unit` VARCHAR(16) NOT NULL,
  `total_price` BIGINT NOT NULL,
  `payment_address` VARCHAR(128) NOT NULL,
  `public_key` VARCHAR(66) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `signature` VARCHAR(144) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  `received_at` DATETIME(3) NOT NULL,
  `tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `block_height` BIGINT NOT NULL,
  `block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `matched_height` BIGINT NOT NULL,
  `matched_block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `status` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `paid_tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin,
  `paid_height` BIGINT,
  PRIMARY KEY (`hash`),
  CONSTRAINT `ck_token_invoices_hash_hex` CHECK (`hash` REGEXP '^[0-9a-f]*$' AND length(`hash`) = 64),
  CONSTRAINT `ck_token_invoices_mint_hash_hex` CHECK (`mint_hash` REGEXP '^[0-9a-f]*$' AND length(`mint_hash`) = 64),
  CONSTRAINT `ck_token_invoices_public_key_hex` CHECK (`public_key` REGEXP '^[0-9a-f]*$' AND length(`public_key`) = 66),
  CONSTRAINT `ck_token_invoices_signature_hex` CHECK (`signature` REGEXP '^[0-9a-f]*$' AND length(`signature`) % 2 = 0 AND length(`signature`) <= 144),
  CONSTRAINT `ck_token_invoices_tx_hash_hex` CHECK (`tx_hash` REGEXP '^[0-9a-f]*$' AND length(`tx_hash`) = 64),
  CONSTRAINT `ck_token_invoices_block_hash_hex` CHECK (`block_hash` REGEXP '^[0-9a-f]*$' AND length(`block_hash`) = 64),
  CONSTRAINT `ck_token_invoices_matched_block_hash_hex` CHECK (`matched_block_hash` REGEXP '^[0-9a-f]*$' AND length(`matched_block_hash`) = 64),
  CONSTRAINT `ck_token_invoices_status_enum` CHECK (`status` IN ('matched', 'paid')),
  CONSTRAINT `ck_token_invoices_paid_tx_hash_hex` CHECK (`paid_tx_hash` REGEXP '^[0-9a-f]*$' AND length(`paid_tx_hash`) = 64),
  CONSTRAINT `ck_token_invoices_amounts` CHECK (quantity > 0 AND price > 0 AND total_price = quantity * price),
  CONSTRAINT `ck_token_invoices_parties` CHECK (buyer_address <> seller_address)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_token_invoices_tx` ON `token_invoices` (`chain_id`, `tx_hash`);
CREATE INDEX `ix_token_invoices_chain_status` ON `token_invoices` (`chain_id`, `status`);
CREATE INDEX `ix_token_invoices_buyer` ON `token_invoices` (`buyer_address`);
CREATE INDEX `ix_token_invoices_seller` ON `token_invoices` (`seller_address`);
CREATE INDEX `ix_token_invoices_mint` ON `token_invoices` (`mint_hash`);
CREATE TABLE `token_invoice_signatures` (
  `invoice_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `public_key` VARCHAR(66) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `signature` VARCHAR(144) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`invoice_hash`, `public_key`),
  CONSTRAINT `ck_token_invoice_signatures_invoice_hash_hex` CHECK (`invoice_hash` REGEXP '^[0-9a-f]*$' AND length(`invoice_hash`) = 64),
  CONSTRAINT `ck_token_invoice_signatures_public_key_hex` CHECK (`public_key` REGEXP '^[0-9a-f]*$' AND length(`public_key`) = 66),
  CONSTRAINT `ck_token_invoice_signatures_signature_hex` CHECK (`signature` REGEXP '^[0-9a-f]*$' AND length(`signature`) % 2 = 0 AND length(`signature`) <= 144)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE `token_ledger` (
  `cause_kind` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `cause_ref` VARCHAR(128) NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `mint_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `address` VARCHAR(128) NOT NULL,
  `delta` BIGINT NOT NULL,
  `tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `block_height` BIGINT NOT NULL,
  `block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`cause_kind`, `cause_ref`),
  CONSTRAINT `ck_token_ledger_cause_kind_enum` CHECK (`cause_kind` IN ('mint_credit', 'sale_credit', 'sale_debit')),
  CONSTRAINT `ck_token_ledger_mint_hash_hex` CHECK (`mint_hash` REGEXP '^[0-9a-f]*$' AND length(`mint_hash`) = 64),
  CONSTRAINT `ck_token_ledger_tx_hash_hex` CHECK (`tx_hash` REGEXP '^[0-9a-f]*$' AND length(`tx_hash`) = 64),
  CONSTRAINT `ck_token_ledger_block_hash_hex` CHECK (`block_hash` REGEXP '^[0-9a-f]*$' AND length(`block_hash`) = 64),
  CONSTRAINT `ck_token_ledger_delta` CHECK (delta <> 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_token_ledger_holder` ON `token_ledger` (`mint_hash`, `address`);
CREATE INDEX `ix_token_ledger_block` ON `token_ledger` (`chain_id`, `block_height`);
CREATE TABLE `token_balances` (
  `mint_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `address` VARCHAR(128) NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `balance` BIGINT NOT NULL,
  `updated_height` BIGINT NOT NULL,
  PRIMARY KEY (`mint_hash`, `address`),
  CONSTRAINT `ck_token_balances_mint_hash_hex` CHECK (`mint_hash` REGEXP '^[0-9a-f]*$' AND length(`mint_hash`) = 64),
  CONSTRAINT `ck_token_balances_balance` CHECK (balance >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_token_balances_address` ON `token_balances` (`address`);
CREATE TABLE `token_reservations` (
  `invoice_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `mint_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `seller_address` VARCHAR(128) NOT NULL,
  `quantity` BIGINT NOT NULL,
  `state` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `expires_at` DATETIME(3) NOT NULL,
  `created_at` DATETIME(3) NOT NULL,
  PRIMARY KEY (`invoice_hash`),
  CONSTRAINT `ck_token_reservations_invoice_hash_hex` CHECK (`invoice_hash` REGEXP '^[0-9a-f]*$' AND length(`invoice_hash`) = 64),
  CONSTRAINT `ck_token_reservations_mint_hash_hex` CHECK (`mint_hash` REGEXP '^[0-9a-f]*$' AND length(`mint_hash`) = 64),
  CONSTRAINT `ck_token_reservations_state_enum` CHECK (`state` IN ('reserved', 'settled', 'released', 'expired')),
  CONSTRAINT `ck_token_reservations_quantity` CHECK (quantity > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_token_reservations_holder` ON `token_reservations` (`mint_hash`, `seller_address`, `state`);
CREATE INDEX `ix_token_reservations_expiry` ON `token_reservations` (`state`, `expires_at`);
CREATE TABLE `token_payments` (
  `invoice_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `chain_id` VARCHAR(64) NOT NULL,
  `tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `block_height` BIGINT NOT NULL,
  `block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `recorded_height` BIGINT NOT NULL,
  `recorded_block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `amount` BIGINT NOT NULL,
  `state` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (`invoice_hash`),
  CONSTRAINT `ck_token_payments_invoice_hash_hex` CHECK (`invoice_hash` REGEXP '^[0-9a-f]*$' AND length(`invoice_hash`) = 64),
  CONSTRAINT `ck_token_payments_tx_hash_hex` CHECK (`tx_hash` REGEXP '^[0-9a-f]*$' AND length(`tx_hash`) = 64),
  CONSTRAINT `ck_token_payments_block_hash_hex` CHECK (`block_hash` REGEXP '^[0-9a-f]*$' AND length(`block_hash`) = 64),
  CONSTRAINT `ck_token_payments_recorded_block_hash_hex` CHECK (`recorded_block_hash` REGEXP '^[0-9a-f]*$' AND length(`recorded_block_hash`) = 64),
  CONSTRAINT `ck_token_payments_state_enum` CHECK (`state` IN ('pending', 'settled')),
  CONSTRAINT `ck_token_payments_amount` CHECK (amount > 0),
  CONSTRAINT `ck_token_payments_heights` CHECK (recorded_height >= block_height)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX `uq_token_payments_tx` ON `token_payments` (`chain_id`, `tx_hash`);
CREATE INDEX `ix_token_payments_due` ON `token_payments` (`chain_id`, `state`, `recorded_height`);
CREATE TABLE `token_onchain_actions` (
  `chain_id` VARCHAR(64) NOT NULL,
  `tx_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `action_type` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `action_version` INT,
  `ref_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin,
  `block_height` BIGINT NOT NULL,
  `block_hash` VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `index_in_block` INT NOT NULL,
  `outputs` LONGTEXT,
  `state` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `reason` VARCHAR(200),
  PRIMARY KEY (`chain_id`, `tx_hash`),
  CONSTRAINT `ck_token_onchain_actions_tx_hash_hex` CHECK (`tx_hash` REGEXP '^[0-9a-f]*$' AND length(`tx_hash`) = 64),
  CONSTRAINT `ck_token_onchain_actions_action_type_enum` CHECK (`action_type` IN ('mint', 'invoice', 'payment')),
  CONSTRAINT `ck_token_onchain_actions_ref_hash_hex` CHECK (`ref_hash` REGEXP '^[0-9a-f]*$' AND length(`ref_hash`) = 64),
  CONSTRAINT `ck_token_onchain_actions_block_hash_hex` CHECK (`block_hash` REGEXP '^[0-9a-f]*$' AND length(`block_hash`) = 64),
  CONSTRAINT `ck_token_onchain_actions_outputs_json` CHECK (json_valid(`outputs`)),
  CONSTRAINT `ck_token_onchain_actions_state_enum` CHECK (`state` IN ('pending', 'applied', 'rejected'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX `ix_token_onchain_actions_state` ON `token_onchain_actions` (`chain_id`, `state`, `block_height`, `index_in_block`);
CREATE INDEX `ix_token_onchain_actions_ref` ON `token_onchain_actions` (`ref_hash`);
CREATE INDEX `ix_token_onchain_actions_height` ON `token_onchain_actions` (`chain_id`, `block_height`);

-- identity/0002_key_listing (src/domains/identity/0002_key_listing.ts)
CREATE INDEX `ix_identity_api_keys_listing` ON `identity_api_keys` (`integration_id`, `created_at`, `id`);

-- tokens/0002_holder_pages (src/domains/tokens/0002_holder_pages.ts)
CREATE INDEX `ix_token_balances_address_mint` ON `token_balances` (`address`, `mint_hash`);
DROP INDEX `ix_token_balances_address` ON `token_balances`;
CREATE INDEX `ix_token_ledger_holder_pages` ON `token_ledger` (`mint_hash`, `address`, `block_height`, `cause_kind`, `cause_ref`);
DROP INDEX `ix_token_ledger_holder` ON `token_ledger`;
