// Walks the audit chain from seq 1 in pages (keyset pagination on seq, one short read
// transaction per page), so a log of any length verifies in memory bounded by the page size.
// Reports the verified length and head hash, or the first bad entry and what is wrong with it.
import type { Coffer } from '../../db/store.js';
import { ValidationError } from '../../db/errors.js';
import { auditHead, entryHash, GENESIS_HASH, readEntries } from './log.js';

export type TamperKind =
  /** The entry's content no longer matches its hash. */
  | 'changed'
  /** The entry was changed and its hash recomputed: the next entry committed to another hash. */
  | 'rewritten'
  /** The entry is not the one that belongs at this position (moved, swapped or replaced). */
  | 'reordered'
  /** Sequence numbers are missing inside the log. */
  | 'deleted'
  /** The log ends before the head recorded with the last append. */
  | 'truncated'
  /** Entries beyond the head: appended without the audit writer. */
  | 'forged'
  /** A consistent chain whose entry at the head or anchor has another hash: rewritten at or before it. */
  | 'head_mismatch'
  | 'anchor_mismatch';

export interface VerifyOptions {
  /** Entries per page (default 1000); memory use is bounded by it. */
  batchSize?: number;
  /** An externally anchored head (`coffer audit head` output kept elsewhere): entry seq must have this hash. */
  anchor?: { seq: bigint; hash: string };
  /** Called after each page (tests use it to show the walk is paged). */
  onPage?: (page: { rows: number; firstSeq: bigint | null; lastSeq: bigint | null }) => void;
}

export interface VerifyReport {
  ok: boolean;
  /** Entries verified good, contiguous from seq 1. */
  verified: bigint;
  /** When ok: seq and hash of the last entry (0 and 64 zeros for an empty log). */
  headSeq?: bigint;
  headHash?: string;
  /** The head pointer as stored (audit_head) when the walk began. */
  recordedHead: { seq: bigint; hash: string };
  pages: number;
  firstBad?: { seq: bigint; kind: TamperKind; message: string };
}

const DEFAULT_BATCH = 1000;

export async function verifyAuditLog(coffer: Coffer, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const batch = opts.batchSize ?? DEFAULT_BATCH;
  if (!Number.isInteger(batch) || batch < 1 || batch > 100_000)
    throw new ValidationError('batchSize: must be an integer from 1 to 100000', { field: 'batchSize' });
  if (opts.anchor && !/^[0-9a-f]{64}$/.test(opts.anchor.hash))
    throw new ValidationError('anchor: hash must be 64 lowercase hex characters', { field: 'anchor' });
  const recordedHead = await coffer.read((tx) => auditHead(tx), { op: 'audit.verify' });

  let expected = 1n;
  let prevHash = GENESIS_HASH;
  let pages = 0;
  let hashAtHead: string | undefined;
  const report = (firstBad?: VerifyReport['firstBad']): VerifyReport =>
    firstBad
      ? { ok: false, verified: firstBad.seq - 1n, recordedHead, pages, firstBad }
      : { ok: true, verified: expected - 1n, headSeq: expected - 1n, headHash: prevHash, recordedHead, pages };

  for (;;) {
    const entries = await coffer.read((tx) => readEntries(tx, { afterSeq: expected - 1n, limit: batch }), { op: 'audit.verify' });
    pages++;
    opts.onPage?.({ rows: entries.length, firstSeq: entries[0]?.seq ?? null, lastSeq: entries[entries.length - 1]?.seq ?? null });
    for (const e of entries) {
      if (e.seq !== expected) {
        const last = e.seq - 1n;
        return report({
          seq: expected,
          kind: 'deleted',
          message: last === expected ? `entry ${expected} is missing (deleted)` : `entries ${expected}..${last} are missing (deleted)`,
        });
      }
      const { hash, ...body } = e;
      const selfOk = entryHash(body) === hash;
      const linkOk = e.prevHash === prevHash;
      if (!selfOk && !linkOk) {
        return report({
          seq: e.seq,
          kind: 'reordered',
          message: `entry ${e.seq} does not belong at this position: neither its content nor its link to entry ${e.seq - 1n} matches (moved, swapped or replaced)`,
        });
      }
      if (!selfOk)
        return report({ seq: e.seq, kind: 'changed', message: `entry ${e.seq} was changed: its content does not match its hash` });
      if (!linkOk) {
        // The entry is self-consistent but committed to another predecessor: the predecessor was
        // changed and re-hashed (or, for seq 1, its link to the genesis was altered).
        if (e.seq === 1n)
          return report({ seq: 1n, kind: 'rewritten', message: 'entry 1 does not link to the genesis hash: it was rewritten' });
        return report({
          seq: e.seq - 1n,
          kind: 'rewritten',
          message: `entry ${e.seq - 1n} was changed and its hash recomputed: entry ${e.seq} committed to a different hash of it`,
        });
      }
      if (e.seq === recordedHead.seq) hashAtHead = e.hash;
      if (opts.anchor && e.seq === opts.anchor.seq && e.hash !== opts.anchor.hash) {
        return report({
          seq: e.seq,
          kind: 'anchor_mismatch',
          message: `entry ${e.seq} has hash ${e.hash}, the anchor says ${opts.anchor.hash}: the log was rewritten at or before entry ${e.seq}`,
        });
      }
      prevHash = e.hash;
      expected += 1n;
    }
    if (entries.length < batch) break;
  }

  const last = expected - 1n;
  if (last < recordedHead.seq) {
    return report({
      seq: last + 1n,
      kind: 'truncated',
      message: `the log ends at entry ${last} but the head records ${recordedHead.seq}: entries ${last + 1n}..${recordedHead.seq} were deleted`,
    });
  }
  if (recordedHead.seq > 0n && hashAtHead !== recordedHead.hash) {
    return report({
      seq: recordedHead.seq,
      kind: 'head_mismatch',
      message: `entry ${recordedHead.seq} has hash ${hashAtHead}, the head records ${recordedHead.hash}: the log (or the head) was rewritten at or before entry ${recordedHead.seq}`,
    });
  }
  if (opts.anchor && last < opts.anchor.seq) {
    return report({
      seq: last + 1n,
      kind: 'truncated',
      message: `the log ends at entry ${last}, before the anchored entry ${opts.anchor.seq}`,
    });
  }
  // Every committed append advances the head in the same transaction, so an entry beyond the
  // head as it is now was not written by the audit writer.
  const headNow = await coffer.read((tx) => auditHead(tx), { op: 'audit.verify' });
  if (last > headNow.seq) {
    const seq = headNow.seq + 1n;
    return report({
      seq,
      kind: 'forged',
      message: `entries ${seq}..${last} lie beyond the head (${headNow.seq}): they were appended without the audit writer`,
    });
  }
  return report();
}
