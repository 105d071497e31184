// Timing, repetition statistics and memory sampling for the benchmark suite.
import v8 from 'node:v8';
import vm from 'node:vm';

/** Seconds on a monotonic clock. */
export const now = (): number => Number(process.hrtime.bigint()) / 1e9;

export interface Stat {
  median: number;
  min: number;
  max: number;
  /** Every repetition, in the order run. */
  runs: number[];
}

export function stat(xs: readonly number[]): Stat {
  if (xs.length === 0) return { median: NaN, min: NaN, max: NaN, runs: [] };
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, runs: [...xs] };
}

/** Runs `fn`, returning its result and the wall seconds it took. */
export async function timed<T>(fn: () => Promise<T> | T): Promise<{ value: T; seconds: number }> {
  const t0 = now();
  const value = await fn();
  return { value, seconds: now() - t0 };
}

let gcFn: (() => void) | undefined;
/** A full garbage collection (without --expose-gc on the command line). */
export function gc(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
}

export interface MemoryPeak {
  /** Peak resident set size of the process during the run, MiB. */
  peakRssMiB: number;
  /** Peak V8 heap in use during the run, MiB. */
  peakHeapMiB: number;
  /** Peak heap minus the heap in use (after a GC) before the run, MiB: what the operation itself held. */
  heapGrowthMiB: number;
  /** RSS before the run, MiB. */
  baseRssMiB: number;
}

/**
 * Samples process.memoryUsage() every `everyMs` while `fn` runs (and once at the end). A
 * synchronous driver call blocks sampling, so the peak is a lower bound within one sample.
 */
export async function withMemory<T>(fn: () => Promise<T>, everyMs = 25): Promise<{ value: T; memory: MemoryPeak; seconds: number }> {
  gc();
  const base = process.memoryUsage();
  let rss = base.rss;
  let heap = base.heapUsed;
  const sample = () => {
    const m = process.memoryUsage();
    if (m.rss > rss) rss = m.rss;
    if (m.heapUsed > heap) heap = m.heapUsed;
  };
  const timer = setInterval(sample, everyMs);
  const t0 = now();
  try {
    const value = await fn();
    const seconds = now() - t0;
    sample();
    const MiB = 1024 * 1024;
    return {
      value,
      seconds,
      memory: { peakRssMiB: rss / MiB, peakHeapMiB: heap / MiB, heapGrowthMiB: (heap - base.heapUsed) / MiB, baseRssMiB: base.rss / MiB },
    };
  } finally {
    clearInterval(timer);
  }
}

/** Node CPU used during `fn`, as a percentage of one core. */
export async function withCpu<T>(fn: () => Promise<T>): Promise<{ value: T; cpuPct: number; seconds: number }> {
  const c0 = process.cpuUsage();
  const t0 = now();
  const value = await fn();
  const seconds = now() - t0;
  const c = process.cpuUsage(c0);
  return { value, seconds, cpuPct: Math.round((c.user + c.system) / 1e4 / seconds) };
}

/** Formats a rate or a time for the console and the docs table. */
export function fmt(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en-US');
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(digits);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
