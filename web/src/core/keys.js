// Key agreement for ferry: SPAKE2 roles, HKDF labels, key confirmation.
// Mirrors src/ferry/crypto.py; web/test/vectors.json pins the two together.
//
// Theory of operation.
// 1. PAKE: SPAKE2 (spake2.js) with the whole canonical code text as
//    password; the sender plays side A, the receiver side B, with the
//    identities "ferry/1 sender" and "ferry/1 receiver".
// 2. Keys: HKDF-SHA256 over the SPAKE2 key, salt = SHA-256(msg_A ‖ msg_B)
//    (the whole PAKE record bodies, side bytes included), expands four
//    32-byte keys with the info labels "ferry/1 {confirm,record}
//    {sender,receiver}": a confirmation key and a record key per direction.
// 3. Key confirmation: each side sends HMAC-SHA256(its confirmation key,
//    "ferry/1 key confirmation") and checks the peer's in constant time. A
//    mismatch is "wrong code"; no file byte has moved yet.

import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

import { concat, constantTimeEqual, utf8 } from './bytes.js';
import { LocalProtocolError } from './errors.js';
import { SIDE_A, SIDE_B, Spake2 } from './spake2.js';

export const KEY_SIZE = 32;
export const SENDER = 'sender';
export const RECEIVER = 'receiver';
const ID_SENDER = utf8('ferry/1 sender');
const ID_RECEIVER = utf8('ferry/1 receiver');
const CONFIRMATION_LABEL = utf8('ferry/1 key confirmation');

function peerOf(role) {
  return role === SENDER ? RECEIVER : SENDER;
}

/**
 * The keys one side holds after the PAKE: its confirmation key and its
 * peer's, its sealing key and its opening key (the peer's sealing key).
 */
export class SessionKeys {
  constructor(role, confirmMine, confirmPeer, sealKey, openKey) {
    this.role = role;
    // Not enumerable: a log line or JSON.stringify of the object never shows them.
    for (const [name, value] of Object.entries({ confirmMine, confirmPeer, sealKey, openKey })) {
      Object.defineProperty(this, name, { value, enumerable: false });
    }
    Object.freeze(this);
  }

  toString() {
    return `SessionKeys(role=${this.role}, <hidden>)`;
  }
}

/** The four HKDF keys for `role`, from the SPAKE2 key and the PAKE transcript (msg_A ‖ msg_B). */
export function deriveKeys(role, shared, transcript) {
  const salt = sha256(transcript);
  const expand = (kind, side) => hkdf(sha256, shared, salt, utf8(`ferry/1 ${kind} ${side}`), KEY_SIZE);
  const peer = peerOf(role);
  return new SessionKeys(
    role,
    expand('confirm', role),
    expand('confirm', peer),
    expand('record', role),
    expand('record', peer),
  );
}

function mac(key) {
  return hmac(sha256, key, CONFIRMATION_LABEL);
}

/** The CONFIRM body we send. */
export function confirmation(keys) {
  return mac(keys.confirmMine);
}

/** True when the peer's CONFIRM body proves it derived the same key (constant time). */
export function peerConfirmed(keys, body) {
  return constantTimeEqual(mac(keys.confirmPeer), body);
}

/** One SPAKE2 exchange for ferry: start() gives our PAKE body, finish() the keys. */
export class Pake {
  /**
   * @param {'sender'|'receiver'} role
   * @param {Uint8Array} password the canonical code text, as bytes
   * @param {{randomBytes?: (n: number) => Uint8Array}} options
   */
  constructor(role, password, options = {}) {
    if (role !== SENDER && role !== RECEIVER) throw new LocalProtocolError(`unknown role ${role}`);
    this._role = role;
    const side = role === SENDER ? SIDE_A : SIDE_B;
    this._spake = new Spake2(side, password, { idA: ID_SENDER, idB: ID_RECEIVER, ...options });
    this._message = null;
  }

  start() {
    this._message = this._spake.start();
    return this._message;
  }

  /** The session keys; RemoteProtocolError if the peer's message is malformed. */
  finish(peerMessage) {
    if (this._message === null) throw new LocalProtocolError('start() must come before finish()');
    const shared = this._spake.finish(peerMessage);
    const transcript =
      this._role === SENDER ? concat(this._message, peerMessage) : concat(peerMessage, this._message);
    return deriveKeys(this._role, shared, transcript);
  }
}
