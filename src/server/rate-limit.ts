// Rate limiting in memory, with token buckets refilled continuously: per principal for requests
// that authenticated, and per client address for failed authentications. One process serves one
// database, so an in-process limiter is exact for it; several replicas would each enforce the
// limit on their own share.
import { HttpError } from './http-errors.js';

export interface RateLimitConfig {
  /** Sustained requests per second per key; 0 disables limiting. */
  perSecond: number;
  /** Requests a key may burst above the sustained rate. */
  burst: number;
}

/** A 429 that knows how long the client must wait: the Retry-After header carries it. */
export class RateLimitedError extends HttpError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number) {
    super(429, 'rate_limited', `${message}; retry in ${retryAfterSeconds} s`);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

interface Bucket {
  tokens: number;
  at: number;
}

export interface LimiterOptions {
  /** Buckets kept at most: keys an attacker can choose (client addresses) must not grow memory. */
  maxEntries?: number;
}

/** Buckets by key, bounded in number. */
abstract class Buckets {
  protected readonly cfg: RateLimitConfig;
  protected readonly buckets = new Map<string, Bucket>();
  readonly #max: number;
  constructor(cfg: RateLimitConfig, max: number) {
    this.cfg = cfg;
    this.#max = max;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Tokens `b` holds at `now` (refilled since it was last charged, up to the burst). */
  protected level(b: Bucket, now: number): number {
    return Math.min(this.cfg.burst, b.tokens + ((now - b.at) / 1000) * this.cfg.perSecond);
  }

  /** Whole seconds until one token is back, rounded up: Retry-After takes an integer. */
  protected wait(tokens: number): number {
    return Math.ceil((1 - tokens) / this.cfg.perSecond);
  }

  protected trim(now: number): void {
    if (this.buckets.size <= this.#max) return;
    // Buckets that have refilled completely carry no state worth keeping.
    for (const [k, b] of this.buckets) if (this.level(b, now) >= this.cfg.burst) this.buckets.delete(k);
    // Then the least recently inserted, down to 3/4 of the bound, so this scan runs at most once
    // per max/4 new keys even when every bucket is still draining (rotating addresses).
    const keep = Math.floor((this.#max * 3) / 4);
    for (const k of this.buckets.keys()) {
      if (this.buckets.size <= keep) break;
      this.buckets.delete(k);
    }
  }
}

/** Per-key limiter for authenticated requests. */
export class RateLimiter extends Buckets {
  constructor(cfg: RateLimitConfig, opts: LimiterOptions = {}) {
    super(cfg, opts.maxEntries ?? 100_000);
  }

  /** Takes one token for `key` or throws RateLimitedError (429) with the seconds to wait. */
  take(key: string, now = Date.now()): void {
    if (this.cfg.perSecond <= 0) return;
    const b = this.buckets.get(key) ?? { tokens: this.cfg.burst, at: now };
    b.tokens = this.level(b, now);
    b.at = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      throw new RateLimitedError(`rate limit of ${this.cfg.perSecond} requests/s exceeded`, this.wait(b.tokens));
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
    this.trim(now);
  }
}

/**
 * Failed authentications (401, 403) per client address: each one takes a token, and an address
 * without one is refused before its credential is looked at (a bad key is not cached, so each
 * try would cost a database read). Failures that were in flight together all count, so the
 * bucket can go below zero: an address's failures stay within the rate however many it sends
 * at once, and its wait grows with them.
 */
export class AuthFailureLimiter extends Buckets {
  constructor(cfg: RateLimitConfig, opts: LimiterOptions = {}) {
    super(cfg, opts.maxEntries ?? 10_000);
  }

  /** Throws RateLimitedError (429) if `address` has no failure left; costs nothing while none failed. */
  check(address: string, now?: number): void {
    // On every authenticated request: with no recent failure anywhere, one size test.
    if (this.buckets.size === 0) return;
    const b = this.buckets.get(address);
    if (b === undefined) return;
    const t = now ?? Date.now();
    const tokens = this.level(b, t);
    if (tokens >= 1) {
      if (tokens >= this.cfg.burst) this.buckets.delete(address);
      return;
    }
    throw new RateLimitedError(`too many failed authentications from this address (limit ${this.cfg.perSecond}/s)`, this.wait(tokens));
  }

  /** Counts one failed authentication from `address`. */
  record(address: string, now = Date.now()): void {
    if (this.cfg.perSecond <= 0) return;
    const b = this.buckets.get(address);
    const tokens = (b ? this.level(b, now) : this.cfg.burst) - 1;
    // Re-inserted, so the addresses failing now are the last to be trimmed.
    this.buckets.delete(address);
    this.buckets.set(address, { tokens, at: now });
    this.trim(now);
  }
}
