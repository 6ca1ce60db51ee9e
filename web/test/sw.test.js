// The service worker (src/sw/sw.js) in a fake worker scope: the messages a
// page sends, the one download request it answers, backpressure, failures.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DOWNLOAD_PREFIX, WINDOW, downloadPath, idOfPath, newId } from '../src/sw/protocol.js';

const ORIGIN = 'https://relay.example';
const handlers = {};
globalThis.self = {
  location: { origin: ORIGIN },
  addEventListener: (type, handler) => { handlers[type] = handler; },
  skipWaiting: async () => {},
};
await import('../src/sw/sw.js');

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

function port() {
  const said = [];
  return { said, postMessage: (message) => said.push(message.type) };
}

function post(message, ports = []) {
  handlers.message({ data: message, ports });
}

function fetchPath(path, origin = ORIGIN) {
  let answer;
  handlers.fetch({ request: { url: `${origin}${path}` }, respondWith: (response) => { answer = response; } });
  return answer;
}

function open(name, size = null, zip = false) {
  const id = newId();
  const answers = port();
  post({ type: 'open', id, name, size, zip }, [answers]);
  return { id, answers };
}

const chunk = (n, fill = 0) => new Uint8Array(n).fill(fill).buffer;

test('download ids are 128 random bits; only their URLs are the worker\'s', () => {
  const id = newId();
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.notEqual(id, newId());
  assert.equal(downloadPath(id, 'a b.txt'), `${DOWNLOAD_PREFIX}${id}/a%20b.txt`);
  assert.equal(idOfPath(downloadPath(id, 'x')), id);
  assert.equal(idOfPath('/app.js'), null);
  assert.equal(idOfPath(`${DOWNLOAD_PREFIX}../x`), null);
  assert.equal(fetchPath('/app.js'), undefined, 'every other request goes to the network');
  assert.equal(fetchPath(downloadPath(id, 'x'), 'https://elsewhere.example'), undefined);
});

test('a download is one stream with the offered name, fetched once', async () => {
  const { id, answers } = open('dir/naïve.txt', '6');
  assert.deepEqual(answers.said, ['ready']);
  const response = fetchPath(downloadPath(id, 'naïve.txt'));
  assert.deepEqual(answers.said, ['ready', 'started']);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-disposition'), `attachment; filename="na_ve.txt"; filename*=UTF-8''na%C3%AFve.txt`);
  assert.equal(response.headers.get('content-length'), '6');
  assert.equal(response.headers.get('content-type'), 'application/octet-stream');
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
  assert.match(response.headers.get('content-security-policy'), /sandbox/);
  post({ type: 'data', id, chunk: new TextEncoder().encode('hel').buffer });
  post({ type: 'data', id, chunk: new TextEncoder().encode('lo\n').buffer });
  post({ type: 'end', id });
  assert.equal(await response.text(), 'hello\n');
  assert.deepEqual(answers.said, ['ready', 'started', 'more', 'more']);
  const again = fetchPath(downloadPath(id, 'naïve.txt'));
  assert.equal(again.status, 404, 'a download URL works once');
  assert.equal(fetchPath(downloadPath(newId(), 'x')).status, 404);
});

test('the worker says "more" only while its queue is under WINDOW: backpressure', async () => {
  const { id, answers } = open('big.bin', null, true);
  const response = fetchPath(downloadPath(id, 'big.bin'));
  assert.equal(response.headers.get('content-type'), 'application/zip');
  assert.equal(response.headers.get('content-length'), null, 'no length when none is known');
  const piece = WINDOW / 4;
  for (let i = 0; i < 4; i += 1) post({ type: 'data', id, chunk: chunk(piece, i) });
  const more = () => answers.said.filter((type) => type === 'more').length;
  assert.equal(more(), 3, 'the fourth piece fills the window: no "more" for it yet');
  post({ type: 'data', id, chunk: chunk(piece, 4) });
  assert.equal(more(), 3, 'a page that ignores it gets nothing more either');
  const reader = response.body.getReader();
  let total = 0;
  for (let i = 0; i < 2; i += 1) total += (await reader.read()).value.length;
  await tick();
  assert.equal(more(), 4, 'the browser read the queue under the window: room again');
  total += (await reader.read()).value.length;
  await tick();
  assert.equal(more(), 5, 'every piece is answered once, however many waited');
  post({ type: 'end', id });
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.length;
  }
  assert.equal(total, 5 * piece);
});

test('a failed transfer fails the download; a cancelled download is reported', async () => {
  const failing = open('a.bin', '100');
  const response = fetchPath(downloadPath(failing.id, 'a.bin'));
  post({ type: 'data', id: failing.id, chunk: chunk(10) });
  post({ type: 'abort', id: failing.id, reason: 'the sender went away' });
  await assert.rejects(response.arrayBuffer(), /the sender went away/);

  const cancelled = open('b.bin');
  const body = fetchPath(downloadPath(cancelled.id, 'b.bin')).body;
  await body.cancel();
  assert.deepEqual(cancelled.answers.said, ['ready', 'started', 'cancelled']);
  post({ type: 'data', id: cancelled.id, chunk: chunk(10) }); // ignored: it is over

  const unknown = port();
  post({ type: 'open', id: 'not-an-id', name: 'x' }, [unknown]);
  post({ type: 'open', id: newId(), name: 'x' }); // no port for the answers
  assert.deepEqual(unknown.said, []);
  const ended = open('c.bin');
  post({ type: 'end', id: ended.id }); // ends before the fetch: forgotten, nothing left behind
  assert.equal(fetchPath(downloadPath(ended.id, 'c.bin')).status, 404);
});
