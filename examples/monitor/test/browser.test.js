'use strict';
/*
 * The operations pages in headless Chromium (Debian's /usr/bin/chromium,
 * driven by playwright-core): the list shows the blocked badge, blocked and
 * failed look different, the blocked run's detail lists the deny check.
 * Screenshots go to SCREENSHOT_DIR (results/screenshots/):
 *   operations-list.png, operations-blocked-run.png, operations-failed-run.png
 * Environment as for http.test.js (test/scripts/monitor_http.sh sets it).
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const BASE = process.env.MONITOR_URL;
const R = JSON.parse(process.env.RUNS_JSON || '{}');
const SHOTS = process.env.SCREENSHOT_DIR || path.join(__dirname, '..', '..', '..', 'results', 'screenshots');

test('operations pages in headless Chromium', { timeout: 90000 }, async () => {
  assert.ok(BASE && R.blocked, 'run through test/scripts/monitor_http.sh');
  fs.mkdirSync(SHOTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'monitor-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    // the stand-in for the application's session: olivia in workspace 1
    extraHTTPHeaders: { 'X-Viewer-Id': '100', 'X-Workspace-Id': '1' },
    timeout: 30000,
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(15000);

    // the list: the blocked badge and the failed badge, styled apart
    const res = await page.goto(`${BASE}/admin/operations`);
    assert.equal(res.status(), 200);
    const blockedRow = page.locator(`tr[data-run="${R.blocked}"]`);
    const failedRow = page.locator(`tr[data-run="${R.failed}"]`);
    const blockedBadge = blockedRow.locator('.badge-blocked');
    const failedBadge = failedRow.locator('.badge-failed');
    assert.ok(await blockedBadge.isVisible(), 'the blocked badge is shown');
    assert.equal((await blockedBadge.innerText()).trim(), 'Blocked');
    assert.ok(await failedBadge.isVisible(), 'the failed badge is shown');
    assert.match(await blockedRow.innerText(), /capability_missing/);
    assert.match(await failedRow.innerText(), /provider timeout/);
    const look = (loc) => loc.evaluate((el) => {
      const s = getComputedStyle(el);
      return `${s.backgroundColor} ${s.color} ${s.borderStyle}`;
    });
    const blockedLook = await look(blockedBadge);
    const failedLook = await look(failedBadge);
    assert.notEqual(blockedLook, failedLook, 'blocked and failed badges look different');
    await page.screenshot({ path: path.join(SHOTS, 'operations-list.png'), fullPage: true });

    // follow the link to the blocked run: its reason and deny check
    await blockedRow.locator('a').first().click();
    await page.waitForURL(`**/admin/operations/${R.blocked}`);
    const panel = page.locator('#blocked');
    assert.ok(await panel.isVisible(), 'the blocked panel is shown');
    assert.match(await panel.innerText(), /capability_missing/);
    const failedCheck = panel.locator('ol.deny-check li.failed');
    assert.equal(await failedCheck.count(), 1);
    assert.match(await failedCheck.innerText(), /capability_missing\s+FAILED/);
    assert.ok(await page.locator('.badge-blocked').first().isVisible());
    assert.equal(await page.locator('#failed').count(), 0);
    await page.screenshot({ path: path.join(SHOTS, 'operations-blocked-run.png'), fullPage: true });

    // the failed run, for comparison
    await page.goto(`${BASE}/admin/operations/${R.failed}`);
    assert.ok(await page.locator('#failed').isVisible());
    assert.equal(await page.locator('#blocked').count(), 0);
    await page.screenshot({ path: path.join(SHOTS, 'operations-failed-run.png'), fullPage: true });

    // the status filter through the form
    await page.goto(`${BASE}/admin/operations`);
    await page.selectOption('select[name="status"]', 'blocked');
    await Promise.all([page.waitForURL(/status=blocked/), page.click('button[type="submit"]')]);
    assert.deepEqual(await page.locator('tr.run').evaluateAll((trs) => trs.map((t) => Number(t.dataset.run))),
      [R.blocked]);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  for (const f of ['operations-list.png', 'operations-blocked-run.png', 'operations-failed-run.png']) {
    assert.ok(fs.statSync(path.join(SHOTS, f)).size > 1000, `${f} written`);
  }
});
