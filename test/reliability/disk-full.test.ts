// Disk full on SQLite: the database lives on a small tmpfs that a ballast file fills up while
// `coffer serve` ingests blocks and takes invoices. Coffer must answer 507 storage_full with a
// clear message (never a 500, never a crash), keep serving reads, leave the database intact
// (integrity_check, schema, the cursor on the last whole block, every acknowledged write there,
// the audit chain), and resume ingesting by itself once space is freed.
import assert from 'node:assert/strict';
import { statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Coffer } from '../../src/db/store.js';
import { Follower, verifyDatabase } from './follower.js';
import { adminKey, Http, pick, report, sleep, smallFilesystem, startServe, type ServeProcess } from './support.js';

const MB = 1024 * 1024;
/** Room left beside the ballast: the disk fills after roughly this much more data. */
const HEADROOM = pick(6, 12) * MB;
const ROUNDS = pick(2, 5);
/** The schema, the WAL and the blocks written after each refill must fit beside a real ballast in every round. */
const BALLAST_MIN = 4 * MB;
const FS_BYTES = 24 * MB + ROUNDS * (HEADROOM + BALLAST_MIN);

const probe = smallFilesystem(1024 * 1024);
const skip = 'unavailable' in probe ? probe.unavailable : undefined;
if (!('unavailable' in probe)) probe.dispose();
if (skip && process.env.COFFER_TEST_POSTGRES_URL)
  throw new Error(`disk-full test: ${skip}, but this is a full test machine (CI), so it must run`);

const free = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

test(
  'SQLite on a full disk: 507 storage_full, reads still served, no corruption, ingest resumes when space is freed',
  { skip, timeout: 300_000 },
  async () => {
    const mount = smallFilesystem(FS_BYTES);
    assert.ok(!('unavailable' in mount));
    const url = `sqlite:${join(mount.dir, 'coffer.db')}`;
    let serve: ServeProcess | undefined;
    try {
      const authorization = await adminKey(url);
      serve = await startServe(url);
      const http = new Http(serve.base, authorization);
      const f = new Follower(http, { txsPerBlock: 20, payloadBytes: 8192, invoicesPerBlock: 5, backoffMs: 20, keepLog: true });
      await f.setup();
      const rounds: Record<string, unknown>[] = [];
      const violations: string[] = [];

      for (let round = 0; round < ROUNDS; round++) {
        const ballast = join(mount.dir, `ballast-${round}`);
        const ballastBytes = free(mount.dir) - HEADROOM;
        assert.ok(ballastBytes >= BALLAST_MIN, `round ${round}: only ${free(mount.dir)} bytes free before the ballast`);
        writeFileSync(ballast, Buffer.alloc(ballastBytes));
        const blocksBefore = f.ackedBlocks();
        const logFrom = f.log.length;

        // Fill the disk: ingest until the server has said 507 a few times.
        let full = 0;
        let stopping = false;
        const stop = () => stopping || full >= 5;
        const fillStart = Date.now();
        const fillers = [f.ingestLoop(stop, { onStorageFull: () => full++ }), f.invoiceLoop(stop)];
        while (!stop() && Date.now() - fillStart < 120_000) await sleep(50);
        stopping = true;
        await Promise.all(fillers);
        assert.ok(full >= 5, `round ${round}: the disk never filled (${free(mount.dir)} bytes free)`);
        const fullLog = f.log.slice(logFrom).filter((l) => l.status === 507);
        const first = fullLog[0]!;

        // While full: reads are served, writes keep failing cleanly, the process lives on.
        const readWhileFull = await http.call('GET', `/v1/chains/${f.chainId}`);
        const holdersWhileFull = await http.call('GET', `/v1/tokens/mints/${f.mintHash}/balances?chainId=${f.chainId}`);
        if (readWhileFull.status !== 200 || holdersWhileFull.status !== 200)
          violations.push(`round ${round}: reads while full answered ${readWhileFull.status}/${holdersWhileFull.status}`);
        if (!serve.alive()) violations.push(`round ${round}: the service died:\n${serve.output()}`);

        // The database as it is on the full disk.
        const coffer = await Coffer.open({ url, migrate: 'verify' });
        let whileFull;
        try {
          whileFull = await verifyDatabase(coffer, f);
        } finally {
          await coffer.close();
        }
        violations.push(...whileFull.violations.map((x) => `round ${round}, disk full: ${x}`));

        // Free the space: ingest resumes by itself (same process, no restart).
        unlinkSync(ballast);
        const resumeFrom = f.ackedBlocks();
        const resumeStart = Date.now();
        stopping = false;
        const resumers = [
          f.ingestLoop(() => stopping || f.ackedBlocks() >= resumeFrom + 5),
          f.invoiceLoop(() => stopping || f.ackedBlocks() >= resumeFrom + 5),
        ];
        while (f.ackedBlocks() < resumeFrom + 5 && Date.now() - resumeStart < 60_000) await sleep(25);
        stopping = true;
        await Promise.all(resumers);
        const resumedMs = f.ackedBlocks() >= resumeFrom + 5 ? Date.now() - resumeStart : null;
        if (resumedMs === null) violations.push(`round ${round}: ingest did not resume within 60 s of freeing space`);

        rounds.push({
          round,
          ballastBytes,
          blocksBeforeFull: resumeFrom - blocksBefore,
          responses507: fullLog.length,
          firstError: { status: first.status, code: first.code, message: first.message },
          readWhileFull: readWhileFull.status,
          resumedAfterMs: resumedMs,
          blocksAfterFreeing: f.ackedBlocks() - resumeFrom,
        });
        for (const l of fullLog)
          if (l.code !== 'storage_full' || !/disk .*full/.test(l.message ?? ''))
            violations.push(`round ${round}: 507 with ${l.code} "${l.message}"`);
      }

      // No response was ever a 500 or another unexpected status.
      for (const l of f.log)
        if (![200, 201, 422, 507].includes(l.status)) violations.push(`${l.op} answered ${l.status} ${l.code ?? ''} ${l.message ?? ''}`);
      violations.push(...f.violations);
      await serve.kill('SIGTERM');
      const coffer = await Coffer.open({ url, migrate: 'verify' });
      let final;
      try {
        final = await verifyDatabase(coffer, f);
      } finally {
        await coffer.close();
      }
      violations.push(...final.violations);
      report('disk-full-sqlite', {
        filesystemBytes: FS_BYTES,
        headroomBytes: HEADROOM,
        rounds,
        requests: f.log.length,
        responses: f.counts,
        blocksAcked: f.ackedBlocks(),
        invoicesAcked: f.ackedInvoices(),
        storedBlocks: final.storedBlocks,
        auditEntries: final.auditEntries,
        violations: violations.slice(0, 50),
      });
      assert.deepEqual(violations.slice(0, 20), []);
    } finally {
      await serve?.kill('SIGKILL');
      mount.dispose();
    }
  },
);
