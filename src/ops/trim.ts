// `coffer trim`: every domain's retention rules (registry.ts), as a dry run by default. With
// --apply each rule deletes in bounded batches, one write transaction per batch, until it has
// nothing left to remove; an interruption stops between batches and leaves nothing half-done.
import { ConfigError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { listTables, opsDb } from './db.js';
import { missingRequirements } from './doctor.js';
import { InterruptedError } from './errors.js';
import { positiveSetting, type RetentionCount, type RetentionOptions, type RetentionRule } from './hooks.js';
import { SilentProgress, type Progress } from './progress.js';
import { RETENTION_RULES } from './registry.js';

export interface TrimOptions {
  /** Delete (default: only count what would be deleted). */
  apply?: boolean;
  rules?: readonly RetentionRule[];
  /** Run only these rules. */
  only?: readonly string[];
  settings?: Record<string, string>;
  batchSize?: number;
  now?: Date;
  signal?: AbortSignal;
  progress?: Progress;
}

export interface TrimRuleReport {
  rule: string;
  domain: string;
  describe: string;
  /** Why the rule did not run (its tables are missing). */
  skipped?: string;
  /** What the rule would remove (dry run) or found before removing (--apply). */
  due: { table: string; rows: string; detail?: string }[];
  /** Rows removed (--apply), or null in a dry run. */
  removed: number | null;
}

export interface TrimReport {
  applied: boolean;
  rules: TrimRuleReport[];
}

export async function runTrim(coffer: Coffer, opts: TrimOptions = {}): Promise<TrimReport> {
  const rules = opts.rules ?? RETENTION_RULES;
  const progress = opts.progress ?? new SilentProgress();
  for (const o of opts.only ?? []) {
    if (!rules.some((r) => r.name === o))
      throw new ConfigError(`unknown retention rule ${o} (known: ${rules.map((r) => r.name).join(', ') || 'none'})`, { field: 'rule' });
  }
  const selected = rules.filter((r) => !opts.only?.length || opts.only.includes(r.name));
  const keys = new Set(selected.flatMap((r) => (r.settings ?? []).map((s) => s.key)));
  for (const k of Object.keys(opts.settings ?? {})) {
    if (!keys.has(k))
      throw new ConfigError(`unknown retention setting ${k} (settings of the selected rules: ${[...keys].join(', ') || 'none'})`, {
        field: 'set',
      });
  }
  const ropts: RetentionOptions = { now: opts.now ?? new Date(), settings: opts.settings ?? {}, batchSize: opts.batchSize ?? 1000 };
  // Every setting is checked before any rule counts or removes anything.
  for (const rule of selected)
    for (const s of rule.settings ?? []) if (s.positive) positiveSetting(rule, ropts, s.key, s.positive === 'integer');
  const db = opsDb(coffer);
  const present = await listTables(db.reader, db.dialect);
  const out: TrimRuleReport[] = [];
  for (const rule of selected) {
    const report: TrimRuleReport = { rule: rule.name, domain: rule.domain, describe: rule.describe, due: [], removed: null };
    out.push(report);
    const missing = missingRequirements(rule.requires, coffer.schema, present);
    if (missing.length) {
      report.skipped = `needs ${missing.join(', ')}, which this database does not have yet`;
      continue;
    }
    const due: RetentionCount[] = await coffer.read((tx) => rule.count(tx, ropts), { op: `ops.trim.count.${rule.name}` });
    report.due = due.map((d) => ({ table: d.table, rows: d.rows.toString(), ...(d.detail ? { detail: d.detail } : {}) }));
    if (!opts.apply) continue;
    const total = due.reduce((n, d) => n + Number(d.rows), 0);
    progress.phase(`trim ${rule.name}`, total);
    let removed = 0;
    for (;;) {
      if (opts.signal?.aborted) {
        throw new InterruptedError(
          `trim stopped after removing ${removed} row(s) with ${rule.name}; every completed batch stands; run coffer trim --apply again to continue`,
        );
      }
      const n = await coffer.write((tx) => rule.apply(tx, ropts), { op: `ops.trim.apply.${rule.name}` });
      if (n <= 0) break;
      removed += n;
      progress.add(n, 0, due[0]?.table);
    }
    progress.done();
    report.removed = removed;
  }
  return { applied: Boolean(opts.apply), rules: out };
}
