// Interop check: the official @chatbotkit/sdk for Node, pointed at the cbk-sync
// emulator, manages partner users and tokens and sees the shapes and errors it expects.
//
//   CBK_EMULATOR_URL=http://127.0.0.1:PORT CBK_EMULATOR_TOKEN=... node interop.mjs
//
// Run by internal/emulator/sdk_test.go against a fresh, empty emulator. Every
// expectation is asserted here; any failure exits non-zero. Secrets are never printed.
// The last line of stdout is "interop-calls: {...}": how many API calls of each
// operation this script made through the SDK (401 answers excluded, as the emulator
// does not count them), so that the Go test can compare them with the emulator's counts.
//
// How the SDK (1.36) talks to a server, as read from dist/esm/client.js:
//   - the base URL option is `baseUrl` (a whole URL); `host` and `protocol` only replace
//     those parts of the default https://api.chatbotkit.com;
//   - it sends /api/v1/...; the /api prefix is stripped only for api.chatbotkit.com;
//   - a query object value {meta: {k: v}} becomes meta.k=v;
//   - a non-2xx answer rejects with FetchError(message, code) taken from the JSON body;
//   - 429 and 5xx are retried 3 times (250/500/1000 ms), POSTs included;
//   - a 200 is parsed as JSON only when its content-type is application/json;
//   - .stream() sends Accept: application/jsonl and yields every line as parsed JSON
//     (nop and error lines included: the caller must handle them).

import assert from 'node:assert/strict';
import process from 'node:process';

import { ChatBotKit } from '@chatbotkit/sdk';
import { PartnerUserClient } from '@chatbotkit/sdk/partner/user/index.js';

const baseUrl = process.env.CBK_EMULATOR_URL;
const secret = process.env.CBK_EMULATOR_TOKEN;
if (!baseUrl || !secret) {
  console.error('interop: CBK_EMULATOR_URL and CBK_EMULATOR_TOKEN must be set');
  process.exit(2);
}

const SECRET_RE = /^sk-[0-9a-f]{64}$/;
const BULK = 130; // users made in bulk: more than one page of 100
const calls = {};
const checks = [];

function count(op, n = 1) {
  calls[op] = (calls[op] || 0) + n;
}

function ok(what) {
  checks.push(what);
}

// expectError runs fn, which must reject with the SDK's FetchError carrying code.
async function expectError(fn, code, what) {
  let err;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `${what}: expected the SDK to reject with ${code}, it resolved`);
  assert.equal(err.name, 'FetchError', `${what}: error name`);
  assert.equal(err.code, code, `${what}: error code (message: ${err.message})`);
  assert.equal(typeof err.message, 'string', `${what}: error message`);
  assert.ok(err.message.length > 0, `${what}: empty error message`);
  ok(`${what} -> ${code}`);
}

// assertUserShape checks a user object as a fetch or a list answers it.
function assertUserShape(u, { description }) {
  assert.equal(typeof u.id, 'string');
  assert.ok(u.id.length > 0);
  assert.equal(typeof u.createdAt, 'number');
  assert.equal(typeof u.updatedAt, 'number');
  assert.ok(u.updatedAt >= u.createdAt, 'updatedAt before createdAt');
  for (const k of ['name', 'meta', 'image', 'email', 'limits']) {
    assert.ok(k in u, `user answer lacks ${k}`);
  }
  if (description) {
    assert.ok('description' in u, 'a listed user lacks description');
  } else {
    assert.ok(!('description' in u), 'a fetched user has description (the platform leaves it out)');
  }
}

function assertTokenShape(t) {
  assert.deepEqual(
    Object.keys(t).sort(),
    ['createdAt', 'description', 'id', 'meta', 'name', 'updatedAt'],
    'token list item keys',
  );
  assert.equal(typeof t.id, 'string');
  assert.equal(typeof t.createdAt, 'number');
  assert.equal(typeof t.updatedAt, 'number');
}

// walk pages through a list with the SDK's JSON list, following cursors until an
// empty page, and checks the cursor contract on the way.
async function walk(list, op, query) {
  const items = [];
  const pages = [];
  let cursor;
  for (;;) {
    const page = await list({ ...query, cursor });
    count(op);
    assert.ok(Array.isArray(page.items), 'page.items is not an array');
    pages.push(page.items.length);
    if (page.items.length === 0) {
      assert.ok(!page.cursor, 'an empty page carries a cursor');
      break;
    }
    assert.equal(page.cursor, page.items[page.items.length - 1].id, 'cursor is not the last id');
    items.push(...page.items);
    cursor = page.cursor;
    assert.ok(pages.length < 1000, 'pagination does not end');
  }
  return { items, pages };
}

// stream collects a jsonl list through the SDK's .stream().
async function stream(responsePromise, op) {
  count(op);
  const items = [];
  let nops = 0;
  for await (const ev of responsePromise.stream()) {
    switch (ev.type) {
      case 'item':
        items.push(ev.data);
        break;
      case 'nop':
        nops++;
        break;
      case 'error':
        assert.fail(`stream error line: ${JSON.stringify(ev.data)}`);
        break;
      default:
        assert.fail(`unknown stream line type ${JSON.stringify(ev.type)}`);
    }
  }
  return { items, nops };
}

function byNewest(a, b) {
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

async function main() {
  // --- clients -------------------------------------------------------------------
  // The documented way: the whole SDK with baseUrl.
  const cbk = new ChatBotKit({ secret, baseUrl });
  const users = cbk.partner.user;
  // The sub-client on its own, configured with host + protocol instead of baseUrl.
  const u = new URL(baseUrl);
  const users2 = new PartnerUserClient({ secret, host: u.host, protocol: u.protocol });

  // --- authentication ------------------------------------------------------------
  const wrong = new ChatBotKit({ secret: `${secret}-wrong`, baseUrl });
  await expectError(() => wrong.partner.user.list({ take: 1 }), 'NOT_AUTHENTICATED', 'list with a wrong secret');

  // --- create --------------------------------------------------------------------
  const limits = {
    tokens: 100000,
    conversations: 50,
    messages: 1000,
    database: { datasets: 2, records: 500, skillsets: 3, abilities: 4, files: 5 },
  };
  const created = await users.create({
    name: 'Ada Lovelace',
    description: 'first user',
    email: 'ada@example.com',
    meta: { team: 'alpha', tier: 'gold' },
    limits,
  });
  count('user.create');
  assert.deepEqual(Object.keys(created), ['id'], 'create answers {id}');
  assert.equal(typeof created.id, 'string');
  const adaId = created.id;
  ok('user.create answers {id}');

  // --- fetch (description is not selected by the platform's fetch) ------------------
  let ada = await users.fetch(adaId);
  count('user.fetch');
  assertUserShape(ada, { description: false });
  assert.equal(ada.id, adaId);
  assert.equal(ada.name, 'Ada Lovelace');
  assert.equal(ada.email, 'ada@example.com');
  assert.equal(ada.image, null, 'an unset field is null');
  assert.deepEqual(ada.meta, { team: 'alpha', tier: 'gold' });
  assert.deepEqual(ada.limits, limits);
  const createdAt = ada.createdAt;
  ok('user.fetch: every field, unset ones null, description missing');

  // The same user through the host/protocol-configured sub-client.
  const again = await users2.fetch(adaId);
  count('user.fetch');
  assert.deepEqual(again, ada);
  ok('PartnerUserClient({host, protocol}) reaches the same server');

  // A list answers description (the fetch does not).
  let page = await users.list({ email: 'ada@example.com' });
  count('user.list');
  assert.equal(page.items.length, 1, 'email filter');
  assertUserShape(page.items[0], { description: true });
  assert.equal(page.items[0].description, 'first user');
  ok('user.list by email answers description');

  // --- update: partial, null clearing, meta $update, meta replace ------------------
  let upd = await users.update(adaId, { name: 'Ada King', image: 'https://example.com/ada.png' });
  count('user.update');
  assert.deepEqual(upd, { id: adaId }, 'update answers {id}');
  ada = await users.fetch(adaId);
  count('user.fetch');
  assert.equal(ada.name, 'Ada King');
  assert.equal(ada.image, 'https://example.com/ada.png');
  assert.equal(ada.email, 'ada@example.com', 'partial update kept email');
  assert.deepEqual(ada.meta, { team: 'alpha', tier: 'gold' }, 'partial update kept meta');
  assert.deepEqual(ada.limits, limits, 'partial update kept limits');
  assert.equal(ada.createdAt, createdAt);
  assert.ok(ada.updatedAt >= createdAt);
  ok('user.update is partial');

  await users.update(adaId, { image: null, limits: null, description: null });
  count('user.update');
  ada = await users.fetch(adaId);
  count('user.fetch');
  assert.equal(ada.image, null, 'null cleared image');
  assert.equal(ada.limits, null, 'null cleared limits');
  assert.equal(ada.name, 'Ada King');
  page = await users.list({ email: 'ada@example.com' });
  count('user.list');
  assert.equal(page.items[0].description, null, 'null cleared description');
  ok('user.update with null clears fields');

  await users.update(adaId, { limits: { tokens: 10 } });
  count('user.update');
  ada = await users.fetch(adaId);
  count('user.fetch');
  assert.deepEqual(ada.limits, { tokens: 10 }, 'limits replaced as a whole');
  ok('limits are replaced as a whole');

  await users.update(adaId, { meta: { $update: { tier: 'silver', region: 'eu' } } });
  count('user.update');
  ada = await users.fetch(adaId);
  count('user.fetch');
  assert.deepEqual(ada.meta, { team: 'alpha', tier: 'silver', region: 'eu' }, 'meta $update merges');
  await users.update(adaId, { meta: { team: 'alpha', owner: 'cbk-sync' } });
  count('user.update');
  ada = await users.fetch(adaId);
  count('user.fetch');
  assert.deepEqual(ada.meta, { team: 'alpha', owner: 'cbk-sync' }, 'meta replaced as a whole');
  ok('meta $update merges, plain meta replaces');

  // --- errors the SDK must surface ---------------------------------------------------
  await expectError(
    () => users.create({ name: 'dup', email: 'ada@example.com' }),
    'CONFLICT',
    'user.create with a duplicate email',
  );
  count('user.create');
  await expectError(
    () => users.create({ name: 'dup', email: 'ADA@Example.com' }),
    'CONFLICT',
    'user.create with the duplicate email in another case',
  );
  count('user.create');
  await expectError(() => users.create({ email: 'not an email' }), 'BAD_REQUEST', 'user.create with a bad email');
  count('user.create');
  await expectError(() => users.create({ meta: { _private: 1 } }), 'BAD_REQUEST', 'user.create with a _ meta key');
  count('user.create');
  await expectError(() => users.fetch('cdoesnotexist0000'), 'NOT_FOUND', 'user.fetch of an unknown id');
  count('user.fetch');

  // --- many users, then pagination ---------------------------------------------------
  const bulkIds = [];
  for (let i = 0; i < BULK; i += 10) {
    const batch = [];
    for (let j = i; j < Math.min(i + 10, BULK); j++) {
      batch.push(
        users.create({
          name: `bulk ${j}`,
          email: `bulk${j}@example.com`,
          meta: { batch: 'b1', parity: j % 2 === 0 ? 'even' : 'odd', n: j },
        }),
      );
    }
    for (const r of await Promise.all(batch)) {
      count('user.create');
      bulkIds.push(r.id);
    }
  }
  assert.equal(new Set(bulkIds).size, BULK, 'create returned duplicate ids');
  ok(`created ${BULK} more users`);

  const total = BULK + 1;
  const small = await walk((q) => users.list(q), 'user.list', { take: 25 });
  assert.equal(small.items.length, total, 'take=25 walk saw every user');
  assert.equal(new Set(small.items.map((x) => x.id)).size, total, 'take=25 walk repeated a user');
  assert.deepEqual(small.pages, [25, 25, 25, 25, 25, 6, 0]);
  assert.deepEqual(
    small.items.map((x) => x.id),
    [...small.items].sort(byNewest).map((x) => x.id),
    'default order is newest first',
  );
  for (const it of small.items) assertUserShape(it, { description: true });
  ok(`walked ${small.pages.length} pages with take=25 (desc), cursor = last id, empty page without cursor`);

  const dflt = await walk((q) => users.list(q), 'user.list', {});
  assert.deepEqual(dflt.pages, [100, total - 100, 0], 'default take is 100');
  assert.deepEqual(dflt.items.map((x) => x.id), small.items.map((x) => x.id));
  ok('default take is 100');

  const asc = await walk((q) => users.list(q), 'user.list', { take: 50, order: 'asc' });
  assert.deepEqual(asc.items.map((x) => x.id), small.items.map((x) => x.id).reverse(), 'asc is the reverse of desc');
  ok('order=asc walks oldest first');

  page = await users.list({ take: 1000 });
  count('user.list');
  assert.equal(page.items.length, 100, 'take is clamped to 100');
  ok('take is clamped to 100');

  // --- filter by meta ---------------------------------------------------------------
  const even = await walk((q) => users.list(q), 'user.list', { meta: { batch: 'b1', parity: 'even' } });
  assert.equal(even.items.length, BULK / 2);
  for (const it of even.items) {
    assert.equal(it.meta.batch, 'b1');
    assert.equal(it.meta.parity, 'even');
  }
  page = await users.list({ meta: { team: 'alpha' } });
  count('user.list');
  assert.deepEqual(page.items.map((x) => x.id), [adaId], 'meta.team=alpha finds only Ada');
  page = await users.list({ meta: { n: '7' } });
  count('user.list');
  assert.equal(page.items.length, 1, 'a number meta value matches its JSON text');
  assert.equal(page.items[0].name, 'bulk 7');
  page = await users.list({ meta: { team: 'nobody' } });
  count('user.list');
  assert.equal(page.items.length, 0);
  assert.ok(!page.cursor, 'an empty filtered page carries a cursor');
  ok('meta.K=V filters (AND of several, numbers as text, no match)');

  // --- the SDK's streaming (jsonl) list --------------------------------------------------
  const all = await stream(users.list(), 'user.list');
  assert.equal(all.items.length, total, 'stream saw every user');
  assert.deepEqual(all.items.map((x) => x.id), small.items.map((x) => x.id), 'stream order');
  for (const it of all.items) assertUserShape(it, { description: true });
  const odd = await stream(users.list({ meta: { parity: 'odd' } }), 'user.list');
  assert.equal(odd.items.length, BULK / 2);
  ok(`user.list().stream() yields ${all.items.length} items (${all.nops} nop line(s) skipped), filters apply`);

  // --- tokens --------------------------------------------------------------------------
  const tokens = users.token;
  const t1 = await tokens.create(adaId, {
    name: 'ci',
    description: 'used by CI',
    meta: { purpose: 'ci' },
    config: {},
  });
  count('token.create');
  assert.deepEqual(Object.keys(t1).sort(), ['createdAt', 'id', 'token'], 'token.create answers {id, token, createdAt}');
  // assert.ok, not assert.match: a failing match would print the secret.
  assert.ok(typeof t1.token === 'string' && SECRET_RE.test(t1.token), 'token.create secret is not sk- + 64 hex');
  assert.equal(typeof t1.createdAt, 'number');
  const secretValue = t1.token;
  ok('token.create answers {id, token, createdAt}; secret is sk- + 64 hex');

  page = await tokens.list(adaId);
  count('token.list');
  assert.equal(page.items.length, 1);
  assertTokenShape(page.items[0]);
  assert.equal(page.items[0].id, t1.id);
  assert.equal(page.items[0].name, 'ci');
  assert.equal(page.items[0].description, 'used by CI');
  assert.deepEqual(page.items[0].meta, { purpose: 'ci' });
  assert.equal(page.cursor, t1.id);
  assert.ok(!JSON.stringify(page).includes(secretValue), 'token.list leaks the secret');
  ok('token.list: no secret, cursor = last id');

  upd = await tokens.update(adaId, t1.id, { name: 'ci-2', meta: { $update: { rotated: 'no' } } });
  count('token.update');
  assert.deepEqual(upd, { id: t1.id });
  // A token's description is a non-null column (default ""): null fails inside the
  // platform's database with a 500, and "" is how it is cleared.
  await assert.rejects(tokens.update(adaId, t1.id, { description: null }), /System error occurred/);
  for (let i = 0; i < 4; i++) count('token.update'); // the SDK retries a 500 three times
  await tokens.update(adaId, t1.id, { description: '' });
  count('token.update');
  page = await tokens.list(adaId, { take: 10 });
  count('token.list');
  assert.equal(page.items[0].name, 'ci-2');
  assert.equal(page.items[0].description, '', '"" cleared the token description');
  assert.deepEqual(page.items[0].meta, { purpose: 'ci', rotated: 'no' });
  ok('token.update is partial, "" clears (null is a 500), meta $update merges');

  const t2 = await tokens.create(adaId, { name: 'second' });
  count('token.create');
  assert.ok(typeof t2.token === 'string' && SECRET_RE.test(t2.token), 'second secret is not sk- + 64 hex');
  assert.ok(t2.token !== secretValue, 'two tokens share a secret');
  const ts = await stream(tokens.list(adaId), 'token.list');
  assert.deepEqual(ts.items.map((x) => x.id), [t2.id, t1.id], 'token stream, newest first');
  for (const it of ts.items) assertTokenShape(it);
  const tw = await walk((q) => tokens.list(adaId, q), 'token.list', { take: 1, order: 'asc' });
  assert.deepEqual(tw.items.map((x) => x.id), [t1.id, t2.id]);
  assert.deepEqual(tw.pages, [1, 1, 0]);
  ok('token.list().stream() and take=1 paging');

  upd = await tokens.delete(adaId, t1.id);
  count('token.delete');
  assert.deepEqual(upd, { id: t1.id });
  await expectError(() => tokens.delete(adaId, t1.id), 'NOT_FOUND', 'token.delete of a deleted token');
  count('token.delete');
  await expectError(() => tokens.update(bulkIds[0], t2.id, { name: 'x' }), 'NOT_FOUND', "token.update through another user's id");
  count('token.update');
  page = await tokens.list(adaId);
  count('token.list');
  assert.deepEqual(page.items.map((x) => x.id), [t2.id]);
  ok('token.delete answers {id}');

  // --- delete the user: its tokens go with it -----------------------------------------
  upd = await users.delete(adaId);
  count('user.delete');
  assert.deepEqual(upd, { id: adaId }, 'delete answers {id}');
  await expectError(() => users.fetch(adaId), 'NOT_FOUND', 'user.fetch after delete');
  count('user.fetch');
  await expectError(() => tokens.list(adaId), 'NOT_FOUND', "token.list of a deleted user");
  count('token.list');
  await expectError(() => tokens.update(adaId, t2.id, { name: 'x' }), 'NOT_FOUND', 'token.update after the cascade');
  count('token.update');
  await expectError(() => users.delete(adaId), 'NOT_FOUND', 'user.delete again');
  count('user.delete');
  page = await users.list({ email: 'ada@example.com' });
  count('user.list');
  assert.equal(page.items.length, 0);

  // The email is free again.
  const reborn = await users.create({ email: 'ada@example.com' });
  count('user.create');
  assert.notEqual(reborn.id, adaId);
  // "" is stored as null.
  await users.update(reborn.id, { email: '' });
  count('user.update');
  const rb = await users.fetch(reborn.id);
  count('user.fetch');
  assert.equal(rb.email, null, 'email "" is stored as null');
  assert.equal(rb.name, null);
  assert.equal(rb.meta, null);
  await users.delete(reborn.id);
  count('user.delete');
  ok('user.delete cascades to tokens, frees the email; "" email is null');

  console.log(`interop: @chatbotkit/sdk against ${new URL(baseUrl).host}: ${checks.length} checks passed`);
  for (const c of checks) console.log(`  ok  ${c}`);
  console.log(`interop-calls: ${JSON.stringify(calls)}`);
}

main().catch((err) => {
  // Never print a secret: the assertion messages above do not carry one, and the SDK's
  // errors carry only the server's message and code.
  console.error(`interop: FAILED: ${err?.stack || err}`);
  process.exit(1);
});
