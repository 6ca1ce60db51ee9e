// Record framing and sealing between sender and receiver (everything after
// PAIRED). Mirrors src/ferry/protocol/records.py and the Sealer/Opener of
// src/ferry/crypto.py; web/test/vectors.json pins them together.
//
//      0               4        5        6
//     +----------------+--------+--------+------------------------+
//     | length (u32 BE)|  type  | flags  |  body (length bytes)   |
//     +----------------+--------+--------+------------------------+
//
// Theory of operation. The six header bytes travel in the clear and are the
// associated data of the body's AES-256-GCM seal, so a changed type, flag
// or length fails authentication. PAKE and CONFIRM travel unsealed; every
// later record is sealed and its length includes the 16-byte tag. Each type
// has its own length cap, checked from the header before any body byte is
// buffered: a peer can never make the decoder hold more than one capped
// record (plus the bytes the caller itself handed in).
//
// The nonce is 4 zero bytes ‖ a 64-bit big-endian record counter per
// direction, starting at 0 and never sent: a dropped, repeated or
// reordered record fails to open. FLAG_FINAL (authenticated) marks the last
// DATA record, so truncation is detected too.
//
// RecordDecoder does no I/O: receiveData(bytes), then nextRecord() until it
// returns null (it needs more bytes). AES-GCM is WebCrypto's, so seal and
// open are async; each takes its counter when called, so records sealed
// (or opened) in call order get consecutive nonces even if the promises
// settle later.

import { concat } from './bytes.js';
import { LocalProtocolError, IntegrityError, RemoteProtocolError } from './errors.js';

export const HEADER_SIZE = 6;
export const TAG_SIZE = 16;
export const MAX_DATA_PAYLOAD = 1 << 20;
export const MAX_MESSAGE_PAYLOAD = 64 * 1024;
export const MAX_HANDSHAKE_LENGTH = 1024;
export const MAX_SEALED_LENGTH = MAX_DATA_PAYLOAD + TAG_SIZE;
export const FLAG_FINAL = 0x01;
const KNOWN_FLAGS = FLAG_FINAL;

export const RecordType = Object.freeze({
  PAKE: 1,
  CONFIRM: 2,
  OFFER: 16,
  ANSWER: 17,
  DATA: 18,
  ACK: 19,
  ABORT: 20,
  MANIFEST: 21,
  START: 22,
  DIGEST: 23,
  RESUME: 24,
  PROOF: 25,
  VERDICT: 26,
});
const TYPE_NAMES = new Map(Object.entries(RecordType).map(([name, value]) => [value, name]));

export function typeName(type) {
  return TYPE_NAMES.get(type) ?? String(type);
}

export function isSealed(type) {
  return type !== RecordType.PAKE && type !== RecordType.CONFIRM;
}

/** The largest body length a record of this type may announce. */
export function maxLength(type) {
  if (!isSealed(type)) return MAX_HANDSHAKE_LENGTH;
  if (type === RecordType.DATA) return MAX_SEALED_LENGTH;
  return MAX_MESSAGE_PAYLOAD + TAG_SIZE;
}

export function encodeHeader(length, type, flags = 0) {
  const out = new Uint8Array(HEADER_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, length);
  out[4] = type;
  out[5] = flags;
  return out;
}

/** Decode and validate six header bytes: {length, type, flags, final}. Throws RemoteProtocolError. */
export function parseHeader(bytes) {
  if (bytes.length !== HEADER_SIZE) throw new LocalProtocolError('a header is six bytes');
  const length = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE).getUint32(0);
  const type = bytes[4];
  const flags = bytes[5];
  if (!TYPE_NAMES.has(type)) throw new RemoteProtocolError(`unknown record type ${type}`);
  const name = typeName(type);
  if (flags & ~KNOWN_FLAGS) {
    throw new RemoteProtocolError(`unknown record flags 0x${flags.toString(16)}`);
  }
  if (flags && type !== RecordType.DATA) throw new RemoteProtocolError('only DATA records carry flags');
  if (length > maxLength(type)) {
    throw new RemoteProtocolError(`${name} record of ${length} bytes is too large`);
  }
  if (isSealed(type) && length < TAG_SIZE) {
    throw new RemoteProtocolError(`${name} record too short to be sealed`);
  }
  return Object.freeze({ length, type, flags, final: Boolean(flags & FLAG_FINAL) });
}

/** Header plus body, for the unsealed records (and tests). */
export function encodeRecord(type, body, flags = 0) {
  if (body.length > maxLength(type)) {
    throw new LocalProtocolError(`${typeName(type)} body of ${body.length} bytes exceeds the cap`);
  }
  return concat(encodeHeader(body.length, type, flags), body);
}

/**
 * Sans-IO record splitter. receiveData(bytes) takes bytes in; nextRecord()
 * returns {header, headerBytes, body} or null when it needs more. A header
 * is checked as soon as its six bytes are in, before any byte of its body is
 * buffered; the body buffer is then allocated at the announced (capped) size.
 */
export class RecordDecoder {
  constructor() {
    this._headerBytes = new Uint8Array(HEADER_SIZE);
    this._headerHave = 0;
    this._header = null;
    this._body = null;
    this._bodyHave = 0;
    this._ready = [];
  }

  receiveData(data) {
    let at = 0;
    while (at < data.length) {
      if (this._header === null) {
        const n = Math.min(HEADER_SIZE - this._headerHave, data.length - at);
        this._headerBytes.set(data.subarray(at, at + n), this._headerHave);
        this._headerHave += n;
        at += n;
        if (this._headerHave < HEADER_SIZE) break;
        this._header = parseHeader(this._headerBytes); // throws before any body byte is held
        this._body = new Uint8Array(this._header.length);
        this._bodyHave = 0;
      }
      const n = Math.min(this._body.length - this._bodyHave, data.length - at);
      this._body.set(data.subarray(at, at + n), this._bodyHave);
      this._bodyHave += n;
      at += n;
      if (this._bodyHave === this._body.length) this._complete();
    }
  }

  _complete() {
    this._ready.push(
      Object.freeze({ header: this._header, headerBytes: Uint8Array.from(this._headerBytes), body: this._body }),
    );
    this._header = null;
    this._body = null;
    this._headerHave = 0;
    this._bodyHave = 0;
  }

  /** The next whole record, or null (more bytes needed). */
  nextRecord() {
    return this._ready.shift() ?? null;
  }

  /** Bytes held of the record in progress, beyond its parsed header. */
  get buffered() {
    return this._header === null ? this._headerHave : this._bodyHave;
  }
}

/** The 12-byte nonce for a record counter: 4 zero bytes ‖ u64 BE. */
export function nonce(counter) {
  const out = new Uint8Array(12);
  new DataView(out.buffer).setBigUint64(4, BigInt(counter));
  return out;
}

class Sequence {
  constructor(key, usage) {
    if (!(key instanceof Uint8Array) || key.length !== 32) {
      throw new LocalProtocolError('an AES-256-GCM key is 32 bytes');
    }
    this._key = globalThis.crypto.subtle.importKey('raw', key, { name: 'AES-GCM' }, false, [usage]);
    this._counter = 0n;
  }

  _nextNonce() {
    const value = nonce(this._counter);
    this._counter += 1n;
    return value;
  }

  /** How many records this direction has sealed or opened. */
  get counter() {
    return this._counter;
  }
}

/** Seals our records in order; the counter is the nonce. */
export class Sealer extends Sequence {
  constructor(key) {
    super(key, 'encrypt');
  }

  /** The sealed body (ciphertext ‖ tag) of `plaintext` under `header` bytes. */
  async seal(headerBytes, plaintext) {
    const iv = this._nextNonce();
    const params = { name: 'AES-GCM', iv, additionalData: headerBytes, tagLength: 128 };
    return new Uint8Array(await globalThis.crypto.subtle.encrypt(params, await this._key, plaintext));
  }

  /** A whole sealed record, header and body, ready to send. */
  async sealRecord(type, plaintext, flags = 0) {
    if (!isSealed(type)) throw new LocalProtocolError(`${typeName(type)} records are not sealed`);
    const length = plaintext.length + TAG_SIZE;
    if (length > maxLength(type)) {
      throw new LocalProtocolError(`${typeName(type)} body of ${plaintext.length} bytes exceeds the cap`);
    }
    const header = encodeHeader(length, type, flags);
    return concat(header, await this.seal(header, plaintext));
  }
}

/** Opens the peer's records in order; any failure is an IntegrityError. */
export class Opener extends Sequence {
  constructor(key) {
    super(key, 'decrypt');
  }

  async open(headerBytes, sealed) {
    const iv = this._nextNonce();
    const params = { name: 'AES-GCM', iv, additionalData: headerBytes, tagLength: 128 };
    try {
      return new Uint8Array(await globalThis.crypto.subtle.decrypt(params, await this._key, sealed));
    } catch {
      throw new IntegrityError();
    }
  }

  /** Open a record from RecordDecoder.nextRecord(). */
  openRecord(record) {
    return this.open(record.headerBytes, record.body);
  }
}
