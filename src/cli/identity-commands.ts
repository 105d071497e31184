// `coffer keys create|list|revoke`: API keys from the command line. No key is ever seeded: the
// first admin key comes from `coffer keys create --integration ops --name admin --scope '*:admin'`.
// The key is printed once, on stdout; only its hash is stored. `coffer roles` prints (and with
// --apply creates) one PostgreSQL role per domain with least-privilege grants.
import type { Command } from '@commander-js/extra-typings';
import { ValidationError } from '../db/errors.js';
import { applyRoles, planRoles } from '../domains/identity/db-roles.js';
import { identity, type ApiKey, type Integration } from '../domains/identity/index.js';
import { cliActor, CONFIG_HELP, DB_HELP, out, toJson, withCoffer } from './audit-commands.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

const PAGE = 1000;

/** Every row of a keyset-paged list (the CLI prints them all), read page by page in one transaction. */
async function everyPage<T>(page: (after: T | undefined) => Promise<T[]>): Promise<T[]> {
  const all: T[] = [];
  for (let last: T | undefined; ;) {
    const rows = await page(last);
    all.push(...rows);
    if (rows.length < PAGE) return all;
    last = rows[rows.length - 1];
  }
}

/** "90d", "12h", "30m", "3600s" → milliseconds. */
export function parseDuration(s: string, field: string): number {
  const m = /^([1-9][0-9]{0,6})(s|m|h|d)$/.exec(s.trim());
  if (!m) throw new ValidationError(`${field}: expected a duration like 90d, 12h, 30m or 3600s`, { field });
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

export function registerIdentityCommands(program: Command): void {
  const keys = program.command('keys').description('API keys of integrations (shown once, stored hashed)');

  keys
    .command('create')
    .description('create an API key (and its integration if it does not exist); prints the key once')
    .requiredOption('--integration <name>', 'integration the key belongs to')
    .requiredOption('--name <name>', 'key name, unique within the integration')
    .option('--scope <scope>', 'scope <domain>:read|write|admin or *:<level> (repeatable)', collect, [] as string[])
    .option('--expires-in <duration>', 'lifetime, e.g. 90d, 12h', '90d')
    .option('--ip <cidr>', 'allowed address or CIDR (repeatable; none: any address)', collect, [] as string[])
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      if (opts.scope.length === 0)
        throw new ValidationError('--scope: give at least one scope, e.g. --scope identity:read or --scope "*:admin"', { field: 'scope' });
      const expiresAt = new Date(Date.now() + parseDuration(opts.expiresIn, 'expires-in'));
      const actor = cliActor();
      const r = await withCoffer(opts, (coffer) =>
        coffer.write(
          async (tx) => {
            const id = identity(tx, actor);
            const integration =
              (await id.integrations.findByName(opts.integration)) ?? (await id.integrations.create({ name: opts.integration }));
            const created = await id.keys.create({
              integrationId: integration.id,
              name: opts.name,
              scopes: opts.scope,
              expiresAt,
              ipAllow: opts.ip,
            });
            return { ...created, integration };
          },
          { op: 'identity.createKey' },
        ),
      );
      if (opts.json)
        out(
          toJson({
            key: r.key,
            id: r.record.id,
            integration: r.integration.name,
            name: r.record.name,
            scopes: r.record.scopes,
            ipAllow: r.record.ipAllow,
            expiresAt: r.record.expiresAt,
          }),
        );
      else {
        out(r.key);
        process.stderr.write(
          `created API key ${r.record.id} "${r.record.name}" of integration "${r.integration.name}" with ${r.record.scopes.join(', ')}, expiring ${r.record.expiresAt.toISOString()}.\n` +
            'This is the only time the key is shown: store it now.\n',
        );
      }
    });

  keys
    .command('list')
    .description('list API keys (never their secrets)')
    .option('--integration <name>', 'only keys of this integration')
    .option('--all', 'include revoked keys')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const rows = await withCoffer(opts, (coffer) =>
        coffer.read(
          async (tx) => {
            const id = identity(tx, cliActor());
            const integrations = await everyPage<Integration>((after) =>
              id.integrations.list({ includeDeleted: true, limit: PAGE, ...(after ? { after: after.id } : {}) }),
            );
            const byId = new Map(integrations.map((i) => [i.id, i.name]));
            let integrationId: bigint | undefined;
            if (opts.integration) {
              const i = await id.integrations.findByName(opts.integration);
              if (!i) throw new ValidationError(`--integration: no integration named "${opts.integration}"`, { field: 'integration' });
              integrationId = i.id;
            }
            const list = await everyPage<ApiKey>((after) =>
              id.keys.list({
                ...(integrationId !== undefined ? { integrationId } : {}),
                includeRevoked: opts.all === true,
                limit: PAGE,
                ...(after ? { after: { integrationId: after.integrationId, createdAt: after.createdAt, id: after.id } } : {}),
              }),
            );
            return list.map((k) => ({ ...k, integration: byId.get(k.integrationId) ?? String(k.integrationId) }));
          },
          { op: 'identity.listKeys' },
        ),
      );
      if (opts.json) {
        out(toJson(rows));
        return;
      }
      if (!rows.length) out('no API keys');
      for (const k of rows) {
        const state = k.deletedAt
          ? `revoked ${k.deletedAt.toISOString()}`
          : k.expiresAt.getTime() <= Date.now()
            ? 'expired'
            : `expires ${k.expiresAt.toISOString()}`;
        out(
          `${k.id}  ${k.integration}/${k.name}  ${k.scopes.join(',')}  ${k.ipAllow.length ? k.ipAllow.join(',') : 'any address'}  v${k.version}  ${state}`,
        );
      }
    });

  keys
    .command('revoke')
    .description('revoke an API key by its id (the part after cfk_)')
    .argument('<id>', 'key id (24 hex characters)')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (keyId, opts) => {
      const actor = cliActor();
      const k = await withCoffer(opts, (coffer) =>
        coffer.write((tx) => identity(tx, actor).keys.revoke(keyId), { op: 'identity.revokeKey' }),
      );
      if (opts.json) out(toJson(k));
      else out(`revoked API key ${k.id} "${k.name}"`);
    });

  program
    .command('roles')
    .description('PostgreSQL: print (or with --apply create) one least-privilege role per domain')
    .option('--apply', 'create the roles and grants (needs CREATEROLE and table ownership)')
    .option('--prefix <prefix>', 'role name prefix: roles are <prefix>_<domain>', 'coffer')
    .option('--login', 'let the roles log in (otherwise grant them to login users)')
    .option('--json', 'machine-readable output')
    .option('--db <url>', DB_HELP)
    .option('--config <file>', CONFIG_HELP)
    .action(async (opts) => {
      const o = { prefix: opts.prefix, login: opts.login === true };
      const plan = await withCoffer(opts, (coffer) => (opts.apply ? applyRoles(coffer, o) : planRoles(coffer, o)));
      if (opts.json) out(toJson(plan));
      else {
        out(`-- least-privilege roles for database "${plan.database}", schema "${plan.schema}"`);
        for (const s of plan.statements) out(`${s};`);
        if (opts.apply) process.stderr.write(`applied: ${plan.roles.map((r) => r.role).join(', ')}\n`);
      }
    });
}
