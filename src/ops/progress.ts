// Progress of long operator commands: a bar (rows, bytes, rate, time left) on a terminal, plain
// periodic lines when stderr is not a terminal (CI logs, pipes, systemd), JSON lines with
// --json, nothing in tests. Progress always goes to stderr so stdout stays the command's result.
import cliProgress from 'cli-progress';

export interface ProgressSnapshot {
  phase: string;
  /** What is counted: rows (pages for a SQLite file backup). */
  unit: string;
  rows: number;
  /** Expected rows of the phase (an estimate on PostgreSQL/MySQL), when known. */
  totalRows: number | null;
  bytes: number;
  table: string | null;
  rowsPerSecond: number;
  etaSeconds: number | null;
  elapsedMs: number;
}

export interface Progress {
  /** Starts a phase (copy, verify, backup…) with its expected row count, when known. */
  phase(name: string, totalRows: number | null, unit?: string): void;
  /** Counts rows and bytes done, and names the table being worked on. */
  add(rows: number, bytes: number, table?: string): void;
  /** A message line (e.g. "resuming after 1200 rows"), printed without disturbing the bar. */
  note(message: string): void;
  /** Ends the current phase, printing its final state. */
  done(): void;
  /** The current state (tests and --json reports read it). */
  snapshot(): ProgressSnapshot;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const num = (n: number) => n.toLocaleString('en-US');

class Tracker {
  phaseName = '';
  unit = 'rows';
  rows = 0;
  bytes = 0;
  total: number | null = null;
  table: string | null = null;
  started = Date.now();

  start(name: string, total: number | null, unit = 'rows'): void {
    this.phaseName = name;
    this.unit = unit;
    this.rows = 0;
    this.bytes = 0;
    this.total = total;
    this.table = null;
    this.started = Date.now();
  }

  snapshot(): ProgressSnapshot {
    const elapsedMs = Date.now() - this.started;
    const rate = elapsedMs > 0 ? (this.rows * 1000) / elapsedMs : 0;
    const left = this.total !== null ? Math.max(0, this.total - this.rows) : null;
    return {
      phase: this.phaseName,
      unit: this.unit,
      rows: this.rows,
      totalRows: this.total,
      bytes: this.bytes,
      table: this.table,
      rowsPerSecond: Math.round(rate),
      etaSeconds: left !== null && rate > 0 ? Math.round(left / rate) : null,
      elapsedMs,
    };
  }

  line(final = false): string {
    const s = this.snapshot();
    const parts = [`${s.phase}: ${num(s.rows)}${s.totalRows !== null ? ` of ${num(Math.max(s.totalRows, s.rows))}` : ''} ${s.unit}`];
    if (s.totalRows) parts[0] += ` (${Math.min(100, Math.floor((s.rows * 100) / Math.max(1, s.totalRows)))}%)`;
    parts.push(formatBytes(s.bytes), `${num(s.rowsPerSecond)} ${s.unit}/s`);
    if (final) parts.push(`took ${formatDuration(s.elapsedMs / 1000)}`);
    else if (s.etaSeconds !== null) parts.push(`about ${formatDuration(s.etaSeconds)} left`);
    if (s.table && !final) parts.push(`table ${s.table}`);
    return parts.join(' · ');
  }
}

/** Prints a plain line every `intervalMs` (and at the end of each phase). */
class LineProgress implements Progress {
  readonly #t = new Tracker();
  readonly #out: NodeJS.WritableStream;
  readonly #intervalMs: number;
  readonly #json: boolean;
  #last = 0;
  constructor(out: NodeJS.WritableStream, intervalMs: number, json: boolean) {
    this.#out = out;
    this.#intervalMs = intervalMs;
    this.#json = json;
  }
  #emit(final: boolean): void {
    this.#last = Date.now();
    if (this.#json) this.#out.write(`${JSON.stringify({ progress: { ...this.#t.snapshot(), final } })}\n`);
    else this.#out.write(`${this.#t.line(final)}\n`);
  }
  phase(name: string, totalRows: number | null, unit?: string): void {
    this.#t.start(name, totalRows, unit);
    this.#last = Date.now();
  }
  add(rows: number, bytes: number, table?: string): void {
    this.#t.rows += rows;
    this.#t.bytes += bytes;
    if (table) this.#t.table = table;
    if (Date.now() - this.#last >= this.#intervalMs) this.#emit(false);
  }
  note(message: string): void {
    this.#out.write(this.#json ? `${JSON.stringify({ note: message })}\n` : `${message}\n`);
  }
  done(): void {
    if (this.#t.phaseName) this.#emit(true);
    this.#t.phaseName = '';
  }
  snapshot(): ProgressSnapshot {
    return this.#t.snapshot();
  }
}

/** A redrawn bar on a terminal. */
class BarProgress implements Progress {
  readonly #t = new Tracker();
  readonly #out: NodeJS.WriteStream;
  #multi: cliProgress.MultiBar | null = null;
  #bar: cliProgress.SingleBar | null = null;
  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
  }
  phase(name: string, totalRows: number | null, unit?: string): void {
    this.done();
    this.#t.start(name, totalRows, unit);
    const t = this.#t;
    this.#multi = new cliProgress.MultiBar(
      {
        stream: this.#out,
        hideCursor: true,
        clearOnComplete: false,
        fps: 5,
        format: (options, params) => {
          const s = t.snapshot();
          const width = options.barsize ?? 30;
          const filled = s.totalRows ? Math.min(width, Math.round((s.rows / Math.max(1, s.totalRows)) * width)) : 0;
          const bar = s.totalRows ? `${'█'.repeat(filled)}${'░'.repeat(width - filled)}` : '·'.repeat(width);
          const pct = s.totalRows ? `${String(Math.min(100, Math.floor((s.rows * 100) / Math.max(1, s.totalRows)))).padStart(3)}%` : '   ?';
          const eta =
            s.etaSeconds !== null ? `ETA ${formatDuration(s.etaSeconds)}` : formatDuration((Date.now() - params.startTime) / 1000);
          return `${s.phase.padEnd(8)} ${bar} ${pct} | ${num(s.rows)}${s.totalRows !== null ? `/${num(s.totalRows)}` : ''} ${s.unit} | ${formatBytes(s.bytes)} | ${num(s.rowsPerSecond)} ${s.unit}/s | ${eta}${s.table ? ` | ${s.table}` : ''}`;
        },
      },
      cliProgress.Presets.shades_classic,
    );
    this.#bar = this.#multi.create(Math.max(1, totalRows ?? 1), 0);
  }
  add(rows: number, bytes: number, table?: string): void {
    this.#t.rows += rows;
    this.#t.bytes += bytes;
    if (table) this.#t.table = table;
    this.#bar?.update(this.#t.rows);
  }
  note(message: string): void {
    if (this.#multi) this.#multi.log(`${message}\n`);
    else this.#out.write(`${message}\n`);
  }
  done(): void {
    if (!this.#multi) return;
    this.#bar?.update(this.#t.rows);
    this.#multi.stop();
    this.#multi = null;
    this.#bar = null;
    this.#out.write(`${this.#t.line(true)}\n`);
  }
  snapshot(): ProgressSnapshot {
    return this.#t.snapshot();
  }
}

/** Records progress without printing (tests, library use). */
export class SilentProgress implements Progress {
  readonly #t = new Tracker();
  readonly notes: string[] = [];
  phase(name: string, totalRows: number | null, unit?: string): void {
    this.#t.start(name, totalRows, unit);
  }
  add(rows: number, bytes: number, table?: string): void {
    this.#t.rows += rows;
    this.#t.bytes += bytes;
    if (table) this.#t.table = table;
  }
  note(message: string): void {
    this.notes.push(message);
  }
  done(): void {}
  snapshot(): ProgressSnapshot {
    return this.#t.snapshot();
  }
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** JSON lines instead of text. */
  json?: boolean;
  /** Seconds between plain lines when not on a terminal (env COFFER_PROGRESS_INTERVAL_MS overrides). */
  intervalMs?: number;
}

/** A bar on a terminal, periodic lines otherwise, JSON lines with json: true. */
export function createProgress(opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const env = Number(process.env.COFFER_PROGRESS_INTERVAL_MS);
  const intervalMs = Number.isFinite(env) && env > 0 ? env : (opts.intervalMs ?? 5000);
  if (!opts.json && stream.isTTY) return new BarProgress(stream);
  return new LineProgress(stream, intervalMs, opts.json ?? false);
}
