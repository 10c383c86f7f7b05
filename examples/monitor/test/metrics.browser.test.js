'use strict';
/*
 * The /admin/metrics charts in headless Chromium (Debian's /usr/bin/chromium,
 * driven by playwright-core), over time: with the page open, runs of a type
 * of their own (metrics.demo, in a workspace of their own, so the other
 * tests' expectations stay as they are) are queued, then their tenant is
 * suspended and a claim blocks them all. The queue chart's line follows the
 * depth up and down, and the blocked chart gains a tenant_not_operable line
 * whose counter is the number blocked and whose rate was positive.
 * Screenshots: metrics-queued.png, metrics-blocked.png in SCREENSHOT_DIR.
 *
 * Environment: MONITOR_URL, SCREENSHOT_DIR, MONITOR_DB and the PG* variables
 * of a superuser for the changes (test/scripts/monitor_http.sh sets them).
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const pg = require('pg');
const { chromium } = require('playwright-core');

const BASE = process.env.MONITOR_URL;
const SHOTS = process.env.SCREENSHOT_DIR || path.join(__dirname, '..', '..', '..', 'results', 'screenshots');

test('metrics charts in headless Chromium follow queued and blocked runs', { timeout: 90000 }, async () => {
  assert.ok(BASE && process.env.MONITOR_DB, 'run through test/scripts/monitor_http.sh');
  fs.mkdirSync(SHOTS, { recursive: true });
  const db = new pg.Client({ database: process.env.MONITOR_DB });
  await db.connect();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'monitor-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 900 },
    timeout: 30000,
  });
  const requests = [];
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('request', (r) => requests.push(r.url()));
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

    const res = await page.goto(`${BASE}/admin/metrics`);
    assert.equal(res.status(), 200);
    await page.waitForFunction(() => Number(document.getElementById('status').dataset.samples) >= 2);

    // what the fixture left: one inventory.sync queued, one run blocked
    const queueLine = (op) => page.locator(`#queue-chart polyline[data-series="${op}"]`);
    const blockedLine = (reason) => page.locator(`#blocked-chart polyline[data-series="${reason}"]`);
    assert.equal(await queueLine('inventory.sync').getAttribute('data-last'), '1');
    assert.equal(await blockedLine('capability_missing').getAttribute('data-total'), '1');
    assert.match(await page.locator('#blocked-legend li[data-series="capability_missing"]').innerText(),
      /capability_missing.*1 in all/s);
    // every operation type has a line; reasons never met have none
    assert.equal(await page.locator('#queue-chart polyline').count(), 5);
    assert.equal(await blockedLine('prerequisite_unmet').count(), 0);

    // a workspace of its own, a type of its own: six runs queued
    await db.query(`
      INSERT INTO rungate.workspaces (id, name) VALUES (3, 'charts');
      INSERT INTO rungate.tenants (id, workspace_id, name) VALUES (30, 3, 'charts-main');
      INSERT INTO rungate.actors (id, name) VALUES (106, 'carla');
      INSERT INTO rungate.workspace_members VALUES (3, 106, 'owner');
      INSERT INTO rungate.tenant_members VALUES (30, 106, 'owner');
      INSERT INTO rungate.operation_types (name, capability, scope) VALUES ('metrics.demo', 'inventory.sync', 'tenant');
      SELECT count(rungate.enqueue('metrics.demo', 3, 30, 106)) FROM generate_series(1, 6);`);
    await page.waitForFunction(() => document.querySelector(
      '#queue-chart polyline[data-series="metrics.demo"]')?.dataset.last === '6');
    assert.equal(await page.locator('#queue-chart polyline').count(), 6);
    assert.match(await page.locator('#queue-legend li[data-series="metrics.demo"]').innerText(), /metrics\.demo\s*6/);
    await page.screenshot({ path: path.join(SHOTS, 'metrics-queued.png'), fullPage: true });

    // the tenant is suspended; a claim blocks the six: the depth falls to 0,
    // and tenant_not_operable gets a line: 6 in all, a positive rate on the way
    await db.query(`UPDATE rungate.tenants SET status = 'suspended' WHERE id = 30`);
    const claimed = await db.query(`SELECT count(*)::int AS n FROM rungate.claim('charts', '{metrics.demo}', 10)`);
    assert.equal(claimed.rows[0].n, 0);
    await page.waitForFunction(() => document.querySelector(
      '#blocked-chart polyline[data-series="tenant_not_operable"]')?.dataset.total === '6');
    await page.waitForFunction(() => document.querySelector(
      '#queue-chart polyline[data-series="metrics.demo"]')?.dataset.last === '0');
    const points = await blockedLine('tenant_not_operable').getAttribute('points');
    assert.ok(points.split(' ').length >= 1, 'the line has points');
    const peak = await page.evaluate(async () => {
      // the rates behind the line: the page's own data, recomputed from the samples
      const h = await (await fetch('/admin/metrics/history')).json();
      const totals = h.samples.map((s) => (s.blocked ? s.blocked.tenant_not_operable : null));
      let max = 0;
      for (let i = 1; i < totals.length; i++) {
        if (totals[i] !== null && totals[i - 1] !== null) max = Math.max(max, totals[i] - totals[i - 1]);
      }
      return max;
    });
    assert.equal(peak, 6, 'the six blocks fall between two samples');
    const y = await page.evaluate(() => {
      const pts = document.querySelector('#blocked-chart polyline[data-series="tenant_not_operable"]')
        .getAttribute('points').split(' ').map((p) => Number(p.split(',')[1]));
      return { min: Math.min(...pts), max: Math.max(...pts) };
    });
    assert.ok(y.min < y.max, 'the blocked line rises above zero and back');
    assert.match(await page.locator('#blocked-legend li[data-series="tenant_not_operable"]').innerText(),
      /tenant_not_operable.*6 in all/s);
    await page.screenshot({ path: path.join(SHOTS, 'metrics-blocked.png'), fullPage: true });

    assert.deepEqual(errors, [], 'no script errors');
    const foreign = requests.filter((u) => !u.startsWith(BASE));
    assert.deepEqual(foreign, [], 'nothing requested from another origin');
  } finally {
    await context.close();
    await db.end();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  for (const f of ['metrics-queued.png', 'metrics-blocked.png']) {
    assert.ok(fs.statSync(path.join(SHOTS, f)).size > 1000, `${f} written`);
  }
});
