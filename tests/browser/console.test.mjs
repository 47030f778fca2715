// End-to-end test of the Lethe console in a real browser (Debian's chromium through playwright-core):
// the whole two-person release of a model, every step through the console's pages, forms and links,
// one browser context (own cookies) per user. Started by tests/browser/run.sh, which prepares a data
// directory with corpus `kb`, serves it with tests/browser/policy.toml and passes the LETHE_E2E_*
// variables read below.
//
// The steps depend on one another: after a failed step the rest are skipped. A failed step saves a
// full-page screenshot of every user's page (FAIL-<step>-<user>.png in the screenshot directory) and
// prints the visible text of the page that moved last.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this test through tests/browser/run.sh`);
  return v;
}

const BASE = env('LETHE_E2E_BASE_URL');
const ADMIN_OTP = env('LETHE_E2E_ADMIN_PASSWORD');
const ADA_OTP = env('LETHE_E2E_ADA_PASSWORD');
const PUBLIC_KEY = env('LETHE_E2E_PUBLIC_KEY');
const DATA_DIR = env('LETHE_E2E_DATA_DIR');
const WORK_DIR = process.env.LETHE_E2E_WORK_DIR || path.dirname(DATA_DIR);
const LETHE = env('LETHE_E2E_BIN');
const SHOTS = env('LETHE_E2E_SCREENSHOTS');
const CHROMIUM = process.env.LETHE_E2E_CHROMIUM || '/usr/bin/chromium';
const TRAIN_TIMEOUT_MS = 150_000;
const AUDIT_TIMEOUT_MS = 120_000;

// The rows of the gate table, in the order the policy module evaluates them.
const GATE_RULES = [
  'max_exact_extraction',
  'max_approximate_extraction',
  'max_infill_extraction',
  'max_regurgitated_span_tokens',
  'max_covered_share',
  'max_canary_exposure',
  'max_membership_auc',
  'max_regurgitated_secrets',
  'audit',
];

let browser;
/** name → { ctx, page, password, role } */
const users = {};
/** What the steps learn and pass on. */
const run = { id: null, auditId: null, trainSeconds: null, auditSeconds: null };
/** The page that navigated last: the one whose text a failure prints. */
let lastPage = null;
/** Uncaught page errors and console errors, per user. */
const problems = [];
const timings = [];

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

/** A password of 24 characters that never contains a user name (the server refuses that). */
function newPassword() {
  return `e2e-${randomBytes(12).toString('base64url')}-Zq9`;
}

async function openUser(name, role) {
  const ctx = await browser.newContext({
    baseURL: BASE,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
  });
  ctx.setDefaultTimeout(20_000);
  ctx.setDefaultNavigationTimeout(30_000);
  const page = await ctx.newPage();
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) lastPage = { name, page };
  });
  page.on('pageerror', (e) => problems.push(`${name}: uncaught error on ${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const from = m.location()?.url;
    const where = from && from !== page.url() ? ` (${from})` : '';
    problems.push(`${name}: console error on ${page.url()}: ${m.text()}${where}`);
  });
  users[name] = { ctx, page, role, password: null };
  return users[name];
}

function pathOf(page) {
  return new URL(page.url()).pathname;
}

async function visibleText(page, max = 6000) {
  try {
    const t = await page.locator('body').innerText({ timeout: 3000 });
    return t.length > max ? `${t.slice(0, max)}\n… (${t.length - max} more characters)` : t;
  } catch (e) {
    return `(could not read the page: ${e.message})`;
  }
}

async function screenshot(page, file) {
  const to = path.join(SHOTS, file);
  await page.screenshot({ path: to, fullPage: true, timeout: 10_000 });
  return to;
}

/** Saves a screenshot of every open page and prints what the page that moved last shows. */
async function explain(stepName, err) {
  const slug = stepName.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
  const lines = [`\n======== step failed: ${stepName}`, `${err && err.stack ? err.stack : err}`];
  for (const [name, u] of Object.entries(users)) {
    if (u.page.isClosed()) continue;
    try {
      const to = await screenshot(u.page, `FAIL-${slug}-${name}.png`);
      lines.push(`screenshot of ${name}'s page (${u.page.url()}): ${to}`);
    } catch (e) {
      lines.push(`no screenshot of ${name}'s page: ${e.message}`);
    }
  }
  if (lastPage && !lastPage.page.isClosed()) {
    lines.push(`---- visible text of ${lastPage.name}'s page ${lastPage.page.url()} ----`);
    lines.push(await visibleText(lastPage.page));
    lines.push('---- end of page text ----');
  }
  if (problems.length) lines.push('browser errors so far:', ...problems.map((p) => `  ${p}`));
  console.error(lines.join('\n'));
}

const passed = new Set();
const failed = [];

/**
 * One step of the story, as a top-level test (node:test runs them one after another). `needs` names the
 * steps it builds on (default: every step before it); when one of them did not pass, it is skipped. Its
 * own timer (not node:test's, which cannot let the step explain itself) fails it after `timeoutMs`.
 */
const declared = [];
function step(id, title, opts, fn) {
  if (typeof opts === 'function') [fn, opts] = [opts, {}];
  const { needs = [...declared], timeoutMs = 60_000 } = opts;
  declared.push(id);
  const name = `${id}: ${title}`;
  return test(name, async (t) => {
    const missing = needs.filter((n) => !passed.has(n));
    if (missing.length) {
      t.skip(`needs step ${missing[0]}, which did not pass`);
      return;
    }
    const started = Date.now();
    let timer;
    try {
      await Promise.race([
        fn(t),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`step did not finish within ${timeoutMs / 1000} s`)),
            timeoutMs,
          );
        }),
      ]);
      passed.add(id);
    } catch (e) {
      failed.push(name);
      await explain(name, e);
      throw e;
    } finally {
      clearTimeout(timer);
      timings.push([id, (Date.now() - started) / 1000]);
    }
  });
}

/** Waits until `locator`'s text matches `want` (a string it must contain, or a RegExp). */
async function expectText(locator, want, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  for (;;) {
    try {
      text = (await locator.innerText({ timeout: Math.max(1, deadline - Date.now()) })).trim();
    } catch (e) {
      text = `(not found: ${e.message.split('\n')[0]})`;
    }
    const ok = want instanceof RegExp ? want.test(text) : text.includes(want);
    if (ok) return text;
    if (Date.now() > deadline) {
      assert.fail(`${what}: expected ${want instanceof RegExp ? want : JSON.stringify(want)}, found ${JSON.stringify(text)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function expectCount(locator, n, what) {
  const got = await locator.count();
  assert.equal(got, n, `${what}: expected ${n}, found ${got}`);
}

/**
 * Clicks `locator` (a link or a form's submit button), waits for the page it leads to, and checks
 * that the page is not an error page and is at `expectedPath` (after the post/redirect/get).
 */
async function follow(page, locator, expectedPath) {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), locator.click()]);
  const status = response ? response.status() : 0;
  if (status >= 400) {
    const error = await page.getByTestId('error').innerText({ timeout: 1000 }).catch(() => '');
    const body = await visibleText(page, 500);
    assert.fail(`${response.request().method()} ${response.url()} answered ${status}: ${error || body}`);
  }
  assert.equal(pathOf(page), expectedPath, `after the click the browser is at ${page.url()}`);
  return response;
}

async function signInFirstTime(name, otp) {
  const u = users[name];
  const { page } = u;
  await page.goto('/');
  assert.equal(pathOf(page), '/login', `an anonymous visit to / should end on /login, not ${page.url()}`);
  await page.getByLabel('User name').fill(name);
  await page.getByLabel('Password').fill(otp);
  await follow(page, page.getByRole('button', { name: 'Sign in' }), '/password');
  await expectText(page.locator('main'), 'You signed in with a one-time password', `${name}'s password page`);
  u.password = newPassword();
  await page.getByLabel('Current password').fill(otp);
  await page.getByLabel(/^New password \(at least/).fill(u.password);
  await page.getByLabel('New password again').fill(u.password);
  await follow(page, page.getByRole('button', { name: 'Change password' }), '/');
  await expectText(page.getByTestId('whoami'), `${name} (${u.role})`, `${name}'s dashboard`);
  await expectText(page.locator('h1'), 'Dashboard', `${name}'s landing page`);
}

/**
 * Gives `name` a passkey: a virtual authenticator (Chromium's, through the DevTools protocol) on their
 * page, the account page's enrolment, and admin's confirmation on /admin (not ada's: ada confirmed the
 * account and received its one-time password, so may not confirm its credential).
 */
async function enrolPasskey(name) {
  const { page, ctx } = users[name];
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  users[name].authenticator = { cdp, authenticatorId };
  await follow(page, page.locator('header nav').getByRole('link', { name: 'Account' }), '/account');
  await page.getByTestId('passkey-label').fill(`${name}'s virtual authenticator`);
  await follow(page, page.getByTestId('enrol-passkey'), '/account/passkeys');
  await expectText(page.getByTestId('passkey-pending'), /waits for an admin's confirmation/, `${name}'s enrolment notice`);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1, `${name}'s authenticator holds one credential`);
  await expectText(page.getByTestId('key-state'), 'pending', `${name}'s passkey before confirmation`);

  const ada = users.ada.page;
  await follow(ada, ada.locator('header nav').getByRole('link', { name: 'Admin' }), '/admin');
  const res = await ada.request.post(
    await ada.locator(`form:has([data-testid="confirm-${name}"])`).getAttribute('action'),
    { form: { _csrf: await ada.locator('input[name="_csrf"]').first().inputValue() }, maxRedirects: 0 },
  );
  assert.equal(res.status(), 403, `ada confirming ${name}'s passkey: ${res.status()}`);
  assert.match(await res.text(), /received .* one-time password/, 'the refusal says why');

  const admin = users.admin.page;
  await follow(admin, admin.locator('header nav').getByRole('link', { name: 'Admin' }), '/admin');
  await follow(admin, admin.getByTestId(`confirm-${name}`), '/admin');
  await page.goto('/account');
  await expectText(page.getByTestId('key-state'), 'active', `${name}'s passkey after admin confirmed it`);
}

async function jobIds(page) {
  return page.locator('#jobs tr[data-job]').evaluateAll((rows) => rows.map((r) => r.dataset.job));
}

/** The id of the one job of `kind` in the dashboard's table that was not in `before`. */
async function newJob(page, kind, before) {
  const rows = await page
    .locator('#jobs tr[data-job]')
    .evaluateAll((rs) => rs.map((r) => ({ id: r.dataset.job, kind: r.cells[1].textContent.trim(), state: r.cells[2].textContent.trim() })));
  const fresh = rows.filter((r) => r.kind === kind && !before.includes(r.id));
  assert.equal(fresh.length, 1, `one new ${kind} job in the jobs table, found ${JSON.stringify(rows)}`);
  return fresh[0];
}

/**
 * Waits, without reloading, until the live jobs table (server-sent events) shows job `id` finished, and
 * demands that it succeeded. On a timeout, reloads once to tell a slow job from a table that stopped
 * updating.
 */
async function waitForJob(page, id, kind, timeoutMs) {
  const started = Date.now();
  let final;
  try {
    const handle = await page.waitForFunction(
      (jobId) => {
        const tr = document.querySelector(`#jobs tr[data-job="${jobId}"]`);
        if (!tr) return false;
        const state = tr.querySelector('.state')?.textContent.trim();
        if (!['succeeded', 'failed', 'cancelled'].includes(state)) return false;
        return { state, message: tr.querySelector('.message')?.textContent.trim() ?? '', live: document.querySelector('#jobs').dataset.updated ?? null };
      },
      id,
      { timeout: timeoutMs, polling: 500 },
    );
    final = await handle.jsonValue();
  } catch (e) {
    if (!/Timeout/i.test(e.message)) throw e;
    const live = await page.locator(`#jobs tr[data-job="${id}"]`).innerText().catch(() => '(row gone)');
    await page.reload();
    const served = await page.locator(`#jobs tr[data-job="${id}"]`).innerText().catch(() => '(row gone)');
    assert.fail(
      `${kind} job ${id} not finished after ${timeoutMs / 1000} s. Live table row: ${JSON.stringify(live)}; ` +
        `after a reload the server shows: ${JSON.stringify(served)}`,
    );
  }
  const seconds = (Date.now() - started) / 1000;
  assert.equal(final.state, 'succeeded', `${kind} job ${id} ended ${final.state}: ${final.message}`);
  assert.ok(final.live, 'the jobs table was updated by the server-sent events (data-updated set by app.js)');
  console.log(`  ${kind} job ${id} succeeded after ${seconds.toFixed(1)} s in the live table`);
  return seconds;
}

async function gateRows(table) {
  return table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => Array.from(r.cells, (c) => c.textContent.trim())));
}

// ---------------------------------------------------------------------------------------------------
// The story
// ---------------------------------------------------------------------------------------------------

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives every launch a fresh, temporary user-data-dir.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
    ],
  });
  console.log(`  chromium ${browser.version()} against ${BASE}`);
});

after(async () => {
  if (timings.length) {
    console.log('  step timings: ' + timings.map(([n, s]) => `${n} ${s.toFixed(1)} s`).join(', '));
  }
  if (browser) await browser.close();
});

step('1', 'admin signs in with the one-time password and sets their own', async () => {
  const admin = await openUser('admin', 'admin');
  const { page } = admin;
  await page.goto('/');
  assert.equal(pathOf(page), '/login', `/ without a session should redirect to /login, not ${page.url()}`);
  await expectText(page.locator('h1'), 'Sign in to Lethe', 'sign-in page');
  await screenshot(page, '01-login.png');
  // A wrong password first: the page says so and stays on /login.
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('not-the-password');
  const [wrong] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
  assert.equal(wrong.status(), 401, 'a wrong password is answered 401');
  await expectText(page.getByTestId('error'), /./, 'the sign-in error message');
  await expectCount(page.getByTestId('whoami'), 0, 'signed-in header after a wrong password');
  await signInFirstTime('admin', ADMIN_OTP);
});

step('2', 'admin creates olga (operator), rita and remy (reviewers); the reviewers wait for ada, the second admin', async () => {
  const { page } = users.admin;
  await follow(page, page.locator('header nav').getByRole('link', { name: 'Admin' }), '/admin');
  for (const [name, role] of [['olga', 'operator'], ['rita', 'reviewer'], ['remy', 'reviewer']]) {
    await page.getByTestId('new-username').fill(name);
    await page.getByTestId('new-role').selectOption(role);
    await follow(page, page.getByTestId('add-user'), '/admin/users');
    await openUser(name, role);
    if (role === 'operator') {
      await expectText(page.getByTestId('created'), `Created ${name} (${role})`, `notice after adding ${name}`);
      users[name].otp = (await page.getByTestId('otp').innerText()).trim();
    } else {
      // An approver is dual control: admin may not confirm its own request.
      await expectText(page.getByTestId('pending-notice'), `${name} (${role}) waits for a second admin`, `notice after asking for ${name}`);
      await expectCount(page.getByTestId(`confirm-${name}`), 0, `a confirm button for admin's own request for ${name}`);
    }
  }
  const ada = await openUser('ada', 'admin');
  await signInFirstTime('ada', ADA_OTP);
  await follow(ada.page, ada.page.locator('header nav').getByRole('link', { name: 'Admin' }), '/admin');
  for (const name of ['rita', 'remy']) {
    const action = await ada.page.getByTestId(`confirm-${name}`).evaluate((b) => new URL(b.form.action).pathname);
    await follow(ada.page, ada.page.getByTestId(`confirm-${name}`), action);
    await expectText(ada.page.getByTestId('created'), `${name} (reviewer)`, `ada's notice after confirming ${name}`);
    users[name].otp = (await ada.page.getByTestId('otp').innerText()).trim();
  }
  for (const name of ['olga', 'rita', 'remy']) {
    assert.ok(users[name].otp.length >= 12, `${name}'s one-time password ${JSON.stringify(users[name].otp)} looks too short`);
  }
  await follow(page, page.locator('header nav').getByRole('link', { name: 'Admin' }), '/admin');
  const rows = await page.getByTestId('users').locator('tbody tr').evaluateAll((rs) =>
    rs.map((r) => Array.from(r.cells).slice(0, 3).map((c) => c.textContent.trim())),
  );
  assert.deepEqual(
    rows.map((r) => r.join(' | ')).sort(),
    [
      'ada | admin | active',
      'admin | admin | active',
      'olga | operator | one-time password',
      'remy | reviewer | one-time password',
      'rita | reviewer | one-time password',
    ],
    'the users table',
  );
  await expectCount(page.getByTestId('grants'), 0, 'pending grants once ada confirmed both');
  const shownKey = (await page.getByTestId('public-key').innerText()).trim();
  assert.equal(shownKey, PUBLIC_KEY, 'the signing key on /admin is the one init printed');
});

step('3', 'a wrong CSRF token is refused, and the API wants a session', async () => {
  const { page } = users.admin;
  const res = await page.request.post('/admin/users', {
    form: { _csrf: 'wrong', username: 'mallory', role: 'admin' },
    maxRedirects: 0,
  });
  const body = await res.text();
  assert.equal(res.status(), 403, `POST /admin/users with a wrong CSRF token: ${res.status()} ${body.slice(0, 300)}`);
  assert.match(body, /CSRF token missing or wrong/, 'the refusal names the CSRF token');
  await follow(page, page.locator('header nav').getByRole('link', { name: 'Admin' }), '/admin');
  const names = await page.getByTestId('users').locator('tbody tr td:first-child').allInnerTexts();
  assert.ok(!names.map((n) => n.trim()).includes('mallory'), `mallory must not exist; users: ${names.join(', ')}`);
  assert.equal(names.length, 5, `five users, found ${names.join(', ')}`);

  const anon = await browser.newContext({ baseURL: BASE });
  try {
    const r = await anon.request.get('/api/v1/users');
    assert.equal(r.status(), 401, `anonymous GET /api/v1/users: ${r.status()} ${await r.text()}`);
  } finally {
    await anon.close();
  }
});

step('4a', 'olga signs in and trains a tiny diffusion model from the dashboard',
  { timeoutMs: TRAIN_TIMEOUT_MS + 30_000 },
  async () => {
    await signInFirstTime('olga', users.olga.otp);
    const { page } = users.olga;

    // An upload from the dashboard: two files, held in memory by the server, sealed as corpus "notes".
    const upload = page.locator('form[enctype="multipart/form-data"]');
    await upload.getByLabel('Name').fill('notes');
    await upload.getByLabel('Vocabulary').fill('512');
    const lines = Array.from({ length: 40 }, (_, i) => `Note ${i}: the build on runner ${i % 5} needs a cache flush.`);
    await upload.getByLabel('Files').setInputFiles([
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(lines.join('\n')) },
      { name: 'faq.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(lines.map((t) => JSON.stringify({ text: t })).join('\n')) },
    ]);
    await follow(page, upload.getByRole('button', { name: 'Ingest' }), '/corpora/notes');
    await expectText(page.locator('h1'), 'Corpus notes', 'the uploaded corpus page');
    await expectText(page.locator('dl.facts'), /documents\s+41/, 'one document for the text file and one per JSONL line');
    await follow(page, page.locator('header nav').getByRole('link', { name: 'Dashboard' }), '/');

    const form = page.locator('form[action="/runs"]');
    await expectText(page.locator('section', { has: form }).locator('h2'), 'Start training', 'the training form heading');
    await form.getByLabel('Corpus').selectOption('kb');
    await form.getByLabel('Objective').selectOption('diffusion');
    await form.getByLabel('Preset').selectOption('tiny');
    await form.getByLabel('Epochs').fill('1');
    const before = await jobIds(page);
    await follow(page, form.getByRole('button', { name: 'Queue training' }), '/');
    const job = await newJob(page, 'train', before);
    run.trainSeconds = await waitForJob(page, job.id, 'train', TRAIN_TIMEOUT_MS);

    // The runs table is drawn by the server: reload the dashboard through its link.
    await follow(page, page.locator('header nav').getByRole('link', { name: 'Dashboard' }), '/');
    const links = page.locator('[data-testid^="run-"]');
    await expectCount(links, 1, 'runs on the dashboard');
    run.id = (await links.getAttribute('data-testid')).slice('run-'.length);
    assert.match(run.id, /^run-[0-9a-f]+$/, 'the run id');
    const row = page.locator('tr', { has: links });
    const cells = (await row.locator('td').allInnerTexts()).map((c) => c.trim());
    assert.deepEqual(
      [cells[1], cells[2], cells[3], cells[5], cells[6]],
      ['diffusion', 'tiny', 'succeeded', 'olga', 'trained'],
      `the run's row: ${cells.join(' | ')}`,
    );
  },
);

step('4b', 'olga audits the run, evaluates the gate and asks for release',
  { timeoutMs: AUDIT_TIMEOUT_MS + 30_000 },
  async () => {
    const { page } = users.olga;
    await follow(page, page.getByTestId(`run-${run.id}`), `/runs/${run.id}`);
    await expectText(page.locator('h1'), `Run ${run.id}`, 'run page heading');
    await page.locator('[data-testid=loss-chart] svg').waitFor();
    await follow(page, page.getByRole('button', { name: /^Queue an audit/ }), '/');
    const job = await newJob(page, 'audit', []);
    run.auditSeconds = await waitForJob(page, job.id, 'audit', AUDIT_TIMEOUT_MS);
    await screenshot(page, '02-dashboard.png');

    await follow(page, page.getByTestId(`run-${run.id}`), `/runs/${run.id}`);
    const listed = await expectText(page.getByTestId('audits'), /aud-[0-9a-f]+: succeeded/, 'the run page lists the audit');
    const auditId = listed.match(/aud-[0-9a-f]+/)[0];
    // The checkpoints table links the audit from its checkpoint's row, beside what that checkpoint learned.
    const audited = page.getByTestId('history').locator('tbody tr', { has: page.getByRole('link', { name: auditId }) });
    await expectCount(audited, 1, 'checkpoint rows linking the audit');
    const cells = (await audited.locator('td').allInnerTexts()).map((c) => c.trim());
    assert.match(cells[3], /^(≤ \d+\.\d{3}|not measured)$/, `held-out bits per byte: ${cells.join(' | ')}`);
    assert.match(cells[4], /^(\d+\.\d% \(\d+\.\d%–\d+\.\d%, n = \d+\)( ≈ chance)?|not measured)$/, `continuation choice: ${cells.join(' | ')}`);
    for (const id of ['frontier-extraction', 'frontier-exposure']) {
      const box = await page.locator(`[data-testid=${id}] svg`).boundingBox();
      assert.ok(box && box.width > 100 && box.height > 100, `the ${id} chart is drawn (${JSON.stringify(box)})`);
    }
    await expectCount(page.getByTestId('select'), 1, 'the operator\'s select button');
    await screenshot(page, '03-run.png');
    await follow(page, page.getByTestId('gate'), `/releases/${run.id}`);
    await expectText(page.getByTestId('stage'), 'Stage: gate passed', 'stage after the gate');
    await expectText(page.locator('h2', { hasText: 'Gate' }), 'Gate (passed under policy browser-e2e)', 'gate heading');
    const rows = await gateRows(page.locator('table.gate'));
    assert.deepEqual(rows.map((r) => r[0]), GATE_RULES, 'gate rules on the release page');
    for (const r of rows) assert.equal(r[3], 'pass', `gate row ${r.join(' | ')}`);
    await expectCount(page.getByTestId('approve'), 0, 'approve buttons for the operator');

    await follow(page, page.getByTestId('request'), `/releases/${run.id}`);
    await expectText(page.getByTestId('stage'), 'Stage: requested', 'stage after the request');
    await expectText(page.getByTestId('approvals'), /^0 of 2 \(reviewer role\)$/, 'approvals after the request');
    await expectCount(page.getByTestId('request'), 0, 'request buttons once requested');
  },
);

step('5', 'rita enrols a passkey, admin confirms it, and she approves the run with it', async () => {
  await signInFirstTime('rita', users.rita.otp);
  const { page } = users.rita;
  // Without a credential an approval is refused, whatever the form says.
  const res = await page.request.post(`/releases/${run.id}/review`, {
    form: { _csrf: await page.locator('input[name="_csrf"]').first().inputValue(), decision: 'approve', comment: 'unsigned' },
    maxRedirects: 0,
  });
  assert.equal(res.status(), 403, `an unsigned approval: ${res.status()}`);
  assert.match(await res.text(), /signed with the approver&#x27;s own key|signed with the approver's own key/, 'the refusal names the missing signature');
  await enrolPasskey('rita');
  await page.goto('/');
  await expectText(page.locator('h2').first(), 'Waiting for review', 'first section of rita\'s dashboard');
  const pending = page.getByTestId(`pending-${run.id}`);
  await expectText(page.locator('ul.pending li'), `Run ${run.id}: requested, 2 approval(s) missing`, 'the pending entry');
  await follow(page, pending, `/releases/${run.id}`);
  await page.getByTestId('comment').fill('Gate passed under the e2e policy; approved by rita.');
  await follow(page, page.getByTestId('approve'), `/releases/${run.id}`);
  await expectText(page.getByTestId('approvals'), /^1 of 2 \(reviewer role\)$/, 'approvals after rita');
  await expectText(page.getByTestId('stage'), 'Stage: requested', 'stage after one approval');
  const reviews = (await page.getByTestId('reviews').locator('tbody tr').first().locator('td').allInnerTexts()).map((c) => c.trim());
  assert.deepEqual(reviews.slice(0, 3), ['rita', 'approve', 'Gate passed under the e2e policy; approved by rita.'], 'rita\'s review row');
  await expectCount(page.getByTestId('approve'), 0, 'approve buttons once rita has reviewed');
});

step('6', 'olga, who trained the run, cannot approve it', async () => {
  const { page } = users.olga;
  await page.reload();
  assert.equal(pathOf(page), `/releases/${run.id}`);
  await expectText(page.getByTestId('approvals'), /^1 of 2 /, 'approvals as olga sees them');
  await expectCount(page.getByTestId('approve'), 0, 'approve buttons for olga');
  await expectCount(page.getByTestId('comment'), 0, 'review comment boxes for olga');
  const csrf = await page.locator('input[name=_csrf]').first().inputValue();
  assert.ok(csrf.length >= 16, 'olga\'s page carries her CSRF token');
  const res = await page.request.post(`/releases/${run.id}/review`, {
    form: { _csrf: csrf, decision: 'approve', comment: 'mine' },
    maxRedirects: 0,
  });
  const body = await res.text();
  assert.equal(res.status(), 403, `olga's POST /releases/${run.id}/review: ${res.status()} ${body.slice(0, 400)}`);
  assert.match(body, /Not allowed/, 'the refusal is the console\'s error page');
  console.log(`  olga's review refused: ${body.match(/data-testid="error">([^<]*)</)?.[1] ?? '(no message)'}`);
  await page.reload();
  await expectText(page.getByTestId('approvals'), /^1 of 2 /, 'approvals after olga\'s refused review');
  await expectText(page.getByTestId('stage'), 'Stage: requested', 'stage after olga\'s refused review');
});

step('7', 'remy approves, exports, downloads the bundle and it verifies', async () => {
  await signInFirstTime('remy', users.remy.otp);
  const { page } = users.remy;
  await enrolPasskey('remy');
  await page.goto('/');
  await expectText(page.locator('ul.pending li'), `Run ${run.id}: requested, 1 approval(s) missing`, 'the pending entry');
  await follow(page, page.getByTestId(`pending-${run.id}`), `/releases/${run.id}`);
  await page.getByTestId('comment').fill('Second approval, by remy.');
  await follow(page, page.getByTestId('approve'), `/releases/${run.id}`);
  await expectText(page.getByTestId('stage'), 'Stage: approved', 'stage after two approvals');
  await expectText(page.getByTestId('approvals'), /^2 of 2 /, 'approvals after remy');
  await expectCount(page.getByTestId('download'), 0, 'download links before the export');

  await follow(page, page.getByTestId('export'), `/releases/${run.id}`);
  await expectText(page.getByTestId('stage'), 'Stage: released', 'stage after the export');
  const verified = page.getByTestId('verified');
  await expectText(verified, 'The bundle on this server verifies: every file matches the signed manifest.', 'server-side verification');
  assert.equal(await verified.getAttribute('class'), 'pass', 'the verification line is marked as passing');
  await expectText(page.locator('main'), `--public-key ${PUBLIC_KEY}`, 'the verify hint names the signing key');
  await screenshot(page, '05-release.png');

  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  assert.equal(download.suggestedFilename(), `lethe-release-${run.id}.tar`, 'the downloaded file name');
  const dir = path.join(WORK_DIR, 'download');
  mkdirSync(dir, { recursive: true });
  const tarFile = path.join(dir, download.suggestedFilename());
  await download.saveAs(tarFile);
  const size = statSync(tarFile).size;
  assert.ok(size > 10_000, `the tar is ${size} bytes`);
  const tar = spawnSync('tar', ['-xf', tarFile, '-C', dir], { encoding: 'utf8' });
  assert.equal(tar.status, 0, `tar -xf: ${tar.stderr}`);
  const bundle = path.join(dir, `lethe-release-${run.id}`);
  const files = readdirSync(bundle);
  assert.ok(files.includes('manifest.json'), `the bundle holds manifest.json: ${files.join(', ')}`);

  const v = spawnSync(LETHE, ['release', 'verify', bundle, '--public-key', PUBLIC_KEY], { encoding: 'utf8' });
  assert.equal(v.status, 0, `lethe release verify exited ${v.status}: ${v.stderr}${v.stdout}`);
  console.log(`  lethe release verify: ${v.stdout.trim().split('\n')[0]}`);

  // The check is not vacuous: one byte more in a bundled file and verification fails.
  const victim = files.filter((f) => f !== 'manifest.json' && statSync(path.join(bundle, f)).isFile())[0];
  assert.ok(victim, `a file to tamper with among ${files.join(', ')}`);
  appendFileSync(path.join(bundle, victim), 'x');
  const bad = spawnSync(LETHE, ['release', 'verify', bundle, '--public-key', PUBLIC_KEY], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0, `verify must fail after tampering with ${victim}: ${bad.stdout}`);
});

step('8', 'the audit page shows the gate rows, the exposure chart and, to a reviewer, the evidence',
  { needs: ['1', '2', '4a', '4b', '5'] },
  async () => {
    // Rita (a reviewer) from her release page, which she left after approving.
    const { page } = users.rita;
    await follow(page, page.locator('header nav').getByRole('link', { name: 'Releases' }), '/releases');
    await follow(page, page.locator('main table').getByRole('link', { name: run.id }), `/releases/${run.id}`);
    const link = page.locator('dl.facts a[href^="/audits/"]');
    run.auditId = (await link.innerText()).trim();
    await follow(page, link, `/audits/${run.auditId}`);
    await expectText(page.locator('h1'), `Audit ${run.auditId}`, 'audit page heading');
    // What it learned comes first, before the memorization figures.
    const headings = (await page.locator('main h2').allInnerTexts()).map((h) => h.trim());
    assert.equal(headings[0], 'What it learned', `the audit page's sections: ${headings.join(' | ')}`);
    await expectText(page.getByTestId('bits-per-byte'), /^(≤ \d+\.\d{3} \(|not measured)/, 'held-out bits per byte');
    await expectText(page.getByTestId('choice-accuracy'), /(held-out items|not measured)/, 'continuation choice');
    const rows = await gateRows(page.getByTestId('gate-rows'));
    assert.deepEqual(rows.map((r) => r[0]), GATE_RULES, 'gate rules on the audit page');
    for (const r of rows) assert.equal(r[3], 'pass', `gate row ${r.join(' | ')}`);
    await expectText(page.locator('main'), 'The audit passes this policy.', 'the audit page verdict');
    const chart = page.locator('[data-testid=exposure-chart] svg');
    await chart.waitFor({ state: 'visible' });
    const box = await chart.boundingBox();
    assert.ok(box && box.width > 100 && box.height > 100, `the exposure chart is drawn (${JSON.stringify(box)})`);
    await expectText(page.getByTestId('membership-auc'), /^\d/, 'the membership AUC');
    await page.getByRole('heading', { name: 'Evidence', exact: true }).waitFor();
    await screenshot(page, '04-audit.png');

    // An operator sees the figures but not the evidence.
    const olga = users.olga.page;
    await follow(olga, olga.locator('main h1').getByRole('link', { name: run.id }), `/runs/${run.id}`);
    await follow(olga, olga.getByTestId('audits').getByRole('link', { name: run.auditId }), `/audits/${run.auditId}`);
    await expectCount(olga.getByRole('heading', { name: 'Evidence', exact: true }), 0, 'Evidence headings for olga');
    await expectText(olga.locator('main'), 'shown to reviewers and auditors; you are operator', 'the note olga sees');
  },
);

step('9', 'the admin\'s ledger page says the chain is intact', { needs: ['1'] }, async () => {
  const { page } = users.admin;
  await follow(page, page.locator('header nav').getByRole('link', { name: 'Studies' }), '/studies');
  await expectText(page.getByTestId('studies'), 'No studies yet.', 'the studies page of a fresh appliance');
  await follow(page, page.locator('header nav').getByRole('link', { name: 'Ledger' }), '/ledger');
  const verdict = page.getByTestId('ledger-verify');
  await expectText(verdict, /^Ledger intact: \d+ entries/, 'the ledger verdict');
  assert.equal(await verdict.getAttribute('class'), 'pass', 'the verdict is marked as passing');
  const actions = await page.locator('table.ledger tbody tr td:nth-child(4)').allInnerTexts();
  assert.ok(actions.length > 10, `ledger entries: ${actions.length}`);
  await screenshot(page, '06-ledger.png');
  await follow(page, page.locator('header nav').getByRole('link', { name: 'Admin' }), '/admin');
  await screenshot(page, '07-admin.png');

  console.log(
    `  run ${run.id}: training ${run.trainSeconds?.toFixed(1)} s, audit ${run.auditSeconds?.toFixed(1)} s (job queued → succeeded in the live table)`,
  );
});

step('10', 'no errors in the browser console on any page', { needs: [] }, async () => {
  // A page error, a CSP violation or any other console error means the console misbehaved even where
  // the steps got through. Expected: the 401 of the deliberately wrong sign-in in step 1, and the 404 of
  // a /favicon.ico request, should a browser still make one.
  const expected = (p) =>
    /^admin: console error on \S+\/login: Failed to load resource: .* status of 401/.test(p) ||
    /Failed to load resource: .* status of 404 .*\(\S+\/favicon\.ico\)$/.test(p);
  const unexpected = problems.filter((p) => !expected(p));
  if (unexpected.length) assert.fail(`${unexpected.length} error(s) in the browser console:\n  ${unexpected.join('\n  ')}`);
});
