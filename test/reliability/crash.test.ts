// Crash recovery: `coffer serve` on SQLite and on PostgreSQL ingests blocks (with token invoices
// anchored and paid in them) and takes invoices over HTTP, and is killed with SIGKILL at a random
// moment, many times. After each kill the database is checked as the server left it: `coffer
// doctor`'s checks pass, the cursor is the last block stored whole (never a partial block),
// every write acknowledged with a 2xx before the kill is there, an unacknowledged one is whole
// or absent, the token invariants hold and the audit chain verifies. Then the server restarts
// and the follower carries on from the server's cursor.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Coffer } from '../../src/db/store.js';
import { createDatabase, skipReason, type TestDatabase } from '../harness.js';
import { Follower, verifyDatabase } from './follower.js';
import { adminKey, between, cofferCli, Http, LONG, pick, report, sleep, startServe, tempDir } from './support.js';

const KILLS = pick(4, 30);

const dropLater: TestDatabase[] = [];
after(async () => {
  for (const d of dropLater) await d.drop().catch(() => {});
});

async function crashCycles(backend: 'sqlite' | 'postgres', url: string): Promise<void> {
  const authorization = await adminKey(url);
  const http = new Http('', authorization);
  const f = new Follower(http, { txsPerBlock: 30, payloadBytes: 200 });
  const figures = {
    backend,
    kills: 0,
    killedDuringIngest: 0,
    killedDuringInvoice: 0,
    blocksAcked: 0,
    invoicesAcked: 0,
    storedBlocks: 0,
    storedTransactions: 0,
    auditEntries: 0,
    requests: 0,
    violations: [] as string[],
  };
  let cliChecked = 0;

  for (let cycle = 0; cycle < KILLS; cycle++) {
    const serve = await startServe(url);
    http.base = serve.base;
    if (cycle === 0) await f.setup();
    // After a restart the service must answer at once, from the state the checks below saw.
    const ready = await http.call('GET', '/ready');
    assert.equal(ready.status, 200, `cycle ${cycle}: /ready ${JSON.stringify(ready.body)}`);

    let stopping = false;
    const stop = () => stopping;
    const workers = [f.ingestLoop(stop), f.invoiceLoop(stop), f.invoiceLoop(stop), f.readLoop(stop)];
    // Let work build up, then kill at a random moment: often mid-transaction, sometimes mid-commit.
    await sleep(between(300, pick(1500, 2500)));
    const inFlight = { ...f.inFlight };
    const code = await serve.kill('SIGKILL');
    stopping = true;
    await Promise.all(workers);
    assert.equal(code, 'SIGKILL', `cycle ${cycle}: the server ended with ${code} before the kill:\n${serve.output()}`);
    figures.kills++;
    if (inFlight['chain.ingest']) figures.killedDuringIngest++;
    if (inFlight['tokens.createInvoice']) figures.killedDuringInvoice++;

    // The database as the killed server left it.
    const coffer = await Coffer.open({ url, migrate: 'verify' });
    try {
      const r = await verifyDatabase(coffer, f);
      for (const x of r.violations) figures.violations.push(`after kill ${cycle + 1}: ${x}`);
      Object.assign(figures, { storedBlocks: r.storedBlocks, storedTransactions: r.storedTransactions, auditEntries: r.auditEntries });
    } finally {
      await coffer.close();
    }
    // The command-line tools themselves: after the last kill (after every kill in the long run).
    if (cycle === KILLS - 1 || LONG) {
      // Maintenance first, as autovacuum would have kept up (it is off on the CI server): without
      // it doctor's upkeep check rightly flags the undo journal's churn, which no kill caused.
      const maintain = await cofferCli(['maintain', '--db', url]);
      if (maintain.code !== 0)
        figures.violations.push(`after kill ${cycle + 1}: coffer maintain exited ${maintain.code}:\n${maintain.stdout}${maintain.stderr}`);
      const doctor = await cofferCli(['doctor', '--db', url]);
      if (doctor.code !== 0)
        figures.violations.push(`after kill ${cycle + 1}: coffer doctor exited ${doctor.code}:\n${doctor.stdout}${doctor.stderr}`);
      const verify = await cofferCli(['audit', 'verify', '--db', url]);
      if (verify.code !== 0)
        figures.violations.push(`after kill ${cycle + 1}: coffer audit verify exited ${verify.code}:\n${verify.stdout}${verify.stderr}`);
      cliChecked++;
    }
    assert.deepEqual(figures.violations, [], `after kill ${cycle + 1}`);
  }
  figures.violations.push(...f.violations);
  figures.blocksAcked = f.ackedBlocks();
  figures.invoicesAcked = f.ackedInvoices();
  figures.requests = Object.values(f.counts).reduce((s, x) => s + x, 0);
  report(`crash-${backend}`, { ...figures, cliChecks: cliChecked, responses: f.counts });
  assert.deepEqual(figures.violations, []);
  assert.ok(
    figures.blocksAcked > 1 && figures.invoicesAcked > 0 && figures.killedDuringIngest > 0,
    `work was under way at the kills: ${JSON.stringify(figures)}`,
  );
}

test(
  'coffer serve on SQLite killed with SIGKILL at random moments: nothing acknowledged is lost, nothing is partial',
  { timeout: KILLS * 30_000 + 60_000 },
  async () => {
    const t = tempDir('coffer-crash-');
    try {
      await crashCycles('sqlite', `sqlite:${join(t.dir, 'coffer.db')}`);
    } finally {
      t.remove();
    }
  },
);

test(
  'coffer serve on PostgreSQL killed with SIGKILL at random moments: nothing acknowledged is lost, nothing is partial',
  { skip: skipReason('postgres'), timeout: KILLS * 30_000 + 60_000 },
  async () => {
    const db = await createDatabase('postgres');
    dropLater.push(db);
    await crashCycles('postgres', db.url);
  },
);
