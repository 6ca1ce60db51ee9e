// One side of a live ferry key exchange, driven over stdin/stdout by
// tests/unit/test_web_core.py, whose other side is the Python implementation
// (ferry.crypto). Unlike the vectors, both sides draw fresh randomness.
//
// Lines in (stdin) and out (stdout), hex unless said otherwise:
//   in  {"role": "sender"|"receiver", "code": "..."}   (JSON)
//   out our PAKE body
//   in  the peer's PAKE body
//   out our CONFIRM body, a space, our first sealed record, framed
//       (sender: an OFFER of {"kind":"text","size":5}; receiver: ANSWER accept)
//   in  the peer's CONFIRM body, a space, its first sealed record, framed
//   out {"confirmed": bool, "record": <decoded message or null>}   (JSON)
import { createInterface } from 'node:readline';

import { fromHex, toHex } from '../src/core/bytes.js';
import { dumps } from '../src/core/json.js';
import { Pake, SENDER, confirmation, peerConfirmed } from '../src/core/keys.js';
import { decodeAnswer, decodeOffer, encodeAnswer, offerBody } from '../src/core/messages.js';
import { Opener, RecordDecoder, RecordType, Sealer } from '../src/core/records.js';

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value;
const say = (text) => process.stdout.write(`${text}\n`);

const { role, code } = JSON.parse(await next());
const pake = new Pake(role, new TextEncoder().encode(code));
say(toHex(pake.start()));
const keys = pake.finish(fromHex(await next()));
const sealer = new Sealer(keys.sealKey);
const first =
  role === SENDER
    ? await sealer.sealRecord(RecordType.OFFER, offerBody({ kind: 'text', size: 5n }))
    : await sealer.sealRecord(RecordType.ANSWER, encodeAnswer({ accept: true }));
say(`${toHex(confirmation(keys))} ${toHex(first)}`);
const [peerMac, peerRecord] = (await next()).split(' ');
const confirmed = peerConfirmed(keys, fromHex(peerMac));
let record = null;
if (confirmed) {
  const decoder = new RecordDecoder();
  decoder.receiveData(fromHex(peerRecord));
  const plain = await new Opener(keys.openKey).openRecord(decoder.nextRecord());
  record = role === SENDER ? decodeAnswer(plain) : decodeOffer(plain);
}
say(dumps({ confirmed, record }));
process.exit(0);
