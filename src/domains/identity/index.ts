// The identity domain's stores, for one transaction and one actor:
//   await coffer.write((tx) => identity(tx, actor).keys.create({...}), { op: 'identity.createKey' });
// Authentication (authenticateApiKey, authenticateSession, inspectToken) also works in
// coffer.read(). Every mutation goes through the row history and records an audit entry in
// the same transaction.
import type { Tx } from '../../db/tx.js';
import type { Actor } from '../audit/actor.js';
import type { IdentityOptions } from './base.js';
import { ApiKeys, Integrations } from './integrations.js';
import { TokenConfigs, Tokens } from './tokens.js';
import { Roles, Sessions, Users } from './users.js';

export interface IdentityStores {
  users: Users;
  roles: Roles;
  sessions: Sessions;
  integrations: Integrations;
  keys: ApiKeys;
  tokenConfigs: TokenConfigs;
  tokens: Tokens;
}

export function identity(tx: Tx, actor: Actor, opts: IdentityOptions = {}): IdentityStores {
  return {
    users: new Users(tx, actor, opts),
    roles: new Roles(tx, actor, opts),
    sessions: new Sessions(tx, actor, opts),
    integrations: new Integrations(tx, actor, opts),
    keys: new ApiKeys(tx, actor, opts),
    tokenConfigs: new TokenConfigs(tx, actor, opts),
    tokens: new Tokens(tx, actor, opts),
  };
}

export type { IdentityOptions } from './base.js';
export { authenticateApiKey, type ApiKey, type Integration, type KeyPrincipal, ApiKeys, Integrations } from './integrations.js';
export {
  authenticateSession,
  userScopes,
  type Role,
  type Session,
  type SessionPrincipal,
  type User,
  Roles,
  Sessions,
  Users,
} from './users.js';
export { inspectToken, TOKEN_TRANSITIONS, type Token, type TokenConfig, type TokenStatus, TokenConfigs, Tokens } from './tokens.js';
export { hasScope, requireScope, normalizeScopes, type Scope, type ScopeLevel } from './scopes.js';
export { credentialId } from './credentials.js';
