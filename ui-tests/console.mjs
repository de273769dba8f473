// The web console in headless Chromium, against nodes the caller started
// (integration-tests/tests/ui.rs starts them; `make test-ui` runs it):
//
//   KV_UI_NODES        client URLs of a 3-node cluster, the page's node first
//   KV_UI_BROKER       a broker registered with that cluster's name server
//   KV_UI_TOPIC        a topic that broker registered
//   KV_UI_AUTH_URL     a node run with --auth
//   KV_UI_ROOT_TOKEN   its root token
//   KV_UI_READ_TOKEN   a token that may only read app/ there
//   KV_UI_SCREENSHOTS  where to save a screenshot of each page (optional)
//   CHROMIUM           the browser (default /usr/bin/chromium)
//
// Every wait is bounded (playwright's timeouts); the run ends by itself.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} must be set`);
  return value;
};
const nodes = env('KV_UI_NODES').split(',');
const [console0, other1, other2] = nodes;
const screenshots = process.env.KV_UI_SCREENSHOTS;
const STEP_TIMEOUT_MS = 15_000;

/** One request to a node of the cluster, as a client other than the page. */
async function api(node, method, path, { body, token, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(`${node}${path}`, init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function shoot(page, name) {
  if (!screenshots) return;
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}.png`) });
}

function step(name) {
  console.log(`console test: ${name}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  // Every page may reach its own node and nothing else, and must break no
  // rule of its content security policy nor throw.
  const strangers = [];
  const problems = [];
  context.on('page', (opened) => {
    opened.on('request', (request) => {
      if (request.isNavigationRequest()) return;
      const url = new URL(request.url());
      if (url.protocol !== 'data:' && url.origin !== new URL(opened.url()).origin) strangers.push(request.url());
    });
    opened.on('console', (message) => {
      if (message.type() === 'error' && /Content Security Policy|Refused to/.test(message.text())) problems.push(message.text());
    });
    opened.on('pageerror', (error) => problems.push(String(error)));
  });
  const page = await context.newPage();

  /** Waits until the page on screen was drawn from its first answers. */
  async function loaded(on, name) {
    await on.locator(`main[data-page="${name}"]:is([data-loaded="true"], [data-loaded="error"])`).waitFor();
    const outcome = await on.locator('main').getAttribute('data-loaded');
    const banner = await on.locator('#banner').isVisible() ? await on.locator('#banner').innerText() : '';
    assert.equal(outcome, 'true', `the ${name} page loads: ${banner}`);
  }

  step('some data to look at');
  const written = async (answer, what) => assert.ok((await answer).status < 300, what);
  for (const [key, value] of [['app/config', { retention: '7d', replicas: 3 }], ['app/limits/orders', { qps: 500 }],
    ['app/limits/payments', { qps: 200 }], ['ops/owner', 'team-messaging']]) {
    await written(api(other1, 'PUT', `/v1/kv/${key}`, { body: value }), key);
  }
  for (const name of ['orders', 'payments']) {
    await written(api(other2, 'PUT', `/v1/topics/${name}`, { body: { topicName: name, readQueueNums: 8, writeQueueNums: 8 } }), name);
  }
  await written(api(other2, 'PUT', '/v1/subscriptions/order-consumers', { body: { groupName: 'order-consumers' } }), 'the group');

  step('every page loads');
  for (const name of ['keys', 'topics', 'subscriptions', 'cluster', 'changes', 'brokers']) {
    await page.goto(`${console0}/ui/#/${name}`);
    await loaded(page, name);
    await page.locator(`#nav a[data-page="${name}"].active`).waitFor();
    assert.equal(await page.locator('#banner').isHidden(), true, `the ${name} page shows no error`);
  }

  step('the cluster page shows three members and one leader, and follows a write live');
  await page.goto(`${console0}/ui/#/cluster`);
  await page.locator('#members tbody tr').nth(2).waitFor();
  assert.equal(await page.locator('#members tbody tr').count(), 3);
  assert.equal(await page.locator('#members tr.leader').count(), 1);
  assert.match(await page.locator('#members tr.leader .role').innerText(), /leader/);
  await page.evaluate(() => { window.notReloaded = true; });
  const applied = Number(await page.locator('#cluster-applied').innerText());
  await api(other1, 'PUT', '/v1/kv/app/cluster-watch', { body: 1 });
  await page.waitForFunction((before) => Number(document.querySelector('#cluster-applied')?.textContent) > before, applied);
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the cluster page was not reloaded');
  await shoot(page, 'cluster');

  step('a topic through the form: a bad queue count is refused at its field');
  await page.goto(`${console0}/ui/#/topics`);
  await page.locator('tr[data-name="orders"]').waitFor();
  await shoot(page, 'topics');
  await page.locator('#new-metadata').click();
  await page.locator('#field-topicName').fill('ui-orders');
  await page.locator('#field-readQueueNums').fill('0');
  await page.locator('#field-writeQueueNums').fill('8');
  await page.locator('#save-metadata').click();
  const queueError = page.locator('[data-field="readQueueNums"] .field-error');
  await queueError.waitFor();
  assert.match(await queueError.innerText(), /readQueueNums must be at least 1/);
  await shoot(page, 'topic-form');
  assert.equal((await api(other1, 'GET', '/v1/topics/ui-orders')).status, 404, 'nothing was written');

  step('the node\'s own refusal is shown at its field too');
  await page.locator('#field-topicName').fill('TBW102');
  await page.locator('#field-readQueueNums').fill('8');
  await page.locator('#save-metadata').click();
  const nameError = page.locator('[data-field="topicName"] .field-error');
  await nameError.waitFor();
  assert.match(await nameError.innerText(), /400 system_name/);

  step('a good topic is created and every node has it');
  await page.locator('#field-topicName').fill('ui-orders');
  await page.locator('#save-metadata').click();
  await page.locator('tr[data-name="ui-orders"]').waitFor();
  assert.match(await page.locator('#banner').innerText(), /Saved topic ui-orders/);
  for (const node of nodes) {
    const { status, body } = await api(node, 'GET', '/v1/topics/ui-orders');
    assert.equal(status, 200, node);
    assert.equal(body.readQueueNums, 8);
  }
  await page.locator('#search').fill('ui-');
  assert.equal(await page.locator('tr[data-name="orders"]').isHidden(), true, 'the search hides the others');
  assert.equal(await page.locator('tr[data-name="ui-orders"]').isVisible(), true);

  step('a subscription group is edited through its form, and a new one created');
  await page.goto(`${console0}/ui/#/subscriptions`);
  await page.locator('tr[data-name="order-consumers"] a').click();
  await page.locator('#field-groupName').waitFor();
  assert.equal(await page.locator('#field-groupName').inputValue(), 'order-consumers');
  assert.equal(await page.locator('#field-groupName').getAttribute('readonly'), '');
  await page.locator('#field-retryMaxTimes').fill('5');
  await page.locator('#save-metadata').click();
  await page.locator('#banner', { hasText: 'Saved subscription group order-consumers' }).waitFor();
  assert.equal((await api(other1, 'GET', '/v1/subscriptions/order-consumers')).body.retryMaxTimes, 5);
  await page.locator('#new-metadata').click();
  await page.locator('#field-groupName').fill('ui-consumers');
  await page.locator('#save-metadata').click();
  await page.locator('tr[data-name="ui-consumers"]').waitFor();
  assert.equal((await api(other2, 'GET', '/v1/subscriptions/ui-consumers')).status, 200);
  await shoot(page, 'subscriptions');

  step('a key edited at a stale revision is a conflict, and nothing is written');
  await api(other1, 'PUT', '/v1/kv/ui/demo', { body: { v: 1 } });
  await page.goto(`${console0}/ui/#/keys?prefix=app%2F`);
  await page.locator('#key-tree li.folder').first().waitFor();
  await page.goto(`${console0}/ui/#/keys?prefix=ui%2F&key=ui%2Fdemo`);
  await page.locator('#value-editor').waitFor();
  assert.match(await page.locator('#key-value').innerText(), /"v": 1/);
  await api(other2, 'PUT', '/v1/kv/ui/demo', { body: { v: 2 } });
  await page.locator('#value-editor').fill('{"v": 3}');
  await page.locator('#save-key').click();
  await page.locator('#key-error:not(:empty)').waitFor();
  assert.match(await page.locator('#key-error').innerText(), /Conflict/);
  assert.deepEqual((await api(other1, 'GET', '/v1/kv/ui/demo')).body.value, { v: 2 });

  step('after a reload the same edit goes through');
  await page.getByRole('button', { name: 'Reload' }).click();
  await page.locator('#key-value', { hasText: '"v": 2' }).waitFor();
  await page.locator('#value-editor').fill('{"v": 3}');
  await page.locator('#save-key').click();
  await page.locator('#banner', { hasText: 'Saved ui/demo' }).waitFor();
  assert.deepEqual((await api(other2, 'GET', '/v1/kv/ui/demo')).body.value, { v: 3 });

  step('a delete asks first');
  await page.locator('#delete-key').click();
  await page.locator('#confirm[open]').waitFor();
  await page.locator('#confirm-ok').click();
  await page.locator('#banner', { hasText: 'Deleted ui/demo' }).waitFor();
  assert.equal((await api(other1, 'GET', '/v1/kv/ui/demo')).status, 404);
  await page.goto(`${console0}/ui/#/keys?prefix=app%2F&key=app%2Fconfig`);
  await page.locator('#value-editor').waitFor();
  await shoot(page, 'keys');

  step('a key with a dot segment is refused before any request');
  await page.goto(`${console0}/ui/#/keys?prefix=&key=x%2F..%2F..%2Fleases%2F7`);
  await page.locator('#banner[data-status="400"]').waitFor();
  assert.match(await page.locator('#banner').innerText(), /invalid_key/);
  assert.equal(await page.locator('#delete-key').count(), 0, 'nothing to delete');

  step('a change arrives on the changes page without a reload');
  await page.goto(`${console0}/ui/#/changes`);
  await loaded(page, 'changes');
  await page.evaluate(() => { window.notReloaded = true; });
  await api(other2, 'PUT', '/v1/kv/app/live', { body: { n: 1 } });
  await api(other1, 'DELETE', '/v1/kv/ops/owner');
  await page.locator('#change-rows tr[data-key="app/live"]').waitFor();
  await page.locator('#change-rows tr[data-key="ops/owner"]').waitFor();
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the changes page was not reloaded');
  await shoot(page, 'changes');

  step('brokers and a route, as the name server has them');
  const broker = env('KV_UI_BROKER');
  const topic = env('KV_UI_TOPIC');
  await page.goto(`${console0}/ui/#/brokers?topic=${encodeURIComponent(topic)}`);
  await page.locator('#brokers td', { hasText: broker }).first().waitFor();
  await page.locator('#route td', { hasText: broker }).first().waitFor();
  await shoot(page, 'brokers');

  step('with --auth: 401 without a token, 403 beyond its roles, all with root');
  const authUrl = env('KV_UI_AUTH_URL');
  const root = env('KV_UI_ROOT_TOKEN');
  await api(authUrl, 'PUT', '/v1/kv/app/guarded', { body: 1, token: root });
  const authPage = await context.newPage();
  await authPage.goto(`${authUrl}/ui/#/keys?prefix=app%2F`);
  await authPage.locator('#banner[data-status="401"]').waitFor();
  assert.match(await authPage.locator('#banner').innerText(), /401 unauthenticated/);
  await shoot(authPage, 'auth');
  await authPage.locator('#token').fill(env('KV_UI_READ_TOKEN'));
  await authPage.locator('#token-form button[type="submit"]').click();
  await authPage.locator('#key-tree li[data-key="app/guarded"]').waitFor();
  assert.equal(await authPage.locator('#banner').isHidden(), true);
  await authPage.goto(`${authUrl}/ui/#/keys?prefix=app%2F&key=app%2Fguarded`);
  await authPage.locator('#value-editor').fill('2');
  await authPage.locator('#save-key').click();
  await authPage.locator('#key-error:not(:empty)').waitFor();
  assert.match(await authPage.locator('#key-error').innerText(), /403 permission_denied/);
  await authPage.goto(`${authUrl}/ui/#/cluster`);
  await authPage.locator('#members tbody tr').first().waitFor();
  await authPage.locator('#token-forget').click();
  await authPage.locator('#banner[data-status="401"]').waitFor();
  await authPage.locator('#token').fill(root);
  await authPage.locator('#token-form button[type="submit"]').click();
  await authPage.locator('#members tbody tr').first().waitFor();

  assert.deepEqual(strangers, [], 'the pages asked no host but their node');
  assert.deepEqual(problems, [], 'no script error and no policy violation');
  step('passed');
} finally {
  await browser.close();
}
