import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { RemoteProtocolError } from '../src/core/errors.js';
import {
  KIND_STREAM,
  OFFER_PADDING,
  decodeAbort,
  decodeAck,
  decodeAnswer,
  decodeManifest,
  decodeOffer,
  encodeAbort,
  encodeAck,
  encodeAnswer,
  encodeManifest,
  encodeOffer,
  offerBody,
  padded,
} from '../src/core/messages.js';
import { fromHex, toHex, utf8, vectors } from './helpers.js';

const V = vectors.messages;
const M = vectors.manifest;

function offerFrom(v) {
  return {
    kind: v.kind, name: v.name, size: BigInt(v.size), manifest: BigInt(v.manifest), entries: BigInt(v.entries),
    files: BigInt(v.files), records: BigInt(v.records), resume: v.resume,
  };
}

test('messages: every OFFER encodes to Python\'s bytes, padded to 256', () => {
  for (const { offer, json, padded: pad } of V.offers) {
    assert.equal(toHex(encodeOffer(offerFrom(offer))), json);
    assert.equal(toHex(offerBody(offerFrom(offer))), pad);
    assert.equal(fromHex(pad).length % OFFER_PADDING, 0);
  }
  assert.equal(padded(new Uint8Array(256)).length, 256);
  assert.equal(padded(new Uint8Array(0)).length, 0);
});

test('messages: Python\'s OFFERs decode to what was offered, padded or not', () => {
  for (const { offer, json, padded: pad } of V.offers) {
    const expected = offerFrom(offer);
    if (expected.kind !== 'tree') expected.manifest = 0n;
    assert.deepEqual(decodeOffer(fromHex(pad)), expected);
    assert.deepEqual(decodeOffer(fromHex(json)), expected);
  }
  const stream = decodeOffer(fromHex(V.offers.find((o) => o.offer.kind === KIND_STREAM).json));
  assert.equal(stream.size, -1n);
});

test('messages: OFFERs Python refuses are refused with the same reason', () => {
  for (const { body, error } of V.bad_offers) {
    assert.throws(() => decodeOffer(fromHex(body)), (e) => e instanceof RemoteProtocolError && e.message === error, body);
  }
  assert.equal(decodeOffer(fromHex(V.unknown_kind.body)).kind, V.unknown_kind.kind);
});

test('messages: ANSWER, ACK and ABORT bodies are Python\'s and decode back', () => {
  for (const { accept, reason, message, body } of V.answers) {
    assert.equal(toHex(encodeAnswer({ accept, reason, message })), body);
    const decoded = decodeAnswer(fromHex(body));
    assert.deepEqual([decoded.accept, decoded.reason, decoded.message], [accept, reason, message]);
  }
  for (const { size, body } of V.acks) {
    assert.equal(toHex(encodeAck({ size: BigInt(size) })), body);
    assert.equal(decodeAck(fromHex(body)).size, BigInt(size));
  }
  for (const { reason, message, body } of V.aborts) {
    assert.equal(toHex(encodeAbort({ reason, message })), body);
    const decoded = decodeAbort(fromHex(body));
    assert.equal(decoded.reason, reason);
    assert.equal(decoded.message, [...message].slice(0, 512).join(''));
  }
});

test('messages: malformed ANSWER and ACK bodies are RemoteProtocolErrors', () => {
  const bad = (fn, text) => assert.throws(() => fn(utf8(text)), RemoteProtocolError, text);
  bad(decodeAnswer, '{"accept":1}');
  bad(decodeAnswer, '{"accept":true,"resume_from":-1}');
  bad(decodeAnswer, '{"accept":true,"resume_from":"5"}');
  bad(decodeAnswer, '{"accept":false,"resume_records":2}');
  bad(decodeAck, '{"ok":false,"size":1}');
  bad(decodeAck, '{"ok":true,"size":-1}');
  bad(decodeAck, '{"ok":true,"size":1.5}');
  bad(decodeAbort, '"just a string"');
  assert.deepEqual(decodeAbort(utf8('{"reason":7}')), { reason: '', message: '' });
});

function entryFrom(v) {
  return { path: v.path, isDir: v.dir, size: BigInt(v.size), mtimeNs: BigInt(v.mtime), executable: v.exec };
}

test('manifest: records encode to Python\'s bytes and decode back exactly (64-bit mtimes)', () => {
  const entries = M.entries.map(entryFrom);
  assert.deepEqual(encodeManifest(entries).map(toHex), M.bodies);
  const decoded = M.bodies.flatMap((body) => decodeManifest(fromHex(body)));
  assert.deepEqual(decoded, entries);
});

test('manifest: a long list splits into records exactly where Python splits it', () => {
  const entries = [{ path: 'tree', isDir: true, size: 0n, mtimeNs: 0n, executable: false }];
  for (let i = 0; i < M.split.count; i += 1) {
    entries.push({ path: `tree/file-${String(i).padStart(5, '0')}-${'x'.repeat(40)}`, isDir: false,
      size: BigInt(i * 1000), mtimeNs: 1700000000000000000n + BigInt(i), executable: false });
  }
  const bodies = encodeManifest(entries);
  assert.deepEqual(bodies.map((b) => b.length), M.split.lengths);
  assert.deepEqual(bodies.map((b) => createHash('sha256').update(b).digest('hex')), M.split.sha256);
  assert.equal(bodies.flatMap(decodeManifest).length, entries.length);
});

test('manifest: malformed records are RemoteProtocolErrors', () => {
  const bad = ['{}', '{"entries":[]}', '{"entries":[1]}', '{"entries":[{"size":1}]}',
    '{"entries":[{"path":"a","dir":"yes"}]}', '{"entries":[{"path":"a","dir":true,"size":3}]}',
    '{"entries":[{"path":"a","size":-1}]}', '{"entries":[{"path":"a","mtime":1.5}]}', 'nope'];
  for (const text of bad) assert.throws(() => decodeManifest(utf8(text)), RemoteProtocolError, text);
});
