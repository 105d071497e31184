// Operator commands: backup, restore, copy, maintain, stats, sizes, doctor, trim. Logic lives in
// src/ops; this file parses flags, opens databases, shows progress (a bar on a terminal, plain
// lines otherwise, JSON lines with --json), turns Ctrl-C into a clean stop, and prints results.
// docs/operations.md is the runbook.
import type { Command } from '@commander-js/extra-typings';
import { pino, type Logger } from 'pino';
import { loadConfig, type CofferConfig } from '../config/config.js';
import { ValidationError } from '../db/errors.js';
import { Coffer } from '../db/store.js';
import { redactUrl } from '../db/url.js';
import { backupDatabase, type BackupFormat } from '../ops/backup.js';
import { compareDatabases, copyInto, DEFAULT_BATCH_SIZE } from '../ops/copy.js';
import { dropScratchOnSignal, runDoctor, type DoctorReport } from '../ops/doctor.js';
import { requireExistingDatabase } from './existing-db.js';
import { InterruptedError } from '../ops/errors.js';
import { maintainDatabase } from '../ops/maintain.js';
import { createProgress, formatBytes, formatDuration, type Progress } from '../ops/progress.js';
import { restoreInto } from '../ops/restore.js';
import { collectStats, objectSizes } from '../ops/sizes.js';
import { runTrim } from '../ops/trim.js';

const DB_HELP = 'database URL (sqlite:PATH, memory://, postgres://…, mysql://…)';
const CONFIG_HELP = 'JSON config file (default: ./coffer.config.json if present)';

function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

const toJson = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x), 2);
const num = (n: number) => n.toLocaleString('en-US');
const bytes = (n: number | null) => (n === null ? '?' : formatBytes(n));

function configFor(opts: { config?: string }, url: string | undefined): CofferConfig {
  return loadConfig({ configFile: opts.config, flags: { 'database.url': url } });
}

function cliLogger(config: CofferConfig): Logger {
  return pino({ level: config.log.level === 'info' ? 'warn' : config.log.level }, pino.destination(2));
}

/**
 * Opens a database without migrating it (operator commands decide that themselves). It must
 * exist unless the command creates it (`create`); `flag` names the option in the error.
 */
async function open(opts: { config?: string }, url: string | undefined, flag = '--db', create = false): Promise<Coffer> {
  const config = configFor(opts, url);
  if (!create) requireExistingDatabase(config, flag);
  return Coffer.open({ config, migrate: 'skip', logger: cliLogger(config) });
}

function batchSize(v: string | undefined): number {
  if (v === undefined) return DEFAULT_BATCH_SIZE;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 100_000)
    throw new ValidationError('--batch-size: expected a whole number from 1 to 100000', { field: 'batch-size' });
  return n;
}

function throttle(): number | undefined {
  const n = Number(process.env.COFFER_OPS_THROTTLE_MS);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/**
 * Runs a long operation with Ctrl-C / SIGTERM turned into a clean stop: the first signal asks
 * the operation to stop after its current batch (it then says what it left behind, exit 130);
 * a second one exits at once (targets are marked incomplete before anything is written, and a
 * batch is one transaction, so even that leaves nothing silently partial).
 */
async function interruptible(progress: Progress | null, fn: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const ac = new AbortController();
  let count = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    count++;
    if (count === 1) {
      process.stderr.write(`\ncoffer: ${sig}: stopping after the current step (repeat to stop at once)\n`);
      ac.abort();
    } else {
      process.stderr.write('coffer: stopping now\n');
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await fn(ac.signal);
  } catch (e) {
    if (e instanceof InterruptedError) {
      process.stderr.write(`coffer: interrupted: ${e.message}\n`);
      process.exitCode = 130;
      return;
    }
    throw e;
  } finally {
    progress?.done();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function closeAll(...cs: (Coffer | undefined)[]): Promise<void> {
  for (const c of cs) await c?.close().catch(() => {});
}

function printDoctor(r: DoctorReport): void {
  out(`doctor: ${r.database} (${r.server})`);
  const label: Record<string, string> = { ok: 'ok     ', info: 'info   ', warning: 'WARNING', error: 'ERROR  ' };
  for (const f of r.findings) {
    out(`  ${label[f.severity]} ${f.check.padEnd(14)} ${f.message}`);
    if (f.remedy && f.severity !== 'ok') out(`  ${' '.repeat(7)} ${' '.repeat(14)} → ${f.remedy}`);
  }
  out(`summary: ${r.counts.error} error(s), ${r.counts.warning} warning(s), ${r.counts.info} note(s)${r.ok ? ' — healthy' : ''}`);
}

let pipeGuard = false;

export function registerOpsCommands(program: Command): void {
  if (!pipeGuard) {
    pipeGuard = true;
    // `coffer sizes | head`: a closed pipe ends the output, it is not an error.
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  program
    .command('backup')
    .description('consistent snapshot of a live database, with a manifest to verify restores against')
    .requiredOption(
      '--to <file>',
      'backup file to create (never overwritten; FILE.manifest.json is written beside it), or - for stdout (logical format)',
    )
    .option(
      '--format <format>',
      'auto (native tool where available), native (pg_dump / mysqldump / SQLite backup API) or logical (portable)',
      'auto',
    )
    .option('--batch-size <n>', 'rows per read for the logical format and checksums')
    .option('--force', 'back up even a database marked as an incomplete copy/restore target')
    .option('--json', 'machine-readable output (progress as JSON lines on stderr)')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      if (!['auto', 'native', 'logical'].includes(opts.format))
        throw new ValidationError('--format: expected auto, native or logical', { field: 'format' });
      const bs = batchSize(opts.batchSize);
      const progress = createProgress({ json: opts.json });
      const coffer = await open(opts, opts.db);
      try {
        await interruptible(progress, async (signal) => {
          const r = await backupDatabase(coffer, opts.to, {
            format: opts.format as BackupFormat,
            batchSize: bs,
            force: opts.force,
            signal,
            progress,
          });
          // Written to stdout itself: the summary goes to stderr so the stream stays clean.
          const say = r.manifestFile
            ? out
            : (line: string) => {
                process.stderr.write(`${line}\n`);
              };
          if (opts.json) return say(toJson(r));
          say(`backup complete: ${r.file} (${r.kind}${r.bytes ? `, ${bytes(r.bytes)}` : ''}, ${formatDuration(r.elapsedMs / 1000)})`);
          if (r.manifestFile) say(`manifest:        ${r.manifestFile}`);
          say(`contents:        ${r.tables.length} tables, ${num(r.rows)} rows${r.sha256 ? `; sha256 ${r.sha256}` : ''}`);
          for (const n of r.notes) say(`note: ${n}`);
        });
      } finally {
        await closeAll(coffer);
      }
    });

  program
    .command('restore')
    .description('restore a backup into an empty database, then verify it against the manifest')
    .requiredOption('--from <file>', 'backup file (logical, SQLite, pg_dump or mysqldump)')
    .requiredOption('--to <url>', 'database to restore into (must be empty, or hold an interrupted restore of the same backup)')
    .option('--force', 'replace the Coffer tables of a non-empty database')
    .option('--discard', 'throw away an incomplete copy/restore found in the target and start over')
    .option('--no-verify', 'skip the verification against the manifest')
    .option('--batch-size <n>', 'rows per batch (logical and SQLite backups)')
    .option('--json', 'machine-readable output (progress as JSON lines on stderr)')
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      // Every flag, the backup file and what it holds are checked before the target is opened
      // (restoreInto): opening a SQLite target creates it, and a bad --from must not leave an
      // empty new database. A SQLite file the restore created is removed if it then fails.
      const bs = batchSize(opts.batchSize);
      const url = configFor(opts, opts.to).database.url;
      const progress = createProgress({ json: opts.json });
      await interruptible(progress, async (signal) => {
        const r = await restoreInto(
          opts.from,
          { url, open: () => open(opts, opts.to, '--to', true) },
          {
            force: opts.force,
            discard: opts.discard,
            verify: opts.verify,
            batchSize: bs,
            signal,
            progress,
            throttleMs: throttle(),
          },
        );
        if (opts.json) return out(toJson(r));
        const rows = r.tables.reduce((n, t) => n + t.rows, 0);
        const verified =
          r.verifiedAgainst === 'manifest'
            ? 'verified against the manifest'
            : r.verifiedAgainst === 'backup file'
              ? 'verified against the backup file (no manifest beside it)'
              : 'NOT verified (--no-verify)';
        out(
          `restored ${r.file} (${r.kind}) into ${r.target}: ${num(rows)} rows in ${r.tables.length} tables${r.resumed ? ' (resumed)' : ''}, ${verified} (${formatDuration(r.elapsedMs / 1000)})`,
        );
        for (const n of r.notes) out(`note: ${n}`);
      });
    });

  program
    .command('copy')
    .description('copy a database to another backend (e.g. SQLite to PostgreSQL), resumable, then verified')
    .requiredOption('--from <url>', 'source database (left untouched)')
    .requiredOption('--to <url>', 'target database (must be empty, or hold an interrupted copy from the same source)')
    .option('--batch-size <n>', `rows per batch and per target transaction (default ${DEFAULT_BATCH_SIZE})`)
    .option('--discard', 'throw away an incomplete copy found in the target and start over')
    .option('--force', 'replace the Coffer tables of a non-empty target')
    .option('--no-verify', 'skip the row-count and checksum verification')
    .option(
      '--verify-only',
      'copy nothing: compare the two databases table by table (exit 1 when their rows differ, 3 when their migration histories do)',
    )
    .option('--json', 'machine-readable output (progress as JSON lines on stderr)')
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const progress = createProgress({ json: opts.json });
      const bs = batchSize(opts.batchSize);
      if (opts.verifyOnly) {
        let a: Coffer | undefined;
        let b: Coffer | undefined;
        try {
          a = await open(opts, opts.from, '--from');
          b = await open(opts, opts.to, '--to');
          const x = a;
          const y = b;
          await interruptible(progress, async (signal) => {
            const r = await compareDatabases(x, y, { batchSize: bs, progress, signal });
            if (opts.json) out(toJson(r));
            else {
              for (const tb of r.tables) out(`  ${tb.table.padEnd(32)} ${num(tb.rows).padStart(12)} rows  ${tb.checksum?.slice(0, 16)}…`);
              out(r.equal ? `${r.source} and ${r.target} hold the same rows` : `DIFFERENT:\n  ${r.problems.join('\n  ')}`);
            }
            if (!r.equal) process.exitCode = 1;
          });
        } finally {
          await closeAll(a, b);
        }
        return;
      }
      // The source and every flag are checked before the target is opened (copyInto): opening a
      // SQLite target creates it, and a bad --from must not leave an empty new database. A
      // SQLite file the copy created is removed if it then fails.
      const url = configFor(opts, opts.to).database.url;
      let source: Coffer | undefined;
      try {
        source = await open(opts, opts.from, '--from');
        const s = source;
        await interruptible(progress, async (signal) => {
          const r = await copyInto(
            s,
            { url, open: () => open(opts, opts.to, '--to', true) },
            {
              batchSize: bs,
              discard: opts.discard,
              force: opts.force,
              verify: opts.verify,
              signal,
              progress,
              throttleMs: throttle(),
            },
          );
          if (opts.json) return out(toJson(r));
          out(
            `copied ${redactUrl(r.source)} → ${redactUrl(r.target)}: ${num(r.rowsCopied)} rows written${r.resumed ? ' (resumed)' : ''}, ${formatBytes(r.bytes)}, ${formatDuration(r.elapsedMs / 1000)}`,
          );
          if (r.verified) {
            for (const tb of r.tables) out(`  ${tb.table.padEnd(32)} ${num(tb.rows).padStart(12)} rows  ${tb.checksum?.slice(0, 16)}…`);
            out('verified: row counts and content checksums match on both sides');
          } else out('NOT verified (--no-verify)');
        });
      } finally {
        await closeAll(source);
      }
    });

  program
    .command('maintain')
    .description('VACUUM/ANALYZE/REINDEX (PostgreSQL), ANALYZE/OPTIMIZE (MySQL), optimize/VACUUM/checkpoint (SQLite)')
    .option('--full', 'PostgreSQL: VACUUM FULL (rewrites each table under an exclusive lock; for a quiet hour)')
    .option('--no-reindex', 'PostgreSQL: skip REINDEX')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const coffer = await open(opts, opts.db);
      try {
        await interruptible(null, async (signal) => {
          const r = await maintainDatabase(coffer, {
            full: opts.full,
            reindex: opts.reindex,
            signal,
            onStep: opts.json
              ? undefined
              : (s) =>
                  out(
                    `${s.ok ? 'ok    ' : 'FAILED'} ${s.step.padEnd(32)} ${s.target.padEnd(28)} ${String(s.ms).padStart(7)} ms${s.detail ? `  ${s.detail}` : ''}`,
                  ),
          });
          if (opts.json) out(toJson(r));
          else
            out(
              `${r.database}: ${bytes(r.bytesBefore)} before, ${bytes(r.bytesAfter)} after; ${r.steps.filter((s) => s.ok).length} of ${r.steps.length} step(s) ok`,
            );
          if (!r.ok) {
            process.stderr.write(
              `coffer: error: ${r.steps.filter((s) => !s.ok).length} maintenance step(s) failed (see above); run coffer maintain again when the database is quieter\n`,
            );
            process.exitCode = 1;
          }
        });
      } finally {
        await closeAll(coffer);
      }
    });

  program
    .command('stats')
    .description('rows and bytes per table (data and indexes), largest first')
    .option('--estimate', 'PostgreSQL/MySQL: catalogue row estimates instead of COUNT(*)')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const coffer = await open(opts, opts.db);
      try {
        const r = await collectStats(coffer, { estimate: opts.estimate });
        if (opts.json) return out(toJson(r));
        out(`${r.database} (${r.backend}): ${bytes(r.totalBytes)} in all`);
        out(`${'table'.padEnd(32)} ${'rows'.padStart(14)} ${'data'.padStart(10)} ${'indexes'.padStart(10)} ${'total'.padStart(10)}`);
        for (const t of r.tables)
          out(
            `${t.table.padEnd(32)} ${`${t.rowsEstimated ? '~' : ''}${num(t.rows)}`.padStart(14)} ${bytes(t.dataBytes).padStart(10)} ${bytes(t.indexBytes).padStart(10)} ${bytes(t.totalBytes).padStart(10)}`,
          );
        for (const n of r.notes) out(`note: ${n}`);
      } finally {
        await closeAll(coffer);
      }
    });

  program
    .command('sizes')
    .description('every table and index with its size, largest first')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const coffer = await open(opts, opts.db);
      try {
        const stats = await collectStats(coffer, { estimate: true });
        const objs = objectSizes(stats);
        if (opts.json)
          return out(
            toJson({ backend: stats.backend, database: stats.database, totalBytes: stats.totalBytes, objects: objs, notes: stats.notes }),
          );
        out(`${stats.database} (${stats.backend}): ${bytes(stats.totalBytes)} in all`);
        out(`${'kind'.padEnd(6)} ${'name'.padEnd(44)} ${'table'.padEnd(28)} ${'bytes'.padStart(10)}`);
        for (const o of objs) out(`${o.kind.padEnd(6)} ${o.name.padEnd(44)} ${o.table.padEnd(28)} ${bytes(o.bytes).padStart(10)}`);
        for (const n of stats.notes) out(`note: ${n}`);
      } finally {
        await closeAll(coffer);
      }
    });

  program
    .command('doctor')
    .description(
      'integrity, schema parity, migration drift, unused indexes, stale statistics and dead rows (upkeep), long queries, lock waits and domain checks; exit 1 when something is wrong',
    )
    .option('--check <names...>', 'run only these checks')
    .option('--long-query-seconds <n>', 'report statements and open transactions older than this', '60')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const seconds = Number(opts.longQuerySeconds);
      if (!Number.isFinite(seconds) || seconds < 0)
        throw new ValidationError('--long-query-seconds: expected a number of seconds', { field: 'long-query-seconds' });
      const coffer = await open(opts, opts.db);
      try {
        const r = await runDoctor(coffer, { only: opts.check, longQuerySeconds: seconds, onScratch: dropScratchOnSignal() });
        if (opts.json) out(toJson(r));
        else printDoctor(r);
        if (!r.ok) process.exitCode = 1;
      } finally {
        await closeAll(coffer);
      }
    });

  program
    .command('trim')
    .description("apply every domain's retention rules (a dry run unless --apply)")
    .option('--apply', 'delete (default: only report what would be deleted)')
    .option('--rule <names...>', 'run only these rules')
    .option('--set <key=value...>', 'a rule setting, e.g. chain.undo.blocksPerBatch=500')
    .option('--batch-size <n>', 'rows per delete transaction (a hint to each rule)')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const settings: Record<string, string> = {};
      for (const kv of opts.set ?? []) {
        const i = kv.indexOf('=');
        if (i <= 0) throw new ValidationError(`--set ${kv}: expected key=value`, { field: 'set' });
        settings[kv.slice(0, i)] = kv.slice(i + 1);
      }
      const bs = batchSize(opts.batchSize);
      const progress = createProgress({ json: opts.json });
      const coffer = await open(opts, opts.db);
      try {
        await interruptible(progress, async (signal) => {
          const r = await runTrim(coffer, {
            apply: opts.apply,
            only: opts.rule,
            settings,
            batchSize: bs,
            signal,
            progress,
          });
          if (opts.json) return out(toJson(r));
          out(r.applied ? 'trim (applied):' : 'trim (dry run; add --apply to delete):');
          for (const rule of r.rules) {
            out(`  ${rule.rule} [${rule.domain}]: ${rule.describe}`);
            if (rule.skipped) out(`    skipped: ${rule.skipped}`);
            else if (!rule.due.length) out('    nothing to remove');
            for (const d of rule.due)
              out(`    ${r.applied ? 'found' : 'would remove'} ${d.rows} row(s) from ${d.table}${d.detail ? ` (${d.detail})` : ''}`);
            if (rule.removed !== null) out(`    removed ${rule.removed} row(s)`);
          }
        });
      } finally {
        await closeAll(coffer);
      }
    });
}
