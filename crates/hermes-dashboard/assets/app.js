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
let rows = new Map();
let lastSnap = null;
// Column sort: key and direction (1 up, -1 down); null keeps the model's order.
let sortBy = null;
let timerGen = 0;
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

// How it last ended and why, each reason once: the model's own text, the
// same the CLI and the TUI show.
function lastExit(g) {
  return g.reason && g.reason !== '-' ? g.reason : '—';
}

// The wall-clock time of the last start (up) or stop (down), from the
// snapshot's own clock so a skewed browser clock does not shift it.
function lastChange(g, takenAt) {
  const secs = g.up ? g.uptime_secs : g.down_secs;
  if (secs === null || secs === undefined) return null;
  return new Date(takenAt - secs * 1000);
}

function renderServices(snap) {
  const main = snap.main.text;
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
}

function actionButton(profile, action, label, enabled) {
  return el('button', {
    type: 'button', 'data-action': action, 'aria-label': `${label} ${profile}`,
    disabled: !enabled, onclick: () => act(profile, action),
  }, label);
}

const LONG_REASON = 90;

function makeRow(g) {
  const p = g.profile;
  const cells = {
    profile: el('th', { scope: 'row', 'data-label': 'Profile' }),
    state: el('td', { 'data-label': 'State' }),
    health: el('td', { 'data-label': 'Health' }),
    pid: el('td', { 'data-label': 'PID' }),
    port: el('td', { 'data-label': 'Port' }),
    uptime: el('td', { 'data-label': 'Uptime' }),
    since: el('td', { 'data-label': 'Since' }),
    restarts: el('td', { 'data-label': 'Restarts' }),
    desired: el('td', { 'data-label': 'Desired' }),
    exit: el('td', { class: 'reason', 'data-label': 'Last exit' }),
    hooks: el('td', { class: 'hooks', 'data-label': 'Webhook hooks' }),
  };
  const reason = el('span', { class: 'reason-text' });
  const more = el('button', {
    type: 'button', class: 'more', 'data-action': 'expand', 'aria-expanded': 'false',
    'aria-label': `Show the whole last exit of ${p}`,
    onclick: () => {
      const open = !rows.get(p).tr.classList.contains('expanded');
      rows.get(p).tr.classList.toggle('expanded', open);
      more.setAttribute('aria-expanded', String(open));
      more.textContent = open ? 'less' : 'more';
      updateRow(rows.get(p), rows.get(p).g);
    },
  }, 'more');
  cells.exit.append(reason, ' ', more);
  const buttons = {
    start: actionButton(p, 'start', 'Start', true),
    stop: actionButton(p, 'stop', 'Stop', true),
    restart: actionButton(p, 'restart', 'Restart', true),
    log: el('button', { type: 'button', 'data-action': 'log', 'aria-label': `Show log of ${p}`, onclick: () => selectLog(p) }, 'Log'),
    delete: el('button', { type: 'button', class: 'danger', 'data-action': 'delete', 'aria-label': `Delete profile ${p}`, onclick: () => askDelete(p) }, 'Delete'),
  };
  const tr = el('tr', { 'data-profile': p }, ...Object.values(cells),
    el('td', {}, el('div', { class: 'actions' }, ...Object.values(buttons))));
  return { tr, cells, buttons, reason, more, g };
}

function updateRow(row, g) {
  const { tr, cells, buttons } = row;
  row.g = g;
  const inFlight = busy.has(g.profile);
  tr.dataset.label = g.label;
  tr.classList.toggle('selected', selected === g.profile);
  cells.profile.textContent = g.profile + (g.profile_exists ? '' : ' (no profile)');
  cells.state.replaceChildren(el('span', { class: `badge tone-${g.tone}` }, `${g.label.replace('_', ' ')}${inFlight ? '…' : ''}`));
  const h = g.health;
  cells.health.textContent = h.state === 'ok' ? `ok (${h.latency_ms} ms)`
    : g.health_text === '-' ? '—' : g.health_text;
  cells.health.title = h.error || '';
  cells.pid.textContent = g.pid ?? '—';
  cells.port.textContent = g.port ?? '—';
  cells.uptime.textContent = g.up ? duration(g.uptime_secs) : (g.down_secs !== null && g.down_secs !== undefined ? `down ${duration(g.down_secs)}` : '—');
  const since = lastSnap && lastChange(g, lastSnap.taken_at);
  cells.since.textContent = since ? since.toLocaleTimeString() : '—';
  cells.since.title = since ? `${g.up ? 'started' : 'stopped'} ${since.toString()}` : '';
  cells.restarts.textContent = g.restarts;
  cells.desired.textContent = g.desired_state || '—';
  // A long reason shows its start; the row expands to show all of it.
  const text = lastExit(g);
  const long = text.length > LONG_REASON;
  const open = tr.classList.contains('expanded');
  row.reason.textContent = long && !open ? `${text.slice(0, LONG_REASON - 1)}…` : text;
  row.reason.title = long ? text : '';
  row.more.hidden = !long;
  cells.hooks.textContent = g.hooks_summary;
  buttons.start.disabled = inFlight || !g.profile_exists || (g.up && g.ready);
  buttons.stop.disabled = inFlight || !g.slot || (!g.up && g.want !== 'up');
  buttons.restart.disabled = inFlight || !g.profile_exists;
  buttons.delete.disabled = inFlight || !g.profile_exists || g.profile === 'default';
}

// Sort keys by column; ties keep the model's order.
const SORT_KEYS = {
  profile: (g) => g.profile,
  state: (g) => g.label,
  health: (g) => g.health.state,
  pid: (g) => g.pid ?? -1,
  port: (g) => g.port ?? -1,
  uptime: (g) => (g.up ? g.uptime_secs ?? -1 : -1),
  since: (g) => (g.up ? g.uptime_secs : g.down_secs) ?? Infinity,
  restarts: (g) => g.restarts,
  desired: (g) => g.desired_state || '',
  exit: (g) => lastExit(g),
};

function ordered(gateways) {
  if (!sortBy) return gateways;
  const key = SORT_KEYS[sortBy.key];
  return gateways.map((g, i) => [g, i]).sort(([a, i], [b, j]) => {
    const x = key(a), y = key(b);
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return c * sortBy.dir || i - j;
  }).map(([g]) => g);
}

function filterText() {
  return $('#filter').value.trim().toLowerCase();
}

// A row is shown when the filter is in its name or its state.
function matches(g, f) {
  return !f || g.profile.toLowerCase().includes(f) || g.label.replace('_', ' ').includes(f);
}

function renderGateways(snap) {
  const tbody = $('#gateways tbody');
  const seen = new Set();
  const f = filterText();
  let shown = 0;
  ordered(snap.gateways).forEach((g, i) => {
    seen.add(g.profile);
    let row = rows.get(g.profile);
    if (!row) {
      row = makeRow(g);
      rows.set(g.profile, row);
    }
    updateRow(row, g);
    row.tr.hidden = !matches(g, f);
    if (!row.tr.hidden) shown++;
    // Keep rows (and the focused button) in place; only move what is out of order.
    if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
  });
  for (const [p, row] of rows) {
    if (!seen.has(p)) {
      row.tr.remove();
      rows.delete(p);
    }
  }
  $('#gw-count').textContent = f ? `(${shown} of ${snap.gateways.length})` : `(${snap.gateways.length})`;
  $('#no-match').hidden = !(f && shown === 0 && snap.gateways.length);
}

function sortOn(key) {
  sortBy = sortBy && sortBy.key === key ? (sortBy.dir === 1 ? { key, dir: -1 } : null) : { key, dir: 1 };
  for (const th of document.querySelectorAll('#gateways th[data-sort]')) {
    const on = sortBy && th.dataset.sort === sortBy.key;
    th.setAttribute('aria-sort', on ? (sortBy.dir === 1 ? 'ascending' : 'descending') : 'none');
  }
  if (lastSnap) renderGateways(lastSnap);
}

async function refresh() {
  try {
    const snap = await api('GET', '/api/status');
    lastSnap = snap;
    renderServices(snap);
    renderGateways(snap);
    $('#refreshed').textContent = `updated ${new Date(snap.taken_at).toLocaleTimeString()}`;
    if (snap.errors.length) notice(snap.errors.join('; '), true);
  } catch (e) {
    if (e.status !== 401) $('#refreshed').textContent = `refresh failed: ${e.message}`;
  }
}

// A failed action: its message, and the gateway's last log lines as lines,
// until dismissed or the next action.
function showFailure(title, message, tail) {
  $('#failure-title').textContent = title;
  $('#failure-message').textContent = message;
  $('#failure-tail').replaceChildren(...(tail || []).map((line) => el('li', {}, line)));
  $('#failure-tail').hidden = !(tail && tail.length);
  $('#failure').hidden = false;
}

function clearFailure() {
  $('#failure').hidden = true;
}

async function act(profile, action) {
  busy.add(profile);
  clearFailure();
  await refreshRowsOnly();
  notice(`${action} ${profile}…`);
  try {
    const out = await api('POST', `/api/gateways/${encodeURIComponent(profile)}/${action}`);
    notice(out.message);
  } catch (e) {
    notice('');
    showFailure(`${action} ${profile} failed`, e.message, e.doc && e.doc.log_tail);
    if (e.doc && e.doc.log_tail) selectLog(profile, false);
  } finally {
    busy.delete(profile);
    await refresh();
  }
}

// Start or stop every gateway in one batched call (`POST /api/all/<action>`).
// Stop asks first: the button turns into its own confirmation for a while.
async function actAll(button) {
  const action = button.dataset.all;
  if (action === 'stop' && !button.dataset.armed) {
    button.dataset.armed = '1';
    button.textContent = 'Really stop all?';
    button.classList.add('danger');
    setTimeout(() => disarm(button), 5000);
    return;
  }
  disarm(button);
  clearFailure();
  for (const p of rows.keys()) busy.add(p);
  await refreshRowsOnly();
  notice(`${action} every gateway…`);
  try {
    const out = await api('POST', `/api/all/${action}`);
    notice(`${action}: ${out.results.length} gateways done`);
  } catch (e) {
    notice('');
    const lines = [];
    for (const r of (e.doc && e.doc.results) || []) {
      if (r.ok) continue;
      lines.push(`${r.profile}: ${r.error}`);
      for (const l of r.log_tail || []) lines.push(`  ${l}`);
    }
    showFailure(`${action} all failed`, e.message, lines);
  } finally {
    busy.clear();
    await refresh();
  }
}

function disarm(button) {
  delete button.dataset.armed;
  button.textContent = 'Stop all';
  button.classList.remove('danger');
}

async function refreshRowsOnly() {
  for (const [p, row] of rows) {
    if (busy.has(p)) Object.values(row.buttons).forEach((b) => { if (b.dataset.action !== 'log') b.disabled = true; });
  }
}

// Follows one log file into a <pre>. One request at a time, and an answer
// is used only if nothing changed while it was on its way: a poll and a click
// both reading from the start showed every line twice (issue 14).
class Follower {
  constructor(pre, empty) {
    this.pre = pre;
    this.empty = empty;
    this.url = null;
    this.cursor = '';
    this.gen = 0;
    this.inFlight = false;
  }

  // Follow another file (or the same one from its tail again).
  switchTo(url) {
    this.url = url;
    this.cursor = '';
    this.gen++;
    this.pre.textContent = '';
  }

  async poll() {
    if (!this.url || this.inFlight) return;
    const gen = this.gen;
    const sent = this.cursor;
    this.inFlight = true;
    try {
      const chunk = await api('GET', `${this.url}?lines=200&cursor=${encodeURIComponent(sent)}`);
      if (gen !== this.gen || sent !== this.cursor) return;
      this.append(chunk.lines, chunk.reset || sent === '');
      if (chunk.cursor) this.cursor = chunk.cursor;
      if (!this.pre.textContent) this.pre.textContent = this.empty;
    } finally {
      this.inFlight = false;
      // A switch while this was on its way: read the new file now, not a tick later.
      if (gen !== this.gen) this.poll().catch(() => {});
    }
  }

  append(lines, reset) {
    const pre = this.pre;
    if (reset) pre.textContent = '';
    if (!lines.length) return;
    if (pre.textContent === this.empty) pre.textContent = '';
    // Scrolled back: new lines must not pull the reader to the bottom.
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    pre.append(document.createTextNode(lines.join('\n') + '\n'));
    // Drop the oldest text so a chatty log cannot grow the page without bound.
    const all = pre.textContent.split('\n');
    if (all.length > LOG_KEEP + 1) pre.textContent = all.slice(-LOG_KEEP - 1).join('\n');
    if (atBottom || reset) pre.scrollTop = pre.scrollHeight;
  }
}

let gatewayLog = null;
let bootLog = null;

function logUrl(profile) {
  return `/api/gateways/${encodeURIComponent(profile)}/log`;
}

function selectLog(profile, reveal = true) {
  selected = profile;
  gatewayLog.switchTo(logUrl(profile));
  $('#log-name').textContent = profile;
  for (const b of document.querySelectorAll('.log-tools button')) b.disabled = false;
  for (const [p, row] of rows) row.tr.classList.toggle('selected', p === profile);
  // The panel is below the table: bring it on screen.
  if (reveal) $('#log-card').scrollIntoView({ block: 'nearest' });
  followLog();
}

async function followLog() {
  const profile = selected;
  try {
    await gatewayLog.poll();
  } catch (e) {
    if (e.status !== 401 && profile === selected) $('#log-name').textContent = `${profile} — ${e.message}`;
  }
}

async function followBoot() {
  try { await bootLog.poll(); } catch (_) { /* shown by the status refresh */ }
}

function clearLog() {
  // Only the panel: following goes on from here.
  $('#log').textContent = '';
}

function toggleWrap() {
  const on = $('#log').classList.toggle('nowrap');
  $('#log-wrap').setAttribute('aria-pressed', String(!on));
}

async function downloadLog() {
  if (!selected) return;
  const profile = selected;
  try {
    const chunk = await api('GET', `${logUrl(profile)}?lines=1000`);
    const blob = new Blob([chunk.lines.join('\n') + '\n'], { type: 'text/plain' });
    const a = el('a', { href: URL.createObjectURL(blob), download: `${profile}-gateway.log` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    notice(`unable to download the log of ${profile}: ${e.message}`, true);
  }
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
    if (selected === profile) {
      selected = null;
      gatewayLog.switchTo(null);
      $('#log-name').textContent = '(choose a gateway)';
    }
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
  // A tick whose request was on its way when the timers stopped (a 401 signs
  // out) must not start its loop again: that left two loops after sign-in.
  const gen = timerGen;
  const tick = async () => {
    if (gen !== timerGen) return;
    if (!document.hidden) await fn();
    if (gen === timerGen) timers.push(setTimeout(tick, ms));
  };
  tick();
}

function stopTimers() {
  timerGen++;
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
  if (t && t.id === 'filter' && ev.key === 'Escape') {
    t.value = '';
    if (lastSnap) renderGateways(lastSnap);
    t.blur();
    return;
  }
  if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || $('#confirm').open)) return;
  if ($('#app').hidden) return;
  const focusOn = (sel) => { ev.preventDefault(); $(sel).focus(); };
  switch (ev.key) {
    case 'r': ev.preventDefault(); refresh(); break;
    case '/': focusOn('#filter'); break;
    case 'n': focusOn('#new-name'); break;
    case 'l': focusOn('#log'); break;
    case 'b': focusOn('#boot'); break;
    default: break;
  }
}

async function start() {
  gatewayLog = new Follower($('#log'), '(no log lines yet)\n');
  bootLog = new Follower($('#boot'), '(no boot log: not started by the container init)\n');
  bootLog.switchTo('/api/boot-log');
  $('#refresh').addEventListener('click', refresh);
  $('#filter').addEventListener('input', () => { if (lastSnap) renderGateways(lastSnap); });
  for (const th of document.querySelectorAll('#gateways th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => sortOn(th.dataset.sort));
  }
  $('#failure-dismiss').addEventListener('click', clearFailure);
  for (const b of document.querySelectorAll('button[data-all]')) b.addEventListener('click', () => actAll(b));
  $('#log-clear').addEventListener('click', clearLog);
  $('#log-wrap').addEventListener('click', toggleWrap);
  $('#log-download').addEventListener('click', downloadLog);
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
