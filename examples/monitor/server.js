'use strict';
/*
 * examples/monitor/server.js: rungate's operations surfaces over HTTP.
 *
 *   GET /admin/operations           rungate.operations(viewer, workspace, status, tenant, page, before)
 *   GET /admin/operations/{run}     rungate.operation(viewer, run)
 *   GET /metrics                    rungate.metrics_text(): Prometheus's text format
 *   GET /admin/metrics              charts of queue depth and blocked runs by reason over time
 *   GET /admin/metrics/history      the samples behind the charts (JSON)
 *
 * The viewer is the X-Viewer-Id header and the current workspace the
 * X-Workspace-Id header: stand-ins for the application's session. HTML by
 * default; JSON with `Accept: application/json` or `?format=json`.
 *
 * Access is rungate's decision, not this server's: it connects as a role that
 * may only execute rungate.operations and rungate.operation, and maps their
 * SQLSTATEs to HTTP statuses and nothing else:
 *   RG404 -> 404   outside the viewer's scope, or nonexistent (indistinguishable)
 *   RG403 -> 403   in scope, no membership granting operations.view
 *   RG400 -> 400   malformed request (bad status, before_id...)
 *   other -> 500   (details are logged, never sent)
 * Requests this server cannot even pass to rungate (a missing or non-numeric
 * id) are 400 too; unknown paths 404, other methods 405.
 *
 * The metrics routes are an operator's, not a tenant viewer's: they show
 * every workspace's counts. They use their own connections, as
 * METRICS_PGUSER (a role that may execute rungate.metrics and
 * rungate.metrics_text; default: the PG* role, which then needs those
 * grants), and take no viewer header; put them behind the operators'
 * authentication. Every METRICS_INTERVAL_MS (default 5000) the server keeps
 * a sample of rungate.metrics(): queued runs per operation type and the
 * blocked counters per reason code, the last METRICS_HISTORY (default 360)
 * of them, for the charts.
 *
 * Environment: PORT (required; 0 picks a free port, printed on start-up),
 * PG* for the connection (PGHOST, PGPORT, PGUSER, PGDATABASE...), PAGE_SIZE
 * (default 50), METRICS_PGUSER, METRICS_INTERVAL_MS, METRICS_HISTORY.
 * Listens on 127.0.0.1 only.
 */
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const pg = require('pg');

// bigint ids as JSON numbers (up to 2^53; larger ones stay strings)
pg.types.setTypeParser(20, (v) => {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : v;
});

const STATUSES = ['queued', 'running', 'succeeded', 'partially_succeeded',
  'failed', 'blocked', 'cancelled'];
const INT8_MAX = 9223372036854775807n;
const PAGE_SIZE = Number(process.env.PAGE_SIZE || 50);
const METRICS_INTERVAL_MS = Number(process.env.METRICS_INTERVAL_MS || 5000);
const METRICS_HISTORY = Number(process.env.METRICS_HISTORY || 360);
const METRICS_JS = fs.readFileSync(path.join(__dirname, 'metrics-page.js'), 'utf8');

class HttpError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code || null;
  }
}

/* rungate's SQLSTATEs, and nothing else, decide 404 and 403. */
function statusForSqlstate(code) {
  switch (code) {
    case 'RG404': return 404;
    case 'RG403': return 403;
    case 'RG400': return 400;
    default: return 500;
  }
}

/* A positive bigint given as decimal digits, or null when absent/empty. */
function idParam(value, name, required) {
  if (value === undefined || value === null || value === '') {
    if (required) throw new HttpError(400, `${name} is required`);
    return null;
  }
  if (!/^[0-9]{1,19}$/.test(value) || BigInt(value) > INT8_MAX) {
    throw new HttpError(400, `${name} must be a positive integer, not "${String(value).slice(0, 40)}"`);
  }
  return value;
}

/* ------------------------------------------------------------------ data */

const pool = new pg.Pool({
  max: 5,
  application_name: 'rungate-monitor',
  statement_timeout: 10000,
  connectionTimeoutMillis: 10000,
});
pool.on('error', (err) => console.error('pool error:', err.message));

async function listRuns(viewer, workspace, status, tenant, before) {
  const { rows } = await pool.query(
    'SELECT * FROM rungate.operations($1, $2, $3, $4, $5, $6)',
    [viewer, workspace, status, tenant, PAGE_SIZE, before]);
  return rows;
}

async function runDetail(viewer, run) {
  const { rows } = await pool.query('SELECT * FROM rungate.operation($1, $2)', [viewer, run]);
  return rows[0];
}

/* ------------------------------------------------------------- metrics */

const metricsPool = new pg.Pool({
  max: 2,
  user: process.env.METRICS_PGUSER || undefined,
  application_name: 'rungate-monitor-metrics',
  statement_timeout: 10000,
  connectionTimeoutMillis: 10000,
});
metricsPool.on('error', (err) => console.error('metrics pool error:', err.message));

async function metricsText() {
  const { rows } = await metricsPool.query('SELECT rungate.metrics_text() AS text');
  return rows[0].text;
}

/*
 * The history behind the charts: one sample per METRICS_INTERVAL_MS, the
 * last METRICS_HISTORY of them. A sample is {at, queued: {operation: n},
 * running: {operation: n}, blocked: {reason_code: total}}; blocked holds
 * the counters (null when rungate is not preloaded: no counters).
 */
const history = [];
let lastSampleError = null;

async function takeSample() {
  const { rows } = await metricsPool.query(
    "SELECT metric, labels, value FROM rungate.metrics()"
    + " WHERE metric IN ('rungate_runs', 'rungate_blocked_total')");
  const s = { at: new Date().toISOString(), queued: {}, running: {}, blocked: null };
  for (const r of rows) {
    if (r.metric === 'rungate_runs') {
      s[r.labels.status][r.labels.operation] = r.value;
    } else {
      s.blocked = s.blocked || {};
      s.blocked[r.labels.reason_code] = r.value;
    }
  }
  history.push(s);
  while (history.length > METRICS_HISTORY) history.shift();
  lastSampleError = null;
}

let sampling = null;
function startSampling() {
  const tick = () => takeSample().catch((err) => {
    if (!lastSampleError || lastSampleError.message !== err.message) {
      console.error(`metrics sample failed: ${err.code || ''} ${err.message}`);
    }
    lastSampleError = err;
  });
  tick();
  sampling = setInterval(tick, METRICS_INTERVAL_MS);
}

/* ------------------------------------------------------------------ HTML */

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => (
    { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

function when(t) {
  if (t === null || t === undefined) return '';
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

const LABELS = {
  queued: 'Queued', running: 'Running', succeeded: 'Succeeded',
  partially_succeeded: 'Partially succeeded', failed: 'Failed',
  blocked: 'Blocked', cancelled: 'Cancelled',
};

function badge(status) {
  return `<span class="badge badge-${esc(status)}" data-status="${esc(status)}">${esc(LABELS[status] || status)}</span>`;
}

function authority(r) {
  return r.initiator_id === null
    ? '<span class="system">system</span>'
    : `actor ${esc(r.initiator_id)}`;
}

/* What the list says about a run's outcome: reason for blocked, error for failed. */
function outcome(r) {
  if (r.status === 'blocked') {
    return `<div class="reason"><span class="kind">Denied</span> <code>${esc(r.reason_code)}</code>`
      + ` <span class="category">${esc(r.reason_category)}</span>`
      + `<div class="message">${esc(r.reason_message)}</div></div>`;
  }
  if (r.status === 'failed' || (r.error && r.status === 'queued')) {
    return `<div class="error"><span class="kind">${r.status === 'failed' ? 'Error' : 'Last error'}</span>`
      + ` <code>${esc(r.error)}</code></div>`;
  }
  return '';
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:12px 24px}header h1{margin:0;font-size:18px}
header .ctx{color:#c9d1d9;font-size:13px}
main{padding:16px 24px;max-width:1200px}
a{color:#0969da}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}
th,td{text-align:left;padding:8px 10px;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f0f3f6;font-weight:600}
td.when{white-space:nowrap}
tr.run-blocked td:first-child{box-shadow:inset 5px 0 0 #d97706}
tr.run-failed td:first-child{box-shadow:inset 5px 0 0 #cf222e}
.badge{display:inline-block;padding:1px 9px;border-radius:12px;font-size:12px;font-weight:700;letter-spacing:.02em;border:1px solid transparent;white-space:nowrap}
.badge-queued{background:#eaeef2;color:#57606a;border-color:#d0d7de}
.badge-running{background:#ddf4ff;color:#0550ae;border-color:#54aeff}
.badge-succeeded{background:#dafbe1;color:#116329;border-color:#4ac26b}
.badge-partially_succeeded{background:#fff8c5;color:#7d4e00;border-color:#d4a72c}
.badge-failed{background:#cf222e;color:#fff;border-color:#a40e26}
.badge-blocked{background:#fff1d6;color:#8a4600;border:1px dashed #d97706}
.badge-cancelled{background:#f6f8fa;color:#6e7781;border-color:#d0d7de;text-decoration:line-through}
.reason .kind{font-weight:700;color:#8a4600}.error .kind{font-weight:700;color:#a40e26}
.reason code{background:#fff1d6;color:#8a4600;padding:0 4px;border-radius:3px}
.error code{background:#ffebe9;color:#a40e26;padding:0 4px;border-radius:3px}
.category{font-size:12px;color:#8a4600;border:1px solid #f0b35a;border-radius:3px;padding:0 4px;text-transform:uppercase}
.message{color:#57606a;font-size:13px}
.system{font-style:italic;color:#57606a}
form.filters{margin:0 0 12px;display:flex;gap:12px;align-items:end;flex-wrap:wrap}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#57606a}
.pager{margin-top:12px}
.panel{border-radius:6px;padding:12px 16px;margin:14px 0}
.panel h2{margin:0 0 6px;font-size:16px}
.panel-blocked{background:#fff8eb;border:2px dashed #d97706}.panel-blocked h2{color:#8a4600}
.panel-failed{background:#ffebe9;border:2px solid #cf222e}.panel-failed h2{color:#a40e26}
.panel pre{white-space:pre-wrap;margin:6px 0 0;font-size:13px}
ol.checks{margin:6px 0 0;padding-left:22px}
ol.checks li.failed{color:#8a4600;font-weight:700}
ol.checks li.passed{color:#116329}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:4px 16px;background:#fff;border:1px solid #d0d7de;padding:12px 16px;border-radius:6px}
dl.facts dt{color:#57606a}dl.facts dd{margin:0}
tr.deny td{background:#fff8eb}
pre.json{background:#fff;border:1px solid #d0d7de;padding:8px;border-radius:6px;overflow:auto}
.empty{padding:16px;background:#fff;border:1px solid #d0d7de}
.chart-panel{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;margin:14px 0}
.chart-panel h2{margin:0 0 2px;font-size:16px}
svg.chart{width:100%;height:auto;display:block}
svg.chart .grid{stroke:#eaeef2}svg.chart .axis{stroke:#8c959f}
svg.chart .tick{font-size:11px;fill:#57606a}svg.chart .empty-chart{font-size:14px;fill:#8c959f}
ul.legend{list-style:none;margin:6px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:6px 18px;font-size:13px}
ul.legend li{display:flex;align-items:center;gap:6px}ul.legend .value{color:#57606a}
.swatch{display:inline-block;width:14px;height:4px;border-radius:2px}
#status.error{color:#a40e26}
`;

function page(title, ctx, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body><header><h1>${esc(title)}</h1><div class="ctx">${ctx}</div></header>
<main>${body}</main></body></html>
`;
}

function listHtml(q, runs, nextBefore) {
  const options = ['<option value="">any status</option>']
    .concat(STATUSES.map((s) => `<option value="${s}"${q.status === s ? ' selected' : ''}>${esc(LABELS[s])}</option>`));
  const filters = `<form class="filters" method="get" action="/admin/operations">
<label>Status<select name="status">${options.join('')}</select></label>
<label>Tenant<input name="tenant" inputmode="numeric" size="8" value="${esc(q.tenant || '')}"></label>
<button type="submit">Filter</button></form>`;
  let table;
  if (runs.length === 0) {
    table = '<div class="empty">No runs match.</div>';
  } else {
    const rows = runs.map((r) => `<tr class="run run-${esc(r.status)}" data-run="${esc(r.run_id)}">
<td><a href="/admin/operations/${esc(r.run_id)}">#${esc(r.run_id)}</a></td>
<td>${esc(r.operation)}${r.parent_id !== null ? `<div class="message">item of #${esc(r.parent_id)}</div>` : ''}</td>
<td>${r.tenant_id === null ? '<span class="system">workspace</span>' : `tenant ${esc(r.tenant_id)}`}</td>
<td>${authority(r)}</td>
<td>${badge(r.status)}</td>
<td>${outcome(r)}</td>
<td class="when">${esc(when(r.created_at))}</td>
<td class="when">${esc(when(r.finished_at))}</td></tr>`);
    table = `<table class="runs"><thead><tr><th>Run</th><th>Operation</th><th>Scope</th><th>Authority</th>
<th>Status</th><th>Reason or error</th><th>Created</th><th>Finished</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`;
  }
  let pager = '';
  if (nextBefore !== null) {
    const p = new URLSearchParams();
    if (q.status) p.set('status', q.status);
    if (q.tenant) p.set('tenant', q.tenant);
    p.set('before', String(nextBefore));
    pager = `<div class="pager"><a rel="next" href="/admin/operations?${esc(p.toString())}">Older runs</a></div>`;
  }
  return page('Operations', `workspace ${esc(q.workspace)} · viewer ${esc(q.viewer)}`, filters + table + pager);
}

/* The audit row whose decision denied the run (the last deny). */
function denyRow(audit) {
  const denies = (audit || []).filter((a) => a.decision === 'deny');
  return denies.length ? denies[denies.length - 1] : null;
}

function detailHtml(q, r) {
  const parts = [];
  parts.push(`<p><a href="/admin/operations">&larr; Operations</a></p>`);
  parts.push(`<p>${badge(r.status)} <strong>${esc(r.operation)}</strong></p>`);
  if (r.status === 'blocked') {
    const deny = denyRow(r.audit);
    let checks = '';
    if (deny && Array.isArray(deny.checks)) {
      checks = `<h3>Deny check <span class="message">(audit event ${esc(deny.event)}, attempt ${esc(deny.attempt)}${deny.worker ? `, worker ${esc(deny.worker)}` : ''})</span></h3>
<ol class="checks deny-check">${deny.checks.map((c) => `<li class="${c.passed ? 'passed' : 'failed'}"><code>${esc(c.code)}</code> ${c.passed ? 'passed' : 'FAILED'}</li>`).join('')}</ol>`;
    }
    parts.push(`<section class="panel panel-blocked" id="blocked"><h2>Blocked: never started, no side effects</h2>
<div class="reason"><span class="kind">Reason</span> <code>${esc(r.reason_code)}</code> <span class="category">${esc(r.reason_category)}</span></div>
<div class="message">${esc(r.reason_message)}</div>${checks}</section>`);
  } else if (r.status === 'failed') {
    parts.push(`<section class="panel panel-failed" id="failed"><h2>Failed with an error</h2>
<div class="message">after attempt ${esc(r.attempt)}</div><pre>${esc(r.error)}</pre></section>`);
  }
  parts.push(`<dl class="facts">
<dt>Run</dt><dd>#${esc(r.run_id)}</dd>
<dt>Workspace</dt><dd>${esc(r.workspace_id)}</dd>
<dt>Scope</dt><dd>${r.tenant_id === null ? 'workspace' : `tenant ${esc(r.tenant_id)}`}</dd>
<dt>Authority</dt><dd>${authority(r)}</dd>
<dt>Attempt</dt><dd>${esc(r.attempt)}</dd>
${r.parent_id !== null ? `<dt>Bulk run</dt><dd><a href="/admin/operations/${esc(r.parent_id)}">#${esc(r.parent_id)}</a></dd>` : ''}
<dt>Created</dt><dd>${esc(when(r.created_at))}</dd>
<dt>Started</dt><dd>${esc(when(r.started_at)) || '—'}</dd>
<dt>Finished</dt><dd>${esc(when(r.finished_at)) || '—'}</dd>
</dl>`);
  if (r.items) {
    parts.push(`<h3>Items</h3><pre class="json">${esc(JSON.stringify(r.items, null, 2))}</pre>`);
  }
  parts.push(`<h3>Payload</h3><pre class="json">${esc(JSON.stringify(r.payload, null, 2))}</pre>`);
  if (r.result !== null) {
    parts.push(`<h3>Result</h3><pre class="json">${esc(JSON.stringify(r.result, null, 2))}</pre>`);
  }
  const audit = (r.audit || []).map((a) => `<tr class="${a.decision === 'deny' ? 'deny' : ''}">
<td class="when">${esc(when(a.at))}</td><td>${esc(a.event)}</td><td>${esc(a.decision || '')}</td>
<td>${a.actor_id === null ? '<span class="system">system</span>' : `actor ${esc(a.actor_id)}`}</td>
<td>${a.reason_code ? `<code>${esc(a.reason_code)}</code>` : ''}</td>
<td>${esc(a.worker || '')}</td><td>${esc(a.attempt)}</td></tr>`);
  parts.push(`<h3>Audit trail</h3><table class="audit"><thead><tr><th>At</th><th>Event</th><th>Decision</th>
<th>Actor</th><th>Reason</th><th>Worker</th><th>Attempt</th></tr></thead><tbody>${audit.join('\n')}</tbody></table>`);
  return page(`Run #${r.run_id}`, `viewer ${esc(q.viewer)}`, parts.join('\n'));
}

function errorHtml(status, message) {
  const title = { 400: 'Bad request', 403: 'Forbidden', 404: 'Not found', 405: 'Method not allowed' }[status] || 'Error';
  return page(`${status} ${title}`, '', `<p>${esc(message)}</p><p><a href="/admin/operations">Operations</a></p>`);
}

/* ------------------------------------------------------------------ HTTP */

function wantsJson(req, url) {
  const format = url.searchParams.get('format');
  if (format === 'json') return true;
  if (format === 'html') return false;
  return /\bapplication\/json\b/i.test(req.headers.accept || '');
}

function send(res, status, type, body, extra) {
  res.writeHead(status, {
    'Content-Type': `${type}; charset=utf-8`,
    'Cache-Control': 'no-store',
    Vary: 'Accept, X-Viewer-Id, X-Workspace-Id',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ...(extra || {}),
  });
  res.end(body);
}

function sendOk(res, json, payload, html) {
  if (json) send(res, 200, 'application/json', JSON.stringify(payload));
  else send(res, 200, 'text/html', html());
}

function sendError(res, json, err, extra) {
  let status = err.status;
  let code = err.code;
  let message = err.message;
  if (!(err instanceof HttpError)) {
    status = statusForSqlstate(err.code);
    code = err.code || null;
    if (status === 500) {
      console.error(`error ${err.code || ''}: ${err.message}`);
      code = null;
      message = 'internal error';
    }
  }
  if (json) send(res, status, 'application/json', JSON.stringify({ error: { status, code, message } }), extra);
  else send(res, status, 'text/html', errorHtml(status, message), extra);
}

const METRICS_ROUTES = ['/metrics', '/admin/metrics', '/admin/metrics.js', '/admin/metrics/history'];

function metricsPageHtml() {
  const body = `<p class="message">Sampled every ${esc(METRICS_INTERVAL_MS / 1000)} s from
<code>rungate.metrics()</code>; the last ${esc(METRICS_HISTORY)} samples. Raw: <a href="/metrics">/metrics</a>.</p>
<section class="chart-panel"><h2>Queue depth</h2>
<p class="message">Queued runs by operation type.</p>
<svg id="queue-chart" class="chart" viewBox="0 0 900 260" role="img" aria-label="Queued runs by operation type over time"></svg>
<ul id="queue-legend" class="legend"></ul></section>
<section class="chart-panel"><h2>Blocked runs by reason</h2>
<p class="message">Runs blocked per minute, by reason code (from <code>rungate_blocked_total</code>).</p>
<svg id="blocked-chart" class="chart" viewBox="0 0 900 260" role="img" aria-label="Blocked runs per minute by reason code over time"></svg>
<ul id="blocked-legend" class="legend"></ul></section>
<p id="status" class="message">Loading…</p>
<script src="/admin/metrics.js"></script>`;
  return page('Metrics', 'queue depth and blocked runs over time', body);
}

const METRICS_CSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

async function handleMetrics(req, res, url, json) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const e = new HttpError(405, `method ${req.method} not allowed`);
    e.headers = { Allow: 'GET, HEAD' };
    throw e;
  }
  switch (url.pathname) {
    case '/metrics':
      send(res, 200, 'text/plain; version=0.0.4', await metricsText());
      return;
    case '/admin/metrics.js':
      send(res, 200, 'text/javascript', METRICS_JS);
      return;
    case '/admin/metrics/history':
      if (history.length === 0 && lastSampleError) throw lastSampleError;
      send(res, 200, 'application/json', JSON.stringify({
        interval_ms: METRICS_INTERVAL_MS, max_samples: METRICS_HISTORY, samples: history,
      }));
      return;
    default:
      if (json) throw new HttpError(404, 'the charts are HTML; their data is /admin/metrics/history');
      send(res, 200, 'text/html', metricsPageHtml(), { 'Content-Security-Policy': METRICS_CSP });
  }
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const json = wantsJson(req, url);
  if (METRICS_ROUTES.includes(url.pathname)) {
    await handleMetrics(req, res, url, json);
    return 200;
  }
  const detail = url.pathname.match(/^\/admin\/operations\/([^/]+)\/?$/);
  if (url.pathname !== '/admin/operations' && url.pathname !== '/admin/operations/' && !detail) {
    throw new HttpError(404, `no such page: ${url.pathname.slice(0, 80)}`);
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const e = new HttpError(405, `method ${req.method} not allowed`);
    e.headers = { Allow: 'GET, HEAD' };
    throw e;
  }
  const viewer = idParam(req.headers['x-viewer-id'], 'X-Viewer-Id header', true);
  if (detail) {
    const run = idParam(decodeURIComponent(detail[1]), 'run id', true);
    const r = await runDetail(viewer, run);
    sendOk(res, json, { run: r }, () => detailHtml({ viewer }, r));
    return 200;
  }
  const q = {
    viewer,
    workspace: idParam(req.headers['x-workspace-id'], 'X-Workspace-Id header', true),
    status: url.searchParams.get('status') || null,
    tenant: idParam(url.searchParams.get('tenant'), 'tenant', false),
    before: idParam(url.searchParams.get('before'), 'before', false),
  };
  const runs = await listRuns(q.viewer, q.workspace, q.status, q.tenant, q.before);
  const nextBefore = runs.length === PAGE_SIZE ? runs[runs.length - 1].run_id : null;
  sendOk(res, json, {
    viewer_id: Number(q.viewer),
    workspace_id: Number(q.workspace),
    filters: { status: q.status, tenant_id: q.tenant && Number(q.tenant), before_id: q.before && Number(q.before) },
    runs,
    next_before: nextBefore,
  }, () => listHtml(q, runs, nextBefore));
  return 200;
}

const server = http.createServer((req, res) => {
  const started = Date.now();
  let json = false;
  try { json = wantsJson(req, new URL(req.url, 'http://127.0.0.1')); } catch (_) { /* keep HTML */ }
  handle(req, res)
    .catch((err) => { sendError(res, json, err, err.headers); })
    .finally(() => {
      console.log(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - started}ms`);
    });
});

function main() {
  const port = process.env.PORT;
  if (port === undefined || !/^[0-9]{1,5}$/.test(port) || Number(port) > 65535) {
    console.error('PORT must be set to a TCP port (0 picks a free one)');
    process.exit(2);
  }
  if (!Number.isInteger(PAGE_SIZE) || PAGE_SIZE < 1 || PAGE_SIZE > 10000) {
    console.error('PAGE_SIZE must be between 1 and 10000');
    process.exit(2);
  }
  if (!Number.isInteger(METRICS_INTERVAL_MS) || METRICS_INTERVAL_MS < 100) {
    console.error('METRICS_INTERVAL_MS must be an integer of at least 100');
    process.exit(2);
  }
  if (!Number.isInteger(METRICS_HISTORY) || METRICS_HISTORY < 2 || METRICS_HISTORY > 100000) {
    console.error('METRICS_HISTORY must be between 2 and 100000');
    process.exit(2);
  }
  startSampling();
  server.listen(Number(port), '127.0.0.1', () => {
    console.log(`rungate monitor listening on http://127.0.0.1:${server.address().port}`);
  });
  const stop = () => {
    clearInterval(sampling);
    server.close(() => Promise.allSettled([pool.end(), metricsPool.end()]).finally(() => process.exit(0)));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (require.main === module) main();

module.exports = { server, statusForSqlstate };
