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
import { isStorableTime } from '../util/zod-parse.js';

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
  /**
   * The value is an age in this unit that the rule subtracts from now (a cutoff for a timestamp
   * column): a value reaching back before the year 1000, which no backend stores, is refused by
   * name. Taken from the key when it ends in Seconds, Minutes, Hours or Days ("maxAgeHours").
   */
  age?: AgeUnit;
}

export type AgeUnit = 'seconds' | 'minutes' | 'hours' | 'days';

const AGE_MS: Record<AgeUnit, number> = { seconds: 1000, minutes: 60_000, hours: 3_600_000, days: 86_400_000 };

// The earliest time isStorableTime accepts (src/util/zod-parse.ts), for the message.
const EARLIEST_STORABLE = Date.UTC(1000, 0, 1);

/** The unit of an age setting: declared, or the key's suffix. */
function ageUnit(s: RetentionSetting): AgeUnit | undefined {
  if (s.age) return s.age;
  const m = /(Seconds|Minutes|Hours|Days)$/.exec(s.key);
  return m ? (m[1]!.toLowerCase() as AgeUnit) : undefined;
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
  const unit = ageUnit(rule.settings!.find((x) => x.key === key)!);
  // An age past what a timestamp holds would otherwise fail inside the rule's query, naming
  // its column instead of the setting.
  if (unit && !isStorableTime(opts.now.getTime() - n * AGE_MS[unit])) {
    const most = Math.floor((opts.now.getTime() - EARLIEST_STORABLE) / AGE_MS[unit]);
    throw new ValidationError(
      `--set ${key}=${raw}: an age of at most ${most} ${unit} (older cutoffs reach back before the year 1000, which no backend stores)`,
      { field: key },
    );
  }
  return n;
}
