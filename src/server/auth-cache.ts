// A short-lived cache of successful authentications, so a request does not pay a database
// transaction before its own (on PostgreSQL that was four round trips, doubling a point read).
// What keeps it safe:
// - only successes are cached, keyed by a SHA-256 of the presented token and the client address
//   (an IP allow-list decision is per address), never the token itself;
// - an entry lives at most `ttlMs`, and never past the credential's own expiry;
// - any identity change committed in this process (revoked key, deleted integration, logged-out
//   session, changed scopes or roles) bumps a generation counter that empties the cache, and an
//   authentication that was in flight while the counter moved is not cached;
// - a change made by another process (the CLI, another instance) takes effect within `ttlMs`.
import { hash } from 'node:crypto';
import type { Authenticator, Principal } from './route.js';

export interface Authenticated {
  principal: Principal;
  /** The credential's own expiry. */
  expiresAt: Date;
}

interface Entry {
  principal: Principal;
  until: number;
  generation: number;
}

export interface AuthCacheOptions {
  ttlMs: number;
  /** Entries kept at most (the oldest go first). */
  maxEntries?: number;
  /** The identity generation (bumped after every committed identity change in this process). */
  generation: () => number;
  now?: () => number;
}

export class AuthCache {
  readonly #entries = new Map<string, Entry>();
  readonly #o: Required<AuthCacheOptions>;
  hits = 0;
  misses = 0;

  constructor(o: AuthCacheOptions) {
    this.#o = { maxEntries: 10_000, now: Date.now, ...o };
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The cache key: a SHA-256 of the token and the client address, never the token itself. */
  #key(token: string, ip: string): string {
    // One-shot hash: the same digest as createHash().update(token).update('\0').update(ip),
    // without allocating a Hash object per request.
    return hash('sha256', `${token}\0${ip}`, 'base64');
  }

  /** The live entry for `key`, or undefined (a stale one is dropped). */
  #hit(key: string, generation: number): Principal | undefined {
    const hit = this.#entries.get(key);
    if (hit === undefined) return undefined;
    if (hit.generation === generation && hit.until > this.#o.now()) {
      this.hits++;
      return hit.principal;
    }
    this.#entries.delete(key);
    return undefined;
  }

  /** An Authenticator answering from the cache, and from `load` (the database) on a miss. */
  wrap(load: (token: string, ip: string) => Promise<Authenticated>): Authenticator {
    return {
      // Synchronous: a hit costs no promise. undefined sends the caller to authenticate().
      cached: (token, ip) => (this.#o.ttlMs <= 0 ? undefined : this.#hit(this.#key(token, ip), this.#o.generation())),
      authenticate: async (token, ip) => {
        if (this.#o.ttlMs <= 0) return (await load(token, ip)).principal;
        const key = this.#key(token, ip);
        const generation = this.#o.generation();
        const hit = this.#hit(key, generation);
        if (hit) return hit;
        this.misses++;
        const a = await load(token, ip);
        // Not cached if identity changed while this authentication was reading.
        if (this.#o.generation() === generation) {
          if (this.#entries.size >= this.#o.maxEntries) {
            const oldest = this.#entries.keys().next().value;
            if (oldest !== undefined) this.#entries.delete(oldest);
          }
          const until = Math.min(this.#o.now() + this.#o.ttlMs, a.expiresAt.getTime());
          this.#entries.set(key, { principal: a.principal, until, generation });
        }
        return a.principal;
      },
    };
  }
}
