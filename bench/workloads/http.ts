// Workload 6: HTTP through Coffer's service (buildApp with every domain route, API-key
// authentication against the identity tables, zod validation, error mapping, metrics, exactly
// the app `coffer serve` builds) versus a bare Fastify route calling the raw driver, on
// loopback under wrk. Two requests, both the domain's own routes:
//   GET  /v1/chains/:chainId/transactions/:txHash (chain(tx).transaction / the raw reads of workload 3)
//   POST /v1/tokens/invoices (verify the seller's signature, reserve the tokens, one audit entry /
//        the same signature check, the same SQL and the same audit append, raw)
// Every POST body is a distinct invoice signed beforehand with a real secp256k1 key.
import Fastify from 'fastify';
import { pino } from 'pino';
import { ChainRouter } from '../../src/domains/chain/router.js';
import { identity } from '../../src/domains/identity/index.js';
import { systemActor } from '../../src/domains/audit/actor.js';
import { invoiceHash } from '../../src/domains/tokens/validate.js';
import { verifySecp256k1 } from '../../src/domains/tokens/index.js';
import { buildApp } from '../../src/server/app.js';
import { storeAuthenticator } from '../../src/server/compose.js';
import { ConfigSchema } from '../../src/config/config.js';
import { DOMAIN_ROUTES } from '../../src/server/domains.js';
import { toJson } from '../../src/server/json.js';
import { newKey, type TestKey } from '../../src/domains/tokens/testkit.js';
import type { BackendName } from '../lib/backends.js';
import { BENCH_CHAIN } from '../lib/chain-data.js';
import { ChainFixture } from '../lib/chain-fixture.js';
import { hasWrk, load, type LoadSpec } from '../lib/load.js';
import { stat } from '../lib/stats.js';
import { ratioOf, type Measurement, type RunSettings } from '../lib/types.js';
import { rawGetTx } from '../raw/chain.js';
import { rawCreateInvoice } from '../raw/invoice.js';
import { setupSellers } from './settlement.js';

const TOKENS_CHAIN = 'bench-tokens';

interface InvoiceBody {
  chainId: string;
  mintHash: string;
  sellerAddress: string;
  buyerAddress: string;
  quantity: string;
  price: string;
  priceUnit: string;
  paymentAddress: string;
  publicKey: string;
  signature: string;
  createdAt: string;
}

let runSeq = 0;

/** `n` distinct invoices signed by the sellers' key, as JSON bodies (Lua loads them from a file for wrk). */
function signedBodies(sellers: { mintHash: string; owner: string }[], key: TestKey, n: number): string[] {
  const run = ++runSeq;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = sellers[i % sellers.length]!;
    const v = {
      chainId: TOKENS_CHAIN,
      mintHash: s.mintHash,
      sellerAddress: s.owner,
      buyerAddress: `DB${run}x${i}`,
      quantity: 1n,
      price: 100_000n,
      priceUnit: 'koinu',
      paymentAddress: `DPay${run}x${i}`,
      publicKey: key.publicKey,
      createdAt: new Date(1_750_000_000_000 + run * 100_000_000 + i),
    };
    const body: InvoiceBody = {
      ...v,
      quantity: '1',
      price: '100000',
      signature: key.sign(invoiceHash(v)),
      createdAt: v.createdAt.toISOString(),
    };
    out.push(JSON.stringify(body));
  }
  return out;
}

export async function runHttp(
  backend: BackendName,
  s: RunSettings,
  record: (m: Measurement) => void,
  _skip: (b: string, w: string, r: string) => void,
): Promise<void> {
  const seconds = s.smoke ? 0.3 : 4;
  const connections = s.smoke ? 4 : 16;
  const reps = s.smoke ? 1 : s.reps;
  const f = await ChainFixture.create(backend);
  const closers: (() => Promise<void>)[] = [];
  try {
    await f.growTo(s.smoke ? 2000 : 100_000);
    const coffer = f.bench.coffer;
    const sellers = await setupSellers(coffer, s.smoke ? 16 : 256);
    const key = newKey();
    const apiKey = await coffer.write(async (tx) => {
      const id = identity(tx, systemActor('bench'));
      const integ = await id.integrations.create({ name: 'bench' });
      return (
        await id.keys.create({
          integrationId: integ.id,
          name: 'bench',
          scopes: ['chain:read', 'tokens:write'],
          expiresAt: new Date(Date.now() + 86_400_000),
        })
      ).key;
    });
    const raw = f.raw;

    const services = { coffer, chains: ChainRouter.fixed(coffer), blockProcessors: [] };
    const app = await buildApp({
      coffer,
      services,
      logger: pino({ level: 'silent' }),
      routes: DOMAIN_ROUTES,
      authenticator: storeAuthenticator(services, { cacheMs: ConfigSchema.parse({}).server.authCacheMs }),
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    closers.push(() => app.close());
    const bare = Fastify();
    bare.get<{ Params: { chainId: string; hash: string } }>('/tx/:chainId/:hash', async (req, reply) => {
      const t = (await rawGetTx(raw, req.params.chainId, req.params.hash)) as Record<string, unknown> | null;
      if (!t) return reply.code(404).send({ error: 'not found' });
      return reply.header('content-type', 'application/json').send(toJson(t));
    });
    bare.post<{ Body: InvoiceBody }>('/invoice', async (req, reply) => {
      const b = req.body;
      const v = { ...b, quantity: BigInt(b.quantity), price: BigInt(b.price), createdAt: new Date(b.createdAt) };
      const hash = invoiceHash(v);
      if (!verifySecp256k1(v.publicKey, hash, v.signature)) return reply.code(422).send({ error: 'bad signature' });
      const entry = {
        actor: { type: 'api_key' as const, id: 'bare' },
        action: 'tokens.invoice.create',
        domain: 'tokens',
        entity: 'invoice',
        entityId: hash,
        change: { details: { mintHash: v.mintHash, quantity: b.quantity, seller: v.sellerAddress } },
      };
      if (!(await rawCreateInvoice(raw, { ...v, hash }, entry))) return reply.code(409).send({ error: 'insufficient balance' });
      return reply.code(201).send({ hash, created: true });
    });
    await bare.listen({ host: '127.0.0.1', port: 0 });
    closers.push(() => bare.close());
    const portOf = (a: { server: { address(): unknown } }) => (a.server.address() as { port: number }).port;
    const cofferBase = `http://127.0.0.1:${portOf(app)}`;
    const bareBase = `http://127.0.0.1:${portOf(bare)}`;
    const keys = f.keys.slice(0, 20_000);
    // Enough distinct invoices that no run replays one (a replay takes another code path).
    const bodiesPerRun = Math.ceil(seconds * (s.smoke ? 2000 : 4000));
    // Smoke runs use the in-process generator (wrk cannot run for less than a second).
    const tool = !s.smoke && (await hasWrk()) ? 'wrk' : 'node';
    if (!s.smoke && tool === 'node') {
      // The fallback shares this process's CPU with both servers, which pulls the ratios towards 1.
      console.warn(
        '  http: wrk not found, using the in-process node:http generator; its figures are not comparable to a wrk run (apt-get install wrk)',
      );
    }

    const cases: { name: string; coffer: () => LoadSpec; raw: () => LoadSpec }[] = [
      {
        name: 'GET transaction by hash',
        coffer: () => ({
          url: cofferBase,
          method: 'GET',
          headers: { authorization: `Bearer ${apiKey}` },
          paths: keys.map((k) => `/v1/chains/${BENCH_CHAIN}/transactions/${k}`),
          connections,
          seconds,
        }),
        raw: () => ({ url: bareBase, method: 'GET', headers: {}, paths: keys.map((k) => `/tx/${BENCH_CHAIN}/${k}`), connections, seconds }),
      },
      {
        name: 'POST invoice',
        coffer: () => ({
          url: `${cofferBase}/v1/tokens/invoices`,
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          bodies: signedBodies(sellers, key, bodiesPerRun),
          connections,
          seconds,
        }),
        raw: () => ({
          url: `${bareBase}/invoice`,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          bodies: signedBodies(sellers, key, bodiesPerRun),
          connections,
          seconds,
        }),
      },
    ];
    for (const c of cases) {
      // Warm-up: a pass each (JIT, pools, prepared statements), long enough that a POST,
      // a few hundred a second, has run its code a thousand times before the first repetition.
      if (!s.smoke) {
        await load({ ...c.coffer(), seconds: 3 });
        await load({ ...c.raw(), seconds: 3 });
      }
      const cr: number[] = [];
      const rr: number[] = [];
      const lat = { c50: [] as number[], c99: [] as number[], r50: [] as number[], r99: [] as number[] };
      for (let rep = 0; rep < reps; rep++) {
        await f.bench.upkeep();
        const a = await load(c.coffer(), tool);
        await f.bench.upkeep();
        const b = await load(c.raw(), tool);
        if (a.errors || b.errors) throw new Error(`${c.name}: ${a.errors} Coffer and ${b.errors} bare responses were errors`);
        (cr.push(a.rps), rr.push(b.rps));
        (lat.c50.push(a.p50Ms), lat.c99.push(a.p99Ms), lat.r50.push(b.p50Ms), lat.r99.push(b.p99Ms));
      }
      const coffers = stat(cr);
      const raws = stat(rr);
      record({
        workload: 'http',
        case: c.name,
        backend,
        unit: 'req/s',
        higherIsBetter: true,
        coffer: coffers,
        raw: raws,
        ratio: ratioOf(coffers, raws, true),
        extra: {
          p50MsCoffer: stat(lat.c50).median,
          p99MsCoffer: stat(lat.c99).median,
          p50MsRaw: stat(lat.r50).median,
          p99MsRaw: stat(lat.r99).median,
          note: `${connections} connections, ${seconds} s per run, ${tool === 'wrk' ? 'wrk -t1' : 'node:http load generator'}`,
        },
        at: new Date().toISOString(),
      });
    }
  } finally {
    for (const c of closers.reverse()) await c().catch(() => {});
    await f.close();
  }
}
