// The page's connection to the relay (app/socket.js): which API it opens,
// and that a paced (receiving) connection reads the network only as fast as
// the page asks, so a slow sink slows the sender instead of filling memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConnectionLost } from '../src/core/errors.js';
import { SUBPROTOCOL, frames, openSocket, relayUrl } from '../src/app/socket.js';

const KiB = 1024;

/** A WebSocketStream stand-in: `messages` come off its readable only when pulled. */
function fakeStream(messages, { fail = false } = {}) {
  const made = [];
  class FakeWebSocketStream {
    constructor(url, options) {
      made.push(this);
      this.url = url;
      this.options = options;
      this.pulls = 0;
      this.sent = [];
      this.closedWith = null;
      const queue = [...messages];
      const readable = new ReadableStream({
        pull: (controller) => {
          this.pulls += 1;
          if (queue.length) controller.enqueue(queue.shift());
          else controller.close();
        },
      }, { highWaterMark: 1 });
      const writable = new WritableStream({ write: (chunk) => { this.sent.push(Uint8Array.from(chunk)); } });
      this.opened = fail ? Promise.reject(new Error('refused')) : Promise.resolve({ readable, writable, protocol: SUBPROTOCOL });
      this.closed = new Promise(() => {});
    }

    close(info) {
      this.closedWith = info;
    }
  }
  return { Stream: FakeWebSocketStream, made };
}

test('relayUrl is the page host\'s /ws, wss under https', () => {
  assert.equal(relayUrl({ protocol: 'https:', host: 'relay.example:9021' }), 'wss://relay.example:9021/ws');
  assert.equal(relayUrl({ protocol: 'http:', host: 'localhost:9021' }), 'ws://localhost:9021/ws');
});

test('frames cuts writes into messages of at most 256 KiB, in order', () => {
  const bytes = Uint8Array.from({ length: 600 * KiB + 3 }, (_, i) => i % 251);
  const pieces = [...frames(bytes)];
  assert.deepEqual(pieces.map((p) => p.length), [256 * KiB, 256 * KiB, 88 * KiB + 3]);
  assert.deepEqual(Buffer.concat(pieces), Buffer.from(bytes));
  assert.deepEqual([...frames(new Uint8Array(0))], []);
});

test('a paced connection reads through WebSocketStream, pulling only what read() asks for', async () => {
  const messages = Array.from({ length: 50 }, (_, i) => new Uint8Array(64 * KiB).fill(i).buffer);
  const { Stream, made } = fakeStream(messages);
  const conn = await openSocket('ws://relay.example/ws', { paced: true, Stream });
  assert.equal(conn.paced, true);
  assert.equal(made.length, 1);
  assert.deepEqual(made[0].options, { protocols: [SUBPROTOCOL] });
  // Nothing is drained ahead of the reader: the stream's own queue (one message) at most.
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(made[0].pulls <= 1, `pulled ${made[0].pulls} before any read`);
  for (let i = 0; i < 3; i += 1) {
    const got = await conn.read();
    assert.ok(got instanceof Uint8Array);
    assert.equal(got.length, 64 * KiB);
    assert.equal(got[0], i);
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(made[0].pulls <= 4, `pulled ${made[0].pulls} for 3 reads`);
});

test('a paced connection yields binary messages as bytes, skips text, and null at the end', async () => {
  const view = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
  const { Stream } = fakeStream([new Uint8Array([7]).buffer, 'text is not ferry', view]);
  const conn = await openSocket('ws://relay.example/ws', { paced: true, Stream });
  assert.deepEqual(await conn.read(), new Uint8Array([7]));
  assert.deepEqual(await conn.read(), new Uint8Array([1, 2, 3]));
  assert.equal(await conn.read(), null);
  assert.equal(await conn.read(), null);
});

test('a paced connection writes each frame as one message and closes with 1000', async () => {
  const { Stream, made } = fakeStream([]);
  const conn = await openSocket('ws://relay.example/ws', { paced: true, Stream });
  const bytes = Uint8Array.from({ length: 300 * KiB }, (_, i) => i % 7);
  await conn.write(bytes);
  assert.deepEqual(made[0].sent.map((m) => m.length), [256 * KiB, 44 * KiB]);
  assert.deepEqual(Buffer.concat(made[0].sent), Buffer.from(bytes));
  conn.close();
  assert.deepEqual(made[0].closedWith, { closeCode: 1000 });
});

test('a paced connection that cannot open is ConnectionLost', async () => {
  const { Stream } = fakeStream([], { fail: true });
  await assert.rejects(openSocket('ws://relay.example/ws', { paced: true, Stream }), ConnectionLost);
});

test('without WebSocketStream, or unpaced, the classic WebSocket is opened', async () => {
  const opened = [];
  class FakeWebSocket {
    static OPEN = 1;
    constructor(url, protocol) {
      opened.push([url, protocol]);
      this.readyState = 1;
      this.bufferedAmount = 0;
      setTimeout(() => this.onopen());
    }
  }
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = FakeWebSocket;
  try {
    const { Stream, made } = fakeStream([]);
    assert.equal((await openSocket('ws://a/ws', { paced: true, Stream: undefined })).paced, false);
    assert.equal((await openSocket('ws://b/ws', { Stream })).paced, false);
    assert.equal(made.length, 0);
    assert.deepEqual(opened, [['ws://a/ws', SUBPROTOCOL], ['ws://b/ws', SUBPROTOCOL]]);
  } finally {
    globalThis.WebSocket = saved;
  }
});
