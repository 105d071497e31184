// Scopes: "<domain>:<level>" with level read < write < admin (each includes the ones below),
// and "*" as the domain for every domain. A role grants one level per domain; an API key
// carries a list. Domains are those the migrations define, so a typo cannot grant nothing
// silently.
import { z } from 'zod';
import { ForbiddenError, ValidationError } from '../../db/errors.js';
import { MIGRATIONS } from '../registry.js';
import { SCOPE_LEVELS } from './0001_init.js';

export type ScopeLevel = (typeof SCOPE_LEVELS)[number];
export type Scope = string;

const RANK: Record<ScopeLevel, number> = { read: 1, write: 2, admin: 3 };

let known: Set<string> | undefined;
/** Domains a scope may name: every domain with migrations. */
export function knownDomains(): Set<string> {
  known ??= new Set(MIGRATIONS.map((m) => m.domain));
  return known;
}

export function parseScope(s: unknown, field = 'scope'): { domain: string; level: ScopeLevel } {
  const m = typeof s === 'string' ? /^(\*|[a-z][a-z0-9_]{0,63}):(read|write|admin)$/.exec(s) : null;
  if (!m)
    throw new ValidationError(`${field}: "${String(s).slice(0, 80)}" is not a scope (<domain>:read|write|admin, or *:<level>)`, { field });
  const domain = m[1]!;
  if (domain !== '*' && !knownDomains().has(domain)) {
    throw new ValidationError(`${field}: unknown domain "${domain}" (known: ${[...knownDomains()].sort().join(', ')})`, { field });
  }
  return { domain, level: m[2] as ScopeLevel };
}

/** Validates and normalises a scope list: one entry per domain (the highest level), sorted. */
export function normalizeScopes(list: readonly unknown[], field = 'scopes'): Scope[] {
  const best = new Map<string, ScopeLevel>();
  list.forEach((s, i) => {
    const { domain, level } = parseScope(s, `${field}.${i}`);
    const cur = best.get(domain);
    if (!cur || RANK[level] > RANK[cur]) best.set(domain, level);
  });
  return [...best.entries()].map(([d, l]) => `${d}:${l}`).sort();
}

export const ScopesSchema = z.array(z.string()).max(64);

/** True when the scopes grant `level` (or more) on `domain`. */
export function hasScope(scopes: readonly Scope[], domain: string, level: ScopeLevel): boolean {
  for (const s of scopes) {
    const i = s.lastIndexOf(':');
    const d = s.slice(0, i);
    const l = s.slice(i + 1) as ScopeLevel;
    if ((d === domain || d === '*') && RANK[l] !== undefined && RANK[l] >= RANK[level]) return true;
  }
  return false;
}

/** Throws ForbiddenError unless the scopes grant `level` on `domain`. */
export function requireScope(scopes: readonly Scope[], domain: string, level: ScopeLevel): void {
  if (!hasScope(scopes, domain, level)) throw new ForbiddenError(`requires scope ${domain}:${level}`, { scope: `${domain}:${level}` });
}
