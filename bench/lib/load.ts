// Loopback HTTP load: wrk (Debian's `wrk`, C, one thread) when installed, otherwise a small
// keep-alive load generator on node:http in this process. Returns requests/s and p50/p99.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { now } from './stats.js';

const run = promisify(execFile);

export interface LoadSpec {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  /** GET: paths to pick from at random. */
  paths?: string[];
  /** POST: one body per request, in order (a run must not need more than given). */
  bodies?: string[];
  connections: number;
  seconds: number;
}

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  tool: string;
}

let wrkAvailable: boolean | undefined;
export async function hasWrk(): Promise<boolean> {
  if (wrkAvailable === undefined) {
    try {
      await run('wrk', ['-v']);
      wrkAvailable = true;
    } catch (e) {
      wrkAvailable = /wrk/.test(String((e as { stdout?: string }).stdout ?? ''));
    }
  }
  return wrkAvailable;
}

const toMs = (v: string, unit: string) => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 1);

async function viaWrk(s: LoadSpec): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-bench-wrk-'));
  try {
    const lines: string[] = [];
    lines.push(`wrk.method = "${s.method}"`);
    for (const [k, v] of Object.entries(s.headers)) lines.push(`wrk.headers["${k}"] = "${v}"`);
    if (s.paths) {
      writeFileSync(join(dir, 'paths.txt'), s.paths.join('\n'));
      lines.push(`local paths = {}`, `for line in io.lines("${join(dir, 'paths.txt')}") do paths[#paths + 1] = line end`);
      lines.push(`request = function() return wrk.format(nil, paths[math.random(#paths)]) end`);
    } else if (s.bodies) {
      writeFileSync(join(dir, 'bodies.txt'), s.bodies.join('\n'));
      const path = new URL(s.url).pathname;
      lines.push(
        `local bodies = {}`,
        `for line in io.lines("${join(dir, 'bodies.txt')}") do bodies[#bodies + 1] = line end`,
        'local n = 0',
      );
      lines.push(`request = function() n = n + 1; if n > #bodies then n = 1 end; return wrk.format(nil, "${path}", nil, bodies[n]) end`);
    }
    lines.push(
      'local errors = 0',
      'response = function(status, headers, body) if status >= 300 then errors = errors + 1; if errors < 3 then io.stderr:write("HTTP " .. status .. " " .. body .. "\\n") end end end',
    );
    writeFileSync(join(dir, 'script.lua'), lines.join('\n'));
    const { stdout } = await run(
      'wrk',
      ['-t1', `-c${s.connections}`, `-d${Math.max(1, Math.round(s.seconds))}s`, '--latency', '-s', join(dir, 'script.lua'), s.url],
      {
        maxBuffer: 1 << 20,
      },
    );
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
    const p = (q: string) => {
      const m = new RegExp(`^\\s+${q}%\\s+([\\d.]+)(us|ms|s|m)`, 'm').exec(stdout);
      return m ? toMs(m[1]!, m[2]!) : NaN;
    };
    const requests = Number(/(\d+) requests in/.exec(stdout)?.[1]);
    const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
    const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
    const errors = non2xx + (sockErr ? Number(sockErr[1]) + Number(sockErr[2]) + Number(sockErr[3]) + Number(sockErr[4]) : 0);
    return { rps, p50Ms: p('50'), p99Ms: p('99'), requests, errors, tool: 'wrk' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function viaNode(s: LoadSpec): Promise<LoadResult> {
  const u = new URL(s.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: s.connections });
  const lat: number[] = [];
  let errors = 0;
  let i = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const body = s.bodies ? s.bodies[i++ % s.bodies.length] : undefined;
      const path = s.paths ? s.paths[(Math.random() * s.paths.length) | 0]! : u.pathname;
      const t0 = now();
      const req = http.request(
        {
          host: u.hostname,
          port: u.port,
          path,
          method: s.method,
          agent,
          headers: { ...s.headers, ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if ((res.statusCode ?? 500) >= 300) errors++;
            lat.push((now() - t0) * 1000);
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(body);
    });
  const t0 = now();
  const deadline = t0 + s.seconds;
  await Promise.all(
    Array.from({ length: s.connections }, async () => {
      while (now() < deadline) await one();
    }),
  );
  const dt = now() - t0;
  agent.destroy();
  lat.sort((a, b) => a - b);
  const q = (x: number) => lat[Math.min(lat.length - 1, Math.floor(x * lat.length))] ?? NaN;
  return {
    rps: lat.length / dt,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    requests: lat.length,
    errors,
    tool: 'node:http load generator (in process)',
  };
}

export async function load(s: LoadSpec, tool: 'wrk' | 'node' | 'auto' = 'auto'): Promise<LoadResult> {
  if (tool === 'node') return viaNode(s);
  return tool === 'wrk' || (await hasWrk()) ? viaWrk(s) : viaNode(s);
}
