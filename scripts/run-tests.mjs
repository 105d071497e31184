#!/usr/bin/env node
// `npm test`: type-check, check formatting (prettier, as `npm run format` writes it), then run
// every *.test.ts under test/, src/ and bench/ with node:test (through tsx), after printing which
// backends run and why others are skipped. --no-typecheck and --no-format-check skip the checks
// (subset runs). Node 20's --test does not expand globs, so the file list is built here.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const filters = args.filter((a) => !a.startsWith('--'));
const skipTypecheck = args.includes('--no-typecheck');
const skipFormat = args.includes('--no-format-check');

function find(dir) {
  let out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name === 'node_modules' || name === 'reliability-long') continue;
      out = out.concat(find(p));
    } else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = ['test', 'src', 'bench']
  .flatMap((d) => find(d))
  .sort()
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
const backends = [
  ['memory', undefined],
  ['sqlite', undefined],
  ['postgres', process.env.COFFER_TEST_POSTGRES_URL ? undefined : 'COFFER_TEST_POSTGRES_URL not set'],
  ['mysql', process.env.COFFER_TEST_MYSQL_URL ? undefined : 'COFFER_TEST_MYSQL_URL not set'],
];
console.log('coffer test backends:');
for (const [name, why] of backends) console.log(`  ${name.padEnd(9)}${why ? `SKIPPED (${why})` : 'runs'}`);

if (!skipTypecheck) {
  const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit'], { stdio: 'inherit' });
  if (tsc.status !== 0) {
    console.error('type check failed');
    process.exit(tsc.status ?? 1);
  }
}
if (!skipFormat) {
  const fmt = spawnSync(
    process.execPath,
    ['node_modules/prettier/bin/prettier.cjs', '--check', '--log-level', 'warn', 'src', 'test', 'scripts', 'bench'],
    {
      stdio: 'inherit',
    },
  );
  if (fmt.status !== 0) {
    console.error('format check failed: the files above differ from `npm run format` (prettier --write)');
    process.exit(fmt.status ?? 1);
  }
}

const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --no-warnings=ExperimentalWarning`.trim() },
});
process.exit(r.status ?? 1);
