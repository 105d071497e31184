// `coffer audit verify` walks the hash chain (paged, bounded memory) and reports the first bad
// entry or the verified length and head hash; `coffer audit head` prints the head so an
// operator can anchor it elsewhere and later verify against it with --anchor.
import { userInfo } from 'node:os';
import type { Command } from '@commander-js/extra-typings';
import { pino, type Logger } from 'pino';
import { loadConfig, type CofferConfig } from '../config/config.js';
import { ValidationError } from '../db/errors.js';
import { Coffer } from '../db/store.js';
import { systemActor, type Actor } from '../domains/audit/actor.js';
import { auditHead } from '../domains/audit/log.js';
import { verifyAuditLog } from '../domains/audit/verify.js';
import { requireExistingDatabase } from './existing-db.js';

export const DB_HELP = 'database URL (sqlite:PATH, memory://, postgres://…, mysql://…)';
export const CONFIG_HELP = 'JSON config file (default: ./coffer.config.json if present)';

export interface CommonOpts {
  db?: string;
  config?: string;
}

export function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function cliLogger(config: CofferConfig): Logger {
  return pino({ level: config.log.level === 'info' ? 'warn' : config.log.level }, pino.destination(2));
}

/** Opens the configured database (refusing pending migrations), runs fn, closes. */
export async function withCoffer<T>(opts: CommonOpts, fn: (coffer: Coffer) => Promise<T>): Promise<T> {
  const config = loadConfig({ configFile: opts.config, flags: { 'database.url': opts.db } });
  requireExistingDatabase(config);
  const coffer = await Coffer.open({ config, migrate: 'verify', logger: cliLogger(config) });
  try {
    return await fn(coffer);
  } finally {
    await coffer.close();
  }
}

/** The actor the command line acts as: system "cli:<os user>". */
export function cliActor(): Actor {
  let user = 'unknown';
  try {
    user =
      userInfo()
        .username.replace(/[^\x21-\x7e]/g, '_')
        .slice(0, 100) || 'unknown';
  } catch {
    // no passwd entry (containers)
  }
  return systemActor(`cli:${user}`);
}

const json = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x), 2);
export { json as toJson };

function parseAnchor(s: string): { seq: bigint; hash: string } {
  const m = /^([1-9][0-9]*):([0-9a-f]{64})$/.exec(s.trim());
  if (!m) throw new ValidationError('--anchor: expected SEQ:HASH as printed by `coffer audit head`', { field: 'anchor' });
  return { seq: BigInt(m[1]!), hash: m[2]! };
}

export function registerAuditCommands(program: Command): void {
  const auditCmd = program.command('audit').description('the tamper-evident audit log');

  auditCmd
    .command('verify')
    .description('walk the hash chain and report the first broken entry, or the verified length and head hash')
    .option('--batch <n>', 'entries per page (memory is bounded by it)', '1000')
    .option('--anchor <seq:hash>', 'also require entry SEQ to have HASH (a head anchored elsewhere earlier)')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const batchSize = Number(opts.batch);
      const anchor = opts.anchor ? parseAnchor(opts.anchor) : undefined;
      const report = await withCoffer(opts, (coffer) => verifyAuditLog(coffer, { batchSize, ...(anchor ? { anchor } : {}) }));
      if (opts.json) out(json(report));
      else if (report.ok) out(`audit log verified: ${report.verified} entries, head ${report.headSeq}:${report.headHash}`);
      else
        out(
          `audit log BROKEN at entry ${report.firstBad!.seq} (${report.firstBad!.kind}): ${report.firstBad!.message}; ${report.verified} entries verified before it`,
        );
      if (!report.ok) throw new Error(`audit log verification failed at entry ${report.firstBad!.seq} (${report.firstBad!.kind})`);
    });

  auditCmd
    .command('head')
    .description('print the head of the chain as SEQ:HASH, to anchor it outside the database')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const head = await withCoffer(opts, (coffer) => coffer.read((tx) => auditHead(tx), { op: 'audit.head' }));
      if (opts.json) out(json({ seq: head.seq, hash: head.hash, at: new Date().toISOString() }));
      else out(`${head.seq}:${head.hash}`);
    });
}
