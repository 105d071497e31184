// Parses a database URL into a backend descriptor. The URL alone picks the backend.
import { ConfigError } from './errors.js';

export type Backend = 'sqlite' | 'postgres' | 'mysql';

export type SslMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface ServerTarget {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  ssl: { mode: SslMode; caFile: string | undefined };
}

export type DbTarget =
  | { backend: 'sqlite'; memory: false; path: string; url: string }
  | { backend: 'sqlite'; memory: true; path: ':memory:'; url: string }
  | ({ backend: 'postgres'; url: string } & ServerTarget)
  | ({ backend: 'mysql'; url: string } & ServerTarget);

/** What a backend is called in status output and test names. */
export function backendLabel(t: DbTarget): string {
  if (t.backend === 'sqlite') return t.memory ? 'memory' : 'sqlite';
  return t.backend;
}

const SSL_MODES: readonly SslMode[] = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];

function fail(message: string): never {
  throw new ConfigError(`database.url: ${message}`, { field: 'database.url' });
}

/**
 * decodeURIComponent for one part of the URL: a "%" that does not start percent-encoding is
 * refused naming the part, never echoing it (it may be the password).
 */
function decodePart(value: string, part: 'user' | 'password' | 'database' | 'path'): string {
  try {
    return decodeURIComponent(value);
  } catch {
    fail(`the ${part} holds a "%" that is not percent-encoding (write a literal % as %25)`);
  }
}

export function parseDatabaseUrl(raw: string): DbTarget {
  const url = raw.trim();
  if (url === '') fail('is empty');
  if (url === 'memory:' || url === 'memory://' || url === 'memory') {
    return { backend: 'sqlite', memory: true, path: ':memory:', url: 'memory://' };
  }
  if (url.startsWith('sqlite:')) {
    let path = url.slice('sqlite:'.length);
    // sqlite://./rel, sqlite:///abs and sqlite:./rel all name a file path.
    if (path.startsWith('//')) path = path.slice(2);
    const q = path.indexOf('?');
    if (q >= 0) path = path.slice(0, q);
    if (path === '' || path === '/') fail(`"${raw}" names no file (expected sqlite:./data/coffer.db)`);
    if (path === ':memory:') return { backend: 'sqlite', memory: true, path: ':memory:', url: 'memory://' };
    return { backend: 'sqlite', memory: false, path: decodePart(path, 'path'), url };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    fail(`"${redactUrl(raw)}" is not a URL (expected sqlite:PATH, memory://, postgres://… or mysql://…)`);
  }
  const scheme = parsed.protocol.replace(/:$/, '').toLowerCase();
  let backend: 'postgres' | 'mysql';
  if (scheme === 'postgres' || scheme === 'postgresql') backend = 'postgres';
  else if (scheme === 'mysql' || scheme === 'mariadb') backend = 'mysql';
  else fail(`unsupported scheme "${scheme}:" (expected sqlite:, memory://, postgres://, postgresql://, mysql:// or mariadb://)`);
  if (!parsed.hostname) fail('has no host');
  const database = decodePart(parsed.pathname.replace(/^\//, ''), 'database');
  if (!database) fail('has no database name (add /NAME after the host)');
  if (database.includes('/')) fail(`database name "${database}" may not contain "/"`);
  const defaultPort = backend === 'postgres' ? 5432 : 3306;
  let port = defaultPort;
  if (parsed.port) {
    port = Number(parsed.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`port "${parsed.port}" is out of range`);
  }
  const params = parsed.searchParams;
  const modeRaw = params.get('sslmode') ?? params.get('ssl-mode') ?? params.get('ssl_mode');
  let mode: SslMode = 'disable';
  if (modeRaw !== null) {
    const m = modeRaw.toLowerCase().replace(/_/g, '-') as SslMode;
    // MySQL spells the modes REQUIRED / VERIFY_CA / VERIFY_IDENTITY / DISABLED / PREFERRED.
    const alias: Record<string, SslMode> = {
      disabled: 'disable',
      preferred: 'prefer',
      required: 'require',
      'verify-identity': 'verify-full',
    };
    const norm = alias[m] ?? m;
    if (!SSL_MODES.includes(norm)) fail(`sslmode "${modeRaw}" is not one of ${SSL_MODES.join(', ')}`);
    mode = norm;
  }
  if (params.get('ssl') === 'true' && modeRaw === null) mode = 'require';
  const caFile = params.get('sslrootcert') ?? params.get('ssl-ca') ?? params.get('sslca') ?? undefined;
  const known = new Set(['sslmode', 'ssl-mode', 'ssl_mode', 'ssl', 'sslrootcert', 'ssl-ca', 'sslca']);
  for (const key of params.keys()) {
    if (!known.has(key)) fail(`unknown parameter "${key}" (supported: ${[...known].join(', ')})`);
  }
  return {
    backend: backend as never,
    url,
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port,
    user: decodePart(parsed.username, 'user') || (backend === 'postgres' ? 'postgres' : 'root'),
    password: parsed.password ? decodePart(parsed.password, 'password') : undefined,
    database,
    ssl: { mode, caFile },
  };
}

/** The URL with any password replaced, safe for logs and status output. */
export function redactUrl(raw: string): string {
  // Up to the last "@" before the query: a password may itself hold "@" or "/" (unencoded), and
  // cutting at the first one would print the rest of it.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(raw);
  if (!scheme) return raw;
  const start = scheme[0].length;
  const query = raw.indexOf('?', start);
  let at = raw.lastIndexOf('@', query === -1 ? raw.length : query);
  // No "@" before the first "?": the "?" may be inside the password; take the last "@" at all.
  if (at < start) at = raw.lastIndexOf('@');
  if (at < start) return raw;
  const colon = raw.indexOf(':', start);
  if (colon === -1 || colon > at) return raw;
  return `${raw.slice(0, colon + 1)}***${raw.slice(at)}`;
}

/** The same server URL pointed at another database (tests and admin tasks use it). */
export function withDatabase(raw: string, database: string): string {
  const u = new URL(raw);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}
