// Test support for the audit domain: tampering with the append-only tables the way an attacker
// with DDL rights would (disable or drop the triggers, change rows, put the triggers back).
import { sql } from 'kysely';
import type { Coffer } from '../../db/store.js';
import type { Tx } from '../../db/tx.js';
import { systemActor } from './actor.js';
import { appendOnlyTriggerSql, APPEND_ONLY_TRIGGERS } from './0001_init.js';
import { audit, type AuditInput } from './log.js';

/** Runs `fn` with the append-only triggers of `table` out of the way, then restores them. */
export async function withTriggersOff(
  coffer: Coffer,
  table: 'audit_log' | 'audit_row_history',
  fn: (tx: Tx) => Promise<void>,
): Promise<void> {
  const d = coffer.dialect;
  if (d === 'postgres') {
    await coffer.write(async (tx) => {
      await sql.raw(`ALTER TABLE "${table}" DISABLE TRIGGER USER`).execute(tx.db);
      await fn(tx);
      await sql.raw(`ALTER TABLE "${table}" ENABLE TRIGGER USER`).execute(tx.db);
    });
    return;
  }
  const names = APPEND_ONLY_TRIGGERS.filter((t) => t.table === table).map((t) => t.name);
  const q = (n: string) => (d === 'mysql' ? `\`${n}\`` : `"${n}"`);
  await coffer.write(async (tx) => {
    for (const n of names) await sql.raw(`DROP TRIGGER IF EXISTS ${q(n)}`).execute(tx.db);
  });
  try {
    await coffer.write(fn);
  } finally {
    await coffer.write(async (tx) => {
      for (const stmt of appendOnlyTriggerSql(d)) {
        if (!stmt.includes(table) || /^DROP /.test(stmt)) continue;
        if (!/^CREATE TRIGGER/.test(stmt)) continue;
        await sql.raw(stmt).execute(tx.db);
      }
    });
  }
}

/** Appends n entries (in batches, one transaction each) and returns the head seq. */
export async function appendEntries(coffer: Coffer, n: number, opts: { batch?: number; tag?: string } = {}): Promise<void> {
  const batch = opts.batch ?? 500;
  const actor = systemActor('test');
  for (let i = 0; i < n; i += batch) {
    const inputs: AuditInput[] = [];
    for (let j = i; j < Math.min(n, i + batch); j++) {
      inputs.push({
        actor,
        action: 'test.entry.append',
        domain: 'test',
        entity: 'thing',
        entityId: `${opts.tag ?? 't'}-${j}`,
        details: { j, note: `entry ${j}` },
      });
    }
    await coffer.write((tx) => audit(tx).recordMany(inputs), { op: 'test.append' });
  }
}

/** Runs the `coffer` command line in this process; returns its exit code and output. */
export async function runCli(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { main } = await import('../../cli/main.js');
  let stdout = '';
  let stderr = '';
  const saved = { out: process.stdout.write, err: process.stderr.write, code: process.exitCode, env: { ...process.env } };
  // Only strings are the command's output: the test runner's own messages (binary, when a test
  // file runs as a child of `node --test`) must pass through untouched.
  const capture = (original: typeof process.stdout.write, stream: NodeJS.WriteStream, append: (s: string) => void) =>
    ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (typeof chunk === 'string') {
        append(chunk);
        return true;
      }
      return (original as (...a: unknown[]) => boolean).call(stream, chunk, ...rest);
    }) as typeof process.stdout.write;
  process.stdout.write = capture(saved.out, process.stdout, (s) => (stdout += s));
  process.stderr.write = capture(saved.err, process.stderr, (s) => (stderr += s));
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  process.exitCode = 0;
  try {
    await main(['node', 'coffer', ...args]);
    return { code: Number(process.exitCode ?? 0), stdout, stderr };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    process.exitCode = saved.code;
    for (const k of Object.keys(env)) {
      if (saved.env[k] === undefined) delete process.env[k];
      else process.env[k] = saved.env[k];
    }
  }
}
