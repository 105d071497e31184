// The audit log: one hash-chained entry per domain change, written in the same transaction as
// the change, so no change commits without its entry and no entry survives a rolled-back change.
//
// Appends are serialised on the single audit_head row (locked FOR UPDATE; SQLite's one writer
// already serialises): the writer reads the previous seq and hash under the lock, inserts
// seq = prev + 1 (the primary key refuses a duplicate) and advances the head in the same
// transaction. A race therefore can never fork the chain or leave a gap. Call record() last in
// a transaction: the head lock is held until commit, and taking it last keeps lock order
// acyclic (no deadlock with row locks the operation took before).
//
// Entry hash = SHA-256 (lowercase hex) of the UTF-8 canonical JSON (docs/canonical-json.md) of
//   {"action","actor":{"id","type"},"at","change","domain","entity","entity_id","prev_hash","seq","v":1}
// with seq as a decimal string, at as ISO-8601 UTC with milliseconds, change as stored (JSON
// or null). The first entry's prev_hash is 64 zeros. docs/audit.md states this normatively.
import { z } from 'zod';
import { NO_EDGE_SPACE } from '../../util/text.js';
import { insertRows } from '../../db/bulk.js';
import { toBigInt } from '../../db/codec.js';
import { ConflictError, MigrationError, ValidationError } from '../../db/errors.js';
import type { Tx } from '../../db/tx.js';
import { canonicalJson, sha256Hex, type CanonicalValue } from '../../util/canonical-json.js';
import { checkActor, type Actor, type ActorType } from './actor.js';
import { toJsonValue, type JsonValue, rowJson } from './json.js';
import { redactDeep, redactRow } from './policy.js';
import { GENESIS_HASH } from './0001_init.js';

export const AUDIT_LOG = 'audit_log';
export const AUDIT_HEAD = 'audit_head';
export { GENESIS_HASH };

type Row = Record<string, unknown>;

export interface AuditInput {
  actor: Actor;
  /** Dotted verb, e.g. "identity.api_key.create". */
  action: string;
  /** The domain that made the change ("identity"). */
  domain: string;
  /** The kind of thing changed ("api_key"). */
  entity: string;
  entityId: string | number | bigint;
  /** When before/after are rows of this table, its secret columns are redacted (src/domains/audit/policy.ts). */
  table?: string;
  before?: Row | null;
  after?: Row | null;
  /** Further facts; keys that look like secrets are redacted at any depth. */
  details?: Record<string, unknown>;
}

export interface AuditEntry {
  seq: bigint;
  at: Date;
  actor: Actor;
  action: string;
  domain: string;
  entity: string;
  entityId: string;
  change: JsonValue;
  prevHash: string;
  hash: string;
}

const NAME = /^[a-z][a-z0-9_]*$/;
/** An entity id as stored: no control characters (PostgreSQL refuses NUL in text outright). */
export const EntityIdSchema = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[^\u0000-\u001f\u007f]+$/, 'no control characters')
  .regex(NO_EDGE_SPACE, 'no leading or trailing spaces');
const InputSchema = z.object({
  action: z
    .string()
    .max(128)
    .regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/, 'dotted lowercase words, e.g. identity.api_key.create'),
  domain: z.string().min(1).max(64).regex(NAME, 'lowercase snake_case'),
  entity: z.string().min(1).max(64).regex(NAME, 'lowercase snake_case'),
  entityId: EntityIdSchema,
});

/** The exact value whose canonical JSON is hashed. */
export function hashedForm(e: Omit<AuditEntry, 'hash'>): CanonicalValue {
  return {
    v: 1,
    seq: e.seq,
    at: e.at,
    actor: { type: e.actor.type, id: e.actor.id },
    action: e.action,
    domain: e.domain,
    entity: e.entity,
    entity_id: e.entityId,
    change: e.change as CanonicalValue,
    prev_hash: e.prevHash,
  };
}

/** SHA-256 of the canonical encoding of an entry (everything but its own hash). */
export function entryHash(e: Omit<AuditEntry, 'hash'>): string {
  return sha256Hex(Buffer.from(canonicalJson(hashedForm(e)), 'utf8'));
}

/**
 * A before or after image for the entry, redacted: a row of `table` as its JSON form, or any
 * other value as JSON. (Module-level rather than a closure per entry: under tsx's keepNames a
 * named closure costs an Object.defineProperty each time it is created.)
 */
function imageOf(tx: Tx, table: string | undefined, row: Row | null | undefined): JsonValue | undefined {
  if (row === undefined) return undefined;
  if (row === null) return null;
  const json = table ? rowJson(tx, table, row) : toJsonValue(row, 'change');
  return redactDeep(table ? redactRow(table, json as Row) : json) as JsonValue;
}

function validate(tx: Tx, input: AuditInput, i: number): Omit<AuditEntry, 'seq' | 'at' | 'prevHash' | 'hash'> {
  const actor = checkActor(input.actor);
  const r = InputSchema.safeParse({ action: input.action, domain: input.domain, entity: input.entity, entityId: String(input.entityId) });
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field = issue.path.map(String).join('.');
    throw new ValidationError(`audit${i ? `[${i}]` : ''}.${field}: ${issue.message}`, { field });
  }
  const change: Record<string, JsonValue> = {};
  const before = imageOf(tx, input.table, input.before);
  const after = imageOf(tx, input.table, input.after);
  if (before !== undefined) change.before = before;
  if (after !== undefined) change.after = after;
  if (input.details !== undefined) change.details = redactDeep(toJsonValue(input.details, 'details')) as JsonValue;
  return {
    actor,
    action: r.data.action,
    domain: r.data.domain,
    entity: r.data.entity,
    entityId: r.data.entityId,
    change: Object.keys(change).length ? change : null,
  };
}

export interface AuditWriterOptions {
  /** Clock (tests). */
  now?: () => Date;
}

const INSERT_CHUNK = 200;

export class AuditWriter {
  readonly #tx: Tx;
  readonly #now: () => Date;
  constructor(tx: Tx, opts: AuditWriterOptions = {}) {
    this.#tx = tx;
    this.#now = opts.now ?? (() => new Date());
  }

  /** Appends one entry in this transaction and returns it (with its seq and hash). */
  async record(input: AuditInput): Promise<AuditEntry> {
    return (await this.recordMany([input]))[0]!;
  }

  /** Appends several entries in order under one head lock (bulk imports, batch jobs). */
  async recordMany(inputs: readonly AuditInput[]): Promise<AuditEntry[]> {
    const tx = this.#tx;
    tx.assertWritable('audit record');
    if (inputs.length === 0) return [];
    // Validate everything before the first write.
    const bodies = inputs.map((input, i) => validate(tx, input, i));
    const [head] = await tx.selectWhere(AUDIT_HEAD, { id: 1 }, { lock: true });
    if (!head) throw new MigrationError('the audit head row is missing: migration audit/0001_init did not run, or the row was deleted');
    const headSeq = toBigInt(head.seq);
    let seq = headSeq;
    let prev = String(head.hash);
    const at = new Date(this.#now().getTime());
    const entries: AuditEntry[] = bodies.map((b) => {
      seq += 1n;
      const body = { ...b, seq, at, prevHash: prev };
      const hash = entryHash(body);
      prev = hash;
      return { ...body, hash };
    });
    // The last chunk goes in with the head's advance, in one statement where the backend can:
    // the head stays locked until commit, and each round trip under that lock is one every
    // other audited write waits for.
    const lastChunk = Math.floor((entries.length - 1) / INSERT_CHUNK) * INSERT_CHUNK;
    for (let i = 0; i < lastChunk; i += INSERT_CHUNK) {
      await insertRows(tx, AUDIT_LOG, entries.slice(i, i + INSERT_CHUNK).map(entryRow));
    }
    const last = entries[entries.length - 1]!;
    const moved = await tx.insertThenUpdate(
      AUDIT_LOG,
      entries.slice(lastChunk).map(entryRow),
      AUDIT_HEAD,
      { seq: last.seq, hash: last.hash },
      { id: 1, seq: headSeq },
    );
    if (moved !== 1n) throw new ConflictError('the audit head moved while it was locked', { table: AUDIT_HEAD });
    return entries;
  }
}

/** An entry as its audit_log row (before encoding). */
export function entryRow(e: AuditEntry): Row {
  return {
    seq: e.seq,
    at: e.at,
    actor_type: e.actor.type,
    actor_id: e.actor.id,
    action: e.action,
    domain: e.domain,
    entity: e.entity,
    entity_id: e.entityId,
    change_set: e.change,
    prev_hash: e.prevHash,
    hash: e.hash,
  };
}

/** The audit writer of a transaction: `await audit(tx).record({...})`. */
export function audit(tx: Tx, opts?: AuditWriterOptions): AuditWriter {
  return new AuditWriter(tx, opts);
}

/** Decodes a stored audit_log row. */
export function decodeEntry(tx: Tx, raw: Row): AuditEntry {
  const r = tx.codec(AUDIT_LOG).decode<Row>(raw);
  return {
    seq: r.seq as bigint,
    at: r.at as Date,
    actor: { type: r.actor_type as ActorType, id: String(r.actor_id) },
    action: String(r.action),
    domain: String(r.domain),
    entity: String(r.entity),
    entityId: String(r.entity_id),
    change: (r.change_set ?? null) as JsonValue,
    prevHash: String(r.prev_hash),
    hash: String(r.hash),
  };
}

/** The head: the last entry's seq and hash (seq 0 and 64 zeros for an empty log). */
export async function auditHead(tx: Tx): Promise<{ seq: bigint; hash: string }> {
  const head = await tx.db.selectFrom(AUDIT_HEAD).select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
  if (!head) throw new MigrationError('the audit head row is missing: migration audit/0001_init did not run, or the row was deleted');
  return { seq: toBigInt(head.seq), hash: String(head.hash) };
}

/** Up to `limit` entries after `afterSeq`, in order (keyset pagination). */
export async function readEntries(tx: Tx, opts: { afterSeq?: bigint; limit: number }): Promise<AuditEntry[]> {
  const after = tx.codec(AUDIT_LOG).encode({ seq: opts.afterSeq ?? 0n }).seq;
  const rows = await tx.db
    .selectFrom(AUDIT_LOG)
    .selectAll()
    .where('seq', '>', after as never)
    .orderBy('seq')
    .limit(opts.limit)
    .execute();
  return rows.map((r) => decodeEntry(tx, r as Row));
}

/** The entries about one entity, oldest first. */
export async function entityTrail(
  tx: Tx,
  q: { domain: string; entity: string; entityId: string | bigint | number; afterSeq?: bigint; limit?: number },
): Promise<AuditEntry[]> {
  const rows = await tx.db
    .selectFrom(AUDIT_LOG)
    .selectAll()
    .where('domain', '=', q.domain)
    .where('entity', '=', q.entity)
    .where('entity_id', '=', String(q.entityId))
    // A page starts after the last entry seen (the entity index ends in seq).
    .$if(q.afterSeq !== undefined, (b) => b.where('seq', '>', tx.codec(AUDIT_LOG).encode({ seq: q.afterSeq }).seq as never))
    .orderBy('seq')
    .limit(q.limit ?? 1000)
    .execute();
  return rows.map((r) => decodeEntry(tx, r as Row));
}
