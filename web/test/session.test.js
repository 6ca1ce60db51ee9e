// JS <-> JS sessions (the live exchanges with Python's are tests/e2e/test_e2e_web_client.py).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { utf8 } from '../src/core/bytes.js';
import { RemoteProtocolError, WrongCode } from '../src/core/errors.js';
import { encodeManifest } from '../src/core/messages.js';
import { RecordType } from '../src/core/records.js';
import { ReceiverSession, SenderSession, State, dataRecordsAllowed } from '../src/core/session.js';

const CODE = utf8('7-guitar-orbit-velvet');

async function pump(from, to, now = 0) {
  to.receiveData(await from.dataToSend(), now);
  const events = [];
  for (let e = await to.nextEvent(); e !== null; e = await to.nextEvent()) events.push(e);
  return events;
}

async function handshake(offer, options = {}, code = CODE) {
  const s = new SenderSession(CODE, offer, options);
  const r = new ReceiverSession(code);
  s.receiveData(r.firstFlight(), 0);
  r.receiveData(s.firstFlight(), 0);
  assert.equal((await s.nextEvent()).type, 'keyed');
  assert.equal((await r.nextEvent()).type, 'keyed');
  return { s, r };
}

test('a file: offer, accept, data, final, ack', async () => {
  const { s, r } = await handshake({ kind: 'file', name: 'a.txt', size: 5n });
  const rEvents = await pump(s, r);
  assert.deepEqual(rEvents.map((e) => e.type), ['confirmed', 'offer']);
  assert.equal(rEvents[1].offer.name, 'a.txt');
  r.accept(0);
  assert.deepEqual((await pump(r, s)).map((e) => e.type), ['confirmed', 'answered']);
  s.sendData(utf8('hel'), 0);
  s.sendData(utf8('lo'), 0);
  const data = await pump(s, r);
  assert.deepEqual(data.map((e) => [e.type, e.final]), [['data', false], ['data', true]]);
  assert.equal(r.state, State.STORING);
  r.acknowledge(0);
  const ack = await pump(r, s);
  assert.equal(ack[0].type, 'acknowledged');
  assert.equal(s.state, State.DONE);
});

test('a tree is split at file boundaries, empty files included', async () => {
  const entries = [
    { path: 'd', isDir: true, size: 0n, mtimeNs: 0n },
    { path: 'd/a', isDir: false, size: 3n, mtimeNs: 0n },
    { path: 'd/empty', isDir: false, size: 0n, mtimeNs: 0n },
    { path: 'd/b', isDir: false, size: 2n, mtimeNs: 0n },
  ];
  const manifest = encodeManifest(entries);
  const offer = { kind: 'tree', entries: 4n, files: 3n, records: BigInt(manifest.length), size: 5n };
  const { s, r } = await handshake(offer, { manifest });
  const offered = (await pump(s, r)).find((e) => e.type === 'offer');
  assert.equal(offered.entries.length, 4);
  r.accept(0);
  await pump(r, s);
  s.sendData(utf8('abcde'), 0);
  const events = await pump(s, r);
  assert.deepEqual(
    events.map((e) => (e.type === 'file-data' ? [e.index, new TextDecoder().decode(e.data), e.done] : e.type)),
    [[1, 'abc', true], [2, '', true], [3, 'de', true], 'all-received'],
  );
});

test('a wrong code is WrongCode on both sides', async () => {
  const { s, r } = await handshake({ kind: 'text', size: 1n }, {}, utf8('7-guitar-orbit-walnut'));
  await assert.rejects(pump(s, r), WrongCode);
  await assert.rejects(pump(r, s), WrongCode);
  assert.equal(r.state, State.FAILED);
});

test('a refusal ends the sender DONE with the reason', async () => {
  const { s, r } = await handshake({ kind: 'file', name: 'x', size: 1n });
  await pump(s, r);
  r.refuse('exists', 'x exists', 0);
  const [, answered] = await pump(r, s);
  assert.equal(answered.answer.accept, false);
  assert.equal(answered.answer.reason, 'exists');
  assert.equal(s.state, State.DONE);
});

test('empty DATA records beyond the allowance are refused', async () => {
  assert.equal(dataRecordsAllowed(0n), 1024n);
  assert.equal(dataRecordsAllowed(4096n), 1028n);
  const { s, r } = await handshake({ kind: 'stream', name: 's' });
  await pump(s, r);
  r.accept(0);
  await pump(r, s);
  // A hostile sender: empty non-final records, sealed by hand.
  for (let i = 0; i < 2; i += 1) s._queue(RecordType.DATA, new Uint8Array(0));
  await assert.rejects(pump(s, r), (e) => e instanceof RemoteProtocolError && /empty DATA/.test(e.message));
  assert.throws(() => s.sendData(new Uint8Array(0), 0), /FINAL/);
});

test('an abort reaches the peer as peer-aborted', async () => {
  const { s, r } = await handshake({ kind: 'file', name: 'x', size: 1n });
  await pump(s, r);
  r.abort('error', 'the receiver cancelled', 0);
  const events = await pump(r, s);
  assert.deepEqual(events.at(-1), { type: 'peer-aborted', abort: { reason: 'error', message: 'the receiver cancelled' } });
});

test('the deadline: handshake, then io; none while deciding', async () => {
  const s = new SenderSession(CODE, { kind: 'text', size: 1n });
  assert.equal(s.deadline, null);
  s.paired(100);
  assert.equal(s.deadline, 110);
  assert.equal(s.expire(109), null);
  assert.match(s.expire(110).message, /key exchange/);
  const pair = await handshake({ kind: 'text', size: 1n });
  pair.r.paired(0);
  await pump(pair.s, pair.r, 5);
  assert.equal(pair.r.state, State.DECIDING);
  assert.equal(pair.r.deadline, null);
  pair.r.accept(7);
  assert.equal(pair.r.deadline, 127);
});
