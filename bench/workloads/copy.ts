// Workload 7: `coffer copy` of a 1M-transaction SQLite database to PostgreSQL (copyDatabase,
// what the CLI runs), rows/s and peak memory, against a hand-written raw copy of the same
// tables (iterate on SQLite, unnest INSERTs on PostgreSQL). Coffer's copy then verifies both
// sides (counts and content checksums); that phase is reported separately.
import { Coffer } from '../../src/db/store.js';
import { copyDatabase } from '../../src/ops/copy.js';
import { SilentProgress } from '../../src/ops/progress.js';
import { createDatabase } from '../../test/harness.js';
import type { Raw } from '../lib/backends.js';
import { ChainFixture } from '../lib/chain-fixture.js';
import { now, stat, withMemory, type MemoryPeak } from '../lib/stats.js';
import { ratioOf, type Measurement, type RunSettings } from '../lib/types.js';
import { rawCopyChain } from '../raw/copy.js';
import pg from 'pg';

/** Records when each phase (copy, verify) starts and ends. */
class PhaseClock extends SilentProgress {
  readonly phases = new Map<string, { start: number; end?: number }>();
  #current?: string;
  override phase(name: string, totalRows: number | null, unit?: string): void {
    this.#end();
    this.#current = name;
    this.phases.set(name, { start: now() });
    super.phase(name, totalRows, unit);
  }
  override done(): void {
    this.#end();
    super.done();
  }
  #end(): void {
    const p = this.#current ? this.phases.get(this.#current) : undefined;
    if (p && p.end === undefined) p.end = now();
  }
  seconds(name: string): number {
    const p = this.phases.get(name);
    return p && p.end !== undefined ? p.end - p.start : NaN;
  }
}

export async function runCopy(
  s: RunSettings,
  record: (m: Measurement) => void,
  _skip: (b: string, w: string, r: string) => void,
): Promise<void> {
  const size = s.smoke ? 3000 : 1_000_000;
  const reps = s.smoke ? 1 : 2;
  const f = await ChainFixture.create('sqlite');
  try {
    await f.growTo(size, s.log);
    const srcRaw = f.raw as Extract<Raw, { kind: 'sqlite' }>;
    const source = f.bench.coffer;
    const cr: number[] = [];
    const rr: number[] = [];
    const verifyS: number[] = [];
    const cm: MemoryPeak[] = [];
    const rm: MemoryPeak[] = [];
    let cofferRows = 0;
    let rawRows = 0;
    for (let rep = 0; rep < reps; rep++) {
      // Coffer: into an empty database, as `coffer copy --to` expects.
      const d1 = await createDatabase('postgres');
      try {
        const target = await Coffer.open({ url: d1.url, migrate: 'skip' });
        try {
          const clock = new PhaseClock();
          const r = await withMemory(() => copyDatabase(source, target, { progress: clock }));
          if (!r.value.verified) throw new Error('copy was not verified');
          cofferRows = r.value.rowsCopied;
          cr.push(cofferRows / clock.seconds('copy'));
          verifyS.push(clock.seconds('verify'));
          cm.push(r.memory);
        } finally {
          await target.close();
        }
      } finally {
        await d1.drop();
      }
      // Raw: into a database whose schema Coffer created (empty tables).
      const d2 = await createDatabase('postgres');
      try {
        await (await Coffer.open({ url: d2.url })).close();
        const pool = new pg.Pool({ connectionString: d2.url, max: 2 });
        try {
          const t0 = now();
          const r = await withMemory(() => rawCopyChain(srcRaw.db, pool));
          rawRows = r.value;
          rr.push(rawRows / (now() - t0));
          rm.push(r.memory);
        } finally {
          await pool.end();
        }
      } finally {
        await d2.drop();
      }
    }
    const coffer = stat(cr);
    const raw = stat(rr);
    const peak = (xs: MemoryPeak[], k: keyof MemoryPeak) => Math.max(...xs.map((x) => x[k]));
    record({
      workload: 'copy',
      case: `${size.toLocaleString('en-US')} transactions`,
      backend: 'sqlite→postgres',
      tableRows: size,
      unit: 'rows/s',
      higherIsBetter: true,
      coffer,
      raw,
      ratio: ratioOf(coffer, raw, true),
      extra: {
        peakRssMiBCoffer: peak(cm, 'peakRssMiB'),
        peakRssMiBRaw: peak(rm, 'peakRssMiB'),
        heapGrowthMiBCoffer: peak(cm, 'heapGrowthMiB'),
        heapGrowthMiBRaw: peak(rm, 'heapGrowthMiB'),
        cofferRows,
        rawRows,
        cofferVerifySeconds: stat(verifyS).median,
        note: `copy phase only (Coffer batches of 1000 rows per target transaction, raw 5000 per unnest INSERT); Coffer then verifies counts and checksums in ${stat(verifyS).median.toFixed(1)} s`,
      },
      at: new Date().toISOString(),
    });
  } finally {
    await f.close();
  }
}
