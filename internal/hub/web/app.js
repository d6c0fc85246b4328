// Tapwire's traffic viewer. Plain JavaScript, no build step, served by the
// hub from embedded files. Everything it shows comes from the JSON API with
// the read key the user signed in with: typed in, or given in the address's
// fragment (#key=tw_..., as speedctl demo prints it; the fragment never
// reaches the server, and the key is taken out of the address at once). It
// is kept in sessionStorage for the browser session, and a new tab asks the
// open ones for it (BroadcastChannel), so a deep link opened in another tab
// is signed in; Sign out forgets it in every tab.
//
// Captured traffic is hostile input: this file never puts it into markup.
// Every value reaches the page as a text node (textContent, createTextNode)
// or an SVG text node; no string is ever parsed as HTML (TestViewerFiles
// checks that the markup-writing DOM calls appear nowhere here).
'use strict';

import { setupSnapshots, loadSnapshots } from './snapshots.js';
import { setupReports, loadReports } from './reports.js';

const KEY = 'tapwire.key';
const PAGE = 100;          // records per request
const MAX_ROWS = 5000;     // rows the table holds before it asks for narrower filters
const FILTERS = ['service', 'direction', 'method', 'status', 'host', 'path', 'q'];

const $ = (id) => document.getElementById(id);

// el builds an element: el('td', {class: 'x', title: 't'}, 'text', child...).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// ---- state ----

// The default time range: the last 15 minutes, widened to the data when that is empty (autoRange).
const DEFAULT_RANGE = '-15m';
const RANGES = [['-15m', 15 * 60e3], ['-1h', 3600e3], ['-6h', 6 * 3600e3], ['-24h', 24 * 3600e3], ['-7d', 7 * 86400e3], ['-30d', 30 * 86400e3]];

const state = {
  key: sessionStorage.getItem(KEY) || '',
  range: DEFAULT_RANGE, from: '', to: '',
  autoRange: true, // the range is the default, not one the user or the address chose: widened when empty
  widened: '', // the label of the empty range the default was widened from, for the table's foot
  f: { service: '', direction: '', method: '', status: '', host: '', path: '', q: '', failed: false },
  cursor: '', rows: 0, loading: false, gen: 0,
  selected: '', view: 'traffic',
  snapshot: '', // the id of the snapshot whose records the traffic page shows, or ''
  report: '', // the id of the report the Reports page shows, or ''
};
const VIEWS = ['traffic', 'map', 'snapshots', 'reports'];

function filterParams(withTime = true) {
  const p = new URLSearchParams();
  if (withTime) {
    if (state.range === 'custom') {
      if (state.from) p.set('from', state.from);
      if (state.to) p.set('to', state.to);
    } else if (state.range !== 'all') {
      p.set('from', state.range);
    }
  }
  for (const k of FILTERS) if (state.f[k]) p.set(k, state.f[k]);
  if (state.f.failed) p.set('failed', 'true');
  if (state.snapshot) p.set('snapshot', state.snapshot);
  return p;
}

// snapParams are the parameters of a record's requests: its snapshot's.
function snapParams() {
  return new URLSearchParams(state.snapshot ? { snapshot: state.snapshot } : {});
}

// filterBody is the filters as the body of POST /api/v1/snapshots takes them.
function filterBody() {
  const p = filterParams(), f = {};
  p.delete('snapshot');
  for (const [k, v] of p) f[k] = k === 'failed' ? v === 'true' : v;
  return f;
}

// openSnapshot shows a snapshot's records on the traffic page, over its
// window.
function openSnapshot(s) {
  state.snapshot = s.id;
  for (const k of FILTERS) state.f[k] = '';
  state.f.failed = false;
  // Its window; one open at the end ends at its creation.
  if (s.from) { state.range = 'custom'; state.from = s.from; state.to = s.to || s.created; } else { state.range = 'all'; }
  state.view = 'traffic';
  state.selected = '';
  showFilters(); showView(); writeHash(); refresh();
}

function leaveSnapshot() {
  state.snapshot = '';
  state.range = DEFAULT_RANGE; state.from = ''; state.to = ''; state.autoRange = true;
  showFilters(); showView(); writeHash(); refresh();
}

// The filters live in the URL's fragment, so a view can be reloaded and shared.
function writeHash() {
  const p = filterParams(false);
  p.set('range', state.range);
  if (state.range === 'custom') { p.set('from', state.from); p.set('to', state.to); }
  if (state.view !== 'traffic') p.set('view', state.view);
  if (state.selected) p.set('record', state.selected);
  if (state.view === 'reports' && state.report) p.set('report', state.report);
  history.replaceState(null, '', '#' + p.toString());
}

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  state.range = p.get('range') || DEFAULT_RANGE;
  state.autoRange = !p.get('range');
  state.from = p.get('from') || '';
  state.to = p.get('to') || '';
  for (const k of FILTERS) state.f[k] = p.get(k) || '';
  state.f.failed = p.get('failed') === 'true';
  state.view = VIEWS.includes(p.get('view')) ? p.get('view') : 'traffic';
  state.snapshot = p.get('snapshot') || '';
  state.selected = p.get('record') || '';
  state.report = p.get('report') || '';
}

// ---- API ----

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, params, key = state.key) {
  const url = path + (params && [...params].length ? '?' + params.toString() : '');
  const res = await fetch(url, { headers: { Authorization: 'Bearer ' + key }, cache: 'no-store' });
  if (!res.ok) {
    let msg = res.status + ' ' + res.statusText;
    try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
    if (res.status === 401 && key === state.key) signOut('Your key is no longer valid: sign in again.');
    throw new APIError(res.status, msg);
  }
  return res.json();
}

// ---- sign-in ----

// channel carries the key between this hub's tabs: a new tab asks, a signed-in
// one answers; a sign-out reaches them all.
const channel = 'BroadcastChannel' in window ? new BroadcastChannel('tapwire-key') : null;

function shareKey() {
  if (!channel) return;
  channel.onmessage = (m) => {
    const d = m.data || {};
    if (d.type === 'ask' && state.key) channel.postMessage({ type: 'key', key: state.key });
    if (d.type === 'signout' && state.key) signOut('Signed out in another tab.', false);
  };
}

// askTabs asks the other open tabs for the key; '' when none answers soon.
function askTabs() {
  if (!channel) return Promise.resolve('');
  return new Promise((resolve) => {
    const t = setTimeout(() => { channel.removeEventListener('message', on); resolve(''); }, 300);
    function on(m) {
      if (m.data && m.data.type === 'key' && m.data.key) {
        clearTimeout(t);
        channel.removeEventListener('message', on);
        resolve(m.data.key);
      }
    }
    channel.addEventListener('message', on);
    channel.postMessage({ type: 'ask' });
  });
}

// keyFromAddress takes a key given as #key=... out of the address, keeping
// the rest of the fragment (the view and filters of a deep link).
function keyFromAddress() {
  const p = new URLSearchParams(location.hash.slice(1));
  const key = (p.get('key') || '').trim();
  if (!key) return '';
  p.delete('key');
  const rest = p.toString();
  history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  return key;
}

async function signIn(ev) {
  ev.preventDefault();
  const key = $('key').value.trim();
  const err = $('signin-error');
  err.textContent = '';
  if (!key) { err.textContent = 'Paste an API key.'; return; }
  $('signin-button').disabled = true;
  try {
    const who = await api('/api/v1/whoami', null, key);
    state.key = key;
    sessionStorage.setItem(KEY, key);
    $('key').value = '';
    start(who);
  } catch (e) {
    err.textContent = e.status === 403 ? 'This is an ingest key (a forwarder\'s). Sign in with a read key.'
      : e.status === 401 ? 'The hub does not know this key, or it was revoked.' : 'Sign-in failed: ' + e.message;
  } finally {
    $('signin-button').disabled = false;
  }
}

function signOut(message, tell = true) {
  stopLive();
  if (tell && state.key && channel) channel.postMessage({ type: 'signout' });
  sessionStorage.removeItem(KEY);
  state.key = '';
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('key').focus();
}

function start(who) {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('whoami').textContent = 'tenant ' + who.tenant;
  $('whoami').title = 'key ' + who.key + (who.name ? ' (' + who.name + ')' : '');
  readHash();
  showFilters();
  showView();
  refresh();
  if (state.selected) openDetail(state.selected);
}

// ---- filters ----

function showFilters() {
  const range = $('f-range');
  range.value = state.range;
  range.querySelector('option[value=custom]').hidden = state.range !== 'custom';
  if (state.range === 'custom') {
    range.querySelector('option[value=custom]').textContent = fmtRange(state.from, state.to);
  }
  for (const k of FILTERS) $('f-' + k).value = state.f[k];
  $('f-failed').checked = state.f.failed;
}

let debounce;
let applied = ''; // the filters of the last refresh
const filterKey = () => JSON.stringify([state.range, state.from, state.to, state.f, state.view]);

function onFilter(ev) {
  const t = ev.target;
  if (t.name === 'range') {
    state.range = t.value;
    state.autoRange = false;
    state.widened = '';
  } else if (t.name === 'failed') {
    state.f.failed = t.checked;
  } else if (FILTERS.includes(t.name)) {
    state.f[t.name] = t.value.trim();
  } else {
    return;
  }
  state.widened = '';
  clearTimeout(debounce);
  // A text field's change event (when it loses focus, as when a row is
  // clicked) repeats what its input events did: no second refresh, which
  // would replace the rows under the click. Nor an earlier one: a text field
  // waits for typing to pause, also on change, since the focus leaves it on
  // the mouse's press and rows replaced before its release lose the click.
  if (filterKey() === applied) return;
  const wait = t.tagName === 'INPUT' && t.type !== 'checkbox' ? 350 : 0;
  debounce = setTimeout(() => { writeHash(); refresh(); }, wait);
}

function resetFilters() {
  state.range = DEFAULT_RANGE; state.from = ''; state.to = ''; state.autoRange = true; state.widened = '';
  for (const k of FILTERS) state.f[k] = '';
  state.f.failed = false;
  showFilters(); writeHash(); refresh();
}

// ---- loading ----

function refresh() {
  applied = filterKey();
  state.gen++;
  stopLive();
  if (state.view === 'snapshots') {
    loadSnapshots(state.gen);
    return;
  }
  if (state.view === 'reports') {
    loadReports(state.gen);
    return;
  }
  loadServices(state.gen);
  if (state.view === 'traffic') {
    loadHistogram(state.gen);
    loadRecords(true);
  } else {
    loadMap(state.gen);
  }
}

async function loadServices(gen) {
  const ul = $('services');
  const p = filterParams();
  p.delete('service');
  try {
    const data = await api('/api/v1/services', p);
    if (gen !== state.gen) return;
    ul.replaceChildren();
    const names = $('service-names');
    names.replaceChildren(...data.services.map((s) => el('option', { value: s.service })));
    if (!data.services.length) { ul.append(el('li', { class: 'empty' }, 'No traffic in this range.')); return; }
    const byCount = [...data.services].sort((a, b) => b.count - a.count);
    for (const s of byCount) {
      const li = el('li', { class: s.service === state.f.service ? 'active' : '', title: 'Show only ' + (s.service || '(no service label)') },
        el('div', { class: 'svc-name' }, el('span', {}, s.service || '(unlabelled)'), el('span', { class: 'muted' }, fmtCount(s.count))),
        el('div', { class: 'svc-stats' },
          el('span', { class: s.errorRate > 0 ? 'err-rate' : '' }, fmtPct(s.errorRate) + ' failed'),
          el('span', {}, 'p95 ' + fmtDur(s.p95Us))));
      li.addEventListener('click', () => {
        state.f.service = state.f.service === s.service ? '' : s.service;
        showFilters(); writeHash(); refresh();
      });
      ul.append(li);
    }
  } catch (e) {
    if (gen === state.gen) ul.replaceChildren(el('li', { class: 'empty' }, e.message));
  }
}

async function loadHistogram(gen) {
  const box = $('histogram');
  const p = filterParams();
  if (state.range === 'all') p.set('from', '-30d');
  try {
    const h = await api('/api/v1/histogram', p);
    if (gen !== state.gen) return;
    drawHistogram(box, h);
  } catch (e) {
    if (gen === state.gen) box.replaceChildren(el('div', { class: 'note warn' }, e.message));
  }
}

function drawHistogram(box, h) {
  const W = 1000, H = 84, top = 4, bottom = 0;
  const n = h.buckets.length;
  const max = Math.max(1, ...h.buckets.map((b) => b.count));
  const bw = W / Math.max(n, 1);
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'requests over time' });
  let total = 0, errors = 0;
  h.buckets.forEach((b, i) => {
    total += b.count; errors += b.errors;
    const x = i * bw, hh = (H - top - bottom) * b.count / max, eh = (H - top - bottom) * b.errors / max;
    if (b.count) s.append(svg('rect', { class: 'bar', x: x + 0.5, y: H - bottom - hh, width: Math.max(bw - 1, 0.5), height: hh }));
    if (b.errors) s.append(svg('rect', { class: 'bar-err', x: x + 0.5, y: H - bottom - eh, width: Math.max(bw - 1, 0.5), height: eh }));
    const hit = svg('rect', { class: 'hit', x, y: 0, width: bw, height: H - bottom });
    const start = new Date(b.start), end = new Date(start.getTime() + h.stepMs);
    hit.append(svg('title', {}, `${fmtTime(start)} – ${fmtTime(end)}: ${plural(b.count, 'request')}, ${b.errors} failed`));
    hit.addEventListener('click', () => zoom(start, end));
    s.append(hit);
  });
  const from = new Date(h.from), to = new Date(h.to);
  const axis = el('div', { class: 'axis' }, el('span', {}, fmtTime(from)), el('span', {}, fmtTime(new Date((from.getTime() + to.getTime()) / 2))), el('span', {}, fmtTime(to)));
  box.replaceChildren(s, axis);
  $('hist-title').textContent = `${plural(total, 'request')}, ${fmtCount(errors)} failed, ${fmtRange(h.from, h.to)} in steps of ${h.step}`;
}

function zoom(start, end) {
  state.range = 'custom';
  state.from = start.toISOString();
  state.to = end.toISOString();
  showFilters(); writeHash(); refresh();
}

async function loadRecords(reset) {
  const tbody = $('rows'), foot = $('table-foot');
  if (reset) {
    state.cursor = ''; state.rows = 0;
    tbody.replaceChildren();
    foot.replaceChildren(el('span', {}, 'Loading…'));
  }
  if (state.loading && !reset) return;
  state.loading = true;
  const gen = state.gen;
  const p = filterParams();
  p.set('limit', PAGE);
  if (state.cursor) p.set('cursor', state.cursor);
  try {
    const page = await api('/api/v1/records', p);
    if (gen !== state.gen) return;
    if (reset) startLive(gen);
    for (const r of page.records) tbody.append(row(r));
    state.rows += page.records.length;
    state.cursor = page.next || '';
    foot.replaceChildren();
    if (!state.rows) {
      foot.append(el('span', {}, 'No records match these filters.'));
      if (state.range !== 'all' && state.range !== 'custom') {
        if (state.autoRange && !state.snapshot && await widenToData(gen)) return;
        await offerWider(gen, foot);
      }
    } else if (state.cursor && state.rows < MAX_ROWS) {
      const more = el('button', { class: 'ghost', id: 'more' }, 'Load more');
      more.addEventListener('click', () => loadRecords(false));
      foot.append(el('span', {}, fmtCount(state.rows) + ' records shown'), more);
      observer.observe(more);
    } else if (state.cursor) {
      foot.append(el('span', {}, `${fmtCount(state.rows)} records shown: narrow the filters or the time range to see others.`));
    } else {
      foot.append(el('span', {}, state.rows === 1 ? '1 record, shown' : fmtCount(state.rows) + ' records, all shown'));
    }
    if (state.rows && state.widened) {
      foot.prepend(el('span', { class: 'widened', id: 'widened' }, `Nothing in the ${state.widened}: showing the ${$('f-range').selectedOptions[0]?.textContent.toLowerCase()}. `));
    }
  } catch (e) {
    if (gen === state.gen) foot.replaceChildren(el('span', { class: 'error' }, e.message));
  } finally {
    if (gen === state.gen) state.loading = false;
  }
}

// widenToData widens the default time range, when it shows nothing, to the
// smallest preset that holds the newest record matching the other filters
// (a fresh demo's records, a capture from this morning), and says so in the
// foot. It reports whether it did (and started the refresh).
async function widenToData(gen) {
  const p = filterParams(false);
  p.set('limit', 1);
  const page = await api('/api/v1/records', p);
  if (gen !== state.gen || !page.records.length) return false;
  const age = Date.now() - new Date(page.records[0].start).getTime();
  const fit = RANGES.find(([, ms]) => ms > age + 60e3);
  const next = fit ? fit[0] : 'all';
  if (next === state.range) return false;
  state.widened = $('f-range').selectedOptions[0]?.textContent.toLowerCase() || state.range;
  state.range = next;
  showFilters(); writeHash(); refresh();
  return true;
}

// offerWider says, when a relative time range shows nothing, when the newest
// record matching the other filters was captured, with a button to show all
// time: a first visit a day after a capture should not look like no capture.
async function offerWider(gen, foot) {
  const p = filterParams(false);
  p.set('limit', 1);
  const page = await api('/api/v1/records', p);
  if (gen !== state.gen || !page.records.length) return;
  const label = $('f-range').selectedOptions[0]?.textContent.toLowerCase() || 'this range';
  const all = el('button', { class: 'ghost', id: 'widen' }, 'Show all time');
  all.addEventListener('click', () => { state.range = 'all'; showFilters(); writeHash(); refresh(); });
  foot.replaceChildren(el('span', {}, `No records in the ${label}; the newest matching record is from ${fmtTime(new Date(page.records[0].start))}.`), all);
}

// ---- live traffic ----

// The live stream (GET /api/v1/stream, server-sent events read with fetch so
// that the key goes in a header, never in the address) puts records at the
// top of the list as the hub stores them: in the order they arrive, so a
// record that started an hour ago but arrives now is shown now. It follows
// the traffic page's filters but not its time range (what arrives is new);
// a snapshot or a fixed range has nothing live. Pause stops it; resume goes
// on from the last record seen, so nothing stored meanwhile is missed.
const live = { ctl: null, gen: -1, last: '', paused: false, added: 0 };

function stopLive() {
  if (live.ctl) live.ctl.abort();
  live.ctl = null;
}

function liveStatus(text) {
  const b = $('live');
  b.textContent = text;
  b.classList.toggle('on', !live.paused && !!live.ctl);
}

function startLive(gen) {
  stopLive();
  live.gen = gen;
  live.added = 0;
  if (state.view !== 'traffic' || state.snapshot || state.range === 'custom') {
    live.last = '';
    $('live').hidden = true;
    return;
  }
  $('live').hidden = false;
  live.last = '';
  if (live.paused) { liveStatus('▶ Resume live'); return; }
  connectLive(gen);
}

async function connectLive(gen) {
  const ctl = new AbortController();
  live.ctl = ctl;
  liveStatus('● Live');
  const p = filterParams(false);
  if (!live.last) p.set('after', 'end');
  const headers = { Authorization: 'Bearer ' + state.key };
  if (live.last) headers['Last-Event-ID'] = live.last;
  try {
    const res = await fetch('/api/v1/stream?' + p.toString(), { headers, signal: ctl.signal, cache: 'no-store' });
    if (!res.ok || !res.body) throw new Error(res.status + ' ' + res.statusText);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        liveEvent(ev, gen);
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    liveStatus('● Live (reconnecting)');
  }
  // The hub ends a stream now and then (and on shutdown): go on from the last record seen.
  if (!ctl.signal.aborted && gen === state.gen && !live.paused) setTimeout(() => { if (gen === state.gen && !live.paused && live.ctl === ctl) connectLive(gen); }, 1000);
}

function liveEvent(ev, gen) {
  let id = '', type = 'message', data = '';
  for (const line of ev.split('\n')) {
    if (line.startsWith('id:')) id = line.slice(3).trim();
    else if (line.startsWith('event:')) type = line.slice(6).trim();
    else if (line.startsWith('data:')) data += line.slice(5).trim();
  }
  if (type !== 'record' || !data || gen !== state.gen) return;
  if (id) live.last = id;
  let r;
  try { r = JSON.parse(data); } catch (_) { return; }
  const tbody = $('rows');
  if (tbody.querySelector(`tr[data-id="${CSS.escape(r.id)}"]`)) return;
  const tr = row(r);
  tr.classList.add('arrived');
  tbody.prepend(tr);
  state.rows++;
  live.added++;
  while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
}

function toggleLive() {
  live.paused = !live.paused;
  if (live.paused) { stopLive(); liveStatus('▶ Resume live'); return; }
  connectLive(state.gen);
}

// More rows load when the "Load more" button scrolls into view.
const observer = new IntersectionObserver((entries) => {
  for (const en of entries) {
    if (en.isIntersecting) { observer.unobserve(en.target); loadRecords(false); }
  }
}, { root: null, rootMargin: '200px' });

function row(r) {
  let path = r.url;
  let host = r.host || '';
  try {
    const u = new URL(r.url);
    path = u.pathname + u.search;
    if (u.port && host) host += ':' + u.port; // the URL API leaves a scheme's default port out
  } catch (_) { /* keep the raw URL */ }
  const status = r.status ? String(r.status) : (r.kind === 'tcp' ? 'tcp' : '—');
  const tr = el('tr', { class: (r.failed ? 'failed' : '') + (r.id === state.selected ? ' selected' : ''), 'data-id': r.id },
    el('td', { class: 'c-time', title: r.start }, fmtClock(new Date(r.start))),
    el('td', { class: 'c-dir dir-' + r.direction, title: r.direction === 'in' ? 'inbound: a call to the service' : 'outbound: the service\'s call' }, r.direction === 'in' ? 'in' : 'out'),
    el('td', { class: 'c-svc', title: r.labels.service || '' }, r.labels.service || ''),
    el('td', { class: 'c-method' }, r.method || ''),
    el('td', { class: 'c-status s' + String(r.status || 0)[0], title: r.error || '' }, status),
    el('td', { class: 'c-host', title: host }, host),
    el('td', { class: 'c-path', title: r.url }, path),
    el('td', { class: 'c-dur num' }, fmtDur(r.durationUs)),
    el('td', { class: 'c-size num' }, fmtBytes(r.resSize)));
  tr.addEventListener('click', () => openDetail(r.id));
  return tr;
}

// ---- the record ----

async function openDetail(id) {
  state.selected = id;
  writeHash();
  for (const tr of document.querySelectorAll('#rows tr.selected')) tr.classList.remove('selected');
  const tr = document.querySelector(`#rows tr[data-id="${CSS.escape(id)}"]`);
  if (tr) tr.classList.add('selected');
  const panel = $('detail'), body = $('detail-body'), title = $('detail-title');
  panel.hidden = false;
  document.body.classList.add('detail-open'); // the list narrows to what identifies a row: method, path, status
  title.replaceChildren(el('span', { class: 'muted' }, 'Loading…'));
  body.replaceChildren();
  let rec;
  try {
    rec = await api('/api/v1/records/' + encodeURIComponent(id), snapParams());
  } catch (e) {
    title.replaceChildren(el('span', { class: 'error' }, e.message));
    return;
  }
  if (state.selected !== id) return;
  const h = rec.http;
  if (h) {
    title.replaceChildren(el('span', { class: 'method' }, h.req.method), h.req.url,
      h.res ? el('span', { class: 'status s' + String(h.res.status)[0] }, String(h.res.status) + (h.res.statusText ? ' ' + h.res.statusText : '')) : el('span', { class: 'status s5' }, 'no response'));
  } else {
    title.replaceChildren(el('span', { class: 'method' }, 'TCP'), (rec.net && rec.net.serverAddr) || '');
  }
  if (h) body.append(curlBlock(rec));
  // Request and response first, as in a browser's network panel; the overview (timing, TLS, labels) after.
  if (!h) body.append(...overview(rec));
  if (h) {
    body.append(section('Request', h.req.proto), headers(h.req.headers));
    const reqBody = el('div', {}, el('div', { class: 'note' }, 'Loading body…'));
    body.append(...[section('Request body', sizeNote(h.req.body)), bodyDownload(rec.id, 'request', h.req), reqBody].filter(Boolean));
    if (h.res) {
      body.append(section('Response', (h.res.proto || '') + ' ' + h.res.status + ' ' + (h.res.statusText || '')), headers(h.res.headers));
      const resBody = el('div', {}, el('div', { class: 'note' }, 'Loading body…'));
      body.append(...[section('Response body', sizeNote(h.res.body)), bodyDownload(rec.id, 'response', h.res), bodyImage(h.res), resBody].filter(Boolean));
      if (h.res.trailers && h.res.trailers.length) body.append(section('Trailers'), headers(h.res.trailers));
      showBody(id, 'res', resBody, h.grpc, h.res);
    }
    showBody(id, 'req', reqBody, h.grpc, h.req);
    if (h.messages && h.messages.length) {
      body.append(section('Messages', h.messages.length + (h.messagesTruncated ? '+ (more were not kept)' : '')), messages(h.messages));
    }
    body.append(...overview(rec));
  } else if (rec.tcp) {
    body.append(section('Streams', `${fmtBytes(rec.tcp.bytesUp)} up, ${fmtBytes(rec.tcp.bytesDown)} down` + (rec.tcp.truncated ? ', truncated' : '')), chunks(rec.tcp.chunks || []));
  }
  const raw = el('pre', { class: 'body' }, JSON.stringify(rec, null, 2));
  const toggle = el('button', { class: 'ghost' }, 'Show the record as JSON');
  raw.hidden = true;
  toggle.addEventListener('click', () => { raw.hidden = !raw.hidden; toggle.textContent = raw.hidden ? 'Show the record as JSON' : 'Hide the JSON'; });
  body.append(section('Record'), toggle, raw);
}

function closeDetail() {
  state.selected = '';
  $('detail').hidden = true;
  document.body.classList.remove('detail-open');
  for (const tr of document.querySelectorAll('#rows tr.selected')) tr.classList.remove('selected');
  writeHash();
}

// ---- copy as cURL ----

// shellQuote quotes s for a POSIX shell: in single quotes, each ' as '\''.
function shellQuote(s) { return "'" + String(s).replace(/'/g, "'\\''") + "'"; }

// base64Bytes decodes a record's base64 body data.
function base64Bytes(b64) {
  const bin = atob(b64 || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// curlOf is the curl command that sends the record's request again: method, URL, the headers as captured
// (less those curl sets itself), the body as text, or a note where it is binary or was cut at capture.
function curlOf(rec) {
  const q = rec.http.req;
  const parts = ['curl'];
  if (q.method && q.method !== 'GET') parts.push('-X', q.method);
  parts.push(shellQuote(q.url));
  for (const [name, value] of q.headers || []) {
    if (/^(content-length|host|connection|transfer-encoding|keep-alive|proxy-connection|upgrade|te)$/i.test(name)) continue;
    parts.push('-H', shellQuote(name + ': ' + value));
  }
  if ((q.proto || '').startsWith('HTTP/2')) parts.push('--http2');
  const notes = [];
  const data = q.body && q.body.data;
  if (data) {
    const bytes = base64Bytes(data);
    let text = null;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch (_) { /* binary */ }
    if (text !== null && !/[\u0000-\u0008\u000e-\u001f]/.test(text)) parts.push('--data-raw', shellQuote(text));
    else notes.push('# the body is binary: download it (Request body, Download) and add --data-binary @FILE');
  }
  if (q.body && q.body.truncated) notes.push(`# the body was cut at capture (${q.body.size} bytes sent): this sends what was kept`);
  return parts.join(' ') + (notes.length ? '\n' + notes.join('\n') : '');
}

// headerOf is a captured header's first value, any case.
function headerOf(hs, name) {
  for (const [n, v] of hs || []) if (n.toLowerCase() === name) return v;
  return '';
}

// bodyBlob is the body's bytes as captured (still compressed when it was), typed by its Content-Type.
function bodyBlob(part) {
  return new Blob([base64Bytes(part.body.data)], { type: headerOf(part.headers, 'content-type') || 'application/octet-stream' });
}

// bodyDownload is a link that saves a body's bytes as captured; null when nothing was kept.
function bodyDownload(id, side, part) {
  if (!part.body || !part.body.data) return null;
  const a = el('a', { class: 'download', download: `${id}-${side}.bin` }, 'Download the body as captured');
  a.href = URL.createObjectURL(bodyBlob(part));
  return el('div', { class: 'note' }, a);
}

// bodyImage shows an image body as the image (an <img> runs no script, SVG included), from a data: URL (the
// viewer's Content-Security-Policy allows no other source than itself); null for another body, a body cut at
// capture, or one still encoded.
const imageTypes = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp', 'image/x-icon', 'image/svg+xml'];
function bodyImage(part) {
  const ct = headerOf(part.headers, 'content-type').toLowerCase().split(';')[0].trim();
  if (!imageTypes.includes(ct) || !part.body || !part.body.data || part.body.truncated || headerOf(part.headers, 'content-encoding')) return null;
  return el('img', { class: 'body-image', alt: 'the response body, ' + ct, src: `data:${ct};base64,${part.body.data}` });
}

// curlBlock is the "Copy as cURL" button and the command it copies, shown too for a browser that refuses
// the clipboard.
function curlBlock(rec) {
  const cmd = el('pre', { class: 'body curl', id: 'curl-command' }, curlOf(rec));
  cmd.hidden = true;
  const btn = el('button', { type: 'button', class: 'ghost', id: 'copy-curl' }, 'Copy as cURL');
  btn.addEventListener('click', async () => {
    cmd.hidden = false;
    try {
      await navigator.clipboard.writeText(cmd.textContent);
      btn.textContent = 'Copied';
    } catch (_) {
      btn.textContent = 'Copy it from below';
    }
    setTimeout(() => { btn.textContent = 'Copy as cURL'; }, 2000);
  });
  return el('div', { class: 'curl-box' }, btn, cmd);
}

function section(title, small) {
  return el('h3', {}, title, small ? el('small', {}, small) : null);
}

function overview(rec) {
  const out = [];
  if (rec.error) out.push(el('h3', {}, 'Error'), el('div', { class: 'error-box' }, rec.error));
  const l = rec.labels || {}, n = rec.net || {};
  const facts = [
    ['id', rec.id],
    ['start', rec.start],
    ['duration', fmtDur(rec.durationUs) + (rec.ttfbUs ? ` (first byte after ${fmtDur(rec.ttfbUs)})` : '')],
    ['direction', rec.direction === 'in' ? 'inbound (a call to the service)' : 'outbound (the service\'s call)'],
    ['service', [l.service, l.namespace, l.cluster].filter(Boolean).join(' · ')],
    ['pod', l.pod], ['tenant', l.tenant],
    ['client', n.clientAddr], ['server', n.serverAddr + (n.serverHost && !String(n.serverAddr || '').startsWith(n.serverHost) ? ' (' + n.serverHost + ')' : '')],
    ['listener', n.proxy], ['connection', n.connId],
  ];
  out.push(section('Overview'), dl(facts));
  if (rec.durationUs > 0) {
    const t = el('div', { class: 'timing', title: `first byte ${fmtDur(rec.ttfbUs || 0)}, end ${fmtDur(rec.durationUs)}` });
    const ttfb = Math.min(100, 100 * (rec.ttfbUs || 0) / rec.durationUs);
    const a = el('div', { class: 'ttfb' }), b = el('div', { class: 'rest' });
    a.style.width = ttfb + '%';
    b.style.left = ttfb + '%'; b.style.right = '0';
    t.append(a, b);
    out.push(t, el('div', { class: 'note' }, 'light: waiting for the first byte · dark: the rest of the response'));
  }
  if (n.tls) {
    const t = n.tls, u = t.upstream;
    out.push(section('TLS'), dl([
      ['client side', [t.version, t.cipherSuite].filter(Boolean).join(', ')], ['SNI', t.sni], ['ALPN', t.alpn],
      ['upstream', u ? [u.version, u.cipherSuite, u.alpn && 'ALPN ' + u.alpn].filter(Boolean).join(', ') : ''],
    ]));
  }
  const g = rec.http && rec.http.grpc;
  if (g) {
    out.push(section('gRPC'), dl([
      ['method', g.service + '/' + g.method],
      ['status', g.status === undefined ? 'none (the call did not end normally)' : String(g.status) + (g.status === 0 ? ' OK' : '')],
      ['message', g.statusMessage], ['encoding', g.encoding],
    ]));
  }
  if (rec.tags && Object.keys(rec.tags).length) out.push(section('Tags'), dl(Object.entries(rec.tags)));
  if (rec.redactions && rec.redactions.length) out.push(section('Redacted by'), el('div', { class: 'mono' }, rec.redactions.join(', ')));
  return out;
}

function dl(pairs) {
  const d = el('dl', { class: 'facts' });
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === '') continue;
    d.append(el('dt', {}, k), el('dd', {}, v));
  }
  return d;
}

function headers(hs) {
  if (!hs || !hs.length) return el('div', { class: 'note' }, 'no headers');
  return el('table', { class: 'headers' }, el('tbody', {}, hs.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, v)))));
}

function sizeNote(b) {
  if (!b) return '';
  return fmtBytes(b.size) + (b.truncated ? ', captured in part' : '');
}

async function showBody(id, side, box, grpc, part) {
  try {
    const v = await api(`/api/v1/records/${encodeURIComponent(id)}/body/${side}`, snapParams());
    box.replaceChildren(...bodyModes(v, grpc, part, side));
  } catch (e) {
    box.replaceChildren(el('div', { class: 'note warn' }, e.message));
  }
}

// bodyModes shows a body three ways, as a browser's network panel does: Pretty (decoded: gzip undone, JSON
// indented, binary as a hex dump), Raw (the bytes as captured, as text) and Hex (the bytes as captured). The
// modes are offered only when bytes were captured (not for gRPC, whose messages are shown below).
const HEX_LIMIT = 64 << 10;
function bodyModes(v, grpc, part, side) {
  const data = part && part.body && part.body.data;
  if (grpc || !data) return bodyView(v, grpc);
  const view = el('div', { class: 'body-view' });
  const modes = {
    pretty: () => bodyView(v, grpc),
    raw: () => {
      const b = base64Bytes(data);
      if (!printable(b)) return [el('div', { class: 'note' }, 'the bytes as captured are not text' + (v.encoding ? ` (${v.encoding})` : '') + ': see Hex')];
      return [el('pre', { class: 'body body-raw' }, new TextDecoder().decode(b))];
    },
    hex: () => {
      const b = base64Bytes(data);
      const out = [el('pre', { class: 'body hex body-hex' }, hexdump(b.subarray(0, HEX_LIMIT)))];
      if (b.length > HEX_LIMIT) out.push(el('div', { class: 'note' }, `first ${fmtBytes(HEX_LIMIT)} of ${fmtBytes(b.length)} captured shown`));
      return out;
    },
  };
  const bar = el('div', { class: 'body-modes', role: 'tablist' });
  const pick = (m) => {
    for (const b of bar.children) {
      const on = b.dataset.mode === m;
      b.classList.toggle('active', on);
      b.setAttribute('aria-selected', on ? 'true' : 'false');
    }
    view.replaceChildren(...modes[m]());
  };
  for (const [m, label] of [['pretty', 'Pretty'], ['raw', 'Raw'], ['hex', 'Hex']]) {
    const b = el('button', { type: 'button', class: 'mode', role: 'tab', 'data-mode': m, id: `${side}-body-${m}` }, label);
    b.addEventListener('click', () => pick(m));
    bar.append(b);
  }
  pick('pretty');
  return [bar, view];
}

function bodyView(v, grpc) {
  const out = [];
  const notes = [];
  if (v.encoding) notes.push('decoded from ' + v.encoding);
  if (v.contentType) notes.push(v.contentType);
  if (v.truncated) notes.push(`${fmtBytes(v.captured)} of ${fmtBytes(v.size)} captured`);
  if (notes.length) out.push(el('div', { class: 'note' }, notes.join(' · ')));
  if (v.note) out.push(el('div', { class: 'note warn' }, v.note));
  switch (v.kind) {
    case 'empty':
      out.push(el('div', { class: 'note' }, grpc ? 'the messages are below' : (v.size ? 'not captured' : 'empty')));
      break;
    case 'json':
    case 'text':
      out.push(el('pre', { class: 'body body-' + v.kind }, v.text));
      break;
    default:
      out.push(el('pre', { class: 'body hex' }, hexdump(b64bytes(v.data || ''))));
      if (v.bytes > (v.data ? b64bytes(v.data).length : 0)) out.push(el('div', { class: 'note' }, `first ${fmtBytes(b64bytes(v.data || '').length)} of ${fmtBytes(v.bytes)} shown`));
  }
  return out;
}

function messages(ms) {
  const ul = el('ul', { class: 'msgs' });
  ms.forEach((m, i) => {
    const kind = m.opcode ? ({ 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' }[m.opcode] || 'opcode ' + m.opcode) : '';
    const head = el('div', { class: 'msg-head' }, `#${i + 1} ${m.up ? '↑ client to server' : '↓ server to client'} · at ${fmtDur(m.atUs)} · ${fmtBytes(m.size)}`
      + (kind ? ' · ' + kind : '') + (m.compressed ? ' · compressed' : '') + (m.truncated ? ' · captured in part' : ''));
    const li = el('li', {}, head);
    const data = b64bytes(m.data || '');
    if (m.fields && m.fields.length) {
      li.append(fields(m.fields));
    } else if (data.length && m.opcode === 1) {
      li.append(el('pre', { class: 'body' }, new TextDecoder().decode(data)));
    } else if (data.length) {
      li.append(el('pre', { class: 'body hex' }, hexdump(data)));
    }
    ul.append(li);
  });
  return ul;
}

// fields shows protobuf fields decoded without a schema.
function fields(fs) {
  const ul = el('ul', { class: 'fields' });
  for (const f of fs) {
    const li = el('li', {}, el('span', { class: 'fnum' }, String(f.n)), el('span', { class: 'fwire' }, ` (${f.wire}): `));
    if (f.message) {
      li.append(el('span', { class: 'fwire' }, '{'), fields(f.message), el('span', { class: 'fwire' }, '}'));
    } else if (f.string !== undefined) {
      li.append(el('span', { class: 'fval' }, JSON.stringify(f.string)));
    } else if (f.bytes !== undefined) {
      li.append(el('span', { class: 'fval' }, 'bytes ' + hexInline(b64bytes(f.bytes))));
    } else if (f.uint !== undefined) {
      li.append(el('span', { class: 'fval' }, String(f.uint)));
    }
    ul.append(li);
  }
  return ul;
}

function chunks(cs) {
  const ul = el('ul', { class: 'msgs' });
  for (const c of cs.slice(0, 200)) {
    const data = b64bytes(c.data || '');
    const text = printable(data) ? new TextDecoder().decode(data) : null;
    ul.append(el('li', {}, el('div', { class: 'msg-head' }, `${c.up ? '↑ client to server' : '↓ server to client'} · at ${fmtDur(c.atUs)} · ${fmtBytes(data.length)}`),
      el('pre', { class: text === null ? 'body hex' : 'body' }, text === null ? hexdump(data) : text)));
  }
  if (cs.length > 200) ul.append(el('li', { class: 'note' }, `${cs.length - 200} more reads not shown`));
  return ul;
}

// ---- service map ----

async function loadMap(gen) {
  const box = $('map');
  box.replaceChildren(el('div', { class: 'map-empty' }, 'Loading…'));
  try {
    const m = await api('/api/v1/map', filterParams());
    if (gen !== state.gen) return;
    drawMap(box, m);
  } catch (e) {
    if (gen === state.gen) box.replaceChildren(el('div', { class: 'map-empty error' }, e.message));
  }
}

function drawMap(box, m) {
  if (!m.services.length) { box.replaceChildren(el('div', { class: 'map-empty' }, 'No traffic in this range.')); return; }
  // Two columns: the captured services, and what they call. A host that is
  // a captured service is drawn as that service, in the second column too.
  const targets = [...new Set(m.edges.map((e) => e.toService ? 'svc:' + e.toService : 'host:' + e.to))].sort();
  const services = m.services.map((s) => s.name).sort();
  const NW = 230, NH = 44, GAP = 14, X1 = 10, X2 = 520, TOP = 30;
  const rows = Math.max(services.length, targets.length);
  const H = TOP + rows * (NH + GAP) + 10, W = X2 + NW + 10;
  const s = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'service map' });
  s.append(svg('text', { class: 'col-title', x: X1, y: 16 }, 'Services'), svg('text', { class: 'col-title', x: X2, y: 16 }, 'What they call'));
  const pos = {};
  const byName = Object.fromEntries(m.services.map((x) => [x.name, x]));
  services.forEach((name, i) => { pos['L' + name] = { x: X1, y: TOP + i * (NH + GAP) }; });
  targets.forEach((t, i) => { pos['R' + t] = { x: X2, y: TOP + i * (NH + GAP) }; });
  const maxCount = Math.max(1, ...m.edges.map((e) => e.count));
  const labelled = m.edges.length <= 12; // more labels than that only overlap: hover an edge instead
  const into = {};
  for (const e of m.edges) {
    const k = e.toService ? 'svc:' + e.toService : 'host:' + e.to;
    into[k] = into[k] || { count: 0, errors: 0 };
    into[k].count += e.count; into[k].errors += e.errors;
  }
  for (const e of m.edges) {
    const a = pos['L' + e.from], b = pos['R' + (e.toService ? 'svc:' + e.toService : 'host:' + e.to)];
    if (!a || !b) continue;
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    const path = svg('path', { class: 'edge' + (e.errorRate > 0.05 ? ' bad' : ''), 'data-from': e.from, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'stroke-width': 1.5 + 6 * e.count / maxCount });
    const tip = `${e.from || '(unlabelled)'} → ${e.to}: ${e.count} calls, ${fmtPct(e.errorRate)} failed, p95 ${fmtDur(e.p95Us)}`;
    path.append(svg('title', {}, tip + (e.from ? '; click for these calls' : '')));
    s.append(path);
    if (e.from) {
      // A wide transparent twin takes the clicks a thin curve would miss:
      // the traffic list of exactly this edge's calls (its outbound records
      // from that service to that host).
      const hit = svg('path', { class: 'edge-hit', 'data-from': e.from, 'data-to': e.to, d: path.getAttribute('d') });
      hit.append(svg('title', {}, tip + '; click for these calls'));
      hit.addEventListener('click', () => {
        for (const k of FILTERS) state.f[k] = '';
        Object.assign(state.f, { service: e.from, direction: 'out', host: e.to, failed: false });
        state.view = 'traffic'; showFilters(); showView(); writeHash(); refresh();
      });
      s.append(hit);
    }
    if (labelled) s.append(svg('text', { class: 'edge-label', 'data-from': e.from, x: mx, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, `${fmtCount(e.count)} · p95 ${fmtDur(e.p95Us)}`));
  }
  const node = (p, cls, title, sub, tip) => {
    const g = svg('g', { class: 'node ' + cls, transform: `translate(${p.x},${p.y})` });
    g.append(svg('rect', { width: NW, height: NH, rx: 8 }), svg('text', { x: 10, y: 18 }, clip(title, 30)), svg('text', { class: 'sub', x: 10, y: 34 }, sub), svg('title', {}, tip));
    s.append(g);
    return g;
  };
  for (const name of services) {
    const x = byName[name];
    const g = node(pos['L' + name], 'svc', name || '(unlabelled)', `in ${fmtCount(x.inbound.count)} · out ${fmtCount(x.outbound.count)} · ${fmtPct((x.inbound.errors + x.outbound.errors) / Math.max(1, x.inbound.count + x.outbound.count))} failed`,
      `${name}: click to show only its calls, double-click for its traffic`);
    g.addEventListener('click', () => {
      const on = !g.classList.contains('focus');
      for (const n of s.querySelectorAll('.node.focus')) n.classList.remove('focus');
      g.classList.toggle('focus', on);
      for (const e of s.querySelectorAll('.edge, .edge-label')) e.classList.toggle('dim', on && e.getAttribute('data-from') !== name);
    });
    g.addEventListener('dblclick', () => { state.f.service = name; state.view = 'traffic'; showFilters(); showView(); writeHash(); refresh(); });
  }
  for (const t of targets) {
    const isSvc = t.startsWith('svc:'), name = t.slice(t.indexOf(':') + 1);
    const c = into[t] || { count: 0, errors: 0 };
    node(pos['R' + t], isSvc ? 'svc' : 'host', name, `${isSvc ? 'captured service' : 'external host'} · called ${fmtCount(c.count)} · ${fmtPct(c.errors / Math.max(1, c.count))} failed`, name);
  }
  box.replaceChildren(s, el('p', { class: 'note' }, 'Edges: the outbound calls of each service; width by count, red above 5% failed. Click a service to show only its calls; hover an edge for its numbers, click it for its calls.'));
}

// ---- views ----

function showView() {
  for (const v of VIEWS) {
    $('view-' + v).hidden = state.view !== v;
    $('tab-' + v).classList.toggle('active', state.view === v);
  }
  const snap = state.view === 'snapshots' || state.view === 'reports';
  // The map shows the filtered traffic's services but has no rows to filter or export.
  $('filters').hidden = snap || state.view === 'map';
  $('har').hidden = state.view !== 'traffic';
  $('save-panel').hidden = true;
  document.querySelector('.services').hidden = snap;
  const banner = $('snapshot-banner');
  banner.hidden = !state.snapshot || snap;
  banner.replaceChildren(el('span', {}, 'Records of snapshot '), el('b', {}, state.snapshot), el('span', {}, ' (immutable; the filters narrow it) '),
    el('button', { type: 'button', class: 'ghost', id: 'snapshot-leave', onclick: leaveSnapshot }, 'Back to live traffic'));
}

function switchView(view) {
  if (state.view === view) return;
  if (!$('detail').hidden) closeDetail(); // a record's detail belongs to the traffic list
  state.view = view;
  showView(); writeHash(); refresh();
}

// ---- HAR ----

async function downloadHAR() {
  const btn = $('har');
  btn.disabled = true;
  const was = btn.textContent;
  btn.textContent = 'Preparing…';
  try {
    const res = await fetch('/api/v1/export/har?' + filterParams().toString(), { headers: { Authorization: 'Bearer ' + state.key } });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || res.statusText);
    const blob = await res.blob();
    const name = (/filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '') || [])[1] || 'tapwire.har';
    const a = el('a', { href: URL.createObjectURL(blob), download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    alert('HAR export failed: ' + e.message);
  } finally {
    btn.disabled = false;
    btn.textContent = was;
  }
}

// ---- formatting ----

function fmtCount(n) { return Number(n || 0).toLocaleString('en-US'); }
function plural(n, word) { return `${fmtCount(n)} ${word}${n === 1 ? '' : 's'}`; }
function fmtPct(x) { return x > 0 && x < 0.001 ? '<0.1%' : (100 * (x || 0)).toFixed(x >= 0.1 || !x ? 0 : 1) + '%'; }
function fmtDur(us) {
  us = Number(us || 0);
  if (us < 1000) return us + ' µs';
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + ' ms';
  return (us / 1e6).toFixed(2) + ' s';
}
function fmtBytes(n) {
  n = Number(n || 0);
  if (n < 1024) return n + ' B';
  if (n < 1 << 20) return (n / 1024).toFixed(1) + ' KiB';
  return (n / (1 << 20)).toFixed(1) + ' MiB';
}
const pad = (n, w = 2) => String(n).padStart(w, '0');
function fmtClock(d) {
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const today = new Date();
  return d.toDateString() === today.toDateString() ? t : `${d.getMonth() + 1}/${d.getDate()} ${t}`;
}
// zoneLabel names the browser's time zone, in which every time is shown.
function zoneLabel() {
  const off = -new Date().getTimezoneOffset();
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone || '';
  const sign = off < 0 ? '-' : '+';
  const hm = `${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return off === 0 ? 'UTC' : `UTC${sign}${hm}` + (name ? ` ${name}` : '');
}
function fmtTime(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function fmtRange(a, b) { return `${fmtTime(new Date(a))} – ${fmtTime(new Date(b))}`; }
function clip(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + '…' : s; }

function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
function printable(b) {
  for (const c of b) if ((c < 0x20 && c !== 9 && c !== 10 && c !== 13) || c === 0x7f) return false;
  try { new TextDecoder('utf-8', { fatal: true }).decode(b); return true; } catch (_) { return false; }
}
function hexdump(b) {
  const lines = [];
  for (let off = 0; off < b.length; off += 16) {
    const chunk = b.slice(off, off + 16);
    const hex = [...chunk].map((c) => c.toString(16).padStart(2, '0')).join(' ');
    const asc = [...chunk].map((c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.')).join('');
    lines.push(off.toString(16).padStart(8, '0') + '  ' + hex.padEnd(48) + ' ' + asc);
  }
  return lines.join('\n');
}
function hexInline(b) { return [...b.slice(0, 64)].map((c) => c.toString(16).padStart(2, '0')).join(' ') + (b.length > 64 ? ' …' : ''); }

// ---- wiring ----

document.addEventListener('DOMContentLoaded', async () => {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', () => signOut(''));
  $('filters').addEventListener('input', onFilter);
  $('filters').addEventListener('change', onFilter);
  $('filters').addEventListener('submit', (e) => e.preventDefault());
  $('reset').addEventListener('click', resetFilters);
  $('har').addEventListener('click', downloadHAR);
  $('live').addEventListener('click', toggleLive);
  $('detail-close').addEventListener('click', closeDetail);
  $('tab-traffic').addEventListener('click', () => switchView('traffic'));
  $('tab-map').addEventListener('click', () => switchView('map'));
  $('tab-snapshots').addEventListener('click', () => switchView('snapshots'));
  $('tab-reports').addEventListener('click', () => switchView('reports'));
  setupSnapshots({ api, el, state, filter: filterBody, openSnapshot, fmtCount, fmtTime });
  setupReports({ api, el, state, openSnapshot, writeHash, fmtCount, fmtTime });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !$('detail').hidden) closeDetail(); });
  $('time-zone').textContent = zoneLabel();
  $('time-zone').title = 'Times are shown in this browser\'s time zone';
  shareKey();
  const given = keyFromAddress();
  if (given) {
    $('key').value = given;
    await signIn(new Event('submit')); // checks it as a typed key is checked, and says why when it is refused
    if (!state.key) {
      $('key').value = '';
      $('app').hidden = true;
      $('signin').hidden = false;
    }
    return;
  }
  if (!state.key) state.key = await askTabs();
  if (!state.key) { signOut('', false); return; }
  try {
    const who = await api('/api/v1/whoami');
    sessionStorage.setItem(KEY, state.key);
    start(who);
  } catch (e) {
    signOut(e.status === 401 || e.status === 403 ? '' : 'The hub does not answer: ' + e.message, false);
  }
});
