// docs/api.md's curl examples are run, in order, against a live `coffer serve`, and each block's
// `# expect:` lines must appear in its output: the documentation cannot rot.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function blocks(md: string): { code: string; expects: string[] }[] {
  return [...md.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => {
    const code = m[1]!;
    return { code, expects: [...code.matchAll(/^# expect: (.+)$/gm)].map((x) => x[1]!.trim()) };
  });
}

test(
  'every curl example in docs/api.md runs and prints what it promises',
  { skip: spawnSync('curl', ['--version']).status !== 0 ? 'curl not installed' : false },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-apidocs-'));
    const db = `sqlite:${join(dir, 'coffer.db')}`;
    const env = { ...process.env, COFFER_DATABASE_URL: db, COFFER_LOG_LEVEL: 'warn' };
    const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), 'serve', '--port', '0'], { cwd: ROOT, env });
    try {
      let stdout = '';
      const base = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          stdout += d;
          const m = /listening on (http:\/\/[^ ]+)/.exec(stdout);
          if (m) resolve(m[1]!);
        });
        child.on('close', () => reject(new Error(`serve exited: ${stdout}`)));
      });
      const created = spawnSync(
        process.execPath,
        [join(ROOT, 'bin/coffer.js'), 'keys', 'create', '--integration', 'ops', '--name', 'admin', '--scope', '*:admin', '--json'],
        {
          cwd: ROOT,
          env,
          encoding: 'utf8',
        },
      );
      assert.equal(created.status, 0, created.stderr);
      const key = JSON.parse(created.stdout).key as string;
      const list = blocks(readFileSync(join(ROOT, 'docs/api.md'), 'utf8'));
      assert.ok(list.length >= 8, `found ${list.length} runnable blocks`);
      // One shell for all blocks, so variables (MINT, INTEGRATION) carry over, with a marker
      // between blocks to split the output.
      const script = ['set -euo pipefail', ...list.map((b, i) => `echo "::block ${i}::"\n${b.code}`)].join('\n');
      const r = spawnSync('bash', ['-c', script], { env: { ...process.env, COFFER: base, KEY: key }, encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, `a documented example failed:\n${r.stdout.slice(-2000)}\n${r.stderr}`);
      const outputs = r.stdout.split(/::block \d+::\n/).slice(1);
      list.forEach((b, i) => {
        for (const e of b.expects) assert.ok(outputs[i]?.includes(e), `block ${i} should print ${e}; printed:\n${outputs[i]}`);
      });
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('close', r));
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
