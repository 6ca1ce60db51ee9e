// The conversation between sender and receiver after PAIRED, as pure state
// machines. Mirrors ReceiverSession and SenderSession of
// src/ferry/protocol/session.py for what a browser needs: no resume.
//
//     sender                                          receiver
//     KEY_EXCHANGE   PAKE ------------------------> <- PAKE       KEY_EXCHANGE
//     CONFIRMING     CONFIRM + sealed OFFER ------> <- CONFIRM    CONFIRMING
//                    (+ MANIFEST records for a tree)
//     AWAIT_ANSWER                                                AWAIT_OFFER
//                                                                 [AWAIT_MANIFEST]
//                                                                 DECIDING (local)
//                    <------------------------------- ANSWER
//     SENDING        DATA ... DATA(final) -------->               RECEIVING
//     AWAIT_ACK                                                   STORING (local)
//                    <------------------------------- ACK
//     DONE                                                        DONE
//
// Theory of operation. A session does no I/O and reads no clock: the
// driver feeds it the bytes it reads (receiveData(bytes, now)), takes the
// events it yields (await nextEvent(): an event object, or null when it
// needs more bytes), hands it local decisions (accept, refuse, acknowledge,
// abort, sendData) and writes out what it produces (await dataToSend()).
// Sealing and opening are WebCrypto's, so asynchronous: each record takes
// its nonce when it is queued, and dataToSend() resolves the queue in
// order. Call nextEvent() one at a time (await each).
//
// Events: {type: 'keyed'} (the peer has had its one guess), {type:
// 'confirmed'}, {type: 'offer', offer, entries} (receiver; a tree's
// manifest complete), {type: 'answered', answer} (sender), {type: 'data',
// data, final} (receiver, file/stream/text), {type: 'file-data', index,
// data, done} (receiver, a tree's bytes split at file boundaries, then
// {type: 'all-received'}), {type: 'acknowledged', ack} (sender), {type:
// 'peer-aborted', abort}. Errors the peer caused are thrown from
// nextEvent(): RemoteProtocolError, IntegrityError, WrongCode; the session
// is then FAILED.
//
// Resume is never spoken: a browser sender never asks for it ("resume"
// is absent from its OFFER, exactly as a sender from before resume), and
// a browser receiver never offers it (its ANSWER carries no resume field,
// exactly as a receiver from before resume). A resume answer the sender
// did not ask for is a protocol error, as in Python.
//
// DATA records are paid for in bytes: every one but the FINAL one carries
// at least one byte, and a sender may send at most FREE_DATA_RECORDS
// records plus one per BYTES_PER_DATA_RECORD bytes delivered.
//
// Timers: paired(now) starts them; `deadline` says when the session gives
// up unless something happens (null: none), expire(now) returns the
// TimedOut to raise once it has passed. The same timeouts as the CLI's
// (ClientConfig): handshake 10 s from PAIRED, then 120 s without progress,
// 600 s for the answer, none while the receiver decides or stores.

import { concat } from './bytes.js';
import { LocalProtocolError, RemoteProtocolError, TimedOut, WrongCode } from './errors.js';
import { Pake, RECEIVER, SENDER, confirmation, peerConfirmed } from './keys.js';
import {
  KIND_TREE,
  MANIFEST_VERSION,
  UNKNOWN_SIZE,
  decodeAbort,
  decodeAck,
  decodeAnswer,
  decodeManifest,
  decodeOffer,
  encodeAbort,
  encodeAck,
  encodeAnswer,
  offerBody,
  padded,
} from './messages.js';
import { FLAG_FINAL, MAX_DATA_PAYLOAD, Opener, RecordDecoder, RecordType, Sealer, encodeRecord, isSealed, typeName } from './records.js';

export const State = Object.freeze({
  KEY_EXCHANGE: 'key-exchange',
  CONFIRMING: 'confirming',
  AWAIT_OFFER: 'await-offer',
  AWAIT_MANIFEST: 'await-manifest',
  DECIDING: 'deciding',
  AWAIT_ANSWER: 'await-answer',
  SENDING: 'sending',
  RECEIVING: 'receiving',
  STORING: 'storing',
  AWAIT_ACK: 'await-ack',
  DONE: 'done',
  FAILED: 'failed',
});

export const FREE_DATA_RECORDS = 1024n;
export const BYTES_PER_DATA_RECORD = 1024n;
/** Plaintext bytes a browser sender puts in one DATA record (ClientConfig.record_size). */
export const RECORD_SIZE = 128 * 1024;
export const DEFAULT_TIMEOUTS = Object.freeze({ handshake: 10, io: 120, ack: 120, answer: 600 });
/** A tree with more entries is not read (the receiver refuses it), as FERRY_MAX_ENTRIES. */
export const MAX_ENTRIES = 100000n;
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** DATA records a receiver takes once they carried `delivered` bytes in all. */
export function dataRecordsAllowed(delivered) {
  return FREE_DATA_RECORDS + BigInt(delivered) / BYTES_PER_DATA_RECORD;
}

const HANDSHAKE_STATES = new Set([State.KEY_EXCHANGE, State.CONFIRMING]);
const LOCAL_STATES = new Set([State.DECIDING, State.STORING]);

class Session {
  constructor(role, password, { timeouts = DEFAULT_TIMEOUTS, randomBytes } = {}) {
    this.role = role;
    this.state = State.KEY_EXCHANGE;
    this.timeouts = timeouts;
    this._pake = new Pake(role, password, randomBytes ? { randomBytes } : {});
    this._firstFlight = encodeRecord(RecordType.PAKE, this._pake.start());
    this._decoder = new RecordDecoder();
    this._outgoing = [];
    this._sealer = null;
    this._opener = null;
    this._keys = null;
    this._pairedAt = null;
    this._progressAt = 0;
  }

  get peer() {
    return this.role === SENDER ? RECEIVER : SENDER;
  }

  /** Our PAKE record: it goes out behind the rendezvous line, before PAIRED. */
  firstFlight() {
    return this._firstFlight;
  }

  receiveData(data, now) {
    this._decoder.receiveData(data);
    if (data.length) this._progressAt = now;
  }

  /** The next thing the peer said, or null (more bytes needed). */
  async nextEvent() {
    if (this.state === State.DONE || this.state === State.FAILED) return null;
    try {
      for (;;) {
        const pending = this._pendingEvent();
        if (pending !== null) return pending;
        const record = this._decoder.nextRecord();
        if (record === null) return null;
        const event = await this._handle(record);
        if (event !== null) return event;
      }
    } catch (error) {
      this.state = State.FAILED;
      throw error;
    }
  }

  /** Records produced since the last call, in order, as one byte array. */
  async dataToSend() {
    const parts = await Promise.all(this._outgoing.splice(0));
    return concat(...parts);
  }

  /** A write to the peer completed: that is progress too. */
  wrote(now) {
    this._progressAt = now;
  }

  _queue(type, body, flags = 0) {
    if (this._sealer === null) throw new LocalProtocolError('nothing can be sealed before the key exchange');
    this._outgoing.push(this._sealer.sealRecord(type, body, flags));
  }

  /** Give up; the peer is told why if keys exist (dataToSend()). */
  abort(reason, message, now) {
    if (this._sealer !== null && this.state !== State.FAILED) {
      this._queue(RecordType.ABORT, encodeAbort({ reason, message }));
    }
    this._progressAt = now;
    this.state = State.FAILED;
  }

  /** The relay paired us: the handshake timer starts. */
  paired(now) {
    this._pairedAt = this._progressAt = now;
  }

  /** When the session gives up unless something happens first (null: no timer), in seconds. */
  get deadline() {
    if (this._pairedAt === null || LOCAL_STATES.has(this.state)) return null;
    if (this.state === State.DONE || this.state === State.FAILED) return null;
    if (HANDSHAKE_STATES.has(this.state)) return this._pairedAt + this.timeouts.handshake;
    if (this.state === State.AWAIT_ACK) return this._progressAt + this.timeouts.ack;
    if (this.state === State.AWAIT_ANSWER) return this._progressAt + this.timeouts.answer;
    return this._progressAt + this.timeouts.io;
  }

  /** The TimedOut to raise if the deadline has passed (the session is then FAILED), else null. */
  expire(now) {
    const deadline = this.deadline;
    if (deadline === null || now < deadline) return null;
    let error;
    if (HANDSHAKE_STATES.has(this.state)) error = new TimedOut(`timed out during the key exchange with the ${this.peer}`);
    else if (this.state === State.AWAIT_ACK) error = new TimedOut(`the ${this.peer} did not confirm it stored the data (${this.timeouts.ack}s)`);
    else if (this.state === State.AWAIT_ANSWER) error = new TimedOut(`the ${this.peer} did not answer (${this.timeouts.answer}s)`);
    else error = new TimedOut(`the ${this.peer} stopped responding (${this.timeouts.io}s)`);
    this.state = State.FAILED;
    return error;
  }

  async _handle(record) {
    const { header } = record;
    if (this.state === State.KEY_EXCHANGE) {
      this._expect(header, RecordType.PAKE);
      const keys = this._pake.finish(record.body);
      this._keys = keys;
      this._sealer = new Sealer(keys.sealKey);
      this._opener = new Opener(keys.openKey);
      this._outgoing.push(Promise.resolve(encodeRecord(RecordType.CONFIRM, confirmation(keys))));
      this._keyed();
      this.state = State.CONFIRMING;
      return { type: 'keyed' };
    }
    if (this.state === State.CONFIRMING) {
      this._expect(header, RecordType.CONFIRM);
      if (!peerConfirmed(this._keys, record.body)) throw new WrongCode();
      this.state = this._afterConfirmation();
      return { type: 'confirmed' };
    }
    if (!isSealed(header.type)) throw new RemoteProtocolError(`unexpected ${typeName(header.type)} record`);
    const plain = await this._opener.openRecord(record);
    if (header.type === RecordType.ABORT) {
      this.state = State.FAILED;
      return { type: 'peer-aborted', abort: decodeAbort(plain) };
    }
    return this._sealed(header, plain);
  }

  _expect(header, expected) {
    if (header.type !== expected) {
      throw new RemoteProtocolError(`expected ${typeName(expected)}, got ${typeName(header.type)}`);
    }
  }

  _require(...states) {
    if (!states.includes(this.state)) {
      throw new LocalProtocolError(`session is ${this.state}, not ${states.join(' or ')}`);
    }
  }

  _keyed() {}

  _pendingEvent() {
    return null;
  }
}

/**
 * The sending side: offer, then sendData() once accepted, then the ACK.
 * `offer` is what messages.encodeOffer takes (never `resume`); a tree's
 * `manifest` is its MANIFEST record bodies (messages.encodeManifest).
 */
export class SenderSession extends Session {
  constructor(password, offer, { manifest = [], ...options } = {}) {
    super(SENDER, password, options);
    if (offer.resume) throw new LocalProtocolError('a browser sender never asks to resume');
    this.offer = { ...offer, size: offer.kind === 'stream' ? UNKNOWN_SIZE : BigInt(offer.size ?? 0) };
    this._offerBody = offerBody(offer);
    this._manifest = manifest;
    this.sent = 0n;
    this.dataRecords = 0n;
  }

  _keyed() {
    // The manifest rides right behind the OFFER, padded like it.
    this._queue(RecordType.OFFER, this._offerBody);
    for (const body of this._manifest) this._queue(RecordType.MANIFEST, padded(body));
  }

  _afterConfirmation() {
    return State.AWAIT_ANSWER;
  }

  _sealed(header, plain) {
    if (this.state === State.AWAIT_ANSWER) {
      this._expect(header, RecordType.ANSWER);
      const answer = decodeAnswer(plain);
      if (answer.resumeFrom || answer.resumeRecords) {
        throw new RemoteProtocolError('the receiver offered a resume that was not possible');
      }
      this.state = answer.accept ? State.SENDING : State.DONE;
      return { type: 'answered', answer };
    }
    if (this.state === State.AWAIT_ACK) {
      this._expect(header, RecordType.ACK);
      const ack = decodeAck(plain);
      if (ack.size !== this.sent) throw new RemoteProtocolError(`the receiver stored ${ack.size} bytes, not ${this.sent}`);
      this.state = State.DONE;
      return { type: 'acknowledged', ack };
    }
    throw new RemoteProtocolError(`unexpected ${typeName(header.type)} record`);
  }

  /**
   * Queue the next DATA record (dataToSend()); the one that reaches the
   * offered size is FINAL. A stream has no size: `end` marks its last record.
   */
  sendData(chunk, now, end = false) {
    this._require(State.SENDING);
    const stream = this.offer.size === UNKNOWN_SIZE;
    const size = BigInt(chunk.length);
    if ((!stream && this.sent + size > this.offer.size) || chunk.length > MAX_DATA_PAYLOAD) {
      throw new LocalProtocolError('more data than offered, or a chunk over the record cap');
    }
    const final = stream ? end : this.sent + size === this.offer.size;
    if (!chunk.length && !final) throw new LocalProtocolError('only the FINAL record may be empty');
    if (this.dataRecords + 1n > dataRecordsAllowed(this.sent + size)) {
      throw new LocalProtocolError("more DATA records than the receiver's allowance");
    }
    this.sent += size;
    this.dataRecords += 1n;
    this._queue(RecordType.DATA, chunk, final ? FLAG_FINAL : 0);
    if (final) this.state = State.AWAIT_ACK;
    this._progressAt = now;
  }
}

/** The receiving side: the offer, a decision, the data, the ACK once stored. */
export class ReceiverSession extends Session {
  constructor(password, { maxEntries = MAX_ENTRIES, maxManifestBytes = MAX_MANIFEST_BYTES, ...options } = {}) {
    super(RECEIVER, password, options);
    this.offer = null;
    this.entries = [];
    this.received = 0n;
    this.dataRecords = 0n;
    this.maxEntries = BigInt(maxEntries);
    this.maxManifestBytes = maxManifestBytes;
    this._manifestBytes = 0;
    this._manifestRecords = 0n;
    this._unreadRecords = 0n;
    // A tree's data, split at file boundaries: [index, size] of each file,
    // the one being filled, its bytes still missing, plaintext not yet reported.
    this._files = [];
    this._cursor = 0;
    this._left = 0n;
    this._pending = new Uint8Array(0);
    this._finalSeen = false;
    this._allReported = false;
  }

  get isTree() {
    return this.offer !== null && this.offer.kind === KIND_TREE;
  }

  _afterConfirmation() {
    return State.AWAIT_OFFER;
  }

  _sealed(header, plain) {
    if (this.state === State.AWAIT_OFFER) {
      this._expect(header, RecordType.OFFER);
      const offer = (this.offer = decodeOffer(plain));
      if (!this.isTree || !this._readableTree(offer)) {
        this._unreadRecords = this.isTree ? offer.records : 0n;
        this.state = State.DECIDING;
        return { type: 'offer', offer, entries: [] };
      }
      this.state = State.AWAIT_MANIFEST;
      return null;
    }
    if (this.state === State.AWAIT_MANIFEST) {
      this._expect(header, RecordType.MANIFEST);
      return this._manifestPart(plain);
    }
    if (header.type === RecordType.MANIFEST && this._unreadRecords > 0n) {
      this._unreadRecords -= 1n;
      return null;
    }
    if (this.state !== State.RECEIVING) throw new RemoteProtocolError(`unexpected ${typeName(header.type)} record`);
    this._expect(header, RecordType.DATA);
    if (this.isTree && (this._finalSeen || this._pending.length)) {
      throw new RemoteProtocolError('unexpected DATA record');
    }
    this._countRecord(plain.length, header.final);
    this.received += BigInt(plain.length);
    const sized = this.offer.size !== UNKNOWN_SIZE;
    if (sized && this.received > this.offer.size) throw new RemoteProtocolError('the sender sent more than it offered');
    if (header.final && sized && this.received !== this.offer.size) {
      throw new RemoteProtocolError(`the sender ended after ${this.received} of ${this.offer.size} bytes`);
    }
    if (this.isTree) {
      this._finalSeen = header.final;
      this._pending = plain; // reported piece by piece by _pendingEvent()
      return null;
    }
    if (header.final) this.state = State.STORING;
    return { type: 'data', data: plain, final: header.final };
  }

  _countRecord(size, final) {
    if (!size && !final) throw new RemoteProtocolError('the sender sent an empty DATA record');
    this.dataRecords += 1n;
    if (this.dataRecords > dataRecordsAllowed(this.received + BigInt(size))) {
      throw new RemoteProtocolError('the sender sent too many DATA records for their bytes');
    }
  }

  _readableTree(offer) {
    if (offer.manifest !== MANIFEST_VERSION || offer.entries > this.maxEntries) return false;
    if (offer.entries === 0n || offer.records === 0n) throw new RemoteProtocolError('the sender offered an empty tree');
    return true;
  }

  _manifestPart(plain) {
    const offer = this.offer;
    this._manifestBytes += plain.length;
    if (this._manifestBytes > this.maxManifestBytes) {
      throw new RemoteProtocolError(`the manifest is larger than ${this.maxManifestBytes} bytes`);
    }
    for (const entry of decodeManifest(plain)) this.entries.push(entry);
    this._manifestRecords += 1n;
    if (BigInt(this.entries.length) > offer.entries) throw new RemoteProtocolError('the manifest holds more entries than offered');
    if (this._manifestRecords < offer.records) return null;
    this._files = [];
    let total = 0n;
    this.entries.forEach((entry, index) => {
      if (!entry.isDir) {
        this._files.push([index, entry.size]);
        total += entry.size;
      }
    });
    if (BigInt(this.entries.length) !== offer.entries || BigInt(this._files.length) !== offer.files) {
      throw new RemoteProtocolError('the manifest does not hold the entries offered');
    }
    if (total !== offer.size) throw new RemoteProtocolError("the manifest's sizes do not add up to the offered size");
    this.state = State.DECIDING;
    return { type: 'offer', offer, entries: this.entries.slice() };
  }

  _pendingEvent() {
    if (this.state !== State.RECEIVING || !this.isTree) return null;
    while (this._cursor < this._files.length) {
      const index = this._files[this._cursor][0];
      if (this._left === 0n) return this._fileDone(index, new Uint8Array(0));
      if (!this._pending.length) return null;
      const take = this._left < BigInt(this._pending.length) ? Number(this._left) : this._pending.length;
      const piece = this._pending.subarray(0, take);
      this._pending = this._pending.subarray(take);
      this._left -= BigInt(take);
      if (this._left === 0n) return this._fileDone(index, piece);
      return { type: 'file-data', index, data: piece, done: false };
    }
    if (this._finalSeen && !this._allReported) {
      this._allReported = true;
      this.state = State.STORING;
      return { type: 'all-received' };
    }
    return null;
  }

  _fileDone(index, piece) {
    this._cursor += 1;
    this._left = this._cursor < this._files.length ? this._files[this._cursor][1] : 0n;
    return { type: 'file-data', index, data: piece, done: true };
  }

  /** Accept the offer (no resume: the ANSWER is {"accept": true}). */
  accept(now) {
    this._require(State.DECIDING);
    if (this.isTree && !this.entries.length) {
      throw new LocalProtocolError('a tree whose manifest was not read cannot be accepted');
    }
    this._answer({ accept: true }, now);
    if (this._files.length) this._left = this._files[0][1];
    this.state = State.RECEIVING;
  }

  refuse(reason, message, now) {
    this._require(State.DECIDING);
    this._answer({ accept: false, reason, message }, now);
    this.state = State.DONE;
  }

  /** Everything is stored: say so (dataToSend()). */
  acknowledge(now) {
    this._require(State.STORING);
    this._queue(RecordType.ACK, encodeAck({ size: this.received }));
    this._progressAt = now;
    this.state = State.DONE;
  }

  _answer(answer, now) {
    this._queue(RecordType.ANSWER, encodeAnswer(answer));
    this._progressAt = now;
  }
}
