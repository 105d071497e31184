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
