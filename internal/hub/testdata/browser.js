// The viewer in real Chromium, driven by playwright-core (browser_test.go
// runs it against a hub it seeded). It exits non-zero on the first failed
// check, and saves screenshots in $ARTIFACTS.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const env = process.env;
const ids = JSON.parse(env.IDS);
const shots = env.ARTIFACTS;

function check(cond, msg) {
  if (!cond) throw new Error('check failed: ' + msg);
  console.log('ok: ' + msg);
}

(async () => {
  const browser = await chromium.launch({ executablePath: env.CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
  page.on('dialog', (d) => { problems.push('dialog: ' + d.message()); d.dismiss(); });
  const shot = (name) => page.screenshot({ path: path.join(shots, name + '.png'), fullPage: false });
  try {
    await page.goto(env.HUB_URL + '/');
    await page.waitForSelector('#signin-form', { state: 'visible' });
    await shot('1-signin');

    // Wrong keys are refused with a message.
    await page.fill('#key', 'tw_aaaaaaaaaaaa_' + 'a'.repeat(52));
    await page.click('#signin-button');
    await page.waitForFunction(() => document.querySelector('#signin-error').textContent.length > 0);
    check((await page.textContent('#signin-error')).includes('does not know this key'), 'an unknown key is refused');
    await page.fill('#key', env.INGEST_KEY);
    await page.click('#signin-button');
    await page.waitForFunction(() => document.querySelector('#signin-error').textContent.includes('ingest key'));
    check(true, 'an ingest key is refused with its reason');

    // The refused keys' 401 and 403 are logged by Chromium as failed loads: expected.
    problems.length = 0;

    // Sign in.
    await page.fill('#key', env.READ_KEY);
    await page.click('#signin-button');
    await page.waitForSelector('#app', { state: 'visible' });
    await page.waitForSelector('#rows tr');
    check((await page.textContent('#whoami')).includes('acme'), 'signed in as tenant acme');
    await page.waitForSelector('#histogram svg rect.bar');
    await page.waitForSelector('#services li .svc-name');
    check(await page.inputValue('#f-range') === '-15m', 'the default range is the last 15 minutes');
    await page.selectOption('#f-range', '-1h');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 100);
    check(await page.locator('#rows tr').count() === 100, 'the first page of the last hour has 100 rows');
    await shot('2-traffic');

    // Live: a record stored while the page is open appears at the top without a reload, even one that
    // started an hour ago; a record stored while paused appears on resume.
    const post = async (id, ago) => {
      const rec = { schema: 1, id, kind: 'http', direction: 'in', start: new Date(Date.now() - ago).toISOString(), durationUs: 1000,
        labels: { service: 'live' }, http: { req: { method: 'GET', url: 'http://live.shop/v1/' + id, proto: 'HTTP/1.1', host: 'live.shop', headers: [], body: { size: 0 } },
          res: { status: 200, statusText: 'OK', proto: 'HTTP/1.1', headers: [], body: { size: 0 } } } };
      const res = await fetch(env.HUB_URL + '/v1/batches', { method: 'POST', body: JSON.stringify(rec) + '\n', headers: {
        Authorization: 'Bearer ' + env.INGEST_KEY, 'Content-Type': 'application/x-ndjson', 'Tapwire-Protocol': '1', 'Tapwire-Records': '1' } });
      check(res.status === 200, 'posted ' + id);
    };
    await page.waitForSelector('#live.on');
    await post('01950f6e-0000-7000-8000-00000000a001', 0);
    await page.waitForSelector('#rows tr[data-id="01950f6e-0000-7000-8000-00000000a001"]');
    check(await page.getAttribute('#rows tr:first-child', 'data-id') === '01950f6e-0000-7000-8000-00000000a001', 'a new record appears at the top, live');
    await post('01950f6e-0000-7000-8000-00000000a002', 3600 * 1000);
    await page.waitForSelector('#rows tr[data-id="01950f6e-0000-7000-8000-00000000a002"]');
    check(true, 'a record that started an hour ago appears when it arrives');
    await page.click('#live');
    check((await page.textContent('#live')).includes('Resume'), 'live traffic pauses');
    await post('01950f6e-0000-7000-8000-00000000a003', 0);
    await page.click('#live');
    await page.waitForSelector('#rows tr[data-id="01950f6e-0000-7000-8000-00000000a003"]');
    check(true, 'on resume, what was stored while paused appears');

    // More rows load as the table scrolls.
    await page.locator('#more').scrollIntoViewIfNeeded();
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 100);
    check(true, 'scrolling loads the next page');

    // Filter by service, then by status class.
    await page.fill('#f-service', 'payments');
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#rows td.c-svc')];
      return cells.length > 0 && cells.every((c) => c.textContent === 'payments');
    });
    check(true, 'the service filter shows only payments');
    check(page.url().includes('service=payments'), 'the filter is in the URL');
    await page.fill('#f-service', '');
    await page.selectOption('#f-status', '5xx');
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#rows td.c-status')];
      return cells.length > 0 && cells.every((c) => c.textContent.startsWith('5'));
    });
    check(true, 'the status filter shows only 5xx');
    await page.waitForSelector(`#rows tr[data-id="${ids.stripe}"]`);
    await shot('3-filtered-5xx');
    await page.click('#reset');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0);
    check(await page.inputValue('#f-range') === '-15m', 'Reset goes back to the default range');
    await page.selectOption('#f-range', '-1h');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 100);

    // A range with nothing in it says when the newest matching record is from and offers all time.
    await page.selectOption('#f-range', '-15m');
    await page.fill('#f-path', '/v1/01950f6e-0000-7000-8000-00000000a002');
    await page.waitForSelector('#widen');
    check((await page.textContent('#table-foot')).includes('No records in the last 15 minutes; the newest matching record is from'),
      'an empty range names the newest matching record\'s time');
    await page.click('#widen');
    await page.waitForSelector('#rows tr[data-id="01950f6e-0000-7000-8000-00000000a002"]');
    check(page.url().includes('range=all') && await page.inputValue('#f-range') === 'all', 'Show all time widens the range');
    // The default range, empty for these filters, widens by itself to the data (a record of an hour ago: 6 hours).
    await page.click('#reset');
    await page.waitForFunction(() => document.querySelector('#f-range').value === '-15m');
    await page.fill('#f-path', '/v1/01950f6e-0000-7000-8000-00000000a002');
    await page.waitForSelector('#widened');
    check(await page.inputValue('#f-range') === '-6h' && (await page.textContent('#widened')).includes('Nothing in the last 15 minutes: showing the last 6 hours'),
      'an empty default range widens to the newest matching record');
    check(await page.locator('#rows tr[data-id="01950f6e-0000-7000-8000-00000000a002"]').count() === 1, 'and shows it');
    await page.fill('#f-path', '');
    await page.click('#reset');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0);
    check(await page.inputValue('#f-range') === '-15m', 'Reset goes back to the default range');
    await page.selectOption('#f-range', '-1h');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 100);

    // Text search finds a body.
    await page.fill('#f-q', 'ada lovelace');
    await page.waitForFunction((id) => {
      const rows = document.querySelectorAll('#rows tr');
      return rows.length === 1 && rows[0].dataset.id === id;
    }, ids.gzip);
    check(true, 'text search finds the record whose body has the text');

    // Open it: a gzip body decoded and pretty-printed, timings, TLS.
    await page.click(`#rows tr[data-id="${ids.gzip}"]`);
    await page.waitForSelector('#detail pre.body-json');
    const json = await page.textContent('#detail pre.body-json');
    check(json.includes('"customer": "Ada Lovelace"') && json.includes('\n'), 'the gzip JSON body is decoded and indented');
    check((await page.textContent('#detail')).includes('decoded from gzip'), 'the detail says the body was gzip');
    check((await page.textContent('#detail')).includes('TLS 1.3'), 'the detail shows the TLS facts');
    check(await page.evaluate(() => [...document.querySelectorAll('#detail-body > h3')].every((h) => !h.nextSibling || h.nextSibling.nodeType === Node.ELEMENT_NODE)),
      'no stray text after a section heading');
    await page.waitForSelector('#detail .timing .ttfb');
    // Request and response come first, the overview after; each body three ways.
    const heads = await page.evaluate(() => [...document.querySelectorAll('#detail-body > h3')].map((h) => h.firstChild.textContent));
    check(heads.indexOf('Request') === 0 && heads.indexOf('Response') < heads.indexOf('Overview'), 'request and response come before the overview (' + heads.join(', ') + ')');
    await page.click('#res-body-hex');
    await page.waitForSelector('#detail pre.body-hex');
    check((await page.textContent('#detail pre.body-hex')).startsWith('00000000  1f 8b'), 'Hex shows the body as captured (gzip bytes)');
    await page.click('#res-body-raw');
    await page.waitForFunction(() => document.querySelector('#res-body-raw').classList.contains('active'));
    check((await page.textContent('#detail .body-view')).includes('not text (gzip)'), 'Raw says gzip bytes are not text');
    await page.click('#res-body-pretty');
    await page.waitForSelector('#detail pre.body-json');
    check(await page.getAttribute('#res-body-pretty', 'aria-selected') === 'true', 'Pretty is back');
    await shot('4-record');
    // A 1024 px wide window: nothing scrolls sideways, the list keeps method and status beside the open
    // record, and every filter is on screen.
    await page.setViewportSize({ width: 1024, height: 700 });
    await page.waitForTimeout(200);
    const fit = await page.evaluate(() => {
      const right = (sel) => Math.max(...[...document.querySelectorAll(sel)].filter((e) => e.offsetParent).map((e) => e.getBoundingClientRect().right));
      return { scroll: document.documentElement.scrollWidth, detail: right('#detail'), filters: right('#filters .field, #filters button'),
        method: right('#rows tr:first-child td.c-method'), status: right('#rows tr:first-child td.c-status'), detailLeft: document.querySelector('#detail').getBoundingClientRect().left };
    });
    check(fit.scroll <= 1024 && fit.detail <= 1024 && fit.filters <= 1024, 'at 1024 px nothing overflows the window (' + JSON.stringify(fit) + ')');
    check(fit.method <= fit.detailLeft && fit.status <= fit.detailLeft, 'at 1024 px the list keeps method and status beside the record');
    await shot('4-record-1024');
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.keyboard.press('Escape');
    await page.waitForSelector('#detail', { state: 'hidden' });

    // A hostile body is shown as text and runs nothing.
    const before = await page.evaluate(() => ({ scripts: document.scripts.length, imgs: document.images.length }));
    await page.fill('#f-q', '');
    await page.waitForSelector(`#rows tr[data-id="${ids.xss}"]`);
    await page.click(`#rows tr[data-id="${ids.xss}"]`);
    await page.waitForSelector('#detail pre.body-text');
    const text = await page.textContent('#detail pre.body-text');
    check(text.includes('<script>window.__pwned=1'), 'the <script> body is shown as text');
    await page.click('#res-body-raw');
    await page.waitForSelector('#detail pre.body-raw');
    check((await page.textContent('#detail pre.body-raw')).includes('<script>window.__pwned=1'), 'Raw shows the captured text as text');
    await page.waitForTimeout(300);
    const after = await page.evaluate(() => ({ pwned: window.__pwned, title: document.title, scripts: document.scripts.length,
      imgs: document.images.length, injected: !!document.getElementById('injected') }));
    check(after.pwned === undefined, 'no captured script ran');
    check(after.title === 'Tapwire', 'the title is unchanged');
    check(after.scripts === before.scripts && after.imgs === before.imgs && !after.injected, 'no element came from captured markup');
    check((await page.textContent('#detail')).includes('<img src=x onerror='), 'a hostile header value is shown as text');
    await shot('5-hostile-body');

    // gRPC: decoded fields; binary: a hex dump.
    await page.click(`#rows tr[data-id="${ids.grpc}"]`);
    await page.waitForSelector('#detail ul.fields');
    const fields = await page.textContent('#detail ul.msgs');
    check(fields.includes('"SKU-42"') && fields.includes('"Warehouse North"'), 'gRPC messages show their decoded fields');
    check((await page.textContent('#detail')).includes('inv.Stock/Get'), 'the gRPC method is shown');
    await shot('6-grpc');
    await page.click(`#rows tr[data-id="${ids.binary}"]`);
    await page.waitForSelector('#detail pre.hex');
    check((await page.textContent('#detail pre.hex')).includes('00000000  89 50 4e 47'), 'a binary body is a hex dump');
    check(await page.locator('#detail img.body-image').count() === 1, 'an image body is shown as an image too');
    check(await page.isVisible(`#rows tr[data-id="${ids.binary}"] td.c-path`) && await page.isVisible(`#rows tr[data-id="${ids.binary}"] td.c-status`)
      && await page.isVisible(`#rows tr[data-id="${ids.binary}"] td.c-method`), 'with a record open the list keeps method, path and status');
    check(await page.locator('#detail a.download').count() >= 1, 'a body can be downloaded as captured');
    // Copy as cURL: the command that sends the request again.
    await page.click('#copy-curl');
    await page.waitForSelector('#curl-command', { state: 'visible' });
    check((await page.textContent('#curl-command')).startsWith("curl 'http://catalog.shop/img/1.png'"), 'copy as cURL gives the request as a curl command');
    await page.click('#detail-close');
    // A POST with a JSON body and quotes everywhere: the copied command is saved for the Go test to run with curl.
    await page.fill('#f-path', '/v1/echo');
    await page.waitForSelector(`#rows tr[data-id="${ids.echo}"]`);
    await page.click(`#rows tr[data-id="${ids.echo}"]`);
    await page.waitForSelector('#copy-curl');
    await page.click('#copy-curl');
    await page.waitForSelector('#curl-command', { state: 'visible' });
    fs.writeFileSync(env.ARTIFACTS + '/copied-curl.sh', await page.textContent('#curl-command'));
    check(true, 'the copied command of a POST is saved to be run with curl');
    await page.click('#detail-close');
    await page.fill('#f-path', '');

    // HAR of what the filters select.
    await page.selectOption('#f-direction', 'out');
    await page.waitForFunction(() => [...document.querySelectorAll('#rows td.c-dir')].every((c) => c.textContent.includes('out')));
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#har')]);
    const har = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
    check(har.log.version === '1.2' && har.log.entries.length === Number(env.OUT_HTTP), `the HAR has the ${env.OUT_HTTP} outbound HTTP records`);
    check(har.log.entries.every((e) => e._direction === 'out'), 'the HAR holds only outbound records');
    check(download.suggestedFilename().endsWith('.har'), 'the download is named .har');

    // The host column shows a port that is not the scheme's default; the time column names its zone.
    await page.selectOption('#f-direction', '');
    await page.waitForSelector(`#rows tr[data-id="${ids.gzip}"]`);
    check((await page.textContent(`#rows tr[data-id="${ids.gzip}"] td.c-host`)) === 'orders.shop:4143', 'the host shows its non-default port');
    check((await page.textContent('#time-zone')).startsWith('UTC'), 'the time column names its time zone');

    // The service map: switching to it closes an open record; the list's filters and HAR are not on it.
    await page.click(`#rows tr[data-id="${ids.gzip}"]`);
    await page.waitForSelector('#detail', { state: 'visible' });
    await page.click('#tab-map');
    await page.waitForSelector('#map svg .node');
    check(await page.isHidden('#detail'), 'switching to the map closes the record');
    check(await page.isHidden('#filters') && await page.isHidden('#har'), 'the traffic filters and the HAR button are not on the map');
    const labels = await page.locator('#map svg .node text').allTextContents();
    check(labels.includes('orders') && labels.includes('api.stripe.com'), 'the map shows services and the hosts they call');
    await page.waitForTimeout(500);
    await page.locator('#map svg .node.svc', { hasText: 'payments' }).first().click();
    const dimmed = await page.locator('#map svg path.edge.dim').count(), lit = await page.locator('#map svg path.edge:not(.dim)').count();
    check(dimmed > 0 && lit > 0, 'clicking a service shows only its calls');
    await shot('7-map');
    // Clicking an edge (a real click at the middle of its curve) lists exactly its calls.
    const mid = await page.evaluate(() => {
      const r = document.querySelector('#map svg path.edge-hit[data-from="payments"][data-to="api.stripe.com"]').getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    });
    await page.mouse.click(mid.x, mid.y);
    await page.waitForSelector(`#rows tr[data-id="${ids.stripe}"]`);
    const edgeRows = await page.$$eval('#rows tr', (rows) => rows.map((r) => [r.querySelector('.c-svc').textContent, r.querySelector('.c-dir').textContent, r.querySelector('.c-host').textContent]));
    check(edgeRows.length > 0 && edgeRows.every(([svc, dir, host]) => svc === 'payments' && dir === 'out' && host === 'api.stripe.com'),
      'clicking an edge lists its calls only (' + edgeRows.length + ' rows)');
    check(page.url().includes('host=api.stripe.com') && await page.inputValue('#f-direction') === 'out', 'the edge\'s filters are in the address and the fields');
    await page.click('#reset');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0);
    check(await page.inputValue('#f-range') === '-15m', 'Reset goes back to the default range');
    await page.selectOption('#f-range', '-1h');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 100);

    // Save the traffic page's filters as a snapshot (with the ingest key,
    // asked once), see it on the Snapshots page, open its records.
    await page.click('#tab-traffic');
    await page.fill('#f-service', 'payments');
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#rows td.c-svc')];
      return cells.length > 0 && cells.every((c) => c.textContent === 'payments');
    });
    const paymentRows = await page.locator('#rows tr').count();
    await page.click('#save-snapshot');
    await page.fill('#save-name', 'payments <b>calls</b>');
    await page.fill('#save-key', env.INGEST_KEY);
    await page.click('#save-submit');
    await page.waitForSelector('#save-open');
    check(/Saved snap_[a-z2-7]{16} \(/.test(await page.textContent('#save-msg')), 'Save as snapshot makes one from the filters');
    await page.click('#tab-snapshots');
    await page.waitForSelector('#snapshots tbody tr');
    check(await page.locator('#filters').isHidden(), 'the Snapshots page hides the traffic filters');
    await page.locator('#snapshots tbody tr', { hasText: 'payments <b>calls</b>' }).click();
    await page.waitForSelector('#snapshot-open');
    const endpoints = await page.locator('#snapshot-detail table.endpoints tbody tr').allTextContents();
    check(endpoints.some((t) => t.includes('api.stripe.com') && t.includes('/v1/charges')), 'the snapshot shows its endpoints with counts');
    check(await page.locator('#snapshot-detail h2').textContent() === 'payments <b>calls</b>', 'the name is text, not markup');
    await shot('8-snapshots');
    await page.click('#snapshot-open');
    await page.waitForSelector('#snapshot-banner', { state: 'visible' });
    await page.waitForFunction((n) => {
      const cells = [...document.querySelectorAll('#rows td.c-svc')];
      return cells.length === n && cells.every((c) => c.textContent === 'payments');
    }, paymentRows);
    check(page.url().includes('snapshot=snap_'), 'the snapshot is in the URL');
    await page.click(`#rows tr[data-id="${ids.stripe}"]`);
    await page.waitForFunction(() => document.querySelector('#detail-body').textContent.includes('unavailable'));
    check(true, 'a record of the snapshot opens with its body');
    await shot('9-snapshot-records');
    await page.click('#detail-close');
    await page.click('#snapshot-leave');
    await page.waitForSelector('#snapshot-banner', { state: 'hidden' });
    check(!page.url().includes('snapshot='), 'leaving the snapshot goes back to the traffic');

    // A replay report: the list, one report per endpoint, an answer beside
    // its recording (fetched from the report's snapshot), the snapshot.
    await page.click('#tab-reports');
    await page.waitForSelector(`#reports tr[data-id="${ids.report}"]`);
    check(await page.locator('#filters').isHidden(), 'the Reports page hides the traffic filters');
    const listed = await page.textContent(`#reports tr[data-id="${ids.report}"]`);
    check(listed.includes('http://orders-canary:8080') && listed.includes(ids.snapshot) && listed.includes('50.0%') && listed.includes('failed'),
      'the list shows target, snapshot, match rates and the verdict');
    await page.click(`#reports tr[data-id="${ids.report}"]`);
    await page.waitForSelector('#report-detail table.endpoints tbody tr');
    check(page.url().includes('view=reports') && page.url().includes('report=' + ids.report), 'the report is in the URL');
    const ep = await page.textContent('#report-detail table.endpoints tbody tr');
    check(ep.includes('GET /v1/orders/{}') && ep.includes('100.0%') && ep.includes('50.0%'), 'the report shows its endpoints');
    check((await page.textContent('#report-detail .assertions')).includes('✗ fail if body_match<100%: measured 50'), 'the failed assertion is shown');
    await page.waitForSelector(`#report-answers tr[data-record="${ids.gzip}"]`);
    check(await page.locator('#report-answers tbody tr').count() === 2, 'the endpoint lists its answers');
    await shot('10-report');
    await page.click(`#report-answers tr[data-record="${ids.gzip}"]`);
    await page.waitForSelector('#report-diff .diff .json-diff');
    const sides = await page.locator('#report-diff .diff-side').allTextContents();
    check(sides[0].includes('from snapshot ' + ids.snapshot) && sides[0].includes('"Ada Lovelace"'), 'the recorded side is fetched from the snapshot');
    check(sides[1].includes('Grace Hopper <img src=x onerror='), 'the live side shows its body as text');
    const marks = await page.evaluate(() => [...document.querySelectorAll('#report-diff .json-diff .line')]
      .filter((l) => l.className.trim() !== 'line').map((l) => l.className.replace('line ', '') + ':' + l.textContent.trim()));
    check(marks.includes('changed:"customer": "Ada Lovelace",') && marks.some((m) => m.startsWith('changed:"customer": "Grace Hopper')),
      'a changed member is marked on both sides');
    check(marks.includes('added:"coupon": "SPRING"'), 'an added member is marked on the live side: ' + marks.join(' | '));
    check(await page.locator('#report-diff .headers tr.changed').count() === 2, 'the changed header is marked on both sides');
    check(await page.evaluate(() => window.__pwned === undefined && !document.querySelector('#report-diff img')), 'the live body runs nothing');
    await shot('11-report-diff');
    await page.click(`#report-answers tr[data-record="0195-not-recorded"]`);
    await page.waitForFunction(() => document.querySelector('#report-diff').textContent.includes('is not in the hub'));
    check(true, 'an answer whose recording is gone says so');
    // Its lookups (in the snapshot, then the traffic) are 404s, which Chromium logs as failed loads: expected.
    check(problems.length === 2 && problems.every((p) => p.includes('404')), 'only the two lookups of the missing record failed');
    problems.length = 0;
    await page.click('#report-snapshot');
    await page.waitForSelector('#snapshot-banner', { state: 'visible' });
    check(page.url().includes('snapshot=' + ids.snapshot), 'the report links to its snapshot');
    await page.click('#snapshot-leave');
    await page.waitForSelector('#snapshot-banner', { state: 'hidden' });

    // Sign out forgets the key.
    await page.click('#signout');
    await page.waitForSelector('#signin-form', { state: 'visible' });
    check(await page.evaluate(() => sessionStorage.getItem('tapwire.key')) === null, 'signing out forgets the key');

    // Sign-in by address: the key in the fragment signs in, and leaves the address.
    const ctx2 = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const a = await ctx2.newPage();
    a.on('pageerror', (e) => problems.push('page error: ' + e.message));
    await a.goto(env.HUB_URL + '/#key=' + env.READ_KEY + '&service=payments');
    await a.waitForSelector('#app', { state: 'visible' });
    await a.waitForSelector('#rows tr');
    check(!a.url().includes('key='), 'the key leaves the address once used');
    check(a.url().includes('service=payments'), 'the rest of the fragment (a deep link) is kept');
    // A deep link opened in another tab of the session is signed in: the open tab gives it the key.
    const b = await ctx2.newPage();
    await b.goto(env.HUB_URL + '/#view=map');
    await b.waitForSelector('#app', { state: 'visible' });
    check(true, 'a new tab is signed in by the open one');
    // Sign out in one tab signs out every tab.
    await b.click('#signout');
    await a.waitForSelector('#signin-form', { state: 'visible' });
    check(await a.evaluate(() => sessionStorage.getItem('tapwire.key')) === null, 'signing out in one tab signs out the others');
    // A refused key in the address says why, and is not kept.
    const c = await ctx2.newPage();
    await c.goto(env.HUB_URL + '/#key=' + env.INGEST_KEY);
    await c.waitForFunction(() => document.querySelector('#signin-error').textContent.includes('ingest key'));
    check(!c.url().includes('key='), 'a refused key leaves the address too');
    await ctx2.close();

    check(problems.length === 0, 'no page errors, console errors or dialogs: ' + problems.join('; '));
  } catch (e) {
    await shot('failure').catch(() => {});
    console.error(e.stack || String(e));
    if (problems.length) console.error(problems.join('\n'));
    await browser.close();
    process.exit(1);
  }
  await browser.close();
})();
