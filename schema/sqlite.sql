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
