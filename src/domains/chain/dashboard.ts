// The chain panel of the dashboard: every chain's height, latest known height and lag.
import type { Coffer } from '../../db/store.js';
import type { ChainPanel } from '../../server/dashboard/data.js';
import { chain } from './store.js';

export async function chainPanels(coffer: Coffer): Promise<ChainPanel[]> {
  return coffer.read(
    // Three statements for every chain at once: this runs on each dashboard refresh and each
    // /metrics scrape (it read each chain's cursor and health one by one).
    async (tx) =>
      (await chain(tx).allChainsWithState()).map(({ chainId, cursor, health }) => ({
        chainId,
        height: cursor.height?.toString() ?? null,
        latestKnownHeight: health.latestHeight?.toString() ?? null,
        lag: health.lag?.toString() ?? null,
        finalizedHeight: cursor.finalizedHeight?.toString() ?? null,
        updatedAt: health.updatedAt.toISOString(),
      })),
    { op: 'dashboard.chains' },
  );
}
