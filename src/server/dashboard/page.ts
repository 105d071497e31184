// The operator dashboard: one server-rendered page with a little vanilla JS that polls
// /v1/dashboard with a read key and draws tables and SVG plots. No build step, no framework.
export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Coffer dashboard</title>
<style>
  :root { --bg:#0f1419; --panel:#182029; --text:#e6e1cf; --muted:#8a9199; --accent:#ffb454; --ok:#91b362; --bad:#f07178; --line:#2d3640; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, Segoe UI, sans-serif; background: var(--bg); color: var(--text); }
  header { display: flex; align-items: center; gap: 16px; padding: 12px 20px; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; color: var(--accent); }
  header .meta { color: var(--muted); }
  #login { padding: 40px 20px; max-width: 520px; }
  #login input { width: 100%; padding: 8px; background: var(--panel); color: var(--text); border: 1px solid var(--line); border-radius: 4px; font-family: monospace; }
  button { margin-top: 8px; padding: 8px 14px; background: var(--accent); border: 0; border-radius: 4px; cursor: pointer; font-weight: 600; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 20px; }
  section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; overflow: auto; }
  section h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 500; }
  td.num { text-align: right; }
  .ok { color: var(--ok); } .bad { color: var(--bad); } .muted { color: var(--muted); }
  .big { font-size: 26px; font-weight: 600; }
  .kpis { display: flex; gap: 24px; flex-wrap: wrap; }
  svg { width: 100%; height: 140px; background: #111820; border-radius: 4px; }
  code { font-size: 12px; }
  #error { color: var(--bad); padding: 0 20px; }
</style>
</head>
<body>
<header><h1>Coffer</h1><span class="meta" id="meta">not connected</span><span class="meta" id="updated"></span></header>
<div id="login">
  <p>Enter an API key with read scope. It stays in this browser tab only.</p>
  <input id="key" type="password" autocomplete="off" placeholder="cfk_…">
  <button id="connect">Connect</button>
</div>
<div id="error"></div>
<main id="main" hidden>
  <section id="chains-panel"><h2>Chains</h2><div id="chains-unavailable" class="bad" role="status"></div><table id="chains"><thead><tr><th>chain</th><th>height</th><th>latest known</th><th>lag</th><th>finalized</th><th>updated</th></tr></thead><tbody></tbody></table><svg id="lag-plot" role="img" aria-label="sync lag"></svg></section>
  <section><h2>Throughput (store operations/s, last 5 min)</h2><div class="kpis"><div><div class="big" id="ops-rate">0</div><div class="muted">ops/s now</div></div><div><div class="big" id="ops-latency">0</div><div class="muted">mean ms</div></div><div><div class="big" id="ops-failed">0</div><div class="muted">failed (5 min)</div></div></div><svg id="tp-plot" role="img" aria-label="throughput"></svg></section>
  <section><h2>Database</h2><table id="db"><tbody></tbody></table></section>
  <section><h2>Migrations</h2><table id="migrations"><thead><tr><th>migration</th><th>state</th><th>applied</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Tables</h2><table id="tables"><thead><tr><th>table</th><th class="num">rows</th><th class="num">bytes</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Slow queries</h2><table id="slow"><thead><tr><th>operation</th><th class="num">ms</th><th>at</th></tr></thead><tbody></tbody></table><table id="stmts"><thead><tr><th>pg_stat_statements</th><th class="num">calls</th><th class="num">mean ms</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Waiting locks</h2><table id="locks"><thead><tr><th>waiting</th><th>blocked by</th><th class="num">seconds</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Audit log</h2><div id="audit-head" class="muted"></div><table id="audit"><thead><tr><th>seq</th><th>time</th><th>actor</th><th>action</th><th>entity</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
(() => {
  const $ = (id) => document.getElementById(id);
  // A Map: chain ids are data, and one named like an Object.prototype member must not clash.
  const lagHistory = new Map();
  let timer = null;
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  // A cell is a value or { v, num, cls }; its classes go in one attribute (a second one is ignored).
  const cell = (c) => { const o = c !== null && typeof c === 'object' ? c : { v: c }; const cls = [o.num ? 'num' : '', o.cls || ''].filter(Boolean).join(' '); return '<td' + (cls ? ' class="' + esc(cls) + '"' : '') + '>' + esc(o.v ?? '') + '</td>'; };
  const rows = (tbody, list, cells) => { tbody.innerHTML = list.length ? list.map((r) => '<tr>' + cells(r).map(cell).join('') + '</tr>').join('') : '<tr><td class="muted">none</td></tr>'; };
  function plot(svg, series, colors) {
    const w = svg.clientWidth || 400, h = svg.clientHeight || 140, pad = 24;
    const all = series.flatMap((s) => s.points.map((p) => p[1]));
    const max = Math.max(1, ...all);
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const x0 = Math.min(...xs), x1 = Math.max(x0 + 1, ...xs);
    const X = (x) => pad + ((x - x0) / (x1 - x0)) * (w - pad - 6), Y = (y) => h - 16 - (y / max) * (h - 28);
    let out = '<text x="2" y="12" fill="#8a9199" font-size="10">' + max + '</text><line x1="' + pad + '" x2="' + w + '" y1="' + Y(0) + '" y2="' + Y(0) + '" stroke="#2d3640"/>';
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const d = s.points.map((p, j) => (j ? 'L' : 'M') + X(p[0]).toFixed(1) + ',' + Y(p[1]).toFixed(1)).join(' ');
      out += '<path d="' + d + '" fill="none" stroke="' + colors[i % colors.length] + '" stroke-width="1.6"/>';
      out += '<text x="' + (pad + 4 + i * 90) + '" y="' + (h - 3) + '" fill="' + colors[i % colors.length] + '" font-size="10">' + esc(s.name) + '</text>';
    });
    svg.innerHTML = out;
  }
  async function refresh() {
    const key = sessionStorage.getItem('coffer.key');
    if (!key) return;
    let res;
    try { res = await fetch('/v1/dashboard', { headers: { authorization: 'Bearer ' + key } }); }
    catch (e) { $('error').textContent = 'cannot reach the service: ' + e.message; return; }
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      $('error').textContent = (body.error && body.error.message) || ('HTTP ' + res.status);
      if (res.status === 401 || res.status === 403) { sessionStorage.removeItem('coffer.key'); $('login').hidden = false; $('main').hidden = true; }
      return;
    }
    $('error').textContent = '';
    const d = await res.json();
    $('login').hidden = true; $('main').hidden = false;
    $('meta').textContent = d.database.backend + ' · ' + d.database.server;
    $('updated').textContent = 'updated ' + new Date(d.generatedAt).toLocaleTimeString();
    const now = Date.now() / 1000;
    // A chain database that did not answer: its chains are missing from the table, so say which.
    $('chains-unavailable').textContent = (d.unavailable || []).map((u) => u.database + ': ' + u.reason + ', its chains are not shown').join('; ');
    rows($('chains').tBodies[0], d.chains, (c) => [c.chainId, { v: c.height, num: 1 }, { v: c.latestKnownHeight, num: 1 }, { v: c.lag, num: 1, cls: Number(c.lag) > 6 ? 'bad' : 'ok' }, { v: c.finalizedHeight, num: 1 }, c.updatedAt || '']);
    for (const c of d.chains) { let h = lagHistory.get(c.chainId); if (!h) lagHistory.set(c.chainId, (h = [])); h.push([now, Number(c.lag)]); if (h.length > 300) h.shift(); }
    plot($('lag-plot'), [...lagHistory].map(([name, points]) => ({ name: name + ' lag', points })), ['#ffb454', '#59c2ff', '#91b362', '#d2a6ff']);
    const tp = d.throughput;
    const last = tp.slice(-5);
    $('ops-rate').textContent = (last.reduce((n, s) => n + s.ok + s.failed, 0) / Math.max(1, last.length)).toFixed(1);
    const withOps = tp.filter((s) => s.ok + s.failed > 0);
    $('ops-latency').textContent = withOps.length ? (withOps.reduce((n, s) => n + s.meanMs, 0) / withOps.length).toFixed(2) : '0';
    $('ops-failed').textContent = tp.reduce((n, s) => n + s.failed, 0);
    plot($('tp-plot'), [{ name: 'ok/s', points: tp.map((s) => [s.t, s.ok]) }, { name: 'failed/s', points: tp.map((s) => [s.t, s.failed]) }], ['#91b362', '#f07178']);
    const p = d.database.pool;
    rows($('db').tBodies[0], [['backend', d.database.backend], ['server', d.database.server], ['database', d.database.url], ['pool total / idle / waiting', p.total + ' / ' + p.idle + ' / ' + p.waiting], ['pool created / closed', p.created + ' / ' + p.closed]], (r) => r);
    rows($('migrations').tBodies[0], d.migrations, (m) => [m.id, { v: m.state, cls: m.state === 'applied' ? 'ok' : 'bad' }, m.appliedAt || '']);
    rows($('tables').tBodies[0], d.tables, (t) => [t.name, { v: t.rows ?? '?', num: 1 }, { v: t.bytes ?? '', num: 1 }]);
    rows($('slow').tBodies[0], d.slowQueries, (s) => [s.op, { v: s.ms, num: 1 }, s.at]);
    rows($('stmts').tBodies[0], d.statements || [], (s) => [s.query, { v: s.calls, num: 1 }, { v: s.meanMs, num: 1 }]);
    rows($('locks').tBodies[0], d.locks, (l) => [l.waiting, l.blockedBy, { v: l.seconds, num: 1 }]);
    $('audit-head').textContent = d.audit ? ('verified length ' + d.audit.length + ' · head ' + d.audit.head + (d.audit.ok ? '' : ' · BROKEN at ' + d.audit.firstBad)) : d.auditPermitted === false ? 'audit log not available to this key (needs audit:read)' : 'audit log not available';
    rows($('audit').tBodies[0], d.audit ? d.audit.recent : [], (a) => [a.seq, a.at, a.actor, a.action, a.entity]);
  }
  $('connect').onclick = () => { sessionStorage.setItem('coffer.key', $('key').value.trim()); refresh(); };
  $('key').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('connect').click(); });
  if (sessionStorage.getItem('coffer.key')) refresh();
  timer = setInterval(refresh, 2000);
})();
</script>
</body>
</html>`;
