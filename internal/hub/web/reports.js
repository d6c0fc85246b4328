// Tapwire's viewer: the Reports page. The tenant's replay reports (speedctl
// replay --push), one report per endpoint with its answers, and one answer
// beside its recording: status, headers, and the JSON body diffed field by
// field. A module of app.js, which hands it what it shares through setup.
//
// As in app.js, every value (the report's and the recording's) reaches the
// page as a text node, never as markup.

const $ = (id) => document.getElementById(id);

let app; // {api, el, state, openSnapshot, writeHash, fmtCount, fmtTime}

export function setupReports(shared) { app = shared; }

const pct = (n, of) => (of ? (Math.floor((1000 * n) / of) / 10).toFixed(1) + '%' : '-');
const verdict = (passed) => app.el('span', { class: 'verdict ' + (passed ? 'pass' : 'fail') }, passed ? 'passed' : 'failed');

// loadReports fills the Reports page: the list, newest first, and the
// report the address names.
export async function loadReports(gen) {
  const { el, api } = app;
  const box = $('reports');
  $('report-detail').replaceChildren();
  try {
    const { reports } = await api('/api/v1/reports');
    if (gen !== app.state.gen) return;
    if (!reports.length) {
      box.replaceChildren(el('p', { class: 'note' }, 'No reports yet: run speedctl replay with --push.'));
      return;
    }
    const tbody = el('tbody');
    for (const r of reports) {
      tbody.append(el('tr', { 'data-id': r.id, onclick: () => showReport(r.id) },
        el('td', {}, app.fmtTime(new Date(r.created))), el('td', { class: 'mono' }, r.target), el('td', { class: 'mono' }, r.snapshot || '-'),
        el('td', { class: 'num' }, app.fmtCount(r.sent)), el('td', { class: 'num' }, pct(r.statusMatched, r.sent)),
        el('td', { class: 'num' }, pct(r.bodyMatched, r.bodyCompared)), el('td', {}, verdict(r.passed))));
    }
    box.replaceChildren(el('table', { class: 'records report-list' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Created'), el('th', {}, 'Target'), el('th', {}, 'Snapshot'), el('th', { class: 'num' }, 'Sent'),
        el('th', { class: 'num' }, 'Status ok'), el('th', { class: 'num' }, 'Body ok'), el('th', {}, 'Result'))),
      tbody));
    if (app.state.report) showReport(app.state.report);
  } catch (e) {
    if (gen === app.state.gen) box.replaceChildren(el('div', { class: 'note warn' }, e.message));
  }
}

// showReport shows one report: its verdict and assertions, and a table of
// its endpoints; a click on an endpoint lists its answers.
async function showReport(id) {
  const { el, api } = app;
  const box = $('report-detail');
  app.state.report = id;
  app.writeHash();
  for (const tr of document.querySelectorAll('#reports tr.selected')) tr.classList.remove('selected');
  document.querySelector(`#reports tr[data-id="${CSS.escape(id)}"]`)?.classList.add('selected');
  box.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  let r;
  try {
    r = await api('/api/v1/reports/' + encodeURIComponent(id));
  } catch (e) {
    box.replaceChildren(el('div', { class: 'note warn' }, e.message));
    return;
  }
  const rep = r.report || {};
  const answers = rep.answers || [];
  const rows = el('tbody');
  for (const e of rep.endpoints || []) {
    const differing = answers.filter((a) => a.endpoint === e.endpoint && (a.fields || a.error)).length;
    rows.append(el('tr', { 'data-endpoint': e.endpoint, class: differing ? 'differs' : '', onclick: () => showAnswers(r, e.endpoint) },
      el('td', { class: 'mono' }, e.endpoint), el('td', { class: 'num' }, app.fmtCount(e.sent)),
      el('td', { class: 'num' }, pct(e.status_matched, e.sent)), el('td', { class: 'num' }, pct(e.body_matched, e.body_compared)),
      el('td', { class: 'num' }, app.fmtCount(e.errors)), el('td', { class: 'num' }, (e.latency_ms?.p50 ?? 0).toFixed(1)),
      el('td', { class: 'num' }, (e.latency_ms?.p99 ?? 0).toFixed(1)), el('td', { class: 'num' }, app.fmtCount(differing))));
  }
  const snap = rep.snapshot
    ? el('button', { type: 'button', class: 'ghost', id: 'report-snapshot', onclick: () => openSnapshot(rep.snapshot) }, 'Open snapshot ' + rep.snapshot)
    : el('span', { class: 'muted' }, 'replayed from files');
  box.replaceChildren(...[
    el('div', { class: 'snapshot-head' }, el('h2', {}, rep.target || r.target), verdict(r.passed), snap),
    el('p', { class: 'muted' }, `${r.id} · ${app.fmtTime(new Date(r.created))} · ${app.fmtCount(rep.sent)} sent, ${app.fmtCount(rep.answered)} answered, ` +
      `${app.fmtCount(rep.errors)} errors · ${rep.rps ?? 0} req/s · p50 ${rep.latency_ms?.p50 ?? 0} ms, p99 ${rep.latency_ms?.p99 ?? 0} ms`),
    el('ul', { class: 'assertions' }, (rep.assertions || []).map((a) =>
      el('li', { class: a.failed ? 'fail' : 'pass' }, `${a.failed ? '✗' : '✓'} fail if ${a.expr}: measured ${a.value}`))),
    el('table', { class: 'records endpoints' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Endpoint'), el('th', { class: 'num' }, 'Sent'), el('th', { class: 'num' }, 'Status ok'),
        el('th', { class: 'num' }, 'Body ok'), el('th', { class: 'num' }, 'Errors'), el('th', { class: 'num' }, 'p50 ms'),
        el('th', { class: 'num' }, 'p99 ms'), el('th', { class: 'num' }, 'Differ'))),
      rows),
    rep.answers_left_out ? el('p', { class: 'note' }, `${app.fmtCount(rep.answers_left_out)} more requests were sent; the report keeps the first 10,000 answers.`) : null,
    el('div', { id: 'report-answers' }),
    el('div', { id: 'report-diff' })].filter(Boolean));
  const first = (rep.diffs || [])[0];
  if (first) showAnswers(r, first.endpoint);
}

async function openSnapshot(id) {
  try {
    app.openSnapshot(await app.api('/api/v1/snapshots/' + encodeURIComponent(id)));
  } catch (e) {
    $('report-diff').replaceChildren(app.el('div', { class: 'note warn' }, `Snapshot ${id}: ${e.message}`));
  }
}

// showAnswers lists an endpoint's answers, those that differed first.
function showAnswers(r, endpoint) {
  const { el } = app;
  for (const tr of document.querySelectorAll('#report-detail tr.selected')) tr.classList.remove('selected');
  document.querySelector(`#report-detail tr[data-endpoint="${CSS.escape(endpoint)}"]`)?.classList.add('selected');
  const list = (r.report.answers || []).filter((a) => a.endpoint === endpoint);
  list.sort((a, b) => Number(!!(b.fields || b.error)) - Number(!!(a.fields || a.error)));
  const tbody = el('tbody');
  for (const a of list) {
    const what = a.error ? 'error: ' + a.error : a.fields ? a.fields.map((f) => f.field).join(', ') : 'matched';
    tbody.append(el('tr', { 'data-record': a.record, class: a.fields || a.error ? 'differs' : '', onclick: () => showDiff(r, a) },
      el('td', { class: 'mono' }, a.request), el('td', { class: 'num' }, a.status || '-'), el('td', {}, what)));
  }
  $('report-answers').replaceChildren(el('h3', {}, `${endpoint}: ${list.length} answers`),
    el('table', { class: 'records answers' }, el('thead', {}, el('tr', {}, el('th', {}, 'Request'), el('th', { class: 'num' }, 'Status'), el('th', {}, 'Differences'))), tbody));
  $('report-diff').replaceChildren();
}

// recorded fetches an answer's recorded record and its response body: from
// the report's snapshots, else from the traffic.
async function recorded(rep, id) {
  const places = [...new Set([rep.snapshot, ...(rep.snapshots || [])].filter(Boolean)), ''];
  let last;
  for (const snap of places) {
    const p = new URLSearchParams(snap ? { snapshot: snap } : {});
    try {
      const rec = await app.api('/api/v1/records/' + encodeURIComponent(id), p);
      const body = await app.api('/api/v1/records/' + encodeURIComponent(id) + '/body/res', p).catch(() => null);
      return { rec, body, snap };
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

// showDiff shows one answer beside its recording.
async function showDiff(r, a) {
  const { el } = app;
  const box = $('report-diff');
  for (const tr of document.querySelectorAll('#report-answers tr.selected')) tr.classList.remove('selected');
  document.querySelector(`#report-answers tr[data-record="${CSS.escape(a.record)}"]`)?.classList.add('selected');
  box.replaceChildren(el('p', { class: 'muted' }, 'Loading the recording…'));
  let got = null, note = '';
  try {
    got = await recorded(r.report, a.record);
  } catch (e) {
    note = `The recorded exchange ${a.record} is not in the hub (${e.message}).`;
  }
  const res = got?.rec?.http?.res;
  const recText = got?.body?.text ?? '';
  const live = a.live || {};
  let liveText = live.body || '';
  if (live.body_base64) liveText = '(binary, base64) ' + liveText;
  const liveHeaders = Object.entries(live.headers || {}).flatMap(([k, vs]) => vs.map((v) => [k, v]));
  const fields = a.fields || [];
  const changed = new Set(fields.filter((f) => f.field.startsWith('header.')).map((f) => f.field.slice(7)));
  const hdrs = (hs) => el('table', { class: 'headers' }, el('tbody', {}, hs.map(([k, v]) =>
    el('tr', { class: changed.has(k.toLowerCase()) ? 'changed' : '' }, el('td', {}, k), el('td', {}, v)))));
  let recBody, liveBody;
  try {
    const rv = JSON.parse(recText), lv = JSON.parse(live.body_base64 ? '' : live.body);
    recBody = jsonSide(rv, lv, 'removed');
    liveBody = jsonSide(lv, rv, 'added');
  } catch (_) {
    recBody = el('pre', { class: 'body-text' }, recText || '(no body)');
    liveBody = el('pre', { class: 'body-text' }, liveText || (a.error ? '' : '(no body)'));
  }
  const statusCls = res && res.status !== a.status ? 'changed' : '';
  const side = (title, status, where, hs, body, extra) => el('div', { class: 'diff-side' },
    el('h3', {}, title), el('p', { class: 'muted' }, where),
    el('div', { class: 'diff-status ' + statusCls }, 'status ' + (status || '-')),
    el('h4', {}, 'Headers'), hs, el('h4', {}, 'Body'), body, extra);
  const where = got ? (got.snap ? 'from snapshot ' + got.snap : 'from the traffic') + ' · record ' + a.record : note;
  const cut = live.body_cut ? el('p', { class: 'note' }, `The report kept ${app.fmtCount((live.body || '').length)} of the live body's ${app.fmtCount(live.body_size)} bytes.`) : null;
  box.replaceChildren(...[
    el('h3', { class: 'mono' }, a.request),
    fields.length ? el('ul', { class: 'fields-diff' }, fields.map((f) => el('li', {}, el('b', {}, f.field), `: recorded ${f.recorded}, live ${f.live}`))) : null,
    el('div', { class: 'diff' },
      side('Recorded', res?.status, where, hdrs(res?.headers || []), recBody, null),
      side('Live', a.error ? 'error: ' + a.error : a.status, a.live ? 'as the target answered' : 'matched: the report keeps the live side of answers that differ',
        hdrs(liveHeaders), liveBody, cut))].filter(Boolean));
}

// jsonSide renders v, indented, marking what differs from other: members
// and items missing there with cls (removed on the recorded side, added
// on the live one), and values that changed.
function jsonSide(v, other, cls) {
  const { el } = app;
  const pre = el('pre', { class: 'json-diff' });
  const line = (depth, parts, mark) => pre.append(el('span', { class: 'line ' + (mark || '') }, '  '.repeat(depth), ...parts, '\n'));
  const isObj = (x) => x !== null && typeof x === 'object';
  const walk = (x, o, depth, label, mark, comma) => {
    const key = label === null ? [] : [el('span', { class: 'key' }, JSON.stringify(label)), ': '];
    if (!isObj(x)) {
      const m = mark || (o === undefined ? cls : JSON.stringify(x) !== JSON.stringify(o) ? 'changed' : '');
      line(depth, [...key, JSON.stringify(x) + comma], m);
      return;
    }
    const arr = Array.isArray(x);
    const kind = isObj(o) && Array.isArray(o) === arr ? o : undefined;
    const m = mark || (o === undefined ? cls : kind === undefined ? 'changed' : '');
    line(depth, [...key, arr ? '[' : '{'], m);
    const keys = arr ? x.map((_, i) => i) : Object.keys(x);
    keys.forEach((k, i) => {
      const sub = kind === undefined ? undefined : arr ? kind[k] : Object.hasOwn(kind, k) ? kind[k] : undefined;
      const missing = kind !== undefined && !(arr ? k < kind.length : Object.hasOwn(kind, k));
      walk(x[k], sub, depth + 1, arr ? null : k, m || (missing ? cls : ''), i < keys.length - 1 ? ',' : '');
    });
    line(depth, [(arr ? ']' : '}') + comma], m);
  };
  walk(v, other, 0, null, '', '');
  return pre;
}
