'use strict';
/*
 * Real HTTP requests against a running examples/monitor server, set up by
 * test/scripts/monitor_http.sh over the shared fixture (test/fixtures/seed.sql):
 *
 *   MONITOR_URL           the server, connected as a role that may only
 *                         execute rungate.operations / rungate.operation
 *   MONITOR_NOGRANTS_URL  the same server as a role that may not execute them
 *   RUNS_JSON             {"blocked", "failed", "succeeded", "system",
 *                          "other_tenant", "other_workspace"}: run ids
 *
 * Fixture viewers: 100 olivia (owner of ws 1 and tenants 10, 11, 12),
 * 101 oscar (operator of ws 1; his tenant 10 role was demoted to auditor),
 * 102 rita (readonly: in scope, no operations.view), 103 gus (ws 2 only),
 * 104 dora (disabled), 105 ada (auditor of ws 1 and tenant 10).
 */
const test = require('node:test');
const assert = require('node:assert/strict');

const BASE = process.env.MONITOR_URL;
const NOGRANTS = process.env.MONITOR_NOGRANTS_URL;
const R = JSON.parse(process.env.RUNS_JSON || '{}');
assert.ok(BASE && NOGRANTS && R.blocked, 'run through test/scripts/monitor_http.sh');

const OLIVIA = 100; const OSCAR = 101; const RITA = 102; const GUS = 103;
const DORA = 104; const ADA = 105; const NOBODY = 999999;

async function get(path, { viewer, workspace = 1, json = true, headers = {}, base = BASE, method = 'GET' } = {}) {
  const h = { ...headers };
  if (viewer !== undefined) h['X-Viewer-Id'] = String(viewer);
  if (workspace !== null) h['X-Workspace-Id'] = String(workspace);
  if (json && !h.Accept) h.Accept = 'application/json';
  const res = await fetch(base + path, { method, headers: h, redirect: 'manual' });
  const text = await res.text();
  const type = res.headers.get('content-type') || '';
  return { status: res.status, type, text, body: type.startsWith('application/json') ? JSON.parse(text) : null };
}

const ids = (body) => body.runs.map((r) => r.run_id);

// ---------------------------------------------------------------- who sees what (docs/guarantees.md#monitoring)

test('list: viewers with operations.view get 200 and exactly the runs in their scope, newest first', async () => {
  const cases = [
    // owner of the workspace and of tenants 10 and 11
    [OLIVIA, 1, [R.other_tenant, R.system, R.succeeded, R.failed, R.blocked]],
    // operator of the workspace, auditor of tenant 10: no tenant 11 run
    [OSCAR, 1, [R.system, R.succeeded, R.failed, R.blocked]],
    // auditor: operations.view only
    [ADA, 1, [R.system, R.succeeded, R.failed, R.blocked]],
    // another workspace's owner, in his own workspace
    [GUS, 2, [R.other_workspace]],
  ];
  for (const [viewer, workspace, want] of cases) {
    const r = await get('/admin/operations', { viewer, workspace });
    assert.equal(r.status, 200, `viewer ${viewer}: ${r.text}`);
    assert.deepEqual(ids(r.body), want, `viewer ${viewer} in workspace ${workspace}`);
    assert.equal(r.body.viewer_id, viewer);
    assert.equal(r.body.workspace_id, workspace);
    assert.equal(r.body.next_before, null);
  }
});

test('list: the 404/403 table (RG404 -> 404, RG403 -> 403)', async () => {
  const rows = [
    // [what, viewer, workspace, query, status, message]
    ['unknown viewer', NOBODY, 1, '', 404, 'workspace 1 not found'],
    ['disabled viewer', DORA, 1, '', 404, 'workspace 1 not found'],
    ['outsider (member of another workspace only)', GUS, 1, '', 404, 'workspace 1 not found'],
    ['unknown workspace', OLIVIA, 99, '', 404, 'workspace 99 not found'],
    ['no membership on the filtered tenant', OSCAR, 1, '?tenant=11', 404, 'tenant 11 not found'],
    ['tenant of another workspace', OLIVIA, 1, '?tenant=20', 404, 'tenant 20 not found'],
    ['nonexistent tenant', OLIVIA, 1, '?tenant=99', 404, 'tenant 99 not found'],
    ['in scope, role without operations.view', RITA, 1, '', 403, null],
    ['in scope of the tenant, role without operations.view', RITA, 1, '?tenant=10', 403, null],
  ];
  for (const [what, viewer, workspace, query, status, message] of rows) {
    for (const json of [true, false]) {
      const r = await get(`/admin/operations${query}`, { viewer, workspace, json });
      assert.equal(r.status, status, `${what} (${json ? 'JSON' : 'HTML'}): ${r.text.slice(0, 200)}`);
      if (json) {
        assert.deepEqual(Object.keys(r.body), ['error']);
        assert.equal(r.body.error.status, status);
        assert.equal(r.body.error.code, status === 404 ? 'RG404' : 'RG403', what);
        if (message) assert.equal(r.body.error.message, message, what);
      } else {
        assert.match(r.type, /^text\/html/);
        assert.match(r.text, status === 404 ? /404 Not found/ : /403 Forbidden/);
        assert.doesNotMatch(r.text, /<table class="runs"/, `${what}: no runs on an error page`);
      }
    }
  }
});

test('list: in scope with operations.view on a tenant filter is 200', async () => {
  const r = await get('/admin/operations?tenant=10', { viewer: ADA });
  assert.equal(r.status, 200);
  assert.deepEqual(ids(r.body), [R.succeeded, R.failed, R.blocked]);
  const o = await get('/admin/operations?tenant=11', { viewer: OLIVIA });
  assert.deepEqual(ids(o.body), [R.other_tenant]);
});

test('detail: the 404/403 table (RG404 -> 404, RG403 -> 403)', async () => {
  const rows = [
    ['nonexistent run', OLIVIA, 999999, 404],
    ['unknown viewer', NOBODY, R.blocked, 404],
    ['disabled viewer', DORA, R.blocked, 404],
    ['outsider', GUS, R.blocked, 404],
    ['outsider, workspace run', GUS, R.system, 404],
    ['no membership on the run\'s tenant', OSCAR, R.other_tenant, 404],
    ['no membership on the run\'s tenant (auditor)', ADA, R.other_tenant, 404],
    ['no membership on the run\'s tenant, no operations.view either', RITA, R.other_tenant, 404],
    ['in scope, tenant role without operations.view', RITA, R.blocked, 403],
    ['in scope, workspace role without operations.view', RITA, R.system, 403],
    ['another workspace\'s viewer on our run', GUS, R.failed, 404],
    ['our viewer on another workspace\'s run', OLIVIA, R.other_workspace, 404],
  ];
  for (const [what, viewer, run, status] of rows) {
    for (const json of [true, false]) {
      const r = await get(`/admin/operations/${run}`, { viewer, json });
      assert.equal(r.status, status, `${what} (${json ? 'JSON' : 'HTML'}): ${r.text.slice(0, 200)}`);
      if (json) {
        assert.equal(r.body.error.code, status === 404 ? 'RG404' : 'RG403', what);
        // outside scope and nonexistent are indistinguishable
        if (status === 404) assert.equal(r.body.error.message, `run ${run} not found`, what);
      } else {
        assert.doesNotMatch(r.text, /Audit trail/, `${what}: nothing of the run on an error page`);
      }
    }
  }
});

test('detail: viewers with operations.view get 200', async () => {
  const rows = [
    [OLIVIA, R.blocked], [OSCAR, R.blocked], [ADA, R.blocked], [OLIVIA, R.other_tenant],
    [OSCAR, R.system], [ADA, R.failed], [GUS, R.other_workspace],
  ];
  for (const [viewer, run] of rows) {
    const r = await get(`/admin/operations/${run}`, { viewer });
    assert.equal(r.status, 200, `viewer ${viewer} run ${run}: ${r.text}`);
    assert.equal(r.body.run.run_id, run);
  }
});

// ---------------------------------------------------------------- JSON shapes

const SUMMARY = ['run_id', 'workspace_id', 'tenant_id', 'operation', 'authority', 'initiator_id',
  'status', 'reason_code', 'reason_category', 'reason_message', 'error', 'attempt', 'parent_id',
  'created_at', 'started_at', 'finished_at'];
const DETAIL = SUMMARY.concat(['payload', 'result', 'items', 'audit', 'waiting']);
const AUDIT = ['id', 'at', 'run_id', 'workspace_id', 'tenant_id', 'attempt', 'event', 'authority',
  'actor_id', 'decision', 'reason_code', 'reason_category', 'checks', 'worker', 'txid'];

test('JSON shapes: list, detail, audit rows, errors', async () => {
  const l = await get('/admin/operations', { viewer: OLIVIA });
  assert.match(l.type, /^application\/json; charset=utf-8$/);
  assert.deepEqual(Object.keys(l.body), ['viewer_id', 'workspace_id', 'filters', 'runs', 'next_before']);
  assert.deepEqual(l.body.filters, { status: null, tenant_id: null, before_id: null });
  for (const run of l.body.runs) {
    assert.deepEqual(Object.keys(run), SUMMARY);
    assert.equal(typeof run.run_id, 'number');
    assert.equal(typeof run.attempt, 'number');
    assert.ok(!Number.isNaN(Date.parse(run.created_at)), 'created_at is a timestamp');
  }
  const d = await get(`/admin/operations/${R.blocked}`, { viewer: OLIVIA });
  assert.deepEqual(Object.keys(d.body), ['run']);
  assert.deepEqual(Object.keys(d.body.run), DETAIL);
  assert.ok(Array.isArray(d.body.run.audit));
  for (const a of d.body.run.audit) assert.deepEqual(Object.keys(a).sort(), [...AUDIT].sort());
  assert.equal(d.body.run.items, null, 'not a bulk parent');
  const e = await get('/admin/operations/999999', { viewer: OLIVIA });
  assert.deepEqual(e.body, { error: { status: 404, code: 'RG404', message: 'run 999999 not found' } });
});

// ---------------------------------------------------------------- blocked vs failed (docs/guarantees.md#blocked-not-failed)

test('blocked run: reason code, category and message; the deny check in its audit trail; never started', async () => {
  const { body: { run } } = await get(`/admin/operations/${R.blocked}`, { viewer: OLIVIA });
  assert.equal(run.status, 'blocked');
  assert.equal(run.reason_code, 'capability_missing');
  assert.equal(run.reason_category, 'capability');
  assert.equal(run.reason_message, 'role auditor of actor 101 does not grant capability inventory.sync');
  assert.equal(run.error, null);
  assert.equal(run.started_at, null);
  assert.equal(run.attempt, 0);
  assert.equal(run.authority, 'actor');
  assert.equal(run.initiator_id, OSCAR);
  assert.deepEqual(run.audit.map((a) => a.event), ['dispatched', 'execution_blocked']);
  const deny = run.audit[1];
  assert.equal(deny.decision, 'deny');
  assert.equal(deny.reason_code, 'capability_missing');
  assert.equal(deny.worker, 'monitor-worker');
  assert.deepEqual(deny.checks.filter((c) => !c.passed).map((c) => c.code), ['capability_missing']);
  assert.equal(run.audit[0].decision, 'allow', 'it was allowed at dispatch');
});

test('failed run: its error, no reason', async () => {
  const { body: { run } } = await get(`/admin/operations/${R.failed}`, { viewer: OLIVIA });
  assert.equal(run.status, 'failed');
  assert.equal(run.error, 'provider timeout: inventory API answered 504 three times');
  assert.equal(run.reason_code, null);
  assert.equal(run.reason_category, null);
  assert.notEqual(run.started_at, null);
  assert.deepEqual(run.audit.map((a) => a.event), ['dispatched', 'started', 'failed']);
});

test('system run and succeeded run', async () => {
  const { body: { run } } = await get(`/admin/operations/${R.system}`, { viewer: ADA });
  assert.equal(run.authority, 'system');
  assert.equal(run.initiator_id, null);
  assert.equal(run.tenant_id, null);
  assert.equal(run.status, 'succeeded');
  assert.deepEqual(run.result, { rows: 42 });
  assert.deepEqual([...new Set(run.audit.map((a) => a.authority))], ['system']);
  const s = await get(`/admin/operations/${R.succeeded}`, { viewer: OLIVIA });
  assert.equal(s.body.run.status, 'succeeded');
  assert.deepEqual(s.body.run.result, { verified: true });
});

/* The <tr> of each run in the list page, keyed by run id. */
function rowsOf(html) {
  const out = {};
  for (const m of html.matchAll(/<tr class="run run-([a-z_]+)" data-run="(\d+)">([\s\S]*?)<\/tr>/g)) {
    out[Number(m[2])] = { status: m[1], html: m[3] };
  }
  return out;
}

test('HTML: blocked and failed runs are presented differently', async () => {
  const l = await get('/admin/operations', { viewer: OLIVIA, json: false });
  assert.equal(l.status, 200);
  assert.match(l.type, /^text\/html; charset=utf-8$/);
  const rows = rowsOf(l.text);
  assert.deepEqual(Object.keys(rows).map(Number).sort((a, b) => a - b),
    [R.blocked, R.failed, R.succeeded, R.system, R.other_tenant].sort((a, b) => a - b));
  const b = rows[R.blocked]; const f = rows[R.failed];
  assert.equal(b.status, 'blocked');
  assert.match(b.html, /class="badge badge-blocked"[^>]*>Blocked</);
  assert.match(b.html, /<code>capability_missing<\/code>/);
  assert.match(b.html, /class="category">capability</);
  assert.match(b.html, /role auditor of actor 101 does not grant capability inventory\.sync/);
  assert.doesNotMatch(b.html, /badge-failed|class="error"/);
  assert.equal(f.status, 'failed');
  assert.match(f.html, /class="badge badge-failed"[^>]*>Failed</);
  assert.match(f.html, /class="error"><span class="kind">Error<\/span> <code>provider timeout: inventory API answered 504 three times<\/code>/);
  assert.doesNotMatch(f.html, /badge-blocked|class="reason"/);
  assert.match(rows[R.system].html, /<span class="system">system<\/span>/);
  // the two badges are styled apart
  const css = (name) => (l.text.match(new RegExp(`\\.badge-${name}\\{([^}]*)\\}`)) || [])[1];
  assert.ok(css('blocked') && css('failed') && css('blocked') !== css('failed'));

  const bd = await get(`/admin/operations/${R.blocked}`, { viewer: OLIVIA, json: false });
  assert.match(bd.text, /<section class="panel panel-blocked" id="blocked">/);
  assert.match(bd.text, /<ol class="checks deny-check">/);
  assert.match(bd.text, /<li class="failed"><code>capability_missing<\/code> FAILED<\/li>/);
  assert.match(bd.text, /audit event execution_blocked/);
  assert.doesNotMatch(bd.text, /class="panel panel-failed"/);
  const fd = await get(`/admin/operations/${R.failed}`, { viewer: OLIVIA, json: false });
  assert.match(fd.text, /<section class="panel panel-failed" id="failed">/);
  assert.match(fd.text, /<pre>provider timeout: inventory API answered 504 three times<\/pre>/);
  assert.doesNotMatch(fd.text, /class="panel panel-blocked"|class="checks deny-check"/);
});

// ---------------------------------------------------------------- query parameters

test('list filters: status, tenant, before', async () => {
  const cases = [
    ['?status=blocked', [R.blocked]],
    ['?status=failed', [R.failed]],
    ['?status=queued', [R.other_tenant]],
    ['?tenant=10', [R.succeeded, R.failed, R.blocked]],
    ['?status=succeeded&tenant=10', [R.succeeded]],
    [`?before=${R.succeeded}`, [R.failed, R.blocked]],
    [`?tenant=10&before=${R.failed}`, [R.blocked]],
    ['?status=cancelled', []],
    ['?status=&tenant=&before=', [R.other_tenant, R.system, R.succeeded, R.failed, R.blocked]],
  ];
  for (const [query, want] of cases) {
    const r = await get(`/admin/operations${query}`, { viewer: OLIVIA });
    assert.equal(r.status, 200, `${query}: ${r.text}`);
    assert.deepEqual(ids(r.body), want, query);
  }
  const f = await get(`/admin/operations?status=blocked&tenant=10&before=${R.system}`, { viewer: OLIVIA });
  assert.deepEqual(f.body.filters, { status: 'blocked', tenant_id: 10, before_id: R.system });
  const h = await get('/admin/operations?status=cancelled', { viewer: OLIVIA, json: false });
  assert.match(h.text, /No runs match\./);
  assert.match(h.text, /<option value="cancelled" selected>/);
});

test('RG400 -> 400, malformed requests -> 400', async () => {
  const rg400 = [
    ['/admin/operations?status=bogus', 'invalid status "bogus"'],
    ['/admin/operations?before=0', 'before_id must be positive, not 0'],
  ];
  for (const [path, message] of rg400) {
    const r = await get(path, { viewer: OLIVIA });
    assert.deepEqual(r.body, { error: { status: 400, code: 'RG400', message } }, path);
  }
  const malformed = [
    ['/admin/operations', {}],                                     // no viewer
    ['/admin/operations', { viewer: 'abc' }],
    ['/admin/operations', { viewer: '-1' }],
    ['/admin/operations', { viewer: '99999999999999999999' }],     // beyond bigint
    ['/admin/operations', { viewer: OLIVIA, workspace: null }],    // no workspace
    ['/admin/operations?tenant=x', { viewer: OLIVIA }],
    ['/admin/operations?before=1.5', { viewer: OLIVIA }],
    ['/admin/operations/abc', { viewer: OLIVIA }],
    [`/admin/operations/${R.blocked}`, {}],
  ];
  for (const [path, opts] of malformed) {
    const r = await get(path, opts);
    assert.equal(r.status, 400, `${path} ${JSON.stringify(opts)}: ${r.text}`);
    assert.equal(r.body.error.code, null);
  }
});

test('anything but RG400/RG403/RG404 is 500, and its details stay in the log', async () => {
  // this instance's role may not execute rungate.operation(s): 42501
  for (const path of ['/admin/operations', `/admin/operations/${R.blocked}`]) {
    const r = await get(path, { viewer: OLIVIA, base: NOGRANTS });
    assert.deepEqual(r.body, { error: { status: 500, code: null, message: 'internal error' } });
    const h = await get(path, { viewer: OLIVIA, base: NOGRANTS, json: false });
    assert.equal(h.status, 500);
    assert.doesNotMatch(h.text, /permission|denied|rungate\./);
  }
});

test('content negotiation: HTML by default, JSON by Accept or ?format=json', async () => {
  const html = await get('/admin/operations', { viewer: OLIVIA, json: false });
  assert.match(html.type, /^text\/html/);
  assert.match(html.text, /^<!doctype html>/);
  const browser = await get('/admin/operations', {
    viewer: OLIVIA, json: false,
    headers: { Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' },
  });
  assert.match(browser.type, /^text\/html/);
  const viaQuery = await get('/admin/operations?format=json', { viewer: OLIVIA, json: false });
  assert.match(viaQuery.type, /^application\/json/);
  assert.equal(viaQuery.body.runs.length, 5);
  const err = await get('/admin/operations/999999?format=json', { viewer: OLIVIA, json: false });
  assert.equal(err.body.error.code, 'RG404');
  for (const r of [html, viaQuery]) assert.ok(r.text.length > 0);
});

test('HTTP odds and ends: unknown path 404, other methods 405, headers', async () => {
  const nf = await get('/admin/nothing', { viewer: OLIVIA });
  assert.equal(nf.status, 404);
  assert.equal(nf.body.error.code, null, 'not a rungate answer');
  const post = await get('/admin/operations', { viewer: OLIVIA, method: 'POST' });
  assert.equal(post.status, 405);
  const res = await fetch(`${BASE}/admin/operations`, { headers: { 'X-Viewer-Id': '100', 'X-Workspace-Id': '1' } });
  await res.text();
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.match(res.headers.get('content-security-policy'), /default-src 'none'/);
  assert.match(res.headers.get('vary'), /X-Viewer-Id/);
});

test('listens on 127.0.0.1 only', async () => {
  const port = new URL(BASE).port;
  assert.equal(new URL(BASE).hostname, '127.0.0.1');
  // another loopback address reaches the same machine but not this socket
  await assert.rejects(fetch(`http://127.0.0.2:${port}/admin/operations`));
});

// ---------------------------------------------------------------- metrics: /metrics, the samples

test('/metrics: rungate.metrics_text() in the Prometheus text format, as the monitoring role', async () => {
  const res = await fetch(`${BASE}/metrics`);
  const text = await res.text();
  assert.equal(res.status, 200, text.slice(0, 200));
  assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  for (const [family, type] of [['rungate_runs', 'gauge'], ['rungate_queue_lag_seconds', 'gauge'],
    ['rungate_transitions_total', 'counter'], ['rungate_blocked_total', 'counter'],
    ['rungate_claim_duration_seconds', 'histogram']]) {
    assert.match(text, new RegExp(`^# HELP ${family} \\S`, 'm'), family);
    assert.match(text, new RegExp(`^# TYPE ${family} ${type}$`, 'm'), family);
  }
  const lines = text.split('\n');
  // the fixture's runs: one inventory.sync queued (workspace 2), one provider
  // check queued (tenant 11), the revoked run blocked (capability_missing)
  assert.ok(lines.includes('rungate_runs{status="queued",operation="inventory.sync"} 1'));
  assert.ok(lines.includes('rungate_runs{status="queued",operation="provider.connection.verify"} 1'));
  assert.ok(lines.includes('rungate_runs{status="running",operation="restore.execute"} 0'), 'zeros too');
  assert.ok(lines.includes('rungate_blocked_total{reason_code="capability_missing"} 1'));
  assert.ok(lines.includes('rungate_transitions_total{event="failed",operation="inventory.sync"} 1'));
  assert.ok(lines.some((l) => /^rungate_claim_duration_seconds_bucket\{le="\+Inf"\} [1-9]/.test(l)));
  assert.equal(lines[lines.length - 1], '', 'ends with a newline');
});

test('/metrics: a role without EXECUTE on the metrics gets 500, details in the log only', async () => {
  const res = await fetch(`${NOGRANTS}/metrics`, { headers: { Accept: 'application/json' } });
  assert.equal(res.status, 500);
  const body = await res.json();
  assert.deepEqual(body, { error: { status: 500, code: null, message: 'internal error' } });
});

test('/admin/metrics/history: the samples behind the charts', async () => {
  let body;
  for (let i = 0; i < 50; i++) {   // sampled every 200 ms (METRICS_INTERVAL_MS)
    const res = await fetch(`${BASE}/admin/metrics/history`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/json/);
    body = await res.json();
    if (body.samples.length >= 2) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(body.interval_ms, 200);
  assert.ok(body.samples.length >= 2, 'two samples within 5 s');
  const last = body.samples[body.samples.length - 1];
  assert.deepEqual(Object.keys(last), ['at', 'queued', 'running', 'blocked']);
  assert.ok(!Number.isNaN(Date.parse(last.at)));
  assert.equal(last.queued['provider.connection.verify'], 1);
  assert.equal(last.running['restore.execute'], 0);
  assert.equal(last.blocked.capability_missing, 1);
  assert.equal(last.blocked.prerequisite_unmet, 0);
  const none = await fetch(`${NOGRANTS}/admin/metrics/history`, { headers: { Accept: 'application/json' } });
  assert.equal(none.status, 500);
});

test('/admin/metrics: the chart page and its script, same origin only', async () => {
  const res = await fetch(`${BASE}/admin/metrics`);
  const html = await res.text();
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/html/);
  assert.match(res.headers.get('content-security-policy'), /script-src 'self'/);
  assert.match(res.headers.get('content-security-policy'), /connect-src 'self'/);
  assert.match(html, /<svg id="queue-chart"/);
  assert.match(html, /<svg id="blocked-chart"/);
  assert.match(html, /<script src="\/admin\/metrics\.js"><\/script>/);
  assert.doesNotMatch(html, /https?:\/\/(?!127\.0\.0\.1)[a-z]/i, 'nothing from another host');
  const js = await fetch(`${BASE}/admin/metrics.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  const source = (await js.text()).replaceAll('http://www.w3.org/2000/svg', 'SVG-NAMESPACE');
  assert.doesNotMatch(source, /https?:\/\//, 'the script loads nothing from elsewhere');
  assert.deepEqual([...source.matchAll(/fetch\('([^']*)'/g)].map((m) => m[1]), ['/admin/metrics/history']);
  const post = await fetch(`${BASE}/metrics`, { method: 'POST' });
  assert.equal(post.status, 405);
});
