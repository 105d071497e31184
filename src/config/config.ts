// Configuration: defaults < config file < environment < command-line flags, validated once with
// zod. A bad value becomes one ConfigError naming the field.
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { ConfigError } from '../db/errors.js';
import { parseDatabaseUrl, redactUrl } from '../db/url.js';

export const DEFAULT_DATABASE_URL = 'sqlite:./data/coffer.db';

const intMs = (def: number) => z.coerce.number().int().min(0).max(86_400_000).default(def);

const DatabaseSchema = z
  .object({
    url: z.string().min(1).default(DEFAULT_DATABASE_URL),
    /** SQLite: NORMAL is durable in WAL mode except for the last commits on power loss. */
    sqliteSynchronous: z.enum(['NORMAL', 'FULL']).default('NORMAL'),
    busyTimeoutMs: intMs(5000),
    statementTimeoutMs: intMs(30_000),
    lockTimeoutMs: intMs(10_000),
    poolMax: z.coerce.number().int().min(1).max(1000).default(10),
    poolIdleTimeoutMs: intMs(30_000),
    connectTimeoutMs: intMs(5000),
    applicationName: z.string().min(1).max(63).default('coffer'),
    /** Per-chain databases: chain id → URL (AITBC keeps one SQLite file per chain). */
    chains: z.record(z.string().min(1), z.string().min(1)).default({}),
  })
  .strict();

/**
 * Which proxies' X-Forwarded-For the service believes (Fastify's trustProxy): false (the
 * default) takes the client address from the connection; a hop count n takes the address n
 * entries from the end of X-Forwarded-For (every request must come through those n proxies); a
 * list takes the rightmost address not sent by a listed proxy (addresses, CIDRs, or loopback,
 * linklocal, uniquelocal); true takes the leftmost, which any client can write, so it is only
 * safe when nothing reaches the service except through a proxy that overwrites the header.
 */
export type TrustProxy = boolean | number | string[];

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);
const TRUST_PROXY_HELP = 'expected false, true, a hop count, or a comma-separated list of proxy addresses or CIDRs';

/** A proxy entry as Fastify (proxy-addr) reads it, or a message saying what is wrong with it. */
function proxyEntry(entry: string): string | { error: string } {
  const e = entry.trim();
  if (PROXY_NAMES.has(e.toLowerCase())) return e.toLowerCase();
  const [addr, prefix, ...rest] = e.split('/');
  const family = isIP(addr ?? '');
  const max = family === 4 ? 32 : 128;
  if (!family || rest.length > 0) return { error: `"${e.slice(0, 60)}" is not an IP address, a CIDR or loopback, linklocal, uniquelocal` };
  if (prefix !== undefined && !(/^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= max)) {
    return { error: `"${e.slice(0, 60)}": a CIDR prefix must be 0-${max}` };
  }
  return e;
}

const trustProxySchema = z.union([z.boolean(), z.number(), z.string(), z.array(z.string())]).transform((v, ctx): TrustProxy => {
  const bad = (message: string): TrustProxy => {
    ctx.addIssue({ code: 'custom', message: `${message} (${TRUST_PROXY_HELP})` });
    return z.NEVER;
  };
  if (typeof v === 'boolean') return v;
  const text = typeof v === 'string' ? v.trim() : undefined;
  if (text !== undefined && /^(false|off|no)$/i.test(text)) return false;
  if (text !== undefined && /^(true|on|yes)$/i.test(text)) return true;
  const hops = typeof v === 'number' ? v : text !== undefined && /^[0-9]+$/.test(text) ? Number(text) : undefined;
  if (hops !== undefined) {
    if (!Number.isInteger(hops) || hops < 0 || hops > 100) return bad(`a hop count must be an integer 0-100, got ${String(v)}`);
    return hops === 0 ? false : hops;
  }
  const entries = Array.isArray(v) ? v : text!.split(',');
  if (entries.length === 0) return bad('an empty list');
  if (entries.some((e) => e.trim() === '')) return bad('an empty proxy address');
  const out: string[] = [];
  for (const entry of entries) {
    const r = proxyEntry(entry);
    if (typeof r !== 'string') return bad(r.error);
    out.push(r);
  }
  return out;
});

const ServerSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    /**
     * Requests per second per API key (0: unlimited) and the burst above it; failed
     * authentications (401, 403) are limited the same per client address (src/server/rate-limit.ts).
     */
    rateLimitPerSecond: z.coerce.number().min(0).max(1_000_000).default(100),
    rateLimitBurst: z.coerce.number().int().min(1).max(1_000_000).default(200),
    bodyLimitBytes: z.coerce
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    /**
     * How long a successful authentication is reused (ms; 0: check the database on every
     * request). Identity changes made through this process apply at once; changes made by
     * another process (the CLI, another instance) within this time. See src/server/auth-cache.ts.
     */
    authCacheMs: z.coerce.number().int().min(0).max(60_000).default(1000),
    /** Store operations slower than this are reported as slow queries (dashboard, logs). */
    slowQueryMs: z.coerce.number().int().min(1).max(600_000).default(250),
    /** Client addresses from X-Forwarded-For, for allow-lists, limits and logs (TrustProxy above). */
    trustProxy: trustProxySchema.default(false),
  })
  .strict();

export const ConfigSchema = z
  .object({
    database: DatabaseSchema.default(DatabaseSchema.parse({})),
    server: ServerSchema.default(ServerSchema.parse({})),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
    /** Apply pending migrations when the service opens the database (false: refuse instead). */
    migrate: z
      .object({ auto: z.coerce.boolean().default(true) })
      .strict()
      .default({ auto: true }),
  })
  .strict();

export type CofferConfig = z.infer<typeof ConfigSchema>;

type Layer = Record<string, unknown>;

function setPath(target: Layer, path: string, value: unknown): void {
  const keys = path.split('.');
  let cur = target;
  for (const k of keys.slice(0, -1)) {
    if (typeof cur[k] !== 'object' || cur[k] === null) cur[k] = {};
    cur = cur[k] as Layer;
  }
  cur[keys[keys.length - 1]!] = value;
}

function merge(base: Layer, over: Layer): Layer {
  const out: Layer = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    out[k] =
      typeof v === 'object' && v !== null && !Array.isArray(v) && typeof b === 'object' && b !== null && !Array.isArray(b)
        ? merge(b as Layer, v as Layer)
        : v;
  }
  return out;
}

/** Environment variables and the config path each one sets. */
export const ENV_VARS: Record<string, string> = {
  DATABASE_URL: 'database.url',
  COFFER_DATABASE_URL: 'database.url', // wins over DATABASE_URL: applied after it
  COFFER_SQLITE_SYNCHRONOUS: 'database.sqliteSynchronous',
  COFFER_BUSY_TIMEOUT_MS: 'database.busyTimeoutMs',
  COFFER_STATEMENT_TIMEOUT_MS: 'database.statementTimeoutMs',
  COFFER_LOCK_TIMEOUT_MS: 'database.lockTimeoutMs',
  COFFER_POOL_MAX: 'database.poolMax',
  COFFER_POOL_IDLE_TIMEOUT_MS: 'database.poolIdleTimeoutMs',
  COFFER_CONNECT_TIMEOUT_MS: 'database.connectTimeoutMs',
  COFFER_APPLICATION_NAME: 'database.applicationName',
  COFFER_HOST: 'server.host',
  COFFER_PORT: 'server.port',
  COFFER_RATE_LIMIT_PER_SECOND: 'server.rateLimitPerSecond',
  COFFER_RATE_LIMIT_BURST: 'server.rateLimitBurst',
  COFFER_BODY_LIMIT_BYTES: 'server.bodyLimitBytes',
  COFFER_AUTH_CACHE_MS: 'server.authCacheMs',
  COFFER_SLOW_QUERY_MS: 'server.slowQueryMs',
  COFFER_TRUST_PROXY: 'server.trustProxy',
  COFFER_LOG_LEVEL: 'log.level',
  COFFER_MIGRATE: 'migrate.auto',
};

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Explicit config file (flag --config); otherwise COFFER_CONFIG, otherwise ./coffer.config.json if present. */
  configFile?: string;
  /** Flag values, as config paths (e.g. { 'database.url': '…' }). */
  flags?: Record<string, unknown>;
}

function envLayer(env: NodeJS.ProcessEnv): Layer {
  const layer: Layer = {};
  for (const [name, path] of Object.entries(ENV_VARS)) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    setPath(layer, path, path === 'migrate.auto' ? !/^(0|false|no|off)$/i.test(v) : v);
  }
  return layer;
}

function fileLayer(path: string | undefined, required: boolean): Layer {
  if (!path) return {};
  if (!existsSync(path)) {
    if (required) throw new ConfigError(`config file ${path} does not exist`, { field: 'config' });
    return {};
  }
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${path}: must hold a JSON object`, { field: 'config' });
    }
    return parsed as Layer;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`config file ${path}: not valid JSON (${(e as Error).message})`, { field: 'config' });
  }
}

export function loadConfig(opts: LoadOptions = {}): CofferConfig {
  const env = opts.env ?? process.env;
  const explicit = opts.configFile ?? env.COFFER_CONFIG;
  const file = fileLayer(explicit ?? 'coffer.config.json', explicit !== undefined);
  const flags: Layer = {};
  for (const [path, v] of Object.entries(opts.flags ?? {})) if (v !== undefined) setPath(flags, path, v);
  const merged = merge(merge(file, envLayer(env)), flags);
  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.join('.') || 'config';
    const message = issue.code === 'unrecognized_keys' ? `unknown setting(s) ${issue.keys.join(', ')}` : issue.message;
    throw new ConfigError(`${field}: ${message}`, { field });
  }
  const config = result.data;
  // The URL is validated here so a bad one fails before anything is opened.
  parseDatabaseUrl(config.database.url);
  for (const [chain, url] of Object.entries(config.database.chains)) {
    try {
      parseDatabaseUrl(url);
    } catch (e) {
      throw new ConfigError(`database.chains.${chain}: ${(e as Error).message.replace(/^database\.url: /, '')}`, {
        field: `database.chains.${chain}`,
      });
    }
  }
  return config;
}

/** The effective configuration with passwords removed, for `coffer config` and logs. */
export function redactConfig(config: CofferConfig): CofferConfig {
  return {
    ...config,
    database: {
      ...config.database,
      url: redactUrl(config.database.url),
      chains: Object.fromEntries(Object.entries(config.database.chains).map(([k, v]) => [k, redactUrl(v)])),
    },
  };
}
