// `coffer secrets rotate` re-wraps every encrypted column under the active master key (the
// first in COFFER_MASTER_KEY / COFFER_MASTER_KEY_FILE), resumably; `coffer secrets status`
// counts ciphertexts per master key id so an operator can see when an old key may be dropped.
import type { Command } from '@commander-js/extra-typings';
import { Keyring } from '../secrets/envelope.js';
import { rotateSecrets, secretsStatus } from '../secrets/rotate.js';
import { cliActor, CONFIG_HELP, DB_HELP, out, toJson, withCoffer } from './audit-commands.js';

export function registerSecretsCommands(program: Command): void {
  const secrets = program.command('secrets').description('encrypted columns and their master keys');

  secrets
    .command('rotate')
    .description('re-encrypt every secret column under the active master key (resumable: run again after an interruption)')
    .option('--batch <n>', 'rows per transaction', '200')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const keyring = Keyring.fromEnv();
      const report = await withCoffer(opts, (coffer) =>
        rotateSecrets(coffer, {
          keyring,
          batchSize: Number(opts.batch),
          actor: cliActor(),
          onBatch: (p) => {
            if (!opts.json && p.rotated) process.stderr.write(`${p.table}.${p.column}: ${p.rotated} re-encrypted\n`);
          },
        }),
      );
      if (opts.json) out(toJson(report));
      else {
        for (const c of report.columns) {
          out(
            `${c.table}.${c.column}: ${c.rotated} re-encrypted under ${report.activeKeyId}${c.skipped ? `, ${c.skipped} changed meanwhile (run again)` : ''}`,
          );
        }
        if (!report.columns.length) out('no encrypted columns');
      }
    });

  secrets
    .command('status')
    .description('count ciphertexts per master key id in every encrypted column')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const st = await withCoffer(opts, (coffer) => secretsStatus(coffer));
      if (opts.json) {
        out(toJson(st));
        return;
      }
      for (const c of st) {
        const keys = Object.entries(c.byKeyId).map(([k, n]) => `${k}: ${n}`);
        out(
          `${c.table}.${c.column}: ${keys.length ? keys.join(', ') : 'no values'}${c.notEncrypted ? `, NOT ENCRYPTED: ${c.notEncrypted}` : ''}`,
        );
      }
    });
}
