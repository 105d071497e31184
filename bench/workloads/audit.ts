// Workload 4: audit appends (one hash-chained entry per durable transaction, the head row
// locked) and verification of a long chain (entries/s and peak memory).
import { audit, type AuditInput } from '../../src/domains/audit/log.js';
import { verifyAuditLog } from '../../src/domains/audit/verify.js';
import { newBenchDb, type BackendName } from '../lib/backends.js';
import { stat, withMemory, type MemoryPeak } from '../lib/stats.js';
import { ratioOf, type Measurement, type RunSettings } from '../lib/types.js';
import { rawAppend, rawVerify, type AppendInput } from '../raw/audit.js';
import { closedLoop } from './chain.js';

const actor = { type: 'api_key', id: 'cfk_bench0001' } as const;
const input = (i: number): AppendInput & AuditInput => ({
  actor,
  action: 'bench.invoice.create',
  domain: 'bench',
  entity: 'invoice',
  entityId: `inv-${i}`,
  change: { details: { amount: String(1000 + i), currency: 'koinu', note: 'benchmark entry' } },
  details: { amount: String(1000 + i), currency: 'koinu', note: 'benchmark entry' },
});

export async function runAudit(
  backend: BackendName,
  s: RunSettings,
  record: (m: Measurement) => void,
  _skip: (b: string, w: string, r: string) => void,
): Promise<void> {
  const seconds = s.smoke ? 0.1 : 2;
  const chainLength = s.smoke ? 2000 : 1_000_000;
  const b = await newBenchDb(backend);
  try {
    const raw = await b.openRaw();
    // ---- append
    let n = 0;
    const cofferOp = () => b.coffer.write((tx) => audit(tx).record(input(n++)), { op: 'audit.record' });
    const rawOp = () => rawAppend(raw, input(n++));
    if (!s.smoke) {
      // Long enough for V8 to optimise both sides: paired one-second runs of a fresh process put
      // Coffer at 0.59 of raw in the first seconds and 0.85–0.94 from the fifth on (its Node CPU
      // per append 1.1 → 0.25 ms, raw's 0.45 → 0.20 ms).
      await closedLoop(1, 4, cofferOp);
      await closedLoop(1, 4, rawOp);
    }
    const c: number[] = [];
    const r: number[] = [];
    for (let rep = 0; rep < s.reps; rep++) {
      c.push((await closedLoop(1, seconds, cofferOp)).rate);
      r.push((await closedLoop(1, seconds, rawOp)).rate);
    }
    const coffer = stat(c);
    const rawS = stat(r);
    record({
      workload: 'audit',
      case: 'append',
      backend,
      unit: 'entries/s',
      higherIsBetter: true,
      coffer,
      raw: rawS,
      ratio: ratioOf(coffer, rawS, true),
      extra: { note: '1 client, one entry per durable transaction' },
      at: new Date().toISOString(),
    });

    // ---- verify a long chain: fill through the public API in batches (set-up, not timed)
    const t0 = Date.now();
    const head = await b.coffer.read((tx) => tx.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow());
    let have = Number(head.seq);
    while (have < chainLength) {
      const k = Math.min(5000, chainLength - have);
      await b.coffer.write((tx) => audit(tx).recordMany(Array.from({ length: k }, (_, i) => input(have + i))), { op: 'bench.audit.fill' });
      have += k;
    }
    s.log(`  audit chain of ${have.toLocaleString('en-US')} entries ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const cv: number[] = [];
    const rv: number[] = [];
    const cm: MemoryPeak[] = [];
    const rm: MemoryPeak[] = [];
    // Two repetitions of the long walk (each side), to keep the full run under an hour.
    for (let rep = 0; rep < Math.min(s.reps, 2); rep++) {
      const a = await withMemory(() => verifyAuditLog(b.coffer));
      if (!a.value.ok || Number(a.value.verified) !== have) throw new Error(`coffer verify: ${JSON.stringify(a.value.firstBad)}`);
      cv.push(have / a.seconds);
      cm.push(a.memory);
      const d = await withMemory(() => rawVerify(raw));
      if (Number(d.value) !== have) throw new Error(`raw verify saw ${d.value} entries, not ${have}`);
      rv.push(have / d.seconds);
      rm.push(d.memory);
    }
    const vc = stat(cv);
    const vr = stat(rv);
    const peak = (xs: MemoryPeak[], k: keyof MemoryPeak) => Math.max(...xs.map((x) => x[k]));
    record({
      workload: 'audit',
      case: 'verify chain',
      backend,
      tableRows: have,
      unit: 'entries/s',
      higherIsBetter: true,
      coffer: vc,
      raw: vr,
      ratio: ratioOf(vc, vr, true),
      extra: {
        peakRssMiBCoffer: peak(cm, 'peakRssMiB'),
        peakRssMiBRaw: peak(rm, 'peakRssMiB'),
        heapGrowthMiBCoffer: peak(cm, 'heapGrowthMiB'),
        heapGrowthMiBRaw: peak(rm, 'heapGrowthMiB'),
        note: `${have.toLocaleString('en-US')} entries; Coffer pages of 1000 (one read transaction each), raw ${backend === 'memory' || backend === 'sqlite' ? 'one iterating statement' : 'keyset pages of 1000'}`,
      },
      at: new Date().toISOString(),
    });
    await raw.close();
  } finally {
    await b.close();
  }
}
