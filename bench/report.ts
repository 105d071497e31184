// Results file (bench/results/*.json) and the generated part of docs/benchmarks.md.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { MachineInfo } from './lib/machine.js';
import { fmt } from './lib/stats.js';
import type { Measurement } from './lib/types.js';

export interface RunRecord {
  id: string;
  startedAt: string;
  finishedAt: string;
  smoke: boolean;
  argv: string[];
  backends: string[];
  workloads: string[];
  reps: number;
  machine: MachineInfo & { loadAvgAtEnd: number[] };
  skipped: { backend: string; workload: string; reason: string }[];
}

export interface ResultsFile {
  schema: 1;
  runs: RunRecord[];
  measurements: (Measurement & { run: string })[];
}

const keyOf = (m: Measurement) => `${m.workload}|${m.case}|${m.backend}|${m.stage ?? ''}`;

export function readResults(file: string): ResultsFile | null {
  if (!existsSync(file)) return null;
  return JSON.parse(readFileSync(file, 'utf8')) as ResultsFile;
}

/** Adds a run's measurements, replacing older measurements of the same workload, case, backend and stage. */
export function mergeResults(prev: ResultsFile | null, run: RunRecord, ms: readonly Measurement[]): ResultsFile {
  const fresh = new Set(ms.map(keyOf));
  const kept = (prev?.measurements ?? []).filter((m) => !fresh.has(keyOf(m)));
  const measurements = [...kept, ...ms.map((m) => ({ ...m, run: run.id }))];
  const used = new Set(measurements.map((m) => m.run));
  const runs = [...(prev?.runs ?? []), run].filter((r) => used.has(r.id) || r.id === run.id);
  return { schema: 1, runs, measurements };
}

export function writeResults(file: string, r: ResultsFile): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(r, null, 1)}\n`);
}

// ---------------------------------------------------------------- goals

export interface Goal {
  text: string;
  /** true: met, false: not met, null: nothing to compare (stated figure only). */
  met: boolean | null;
}

export function goalOf(m: Measurement): Goal | null {
  switch (m.workload) {
    case 'ingest':
    case 'settlement':
    case 'reads':
      return { text: '≥ 0.8', met: m.ratio >= 0.8 };
    case 'audit':
      return m.case === 'append' ? { text: '≥ 0.8', met: m.ratio >= 0.8 } : { text: 'bounded memory', met: null };
    case 'http':
      return { text: '≥ 0.7', met: m.ratio >= 0.7 };
    case 'copy':
      return { text: 'bounded memory', met: null };
    case 'reorg':
      return { text: '∝ rows reverted', met: null };
  }
}

// ---------------------------------------------------------------- docs

const BEGIN = '<!-- bench:generated:begin (bench/report.ts writes between these markers; edit outside them) -->';
const END = '<!-- bench:generated:end -->';
const ORDER = ['ingest', 'settlement', 'reads', 'audit', 'reorg', 'http', 'copy'];
const BACKEND_ORDER = ['memory', 'sqlite', 'postgres', 'mysql', 'sqlite→postgres'];
const TITLES: Record<string, string> = {
  ingest: '1. Block ingest',
  settlement: '2. Settlement',
  reads: '3. Point reads (transaction by hash)',
  audit: '4. Audit',
  reorg: '5. Reorg (roll back N blocks of 1,000 transactions)',
  http: '6. HTTP',
  copy: '7. Copy SQLite → PostgreSQL',
};

function sortMs<T extends Measurement>(ms: readonly T[]): T[] {
  const stageN = (s?: string) => (s ? Number(s.replace(/k$/, 'e3').replace(/M$/, 'e6')) : 0);
  return [...ms].sort(
    (a, b) =>
      ORDER.indexOf(a.workload) - ORDER.indexOf(b.workload) ||
      BACKEND_ORDER.indexOf(a.backend) - BACKEND_ORDER.indexOf(b.backend) ||
      stageN(a.stage) - stageN(b.stage) ||
      a.case.localeCompare(b.case, 'en', { numeric: true }),
  );
}

const rows = (n?: number) => (n === undefined ? '' : n.toLocaleString('en-US'));
const val = (m: Measurement, x: number) => (m.unit === 's' ? x.toFixed(3) : fmt(x));
const spread = (m: Measurement, side: 'coffer' | 'raw') => {
  const s = m[side];
  return s.runs.length > 1 ? ` <sub>${val(m, s.min)}–${val(m, s.max)}</sub>` : '';
};
const mark = (g: Goal | null) => (g === null || g.met === null ? '' : g.met ? ' ✅' : ' ❌');

function extraText(m: Measurement): string {
  const e = m.extra ?? {};
  const parts: string[] = [];
  if (m.workload === 'reads' && e.rawOneStatement !== undefined)
    parts.push(`raw as one JOIN statement: ${fmt(Number(e.rawOneStatement))}/s (Coffer ${Number(e.ratioVsOneStatement).toFixed(2)}×)`);
  if (m.workload === 'settlement' && e.rawSameWork !== undefined)
    parts.push(
      `raw doing the same settlement (bench/raw/settlement.ts): ${fmt(Number(e.rawSameWork))}/s, ${Number(e.sameWorkVsTransfer).toFixed(2)}× the transfer (Coffer ${Number(e.ratioVsSameWork).toFixed(2)}× it)`,
    );
  if (m.workload === 'reorg') parts.push(`${fmt(Number(e.cofferMsPer1kTx))} / ${fmt(Number(e.rawMsPer1kTx))} ms per 1k tx`);
  if (e.p50MsCoffer !== undefined)
    parts.push(
      `p50 ${fmt(Number(e.p50MsCoffer))} / ${fmt(Number(e.p50MsRaw))} ms, p99 ${fmt(Number(e.p99MsCoffer))} / ${fmt(Number(e.p99MsRaw))} ms`,
    );
  if (e.peakRssMiBCoffer !== undefined)
    parts.push(
      `peak RSS ${fmt(Number(e.peakRssMiBCoffer))} / ${fmt(Number(e.peakRssMiBRaw))} MiB, heap growth ${fmt(Number(e.heapGrowthMiBCoffer))} / ${fmt(Number(e.heapGrowthMiBRaw))} MiB`,
    );
  if (e.entriesPerSecCoffer !== undefined)
    parts.push(`${fmt(Number(e.entriesPerSecCoffer))} / ${fmt(Number(e.entriesPerSecRaw))} entries/s`);
  if (e.rowsPerSecCoffer !== undefined) parts.push(`${fmt(Number(e.rowsPerSecCoffer))} / ${fmt(Number(e.rowsPerSecRaw))} rows/s`);
  if (e.note) parts.push(String(e.note));
  for (const n of m.notes ?? []) parts.push(n);
  return parts.join('; ');
}

function table(ms: readonly Measurement[], withStage: boolean): string[] {
  const out = [
    `| backend |${withStage ? ' stage | rows at start |' : ''} case | Coffer | raw | unit | Coffer / raw | goal | notes (Coffer / raw) |`,
    `|---|${withStage ? '---|---:|' : ''}---|---:|---:|---|---:|---|---|`,
  ];
  for (const m of ms) {
    const g = goalOf(m);
    out.push(
      `| ${m.backend} |${withStage ? ` ${m.stage ?? ''} | ${rows(m.tableRows)} |` : ''} ${m.case} | ${val(m, m.coffer.median)}${spread(m, 'coffer')} | ${val(m, m.raw.median)}${spread(m, 'raw')} | ${m.unit} | **${m.ratio.toFixed(2)}**${mark(g)} | ${g?.text ?? ''} | ${extraText(m)} |`,
    );
  }
  return out;
}

function scalingTable(ms: readonly Measurement[], workload: 'ingest' | 'reads'): string[] {
  const sel = sortMs(ms.filter((m) => m.workload === workload && m.stage));
  if (!sel.length) return [];
  const first = new Map<string, Measurement>();
  for (const m of sel) if (!first.has(`${m.backend}|${m.case}`)) first.set(`${m.backend}|${m.case}`, m);
  const out = [
    `| backend | case | stage | rows at start | Coffer | vs first stage | raw | vs first stage | Coffer / raw |`,
    `|---|---|---|---:|---:|---:|---:|---:|---:|`,
  ];
  for (const m of sel) {
    const f = first.get(`${m.backend}|${m.case}`)!;
    out.push(
      `| ${m.backend} | ${m.case} | ${m.stage} | ${rows(m.tableRows)} | ${fmt(m.coffer.median)} | ${(m.coffer.median / f.coffer.median).toFixed(2)}× | ${fmt(m.raw.median)} | ${(m.raw.median / f.raw.median).toFixed(2)}× | ${m.ratio.toFixed(2)} |`,
    );
  }
  return out;
}

export function renderGenerated(r: ResultsFile): string {
  const ms = sortMs(r.measurements);
  const lines: string[] = [];
  const runs = [...r.runs].sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  lines.push('### Runs', '');
  lines.push(
    '| run (UTC) | finished | backends | workloads | reps | load average at start → end (1/5/15 min) | command |',
    '|---|---|---|---|---:|---|---|',
  );
  for (const run of runs) {
    lines.push(
      `| ${run.startedAt.replace('T', ' ').slice(0, 19)} | ${run.finishedAt.replace('T', ' ').slice(11, 19)} | ${run.backends.join(', ')} | ${run.workloads.join(', ')} | ${run.reps} | ${run.machine.loadAvgAtStart.join(' / ')} → ${run.machine.loadAvgAtEnd.join(' / ')} | \`npm run bench${run.argv.length ? ` -- ${run.argv.join(' ')}` : ''}\` |`,
    );
  }
  const m0 = runs[runs.length - 1]?.machine;
  if (m0) {
    lines.push('', '### Machine and versions (latest run)', '');
    lines.push(`- ${m0.cores} × ${m0.cpu}, ${m0.memGiB} GiB RAM, ${m0.os}; Node ${m0.node}`);
    lines.push(
      `- packages: ${Object.entries(m0.packages)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}; SQLite ${m0.sqlite}${m0.wrk ? `; ${m0.wrk}` : ''}`,
    );
    if (m0.postgres)
      lines.push(
        `- PostgreSQL ${m0.postgres.version}: ${Object.entries(m0.postgres)
          .filter(([k]) => k !== 'version')
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`,
      );
    if (m0.mysql)
      lines.push(
        `- MariaDB/MySQL ${m0.mysql.version}: ${Object.entries(m0.mysql)
          .filter(([k]) => k !== 'version')
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`,
      );
  }
  lines.push('', '### Results', '');
  lines.push(
    'Median of the repetitions (min–max below it). Ratio = Coffer speed / raw speed (for times in seconds: raw time / Coffer time), so below 1 means Coffer is slower. Chain workloads show the 1M-row stage here; every stage is in the scaling tables.',
  );
  for (const w of ORDER) {
    let sel = ms.filter((m) => m.workload === w);
    if (!sel.length) continue;
    const staged = sel.some((m) => m.stage);
    if (staged && w !== 'reorg') {
      const head = sel.filter((m) => m.stage === '1M');
      sel = head.length ? head : sel.filter((m) => m.stage === sel[sel.length - 1]!.stage);
    }
    lines.push('', `#### ${TITLES[w]}`, '', ...table(sel, staged));
  }
  for (const w of ['ingest', 'reads'] as const) {
    const t = scalingTable(ms, w);
    if (t.length)
      lines.push('', `#### Scaling: ${w === 'ingest' ? 'ingest (tx/s)' : 'point reads (reads/s)'} as the database grows`, '', ...t);
  }
  const skipped = runs.flatMap((run) => run.skipped.map((s) => ({ ...s, at: run.startedAt })));
  if (skipped.length) {
    lines.push('', '### Not measured', '');
    for (const s of skipped) lines.push(`- ${s.workload} on ${s.backend} (run ${s.at.slice(0, 16)}): ${s.reason}`);
  }
  return lines.join('\n');
}

const SKELETON = `# Benchmarks

Generated by \`npm run bench\` (bench/run.ts); the analysis below the table is written by hand.

${BEGIN}
${END}
`;

export function writeDocs(file: string, r: ResultsFile): void {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : SKELETON;
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  const body = `${BEGIN}\n${renderGenerated(r)}\n${END}`;
  const next = a >= 0 && b > a ? text.slice(0, a) + body + text.slice(b + END.length) : `${text.trimEnd()}\n\n${body}\n`;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, next);
}
