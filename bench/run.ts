// `npm run bench [-- --backend postgres --workload ingest --smoke]`: Coffer's hot paths measured
// side by side with the raw drivers on every backend. See docs/benchmarks.md.
//
//   --backend a,b       memory, sqlite, postgres, mysql (default: every one available; the
//                       servers need COFFER_TEST_POSTGRES_URL / COFFER_TEST_MYSQL_URL)
//   --workload a,b      ingest, settlement, reads, audit, reorg, http, copy (default: all)
//   --smoke             tiny sizes, seconds in all: checks the suite still runs (npm test)
//   --stages 10k,1M     scaling stages for ingest/reads/reorg (default 10k,1M,10M on SQLite and
//                       PostgreSQL, 10k,1M elsewhere)
//   --reps N            repetitions per measurement (median reported; default 3, 5 for ingest)
//   --out FILE          results JSON (default bench/results/latest.json; smoke: a temp file)
//   --no-docs           do not regenerate docs/benchmarks.md
//
// A narrowed run merges its measurements into the results file (replacing the same workload,
// case, backend and stage) and regenerates the docs table from the merged set.
import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BACKENDS, closeAll, unavailable, type BackendName } from './lib/backends.js';
import { machineInfo } from './lib/machine.js';
import { mergeResults, readResults, writeDocs, writeResults, type RunRecord } from './report.js';
import { WORKLOADS, type Measurement, type RunSettings, type WorkloadName } from './lib/types.js';
import { runChainWorkloads } from './workloads/chain-suite.js';
import { runSettlement } from './workloads/settlement.js';
import { runAudit } from './workloads/audit.js';
import { runHttp } from './workloads/http.js';
import { runCopy } from './workloads/copy.js';
import { fmt } from './lib/stats.js';
import { parseSize } from './lib/types.js';

export interface BenchOptions {
  backends?: BackendName[];
  workloads?: WorkloadName[];
  smoke?: boolean;
  stages?: number[];
  reps?: number;
  out?: string;
  docs?: boolean;
  log?: (line: string) => void;
}

export interface BenchRun {
  run: RunRecord;
  measurements: Measurement[];
  skipped: { backend: string; workload: string; reason: string }[];
  out: string;
}

/** Runs the suite; used by the CLI below and by bench/smoke.test.ts. */
export async function runBench(o: BenchOptions = {}): Promise<BenchRun> {
  const log = o.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  const smoke = o.smoke ?? false;
  const backends = (o.backends ?? [...BACKENDS]).filter((b) => {
    const why = unavailable(b);
    if (why) log(`skipping ${b}: ${why}`);
    return !why;
  });
  const workloads = o.workloads ?? [...WORKLOADS];
  const startedAt = new Date().toISOString();
  const machine = await machineInfo();
  const settings: RunSettings = { smoke, reps: o.reps ?? (smoke ? 1 : 3), log };
  const measurements: Measurement[] = [];
  const skipped: BenchRun['skipped'] = [];
  const record = (m: Measurement) => {
    measurements.push(m);
    const extra = m.workload === 'reads' && m.extra?.rawOneStatement ? `  (raw one statement ${fmt(Number(m.extra.rawOneStatement))})` : '';
    log(
      `  ${m.workload.padEnd(10)} ${m.backend.padEnd(8)} ${(m.stage ?? '').padEnd(4)} ${m.case.padEnd(34)} coffer ${fmt(m.coffer.median).padStart(9)}  raw ${fmt(m.raw.median).padStart(9)} ${m.unit.padEnd(10)} ratio ${m.ratio.toFixed(2)}${extra}`,
    );
  };
  const skip = (backend: string, workload: string, reason: string) => {
    skipped.push({ backend, workload, reason });
    log(`  ${workload} on ${backend}: not measured (${reason})`);
  };
  let out = o.out;
  if (!out) {
    if (smoke) out = join(mkdtempSync(join(tmpdir(), 'coffer-bench-')), 'smoke.json');
    else out = resolve('bench/results/latest.json');
  }
  const previous = smoke ? null : readResults(out);
  const runRecord = (): RunRecord => ({
    id: startedAt,
    startedAt,
    finishedAt: new Date().toISOString(),
    smoke,
    argv: process.argv.slice(2),
    backends,
    workloads,
    reps: settings.reps,
    machine: { ...machine, loadAvgAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    skipped,
  });
  // Written after every workload, so an interrupted run keeps what it measured.
  const save = () => writeResults(out, mergeResults(previous, runRecord(), measurements));
  // A workload that fails is reported as not measured, and the run goes on (smoke runs fail fast).
  const attempt = async (backend: string, workload: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (e) {
      if (smoke) throw e;
      skip(backend, workload, `failed: ${(e as Error).message.split('\n')[0]}`);
      await closeAll();
    }
    save();
  };
  try {
    for (const backend of backends) {
      log(`== ${backend}`);
      const chainSet = workloads.filter((w) => w === 'ingest' || w === 'reads' || w === 'reorg');
      if (chainSet.length)
        await attempt(backend, chainSet.join('+'), () => runChainWorkloads(backend, chainSet, { stages: o.stages }, settings, record));
      if (workloads.includes('settlement')) await attempt(backend, 'settlement', () => runSettlement(backend, settings, record, skip));
      if (workloads.includes('audit')) await attempt(backend, 'audit', () => runAudit(backend, settings, record, skip));
      if (workloads.includes('http')) await attempt(backend, 'http', () => runHttp(backend, settings, record, skip));
    }
    if (workloads.includes('copy')) {
      if (backends.includes('sqlite') && backends.includes('postgres'))
        await attempt('sqlite→postgres', 'copy', () => runCopy(settings, record, skip));
      else skip('sqlite→postgres', 'copy', 'needs both the sqlite and postgres backends in this run');
    }
  } finally {
    await closeAll();
  }
  const run = runRecord();
  const merged = mergeResults(previous, run, measurements);
  writeResults(out, merged);
  log(`results: ${out}`);
  if (!smoke && (o.docs ?? true)) {
    const docs = resolve('docs/benchmarks.md');
    writeDocs(docs, merged);
    log(`docs: ${docs}`);
  }
  return { run, measurements, skipped, out };
}

const USAGE = `usage: npm run bench -- [options]   (docs/benchmarks.md)
  --backend LIST   ${BACKENDS.join(',')} (default: every one whose URL is set; memory and sqlite always)
  --workload LIST  ${WORKLOADS.join(',')} (default: all)
  --stages LIST    scaling stages of ingest, reads and reorg, e.g. 10k,1M
  --reps N         repetitions of each case
  --out FILE       results file (default bench/results/latest.json; a narrowed run merges into it)
  --no-docs        leave docs/benchmarks.md as it is
  --smoke          seconds: tiny sizes, nothing written to docs
  --help           this text`;

/** A mistake on the command line: one line and the usage, exit 2 (not a stack trace). */
class UsageError extends Error {}

async function cli(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        backend: { type: 'string' },
        workload: { type: 'string' },
        smoke: { type: 'boolean', default: false },
        stages: { type: 'string' },
        reps: { type: 'string' },
        out: { type: 'string' },
        'no-docs': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      allowPositionals: false,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values } = parsed;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const list = <T extends string>(v: string | undefined, allowed: readonly T[], what: string): T[] | undefined => {
    if (!v) return undefined;
    const xs = v
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    for (const x of xs) if (!allowed.includes(x as T)) throw new UsageError(`unknown ${what} ${x} (one of ${allowed.join(', ')})`);
    return xs as T[];
  };
  const r = await runBench({
    backends: list(values.backend, BACKENDS, 'backend'),
    workloads: list(values.workload, WORKLOADS, 'workload'),
    smoke: values.smoke,
    stages: values.stages ? values.stages.split(',').map(parseSize) : undefined,
    reps: values.reps ? Number(values.reps) : undefined,
    out: values.out,
    docs: !values['no-docs'],
  });
  if (values.smoke && !values.out) rmSync(join(r.out, '..'), { recursive: true, force: true });
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  cli().catch(async (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`bench: ${e.message}\n${USAGE}`);
      process.exit(2);
    }
    console.error(e);
    await closeAll();
    process.exit(1);
  });
}
