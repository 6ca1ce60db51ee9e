// The plaintext rendezvous lines a browser client speaks with the relay.
// Mirrors the client half of src/ferry/protocol/rendezvous.py.
//
//     sender (control)        relay                    receiver       sender (data)
//     FERRY 1 SEND [STANDBY] --->
//                       <---  NAMEPLATE 7
//                       <---  TICKET <ticket>      (standby)
//                                         <---  FERRY 1 RECV 7
//                       <---  INCOMING <ticket>    (no standby)
//                                                           <---  FERRY 1 JOIN 7 <ticket>
//                             PAIRED  --->                    --->  PAIRED
//     relay -> control: PING; control -> relay: PONG
//     any refusal:      ERROR <reason> <text>, then the relay closes
//
// Theory of operation. Lines are ASCII, end with LF and are at most
// MAX_LINE bytes, LF included; LineBuffer never holds more than that
// before it has a line, and hands over whatever followed the last line
// (the first bytes of the pipe after PAIRED) with takeRest(). Only the
// nameplate travels here, never the code's words. Pure functions, no I/O.

import { RemoteProtocolError } from './errors.js';

export const PROTOCOL_VERSION = 1;
export const MAX_LINE = 128;
export const TICKET_HEX_LEN = 32;

const NUMBER = /^[1-9][0-9]{0,8}$/;
const TICKET = /^[0-9a-f]{32}$/;
const REASON = /^[a-z][a-z-]{0,31}$/;
const ascii = new TextEncoder();

function line(text) {
  const bytes = ascii.encode(text);
  return Uint8Array.from([...bytes.subarray(0, MAX_LINE - 1), 0x0a]);
}

function checkNameplate(nameplate) {
  if (!Number.isSafeInteger(nameplate) || !NUMBER.test(String(nameplate))) {
    throw new RangeError(`not a nameplate: ${nameplate}`);
  }
}

/** FERRY 1 SEND, or FERRY 1 SEND STANDBY: open a sender's control connection. */
export function sendRequest({ standby = false } = {}) {
  return line(`FERRY ${PROTOCOL_VERSION} SEND${standby ? ' STANDBY' : ''}`);
}

/** FERRY 1 RECV <n>: a receiver claims nameplate n. */
export function receiveRequest(nameplate) {
  checkNameplate(nameplate);
  return line(`FERRY ${PROTOCOL_VERSION} RECV ${nameplate}`);
}

/** FERRY 1 JOIN <n> <ticket>: a sender's data connection. */
export function joinRequest(nameplate, ticket) {
  checkNameplate(nameplate);
  if (!TICKET.test(ticket)) throw new RangeError('not a ticket');
  return line(`FERRY ${PROTOCOL_VERSION} JOIN ${nameplate} ${ticket}`);
}

/** PONG: a waiting sender's answer to PING. */
export function pong() {
  return line('PONG');
}

const ANY_CONTROL = /[^\x20-\x7e]/;

/**
 * Parse one line from the relay (LF included): one of
 * {kind: 'nameplate', nameplate}, {kind: 'incoming', ticket},
 * {kind: 'ticket', ticket}, {kind: 'paired'}, {kind: 'ping'},
 * {kind: 'error', reason, text}. Throws RemoteProtocolError.
 */
export function parseRelayLine(bytes) {
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0x0a) {
    throw new RemoteProtocolError('relay sent a malformed line: line not terminated');
  }
  let end = bytes.length - 1;
  if (end > 0 && bytes[end - 1] === 0x0d) end -= 1; // tolerate CRLF
  const body = bytes.subarray(0, end);
  if (body.some((b) => b > 0x7f)) {
    throw new RemoteProtocolError('relay sent a malformed line: line is not ASCII');
  }
  const text = String.fromCharCode(...body);
  if (ANY_CONTROL.test(text)) {
    throw new RemoteProtocolError('relay sent a malformed line: control characters in line');
  }
  const words = text.split(' ');
  const [verb, ...rest] = words;
  if (verb === 'NAMEPLATE' && rest.length === 1 && NUMBER.test(rest[0])) {
    return { kind: 'nameplate', nameplate: Number(rest[0]) };
  }
  if (verb === 'INCOMING' && rest.length === 1 && TICKET.test(rest[0])) {
    return { kind: 'incoming', ticket: rest[0] };
  }
  if (verb === 'TICKET' && rest.length === 1 && TICKET.test(rest[0])) {
    return { kind: 'ticket', ticket: rest[0] };
  }
  if (text === 'PAIRED') return { kind: 'paired' };
  if (text === 'PING') return { kind: 'ping' };
  if (verb === 'ERROR' && rest.length >= 1 && REASON.test(rest[0])) {
    return { kind: 'error', reason: rest[0], text: rest.slice(1).join(' ') };
  }
  throw new RemoteProtocolError('the server is not a ferry relay (or speaks another version)');
}

/**
 * Collects bytes and splits them into lines, never holding more than
 * MAX_LINE bytes without a line end. nextLine() returns one line (LF
 * included) or null; takeRest() hands over the bytes after the last line.
 */
export class LineBuffer {
  constructor(maxLine = MAX_LINE) {
    this._buffer = new Uint8Array(0);
    this._maxLine = maxLine;
  }

  receiveData(data) {
    const joined = new Uint8Array(this._buffer.length + data.length);
    joined.set(this._buffer);
    joined.set(data, this._buffer.length);
    this._buffer = joined;
  }

  nextLine() {
    const limit = Math.min(this._buffer.length, this._maxLine);
    const end = this._buffer.subarray(0, limit).indexOf(0x0a);
    if (end < 0) {
      if (this._buffer.length >= this._maxLine) throw new RemoteProtocolError('relay sent a line that is too long');
      return null;
    }
    const found = this._buffer.slice(0, end + 1);
    this._buffer = this._buffer.slice(end + 1);
    return found;
  }

  takeRest() {
    const rest = this._buffer;
    this._buffer = new Uint8Array(0);
    return rest;
  }

  get length() {
    return this._buffer.length;
  }
}
