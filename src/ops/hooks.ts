// What a domain plugs into the operator commands: checks for `coffer doctor` and retention
// rules for `coffer trim`. A domain implements these in its own folder and adds one line to
// src/ops/registry.ts; nothing else in src/ops names a domain's tables.
//
// Both use Coffer's unit of work: a doctor check gets the open Coffer (so it can page through a
// long log in short read transactions, or take one snapshot with coffer.read), a retention rule
// gets the Tx of the read (dry run) or write (apply) transaction the runner opened.
//
// `requires` names the tables (or "table.column") a hook needs: when any is missing from the
// database or from this build's schema (the domain's migrations are not applied yet), the hook
// is skipped with a note instead of failing, so a hook can land before or after its domain.
import type { Coffer } from '../db/store.js';
import type { Tx } from '../db/tx.js';
import type { Dialect } from '../schema/model.js';
import { ValidationError } from '../db/errors.js';

export type Severity = 'ok' | 'info' | 'warning' | 'error';

/** One result of a check. Errors and warnings make `coffer doctor` exit 1. */
export interface Finding {
  severity: Severity;
  /** What was found, in one line. */
  message: string;
  /** What to do about it (required for warnings and errors). */
  remedy?: string;
  details?: Record<string, unknown>;
}

export interface DoctorContext {
  /** The database being examined (opened without migrating). Use coffer.read: doctor never writes. */
  coffer: Coffer;
  dialect: Dialect;
  now: Date;
  /** Tables present in the database. */
  tables: ReadonlySet<string>;
}

export interface DoctorCheck {
  /** "audit.chain": shown in the report and selectable with `coffer doctor --check`. */
  name: string;
  domain: string;
  /** One line: what the check verifies. */
  describe: string;
  /** Tables or "table.column" the check needs; it is skipped (with a note) when any is missing. */
  requires: readonly string[];
  /** Examines the database (read-only) and says what it found; an empty list means nothing to report. */
  run(ctx: DoctorContext): Promise<Finding[]>;
}

export interface RetentionSetting {
  /** "chain.undo.maxBlocksPerBatch": set with `coffer trim --set key=value`. */
  key: string;
  describe: string;
  default: string;
  /** A positive number (or whole number): `coffer trim` checks it before any rule runs. */
  positive?: 'number' | 'integer';
}

export interface RetentionOptions {
  now: Date;
  /** Values given with --set (a rule reads its own keys with settingOf()). */
  settings: Readonly<Record<string, string>>;
  /** Rough upper bound of rows one apply() call should delete (one transaction). */
  batchSize: number;
}

export interface RetentionCount {
  table: string;
  rows: bigint;
  /** E.g. "chain btc: entries at or below finalized height 840000". */
  detail?: string;
}

export interface RetentionRule {
  /** "chain.undo_finalized". */
  name: string;
  domain: string;
  /** One line: what the rule removes and why that is safe. */
  describe: string;
  requires: readonly string[];
  settings?: readonly RetentionSetting[];
  /** What apply() would remove now (the dry run). */
  count(tx: Tx, opts: RetentionOptions): Promise<RetentionCount[]>;
  /**
   * Removes up to about `opts.batchSize` rows in this transaction and returns how many it
   * removed; `coffer trim --apply` calls it again (each call its own write transaction) until
   * it returns 0, so a long trim never holds one huge transaction.
   */
  apply(tx: Tx, opts: RetentionOptions): Promise<number>;
}

/** A rule's setting: the value given with --set, or the setting's default. */
export function settingOf(rule: RetentionRule, opts: RetentionOptions, key: string): string {
  const s = rule.settings?.find((x) => x.key === key);
  if (!s) throw new Error(`retention rule ${rule.name} has no setting ${key}`);
  return opts.settings[key] ?? s.default;
}

/**
 * A setting that must be a positive number (`integer`: a whole one). A bad value given with
 * `--set` is a ValidationError naming it (exit 2), never a silent default.
 */
export function positiveSetting(rule: RetentionRule, opts: RetentionOptions, key: string, integer = false): number {
  const raw = settingOf(rule, opts, key);
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))
    throw new ValidationError(`--set ${key}=${raw}: expected a positive ${integer ? 'whole number' : 'number'}`, { field: key });
  return n;
}
