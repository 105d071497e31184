// Per-key rate limiting: a token bucket per principal (refilled continuously), in memory. One
// process serves one database, so an in-process limiter is exact for it; several replicas
// would each enforce the limit on their own share.
import { HttpError } from './http-errors.js';

export interface RateLimitConfig {
  /** Sustained requests per second per key; 0 disables limiting. */
  perSecond: number;
  /** Requests a key may burst above the sustained rate. */
  burst: number;
}

/** A 429 that knows how long the key must wait: the Retry-After header carries it. */
export class RateLimitedError extends HttpError {
  readonly retryAfterSeconds: number;
  constructor(perSecond: number, retryAfterSeconds: number) {
    super(429, 'rate_limited', `rate limit of ${perSecond} requests/s exceeded; retry in ${retryAfterSeconds} s`);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export class RateLimiter {
  readonly #cfg: RateLimitConfig;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  constructor(cfg: RateLimitConfig) {
    this.#cfg = cfg;
  }

  /** Takes one token for `key` or throws RateLimitedError (429) with the seconds to wait. */
  take(key: string, now = Date.now()): void {
    if (this.#cfg.perSecond <= 0) return;
    const b = this.#buckets.get(key) ?? { tokens: this.#cfg.burst, at: now };
    b.tokens = Math.min(this.#cfg.burst, b.tokens + ((now - b.at) / 1000) * this.#cfg.perSecond);
    b.at = now;
    if (b.tokens < 1) {
      this.#buckets.set(key, b);
      // Whole seconds until one token is back, rounded up: Retry-After takes an integer.
      throw new RateLimitedError(this.#cfg.perSecond, Math.ceil((1 - b.tokens) / this.#cfg.perSecond));
    }
    b.tokens -= 1;
    this.#buckets.set(key, b);
    if (this.#buckets.size > 100_000) this.#evict(now);
  }

  #evict(now: number): void {
    // Buckets that have refilled completely carry no state worth keeping.
    for (const [k, b] of this.#buckets)
      if (b.tokens + ((now - b.at) / 1000) * this.#cfg.perSecond >= this.#cfg.burst) this.#buckets.delete(k);
  }
}
