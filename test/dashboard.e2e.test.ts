/// <reference lib="dom" />
// The operator dashboard in a real browser (Debian's headless Chromium driven by
// playwright-core): it loads, connects with a read key, shows a chain, sees the height change
// after a block is ingested through the API, and saves a screenshot; chain ids that name
// Object members do not break it, a lagging chain shows in the warning colour, and a chain
// database that stops answering is named while the other chains stay on the page.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { after, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { forEachBackend, type TestDatabase } from './harness.js';
import { sideChainRouter, testService, type TestService } from './service-support.js';

const CHROMIUM = '/usr/bin/chromium';
const mustRun = process.env.CI === 'true';
const skip = !existsSync(CHROMIUM) && !mustRun ? `${CHROMIUM} not installed (apt-get install chromium)` : false;

const launch = () =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });

function block(height: number) {
  const hex = (n: number) => n.toString(16).padStart(64, '0');
  return {
    height: String(height),
    hash: hex(height + 1),
    parentHash: height === 0 ? '0'.repeat(64) : hex(height),
    time: new Date(Date.UTC(2026, 0, 1, 0, height)).toISOString(),
    transactions: [{ txHash: hex(1000 + height), indexInBlock: 0, outputs: [{ address: 'DAddr', value: '100000000' }] }],
  };
}

/**
 * Serves `svc` on a free loopback port, opens the dashboard in `browser` and connects with
 * `viewer`'s key; page errors are collected in `errors` (a test ends asserting it is empty).
 */
async function openDashboard(
  browser: Browser,
  svc: TestService,
  viewer: { authorization: string },
  viewport?: { width: number; height: number },
): Promise<{ page: Page; errors: string[] }> {
  const address = await svc.app.listen({ host: '127.0.0.1', port: 0 });
  const page = await browser.newPage(viewport ? { viewport } : {});
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(address);
  assert.equal(await page.title(), 'Coffer dashboard');
  await page.fill('#key', viewer.authorization.replace('Bearer ', ''));
  await page.click('#connect');
  return { page, errors };
}

forEachBackend(
  'dashboard in a browser',
  (ctx) => {
    const extra: TestDatabase[] = [];
    after(async () => {
      for (const d of extra) await d.drop();
    });

    test('loads, connects with a read key, shows live chain height, and saves a screenshot', { skip }, async () => {
      const coffer = await ctx.open();
      const svc = await testService(coffer);
      const admin = await svc.key(['chain:admin']);
      const viewer = await svc.key(['chain:read', 'core:read', 'audit:read']);
      assert.equal(
        (await svc.call('POST', '/v1/chains', admin, { chainId: 'doge', name: 'Dogecoin', network: 'mainnet', confirmations: 6 }))
          .statusCode,
        201,
      );
      assert.equal((await svc.call('POST', '/v1/chains/doge/blocks', admin, block(0))).statusCode, 200);
      await svc.call('PUT', '/v1/chains/doge/latest-height', admin, { height: '12' });
      // The browser starts before the server listens: if it cannot start, nothing is left open.
      const browser = await launch();
      try {
        const { page, errors } = await openDashboard(browser, svc, viewer, { width: 1400, height: 1000 });
        const heightCell = page.locator('#chains tbody tr', { hasText: 'doge' }).locator('td').nth(1);
        await heightCell.waitFor({ timeout: 10_000 });
        assert.equal(await heightCell.textContent(), '0');
        assert.equal(await page.locator('#chains tbody tr', { hasText: 'doge' }).locator('td').nth(3).textContent(), '12');
        // A block arrives through the API; the page picks it up on its next refresh.
        assert.equal((await svc.call('POST', '/v1/chains/doge/blocks', admin, block(1))).statusCode, 200);
        await page.waitForFunction(() => document.querySelector('#chains tbody tr td:nth-child(2)')?.textContent === '1', undefined, {
          timeout: 10_000,
        });
        assert.match((await page.locator('#meta').textContent()) ?? '', /SQLite/);
        assert.match((await page.locator('#migrations').textContent()) ?? '', /chain\/0002_init/);
        assert.match((await page.locator('#audit-head').textContent()) ?? '', /verified length|not available/);
        assert.doesNotMatch((await page.locator('main').textContent()) ?? '', /\[object Object\]|undefined|NaN/);
        assert.deepEqual(errors, []);
        mkdirSync('test-artifacts', { recursive: true });
        await page.screenshot({ path: 'test-artifacts/dashboard.png', fullPage: true });
        assert.ok(existsSync('test-artifacts/dashboard.png'));
        // A key without read scope is turned back to the login form.
        const chainOnly = await svc.key(['chain:read']);
        await page.evaluate((k) => sessionStorage.setItem('coffer.key', k), chainOnly.authorization.replace('Bearer ', ''));
        await page.waitForSelector('#login:not([hidden])', { timeout: 10_000 });
        assert.match((await page.locator('#error').textContent()) ?? '', /lacks the read scope on core/);
      } finally {
        await browser.close();
        await svc.app.close();
      }
    });

    test('chain ids named like Object members keep refreshing, and a lagging chain is coloured as lagging', { skip }, async () => {
      const coffer = await ctx.open();
      const svc = await testService(coffer);
      const admin = await svc.key(['chain:admin']);
      const viewer = await svc.key(['chain:read', 'core:read']);
      for (const chainId of ['constructor', 'toString']) {
        const r = await svc.call('POST', '/v1/chains', admin, { chainId, name: chainId, network: 'mainnet', confirmations: 6 });
        assert.equal(r.statusCode, 201, r.body);
        assert.equal((await svc.call('POST', `/v1/chains/${chainId}/blocks`, admin, block(0))).statusCode, 200);
      }
      // constructor is 12 blocks behind (over the page's threshold of 6), toString 2.
      await svc.call('PUT', '/v1/chains/constructor/latest-height', admin, { height: '12' });
      await svc.call('PUT', '/v1/chains/toString/latest-height', admin, { height: '2' });
      const browser = await launch();
      try {
        const { page, errors } = await openDashboard(browser, svc, viewer);
        const lagCell = (chainId: string) => page.locator('#chains tbody tr', { hasText: chainId }).locator('td').nth(3);
        await lagCell('constructor').waitFor({ timeout: 10_000 });
        assert.equal(await lagCell('constructor').getAttribute('class'), 'num bad');
        assert.equal(await lagCell('toString').getAttribute('class'), 'num ok');
        assert.equal(await lagCell('constructor').evaluate((td) => getComputedStyle(td).color), 'rgb(240, 113, 120)');
        // Later refreshes still run (the first used to throw on a chain named "constructor").
        assert.equal((await svc.call('POST', '/v1/chains/constructor/blocks', admin, block(1))).statusCode, 200);
        await page.waitForFunction(
          () =>
            Array.from(document.querySelectorAll('#chains tbody tr')).some(
              (tr) => tr.children[0]?.textContent === 'constructor' && tr.children[1]?.textContent === '1',
            ),
          undefined,
          { timeout: 10_000 },
        );
        assert.equal(await page.locator('#lag-plot path').count(), 2);
        assert.deepEqual(errors, []);
      } finally {
        await browser.close();
        await svc.app.close();
      }
    });

    test('a chain database that stops answering is named above the chains, and the chains of the others stay', { skip }, async () => {
      const { def, router, cut } = await sideChainRouter(ctx, extra, { cuttable: true });
      const svc = await testService(def, { chains: router });
      const browser = await launch().catch(async (e: unknown) => {
        await router.close();
        throw e;
      });
      try {
        const admin = await svc.key(['chain:admin']);
        const viewer = await svc.key(['chain:read', 'core:read']);
        for (const chainId of ['main', 'side']) {
          const r = await svc.call('POST', '/v1/chains', admin, { chainId, name: chainId, network: 'mainnet', confirmations: 6 });
          assert.equal(r.statusCode, 201, r.body);
        }
        const { page, errors } = await openDashboard(browser, svc, viewer);
        await page.locator('#chains tbody tr', { hasText: 'side' }).waitFor({ timeout: 10_000 });
        assert.equal(await page.locator('#chains-unavailable').textContent(), '');

        await cut();
        await page.waitForFunction(() => document.querySelector('#chains-unavailable')?.textContent !== '', undefined, { timeout: 10_000 });
        assert.equal(await page.locator('#chains-unavailable').textContent(), 'chain:side: database unreachable, its chains are not shown');
        assert.equal(await page.locator('#chains-unavailable').evaluate((el) => getComputedStyle(el).color), 'rgb(240, 113, 120)');
        assert.deepEqual(await page.locator('#chains tbody tr td:first-child').allTextContents(), ['main']);
        assert.equal(await page.locator('#error').textContent(), '', 'the page keeps working');
        assert.deepEqual(errors, []);
      } finally {
        await browser.close();
        await svc.app.close();
        await router.close();
      }
    });
  },
  ['sqlite'],
);
