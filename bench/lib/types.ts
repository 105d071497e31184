// What a benchmark run measures and records.
import type { BackendName } from './backends.js';
import type { Stat } from './stats.js';

export const WORKLOADS = ['ingest', 'settlement', 'reads', 'audit', 'reorg', 'http', 'copy'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

export interface Measurement {
  workload: WorkloadName;
  /** The variant within the workload: "1 client", "depth 10", "append", "GET transaction"… */
  case: string;
  backend: BackendName | 'sqlite→postgres';
  /** Scaling stage label ("10k", "1M", "10M") for workloads 1, 3 and 5; absent otherwise. */
  stage?: string;
  /** Rows in the measured table when the measurement started (chain_transactions, audit_log…). */
  tableRows?: number;
  unit: string;
  /** Rates: higher is better. Times (seconds): lower is better. */
  higherIsBetter: boolean;
  coffer: Stat;
  raw: Stat;
  /** Coffer speed / raw speed: coffer/raw for rates, raw/coffer for times. Below 1: Coffer is slower. */
  ratio: number;
  /** Further figures (latency percentiles, peak memory, per-row costs). */
  extra?: Record<string, number | string>;
  notes?: string[];
  /** ISO time the measurement finished. */
  at: string;
}

export interface RunSettings {
  smoke: boolean;
  /** Repetitions per measurement (median reported). */
  reps: number;
  log: (line: string) => void;
}

export function ratioOf(coffer: Stat, raw: Stat, higherIsBetter: boolean): number {
  return higherIsBetter ? coffer.median / raw.median : raw.median / coffer.median;
}

export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s.trim());
  if (!m) throw new Error(`bad size ${s} (e.g. 10k, 1M)`);
  return Math.round(Number(m[1]) * (m[2]?.toLowerCase() === 'k' ? 1e3 : m[2]?.toLowerCase() === 'm' ? 1e6 : 1));
}

export function sizeLabel(n: number): string {
  if (n >= 1e6 && n % 1e5 === 0) return `${n / 1e6}M`;
  if (n >= 1e3 && n % 100 === 0) return `${n / 1e3}k`;
  return String(n);
}
