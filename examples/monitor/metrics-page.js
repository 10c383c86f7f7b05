'use strict';
/*
 * examples/monitor/metrics-page.js: the charts of /admin/metrics, drawn as
 * SVG with nothing but the DOM (no library, nothing fetched but the
 * server's own /admin/metrics/history).
 *
 *   #queue-chart    queued runs by operation type, one line each
 *   #blocked-chart  runs blocked per minute by reason code, one line each:
 *                   the increase of rungate_blocked_total between two
 *                   samples, per minute (a counter that went down, after a
 *                   server restart, counts from zero)
 *
 * Each line is a <polyline data-series="name" data-last="value"> (the
 * blocked lines also carry data-total, the counter at the last sample), and
 * each legend item an <li data-series="name">: the browser test reads them.
 */
(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const W = 900;
  const H = 260;
  const M = { left: 56, right: 20, top: 16, bottom: 34 };
  const PALETTE = ['#0969da', '#d97706', '#1a7f37', '#cf222e', '#8250df',
    '#bf3989', '#1b7c83', '#9a6700', '#57606a', '#0550ae', '#a40e26', '#116329'];

  function el(name, attrs, parent, text) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  /* A round upper bound for the y axis: 1, 2, 2.5 or 5 times a power of ten. */
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return '–';
    if (Number.isInteger(v)) return String(v);
    return String(Number(v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)));
  }

  function fmtTime(t) {
    return new Date(t).toISOString().slice(11, 19);
  }

  /*
   * draw(svg, legend, times, series): series is [{name, values, total?}],
   * values aligned with times (null where there is no value).
   */
  function draw(svg, legend, times, series, emptyText) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    while (legend.firstChild) legend.removeChild(legend.firstChild);
    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    let max = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
    const top = niceMax(max);
    const x = (i) => M.left + (times.length > 1 ? (i * pw) / (times.length - 1) : pw / 2);
    const y = (v) => M.top + ph - (v / top) * ph;

    // grid and y labels
    for (let k = 0; k <= 4; k++) {
      const v = (top * k) / 4;
      el('line', { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: 'grid' }, svg);
      el('text', { x: M.left - 8, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, svg, fmtValue(v));
    }
    el('line', { x1: M.left, x2: M.left, y1: M.top, y2: M.top + ph, class: 'axis' }, svg);
    el('line', { x1: M.left, x2: W - M.right, y1: M.top + ph, y2: M.top + ph, class: 'axis' }, svg);
    // time labels: first, middle, last
    if (times.length > 0) {
      const picks = [...new Set([0, Math.floor((times.length - 1) / 2), times.length - 1])];
      for (const i of picks) {
        const anchor = i === 0 ? 'start' : i === times.length - 1 ? 'end' : 'middle';
        el('text', { x: x(i), y: H - 10, 'text-anchor': anchor, class: 'tick' }, svg, fmtTime(times[i]));
      }
    }
    if (series.length === 0) {
      el('text', { x: M.left + pw / 2, y: M.top + ph / 2, 'text-anchor': 'middle', class: 'empty-chart' },
        svg, emptyText);
      return;
    }

    series.forEach((s, n) => {
      const color = PALETTE[n % PALETTE.length];
      const pts = [];
      s.values.forEach((v, i) => { if (v !== null) pts.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`); });
      let last = null;
      for (let i = s.values.length - 1; i >= 0; i--) if (s.values[i] !== null) { last = s.values[i]; break; }
      const line = el('polyline', {
        points: pts.join(' '), fill: 'none', stroke: color, 'stroke-width': 2.5,
        'stroke-linejoin': 'round', 'data-series': s.name, 'data-last': last === null ? '' : last,
      }, svg);
      if (s.total !== undefined) line.setAttribute('data-total', s.total);
      el('title', {}, line, s.name);
      if (pts.length === 1) {
        const [cx, cy] = pts[0].split(',');
        el('circle', { cx, cy, r: 3.5, fill: color }, svg);
      }

      const li = document.createElement('li');
      li.dataset.series = s.name;
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = color;
      const name = document.createElement('code');
      name.textContent = s.name;
      const val = document.createElement('span');
      val.className = 'value';
      val.textContent = s.total !== undefined
        ? `${fmtValue(last)}/min, ${fmtValue(s.total)} in all`
        : fmtValue(last);
      li.append(sw, name, val);
      legend.appendChild(li);
    });
  }

  function queueSeries(samples) {
    const names = [...new Set(samples.flatMap((s) => Object.keys(s.queued)))].sort();
    return names.map((name) => ({
      name,
      values: samples.map((s) => (name in s.queued ? s.queued[name] : null)),
    }));
  }

  function blockedSeries(samples) {
    const names = [...new Set(samples.flatMap((s) => Object.keys(s.blocked || {})))].sort();
    const series = [];
    for (const name of names) {
      const totals = samples.map((s) => (s.blocked && name in s.blocked ? s.blocked[name] : null));
      const total = totals[totals.length - 1];
      if (!(total > 0)) continue;   // never blocked for this reason: no line
      const values = totals.map((t, i) => {
        if (i === 0 || t === null || totals[i - 1] === null) return null;
        const dt = (Date.parse(samples[i].at) - Date.parse(samples[i - 1].at)) / 60000;
        if (!(dt > 0)) return null;
        const d = t >= totals[i - 1] ? t - totals[i - 1] : t;
        return d / dt;
      });
      series.push({ name, values, total });
    }
    return series;
  }

  const status = document.getElementById('status');
  let interval = 5000;

  async function refresh() {
    try {
      const res = await fetch('/admin/metrics/history', { headers: { Accept: 'application/json' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const h = await res.json();
      interval = Math.max(500, h.interval_ms || 5000);
      const samples = h.samples || [];
      const times = samples.map((s) => s.at);
      draw(document.getElementById('queue-chart'), document.getElementById('queue-legend'),
        times, queueSeries(samples), 'No operation types yet');
      const counters = samples.some((s) => s.blocked);
      draw(document.getElementById('blocked-chart'), document.getElementById('blocked-legend'),
        times, blockedSeries(samples),
        counters ? 'No run blocked since the server started'
          : 'No counters: rungate is not in shared_preload_libraries');
      status.textContent = samples.length
        ? `${samples.length} samples; the last at ${fmtTime(times[times.length - 1])} UTC`
        : 'No sample yet';
      status.dataset.samples = String(samples.length);
      status.classList.remove('error');
    } catch (err) {
      status.textContent = `Could not load the samples: ${err.message}`;
      status.classList.add('error');
    }
    setTimeout(refresh, interval);
  }
  refresh();
}());
