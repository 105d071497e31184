// The benchmark suite in smoke mode (tiny sizes, a fraction of a second per measurement), so
// it cannot rot: every workload runs on memory:// and SQLite, and on PostgreSQL and
// MySQL/MariaDB when COFFER_TEST_POSTGRES_URL / COFFER_TEST_MYSQL_URL are set, and must
// produce finite, positive figures for both Coffer and the raw driver. Not a timed test: the
// figures themselves are not checked against any threshold.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BackendName } from './lib/backends.js';
import { WORKLOADS } from './lib/types.js';
import { runBench } from './run.js';

test('npm run bench -- --smoke measures every workload on every configured backend', { timeout: 180_000 }, async () => {
  const backends: BackendName[] = ['memory', 'sqlite'];
  if (process.env.COFFER_TEST_POSTGRES_URL) backends.push('postgres');
  if (process.env.COFFER_TEST_MYSQL_URL) backends.push('mysql');
  const dir = mkdtempSync(join(tmpdir(), 'coffer-bench-smoke-'));
  try {
    const out = join(dir, 'smoke.json');
    const r = await runBench({ smoke: true, backends, out, log: () => {} });
    const perBackend = backends.flatMap((b) =>
      WORKLOADS.filter((w) => w !== 'copy').map((w) => ({
        b,
        w,
        n: r.measurements.filter((m) => m.backend === b && m.workload === w).length,
      })),
    );
    for (const { b, w, n } of perBackend) assert.ok(n > 0, `${w} produced no measurement on ${b}`);
    if (backends.includes('postgres'))
      assert.ok(
        r.measurements.some((m) => m.workload === 'copy'),
        'copy produced no measurement',
      );
    else
      assert.deepEqual(
        r.skipped.map((s) => s.workload),
        ['copy'],
      );
    for (const m of r.measurements) {
      const what = `${m.workload} ${m.case} on ${m.backend}${m.stage ? ` at ${m.stage}` : ''}`;
      for (const side of ['coffer', 'raw'] as const) {
        assert.ok(Number.isFinite(m[side].median) && m[side].median > 0, `${what}: ${side} median ${m[side].median}`);
        assert.ok(m[side].runs.length >= 1, `${what}: ${side} has its repetitions`);
      }
      assert.ok(Number.isFinite(m.ratio) && m.ratio > 0, `${what}: ratio ${m.ratio}`);
    }
    // Scaling stages, every depth, both clients counts: the shape of the full run.
    for (const b of backends) {
      assert.ok(
        new Set(r.measurements.filter((m) => m.backend === b && m.workload === 'ingest').map((m) => m.stage)).size >= 2,
        `ingest ran at two stages on ${b}`,
      );
      assert.deepEqual(
        new Set(r.measurements.filter((m) => m.backend === b && m.workload === 'reads').map((m) => m.case)),
        new Set(['1 client', '8 clients']),
      );
    }
    const file = JSON.parse(readFileSync(out, 'utf8')) as { measurements: unknown[]; runs: { smoke: boolean }[] };
    assert.equal(file.measurements.length, r.measurements.length);
    assert.equal(file.runs[0]!.smoke, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
