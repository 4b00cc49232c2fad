// The hermes dashboard page. Everything it shows comes from the JSON API
// (the same model as `hermes status --json`); labels and colours are the
// model's own (`label`, `tone`), so this file decides nothing about state.
// Data is only ever inserted with textContent, never as HTML.
'use strict';

const STATUS_EVERY_MS = 2000;
const LOG_EVERY_MS = 1000;
const BOOT_EVERY_MS = 3000;
const LOG_KEEP = 1000;

const $ = (sel) => document.querySelector(sel);
let csrf = null;
let selected = null;
let logCursor = '';
let bootCursor = '';
let rows = new Map();
let busy = new Set();
let pending = null;
let timers = [];

class ApiError extends Error {
  constructor(message, status, doc) {
    super(message);
    this.status = status;
    this.doc = doc || {};
  }
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET') {
    opts.headers['Content-Type'] = 'application/json';
    opts.headers['X-CSRF-Token'] = csrf || '';
    opts.body = JSON.stringify(body || {});
  }
  const res = await fetch(path, opts);
  let doc = null;
  try { doc = await res.json(); } catch (_) { doc = null; }
  if (res.status === 401 && path !== '/api/login') {
    showLogin();
  }
  if (!res.ok) {
    throw new ApiError((doc && doc.error) || `${res.status} ${res.statusText}`, res.status, doc);
  }
  return doc;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) node.append(c);
  return node;
}

function duration(secs) {
  if (secs === null || secs === undefined) return '—';
  const d = Math.floor(secs / 86400), h = Math.floor(secs % 86400 / 3600);
  const m = Math.floor(secs % 3600 / 60), s = secs % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function notice(text, bad) {
  const n = $('#notice');
  n.textContent = text;
  n.className = bad ? 'bad' : '';
}

function lastExit(g) {
  const parts = [];
  if (g.last_exit) {
    if (g.last_exit.code !== null && g.last_exit.code !== undefined) parts.push(`code ${g.last_exit.code}`);
    else if (g.last_exit.signal) parts.push(`signal ${g.last_exit.signal}`);
  }
  if (g.exit_reason) parts.push(g.exit_reason);
  if (g.config_error) parts.push(`config: ${g.config_error}`);
  if (g.status_error) parts.push(g.status_error);
  return parts.join(' — ') || '—';
}

function renderServices(snap) {
  const main = snap.main.applicable
    ? `${snap.main.running ? 'running' : 'not running'}${snap.main.pid ? ` (pid ${snap.main.pid})` : ''}${snap.main.command ? ` — ${snap.main.command}` : ''}`
    : 'n/a (not in a container)';
  const sup = snap.supervisor;
  const dash = snap.dashboard;
  const ing = snap.ingress;
  const items = [
    ['Service manager', `${snap.manager.kind} — ${snap.manager.reason}`],
    ['Supervisor', `${sup.name} ${sup.reachable ? 'reachable' : 'NOT reachable'}${sup.scandir ? ` on ${sup.scandir}` : ''}${sup.detail ? ` — ${sup.detail}` : ''}`],
    ['Main program', main],
    ['Dashboard slot', `${dash.label} — ${dash.host}:${dash.port}${dash.token_set ? ', token required' : ''}`],
    ['Ingress slot', `${ing.label} — ${ing.host}:${ing.port ?? '?'}${ing.public_url ? `, public ${ing.public_url}` : ''}`],
  ];
  $('#services').replaceChildren(...items.map(([k, v]) => el('div', {}, el('dt', {}, k), el('dd', {}, v))));
  $('#host-line').textContent = `${snap.home} · ${snap.summary.up}/${snap.summary.gateways} gateways up` +
    (snap.summary.failing ? ` · ${snap.summary.failing} failing` : '');
  $('#gw-count').textContent = `(${snap.gateways.length})`;
}

function actionButton(profile, action, label, enabled) {
  return el('button', {
    type: 'button', 'data-action': action, 'aria-label': `${label} ${profile}`,
    disabled: !enabled, onclick: () => act(profile, action),
  }, label);
}

function makeRow(g) {
  const p = g.profile;
  const cells = {
    profile: el('th', { scope: 'row', 'data-label': 'Profile' }),
    state: el('td', { 'data-label': 'State' }),
    health: el('td', { 'data-label': 'Health' }),
    pid: el('td', { 'data-label': 'PID' }),
    port: el('td', { 'data-label': 'Port' }),
    uptime: el('td', { 'data-label': 'Uptime' }),
    restarts: el('td', { 'data-label': 'Restarts' }),
    desired: el('td', { 'data-label': 'Desired' }),
    exit: el('td', { class: 'reason', 'data-label': 'Last exit' }),
    hooks: el('td', { class: 'reason', 'data-label': 'Webhook hooks' }),
  };
  const buttons = {
    start: actionButton(p, 'start', 'Start', true),
    stop: actionButton(p, 'stop', 'Stop', true),
    restart: actionButton(p, 'restart', 'Restart', true),
    log: el('button', { type: 'button', 'data-action': 'log', 'aria-label': `Show log of ${p}`, onclick: () => selectLog(p) }, 'Log'),
    delete: el('button', { type: 'button', class: 'danger', 'data-action': 'delete', 'aria-label': `Delete profile ${p}`, onclick: () => askDelete(p) }, 'Delete'),
  };
  const tr = el('tr', { 'data-profile': p }, ...Object.values(cells),
    el('td', {}, el('div', { class: 'actions' }, ...Object.values(buttons))));
  return { tr, cells, buttons };
}

function updateRow(row, g) {
  const { tr, cells, buttons } = row;
  const inFlight = busy.has(g.profile);
  tr.dataset.label = g.label;
  tr.classList.toggle('selected', selected === g.profile);
  cells.profile.textContent = g.profile + (g.profile_exists ? '' : ' (no profile)');
  cells.state.replaceChildren(el('span', { class: `badge tone-${g.tone}` }, `${g.label.replace('_', ' ')}${inFlight ? '…' : ''}`));
  const h = g.health;
  cells.health.textContent = h.state === 'ok' ? `ok (${h.latency_ms} ms)`
    : h.state === 'unknown' ? '—' : (h.http_status ? `HTTP ${h.http_status}` : h.state);
  cells.health.title = h.error || '';
  cells.pid.textContent = g.pid ?? '—';
  cells.port.textContent = g.port ?? '—';
  cells.uptime.textContent = g.up ? duration(g.uptime_secs) : (g.down_secs !== null && g.down_secs !== undefined ? `down ${duration(g.down_secs)}` : '—');
  cells.restarts.textContent = g.restarts;
  cells.desired.textContent = g.desired_state || '—';
  cells.exit.textContent = lastExit(g);
  cells.hooks.textContent = g.hooks_summary;
  buttons.start.disabled = inFlight || !g.profile_exists || (g.up && g.ready);
  buttons.stop.disabled = inFlight || !g.slot || (!g.up && g.want !== 'up');
  buttons.restart.disabled = inFlight || !g.profile_exists;
  buttons.delete.disabled = inFlight || !g.profile_exists || g.profile === 'default';
}

function renderGateways(snap) {
  const tbody = $('#gateways tbody');
  const seen = new Set();
  snap.gateways.forEach((g, i) => {
    seen.add(g.profile);
    let row = rows.get(g.profile);
    if (!row) {
      row = makeRow(g);
      rows.set(g.profile, row);
    }
    updateRow(row, g);
    // Keep rows (and the focused button) in place; only move what is out of order.
    if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
  });
  for (const [p, row] of rows) {
    if (!seen.has(p)) {
      row.tr.remove();
      rows.delete(p);
    }
  }
}

async function refresh() {
  try {
    const snap = await api('GET', '/api/status');
    renderServices(snap);
    renderGateways(snap);
    $('#refreshed').textContent = `updated ${new Date(snap.taken_at).toLocaleTimeString()}`;
    if (snap.errors.length) notice(snap.errors.join('; '), true);
  } catch (e) {
    if (e.status !== 401) $('#refreshed').textContent = `refresh failed: ${e.message}`;
  }
}

async function act(profile, action) {
  busy.add(profile);
  await refreshRowsOnly();
  notice(`${action} ${profile}…`);
  try {
    const out = await api('POST', `/api/gateways/${encodeURIComponent(profile)}/${action}`);
    notice(out.message);
  } catch (e) {
    const tail = e.doc && e.doc.log_tail ? `\n${e.doc.log_tail.join('\n')}` : '';
    notice(`${e.message}${tail}`, true);
    if (tail) selectLog(profile);
  } finally {
    busy.delete(profile);
    await refresh();
  }
}

async function refreshRowsOnly() {
  for (const [p, row] of rows) {
    if (busy.has(p)) Object.values(row.buttons).forEach((b) => { if (b.dataset.action !== 'log') b.disabled = true; });
  }
}

function appendLines(pre, lines, reset) {
  if (reset) pre.textContent = '';
  if (!lines.length) return;
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
  pre.append(document.createTextNode(lines.join('\n') + '\n'));
  // Drop the oldest text so a chatty log cannot grow the page without bound.
  const all = pre.textContent.split('\n');
  if (all.length > LOG_KEEP + 1) pre.textContent = all.slice(-LOG_KEEP - 1).join('\n');
  if (atBottom || reset) pre.scrollTop = pre.scrollHeight;
}

function selectLog(profile) {
  selected = profile;
  logCursor = '';
  $('#log').textContent = '';
  $('#log-name').textContent = profile;
  for (const [p, row] of rows) row.tr.classList.toggle('selected', p === profile);
  followLog();
}

async function followLog() {
  if (!selected) return;
  const profile = selected;
  try {
    const chunk = await api('GET', `/api/gateways/${encodeURIComponent(profile)}/log?lines=200&cursor=${encodeURIComponent(logCursor)}`);
    if (profile !== selected) return;
    appendLines($('#log'), chunk.lines, chunk.reset || logCursor === '');
    if (chunk.cursor) logCursor = chunk.cursor;
    if (!$('#log').textContent) $('#log').textContent = '(no log lines yet)\n';
  } catch (e) {
    if (e.status !== 401) $('#log-name').textContent = `${profile} — ${e.message}`;
  }
}

async function followBoot() {
  try {
    const chunk = await api('GET', `/api/boot-log?lines=200&cursor=${encodeURIComponent(bootCursor)}`);
    appendLines($('#boot'), chunk.lines, chunk.reset || bootCursor === '');
    if (chunk.cursor) bootCursor = chunk.cursor;
    if (!$('#boot').textContent) $('#boot').textContent = '(no boot log: not started by the container init)\n';
  } catch (_) { /* shown by the status refresh */ }
}

function askDelete(profile) {
  pending = profile;
  $('#confirm-name').textContent = profile;
  $('#confirm-input').value = '';
  $('#confirm-ok').disabled = true;
  $('#confirm').showModal();
  $('#confirm-input').focus();
}

async function confirmDelete() {
  const profile = pending;
  $('#confirm').close();
  if (!profile || $('#confirm-input').value.trim().toLowerCase() !== profile) return;
  busy.add(profile);
  notice(`deleting ${profile}…`);
  try {
    await api('POST', `/api/profiles/${encodeURIComponent(profile)}/delete`, { confirm: profile });
    notice(`profile ${profile} deleted`);
    if (selected === profile) { selected = null; $('#log').textContent = ''; $('#log-name').textContent = '(choose a gateway)'; }
  } catch (e) {
    notice(e.message, true);
  } finally {
    busy.delete(profile);
    pending = null;
    await refresh();
  }
}

async function createProfile(ev) {
  ev.preventDefault();
  const name = $('#new-name').value.trim();
  const portText = $('#new-port').value.trim();
  const body = { name };
  if (portText) body.port = Number(portText);
  try {
    const out = await api('POST', '/api/profiles', body);
    notice(`profile ${out.profile} created on port ${out.port}${out.slot_error ? ` (no slot yet: ${out.slot_error})` : ''}`, !!out.slot_error);
    $('#new-name').value = '';
    $('#new-port').value = '';
    await refresh();
  } catch (e) {
    notice(e.message, true);
  }
}

function every(ms, fn) {
  const tick = async () => {
    if (!document.hidden) await fn();
    timers.push(setTimeout(tick, ms));
  };
  tick();
}

function stopTimers() {
  timers.forEach(clearTimeout);
  timers = [];
}

function showLogin() {
  stopTimers();
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#logout').hidden = true;
  $('#refresh').hidden = true;
  $('#host-line').textContent = 'sign in required';
  $('#token').focus();
}

function showApp(authRequired) {
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#logout').hidden = !authRequired;
  $('#refresh').hidden = false;
  stopTimers();
  every(STATUS_EVERY_MS, refresh);
  every(LOG_EVERY_MS, followLog);
  every(BOOT_EVERY_MS, followBoot);
}

async function login(ev) {
  ev.preventDefault();
  try {
    const out = await api('POST', '/api/login', { token: $('#token').value });
    csrf = out.csrf;
    $('#token').value = '';
    $('#login-error').textContent = '';
    showApp(true);
  } catch (e) {
    $('#login-error').textContent = e.message;
  }
}

async function logout() {
  try { await api('POST', '/api/logout'); } catch (_) { /* signed out either way */ }
  csrf = null;
  showLogin();
}

function keys(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || $('#confirm').open)) return;
  if ($('#app').hidden) return;
  const focusOn = (sel) => { ev.preventDefault(); $(sel).focus(); };
  switch (ev.key) {
    case 'r': ev.preventDefault(); refresh(); break;
    case 'n': focusOn('#new-name'); break;
    case 'l': focusOn('#log'); break;
    case 'b': focusOn('#boot'); break;
    default: break;
  }
}

async function start() {
  $('#refresh').addEventListener('click', refresh);
  $('#logout').addEventListener('click', logout);
  $('#login-form').addEventListener('submit', login);
  $('#create-form').addEventListener('submit', createProfile);
  $('#confirm-cancel').addEventListener('click', () => $('#confirm').close());
  $('#confirm-ok').addEventListener('click', confirmDelete);
  $('#confirm-input').addEventListener('input', () => {
    $('#confirm-ok').disabled = $('#confirm-input').value.trim().toLowerCase() !== pending;
  });
  $('#confirm-input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !$('#confirm-ok').disabled) { ev.preventDefault(); confirmDelete(); }
  });
  document.addEventListener('keydown', keys);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
  try {
    // The link from `hermes dashboard url` carries the token in the fragment,
    // which never reaches the server: trade it for a session, then drop it
    // from the address bar and the history.
    const given = new URLSearchParams(location.hash.slice(1)).get('token');
    if (given) {
      history.replaceState(null, '', location.pathname + location.search);
      try {
        csrf = (await api('POST', '/api/login', { token: given })).csrf;
      } catch (e) {
        $('#login-error').textContent = `the link's token was refused: ${e.message}`;
      }
    }
    const s = await api('GET', '/api/session');
    csrf = s.csrf || csrf;
    if (s.auth_required && !s.authenticated) showLogin();
    else showApp(s.auth_required);
  } catch (e) {
    $('#host-line').textContent = `unable to reach the dashboard API: ${e.message}`;
  }
}

start();
