// Tapwire's viewer: the Snapshots page (the tenant's snapshots, one
// snapshot's endpoints counted, its records opened as traffic) and "Save as
// snapshot" of the traffic page's filters. A module of app.js, which hands
// it what it shares (the API, el, the filters) through setup.
//
// As in app.js, every captured value (names, hosts, routes) reaches the page
// as a text node, never as markup.

const INGEST = 'tapwire.ingest'; // the ingest key "Save as snapshot" uses, this tab only
const $ = (id) => document.getElementById(id);

let app; // {api, el, state, filter, openSnapshot, fmtCount, fmtTime}

export function setupSnapshots(shared) {
  app = shared;
  $('save-snapshot').addEventListener('click', toggleSave);
  $('save-form').addEventListener('submit', save);
  $('save-cancel').addEventListener('click', () => { $('save-panel').hidden = true; });
}

// loadSnapshots fills the Snapshots page: the list, newest first.
export async function loadSnapshots(gen) {
  const { el, api } = app;
  const box = $('snapshots'), detail = $('snapshot-detail');
  detail.replaceChildren();
  try {
    const { snapshots } = await api('/api/v1/snapshots');
    if (gen !== app.state.gen) return;
    if (!snapshots.length) {
      box.replaceChildren(el('p', { class: 'note' }, 'No snapshots yet: choose filters on the Traffic page and "Save as snapshot", or push files with speedctl snapshot push.'));
      return;
    }
    const tbody = el('tbody');
    for (const s of snapshots) {
      tbody.append(el('tr', { 'data-id': s.id, onclick: () => showSnapshot(s.id) },
        el('td', {}, s.name), el('td', { class: 'mono' }, s.id), el('td', {}, app.fmtTime(new Date(s.created))),
        el('td', {}, s.source), el('td', { class: 'num' }, app.fmtCount(s.records))));
    }
    box.replaceChildren(el('table', { class: 'records snapshots' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Name'), el('th', {}, 'Id'), el('th', {}, 'Created'), el('th', {}, 'Source'), el('th', { class: 'num' }, 'Records'))),
      tbody));
  } catch (e) {
    if (gen === app.state.gen) box.replaceChildren(el('div', { class: 'note warn' }, e.message));
  }
}

// showSnapshot shows one snapshot: what it was cut from, its endpoints
// with their counts, and a button that opens its records as traffic.
async function showSnapshot(id) {
  const { el, api } = app;
  const box = $('snapshot-detail');
  for (const tr of document.querySelectorAll('#snapshots tr.selected')) tr.classList.remove('selected');
  document.querySelector(`#snapshots tr[data-id="${CSS.escape(id)}"]`)?.classList.add('selected');
  box.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  let s;
  try {
    s = await api('/api/v1/snapshots/' + encodeURIComponent(id));
  } catch (e) {
    box.replaceChildren(el('div', { class: 'note warn' }, e.message));
    return;
  }
  const made = s.filter ? Object.entries(s.filter).map(([k, v]) => `${k}=${v}`).join(' ') || 'all records' : 'pushed from files';
  const when = s.from || s.to ? `${s.from ? app.fmtTime(new Date(s.from)) : '…'} – ${s.to ? app.fmtTime(new Date(s.to)) : '…'}` : 'any time';
  const rows = el('tbody');
  for (const e of s.counts.endpoints) {
    rows.append(el('tr', {}, el('td', {}, e.direction), el('td', {}, e.method || '-'), el('td', {}, e.host || '-'),
      el('td', { class: 'mono' }, e.route || '-'), el('td', { class: 'num' }, app.fmtCount(e.count))));
  }
  box.replaceChildren(
    el('div', { class: 'snapshot-head' },
      el('h2', {}, s.name),
      el('button', { id: 'snapshot-open', onclick: () => app.openSnapshot(s) }, 'Open its records')),
    el('p', { class: 'muted' }, `${s.id} · ${app.fmtCount(s.records)} records · ${made} · ${when}`),
    el('p', { class: 'muted' }, ['directions', 'services', 'hosts'].map((k) =>
      k + ': ' + (s.counts[k].map((c) => `${c.name || '-'} ${c.count}`).join(', ') || 'none')).join(' · ')),
    el('table', { class: 'records endpoints' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Dir'), el('th', {}, 'Method'), el('th', {}, 'Host'), el('th', {}, 'Route'), el('th', { class: 'num' }, 'Records'))),
      rows));
}

// ---- Save as snapshot ----

function toggleSave() {
  const panel = $('save-panel');
  panel.hidden = !panel.hidden;
  if (panel.hidden) return;
  $('save-msg').replaceChildren();
  $('save-key-field').hidden = !!sessionStorage.getItem(INGEST);
  $('save-name').focus();
}

async function save(ev) {
  ev.preventDefault();
  const { el } = app;
  const msg = $('save-msg');
  const name = $('save-name').value.trim();
  const key = sessionStorage.getItem(INGEST) || $('save-key').value.trim();
  if (!name) { msg.replaceChildren(el('span', { class: 'error' }, 'Give the snapshot a name.')); return; }
  if (!key) { msg.replaceChildren(el('span', { class: 'error' }, 'Snapshots are made with an ingest key of the tenant (the forwarder\'s SPEEDSCALE_API_KEY).')); return; }
  const { from, to, ...filter } = app.filter();
  msg.replaceChildren(el('span', { class: 'muted' }, 'Saving…'));
  const res = await fetch('/api/v1/snapshots', {
    method: 'POST', cache: 'no-store',
    headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name, filter, from, to }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    if (res.status === 401 || res.status === 403) sessionStorage.removeItem(INGEST);
    $('save-key-field').hidden = !!sessionStorage.getItem(INGEST);
    msg.replaceChildren(el('span', { class: 'error' }, body.error || res.statusText));
    return;
  }
  sessionStorage.setItem(INGEST, key);
  $('save-key').value = '';
  $('save-key-field').hidden = true;
  msg.replaceChildren(el('span', {}, `Saved ${body.id} (${app.fmtCount(body.records)} records). `),
    el('button', { type: 'button', class: 'ghost', id: 'save-open', onclick: () => app.openSnapshot(body) }, 'Open it'));
}
