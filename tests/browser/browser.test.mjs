// Real-browser tests: the hub binary, headless Debian Chromium, playwright-core.
//
// Run through scripts/browser-test (it installs Chromium, runs `npm ci` and builds the hub), or
// here with `node --test` once target/debug/quicksilver exists. Environment:
//   QUICKSILVER_BIN   the hub binary (default: $CARGO_TARGET_DIR or <repo>/target, + debug/quicksilver)
//   WEBAPP_BIN        the web-app example (default: the same directory, + debug/examples/webapp)
//   CHROMIUM_PATH     the browser (default /usr/bin/chromium)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
const BIN = process.env.QUICKSILVER_BIN || path.join(TARGET, 'debug', 'quicksilver');
const WEBAPP_BIN = process.env.WEBAPP_BIN || path.join(TARGET, 'debug', 'examples', 'webapp');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT_DIR = path.join(ROOT, 'target', 'browser');
const KEY = 'test-key-for-quicksilver-browser-tests';
const HUB_PATH = '/.well-known/mercure';
/** Upper bound of every single wait. */
const WAIT_MS = 10_000;
/** Flags known to work on this kind of machine (see the environment notes): without the
 * background-networking ones, Chromium keeps trying to reach hosts a closed network refuses. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// --- helpers ------------------------------------------------------------------------------------

/** Hub processes started and not yet gone. */
const children = new Set();

const base64url = (data) => Buffer.from(data).toString('base64url');

/** An HS256 JWT signed with the test key. */
function jwt(claims, key = KEY) {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = base64url(JSON.stringify(claims));
  const signature = createHmac('sha256', key).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/** A Mercure 1.0 access token (RFC 9068, `typ: at+jwt`) for `hub`, from the issuer the hub
 * trusts with `MERCURE_TRUSTED_ISSUERS=https://localhost`; `aud` is the hub's URL exactly as the
 * browser reaches it. */
function accessToken(hub, options = {}) {
  const { actions = ['subscribe', 'publish'], topics = [{ match: '*' }], key = KEY } = options;
  const expiresIn = options.expiresIn ?? 600;
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'at+jwt' }));
  const payload = base64url(JSON.stringify({
    iss: 'https://localhost',
    aud: hub.hub,
    exp: Math.floor(Date.now() / 1000) + expiresIn,
    authorization_details: [
      { type: 'https://mercure.rocks/authorization-detail', actions, topics },
    ],
  }));
  const signature = createHmac('sha256', key).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

const PUBLISHER = jwt({ mercure: { publish: ['*'] } });
const SUBSCRIBER = jwt({ mercure: { subscribe: ['*'] } });

/** A port that was free a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The environment of this process without its `MERCURE_*` variables, plus `extra`. */
function childEnv(extra) {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('MERCURE_')),
  );
  return Object.assign(env, extra);
}

/** Spawns `bin` with `env`, its output kept (the last 20,000 characters) and killed with the
 * runner. `log()` is the output so far, `exited()` how it ended (null while it runs), `stop()`
 * sends SIGTERM and waits (SIGKILL after `graceMs`), `kill()` sends SIGKILL. */
function spawnChild(bin, env, graceMs = 3000) {
  const child = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let log = '';
  const keep = (chunk) => {
    log = (log + chunk.toString()).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  child.on('exit', (code, signal) => {
    children.delete(child);
    exited = { code, signal };
  });
  child.on('error', (error) => {
    exited = { error };
  });
  return {
    log: () => log,
    exited: () => exited,
    async stop() {
      if (exited) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await gone;
      clearTimeout(timer);
    },
    kill() {
      if (!exited) child.kill('SIGKILL');
    },
  };
}

/** Starts the hub binary on a free port, with `settings` added to its environment; retries when
 * another process took the port between the probe and the hub's bind. */
async function startHub(settings = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startHubOnce(settings);
    } catch (error) {
      if (attempt >= 3 || !/cannot listen/.test(error.message)) throw error;
    }
  }
}

/** Starts the hub binary; resolves once it logs that it listens (and, over plain HTTP, once
 * /healthz answers 200). With `MERCURE_CERT_FILE` in `settings` it serves HTTPS. */
async function startHubOnce(settings) {
  const port = await freePort();
  const env = childEnv({
    MERCURE_ADDR: `127.0.0.1:${port}`,
    MERCURE_JWT_KEY: KEY,
    MERCURE_TRANSPORT: 'memory',
    MERCURE_ANONYMOUS: '1',
    MERCURE_UI: '1',
    MERCURE_CORS_ORIGINS: '*',
    MERCURE_PUBLISH_ORIGINS: '*',
    // Subscription events and the subscriptions API, so the UI's list shows real subscriptions.
    MERCURE_SUBSCRIPTIONS: '1',
    MERCURE_WORKERS: '2',
    // The "listening on" line is at info level.
    RUST_LOG: process.env.RUST_LOG || 'info',
  });
  Object.assign(env, settings);
  const hub = spawnChild(BIN, env);

  const tls = Boolean(settings.MERCURE_CERT_FILE);
  const url = `${tls ? 'https' : 'http'}://${tls ? 'localhost' : '127.0.0.1'}:${port}`;
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (hub.exited()) {
      throw new Error(
        `the hub (${BIN}) exited before it was ready: ${JSON.stringify(hub.exited())}\n${hub.log()}`,
      );
    }
    if (tls) {
      // Node's fetch does not trust the test certificate; the hub logs once it serves.
      if (hub.log().includes('listening on https://')) break;
    } else {
      try {
        const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (response.status === 200) break;
      } catch {
        // not listening yet
      }
    }
    if (Date.now() > deadline) {
      hub.kill();
      throw new Error(`the hub did not answer /healthz within ${WAIT_MS} ms\n${hub.log()}`);
    }
    await sleep(50);
  }
  return { url, hub: `${url}${HUB_PATH}`, log: hub.log, stop: hub.stop, kill: hub.kill };
}

/** Publishes from Node; returns { status, body }. */
async function publish(hub, fields, token = PUBLISHER) {
  const form = new URLSearchParams();
  for (const [name, value] of fields) form.append(name, value);
  const response = await fetch(hub.hub, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: form,
    signal: AbortSignal.timeout(WAIT_MS),
  });
  return { status: response.status, body: await response.text() };
}

/** A topic no other test uses. */
const uniqueTopic = (name) => `https://example.com/${name}/${randomUUID()}`;

/** Opens a native EventSource in the page and waits until it is open. Received messages go to
 * `window.received`. */
async function openEventSource(page, url) {
  await page.evaluate(
    ({ url, wait }) =>
      new Promise((resolve, reject) => {
        window.received = [];
        window.source = new EventSource(url);
        window.source.onmessage = (event) =>
          window.received.push({ data: event.data, id: event.lastEventId, type: event.type });
        window.source.onopen = () => resolve();
        window.source.onerror = () => {
          if (window.source.readyState === EventSource.CLOSED) reject(new Error('EventSource failed'));
        };
        setTimeout(() => reject(new Error('EventSource did not open in time')), wait);
      }),
    { url, wait: WAIT_MS },
  );
}

function subscribeUrl(hub, topics) {
  const url = new URL(hub.hub);
  for (const topic of topics) url.searchParams.append('topic', topic);
  return url.href;
}

// --- the suite ----------------------------------------------------------------------------------

describe('Quicksilver in a real browser', { timeout: 50_000 }, () => {
  let hub;
  let browser;
  let context;

  before(async () => {
    hub = await startHub();
    // launch() runs Chromium with a new, empty, temporary profile (user data dir) each time.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: WAIT_MS,
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(WAIT_MS);
  });

  after(async () => {
    try {
      if (browser) await browser.close();
    } finally {
      if (hub) await hub.stop();
    }
  });

  /** A new page on the hub's welcome page `/`: EventSources opened there are same-origin. */
  async function hubPage() {
    const page = await context.newPage();
    const response = await page.goto(`${hub.url}/`);
    assert.equal(response.status(), 200);
    return page;
  }

  /** A new page on the hub's UI, with console errors collected. */
  async function uiPage() {
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    const response = await page.goto(`${hub.url}${HUB_PATH}/ui/`);
    assert.equal(response.status(), 200);
    return { page, problems };
  }

  test('a native EventSource receives a published update, multi-line data intact', async () => {
    const page = await hubPage();
    try {
      const topic = uniqueTopic('books');
      await openEventSource(page, subscribeUrl(hub, [topic]));

      const data = 'data for\n\n        x';
      const first = await publish(hub, [['topic', topic], ['data', data]]);
      assert.equal(first.status, 200, first.body);
      const second = await publish(hub, [['topic', topic], ['data', 'second'], ['id', 'custom-id-2']]);
      assert.equal(second.status, 200, second.body);

      await page.waitForFunction(() => window.received.length >= 2, null, { timeout: WAIT_MS });
      const received = await page.evaluate(() => window.received);
      assert.deepEqual(received, [
        { data, id: first.body.trim(), type: 'message' },
        { data: 'second', id: 'custom-id-2', type: 'message' },
      ]);
    } finally {
      await page.close();
    }
  });

  test('a private update does not reach an anonymous EventSource; a public one does', async () => {
    const page = await hubPage();
    try {
      const topic = uniqueTopic('private');
      await openEventSource(page, subscribeUrl(hub, [topic]));

      const secret = await publish(hub, [['topic', topic], ['data', 'secret'], ['private', 'on']]);
      assert.equal(secret.status, 200, secret.body);
      const visible = await publish(hub, [['topic', topic], ['data', 'public']]);
      assert.equal(visible.status, 200, visible.body);

      // The public update was published after the private one, on the same topic: once it is
      // here, the private one would have arrived before it.
      await page.waitForFunction(() => window.received.length >= 1, null, { timeout: WAIT_MS });
      await sleep(200);
      const received = await page.evaluate(() => window.received);
      assert.deepEqual(received, [{ data: 'public', id: visible.body.trim(), type: 'message' }]);
    } finally {
      await page.close();
    }
  });

  test('the debug UI shows an update published through its own form', async () => {
    const { page, problems } = await uiPage();
    try {
      assert.equal(await page.title(), 'Quicksilver debugging UI');
      assert.equal(await page.locator('#hub-url').textContent(), hub.hub);
      const topic = uniqueTopic('ui');

      const subscribeForm = page.getByRole('region', { name: 'Subscribe' });
      const publishForm = page.getByRole('region', { name: 'Publish' });

      await subscribeForm.getByLabel(/^Topic selectors/).fill(`${topic}\nhttps://example.com/other/{id}`);
      await subscribeForm.getByRole('button', { name: 'Subscribe' }).click();
      await page.locator('#connection-state[data-state="open"]').waitFor();
      assert.equal(await subscribeForm.getByRole('button', { name: 'Unsubscribe' }).count(), 1);

      await publishForm.getByRole('textbox', { name: /^Topics/ }).fill(topic);
      await publishForm.getByLabel(/^Data/).fill('{"title": "Hello from the UI"}\nsecond line');
      await publishForm.getByLabel('Publisher JWT').fill(PUBLISHER);
      await publishForm.getByRole('button', { name: 'Publish' }).click();

      const status = page.locator('#publish-status');
      await status.filter({ hasText: '200' }).waitFor();
      const id = (await page.locator('#publish-body').textContent()).trim();
      assert.match(id, /\S/);

      const event = page.locator('#events .event').filter({ hasText: 'Hello from the UI' });
      await event.waitFor();
      assert.equal(await event.locator('.event-id .tag-value').textContent(), id);
      assert.equal(await event.locator('.event-type .tag-value').textContent(), 'message');
      assert.equal(
        await event.locator('.event-data').textContent(),
        '{"title": "Hello from the UI"}\nsecond line',
      );

      // A typed update: the UI listens to the type it publishes with.
      await publishForm.getByLabel(/^Data/).fill('typed update');
      await publishForm.getByLabel(/^Type/).fill('book.updated');
      await publishForm.getByRole('textbox', { name: 'ID (optional)' }).fill('ui-typed-1');
      await publishForm.getByRole('button', { name: 'Publish' }).click();
      const typed = page.locator('#events .event').filter({ hasText: 'typed update' });
      await typed.waitFor();
      assert.equal(await typed.locator('.event-type .tag-value').textContent(), 'book.updated');
      assert.equal(await typed.locator('.event-id .tag-value').textContent(), 'ui-typed-1');
      // Newest first.
      assert.match(await page.locator('#events .event').first().textContent(), /typed update/);
      assert.equal(await page.locator('#event-count').textContent(), '(2)');

      // What a person sees after subscribing and publishing twice.
      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'ui.png'), fullPage: true });

      // A refused publication shows the hub's status and error text.
      await publishForm.getByLabel('Publisher JWT').fill(jwt({ mercure: { publish: ['*'] } }, 'wrong-key'));
      await publishForm.getByRole('button', { name: 'Publish' }).click();
      await status.filter({ hasText: '401' }).waitFor();
      assert.match(await page.locator('#publish-body').textContent(), /\S/);

      await subscribeForm.getByRole('button', { name: 'Unsubscribe' }).click();
      await page.locator('#connection-state[data-state="closed"]').waitFor();
      // The refused publication is logged by Chromium as a failed resource; nothing else may be.
      assert.deepEqual(
        problems.filter((p) => !/status of 401/.test(p)),
        [],
        'no script error and no CSP violation',
      );
    } finally {
      await page.close();
    }
  });


  test('the debug UI subscribes with a Mercure 1.0 URL Pattern and receives an update from its form', async () => {
    const { page, problems } = await uiPage();
    const requests = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === HUB_PATH) requests.push(request);
    });
    try {
      const base = uniqueTopic('ui-v1');
      const subscribeForm = page.getByRole('region', { name: 'Subscribe' });
      const publishForm = page.getByRole('region', { name: 'Publish' });
      const selectorsField = subscribeForm.getByLabel(/^Topic selectors/);
      const warning = page.locator('#subscribe-warning');

      // A per-line prefix mixing the two protocols: said in the page, and never sent.
      await selectorsField.fill(`match_urlpattern=${base}/:id\n${base}/{id}`);
      await warning.filter({ hasText: /mix draft-07 topics with Mercure 1\.0 matchers/ }).waitFor();
      await subscribeForm.getByRole('button', { name: 'Subscribe' }).click();
      await page.locator('#subscribe-error').filter({ hasText: /^Not sent:/ }).waitFor();
      assert.equal(await page.locator('#connection-state').getAttribute('data-state'), 'closed');
      assert.equal(requests.length, 0, 'nothing sent to the hub');

      // The matcher type of the lines without a prefix, and the cursor of Mercure 1.0.
      await selectorsField.fill(`${base}/books/:id`);
      await subscribeForm.getByLabel(/^Matcher type/).selectOption('urlpattern');
      assert.equal(await warning.isVisible(), false);
      assert.match(await page.locator('#sub-plan').textContent(), /Mercure 1\.0 URL Pattern/);
      assert.match(await page.locator('#sub-cursor-name').textContent(), /last_event_id/);
      await subscribeForm.getByLabel(/^Last-Event-ID/).fill('earliest');
      await subscribeForm.getByRole('button', { name: 'Subscribe' }).click();
      await page.locator('#connection-state[data-state="open"]').waitFor();
      assert.match(await page.locator('#subscribe-response').textContent(), /Mercure-Last-Event-ID: earliest/);

      const sent = new URL(requests.at(-1).url());
      assert.deepEqual([...sent.searchParams], [
        ['match_urlpattern', `${base}/books/:id`],
        ['last_event_id', 'earliest'],
      ]);

      // Published with a draft-07 token through the same form: one router for both protocols.
      await publishForm.getByRole('textbox', { name: /^Topics/ }).fill(`${base}/books/7`);
      await publishForm.getByLabel(/^Data/).fill('to a URL Pattern');
      await publishForm.getByLabel('Publisher JWT').fill(PUBLISHER);
      await publishForm.getByRole('button', { name: 'Publish' }).click();
      await page.locator('#publish-status').filter({ hasText: '200' }).waitFor();
      const id = (await page.locator('#publish-body').textContent()).trim();

      const event = page.locator('#events .event').filter({ hasText: 'to a URL Pattern' });
      await event.waitFor();
      assert.equal(await event.locator('.event-id .tag-value').textContent(), id);
      assert.equal(await event.locator('.event-type .tag-value').textContent(), 'message');
      // Another path does not match the pattern (the count below says so); another book does.
      const other = await publish(hub, [['topic', `${base}/authors/7`], ['data', 'not a book']]);
      assert.equal(other.status, 200, other.body);
      const typed = await publish(hub, [
        ['topic', `${base}/books/8`], ['data', 'typed'], ['type', 'book.updated'],
      ]);
      assert.equal(typed.status, 200, typed.body);
      // A fetch stream receives every type, with no listener to declare.
      const typedEvent = page.locator('#events .event').filter({ hasText: 'typed' });
      await typedEvent.waitFor();
      assert.equal(await typedEvent.locator('.event-type .tag-value').textContent(), 'book.updated');
      assert.equal(await page.locator('#event-count').textContent(), '(2)');

      await subscribeForm.getByRole('button', { name: 'Unsubscribe' }).click();
      await page.locator('#connection-state[data-state="closed"]').waitFor();
      assert.deepEqual(problems, [], 'no script error and no CSP violation');
    } finally {
      await page.close();
    }
  });

  test('the subscriptions button shows a readable result or error', async (t) => {
    const { page, problems } = await uiPage();
    try {
      const subscribeForm = page.getByRole('region', { name: 'Subscribe' });
      const status = page.locator('#subscriptions-status');
      const rows = page.locator('#subscriptions-body tr');
      /** Clicks the button and returns the status line once the answer is shown. */
      const list = async () => {
        await page.getByRole('button', { name: 'List subscriptions' }).click();
        await page.waitForFunction(
          () =>
            !document.getElementById('subscriptions-button').disabled &&
            !/^Loading/.test(document.getElementById('subscriptions-status').textContent),
          null,
          { timeout: WAIT_MS },
        );
        return status.textContent();
      };

      // The real hub, with the page itself subscribed. The API may be missing (404 on a hub
      // without it); either way the answer must be readable.
      const topic = uniqueTopic('presence');
      await subscribeForm.getByLabel('Subscriber JWT').fill(SUBSCRIBER);
      await subscribeForm.getByLabel(/^Topic selectors/).fill(topic);
      await subscribeForm.getByRole('button', { name: 'Subscribe' }).click();
      await page.locator('#connection-state[data-state="open"]').waitFor();
      const real = await list();
      t.diagnostic(`the hub's own answer: ${real}`);
      assert.match(real, /^(200 OK: \d+ active subscriptions?|Error: \d{3} .+)/, real);
      if (real.startsWith('200')) {
        const mine = rows.filter({ hasText: topic });
        assert.equal(await mine.count(), 1, "the page's own subscription is listed");
        assert.equal(await mine.locator('td').nth(3).textContent(), 'yes');
        // Filtered by topic selector: only that subscription.
        await page.getByLabel(/^Only for this topic selector/).fill(topic);
        assert.match(await list(), /^200 OK: 1 active subscription\b/);
        assert.equal(await rows.count(), 1);
        await page.getByLabel(/^Only for this topic selector/).fill('');
      } else if (real.startsWith('Error: 404')) {
        assert.match(real, /subscriptions API/);
      }
      await subscribeForm.getByRole('button', { name: 'Unsubscribe' }).click();

      // Answers the real hub may not give here are mocked: first a JSON-LD collection.
      const answer = {
        '@context': 'https://mercure.rocks/',
        id: '/.well-known/mercure/subscriptions',
        type: 'Subscriptions',
        lastEventID: 'urn:uuid:4ad7d3a8-1b4a-4a14-9f1a-7d1c6b4bbd58',
        subscriptions: [
          {
            id: '/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2Fa/urn%3Auuid%3A1',
            type: 'Subscription',
            subscriber: 'urn:uuid:1',
            topic: 'https://example.com/a',
            active: true,
            payload: { user: '<b>alice</b>' },
          },
          {
            id: '/.well-known/mercure/subscriptions/%2A/urn%3Auuid%3A2',
            type: 'Subscription',
            subscriber: 'urn:uuid:2',
            topic: '*',
            active: true,
          },
        ],
      };
      const API = '**/.well-known/mercure/subscriptions';
      const mock = async (status, contentType, body) => {
        await page.unroute(API);
        await page.route(API, (route) => route.fulfill({ status, contentType, body }));
      };
      await mock(200, 'application/ld+json', JSON.stringify(answer));
      assert.match(await list(), /^200 OK: 2 active subscriptions, lastEventID urn:uuid:4ad7/);
      assert.equal(await rows.count(), 2);
      assert.deepEqual(await rows.nth(0).locator('td').allTextContents(), [
        answer.subscriptions[0].id,
        'https://example.com/a',
        'urn:uuid:1',
        'yes',
        JSON.stringify({ user: '<b>alice</b>' }, null, 2),
      ]);
      assert.equal(await rows.nth(1).locator('td').last().textContent(), '—');
      assert.equal(await page.locator('#subscriptions-body b').count(), 0, 'payload shown as text');
      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'subscriptions.png'), fullPage: true });

      // Errors: the status, a hint, and the hub's text.
      await mock(404, 'text/plain', 'Not Found\n');
      assert.match(await list(), /^Error: 404 Not Found — this hub does not serve the subscriptions API/);
      assert.equal(await page.locator('#subscriptions-table').isVisible(), false);
      await mock(401, 'text/plain', 'Unauthorized: invalid token\n');
      assert.match(await list(), /^Error: 401 Unauthorized — fill the subscriber JWT/);
      assert.equal(await page.locator('#subscriptions-text').textContent(), 'Unauthorized: invalid token');
      assert.deepEqual(problems.filter((p) => !/status of (401|404)/.test(p)), []);
    } finally {
      await page.close();
    }
  });

  test('the UI answers on its URL, redirects without the slash and 404s unknown files', async () => {
    const plain = await fetch(`${hub.url}${HUB_PATH}/ui`, { redirect: 'manual' });
    assert.ok([301, 308].includes(plain.status), `status ${plain.status}`);
    assert.equal(plain.headers.get('location'), `${HUB_PATH}/ui/`);
    for (const [file, type] of [
      ['', 'text/html; charset=utf-8'],
      ['app.js', 'text/javascript; charset=utf-8'],
      ['app.css', 'text/css; charset=utf-8'],
    ]) {
      const response = await fetch(`${hub.url}${HUB_PATH}/ui/${file}`);
      assert.equal(response.status, 200, file);
      assert.equal(response.headers.get('content-type'), type, file);
      assert.equal(response.headers.get('cache-control'), 'no-cache', file);
      assert.match(response.headers.get('content-security-policy'), /^default-src 'self'/);
    }
    assert.equal((await fetch(`${hub.url}${HUB_PATH}/ui/missing.js`)).status, 404);
  });
});

describe('Mercure 1.0 access tokens in the debug UI', { timeout: 50_000 }, () => {
  let hub;
  let browser;
  let context;

  before(async () => {
    // Not anonymous: a Mercure 1.0 subscription needs the access token, sent as a header.
    hub = await startHub({ MERCURE_TRUSTED_ISSUERS: 'https://localhost', MERCURE_ANONYMOUS: '0' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: WAIT_MS,
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    context.setDefaultTimeout(WAIT_MS);
  });

  after(async () => {
    try {
      if (browser) await browser.close();
    } finally {
      if (hub) await hub.stop();
    }
  });

  async function uiPage() {
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    const requests = [];
    page.on('request', (request) => requests.push(request));
    assert.equal((await page.goto(`${hub.url}${HUB_PATH}/ui/`)).status(), 200);
    return { page, problems, requests };
  }

  test('subscribes with an access token in the Authorization header and receives a private update', async () => {
    const { page, problems, requests } = await uiPage();
    try {
      const token = accessToken(hub);
      const base = uniqueTopic('ui-at');
      const subscribeForm = page.getByRole('region', { name: 'Subscribe' });
      const publishForm = page.getByRole('region', { name: 'Publish' });
      const error = page.locator('#subscribe-error');

      // Without a token: the hub's 401, its body and WWW-Authenticate are shown.
      await subscribeForm.getByLabel(/^Topic selectors/).fill(`${base}/:id`);
      await subscribeForm.getByLabel(/^Matcher type/).selectOption('urlpattern');
      await subscribeForm.getByRole('button', { name: 'Subscribe' }).click();
      await page.locator('#connection-state[data-state="error"]').waitFor();
      const refused = await error.textContent();
      assert.match(refused, /401 Unauthorized/);
      assert.match(refused, /WWW-Authenticate: Bearer resource_metadata="/);

      // An access token with draft-07 selectors: the page says so and sends nothing.
      await subscribeForm.getByLabel('Subscriber JWT').fill(token);
      assert.match(await page.locator('#sub-jwt-kind').textContent(), /^Mercure 1\.0 token \(typ at\+jwt/);
      await subscribeForm.getByLabel(/^Matcher type/).selectOption('topic');
      await page
        .locator('#subscribe-warning')
        .filter({ hasText: /access token \(typ at\+jwt\) but the selectors are draft-07/ })
        .waitFor();
      const before = requests.length;
      await subscribeForm.getByRole('button', { name: 'Subscribe' }).click();
      await error.filter({ hasText: /^Not sent: The subscriber JWT is a Mercure 1\.0 access token/ }).waitFor();
      assert.equal(requests.length, before, 'nothing sent to the hub');

      // Mercure 1.0 matchers: a fetch stream with the token in the header, never in the URL.
      await subscribeForm.getByLabel(/^Matcher type/).selectOption('urlpattern');
      await subscribeForm.getByRole('button', { name: 'Subscribe' }).click();
      await page.locator('#connection-state[data-state="open"]').waitFor();
      const stream = requests.filter((r) => new URL(r.url()).pathname === HUB_PATH).at(-1);
      assert.equal(stream.method(), 'GET');
      assert.equal((await stream.allHeaders()).authorization, `Bearer ${token}`);
      assert.deepEqual([...new URL(stream.url()).searchParams], [['match_urlpattern', `${base}/:id`]]);

      // A private update, published with the same access token through the form.
      await publishForm.getByRole('textbox', { name: /^Topics/ }).fill(`${base}/1`);
      await publishForm.getByLabel(/^Data/).fill('private to the token');
      await publishForm.getByLabel(/^Private/).check();
      await publishForm.getByLabel('Publisher JWT').fill(token);
      await publishForm.getByRole('button', { name: 'Publish' }).click();
      await page.locator('#publish-status').filter({ hasText: '200' }).waitFor();
      const id = (await page.locator('#publish-body').textContent()).trim();
      const event = page.locator('#events .event').filter({ hasText: 'private to the token' });
      await event.waitFor();
      assert.equal(await event.locator('.event-id .tag-value').textContent(), id);

      // A refused publication (type=mercure is the hub's own) shows the hub's body.
      await publishForm.getByLabel(/^Type/).fill('mercure');
      await publishForm.getByRole('button', { name: 'Publish' }).click();
      await page.locator('#publish-status').filter({ hasText: '400' }).waitFor();
      assert.match(await page.locator('#publish-body').textContent(), /mercure/);

      // A token signed with another key: 401 invalid_token, with its WWW-Authenticate.
      await publishForm.getByLabel(/^Type/).fill('');
      await publishForm.getByLabel('Publisher JWT').fill(accessToken(hub, { key: 'wrong-key' }));
      await publishForm.getByRole('button', { name: 'Publish' }).click();
      await page.locator('#publish-status').filter({ hasText: '401' }).waitFor();
      assert.match(
        await page.locator('#publish-www-authenticate').textContent(),
        /^WWW-Authenticate: Bearer error="invalid_token"/,
      );

      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'ui-access-token.png'), fullPage: true });
      await subscribeForm.getByRole('button', { name: 'Unsubscribe' }).click();
      await page.locator('#connection-state[data-state="closed"]').waitFor();
      assert.deepEqual(problems.filter((p) => !/status of (400|401)/.test(p)), []);
    } finally {
      await page.close();
    }
  });

  test('shows presence events (event: mercure) and lists subscriptions in Mercure 1.0 shape', async () => {
    const { page, problems } = await uiPage();
    try {
      const token = accessToken(hub);
      const pattern = `${uniqueTopic('ui-list')}/:id`;
      const subscribeForm = page.getByRole('region', { name: 'Subscribe' });
      const status = page.locator('#subscriptions-status');
      const rows = page.locator('#subscriptions-body tr');
      const list = async () => {
        await page.getByRole('button', { name: 'List subscriptions' }).click();
        await page.waitForFunction(
          () =>
            !document.getElementById('subscriptions-button').disabled &&
            !/^Loading/.test(document.getElementById('subscriptions-status').textContent),
          null,
          { timeout: WAIT_MS },
        );
        return status.textContent();
      };

      // `*` matches the hub's presence topics too, which the token's `*` allows: the page sees
      // its own arrival as an `event: mercure` document.
      await subscribeForm.getByLabel('Subscriber JWT').fill(token);
      await subscribeForm.getByLabel(/^Matcher type/).selectOption('urlpattern');
      await subscribeForm.getByLabel(/^Topic selectors/).fill(`${pattern}\nmatch=*`);
      await subscribeForm.getByRole('button', { name: 'Subscribe' }).click();
      await page.locator('#connection-state[data-state="open"]').waitFor();
      const presence = page.locator('#events .event[data-type="mercure"]').filter({ hasText: pattern });
      await presence.first().waitFor();
      assert.equal(await presence.first().locator('.event-type .tag-value').textContent(), 'mercure');
      const arrival = JSON.parse(await presence.first().locator('.event-data').textContent());
      assert.equal(arrival.type, 'subscription');
      assert.equal(arrival.match_type, 'urlpattern');

      const all = await list();
      assert.match(all, /^200 OK: \d+ active subscriptions?, cursor \(ETag\) \S+ \(Mercure 1\.0, JSON\)$/, all);
      const mine = rows.filter({ hasText: pattern });
      assert.equal(await mine.count(), 1);
      const cells = await mine.locator('td').allTextContents();
      assert.equal(cells[1], `urlpattern ${pattern}`);
      assert.equal(cells[2], arrival.subscriber);
      assert.equal(cells[3], 'yes');
      assert.match(cells[0], /^\/\.well-known\/mercure\/subscriptions\/urlpattern\//);

      // Only one matcher: /subscriptions/{match_type}/{match}.
      await page.getByLabel(/^Only for this topic selector/).fill(pattern);
      await page.getByLabel(/^Its match type/).selectOption('urlpattern');
      assert.match(await list(), /^200 OK: 1 active subscription\b/);
      assert.equal(await rows.count(), 1);
      assert.equal(await page.locator('#subscriptions-raw-title').textContent(), 'Raw response (application/json)');

      // Another token that does not allow the path: 403 insufficient_scope, shown.
      await subscribeForm.getByRole('button', { name: 'Unsubscribe' }).click();
      await subscribeForm.getByLabel('Subscriber JWT').fill(
        accessToken(hub, {
          actions: ['subscribe'],
          topics: [{ match: 'https://example.com/only', match_type: 'exact' }],
        }),
      );
      assert.match(await list(), /^Error: 403 Forbidden — fill the subscriber JWT/);
      assert.match(await page.locator('#subscriptions-www-authenticate').textContent(), /insufficient_scope/);
      assert.deepEqual(problems.filter((p) => !/status of 403/.test(p)), []);
    } finally {
      await page.close();
    }
  });
});

/** A self-signed certificate for localhost and 127.0.0.1, made with openssl in `dir`. */
function selfSignedCertificate(dir) {
  mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, 'hub.pem');
  const key = path.join(dir, 'hub.key');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { cert, key };
}

/** Opens `count` EventSources on `url` in `page` (each counted in `window.opened` when open and
 * in `window.delivered` when it receives a message), without waiting for them. */
async function openMany(page, url, count) {
  await page.evaluate(
    ({ url, count }) => {
      window.opened = 0;
      window.delivered = 0;
      window.sources = [];
      for (let i = 0; i < count; i += 1) {
        const source = new EventSource(url);
        source.onopen = () => { window.opened += 1; };
        source.onmessage = () => { window.delivered += 1; };
        window.sources.push(source);
      }
    },
    { url, count },
  );
}

/** Publishes from inside `page` (same origin, so the page's trust of the certificate applies). */
async function publishFromPage(page, hubUrl, topic, id) {
  return page.evaluate(
    async ({ hubUrl, topic, id, token }) => {
      const body = new URLSearchParams({ topic, id });
      const response = await fetch(hubUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body,
      });
      return response.status;
    },
    { hubUrl, topic, id, token: PUBLISHER },
  );
}

describe('HTTP/2 lets one page hold many streams; HTTP/1.1 stalls at six', { timeout: 50_000 }, () => {
  const STREAMS = 20;
  let https;
  let http;
  let browser;
  let context;

  before(async () => {
    const { cert, key } = selfSignedCertificate(path.join(SCREENSHOT_DIR, `tls-${process.pid}`));
    https = await startHub({ MERCURE_CERT_FILE: cert, MERCURE_KEY_FILE: key });
    http = await startHub();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: WAIT_MS,
    });
    // The test certificate is self-signed; HTTP/2 is negotiated all the same.
    context = await browser.newContext({ ignoreHTTPSErrors: true });
    context.setDefaultTimeout(WAIT_MS);
  });

  after(async () => {
    try {
      if (browser) await browser.close();
    } finally {
      if (https) await https.stop();
      if (http) await http.stop();
    }
  });

  test(`over HTTPS (HTTP/2), ${STREAMS} EventSources of one page all receive an update`, async () => {
    const page = await context.newPage();
    try {
      assert.equal((await page.goto(`${https.url}/`)).status(), 200);
      const protocol = await page.evaluate(
        () => performance.getEntriesByType('navigation')[0].nextHopProtocol,
      );
      assert.equal(protocol, 'h2');
      const topic = uniqueTopic('h2');
      await openMany(page, subscribeUrl(https, [topic]), STREAMS);
      await page.waitForFunction((n) => window.opened === n, STREAMS);
      assert.equal(await publishFromPage(page, https.hub, topic, 'to-all'), 200);
      await page.waitForFunction((n) => window.delivered === n, STREAMS);
    } finally {
      await page.close();
    }
  });

  test(`over HTTP/1.1 the same page gets six streams and the other ${STREAMS - 6} wait`, async () => {
    const page = await context.newPage();
    try {
      assert.equal((await page.goto(`${http.url}/`)).status(), 200);
      const protocol = await page.evaluate(
        () => performance.getEntriesByType('navigation')[0].nextHopProtocol,
      );
      assert.equal(protocol, 'http/1.1');
      const topic = uniqueTopic('h1');
      await openMany(page, subscribeUrl(http, [topic]), STREAMS);
      await page.waitForFunction(() => window.opened === 6);
      // Published from Node: the page has no connection left to publish with.
      const published = await publish(http, [['topic', topic], ['id', 'to-six']]);
      assert.equal(published.status, 200, published.body);
      await page.waitForFunction(() => window.delivered === 6);
      // The six connections stay open, so no other stream can ever start: the stall.
      const state = await page.evaluate(() => ({
        opened: window.opened,
        delivered: window.delivered,
        connecting: window.sources.filter((s) => s.readyState === EventSource.CONNECTING).length,
      }));
      assert.deepEqual(state, { opened: 6, delivered: 6, connecting: STREAMS - 6 });
    } finally {
      await page.close();
    }
  });
});

/** Starts the `webapp` example (examples/webapp.rs) on an ephemeral port; resolves with its base
 * URL once it prints the address it listens on. */
async function startWebappExample() {
  const app = spawnChild(WEBAPP_BIN, childEnv({ ADDR: '127.0.0.1:0' }), 5000);
  const deadline = Date.now() + WAIT_MS;
  let url;
  while (!(url = /listening on (http:\/\/\S+)/.exec(app.log())?.[1])) {
    if (app.exited()) {
      throw new Error(`the example (${WEBAPP_BIN}) exited: ${JSON.stringify(app.exited())}\n${app.log()}`);
    }
    if (Date.now() > deadline) {
      app.kill();
      throw new Error(`the example printed no address within ${WAIT_MS} ms\n${app.log()}`);
    }
    await sleep(50);
  }
  return { url, stop: app.stop };
}

describe('the web-app example: a page receives what another page posts', { timeout: 50_000 }, () => {
  let app;
  let browser;

  before(async () => {
    app = await startWebappExample();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: WAIT_MS,
    });
  });

  after(async () => {
    try {
      if (browser) await browser.close();
    } finally {
      if (app) await app.stop();
    }
  });

  test('two boards show a message posted through the form, in order', async () => {
    const context = await browser.newContext();
    context.setDefaultTimeout(WAIT_MS);
    const problems = [];
    const open = async (path) => {
      const page = await context.newPage();
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      assert.equal((await page.goto(`${app.url}${path}`)).status(), 200);
      return page;
    };
    const boards = [await open('/'), await open('/')];
    for (const board of boards) {
      await board.waitForFunction(() => document.getElementById('state').textContent === 'connected');
    }
    const poster = await open('/post');
    const messages = ['first <b>message</b>', 'second message, with ünïcode'];
    for (const message of messages) {
      await poster.fill('input[name=text]', message);
      // The form posts to the application, which publishes in-process and sends the browser
      // back to the form.
      await Promise.all([poster.waitForURL(`${app.url}/post`), poster.click('button')]);
    }
    for (const board of boards) {
      await board.waitForFunction((count) => document.querySelectorAll('#messages li').length === count, messages.length);
      const shown = await board.$$eval('#messages li', (items) => items.map((item) => item.textContent));
      // Text, not markup: the board never interprets a message as HTML.
      assert.deepEqual(shown, messages);
    }
    // The application's own check: an empty message is refused with a clear answer.
    const refused = await fetch(`${app.url}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'text=%20',
    });
    assert.equal(refused.status, 400);
    assert.match(await refused.text(), /1 to 500 characters/);
    assert.deepEqual(problems, []);
    await context.close();
  });
});

// Even if the runner dies before the `after` hook, the hub must not outlive it.
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
