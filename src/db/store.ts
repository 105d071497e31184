// Coffer's unit of work: `coffer.write(tx => …)` and `coffer.read(tx => …)`. Each call is one
// transaction; retryable conflicts (serialization failure, deadlock, busy) re-run the whole
// callback with bounded backoff, and every driver error leaves as a typed CofferError.
import { pino, type Logger } from 'pino';
import type { CofferConfig } from '../config/config.js';
import { MIGRATIONS } from '../domains/registry.js';
import type { Migration } from '../migrations/migration.js';
import { logicalSchema, Migrator } from '../migrations/runner.js';
import type { Step } from '../schema/compile.js';
import type { Dialect, Schema } from '../schema/model.js';
import type { TableCodec } from './codec.js';
import { isRetryable, mapDriverError } from './driver-errors.js';
import { openEngine, type Engine, type EngineSettings } from './engine.js';
import { CofferError, MigrationError } from './errors.js';
import { StoreMetrics } from './metrics.js';
import { ClosableConnection, Tx, type TxConnection, type TxKind } from './tx.js';
import { parseDatabaseUrl, type DbTarget } from './url.js';

export interface OpenOptions {
  /** Database URL; defaults to config.database.url. */
  url?: string;
  config?: CofferConfig;
  settings?: Partial<EngineSettings>;
  /** Defaults to every domain's migrations. */
  migrations?: readonly Migration[];
  /** apply: migrate on open (the service's default); verify: refuse if anything is pending or edited; skip: neither (status and repair tools). */
  migrate?: 'apply' | 'verify' | 'skip';
  logger?: Logger;
  metrics?: StoreMetrics;
  /** Name of this database in metrics (default: the backend label). */
  name?: string;
  /** Test hook, see Migrator. */
  rewriteSteps?: (d: Dialect, m: Migration, steps: Step[]) => Step[];
}

export interface TxOptions {
  /** Operation name for metrics and logs, e.g. "chain.ingestBlock". */
  op?: string;
  /** Attempts in all, including the first (default 8). */
  maxAttempts?: number;
}

const DEFAULT_ATTEMPTS = 8;

function settingsFrom(config: CofferConfig | undefined): Partial<EngineSettings> {
  if (!config) return {};
  const d = config.database;
  return {
    sqliteSynchronous: d.sqliteSynchronous,
    busyTimeoutMs: d.busyTimeoutMs,
    statementTimeoutMs: d.statementTimeoutMs,
    lockTimeoutMs: d.lockTimeoutMs,
    poolMax: d.poolMax,
    poolIdleTimeoutMs: d.poolIdleTimeoutMs,
    connectTimeoutMs: d.connectTimeoutMs,
    applicationName: d.applicationName,
  };
}

/**
 * Runs the caller's function, then closes its Tx before the engine sends COMMIT or ROLLBACK; a
 * statement failure the function caught without a savepoint rolls it back (Tx.beforeStatement).
 */
async function runThenClose<T>(tx: Tx, fn: (tx: Tx) => Promise<T>): Promise<T> {
  try {
    const result = await fn(tx);
    tx.assertNotFailed();
    return result;
  } finally {
    tx.close();
  }
}

export class Coffer {
  readonly engine: Engine;
  readonly target: DbTarget;
  readonly migrator: Migrator;
  readonly schema: Schema;
  readonly metrics: StoreMetrics;
  readonly logger: Logger;
  readonly name: string;
  readonly #codecs = new Map<string, TableCodec>();
  #closed = false;

  private constructor(engine: Engine, migrator: Migrator, schema: Schema, metrics: StoreMetrics, logger: Logger, name: string) {
    this.engine = engine;
    this.target = engine.target;
    this.migrator = migrator;
    this.schema = schema;
    this.metrics = metrics;
    this.logger = logger;
    this.name = name;
  }

  static async open(opts: OpenOptions = {}): Promise<Coffer> {
    const url = opts.url ?? opts.config?.database.url;
    if (!url) throw new CofferError('config', 'no database URL given');
    const target = parseDatabaseUrl(url);
    const logger = opts.logger ?? pino({ level: 'silent' });
    const migrations = opts.migrations ?? MIGRATIONS;
    const schema = logicalSchema(migrations);
    const engine = await openEngine(target, { ...settingsFrom(opts.config), ...opts.settings }, (e) =>
      logger.warn({ err: (e as Error).message }, 'database connection error (the pool will replace the connection)'),
    );
    const metrics = opts.metrics ?? new StoreMetrics();
    const name = opts.name ?? engine.label;
    const migrator = new Migrator(engine, migrations, { rewriteSteps: opts.rewriteSteps });
    const coffer = new Coffer(engine, migrator, schema, metrics, logger, name);
    try {
      const mode = opts.migrate ?? 'apply';
      if (mode === 'apply') {
        const applied = await migrator.apply({
          onWaitingForLock: () => logger.info('waiting for another process to finish migrating'),
          onApplied: (m, ms) => logger.info({ migration: `${m.domain}/${m.version}`, ms }, 'migration applied'),
        });
        if (applied.length) logger.info({ count: applied.length }, 'migrations applied');
      } else if (mode === 'verify') {
        const pending = await migrator.verify();
        if (pending.length) {
          throw new MigrationError(
            `${pending.length} migration(s) pending (${pending.map((p) => p.id).join(', ')}) and migrations are disabled: run \`coffer migrate\` first`,
            { pending: pending.map((p) => p.id) },
          );
        }
      }
    } catch (e) {
      await engine.close().catch(() => {});
      throw mapDriverError(target.backend, e);
    }
    metrics.addPool(name, () => engine.poolStats());
    return coffer;
  }

  get dialect(): Dialect {
    return this.engine.dialect;
  }

  /** Runs `fn` in one write transaction and commits; re-runs it on a retryable conflict. */
  write<T>(fn: (tx: Tx) => Promise<T>, opts: TxOptions = {}): Promise<T> {
    return this.#run('write', fn, opts);
  }

  /** Runs `fn` in one read-only transaction (a consistent snapshot on every backend). */
  read<T>(fn: (tx: Tx) => Promise<T>, opts: TxOptions = {}): Promise<T> {
    return this.#run('read', fn, opts);
  }

  async #run<T>(kind: TxKind, fn: (tx: Tx) => Promise<T>, opts: TxOptions): Promise<T> {
    if (this.#closed) throw new CofferError('connection', 'this Coffer instance is closed');
    const op = opts.op ?? `anonymous.${kind}`;
    const backend = this.engine.label;
    const maxAttempts = opts.maxAttempts ?? DEFAULT_ATTEMPTS;
    const started = performance.now();
    // No per-call arrow functions here: under tsx (how `coffer` runs) esbuild's keepNames wraps
    // each one in a __name() call (Object.defineProperty) every time it is created.
    for (let attempt = 1; ; attempt++) {
      let tx: Tx | undefined;
      try {
        // A read is one snapshot on every backend (engine.ts READ_SETTINGS): at READ COMMITTED
        // (the write isolation on PostgreSQL and MySQL) every statement would see its own
        // snapshot, so a read of several rows could straddle a concurrent commit (the bank test
        // saw balances summing to more or less than the supply). A read-only REPEATABLE READ
        // transaction takes no locks and never fails to serialize. SQLite's deferred read
        // transaction is one snapshot already.
        const engine = this.engine;
        const result = await engine.transaction(kind, (conn) => {
          const bound: TxConnection = {
            conn,
            bind() {
              return engine.bind(kind, new ClosableConnection(conn, tx!));
            },
            compiler: engine.writer,
            sync: 'executeSync' in conn,
          };
          tx = new Tx(kind, engine.dialect, engine.mariadb, bound, this.schema, this.#codecs);
          return runThenClose(tx, fn);
        });
        const after = tx?.end(true) ?? [];
        this.metrics.recordOperation(op, kind, backend, performance.now() - started, true);
        for (const cb of after) {
          try {
            cb();
          } catch (e) {
            this.logger.error({ err: (e as Error).message, op }, 'afterCommit callback failed');
          }
        }
        return result;
      } catch (e) {
        tx?.end(false);
        if (attempt < maxAttempts && isRetryable(this.engine.backend, e)) {
          this.metrics.txRetries.inc({ op, backend });
          // Exponential backoff with full jitter, capped, so racing writers spread out.
          const cap = Math.min(1000, 5 * 2 ** attempt);
          await new Promise((r) => setTimeout(r, Math.random() * cap));
          continue;
        }
        const mapped = mapDriverError(this.engine.backend, e);
        this.metrics.recordOperation(op, kind, backend, performance.now() - started, false);
        this.metrics.opErrors.inc({ op, backend, code: mapped instanceof CofferError ? mapped.code : 'internal' });
        throw mapped;
      }
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.metrics.removePool(this.name);
    await this.engine.close();
  }
}
