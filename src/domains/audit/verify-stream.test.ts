// Verification streams: a 20 000-entry log verifies page by page (keyset pagination on seq),
// never holding more than one page, so a log of millions verifies in the same memory. (The
// million-entry measurement belongs to the benchmarks.)
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { auditHead } from './log.js';
import { appendEntries } from './test-support.js';
import { verifyAuditLog } from './verify.js';

const N = 20_000;
const PAGE = 1000;

forEachBackend('audit verify streams', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
    await appendEntries(coffer, N, { batch: 500 });
  });

  test(`${N} entries verify in pages of at most ${PAGE}`, async () => {
    const pages: { rows: number; firstSeq: bigint | null }[] = [];
    const r = await verifyAuditLog(coffer, { batchSize: PAGE, onPage: (p) => pages.push(p) });
    assert.equal(r.ok, true, r.firstBad?.message);
    assert.equal(r.verified, BigInt(N));
    assert.equal(r.headHash, (await coffer.read((tx) => auditHead(tx))).hash);
    assert.ok(pages.length >= N / PAGE && pages.length <= N / PAGE + 1, `${pages.length} pages`);
    assert.ok(
      pages.every((p) => p.rows <= PAGE),
      'no page larger than the batch size',
    );
    // Keyset pages follow each other exactly.
    pages.filter((p) => p.rows).forEach((p, i) => assert.equal(p.firstSeq, BigInt(i * PAGE + 1)));
  });
});
