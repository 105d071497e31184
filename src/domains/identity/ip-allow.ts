// IP allow-lists of API keys: addresses or CIDR blocks, IPv4 and IPv6. An empty list allows
// any address. IPv4-mapped IPv6 addresses (::ffff:192.0.2.1) match IPv4 entries.
import { BlockList, isIP } from 'node:net';
import { ValidationError } from '../../db/errors.js';

/** Validates and normalises entries to "address/prefix". */
export function normalizeIpAllow(list: readonly unknown[], field = 'ipAllow'): string[] {
  const out = new Set<string>();
  list.forEach((entry, i) => {
    const f = `${field}.${i}`;
    if (typeof entry !== 'string') throw new ValidationError(`${f}: expected an address or CIDR`, { field: f });
    const [addr, prefixText, ...rest] = entry.trim().split('/');
    const family = isIP(addr ?? '');
    if (!family || rest.length) throw new ValidationError(`${f}: "${entry.slice(0, 60)}" is not an IP address or CIDR`, { field: f });
    const max = family === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? max : /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new ValidationError(`${f}: prefix must be 0-${max}`, { field: f });
    out.add(`${addr!.toLowerCase()}/${prefix}`);
  });
  return [...out].sort();
}

function unmap(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip;
}

/**
 * The index of the first entry of `requested` (normalised "address/prefix") that `own` does not
 * cover, or -1 when it covers them all. An entry is covered by one of the same family whose block
 * holds its address and is at least as wide (an aligned block of at most that size inside it).
 * An empty `own` covers everything; an empty `requested` (any address) is covered only by it.
 */
export function firstUncovered(own: readonly string[], requested: readonly string[]): number {
  if (own.length === 0) return -1;
  if (requested.length === 0) return 0;
  return requested.findIndex((r) => {
    const [addr, p] = r.split('/');
    const family = isIP(addr!);
    return !own.some((o) => {
      const [a, q] = o.split('/');
      if (isIP(a!) !== family || Number(q) > Number(p)) return false;
      const bl = new BlockList();
      bl.addSubnet(a!, Number(q), family === 4 ? 'ipv4' : 'ipv6');
      return bl.check(addr!, family === 4 ? 'ipv4' : 'ipv6');
    });
  });
}

/** True when `ip` is allowed by the list (always, for an empty list). */
export function ipAllowed(list: readonly string[], ip: string | undefined): boolean {
  if (list.length === 0) return true;
  if (!ip) return false;
  const addr = unmap(ip.trim());
  const family = isIP(addr);
  if (!family) return false;
  const bl = new BlockList();
  for (const e of list) {
    const [a, p] = e.split('/');
    const fam = isIP(a!);
    bl.addSubnet(a!, Number(p), fam === 4 ? 'ipv4' : 'ipv6');
  }
  return bl.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}
