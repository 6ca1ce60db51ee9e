// The JSON bodies of the sealed control records: OFFER, ANSWER, ACK, ABORT,
// and MANIFEST. Mirrors src/ferry/protocol/messages.py and manifest.py;
// web/test/vectors.json pins the bytes both sides write.
//
//     sender                                   receiver
//     OFFER  {"kind": "file", "name", "size"}  --->
//            <---  ANSWER {"accept": true}
//                  or {"accept": false, "reason", "message"}
//     DATA ... DATA(final)                     --->
//            <---  ACK {"ok": true, "size"}
//     either side, any time: ABORT {"reason", "message"}, then close
//
// Theory of operation. Decoders ignore keys they do not know and refuse
// (RemoteProtocolError) only what they cannot safely use. Every integer
// comes back as a BigInt (json.js): sizes reach 2^63-1 and mtimes are
// nanoseconds, both past a JavaScript number's exact range. Encoders take
// numbers or BigInts. The OFFER is padded with spaces to a multiple of
// OFFER_PADDING bytes, so its sealed length does not give away the length
// of the name. A tree OFFER is followed by `records` MANIFEST records, each
// at most RECORD_BUDGET bytes of JSON.
//
// Resume (START, DIGEST, RESUME, PROOF, VERDICT) is not spoken here: a browser never
// offers it, and a receiver never offers it to a sender that did not ask.

import { fromUtf8, utf8 } from './bytes.js';
import { RemoteProtocolError } from './errors.js';
import { JsonFloat, dumps, parse } from './json.js';
import { MAX_MESSAGE_PAYLOAD } from './records.js';

export const MAX_SIZE = (1n << 63n) - 1n;
export const MAX_OFFERED_NAME = 4096;
export const MAX_TEXT = 512;
export const OFFER_PADDING = 256;
export const KIND_FILE = 'file';
export const KIND_TREE = 'tree';
export const KIND_STREAM = 'stream';
export const KIND_TEXT = 'text';
export const MANIFEST_VERSION = 1n;
/** The OFFER's "resume" value (messages.RESUME_VERSION); a browser never sends it. */
export const RESUME_VERSION = 2n;
/** Offer.size of a stream: unknown until the FINAL record. */
export const UNKNOWN_SIZE = -1n;
export const MAX_PATH = 4 * MAX_OFFERED_NAME;
export const MAX_MTIME = (1n << 63n) - 1n;
export const RECORD_BUDGET = MAX_MESSAGE_PAYLOAD - 1024;

// ANSWER/ABORT reasons: the Python list (messages.REASON_*), pinned by vectors.messages.reasons.
export const REASON_EXISTS = 'exists';
export const REASON_UNSUPPORTED = 'unsupported';
export const REASON_BAD_NAME = 'bad-name';
export const REASON_LOCAL_ERROR = 'local-error';
/** ABORT: the receiver's disk filled up while it stored the data. */
export const REASON_NO_SPACE = 'no-space';
export const REASON_TOO_LARGE = 'too-large';
export const REASON_DECLINED = 'declined';
/** ABORT from the sender: a file changed while it was read; nothing may be stored. */
export const REASON_CHANGED = 'changed';
export const REASONS = Object.freeze([
  REASON_EXISTS, REASON_UNSUPPORTED, REASON_BAD_NAME, REASON_LOCAL_ERROR, REASON_NO_SPACE,
  REASON_TOO_LARGE, REASON_DECLINED, REASON_CHANGED,
]);

const KINDS = new Set([KIND_FILE, KIND_TREE, KIND_STREAM, KIND_TEXT]);

function encode(obj) {
  return utf8(dumps(obj));
}

function load(body, what) {
  let obj;
  try {
    obj = parse(fromUtf8(body));
  } catch {
    throw new RemoteProtocolError(`${what} is not valid JSON`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new RemoteProtocolError(`${what} is not a JSON object`);
  }
  return obj;
}

function has(obj, key) {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

function field(obj, key, kind, what) {
  const value = has(obj, key) ? obj[key] : undefined;
  if (typeof value !== kind) throw new RemoteProtocolError(`${what} has a missing or malformed '${key}'`);
  return value;
}

function count(obj, key, most, what = 'offer') {
  const value = field(obj, key, 'bigint', what);
  if (value < 0n || value > most) throw new RemoteProtocolError(`${what} has an impossible '${key}'`);
  return value;
}

/** A peer's free text: at most MAX_TEXT characters, "" when absent or not a string. */
function text(obj, key) {
  const value = has(obj, key) ? obj[key] : '';
  return typeof value === 'string' ? cut(value, MAX_TEXT) : '';
}

// Python counts characters in code points, a JavaScript string in UTF-16 units.
function pointLength(s) {
  return s.length <= 1 ? s.length : [...s].length;
}

/** s cut to its first n code points, as Python's s[:n]. */
function cut(s, n) {
  return s.length <= n ? s : [...s].slice(0, n).join('');
}

function big(value) {
  return typeof value === 'bigint' ? value : BigInt(value);
}

// OFFER

/** The OFFER JSON (unpadded), as encode_offer writes it. */
export function encodeOffer({ kind, name = '', size = 0n, manifest = MANIFEST_VERSION, entries = 0n,
  files = 0n, records = 0n, resume = false }) {
  const obj = { kind };
  if (kind === KIND_FILE || kind === KIND_STREAM) obj.name = name;
  if (resume) obj.resume = RESUME_VERSION;
  if (kind === KIND_TREE) {
    Object.assign(obj, { manifest: big(manifest), entries: big(entries), files: big(files), records: big(records) });
  }
  if (kind !== KIND_STREAM) obj.size = big(size);
  return encode(obj);
}

/** body followed by spaces up to the next multiple of `multiple` bytes. */
export function padded(body, multiple = OFFER_PADDING) {
  const size = body.length + ((multiple - (body.length % multiple)) % multiple);
  const out = new Uint8Array(size).fill(0x20);
  out.set(body);
  return out;
}

/** The OFFER body a sender seals: the JSON padded to OFFER_PADDING. */
export function offerBody(offer) {
  return padded(encodeOffer(offer));
}

/**
 * {kind, name, size, manifest, entries, files, records, resume}; an unknown
 * kind comes back as is (cut to 64 characters) with nothing else, so the
 * receiver can refuse it as unsupported.
 */
export function decodeOffer(body) {
  const obj = load(body, 'offer');
  const kind = field(obj, 'kind', 'string', 'offer');
  const base = { kind, name: '', size: 0n, manifest: 0n, entries: 0n, files: 0n, records: 0n, resume: false };
  if (!KINDS.has(kind)) return { ...base, kind: cut(kind, 64) };
  if (kind === KIND_TREE) return decodeTree(obj, base);
  let name = '';
  if (kind === KIND_FILE || kind === KIND_STREAM) {
    name = field(obj, 'name', 'string', 'offer');
    if (pointLength(name) > MAX_OFFERED_NAME) throw new RemoteProtocolError('offer has an over-long name');
  }
  const size = kind === KIND_STREAM ? UNKNOWN_SIZE : count(obj, 'size', MAX_SIZE);
  return { ...base, name, size, resume: kind !== KIND_TEXT && asksResume(obj) };
}

/** Python's _resumes: the integer RESUME_VERSION exactly (not true, not version 1). */
function asksResume(obj) {
  return obj.resume === RESUME_VERSION;
}

function decodeTree(obj, base) {
  const manifest = count(obj, 'manifest', MAX_SIZE);
  if (manifest !== MANIFEST_VERSION) {
    // Only the record count is used (to pass over them); the receiver refuses it.
    const records = typeof obj.records === 'bigint' ? obj.records : 0n;
    const clamped = records < 0n ? 0n : records > MAX_SIZE ? MAX_SIZE : records;
    return { ...base, manifest, records: clamped };
  }
  const entries = count(obj, 'entries', MAX_SIZE);
  const files = count(obj, 'files', entries);
  const records = count(obj, 'records', entries > 1n ? entries : 1n);
  const size = count(obj, 'size', MAX_SIZE);
  return { ...base, size, manifest, entries, files, records, resume: asksResume(obj) };
}

// ANSWER

export function encodeAnswer({ accept, reason = '', message = '' }) {
  const obj = { accept };
  if (!accept) Object.assign(obj, { reason, message });
  return encode(obj);
}

/** {accept, reason, message, resumeFrom, resumeRecords}. */
export function decodeAnswer(body) {
  const obj = load(body, 'answer');
  const accept = field(obj, 'accept', 'boolean', 'answer');
  const resumeFrom = has(obj, 'resume_from') ? obj.resume_from : 0n;
  if (typeof resumeFrom !== 'bigint' || resumeFrom < 0n || resumeFrom > MAX_SIZE) {
    throw new RemoteProtocolError("answer has a malformed 'resume_from'");
  }
  const records = has(obj, 'resume_records') ? obj.resume_records : 0n;
  if (typeof records !== 'bigint' || records < 0n || records > MAX_SIZE) {
    throw new RemoteProtocolError("answer has a malformed 'resume_records'");
  }
  if (records && (resumeFrom || !accept)) {
    throw new RemoteProtocolError('answer has both kinds of resume, or resumes a refusal');
  }
  return { accept, reason: text(obj, 'reason'), message: text(obj, 'message'), resumeFrom,
    resumeRecords: records };
}

// ACK, ABORT

export function encodeAck({ size }) {
  return encode({ ok: true, size: big(size) });
}

export function decodeAck(body) {
  const obj = load(body, 'acknowledgement');
  if (obj.ok !== true) throw new RemoteProtocolError('acknowledgement is not ok');
  const size = field(obj, 'size', 'bigint', 'acknowledgement');
  if (size < 0n || size > MAX_SIZE) throw new RemoteProtocolError('acknowledgement has an impossible size');
  return { size };
}

export function encodeAbort({ reason, message }) {
  return encode({ reason, message: cut(message, MAX_TEXT) });
}

export function decodeAbort(body) {
  const obj = load(body, 'abort');
  return { reason: text(obj, 'reason'), message: text(obj, 'message') };
}

// MANIFEST

function entryJson(entry) {
  if (entry.isDir) return { path: entry.path, dir: true, mtime: big(entry.mtimeNs) };
  return { path: entry.path, size: big(entry.size), mtime: big(entry.mtimeNs), exec: Boolean(entry.executable) };
}

/**
 * MANIFEST record bodies for entries {path, isDir, size, mtimeNs, executable},
 * each within RECORD_BUDGET bytes, at least one entry each.
 */
export function encodeManifest(entries) {
  const bodies = [];
  let batch = [];
  let used = 0;
  for (const entry of entries) {
    const item = encode(entryJson(entry));
    if (batch.length && used + item.length + 1 > RECORD_BUDGET) {
      bodies.push(wrap(batch));
      batch = [];
      used = 0;
    }
    batch.push(item);
    used += item.length + 1;
  }
  if (batch.length) bodies.push(wrap(batch));
  return bodies;
}

function wrap(items) {
  const parts = [utf8('{"entries":[')];
  items.forEach((item, i) => parts.push(...(i ? [utf8(','), item] : [item])));
  parts.push(utf8(']}'));
  const size = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The entries of one MANIFEST record: [{path, isDir, size, mtimeNs, executable}]. */
export function decodeManifest(body) {
  let obj;
  try {
    obj = parse(fromUtf8(body));
  } catch {
    throw new RemoteProtocolError('a manifest record is not valid JSON');
  }
  const items = obj !== null && typeof obj === 'object' && !Array.isArray(obj) ? obj.entries : undefined;
  if (!Array.isArray(items) || items.length === 0) throw new RemoteProtocolError('a manifest record has no entries');
  return items.map(decodeEntry);
}

function decodeEntry(item) {
  if (item === null || typeof item !== 'object' || Array.isArray(item) || item instanceof JsonFloat) {
    throw new RemoteProtocolError('a manifest entry is not a JSON object');
  }
  const path = item.path;
  if (typeof path !== 'string' || pointLength(path) > MAX_PATH) {
    throw new RemoteProtocolError('a manifest entry has a missing or over-long path');
  }
  const isDir = has(item, 'dir') ? item.dir : false;
  const executable = has(item, 'exec') ? item.exec : false;
  if (typeof isDir !== 'boolean' || typeof executable !== 'boolean') {
    throw new RemoteProtocolError('a manifest entry has a malformed flag');
  }
  const size = entryNumber(item, 'size', MAX_SIZE);
  if (isDir && size) throw new RemoteProtocolError('a manifest directory has a size');
  return { path, isDir, size, mtimeNs: entryNumber(item, 'mtime', MAX_MTIME), executable };
}

function entryNumber(item, key, most) {
  const value = has(item, key) ? item[key] : 0n;
  if (typeof value !== 'bigint' || value < 0n || value > most) {
    throw new RemoteProtocolError(`a manifest entry has a malformed '${key}'`);
  }
  return value;
}
