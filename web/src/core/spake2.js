// SPAKE2 over Ed25519, interoperable with the Python `spake2` package (0.9)
// that ferry's command line uses (SPAKE2_A / SPAKE2_B, default parameters).
//
// Theory of operation. Only the SPAKE2 construction is written here; every
// group operation (point decoding, addition, scalar multiplication, the
// subgroup check, the encoding) is @noble/curves' audited Ed25519 code, and
// HKDF/SHA-256 are @noble/hashes'. What has to match the Python package
// byte for byte:
//
//   password scalar  pw = int_be(HKDF-SHA256(ikm=password, salt="",
//                                  info="SPAKE2 pw", 48 bytes)) mod L
//   M, N             "arbitrary elements" of unknown discrete log, from the
//                    seeds "M" and "N": y = int_be(HKDF-SHA256(ikm=seed,
//                    salt="", info="SPAKE2 arbitrary element", 48 bytes))
//                    mod p; the first y, y+1, ... that decodes as a point
//                    with even x, times the cofactor 8 (not the identity)
//   random scalar    x = int_be(64 random bytes) mod L
//   message          side byte ("A" or "B") ‖ encode(x·G + pw·M)   (side A)
//                                           ‖ encode(y·G + pw·N)   (side B)
//   shared element   K = x·(Y* − pw·N) (side A), y·(X* − pw·M) (side B)
//   key              SHA-256(SHA-256(password) ‖ SHA-256(idA) ‖ SHA-256(idB)
//                            ‖ X* ‖ Y* ‖ encode(K))
//
// X* and Y* in the key are side A's and side B's 32-byte elements without
// the side byte. A peer's message must be the other side's byte and a
// 32-byte encoding of a point of the prime-order subgroup, not the
// identity and not our own element reflected back; anything else is a
// RemoteProtocolError (the Python package raises there too, a little more
// leniently: it ignores bytes past the 33rd, which ferry never sends).
//
// Randomness is injected (`randomBytes`), so the tests reproduce the Python
// side's messages from the same fixed entropy.

import { ed25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

import { bytesToBigBE, concat, utf8 } from './bytes.js';
import { LocalProtocolError, RemoteProtocolError } from './errors.js';

const Point = ed25519.Point;
/** Order of the prime subgroup. */
const L = Point.Fn.ORDER;
/** The field prime 2^255 - 19. */
const P = Point.Fp.ORDER;
const ELEMENT_SIZE = 32;
/** The Python package's HKDF outputs: the scalar or field size plus 16 bytes against bias. */
const OVERSIZED = ELEMENT_SIZE + 16;
const EMPTY = new Uint8Array(0);

export const SIDE_A = 0x41; // "A"
export const SIDE_B = 0x42; // "B"
export const MESSAGE_SIZE = 1 + ELEMENT_SIZE;

function expand(ikm, info) {
  return hkdf(sha256, ikm, EMPTY, utf8(info), OVERSIZED);
}

/** The password's scalar, as spake2.groups.password_to_scalar computes it. */
export function passwordToScalar(password) {
  return bytesToBigBE(expand(password, 'SPAKE2 pw')) % L;
}

/** A random scalar from 64 bytes of entropy, as spake2.ed25519_basic.random_scalar. */
export function randomScalar(randomBytes) {
  const entropy = randomBytes(64);
  if (!(entropy instanceof Uint8Array) || entropy.length !== 64) {
    throw new LocalProtocolError('randomBytes(64) must return 64 bytes');
  }
  return bytesToBigBE(entropy) % L;
}

function encodeY(y) {
  // Little-endian y with the sign bit clear: the root with even x, the one
  // the Python package's xrecover picks.
  const out = new Uint8Array(ELEMENT_SIZE);
  let rest = y;
  for (let i = 0; i < ELEMENT_SIZE; i += 1) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return out;
}

/** An element nobody knows the discrete log of, from a public seed (spake2's arbitrary_element). */
export function arbitraryElement(seed) {
  const start = bytesToBigBE(expand(seed, 'SPAKE2 arbitrary element')) % P;
  for (let plus = 0n; ; plus += 1n) {
    let point;
    try {
      point = Point.fromBytes(encodeY((start + plus) % P));
    } catch {
      continue; // no point has this y (about half of them): try the next
    }
    const inSubgroup = point.clearCofactor();
    if (!inSubgroup.is0()) return inSubgroup;
  }
}

/** s·point for a secret s already reduced mod L (0 gives the identity, as in Python). */
function times(point, scalar) {
  return scalar === 0n ? Point.ZERO : point.multiply(scalar);
}

let params = null;
/** M and N, derived once (each costs a few field square roots). */
function parameters() {
  params ??= { M: arbitraryElement(utf8('M')), N: arbitraryElement(utf8('N')) };
  return params;
}

function defaultRandomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

function decodePeerElement(bytes) {
  if (bytes.length !== ELEMENT_SIZE) {
    throw new RemoteProtocolError('malformed key exchange message (wrong length)');
  }
  let point;
  try {
    // ZIP-215 decoding accepts the encodings the Python package accepts.
    point = Point.fromBytes(bytes, true);
  } catch {
    throw new RemoteProtocolError('malformed key exchange message (not a curve point)');
  }
  if (point.is0() || !point.isTorsionFree()) {
    throw new RemoteProtocolError('malformed key exchange message (not in the group)');
  }
  return point;
}

/**
 * One side of a SPAKE2 exchange: start() gives our message (33 bytes),
 * finish(peerMessage) the 32-byte shared key. Each may be called once.
 */
export class Spake2 {
  /**
   * @param {number} side SIDE_A or SIDE_B
   * @param {Uint8Array} password
   * @param {{idA?: Uint8Array, idB?: Uint8Array, randomBytes?: (n: number) => Uint8Array}} options
   */
  constructor(side, password, { idA = EMPTY, idB = EMPTY, randomBytes = defaultRandomBytes } = {}) {
    if (side !== SIDE_A && side !== SIDE_B) throw new LocalProtocolError('side must be A or B');
    this._side = side;
    this._password = Uint8Array.from(password);
    this._idA = Uint8Array.from(idA);
    this._idB = Uint8Array.from(idB);
    this._randomBytes = randomBytes;
    this._pw = passwordToScalar(this._password);
    this._scalar = null;
    this._element = null; // our 32-byte element, without the side byte
    this._finished = false;
  }

  start() {
    if (this._scalar !== null) throw new LocalProtocolError('start() can only be called once');
    const { M, N } = parameters();
    const blinding = this._side === SIDE_A ? M : N;
    this._scalar = randomScalar(this._randomBytes);
    const element = times(Point.BASE, this._scalar).add(times(blinding, this._pw));
    this._element = element.toBytes();
    return concat(Uint8Array.of(this._side), this._element);
  }

  finish(peerMessage) {
    if (this._scalar === null) throw new LocalProtocolError('start() must come before finish()');
    if (this._finished) throw new LocalProtocolError('finish() can only be called once');
    this._finished = true;
    const peerSide = this._side === SIDE_A ? SIDE_B : SIDE_A;
    if (peerMessage.length < 1 || peerMessage[0] !== peerSide) {
      throw new RemoteProtocolError('malformed key exchange message (wrong side)');
    }
    const peerBytes = Uint8Array.from(peerMessage.subarray(1));
    const peer = decodePeerElement(peerBytes);
    if (peer.equals(Point.fromBytes(this._element))) {
      throw new RemoteProtocolError('malformed key exchange message (our own, reflected)');
    }
    const { M, N } = parameters();
    const unblinding = this._side === SIDE_A ? N : M;
    const negPw = (L - this._pw) % L;
    const shared = times(peer.add(times(unblinding, negPw)), this._scalar);
    const [xMsg, yMsg] = this._side === SIDE_A ? [this._element, peerBytes] : [peerBytes, this._element];
    return sha256(
      concat(
        sha256(this._password),
        sha256(this._idA),
        sha256(this._idB),
        xMsg,
        yMsg,
        shared.toBytes(),
      ),
    );
  }
}
