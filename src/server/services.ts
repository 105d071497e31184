// What route handlers reach: the default database, the per-chain router, the block processors
// every ingest runs, and the actor of the request for the audit log.
import type { Coffer } from '../db/store.js';
import { apiKeyActor, systemActor, userActor, type Actor } from '../domains/audit/actor.js';
import type { BlockProcessor } from '../domains/chain/processors.js';
import type { ChainRouter } from '../domains/chain/router.js';
import type { Principal } from './route.js';

export interface Services {
  /** The default database (identity, audit, tokens of chains not mapped elsewhere). */
  coffer: Coffer;
  chains: ChainRouter;
  /** Run on every ingested block, in its transaction (the token flows). */
  blockProcessors: readonly BlockProcessor[];
}

/** The audit actor for a request: the API key (or user) that made it. */
export function actorOf(p: Principal | null): Actor {
  if (!p) return systemActor('anonymous');
  if (p.kind === 'api_key') return apiKeyActor(p.id);
  if (p.kind === 'user') return userActor(p.id);
  return systemActor(p.id);
}
