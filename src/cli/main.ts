// The `coffer` command line. Every command takes --db and --config; failures print one line
// naming what failed and exit non-zero (2 for bad configuration or an unreachable database,
// 3 for a migration refusal).
import { Command } from '@commander-js/extra-typings';
import { pino, type Logger } from 'pino';
import { loadConfig, redactConfig, type CofferConfig } from '../config/config.js';
import { CofferError } from '../db/errors.js';
import { Coffer } from '../db/store.js';
import { redactUrl } from '../db/url.js';
import { MIGRATIONS } from '../domains/registry.js';
import { staleSnapshots, writeSnapshots } from '../schema/snapshot.js';
import { tableRowCounts } from './table-counts.js';
import { ChainRouter } from '../domains/chain/router.js';
import { chainDatabaseStatus } from '../domains/chain/router.js';
import { serve } from './serve.js';
import { registerIdentityCommands } from './identity-commands.js';
import { registerAuditCommands } from './audit-commands.js';
import { registerSecretsCommands } from './secrets-commands.js';
import { registerOpsCommands } from './ops-commands.js';

export class ExitError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

interface CommonOpts {
  db?: string;
  config?: string;
}

const DB_HELP = 'database URL (sqlite:PATH, memory://, postgres://…, mysql://…)';
const CONFIG_HELP = 'JSON config file (default: ./coffer.config.json if present)';

function configFrom(opts: CommonOpts, flags: Record<string, unknown> = {}): CofferConfig {
  return loadConfig({ configFile: opts.config, flags: { 'database.url': opts.db, ...flags } });
}

/**
 * --db and --config of a subcommand whose parent takes them too (`coffer migrate --db URL
 * status`): with positional options the parent keeps what comes before the subcommand's name,
 * so the subcommand reads both. The same flag given twice with different values is refused.
 */
function commonOf(own: CommonOpts, parent: CommonOpts, subcommand: string): CommonOpts {
  const out: CommonOpts = {};
  for (const k of ['db', 'config'] as const) {
    const a = parent[k];
    const b = own[k];
    const show = (v: string) => (k === 'db' ? redactUrl(v) : v);
    if (a !== undefined && b !== undefined && a !== b)
      throw new ExitError(`--${k} is given twice, before and after "${subcommand}" (${show(a)} and ${show(b)}): give it once`, 2);
    const v = b ?? a;
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function cliLogger(config: CofferConfig): Logger {
  // CLI logs go to stderr so stdout stays clean for --json and --dry-run output.
  return pino({ level: config.log.level === 'info' ? 'warn' : config.log.level }, pino.destination(2));
}

function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

export function buildProgram(): Command {
  const program = new Command('coffer')
    .description('Coffer: the system of record for digital-asset backends, on SQLite, PostgreSQL, MySQL/MariaDB and memory.')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions()
    .exitOverride();

  program
    .command('serve')
    .description('migrate, then serve the HTTP API, /health, /ready and /metrics')
    .option('--host <host>', 'address to listen on (default 127.0.0.1, env COFFER_HOST)')
    .option('--port <port>', 'port to listen on (default 8080, env COFFER_PORT)')
    .option('--no-migrate', 'refuse to start if migrations are pending instead of applying them')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const config = configFrom(opts, {
        'server.host': opts.host,
        'server.port': opts.port,
        ...(opts.migrate === false ? { 'migrate.auto': false } : {}),
      });
      await serve(config);
    });

  const migrate = program
    .command('migrate')
    .description('apply pending migrations (forward only, each exactly once)')
    .option('--dry-run', 'print the SQL that would run for this database, and change nothing')
    .enablePositionalOptions()
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const config = configFrom(opts);
      // Every database of the configuration: the default and each per-chain database.
      const router = await ChainRouter.open(config, { migrate: 'skip', logger: cliLogger(config) });
      try {
        const dbs = router.databases();
        for (const db of dbs) {
          const where =
            dbs.length > 1 ? `${db.url} (${db.isDefault ? 'default' : `chains ${db.chains.join(', ')}`})` : db.coffer.engine.label;
          if (opts.dryRun) {
            if (dbs.length > 1) out(`-- database ${where}`);
            process.stdout.write(await db.coffer.migrator.plan());
            continue;
          }
          const applied = await db.coffer.migrator.apply({
            onWaitingForLock: () => out(`waiting for another process that holds the migration lock on ${where}…`),
            onStart: (m) => process.stdout.write(`applying ${m.domain}/${String(m.version).padStart(4, '0')}_${m.name} … `),
            onApplied: (_m, ms) => out(`done (${ms} ms)`),
          });
          const total = db.coffer.migrator.migrations.length;
          out(
            applied.length
              ? `applied ${applied.length} migration(s); ${total} current on ${where}`
              : `nothing to apply; ${total} migration(s) current on ${where}`,
          );
        }
      } finally {
        await router.close();
      }
    });

  migrate
    .command('status')
    .description('list every migration and whether it is applied')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const config = configFrom(commonOf(opts, migrate.opts(), 'status'));
      const coffer = await Coffer.open({ config, migrate: 'skip', logger: cliLogger(config) });
      try {
        const states = await coffer.migrator.status();
        if (opts.json) {
          out(JSON.stringify(states, null, 2));
        } else {
          for (const s of states) {
            out(
              `${s.state.padEnd(8)} ${s.id.padEnd(32)} ${s.appliedAt ? s.appliedAt.toISOString() : ''}${s.durationMs !== null ? ` (${s.durationMs} ms)` : ''}`,
            );
          }
        }
        const bad = states.filter((s) => s.state === 'edited' || s.state === 'unknown');
        if (bad.length)
          throw new ExitError(
            `migration history does not match the code: ${bad.map((b) => `${b.id}${b.file ? ` (${b.file})` : ''} is ${b.state === 'edited' ? 'edited after it was applied' : 'unknown to this build'}`).join(', ')}`,
            3,
          );
      } finally {
        await coffer.close();
      }
    });

  program
    .command('status')
    .description('backend, server version, migration state and row counts')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const config = configFrom(opts);
      const coffer = await Coffer.open({ config, migrate: 'skip', logger: cliLogger(config) });
      try {
        const states = await coffer.migrator.status();
        const counts = await tableRowCounts(coffer);
        const report = {
          backend: coffer.engine.label,
          url: redactUrl(config.database.url),
          server: await coffer.engine.serverVersion(),
          migrations: {
            applied: states.filter((s) => s.state === 'applied').length,
            pending: states.filter((s) => s.state === 'pending' || s.state === 'running').map((s) => s.id),
            problems: states.filter((s) => s.state === 'edited' || s.state === 'unknown').map((s) => `${s.id}: ${s.state}`),
          },
          tables: counts,
          chainDatabases: await chainDatabaseStatus(config, { logger: cliLogger(config) }),
        };
        if (opts.json) out(JSON.stringify(report, null, 2));
        else {
          out(`backend     ${report.backend} (${report.server})`);
          out(`database    ${report.url}`);
          out(
            `migrations  ${report.migrations.applied} applied, ${report.migrations.pending.length} pending${report.migrations.pending.length ? ` (${report.migrations.pending.join(', ')})` : ''}`,
          );
          for (const p of report.migrations.problems) out(`  problem: ${p}`);
          out('tables');
          for (const [t, n] of Object.entries(counts)) out(`  ${t.padEnd(32)} ${n === null ? '(missing)' : n}`);
          if (report.chainDatabases.length) out('chain databases');
          for (const d of report.chainDatabases) {
            const m = d.migrations ? `${d.migrations.applied} applied, ${d.migrations.pending.length} pending` : `error: ${d.error}`;
            out(`  ${d.url} (${d.backend ?? 'unreachable'}; ${m})`);
            for (const c of d.chains)
              out(
                `    ${c.chainId.padEnd(30)} ${c.registered ? `height ${c.height ?? '-'}, finalized ${c.finalizedHeight ?? '-'}, lag ${c.lag ?? '-'}` : '(not registered)'}`,
              );
          }
        }
      } finally {
        await coffer.close();
      }
    });

  program
    .command('config')
    .description('print the effective configuration (passwords redacted)')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      out(JSON.stringify(redactConfig(configFrom(opts)), null, 2));
    });

  program
    .command('schema')
    .description('write or check the schema snapshots (schema/postgres.sql, mysql.sql, sqlite.sql)')
    .option('--write', 'regenerate the snapshot files')
    .option('--check', 'fail when a snapshot differs from what the migrations generate')
    .option('--dir <dir>', 'snapshot folder', 'schema')
    .action(async (opts) => {
      if (opts.write) {
        for (const f of writeSnapshots(opts.dir, MIGRATIONS)) out(`wrote ${f}`);
        return;
      }
      const stale = staleSnapshots(opts.dir, MIGRATIONS);
      if (stale.length) throw new ExitError(`schema snapshots out of date: ${stale.join(', ')} (run \`coffer schema --write\`)`, 1);
      out('schema snapshots are current');
    });

  registerIdentityCommands(program);
  registerAuditCommands(program);
  registerSecretsCommands(program);
  registerOpsCommands(program);

  return program;
}

/** Exit code for an error: 2 for configuration and connection problems, 3 for migrations. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof ExitError) return e.exitCode;
  if (e instanceof CofferError) {
    if (e.code === 'config' || e.code === 'connection' || e.code === 'validation') return 2;
    if (e.code === 'migration') return 3;
  }
  return 1;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    const ce = e as { code?: string; exitCode?: number };
    if (typeof ce.code === 'string' && ce.code.startsWith('commander.')) {
      // Help and version exit 0; usage errors were already printed by commander.
      process.exitCode = ce.exitCode === 0 ? 0 : 2;
      return;
    }
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`coffer: error: ${message}\n`);
    if (process.env.COFFER_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exitCode = exitCodeFor(e);
  }
}
