// The canonical row form every operator command relies on: lossless for every logical type,
// and content checksums that do not depend on the order rows are read in.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { INT64_MAX, INT64_MIN, UINT256_MAX } from '../db/codec.js';
import type { ColumnDef } from '../schema/model.js';
import { canonicalLine, describeKey, parseLine, stableJson, TableDigest } from './rows.js';
import { createProgress, SilentProgress } from './progress.js';
import { fileError } from './errors.js';
import { ConfigError, StorageFullError } from '../db/errors.js';
import { Writable } from 'node:stream';

const cols: ColumnDef[] = [
  { name: 'id', type: { kind: 'serial' }, nullable: false },
  { name: 'small', type: { kind: 'int' }, nullable: true },
  { name: 'big', type: { kind: 'bigint' }, nullable: false },
  { name: 'amount', type: { kind: 'uint256' }, nullable: false },
  { name: 'name', type: { kind: 'varchar', max: 40 }, nullable: false },
  { name: 'note', type: { kind: 'text' }, nullable: true },
  { name: 'hash', type: { kind: 'hex', length: 64 }, nullable: false },
  { name: 'payload', type: { kind: 'bytes' }, nullable: true },
  { name: 'flag', type: { kind: 'bool' }, nullable: false },
  { name: 'at', type: { kind: 'timestamp' }, nullable: false },
  { name: 'doc', type: { kind: 'json' }, nullable: true },
  { name: 'status', type: { kind: 'enum', values: ['a', 'b'] }, nullable: false },
];

const jsonValue = fc.jsonValue().filter((v) => v !== null);

const row = fc.record({
  id: fc.bigInt({ min: 1n, max: INT64_MAX }),
  small: fc.option(fc.integer({ min: -2147483648, max: 2147483647 }), { nil: null }),
  big: fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
  amount: fc.bigInt({ min: 0n, max: UINT256_MAX }),
  name: fc.string({ unit: 'grapheme', maxLength: 10 }),
  note: fc.option(
    fc.string({ unit: 'binary' }).filter((s) => s.isWellFormed() && !s.includes('\u0000')),
    { nil: null },
  ),
  hash: fc.stringMatching(/^[0-9a-f]{64}$/),
  payload: fc.option(
    fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
    { nil: null },
  ),
  flag: fc.boolean(),
  at: fc.date({ min: new Date(Date.UTC(1000, 0, 1)), max: new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)), noInvalidDate: true }),
  doc: fc.option(jsonValue, { nil: null }),
  status: fc.constantFrom('a', 'b'),
});

test('property: a canonical line parses back to the same values, and encodes them the same way again', () => {
  fc.assert(
    fc.property(row, (r) => {
      const line = canonicalLine(cols, r);
      const back = parseLine(cols, line);
      assert.equal(canonicalLine(cols, back), line);
      assert.equal(back.amount, r.amount);
      assert.equal(back.big, r.big);
      assert.deepEqual(back.payload, r.payload);
      assert.equal((back.at as Date).getTime(), r.at.getTime());
      assert.equal(stableJson(back.doc), stableJson(r.doc));
    }),
    { numRuns: 300 },
  );
});

test('property: JSON key order does not change the canonical line (PostgreSQL JSONB reorders keys)', () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.jsonValue(), { minKeys: 2 }), (obj) => {
      const reversed = Object.fromEntries(Object.entries(obj).reverse());
      const c = [cols[10]!];
      assert.equal(canonicalLine(c, { doc: obj }), canonicalLine(c, { doc: reversed }));
    }),
  );
});

test('property: a table checksum does not depend on the order rows are read in, and sees any change', () => {
  fc.assert(
    fc.property(fc.uniqueArray(row, { minLength: 1, maxLength: 20, selector: (r) => r.id }), fc.nat(), (rows, seed) => {
      const a = new TableDigest();
      const b = new TableDigest();
      for (const r of rows) a.add(canonicalLine(cols, r));
      const shuffled = [...rows].sort((x, y) => ((Number(x.id % 997n) * (seed + 1)) % 101) - ((Number(y.id % 997n) * (seed + 1)) % 101));
      for (const r of shuffled) b.add(canonicalLine(cols, r));
      assert.equal(a.checksum, b.checksum);
      assert.equal(a.rows, b.rows);
      const c = new TableDigest();
      rows.forEach((r, i) => c.add(canonicalLine(cols, i === 0 ? { ...r, flag: !r.flag } : r)));
      assert.notEqual(c.checksum, a.checksum);
    }),
    { numRuns: 100 },
  );
});

test('keys are described the way an operator types them', () => {
  const table = { name: 't', domain: 'x', columns: cols, primaryKey: ['name', 'amount'], foreignKeys: [], checks: [], indexes: [] };
  assert.equal(describeKey(table, { name: 'btc "main"', amount: UINT256_MAX }), `name="btc \\"main\\"", amount=${UINT256_MAX}`);
});

test('file errors become one clear, typed line', () => {
  const e = (code: string) => Object.assign(new Error(`${code}: raw`), { code });
  assert.ok(fileError(e('ENOSPC'), 'cannot write', '/x') instanceof StorageFullError);
  assert.match(fileError(e('ENOSPC'), 'cannot write', '/x').message, /^cannot write \/x: the disk is full/);
  assert.ok(fileError(e('EACCES'), 'cannot write', '/x') instanceof ConfigError);
  assert.match(fileError(e('EACCES'), 'cannot write', '/x').message, /permission denied/);
  assert.match(fileError(e('EROFS'), 'cannot write', '/x').message, /read-only/);
  assert.match(fileError(e('SQLITE_FULL'), 'cannot write backup', '/x').message, /disk is full/);
});

test('progress: periodic plain lines when not on a terminal, JSON lines with --json', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  }) as unknown as NodeJS.WriteStream;
  const p = createProgress({ stream: sink, intervalMs: 1 });
  p.phase('copy', 100);
  p.add(10, 2048, 'chain_blocks');
  await new Promise((r) => setTimeout(r, 5));
  p.add(30, 4096, 'chain_blocks');
  p.note('resuming chain_blocks after 10 rows');
  p.done();
  assert.match(lines[0]!, /^copy: (10|40) of 100 rows \(\d+%\) · [\d.]+ KB · [\d,]+ rows\/s( · about \d+s left)? · table chain_blocks$/);
  assert.ok(lines.includes('resuming chain_blocks after 10 rows'));
  assert.match(lines[lines.length - 1]!, /^copy: 40 of 100 rows \(40%\) · 6\.0 KB · .* · took \d+s$/);
  lines.length = 0;
  const j = createProgress({ stream: sink, json: true, intervalMs: 1 });
  j.phase('backup', null);
  await new Promise((r) => setTimeout(r, 5));
  j.add(3, 10);
  j.done();
  const parsed = lines.map((l) => JSON.parse(l));
  assert.equal(parsed[parsed.length - 1].progress.final, true);
  assert.equal(parsed[parsed.length - 1].progress.rows, 3);
  const s = new SilentProgress();
  s.phase('x', 1);
  s.add(1, 1);
  assert.equal(s.snapshot().rows, 1);
});
