// Workloads 1, 3 and 5 on one growing chain database per backend: at each scaling stage the
// database is bulk-filled to the stage's size, then point reads (which do not change the
// size), ingest and reorgs are measured.
import type { BackendName } from '../lib/backends.js';
import { ChainFixture } from '../lib/chain-fixture.js';
import { sizeLabel, type Measurement, type RunSettings, type WorkloadName } from '../lib/types.js';
import { ingest, reads, reorg, type ChainParams } from './chain.js';

export const FULL: ChainParams = {
  shape: { txPerBlock: 1000, outputsPerTx: 2 },
  ingestBlocks: 10,
  readSeconds: 2,
  readClients: [1, 8],
  reorgDepths: [1, 10, 100],
};

export const SMOKE: ChainParams = {
  shape: { txPerBlock: 100, outputsPerTx: 2 },
  ingestBlocks: 2,
  readSeconds: 0.1,
  readClients: [1, 8],
  reorgDepths: [1, 3],
};

/** The stage whose figures are the workload's headline (1M rows, as the issue asks for reads). */
export const PRIMARY_STAGE = '1M';

export function defaultStages(backend: BackendName, smoke: boolean): number[] {
  if (smoke) return [1000, 3000];
  return backend === 'sqlite' || backend === 'postgres' ? [10_000, 1_000_000, 10_000_000] : [10_000, 1_000_000];
}

export async function runChainWorkloads(
  backend: BackendName,
  workloads: readonly WorkloadName[],
  o: { stages?: number[] },
  s: RunSettings,
  record: (m: Measurement) => void,
): Promise<void> {
  const p = s.smoke ? SMOKE : FULL;
  const stages = o.stages ?? defaultStages(backend, s.smoke);
  const primary = s.smoke ? stages[stages.length - 1]! : stages.includes(1_000_000) ? 1_000_000 : stages[stages.length - 1]!;
  const f = await ChainFixture.create(backend);
  try {
    for (const size of stages) {
      const stage = sizeLabel(size);
      s.log(` stage ${stage}: filling ${backend} to ${size.toLocaleString('en-US')} transactions`);
      await f.growTo(size, s.log);
      if (workloads.includes('reads')) for (const c of p.readClients) record(await reads(f, stage, c, p, s));
      if (workloads.includes('ingest')) record(await ingest(f, stage, p, { ...s, reps: s.smoke ? s.reps : Math.max(s.reps, 5) }));
      if (workloads.includes('reorg')) {
        // Every depth at the headline stage; one depth elsewhere, to show the cost does not grow with the database.
        const depths = size === primary ? p.reorgDepths : [p.reorgDepths[Math.min(1, p.reorgDepths.length - 1)]!];
        for (const d of depths) record(await reorg(f, stage, d, p, s));
      }
    }
  } finally {
    await f.close();
  }
}
