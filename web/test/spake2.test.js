import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ed25519 } from '@noble/curves/ed25519.js';

import { RemoteProtocolError, LocalProtocolError } from '../src/core/errors.js';
import { Pake, RECEIVER, SENDER, confirmation, peerConfirmed } from '../src/core/keys.js';
import { SIDE_A, SIDE_B, Spake2, arbitraryElement, passwordToScalar } from '../src/core/spake2.js';
import { fixedEntropy, fromHex, scalarHexLE, toHex, utf8, vectors } from './helpers.js';

const IDS = { idA: utf8('ferry/1 sender'), idB: utf8('ferry/1 receiver') };

test('spake2: M and N are the Python package\'s arbitrary elements', () => {
  assert.equal(toHex(arbitraryElement(utf8('M')).toBytes()), vectors.spake2.M);
  assert.equal(toHex(arbitraryElement(utf8('N')).toBytes()), vectors.spake2.N);
});

test('spake2: passwords map to the Python package\'s scalars', () => {
  for (const { password, scalar } of vectors.spake2.password_scalars) {
    assert.equal(scalarHexLE(passwordToScalar(fromHex(password))), scalar);
  }
});

for (const ex of vectors.exchanges) {
  const side = (s, code, entropy) => new Spake2(s, utf8(code), { ...IDS, randomBytes: fixedEntropy(entropy) });

  test(`spake2 (${ex.name}): the same entropy gives Python's messages on both sides`, () => {
    assert.equal(toHex(side(SIDE_A, ex.sender_code, ex.entropy_sender).start()), ex.msg_sender);
    assert.equal(toHex(side(SIDE_B, ex.receiver_code, ex.entropy_receiver).start()), ex.msg_receiver);
  });

  test(`spake2 (${ex.name}): JS side A with Python side B's message gives Python's key`, () => {
    const a = side(SIDE_A, ex.sender_code, ex.entropy_sender);
    a.start();
    assert.equal(toHex(a.finish(fromHex(ex.msg_receiver))), ex.shared_sender);
  });

  test(`spake2 (${ex.name}): JS side B with Python side A's message gives Python's key`, () => {
    const b = side(SIDE_B, ex.receiver_code, ex.entropy_receiver);
    b.start();
    assert.equal(toHex(b.finish(fromHex(ex.msg_sender))), ex.shared_receiver);
  });

  test(`keys (${ex.name}): JS sender against Python receiver derives Python's keys and MACs`, () => {
    const sender = new Pake(SENDER, utf8(ex.sender_code), { randomBytes: fixedEntropy(ex.entropy_sender) });
    assert.equal(toHex(sender.start()), ex.msg_sender);
    const keys = sender.finish(fromHex(ex.msg_receiver));
    assert.equal(toHex(keys.confirmMine), ex.sender_keys.confirm_mine);
    assert.equal(toHex(keys.confirmPeer), ex.sender_keys.confirm_peer);
    assert.equal(toHex(keys.sealKey), ex.sender_keys.seal);
    assert.equal(toHex(keys.openKey), ex.sender_keys.open);
    assert.equal(toHex(confirmation(keys)), ex.confirm_sender);
    assert.equal(peerConfirmed(keys, fromHex(ex.confirm_receiver)), ex.sender_accepts);
  });

  test(`keys (${ex.name}): JS receiver against Python sender derives Python's keys and MACs`, () => {
    const receiver = new Pake(RECEIVER, utf8(ex.receiver_code), {
      randomBytes: fixedEntropy(ex.entropy_receiver),
    });
    assert.equal(toHex(receiver.start()), ex.msg_receiver);
    const keys = receiver.finish(fromHex(ex.msg_sender));
    assert.equal(toHex(keys.confirmMine), ex.receiver_keys.confirm_mine);
    assert.equal(toHex(keys.sealKey), ex.receiver_keys.seal);
    assert.equal(toHex(keys.openKey), ex.receiver_keys.open);
    assert.equal(toHex(confirmation(keys)), ex.confirm_receiver);
    assert.equal(peerConfirmed(keys, fromHex(ex.confirm_sender)), ex.receiver_accepts);
  });
}

test('vectors: the wrong-code exchange really disagrees, the others agree', () => {
  for (const ex of vectors.exchanges) {
    const same = ex.sender_code === ex.receiver_code;
    assert.equal(ex.shared_sender === ex.shared_receiver, same);
    assert.equal(ex.sender_accepts, same);
    assert.equal(ex.receiver_accepts, same);
  }
});

function exchange(senderCode, receiverCode) {
  const sender = new Pake(SENDER, utf8(senderCode));
  const receiver = new Pake(RECEIVER, utf8(receiverCode));
  const toReceiver = sender.start();
  const toSender = receiver.start();
  return [sender.finish(toSender), receiver.finish(toReceiver)];
}

test('JS <-> JS: a fresh exchange with one code confirms both ways and pairs the record keys', () => {
  const [s, r] = exchange('7-guitar-orbit-velvet', '7-guitar-orbit-velvet');
  assert.ok(peerConfirmed(s, confirmation(r)));
  assert.ok(peerConfirmed(r, confirmation(s)));
  assert.deepEqual(s.sealKey, r.openKey);
  assert.deepEqual(s.openKey, r.sealKey);
  assert.notDeepEqual(s.sealKey, s.openKey);
});

test('JS <-> JS: different codes fail confirmation on both sides', () => {
  const [s, r] = exchange('7-guitar-orbit-velvet', '7-guitar-orbit-amber');
  assert.equal(peerConfirmed(s, confirmation(r)), false);
  assert.equal(peerConfirmed(r, confirmation(s)), false);
});

test('JS <-> JS: two runs with one code give different keys (fresh randomness)', () => {
  const [a] = exchange('7-guitar-orbit-velvet', '7-guitar-orbit-velvet');
  const [b] = exchange('7-guitar-orbit-velvet', '7-guitar-orbit-velvet');
  assert.notDeepEqual(a.sealKey, b.sealKey);
});

test('session keys never show in a string or JSON', () => {
  const [s] = exchange('7-guitar-orbit-velvet', '7-guitar-orbit-velvet');
  assert.equal(String(s), 'SessionKeys(role=sender, <hidden>)');
  assert.equal(JSON.stringify(s), '{"role":"sender"}');
});

function started(side) {
  const spake = new Spake2(side, utf8('7-guitar-orbit-velvet'), IDS);
  return [spake, spake.start()];
}

test('spake2: a malformed peer message is a RemoteProtocolError', () => {
  const [, fromB] = started(SIDE_B);
  const identity = ed25519.Point.ZERO.toBytes();
  const smallOrder = fromHex('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05');
  const notOnCurve = fromHex('02' + '00'.repeat(31));
  const cases = {
    empty: new Uint8Array(0),
    'wrong side': Uint8Array.of(SIDE_A, ...fromB.subarray(1)),
    'unknown side': Uint8Array.of(0x53, ...fromB.subarray(1)),
    short: fromB.subarray(0, 32),
    long: Uint8Array.of(...fromB, 0),
    identity: Uint8Array.of(SIDE_B, ...identity),
    'small order': Uint8Array.of(SIDE_B, ...smallOrder),
    'not on the curve': Uint8Array.of(SIDE_B, ...notOnCurve),
  };
  for (const [name, message] of Object.entries(cases)) {
    const [a] = started(SIDE_A);
    assert.throws(() => a.finish(message), RemoteProtocolError, name);
  }
});

test('spake2: our own element reflected back is refused', () => {
  const [a, fromA] = started(SIDE_A);
  assert.throws(() => a.finish(Uint8Array.of(SIDE_B, ...fromA.subarray(1))), /reflected/);
});

test('spake2: start and finish are once only, in order', () => {
  const spake = new Spake2(SIDE_A, utf8('x'), IDS);
  assert.throws(() => spake.finish(new Uint8Array(33)), LocalProtocolError);
  spake.start();
  assert.throws(() => spake.start(), LocalProtocolError);
  const [, fromB] = started(SIDE_B);
  spake.finish(fromB);
  assert.throws(() => spake.finish(fromB), LocalProtocolError);
});
