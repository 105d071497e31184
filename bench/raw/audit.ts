// The audit log through the raw drivers: append one hash-chained entry per transaction under
// the head row's lock (the same rows, the same hash: Coffer's own entryHash, since the hash is
// the format), and verify the chain by streaming it once.
import { entryHash, GENESIS_HASH, type AuditEntry } from '../../src/domains/audit/log.js';
import type { Actor } from '../../src/domains/audit/actor.js';
import type { Raw } from '../lib/backends.js';
import { myTx, pgTx } from './tx.js';

export interface AppendInput {
  actor: Actor;
  action: string;
  domain: string;
  entity: string;
  entityId: string;
  change: Record<string, unknown> | null;
}

const INSERT_COLS = '(seq, at, actor_type, actor_id, action, domain, entity, entity_id, change_set, prev_hash, hash)';

function makeEntry(e: AppendInput, seq: bigint, prev: string): AuditEntry {
  const body = {
    seq,
    at: new Date(),
    actor: e.actor,
    action: e.action,
    domain: e.domain,
    entity: e.entity,
    entityId: e.entityId,
    change: e.change as AuditEntry['change'],
    prevHash: prev,
  };
  return { ...body, hash: entryHash(body) };
}

// Appends inside an open transaction (the head row locked, then the entry, then the head).
export function sqliteAppend(db: import('better-sqlite3').Database, e: AppendInput): void {
  const h = db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1').get() as { seq: number; hash: string };
  const x = makeEntry(e, BigInt(h.seq) + 1n, h.hash);
  db.prepare(`INSERT INTO audit_log ${INSERT_COLS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
    x.seq,
    x.at.getTime(),
    x.actor.type,
    x.actor.id,
    x.action,
    x.domain,
    x.entity,
    x.entityId,
    x.change === null ? null : JSON.stringify(x.change),
    x.prevHash,
    x.hash,
  );
  if (db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ?').run(x.seq, x.hash, h.seq).changes !== 1)
    throw new Error('head moved');
}

export async function pgAppend(c: import('pg').PoolClient, e: AppendInput): Promise<void> {
  const h = (await c.query({ name: 'a_head', text: 'SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE' })).rows[0] as {
    seq: string;
    hash: string;
  };
  const x = makeEntry(e, BigInt(h.seq) + 1n, h.hash);
  // The entry and the head's advance in one statement (a data-modifying CTE): one round trip
  // less under the head lock, as Coffer does it on PostgreSQL.
  const r = await c.query({
    name: 'a_ins_adv',
    text: `WITH ins AS (INSERT INTO audit_log ${INSERT_COLS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11))
      UPDATE audit_head SET seq = $12, hash = $13 WHERE id = 1 AND seq = $14`,
    values: [
      x.seq.toString(),
      x.at,
      x.actor.type,
      x.actor.id,
      x.action,
      x.domain,
      x.entity,
      x.entityId,
      x.change === null ? null : JSON.stringify(x.change),
      x.prevHash,
      x.hash,
      x.seq.toString(),
      x.hash,
      h.seq,
    ],
  });
  if (r.rowCount !== 1) throw new Error('head moved');
}

export async function myAppend(c: import('mysql2/promise').PoolConnection, e: AppendInput): Promise<void> {
  const [rows] = await c.execute('SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE');
  const h = (rows as { seq: string; hash: string }[])[0]!;
  const x = makeEntry(e, BigInt(h.seq) + 1n, h.hash);
  await c.execute(`INSERT INTO audit_log ${INSERT_COLS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
    x.seq.toString(),
    x.at,
    x.actor.type,
    x.actor.id,
    x.action,
    x.domain,
    x.entity,
    x.entityId,
    x.change === null ? null : JSON.stringify(x.change),
    x.prevHash,
    x.hash,
  ]);
  const [r] = await c.execute('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ?', [x.seq.toString(), x.hash, h.seq]);
  if ((r as { affectedRows: number }).affectedRows !== 1) throw new Error('head moved');
}

/** Appends one entry in its own durable transaction. */
export async function rawAppend(raw: Raw, e: AppendInput): Promise<void> {
  if (raw.kind === 'sqlite') {
    const db = raw.db;
    db.transaction(() => sqliteAppend(db, e)).immediate();
    return;
  }
  if (raw.kind === 'postgres') return pgTx(raw.pool, (c) => pgAppend(c, e));
  return myTx(raw.pool, (c) => myAppend(c, e));
}

type RawRow = Record<string, any>;

function checkRow(r: RawRow, expected: bigint, prev: string, at: Date, change: unknown): string {
  const seq = BigInt(r.seq);
  if (seq !== expected) throw new Error(`entry ${expected} missing`);
  const body = {
    seq,
    at,
    actor: { type: r.actor_type, id: String(r.actor_id) },
    action: String(r.action),
    domain: String(r.domain),
    entity: String(r.entity),
    entityId: String(r.entity_id),
    change: change as AuditEntry['change'],
    prevHash: String(r.prev_hash),
  };
  if (body.prevHash !== prev) throw new Error(`entry ${seq} does not link to its predecessor`);
  if (entryHash(body) !== r.hash) throw new Error(`entry ${seq} was changed`);
  return String(r.hash);
}

/** Walks the whole chain once (SQLite: one iterating statement; servers: keyset pages of `page` rows); returns the entries verified. */
export async function rawVerify(raw: Raw, page = 1000): Promise<bigint> {
  let expected = 1n;
  let prev = GENESIS_HASH;
  if (raw.kind === 'sqlite') {
    const it = raw.db
      .prepare(
        'SELECT seq, at, actor_type, actor_id, action, domain, entity, entity_id, change_set, prev_hash, hash FROM audit_log ORDER BY seq',
      )
      .iterate();
    for (const r of it as Iterable<RawRow>) {
      prev = checkRow(r, expected, prev, new Date(Number(r.at)), r.change_set === null ? null : JSON.parse(r.change_set));
      expected++;
    }
    return expected - 1n;
  }
  for (;;) {
    let rows: RawRow[];
    if (raw.kind === 'postgres') {
      rows = (
        await raw.pool.query({
          name: 'a_page',
          text: 'SELECT seq, at, actor_type, actor_id, action, domain, entity, entity_id, change_set, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2',
          values: [(expected - 1n).toString(), page],
        })
      ).rows as RawRow[];
      for (const r of rows) {
        prev = checkRow(r, expected, prev, r.at as Date, r.change_set);
        expected++;
      }
    } else {
      const [res] = await raw.pool.execute(
        'SELECT seq, at, actor_type, actor_id, action, domain, entity, entity_id, change_set, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?',
        [(expected - 1n).toString(), String(page)],
      );
      rows = res as RawRow[];
      for (const r of rows) {
        prev = checkRow(r, expected, prev, r.at as Date, r.change_set === null ? null : JSON.parse(r.change_set));
        expected++;
      }
    }
    if (rows.length < page) break;
  }
  return expected - 1n;
}
