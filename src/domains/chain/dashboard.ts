// The chain panel of the dashboard: every chain's height, latest known height and lag.
import type { Coffer } from '../../db/store.js';
import type { ChainPanel } from '../../server/dashboard/data.js';
import { chain } from './store.js';

export async function chainPanels(coffer: Coffer): Promise<ChainPanel[]> {
  return coffer.read(
    async (tx) => {
      const store = chain(tx);
      const out: ChainPanel[] = [];
      for (const c of await store.listChains()) {
        const [cursor, health] = await Promise.all([store.getCursor(c.chainId), store.getHealth(c.chainId)]);
        out.push({
          chainId: c.chainId,
          height: cursor.height?.toString() ?? null,
          latestKnownHeight: health.latestHeight?.toString() ?? null,
          lag: health.lag?.toString() ?? null,
          finalizedHeight: cursor.finalizedHeight?.toString() ?? null,
          updatedAt: health.updatedAt.toISOString(),
        });
      }
      return out;
    },
    { op: 'dashboard.chains' },
  );
}
