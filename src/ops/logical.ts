// Coffer's portable logical backup format: a gzip'd stream of JSON lines, restorable into any
// backend.
//
//   {"format":"coffer-logical","version":1,…header: id, source, migrations, tables+column types}
//   {"table":"chain_blocks","columns":["chain_id","height",…]}
//   ["btc","5",…]                         one canonical row per line (rows.ts), primary-key order
//   {"end":"chain_blocks","rows":2,"checksum":"…","serialNext":null}
//   … one section per table, in foreign-key dependency order …
//   {"manifest":{…}}                      the manifest (manifest.ts): the stream is complete
//
// The header lists the tables in section order. A restore loads them in that order, not in this
// build's: builds may list domains' migrations in different orders, which orders tables
// differently, and the stream can only be read front to back.
//
// A reader checks each section against its end record and fails on a missing trailer, so a
// truncated or damaged file is never restored silently. A restore reads the file through once
// (LogicalSource.check) before it touches its target, so such a file is refused up front.
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip, type Gzip } from 'node:zlib';
import type { ColumnType } from '../schema/model.js';
import { ConfigError } from '../db/errors.js';
import { fileError, InterruptedError } from './errors.js';
import type { AppliedMigration } from './db.js';
import type { Manifest } from './manifest.js';
import type { TableProgress } from './marker.js';
import { parseLine, TableDigest, type Row } from './rows.js';
import type { RowSource, TablePlan } from './transfer.js';

export const LOGICAL_FORMAT = 'coffer-logical';

export interface LogicalHeader {
  format: typeof LOGICAL_FORMAT;
  version: 1;
  id: string;
  coffer: string;
  createdAt: string;
  source: { backend: string; server: string; describe: string };
  migrations: AppliedMigration[];
  tables: { name: string; columns: { name: string; type: ColumnType }[] }[];
}

/** Writes the stream: gzip into a file, with backpressure, failing fast on a write error. */
export class LogicalWriter {
  readonly #gzip: Gzip;
  readonly #done: Promise<void>;
  #error: Error | undefined;
  #buffer: string[] = [];
  #buffered = 0;
  #written = 0;
  readonly path: string;

  private constructor(path: string, gzip: Gzip, done: Promise<void>) {
    this.path = path;
    this.#gzip = gzip;
    this.#done = done;
    done.catch((e: Error) => {
      this.#error = e;
    });
  }

  /**
   * Opens `path` for writing; `exclusive` refuses an existing file. Otherwise it appends, never
   * truncates: the path may be /dev/stdout of a shell that opened it with `>>`, and reopening it
   * with O_TRUNC would empty the file it was appending to (a partial file is removed before).
   */
  static async open(path: string, exclusive: boolean): Promise<LogicalWriter> {
    const file = createWriteStream(path, { flags: exclusive ? 'wx' : 'a' });
    await new Promise<void>((resolve, reject) => {
      file.once('open', () => resolve());
      file.once('error', (e) => reject(fileError(e, 'cannot write', path)));
    });
    const gzip = createGzip({ level: 6 });
    const counter = (chunk: Buffer) => (w.#written += chunk.length);
    gzip.on('data', counter);
    const done = pipeline(gzip, file).catch((e: unknown) => {
      throw fileError(e, 'cannot write', path);
    });
    const w = new LogicalWriter(path, gzip, done);
    return w;
  }

  /** Compressed bytes produced so far. */
  get written(): number {
    return this.#written;
  }

  async line(s: string): Promise<void> {
    if (this.#error) throw this.#error;
    this.#buffer.push(s, '\n');
    this.#buffered += s.length + 1;
    if (this.#buffered >= 64 * 1024) await this.#flush();
  }

  async #flush(): Promise<void> {
    if (!this.#buffer.length) return;
    const chunk = this.#buffer.join('');
    this.#buffer = [];
    this.#buffered = 0;
    try {
      if (!this.#gzip.write(chunk)) {
        await Promise.race([once(this.#gzip, 'drain'), this.#done.then(() => undefined)]);
      }
    } catch (e) {
      throw this.#error ?? fileError(e, 'cannot write', this.path);
    }
    if (this.#error) throw this.#error;
  }

  /** Flushes and closes the file; throws the write error (disk full…) if there was one. */
  async close(): Promise<void> {
    await this.#flush();
    this.#gzip.end();
    try {
      await this.#done;
    } catch (e) {
      throw this.#error ?? fileError(e, 'cannot write', this.path);
    }
    if (this.#error) throw this.#error;
  }

  abort(): void {
    this.#gzip.destroy();
  }
}

type Record_ = { kind: 'row'; line: string } | { kind: 'meta'; value: Record<string, unknown> };

/** Reads the stream line by line. */
export class LogicalReader {
  readonly path: string;
  readonly header: LogicalHeader;
  readonly #lines: AsyncIterator<string>;
  readonly #close: () => void;
  #peeked: Record_ | null | undefined;

  private constructor(path: string, header: LogicalHeader, lines: AsyncIterator<string>, close: () => void) {
    this.path = path;
    this.header = header;
    this.#lines = lines;
    this.#close = close;
  }

  static async open(path: string): Promise<LogicalReader> {
    const file = createReadStream(path);
    await new Promise<void>((resolve, reject) => {
      file.once('open', () => resolve());
      file.once('error', (e) => reject(fileError(e, 'cannot read', path)));
    });
    const gunzip = createGunzip();
    let failure: Error | undefined;
    const onError = (e: Error) => (failure ??= new ConfigError(`backup file ${path} is damaged or truncated (${e.message})`, { path }));
    file.on('error', onError);
    gunzip.on('error', onError);
    file.pipe(gunzip);
    const rl = createInterface({ input: gunzip, crlfDelay: Infinity });
    const it = rl[Symbol.asyncIterator]();
    const close = () => {
      rl.close();
      gunzip.destroy();
      file.destroy();
    };
    const wrapped: AsyncIterator<string> = {
      next: async () => {
        try {
          const r = await it.next();
          if (failure) throw failure;
          return r;
        } catch (e) {
          throw failure ?? e;
        }
      },
    };
    let first: IteratorResult<string>;
    try {
      first = await wrapped.next();
    } catch (e) {
      close();
      throw e;
    }
    let header: LogicalHeader | undefined;
    try {
      header = first.done ? undefined : (JSON.parse(first.value) as LogicalHeader);
    } catch {
      header = undefined;
    }
    if (!header || header.format !== LOGICAL_FORMAT || header.version !== 1) {
      close();
      throw new ConfigError(`${path} is not a Coffer logical backup (no ${LOGICAL_FORMAT} version 1 header)`, { path });
    }
    return new LogicalReader(path, header, wrapped, close);
  }

  async #read(): Promise<Record_ | null> {
    const r = await this.#lines.next();
    if (r.done) return null;
    const line = r.value;
    if (line.startsWith('[')) return { kind: 'row', line };
    try {
      return { kind: 'meta', value: JSON.parse(line) as Record<string, unknown> };
    } catch {
      throw new ConfigError(`backup file ${this.path} is damaged (unreadable line)`, { path: this.path });
    }
  }

  async next(): Promise<Record_ | null> {
    if (this.#peeked !== undefined) {
      const p = this.#peeked;
      this.#peeked = undefined;
      return p;
    }
    return this.#read();
  }

  async peek(): Promise<Record_ | null> {
    if (this.#peeked === undefined) this.#peeked = await this.#read();
    return this.#peeked;
  }

  close(): void {
    this.#close();
  }
}

export interface EndRecord {
  rows: number;
  checksum: string;
  serialNext: string | null;
}

/**
 * The plans in the order the backup holds their sections (its header's order): the only order
 * a LogicalSource serves in one pass. It may differ from this build's order, which follows the
 * registry's order of migrations across domains. Refuses a header that lists a table before one
 * its foreign keys reference (the backup wrote a dependency order: such a file was edited), as
 * loading it would fail part way.
 */
export function plansInFileOrder(plans: readonly TablePlan[], header: LogicalHeader, where: string): TablePlan[] {
  const position = new Map(header.tables.map((t, i) => [t.name, i]));
  const at = (p: TablePlan) => position.get(p.table.name) ?? Number.MAX_SAFE_INTEGER;
  const ordered = [...plans].sort((a, b) => at(a) - at(b));
  const planned = new Set(ordered.map((p) => p.table.name));
  const before = new Set<string>();
  for (const p of ordered) {
    for (const fk of p.table.foreignKeys) {
      if (fk.refTable !== p.table.name && planned.has(fk.refTable) && !before.has(fk.refTable)) {
        throw new ConfigError(
          `backup file ${where} is damaged: it lists table ${p.table.name} before ${fk.refTable}, which its foreign key ${fk.name} references`,
          { path: where },
        );
      }
    }
    before.add(p.table.name);
  }
  return ordered;
}

/**
 * A RowSource over a logical backup, read front to back: tables must be asked for in file
 * order (plansInFileOrder). Every section is checked against its end record, including
 * sections skipped on a resume.
 */
export class LogicalSource implements RowSource {
  readonly describe: string;
  readonly #reader: LogicalReader;
  readonly ends = new Map<string, EndRecord>();

  constructor(reader: LogicalReader) {
    this.#reader = reader;
    this.describe = reader.path;
  }

  #damaged(what: string): ConfigError {
    return new ConfigError(`backup file ${this.#reader.path} is damaged or truncated: ${what}`, { path: this.#reader.path });
  }

  /** Checks a section's end record against what the section held, and keeps it. */
  #end(name: string, value: Record<string, unknown>, dg: TableDigest): void {
    if (value.end !== name) throw this.#damaged(`table ${name} has no end record`);
    const end = {
      rows: Number(value.rows),
      checksum: String(value.checksum),
      serialNext: (value.serialNext as string | null) ?? null,
    };
    if (end.rows !== dg.rows || end.checksum !== dg.checksum) {
      throw this.#damaged(
        `table ${name} holds ${dg.rows} rows with checksum ${dg.checksum.slice(0, 12)}…, its end record says ${end.rows} rows, ${end.checksum.slice(0, 12)}…`,
      );
    }
    this.ends.set(name, end);
  }

  /** Reads one section's rows (the start record already consumed), yielding batches after `skip` rows. */
  async *#section(name: string, plan: TablePlan | null, skip: number, batchSize: number): AsyncGenerator<Row[]> {
    const dg = new TableDigest();
    let batch: Row[] = [];
    for (;;) {
      const r = await this.#reader.next();
      if (!r) throw this.#damaged(`it ends inside table ${name}`);
      if (r.kind === 'meta') {
        this.#end(name, r.value, dg);
        if (batch.length) yield batch;
        return;
      }
      dg.add(r.line);
      if (!plan) continue;
      if (skip > 0) {
        skip--;
        continue;
      }
      batch.push(parseLine(plan.columns, r.line));
      if (batch.length >= batchSize) {
        yield batch;
        batch = [];
      }
    }
  }

  async *rows(plan: TablePlan, resume: TableProgress | null, batchSize: number): AsyncGenerator<Row[]> {
    const name = plan.table.name;
    for (;;) {
      const r = await this.#reader.next();
      if (!r) throw this.#damaged(`table ${name} is missing`);
      if (r.kind !== 'meta' || typeof r.value.table !== 'string') throw this.#damaged(`expected the start of table ${name}`);
      if (r.value.table !== name) {
        // A table loaded by an earlier run: read past it (still checking it).
        for await (const _ of this.#section(r.value.table, null, 0, batchSize)) void _;
        continue;
      }
      const cols = r.value.columns as string[];
      if (cols.join(',') !== plan.columns.map((c) => c.name).join(','))
        throw this.#damaged(`table ${name} lists columns ${cols.join(', ')}`);
      yield* this.#section(name, plan, resume?.rowsDone ?? 0, batchSize);
      return;
    }
  }

  /** Reads to the end and returns the trailer manifest; throws if the stream stops short of it. */
  async finish(): Promise<Manifest> {
    for (;;) {
      const r = await this.#reader.next();
      if (!r) throw this.#damaged('the manifest at its end is missing');
      if (r.kind === 'meta' && r.value.manifest) {
        const m = r.value.manifest as Manifest;
        for (const t of m.tables) {
          const e = this.ends.get(t.name);
          if (e && (e.rows !== t.rows || e.checksum !== t.checksum)) throw this.#damaged(`its manifest disagrees with table ${t.name}`);
        }
        return m;
      }
      if (r.kind === 'meta' && typeof r.value.table === 'string') {
        for await (const _ of this.#section(r.value.table, null, 0, 1000)) void _;
        continue;
      }
      throw this.#damaged('unexpected content after the last table');
    }
  }

  /**
   * Reads the whole file, loading nothing, before a restore touches its target: one section per
   * table in the order its header lists them (a header edited to another order, or a file cut
   * short, is refused naming the table and its position), each section matching its end record,
   * and the manifest at the end agreeing with both. Returns that manifest (not yet validated).
   */
  async check(opts: { signal?: AbortSignal; progress?: (rows: number, bytes: number, table: string) => void } = {}): Promise<Manifest> {
    const header = this.#reader.header;
    const tables = header.tables;
    const position = (i: number) => `position ${i + 1} of ${tables.length}`;
    for (let i = 0; i < tables.length; i++) {
      const want = tables[i]!;
      const r = await this.#reader.next();
      if (!r || (r.kind === 'meta' && r.value.manifest !== undefined)) {
        throw this.#damaged(
          `its header lists table ${want.name} at ${position(i)}, but the file ${r ? 'has its manifest' : 'ends'} after ${i} table section(s)`,
        );
      }
      if (r.kind !== 'meta' || typeof r.value.table !== 'string')
        throw this.#damaged(`expected the start of table ${want.name} (${position(i)} in its header)`);
      const found = r.value.table;
      if (found !== want.name) {
        const at = tables.findIndex((t) => t.name === found);
        throw this.#damaged(
          `its header lists table ${want.name} at ${position(i)}, but section ${i + 1} is table ${found}${at < 0 ? ', which its header does not list' : ` (${position(at)} in its header)`}`,
        );
      }
      const cols = Array.isArray(r.value.columns) ? (r.value.columns as unknown[]).map(String) : [];
      const expected = want.columns.map((c) => c.name);
      if (cols.join(',') !== expected.join(','))
        throw this.#damaged(`table ${found} (${position(i)}) lists columns ${cols.join(', ')}, its header ${expected.join(', ')}`);
      const dg = new TableDigest();
      let reported = { rows: 0, bytes: 0 };
      for (;;) {
        const x = await this.#reader.next();
        if (!x) throw this.#damaged(`it ends inside table ${found} (${position(i)})`);
        if (x.kind === 'meta') {
          this.#end(found, x.value, dg);
          break;
        }
        dg.add(x.line);
        if (dg.rows - reported.rows >= 1000) {
          if (opts.signal?.aborted)
            throw new InterruptedError(`restore interrupted while checking ${this.#reader.path}: nothing was written to the target`);
          opts.progress?.(dg.rows - reported.rows, dg.bytes - reported.bytes, found);
          reported = { rows: dg.rows, bytes: dg.bytes };
        }
      }
      opts.progress?.(dg.rows - reported.rows, dg.bytes - reported.bytes, found);
    }
    const r = await this.#reader.next();
    if (!r) throw this.#damaged('the manifest at its end is missing');
    if (r.kind === 'meta' && typeof r.value.table === 'string') {
      const at = tables.findIndex((t) => t.name === r.value.table);
      throw this.#damaged(
        `section ${tables.length + 1} is table ${r.value.table}${at < 0 ? ', which its header does not list' : `, listed at ${position(at)} in its header and already read`}`,
      );
    }
    if (r.kind !== 'meta' || !r.value.manifest) throw this.#damaged('unexpected content after the last table');
    if (await this.#reader.next()) throw this.#damaged('unexpected content after its manifest');
    const m = r.value.manifest as Manifest;
    const listed = Array.isArray(m.tables) ? m.tables : [];
    for (const t of listed) {
      const e = this.ends.get(t.name);
      if (!e) throw this.#damaged(`its manifest lists table ${t.name}, which has no section`);
      if (e.rows !== t.rows || e.checksum !== t.checksum) throw this.#damaged(`its manifest disagrees with table ${t.name}`);
    }
    const inManifest = new Set(listed.map((t) => t.name));
    const unlisted = tables.filter((t) => !inManifest.has(t.name)).map((t) => t.name);
    if (unlisted.length) throw this.#damaged(`its manifest does not list table(s) ${unlisted.join(', ')}`);
    if (m.id !== header.id) throw this.#damaged(`its manifest has id ${String(m.id)}, its header ${header.id}`);
    const history = (ms: unknown) =>
      JSON.stringify((Array.isArray(ms) ? (ms as AppliedMigration[]) : []).map((x) => `${x.domain}/${x.version}/${x.checksum}`).sort());
    if (history(m.migrations) !== history(header.migrations))
      throw this.#damaged('its manifest and its header list different migration histories');
    return m;
  }

  close(): void {
    this.#reader.close();
  }
}
