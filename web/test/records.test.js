import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { IntegrityError, RemoteProtocolError } from '../src/core/errors.js';
import {
  FLAG_FINAL,
  HEADER_SIZE,
  MAX_SEALED_LENGTH,
  Opener,
  RecordDecoder,
  RecordType,
  Sealer,
  encodeHeader,
  encodeRecord,
  nonce,
  parseHeader,
} from '../src/core/records.js';
import { fromHex, toHex, vectors } from './helpers.js';

const ex = vectors.exchanges[0];
const R = vectors.records;
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

function theData() {
  const out = new Uint8Array(70000);
  for (let i = 0; i < 65536; i += 1) out[i] = i % 256;
  const tail = new TextEncoder().encode('tail');
  for (let i = 65536; i < 70000; i += 1) out[i] = tail[(i - 65536) % 4];
  return out;
}

/** The plaintexts of the sealed vectors (the DATA ones are consecutive slices of theData()). */
function plaintexts() {
  const data = theData();
  assert.equal(sha256(data), R.data_sha256);
  let offset = 0;
  return R.sealed.map((item) => {
    let plain;
    if (item.type === RecordType.DATA) {
      plain = data.subarray(offset, offset + item.plaintext_length);
      offset += item.plaintext_length;
    } else {
      plain = fromHex(item.plaintext);
    }
    assert.equal(sha256(plain), item.plaintext_sha256);
    return plain;
  });
}

test('records: the nonce is 4 zero bytes and the big-endian counter', () => {
  assert.equal(toHex(nonce(0n)), '000000000000000000000000');
  assert.equal(toHex(nonce(258n)), '000000000000000000000102');
  assert.equal(toHex(nonce((1n << 64n) - 1n)), '00000000ffffffffffffffff');
});

test('records: sealing in order reproduces every Python sealed record, both directions', async () => {
  const sealers = { sender: new Sealer(fromHex(ex.sender_keys.seal)), receiver: new Sealer(fromHex(ex.receiver_keys.seal)) };
  const plains = plaintexts();
  for (const [i, item] of R.sealed.entries()) {
    const sealer = sealers[item.direction];
    assert.equal(sealer.counter, BigInt(item.counter));
    const framed = await sealer.sealRecord(item.type, plains[i], item.flags);
    assert.equal(toHex(framed.subarray(0, HEADER_SIZE)), item.header);
    const body = framed.subarray(HEADER_SIZE);
    assert.equal(sha256(body), item.sealed_sha256);
    if (item.sealed !== null) assert.equal(toHex(body), item.sealed);
  }
});

test('records: the peer opens Python\'s sealed records in order, and only in order', async () => {
  const openers = { sender: new Opener(fromHex(ex.receiver_keys.open)), receiver: new Opener(fromHex(ex.sender_keys.open)) };
  const sealers = { sender: new Sealer(fromHex(ex.sender_keys.seal)), receiver: new Sealer(fromHex(ex.receiver_keys.seal)) };
  const plains = plaintexts();
  for (const [i, item] of R.sealed.entries()) {
    const header = fromHex(item.header);
    const ours = await sealers[item.direction].seal(header, plains[i]);
    const sealed = item.sealed === null ? ours : fromHex(item.sealed);
    assert.deepEqual(await openers[item.direction].open(header, sealed), plains[i]);
  }
});

async function sealedPair() {
  const sealer = new Sealer(fromHex(ex.sender_keys.seal));
  const records = [];
  for (const text of ['one', 'two', 'three']) {
    records.push(await sealer.sealRecord(RecordType.DATA, new TextEncoder().encode(text)));
  }
  return records.map((framed) => [framed.subarray(0, HEADER_SIZE), framed.subarray(HEADER_SIZE)]);
}

test('records: the wrong key fails to open', async () => {
  const [[header, body]] = await sealedPair();
  await assert.rejects(new Opener(fromHex(ex.sender_keys.open)).open(header, body), IntegrityError);
  const wrong = vectors.exchanges[2]; // the wrong-code exchange's receiver
  await assert.rejects(new Opener(fromHex(wrong.receiver_keys.open)).open(header, body), IntegrityError);
});

test('records: a changed header, body, or a reordered, dropped or repeated record fails', async () => {
  const key = fromHex(ex.receiver_keys.open);
  const records = await sealedPair();
  const [h0, b0] = records[0];
  const flipped = Uint8Array.from(b0);
  flipped[0] ^= 1;
  await assert.rejects(new Opener(key).open(h0, flipped), IntegrityError);
  const final = Uint8Array.from(h0);
  final[5] = FLAG_FINAL;
  await assert.rejects(new Opener(key).open(final, b0), IntegrityError);
  await assert.rejects(new Opener(key).open(...records[1]), IntegrityError); // reordered / dropped
  const opener = new Opener(key);
  await opener.open(...records[0]);
  await assert.rejects(opener.open(...records[0]), IntegrityError); // repeated
});

function decodeAll(chunks) {
  const decoder = new RecordDecoder();
  const out = [];
  for (const chunk of chunks) {
    decoder.receiveData(chunk);
    for (let r = decoder.nextRecord(); r !== null; r = decoder.nextRecord()) {
      out.push({ type: r.header.type, flags: r.header.flags, body: toHex(r.body), headerBytes: toHex(r.headerBytes) });
    }
  }
  return { out, decoder };
}

test('records: the decoder splits Python\'s framed stream, fed whole and one byte at a time', () => {
  const stream = fromHex(R.stream);
  const expected = R.stream_records.map(({ type, flags, body }) => ({ type, flags, body }));
  const strip = (records) => records.map(({ type, flags, body }) => ({ type, flags, body }));
  const whole = decodeAll([stream]);
  assert.deepEqual(strip(whole.out), expected);
  assert.equal(whole.decoder.buffered, 0);
  const bytes = decodeAll(Array.from(stream, (b) => Uint8Array.of(b)));
  assert.deepEqual(strip(bytes.out), expected);
  const uneven = decodeAll([stream.subarray(0, 3), stream.subarray(3, 40), stream.subarray(40)]);
  assert.deepEqual(strip(uneven.out), expected);
  assert.equal(whole.out[0].headerBytes, toHex(stream.subarray(0, HEADER_SIZE)));
});

test('records: the decoder returns null until a record is whole', () => {
  const decoder = new RecordDecoder();
  const framed = encodeRecord(RecordType.PAKE, Uint8Array.of(1, 2, 3));
  decoder.receiveData(framed.subarray(0, 5));
  assert.equal(decoder.nextRecord(), null);
  decoder.receiveData(framed.subarray(5, 8));
  assert.equal(decoder.nextRecord(), null);
  assert.equal(decoder.buffered, 2);
  decoder.receiveData(framed.subarray(8));
  assert.deepEqual(decoder.nextRecord().body, Uint8Array.of(1, 2, 3));
  assert.equal(decoder.nextRecord(), null);
});

test('records: every header Python refuses is refused with the same reason', () => {
  for (const { header, error } of R.bad_headers) {
    assert.throws(() => parseHeader(fromHex(header)), (exc) => exc instanceof RemoteProtocolError && exc.message === error, header);
  }
});

test('records: caps are enforced from the six header bytes, before any body byte is held', () => {
  for (const { header } of R.bad_headers) {
    const decoder = new RecordDecoder();
    const bytes = fromHex(header);
    decoder.receiveData(bytes.subarray(0, 5)); // not yet a header: nothing to judge
    assert.throws(() => decoder.receiveData(Uint8Array.of(bytes[5], 1, 2, 3)), RemoteProtocolError);
  }
  // The largest DATA record is fine; one byte more is not.
  assert.equal(parseHeader(encodeHeader(MAX_SEALED_LENGTH, RecordType.DATA, FLAG_FINAL)).length, MAX_SEALED_LENGTH);
  assert.throws(() => parseHeader(encodeHeader(MAX_SEALED_LENGTH + 1, RecordType.DATA)), /too large/);
  assert.throws(() => new RecordDecoder().receiveData(encodeHeader(2 ** 32 - 1, RecordType.DATA)), /too large/);
});

test('records: sealing refuses a body over its type\'s cap and an unsealed type', async () => {
  const sealer = new Sealer(fromHex(ex.sender_keys.seal));
  await assert.rejects(sealer.sealRecord(RecordType.OFFER, new Uint8Array(64 * 1024 + 1)), /exceeds the cap/);
  await assert.rejects(sealer.sealRecord(RecordType.PAKE, new Uint8Array(1)), /not sealed/);
  assert.throws(() => encodeRecord(RecordType.CONFIRM, new Uint8Array(1025)), /exceeds the cap/);
});
