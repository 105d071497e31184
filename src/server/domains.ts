// The one list of what each domain plugs into the service: its routes, its block processors,
// and its dashboard panels. A new domain adds itself here.
import { chainRoutes } from '../domains/chain/routes.js';
import type { BlockProcessor } from '../domains/chain/processors.js';
import { chainPanels } from '../domains/chain/dashboard.js';
import { tokenProcessors } from '../domains/tokens/processors.js';
import { tokenRoutes } from '../domains/tokens/routes.js';
import { identityRoutes } from '../domains/identity/routes.js';
import { auditRoutes } from '../domains/audit/routes.js';
import { auditPanel } from '../domains/audit/dashboard.js';
import type { DashboardSources } from './dashboard/data.js';
import type { RouteSpec } from './route.js';

export const DOMAIN_ROUTES: readonly RouteSpec[] = [...chainRoutes(), ...tokenRoutes(), ...identityRoutes(), ...auditRoutes()];

export const BLOCK_PROCESSORS: readonly BlockProcessor[] = [...tokenProcessors()];

export const DASHBOARD_SOURCES: DashboardSources = {
  chains: chainPanels,
  audit: auditPanel,
};
