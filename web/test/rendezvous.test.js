import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RemoteProtocolError } from '../src/core/errors.js';
import {
  LineBuffer,
  MAX_LINE,
  joinRequest,
  parseRelayLine,
  pong,
  receiveRequest,
  sendRequest,
} from '../src/core/rendezvous.js';
import { fromHex, vectors } from './helpers.js';

const V = vectors.rendezvous;
const text = (bytes) => new TextDecoder().decode(bytes);

test('rendezvous: the client lines are byte for byte Python\'s', () => {
  assert.equal(MAX_LINE, V.max_line);
  assert.equal(text(sendRequest()), V.client.send);
  assert.equal(text(sendRequest({ standby: true })), V.client.send_standby);
  assert.equal(text(receiveRequest(7)), V.client.recv);
  assert.equal(text(receiveRequest(999999999)), V.client.recv_large);
  assert.equal(text(joinRequest(7, V.ticket)), V.client.join);
  assert.equal(text(pong()), V.client.pong);
});

test('rendezvous: client lines refuse what the relay would refuse', () => {
  for (const bad of [0, -1, 1.5, 1e9, Number.NaN]) assert.throws(() => receiveRequest(bad), RangeError);
  assert.throws(() => joinRequest(7, V.ticket.toUpperCase()), RangeError);
  assert.throws(() => joinRequest(7, `${V.ticket}0`), RangeError);
});

test('rendezvous: relay lines parse as Python parses them, errors included', () => {
  for (const { line, parsed, error } of V.relay) {
    const bytes = fromHex(line);
    if (error !== undefined) {
      assert.throws(() => parseRelayLine(bytes), (exc) => exc instanceof RemoteProtocolError && exc.message === error, line);
    } else {
      assert.deepEqual(parseRelayLine(bytes), parsed, line);
    }
  }
});

function lines(chunks) {
  const buffer = new LineBuffer();
  const out = [];
  for (const chunk of chunks) {
    buffer.receiveData(chunk);
    for (let l = buffer.nextLine(); l !== null; l = buffer.nextLine()) out.push(text(l));
  }
  return { out, rest: buffer.takeRest() };
}

test('rendezvous: LineBuffer splits lines fed whole and one byte at a time, keeping the rest', () => {
  const wire = new TextEncoder().encode(`NAMEPLATE 7\nTICKET ${V.ticket}\nPAIRED\n\x00\x00\x00\x21\x01\x00`);
  const expected = ['NAMEPLATE 7\n', `TICKET ${V.ticket}\n`, 'PAIRED\n'];
  const whole = lines([wire]);
  assert.deepEqual(whole.out, expected);
  assert.deepEqual(whole.rest, Uint8Array.of(0, 0, 0, 0x21, 1, 0));
  const bytes = lines(Array.from(wire, (b) => Uint8Array.of(b)));
  assert.deepEqual(bytes.out, expected);
  assert.deepEqual(bytes.rest, whole.rest);
});

test('rendezvous: a line is at most 128 bytes with its LF', () => {
  const longest = new TextEncoder().encode(`ERROR busy ${'x'.repeat(MAX_LINE - 12)}\n`);
  assert.equal(longest.length, MAX_LINE);
  assert.equal(lines([longest]).out.length, 1);
  const buffer = new LineBuffer();
  buffer.receiveData(new Uint8Array(MAX_LINE - 1).fill(0x41));
  assert.equal(buffer.nextLine(), null);
  buffer.receiveData(Uint8Array.of(0x41));
  assert.throws(() => buffer.nextLine(), RemoteProtocolError);
});
