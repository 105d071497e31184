// Per-chain databases. config.database.chains maps a chain id to a database URL (AITBC keeps one
// SQLite file per chain); every other chain lives in the default database. The router opens one
// Coffer per distinct database (two spellings of one file or server database are one), applies
// migrations to each on open, and hands out the Coffer that holds a chain.
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { CofferConfig } from '../../config/config.js';
import { ConfigError } from '../../db/errors.js';
import type { StoreMetrics } from '../../db/metrics.js';
import { Coffer, type TxOptions } from '../../db/store.js';
import type { Tx } from '../../db/tx.js';
import { parseDatabaseUrl, redactUrl, type DbTarget } from '../../db/url.js';
import type { Migration } from '../../migrations/migration.js';
import { T } from './rows.js';
import { chainIdSchema, parse } from './validate.js';

/** What identifies a database, so different spellings of one URL share one Coffer. */
export function databaseKey(target: DbTarget): string {
  if (target.backend === 'sqlite') return target.memory ? 'memory://' : `sqlite:${resolve(target.path)}`;
  return `${target.backend}://${target.user}@${target.host.toLowerCase()}:${target.port}/${target.database}`;
}

export interface ChainDatabase {
  /** Redacted URL. */
  url: string;
  backend: string;
  /** Chain ids routed here by configuration (empty for the default database unless mapped). */
  chains: string[];
  isDefault: boolean;
  coffer: Coffer;
}

export interface RouterOptions {
  /** An already open default database (e.g. the service's); otherwise opened from config. Not closed by the router. */
  defaultCoffer?: Coffer;
  /** Default: apply when config.migrate.auto, else verify. */
  migrate?: 'apply' | 'verify' | 'skip';
  migrations?: readonly Migration[];
  logger?: Logger;
  metrics?: StoreMetrics;
}

interface Entry {
  key: string;
  url: string;
  chains: string[];
  coffer: Coffer;
  owned: boolean;
}

/** Groups the configured chains by database; validates chain ids once. */
function plan(config: CofferConfig): { defaultKey: string; groups: Map<string, { url: string; chains: string[] }> } {
  const defaultKey = databaseKey(parseDatabaseUrl(config.database.url));
  const groups = new Map<string, { url: string; chains: string[] }>();
  for (const [chainId, url] of Object.entries(config.database.chains)) {
    const r = chainIdSchema.safeParse(chainId);
    if (!r.success) throw new ConfigError(`database.chains: "${chainId}" is not a valid chain id`, { field: `database.chains.${chainId}` });
    const key = databaseKey(parseDatabaseUrl(url));
    const g = groups.get(key) ?? { url, chains: [] };
    g.chains.push(chainId);
    groups.set(key, g);
  }
  return { defaultKey, groups };
}

export class ChainRouter {
  readonly #default: Entry;
  readonly #entries: Entry[];
  readonly #byChain: Map<string, Entry>;

  private constructor(def: Entry, entries: Entry[]) {
    this.#default = def;
    this.#entries = entries;
    this.#byChain = new Map(entries.flatMap((e) => e.chains.map((c) => [c, e] as const)));
  }

  /** A router with one database for every chain (no per-chain map): tests and embedded use. */
  static fixed(coffer: Coffer): ChainRouter {
    const entry: Entry = { key: coffer.target.url, url: coffer.target.url, chains: [], coffer, owned: false };
    return new ChainRouter(entry, [entry]);
  }

  /** Opens (and by default migrates) the default database and every per-chain database of the map. */
  static async open(config: CofferConfig, opts: RouterOptions = {}): Promise<ChainRouter> {
    const { defaultKey, groups } = plan(config);
    const migrate = opts.migrate ?? (config.migrate.auto ? 'apply' : 'verify');
    const common = {
      config,
      migrate,
      ...(opts.migrations ? { migrations: opts.migrations } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
    };
    const opened: Entry[] = [];
    try {
      // Named as /ready and coffer_database_up name it, so the pool gauges' `database` label agrees.
      const defCoffer = opts.defaultCoffer ?? (await Coffer.open({ ...common, url: config.database.url, name: 'default' }));
      const def: Entry = {
        key: defaultKey,
        url: config.database.url,
        chains: groups.get(defaultKey)?.chains ?? [],
        coffer: defCoffer,
        owned: !opts.defaultCoffer,
      };
      opened.push(def);
      for (const [key, g] of groups) {
        if (key === defaultKey) continue;
        // One at a time: migrations take each database's lock, and errors name the database.
        const coffer = await Coffer.open({ ...common, url: g.url, name: `chain:${g.chains.join(',')}` });
        opened.push({ key, url: g.url, chains: g.chains, coffer, owned: true });
      }
      return new ChainRouter(def, opened);
    } catch (e) {
      for (const o of opened) if (o.owned) await o.coffer.close().catch(() => {});
      throw e;
    }
  }

  /** The default database (chains not in the map, and everything that is not chain data). */
  get default(): Coffer {
    return this.#default.coffer;
  }

  /** The database that holds `chainId`. */
  for(chainId: string): Coffer {
    const id = parse(chainIdSchema, chainId, 'chainId');
    return (this.#byChain.get(id) ?? this.#default).coffer;
  }

  write<R>(chainId: string, fn: (tx: Tx) => Promise<R>, opts?: TxOptions): Promise<R> {
    return this.for(chainId).write(fn, opts);
  }

  read<R>(chainId: string, fn: (tx: Tx) => Promise<R>, opts?: TxOptions): Promise<R> {
    return this.for(chainId).read(fn, opts);
  }

  /** Every database, the default first. */
  databases(): ChainDatabase[] {
    return this.#entries.map((e) => ({
      url: redactUrl(e.url),
      backend: e.coffer.engine.label,
      chains: [...e.chains],
      isDefault: e === this.#default,
      coffer: e.coffer,
    }));
  }

  /** Closes the databases the router opened (not a default Coffer passed in). */
  async close(): Promise<void> {
    for (const e of this.#entries) if (e.owned) await e.coffer.close();
  }
}

export interface ChainDatabaseStatus {
  /** Redacted URL. */
  url: string;
  backend: string | null;
  chains: {
    chainId: string;
    /** Registered in that database. */
    registered: boolean;
    height: string | null;
    finalizedHeight: string | null;
    lag: string | null;
  }[];
  migrations: { applied: number; pending: string[]; problems: string[] } | null;
  /** Set when the database could not be opened or read. */
  error?: string;
}

async function chainRows(coffer: Coffer, chainIds: readonly string[]): Promise<ChainDatabaseStatus['chains']> {
  return coffer.read(
    async (tx) => {
      const out: ChainDatabaseStatus['chains'] = [];
      for (const chainId of chainIds) {
        const c = await tx.db
          .selectFrom(`${T.chains} as c`)
          .leftJoin(`${T.cursors} as k`, 'k.chain_id', 'c.chain_id')
          .leftJoin(`${T.health} as h`, 'h.chain_id', 'c.chain_id')
          .select(['c.chain_id', 'k.height', 'k.finalized_height', 'h.lag'])
          .where('c.chain_id', '=', chainId)
          .executeTakeFirst();
        const s = (v: unknown) => (v === null || v === undefined ? null : String(v));
        out.push({ chainId, registered: !!c, height: s(c?.height), finalizedHeight: s(c?.finalized_height), lag: s(c?.lag) });
      }
      return out;
    },
    { op: 'chain.status' },
  );
}

/**
 * Status of every per-chain database in the map, for `coffer status`: migration state and each
 * routed chain's tip. Opens each without migrating; an unreachable one is reported, not thrown.
 */
export async function chainDatabaseStatus(
  config: CofferConfig,
  opts: { logger?: Logger; migrations?: readonly Migration[] } = {},
): Promise<ChainDatabaseStatus[]> {
  const { defaultKey, groups } = plan(config);
  const out: ChainDatabaseStatus[] = [];
  for (const [key, g] of groups) {
    const url = redactUrl(key === defaultKey ? config.database.url : g.url);
    let coffer: Coffer | undefined;
    try {
      coffer = await Coffer.open({
        config,
        url: key === defaultKey ? config.database.url : g.url,
        migrate: 'skip',
        ...(opts.logger ? { logger: opts.logger } : {}),
        ...(opts.migrations ? { migrations: opts.migrations } : {}),
      });
      const states = await coffer.migrator.status();
      const migrations = {
        applied: states.filter((s) => s.state === 'applied').length,
        pending: states.filter((s) => s.state === 'pending' || s.state === 'running').map((s) => s.id),
        problems: states.filter((s) => s.state === 'edited' || s.state === 'unknown').map((s) => `${s.id}: ${s.state}`),
      };
      let chains: ChainDatabaseStatus['chains'];
      try {
        chains = await chainRows(coffer, g.chains);
      } catch {
        // Tables missing (migrations pending): report the chains as not registered.
        chains = g.chains.map((chainId) => ({ chainId, registered: false, height: null, finalizedHeight: null, lag: null }));
      }
      out.push({ url, backend: coffer.engine.label, chains, migrations });
    } catch (e) {
      out.push({
        url,
        backend: null,
        chains: g.chains.map((chainId) => ({ chainId, registered: false, height: null, finalizedHeight: null, lag: null })),
        migrations: null,
        error: (e as Error).message,
      });
    } finally {
      await coffer?.close().catch(() => {});
    }
  }
  return out;
}
