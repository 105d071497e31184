// Database URLs and configuration layering: defaults < file < environment < flags, one clear
// error naming the field for anything wrong, passwords never printed.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_DATABASE_URL, loadConfig, redactConfig } from '../src/config/config.js';
import { ConfigError } from '../src/db/errors.js';
import { parseDatabaseUrl, redactUrl } from '../src/db/url.js';

test('database URLs pick the backend', () => {
  assert.deepEqual(parseDatabaseUrl('sqlite:./data/coffer.db'), {
    backend: 'sqlite',
    memory: false,
    path: './data/coffer.db',
    url: 'sqlite:./data/coffer.db',
  });
  assert.equal((parseDatabaseUrl('sqlite://./x.db') as { path: string }).path, './x.db');
  assert.equal((parseDatabaseUrl('sqlite:///var/lib/coffer.db') as { path: string }).path, '/var/lib/coffer.db');
  assert.equal(parseDatabaseUrl('memory://').backend, 'sqlite');
  assert.equal((parseDatabaseUrl('memory://') as { memory: boolean }).memory, true);
  const pg = parseDatabaseUrl('postgresql://alice:s%40cret@db.example:6543/coffer?sslmode=verify-full&sslrootcert=/etc/ca.pem');
  assert.equal(pg.backend, 'postgres');
  if (pg.backend !== 'postgres') return;
  assert.equal(pg.host, 'db.example');
  assert.equal(pg.port, 6543);
  assert.equal(pg.user, 'alice');
  assert.equal(pg.password, 's@cret');
  assert.equal(pg.database, 'coffer');
  assert.deepEqual(pg.ssl, { mode: 'verify-full', caFile: '/etc/ca.pem' });
  const my = parseDatabaseUrl('mariadb://root@127.0.0.1/test?ssl-mode=REQUIRED');
  assert.equal(my.backend, 'mysql');
  if (my.backend === 'mysql') {
    assert.equal(my.port, 3306);
    assert.equal(my.ssl.mode, 'require');
  }
});

test('malformed URLs give one ConfigError naming database.url', () => {
  const bad = [
    '',
    'foo://x/y',
    'postgres://host',
    'postgres://:5432/db',
    'mysql://h:99999/db',
    'sqlite:',
    'not a url',
    'postgres://h/db?sslmode=sometimes',
    'postgres://h/db?weird=1',
  ];
  for (const url of bad) {
    assert.throws(
      () => parseDatabaseUrl(url),
      (e: unknown) => e instanceof ConfigError && e.details.field === 'database.url' && !e.message.includes('\n'),
      url,
    );
  }
});

test('a "%" that is not percent-encoding names the URL part, never echoing it', () => {
  const cases: [string, string][] = [
    ['postgres://app:50%off@h/db', 'password'],
    ['mysql://us%er:pw@h/db', 'user'],
    ['postgres://app@h/d%b', 'database'],
    ['sqlite:./data/100%.db', 'path'],
  ];
  for (const [url, part] of cases) {
    assert.throws(
      () => parseDatabaseUrl(url),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.details.field === 'database.url' &&
        e.message.includes(`the ${part} holds a "%"`) &&
        e.message.includes('%25') &&
        !e.message.includes('50%off'),
      url,
    );
  }
  // Percent-encoding still decodes.
  assert.equal((parseDatabaseUrl('postgres://app:50%25off@h/db') as { password: string }).password, '50%off');
});

test('passwords are redacted', () => {
  assert.equal(redactUrl('postgres://u:topsecret@h:5432/db'), 'postgres://u:***@h:5432/db');
  assert.equal(redactUrl('mysql://root@h/db'), 'mysql://root@h/db');
  // A password holding "@" or "/" is redacted whole (the first "@" is not the end of it).
  assert.equal(redactUrl('postgres://u:p@ss@h/db'), 'postgres://u:***@h/db');
  assert.equal(redactUrl('postgres://u:pa/ss@h/db'), 'postgres://u:***@h/db');
  assert.equal(redactUrl('postgres://u:s@h/db?note=a@b'), 'postgres://u:***@h/db?note=a@b');
  assert.equal(redactUrl('sqlite:./data/x.db'), 'sqlite:./data/x.db');
  assert.equal(redactUrl('postgres://u:sec?ret@h/db'), 'postgres://u:***@h/db');
  const cfg = redactConfig(loadConfig({ env: {}, flags: { 'database.url': 'postgres://u:topsecret@h/db' } }));
  assert.ok(!JSON.stringify(cfg).includes('topsecret'));
});

test('layers: defaults < file < environment < flags; COFFER_DATABASE_URL beats DATABASE_URL', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-cfg-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ database: { url: 'sqlite:./from-file.db', poolMax: 3 }, server: { port: 9000 } }));
  assert.equal(loadConfig({ env: {} }).database.url, DEFAULT_DATABASE_URL);
  const fromFile = loadConfig({ env: {}, configFile: file });
  assert.equal(fromFile.database.url, 'sqlite:./from-file.db');
  assert.equal(fromFile.database.poolMax, 3);
  assert.equal(fromFile.server.port, 9000);
  const fromEnv = loadConfig({ env: { DATABASE_URL: 'sqlite:./seed.db', COFFER_PORT: '9100' }, configFile: file });
  assert.equal(fromEnv.database.url, 'sqlite:./seed.db');
  assert.equal(fromEnv.server.port, 9100);
  const both = loadConfig({ env: { DATABASE_URL: 'sqlite:./seed.db', COFFER_DATABASE_URL: 'sqlite:./coffer.db' }, configFile: file });
  assert.equal(both.database.url, 'sqlite:./coffer.db');
  const flags = loadConfig({
    env: { COFFER_DATABASE_URL: 'sqlite:./coffer.db', COFFER_PORT: '9100' },
    configFile: file,
    flags: { 'database.url': 'memory://', 'server.port': '9200' },
  });
  assert.equal(flags.database.url, 'memory://');
  assert.equal(flags.server.port, 9200);
  assert.equal(flags.database.poolMax, 3, 'untouched file values survive');
});

test('bad values name the field', () => {
  const cases: [Parameters<typeof loadConfig>[0], string][] = [
    [{ env: { COFFER_PORT: 'abc' } }, 'server.port'],
    [{ env: { COFFER_PORT: '70000' } }, 'server.port'],
    [{ env: { COFFER_SQLITE_SYNCHRONOUS: 'OFF' } }, 'database.sqliteSynchronous'],
    [{ env: { COFFER_POOL_MAX: '0' } }, 'database.poolMax'],
    [{ env: { COFFER_DATABASE_URL: 'oracle://x/y' } }, 'database.url'],
    [{ env: {}, flags: { 'database.chains': { doge: 'nope://' } } }, 'database.chains.doge'],
    [{ env: { COFFER_TRUST_PROXY: 'proxy.internal' } }, 'server.trustProxy'],
    [{ env: { COFFER_TRUST_PROXY: '10.0.0.0/33' } }, 'server.trustProxy'],
    [{ env: { COFFER_TRUST_PROXY: '10.0.0.1,,10.0.0.2' } }, 'server.trustProxy'],
    [{ env: { COFFER_TRUST_PROXY: '101' } }, 'server.trustProxy'],
    [{ env: {}, flags: { 'server.trustProxy': [] } }, 'server.trustProxy'],
  ];
  for (const [opts, field] of cases) {
    assert.throws(
      () => loadConfig(opts),
      (e: unknown) => e instanceof ConfigError && e.details.field === field && e.message.startsWith(field),
      field,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'coffer-cfg-'));
  const unknown = join(dir, 'u.json');
  writeFileSync(unknown, JSON.stringify({ databse: {} }));
  assert.throws(() => loadConfig({ env: {}, configFile: unknown }), /unknown setting\(s\) databse/);
  const broken = join(dir, 'b.json');
  writeFileSync(broken, '{ nope');
  assert.throws(
    () => loadConfig({ env: {}, configFile: broken }),
    (e: unknown) => e instanceof ConfigError && /not valid JSON/.test(e.message),
  );
  assert.throws(() => loadConfig({ env: {}, configFile: join(dir, 'absent.json') }), /does not exist/);
});

test('server.trustProxy (COFFER_TRUST_PROXY): off by default; false, a hop count, a list of proxy addresses and CIDRs, or true', () => {
  const trust = (v: string) => loadConfig({ env: { COFFER_TRUST_PROXY: v } }).server.trustProxy;
  assert.equal(loadConfig({ env: {} }).server.trustProxy, false);
  assert.equal(trust('false'), false);
  assert.equal(trust('0'), false, 'no hops: nothing trusted');
  assert.equal(trust('2'), 2);
  assert.equal(trust('true'), true);
  assert.deepEqual(trust(' 10.0.0.1, 10.1.0.0/16 ,fd00::/8,loopback'), ['10.0.0.1', '10.1.0.0/16', 'fd00::/8', 'loopback']);
  const file = join(mkdtempSync(join(tmpdir(), 'coffer-cfg-')), 'c.json');
  writeFileSync(file, JSON.stringify({ server: { trustProxy: ['192.0.2.10'] } }));
  assert.deepEqual(loadConfig({ env: {}, configFile: file }).server.trustProxy, ['192.0.2.10']);
  assert.throws(
    () => trust('10.0.0.1, proxy.internal'),
    (e: unknown) => e instanceof ConfigError && /^server\.trustProxy: "proxy\.internal" is not an IP address/.test(e.message),
  );
});
