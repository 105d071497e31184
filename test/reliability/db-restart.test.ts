// Database restarts under load, on private throw-away servers (a PostgreSQL cluster made with
// initdb, a MariaDB made with mariadb-install-db; the machine's shared servers are never
// touched). `coffer serve` keeps running while its database is stopped (gracefully, or killed
// like a crash) and started again, and while its connections are terminated mid-transaction:
// - while the database is down every request fails fast with 503 and a clear error (code
//   `connection`), /ready says 503, and no request ever gets a 500;
// - when the database is back the pool recovers by itself: writes succeed again without
//   restarting the service (same process throughout);
// - nothing is partial and nothing acknowledged is lost (verifyDatabase, doctor, audit chain).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Coffer } from '../../src/db/store.js';
import { Follower, verifyDatabase, type Logged } from './follower.js';
import {
  adminKey,
  between,
  Http,
  percentile,
  pick,
  privateMariadb,
  privatePostgres,
  privateServerUnavailable,
  report,
  rnd,
  round,
  sleep,
  startServe,
  type PrivateServer,
  type ServeProcess,
} from './support.js';

const CYCLES = pick(2, 10);
const DOWNTIME_MS = pick(1200, 5000);
const TERMINATE_MS = pick(2000, 30_000);
/** A request while the database is down must fail within this (the pool's connect timeout is 5 s). */
const FAIL_FAST_MS = 2000;
/** After the database is back, a write must succeed within this. */
const RECOVERY_MS = 20_000;

const WRITES = new Set(['chain.ingest', 'tokens.createInvoice']);
const ok = (l: Logged) => l.status === 200 || l.status === 201;

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(25);
  }
  return cond();
}

interface Outage {
  how: 'graceful' | 'crash';
  stopMs: number;
  downMs: number;
  requestsWhileDown: number;
  statusesWhileDown: Record<string, number>;
  maxLatencyWhileDownMs: number;
  p99LatencyWhileDownMs: number;
  readyWhileDown: number[];
  recoveryMs: number | null;
}

async function underLoad(server: PrivateServer, name: string): Promise<void> {
  let serve: ServeProcess | undefined;
  try {
    const authorization = await adminKey(server.url);
    serve = await startServe(server.url);
    const pid = serve.pid;
    const http = new Http(serve.base, authorization);
    const f = new Follower(http, { keepLog: true, backoffMs: 25, txsPerBlock: 10 });
    await f.setup();
    let stopping = false;
    const stop = () => stopping;
    const workers = [f.ingestLoop(stop), f.invoiceLoop(stop), f.invoiceLoop(stop), f.readLoop(stop)];
    const violations: string[] = [];
    const outages: Outage[] = [];

    // 1. Stop and start the database server, alternately gracefully and as a crash.
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      await sleep(between(600, 1200));
      const how = cycle % 2 === 0 ? 'graceful' : 'crash';
      const t0 = Date.now();
      await server.stop(how);
      const down = Date.now();
      const ready: number[] = [];
      while (Date.now() - down < DOWNTIME_MS) {
        ready.push((await http.call('GET', '/ready')).status);
        await sleep(200);
      }
      const upStart = Date.now();
      await server.start();
      const up = Date.now();
      const recovered = await waitFor(() => f.log.some((l) => l.start >= up && WRITES.has(l.op) && ok(l)), RECOVERY_MS);
      const firstOk = f.log.filter((l) => l.start >= up && WRITES.has(l.op) && ok(l)).reduce((m, l) => Math.min(m, l.end), Infinity);
      // Requests sent and answered while the server was surely down.
      const during = f.log.filter((l) => l.start >= down && l.end <= upStart);
      const statuses: Record<string, number> = {};
      for (const l of during) statuses[`${l.status} ${l.code ?? ''}`.trim()] = (statuses[`${l.status} ${l.code ?? ''}`.trim()] ?? 0) + 1;
      const latencies = during.map((l) => l.end - l.start);
      outages.push({
        how,
        stopMs: down - t0,
        downMs: upStart - down,
        requestsWhileDown: during.length,
        statusesWhileDown: statuses,
        maxLatencyWhileDownMs: round(latencies.reduce((m, x) => Math.max(m, x), 0)),
        p99LatencyWhileDownMs: round(percentile(latencies, 99)),
        readyWhileDown: [...new Set(ready)],
        recoveryMs: recovered ? firstOk - up : null,
      });
      for (const l of during) {
        if (l.status !== 503 || l.code !== 'connection')
          violations.push(
            `cycle ${cycle} (${how}): ${l.op} while the database was down answered ${l.status} ${l.code ?? ''} ${l.message ?? ''}`,
          );
        else if (!/database connection failed|cannot connect/.test(l.message ?? ''))
          violations.push(`cycle ${cycle}: unclear 503 message "${l.message}"`);
      }
      if (during.length === 0) violations.push(`cycle ${cycle}: no request completed while the database was down`);
      if (latencies.some((x) => x > FAIL_FAST_MS))
        violations.push(
          `cycle ${cycle}: a request took ${Math.round(latencies.reduce((m, x) => Math.max(m, x), 0))} ms to fail while the database was down`,
        );
      if (ready.some((s) => s !== 503)) violations.push(`cycle ${cycle}: /ready answered ${ready.join(',')} while the database was down`);
      if (!recovered) violations.push(`cycle ${cycle}: no write succeeded within ${RECOVERY_MS} ms of the database coming back`);
      if (!serve.alive() || serve.pid !== pid) violations.push(`cycle ${cycle}: the service process exited:\n${serve.output()}`);
    }

    // 2. Connections dropped mid-transaction: terminate the service's sessions, preferring those inside a transaction.
    const t0 = Date.now();
    const terminated = { sessions: 0, midTransaction: 0 };
    while (Date.now() - t0 < TERMINATE_MS) {
      const sessions = await killSessions(server);
      terminated.sessions += sessions.killed;
      terminated.midTransaction += sessions.midTransaction;
      await sleep(between(40, 160));
    }
    const termEnd = Date.now();
    const recoveredAfterTerminate = await waitFor(() => f.log.some((l) => l.start >= termEnd && WRITES.has(l.op) && ok(l)), RECOVERY_MS);
    if (!recoveredAfterTerminate) violations.push(`no write succeeded within ${RECOVERY_MS} ms after the terminations stopped`);
    const hit = f.log.filter((l) => l.start >= t0 && l.end <= termEnd);
    const termStatuses: Record<string, number> = {};
    for (const l of hit) termStatuses[`${l.status} ${l.code ?? ''}`.trim()] = (termStatuses[`${l.status} ${l.code ?? ''}`.trim()] ?? 0) + 1;

    await sleep(500);
    stopping = true;
    await Promise.all(workers);
    if (!serve.alive() || serve.pid !== pid) violations.push(`the service process exited:\n${serve.output()}`);

    // No response, ever, was anything but success, the model's refusal or 503.
    for (const l of f.log) {
      if (![200, 201, 422, 503].includes(l.status)) violations.push(`${l.op} answered ${l.status} ${l.code ?? ''} ${l.message ?? ''}`);
      else if (l.status === 422 && l.op !== 'tokens.createInvoice') violations.push(`${l.op} answered 422 ${l.message ?? ''}`);
    }
    violations.push(...f.violations);

    const coffer = await Coffer.open({ url: server.url, migrate: 'verify' });
    let check;
    try {
      check = await verifyDatabase(coffer, f);
    } finally {
      await coffer.close();
    }
    violations.push(...check.violations);
    report(`db-restart-${name}`, {
      server: name,
      restarts: outages.length,
      outages,
      terminate: { ...terminated, durationMs: termEnd - t0, responses: termStatuses },
      requests: f.log.length,
      responses: f.counts,
      blocksAcked: f.ackedBlocks(),
      invoicesAcked: f.ackedInvoices(),
      storedBlocks: check.storedBlocks,
      auditEntries: check.auditEntries,
      serviceRestarts: 0,
      violations: violations.slice(0, 50),
    });
    assert.deepEqual(violations.slice(0, 20), []);
    assert.ok(terminated.sessions > 0, 'sessions were terminated');
  } finally {
    await serve?.kill('SIGKILL');
    await server.dispose();
  }
}

/** Terminates one or two of the service's sessions, preferring those inside a transaction. */
async function killSessions(server: PrivateServer): Promise<{ killed: number; midTransaction: number }> {
  if (server.kind === 'postgres') {
    const rows = (await server.query(
      "select pid, xact_start is not null as in_tx from pg_stat_activity where datname = 'coffer' and application_name = 'coffer' and pid <> pg_backend_pid()",
    )) as { pid: number; in_tx: boolean }[];
    const pickFrom = rows.filter((r) => r.in_tx).length ? rows.filter((r) => r.in_tx) : rows;
    const victims = pickFrom.sort(() => Math.random() - 0.5).slice(0, 1 + rnd(2));
    for (const v of victims) await server.query(`select pg_terminate_backend(${Number(v.pid)})`);
    return { killed: victims.length, midTransaction: victims.filter((v) => v.in_tx).length };
  }
  const rows = (await server.query(
    "select p.id, t.trx_id is not null as in_tx from information_schema.processlist p left join information_schema.innodb_trx t on t.trx_mysql_thread_id = p.id where p.db = 'coffer' and p.id <> connection_id()",
  )) as { id: number; in_tx: number }[];
  const pickFrom = rows.filter((r) => Number(r.in_tx)).length ? rows.filter((r) => Number(r.in_tx)) : rows;
  const victims = pickFrom.sort(() => Math.random() - 0.5).slice(0, 1 + rnd(2));
  let killed = 0;
  for (const v of victims) {
    try {
      await server.query(`KILL CONNECTION ${Number(v.id)}`);
      killed++;
    } catch {
      // it ended by itself meanwhile
    }
  }
  return { killed, midTransaction: victims.filter((v) => Number(v.in_tx)).length };
}

const pgSkip = privateServerUnavailable('postgres');
test(
  'PostgreSQL stopped, crashed and restarted under load, and backends terminated mid-transaction: 503 while down, recovery without a service restart, nothing partial',
  { skip: pgSkip, timeout: 600_000 },
  async () => {
    await underLoad(await privatePostgres(), 'postgres');
  },
);

const myskip = privateServerUnavailable('mariadb');
test(
  'MariaDB shut down, killed and restarted under load, and connections killed mid-transaction: 503 while down, recovery without a service restart, nothing partial',
  { skip: myskip, timeout: 600_000 },
  async () => {
    await underLoad(await privateMariadb(), 'mariadb');
  },
);
