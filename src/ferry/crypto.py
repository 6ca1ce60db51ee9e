"""Key agreement and sealed records, thin over vetted libraries.

Theory of operation.

1. PAKE: SPAKE2 (the `spake2` package, Ed25519 group) with the whole code
   text as password; the sender plays side A, the receiver side B. An
   attacker who does not know the code, the relay included, gets exactly
   one guess per run of the protocol.
2. Keys: HKDF-SHA256 over the SPAKE2 key, salted with a hash of both PAKE
   messages, expands four independent 32-byte keys: one confirmation key
   and one record key per direction. Separate record keys per direction
   mean a counter nonce can never repeat under one key.
3. Key confirmation: each side sends HMAC-SHA256(its confirmation key,
   label). A side that verifies its peer's MAC knows both hold the same key,
   so it is the same code; a mismatch is "wrong code" and no file byte has
   moved yet.
4. Resume proofs: a fifth key, the same on both sides, keys the HMAC with
   which a sender proves it has the bytes a receiver kept (resume_proof()).
5. Records: AES-256-GCM (hardware AES is ~2x ChaCha20-Poly1305 on the
   machines we measured; see docs/PROTOCOL.md). Nonce = 4 zero bytes + a
   64-bit record counter per direction, never sent, so a replayed, dropped
   or reordered record fails to open. The six header bytes are the
   associated data, which authenticates type, length and the final flag.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B

from ferry.errors import IntegrityError, LocalProtocolError, RemoteProtocolError
from ferry.protocol.records import TAG_SIZE

KEY_SIZE: Final = 32
_NONCE: Final = struct.Struct("!4xQ")
_ID_SENDER: Final = b"ferry/1 sender"
_ID_RECEIVER: Final = b"ferry/1 receiver"


class Role(Enum):
    SENDER = "sender"
    RECEIVER = "receiver"

    @property
    def peer(self) -> Role:
        return Role.RECEIVER if self is Role.SENDER else Role.SENDER


@dataclass(frozen=True, repr=False)
class SessionKeys:
    """The keys one side holds after the PAKE. repr never shows them."""

    role: Role
    confirm_mine: bytes
    confirm_peer: bytes
    seal_key: bytes
    open_key: bytes
    proof_key: bytes = b""
    """Both sides': the key of resume proofs (resume_proof())."""

    def __repr__(self) -> str:
        return f"SessionKeys(role={self.role.value}, <hidden>)"


class Pake:
    """One SPAKE2 exchange: start() gives our message, finish() the keys."""

    def __init__(
        self, role: Role, password: bytes, entropy: Callable[[int], bytes] = os.urandom
    ) -> None:
        """entropy(n) gives n random bytes; only the shared test vectors pass another."""
        self._role = role
        cls = SPAKE2_A if role is Role.SENDER else SPAKE2_B
        self._spake = cls(password, idA=_ID_SENDER, idB=_ID_RECEIVER, entropy_f=entropy)
        self._message: bytes | None = None

    def start(self) -> bytes:
        self._message = bytes(self._spake.start())
        return self._message

    def finish(self, peer_message: bytes) -> SessionKeys:
        if self._message is None:
            raise LocalProtocolError("start() must come before finish()")
        try:
            shared = self._spake.finish(peer_message)
        except Exception as exc:
            # The library raises several unrelated types (SPAKEError, ValueError,
            # NotOnCurve, ...); all mean the peer's message is bad.
            reason = type(exc).__name__
            raise RemoteProtocolError(f"malformed key exchange message ({reason})") from None
        if self._role is Role.SENDER:
            transcript = self._message + peer_message
        else:
            transcript = peer_message + self._message
        return derive_keys(self._role, shared, transcript)


def _expand(secret: bytes, salt: bytes, label: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=label.encode())
    return hkdf.derive(secret)


def derive_keys(role: Role, shared: bytes, transcript: bytes) -> SessionKeys:
    salt = hashlib.sha256(transcript).digest()
    keys = {
        (kind, side): _expand(shared, salt, f"ferry/1 {kind} {side.value}")
        for kind in ("confirm", "record")
        for side in Role
    }
    return SessionKeys(
        role=role,
        confirm_mine=keys["confirm", role],
        confirm_peer=keys["confirm", role.peer],
        seal_key=keys["record", role],
        open_key=keys["record", role.peer],
        proof_key=_expand(shared, salt, "ferry/1 resume proof"),
    )


_PROOF_CONTEXT: Final = struct.Struct("!qQ")


def resume_proof(keys: SessionKeys, index: int, kept: int) -> hmac.HMAC:
    """The MAC a sender proves with that it has the first `kept` bytes of file `index`
    (-1: a single file or a stream) that the receiver kept: feed it those bytes.

    Keyed by this session, so it says nothing outside it, and bound to the
    file and the length; the receiver reveals nothing of its bytes, only
    whether the sender's MAC matches its own (docs/PROTOCOL.md, "Resume").
    """
    context = b"ferry/1 resume proof" + _PROOF_CONTEXT.pack(index, kept)
    return hmac.new(keys.proof_key, context, hashlib.sha256)


def _confirmation(key: bytes) -> bytes:
    return hmac.new(key, b"ferry/1 key confirmation", hashlib.sha256).digest()


def confirmation(keys: SessionKeys) -> bytes:
    """The CONFIRM body we send."""
    return _confirmation(keys.confirm_mine)


def peer_confirmed(keys: SessionKeys, body: bytes) -> bool:
    """True when the peer's CONFIRM proves it derived the same key."""
    return hmac.compare_digest(_confirmation(keys.confirm_peer), body)


class _Sequence:
    """An AEAD key and the record counter that makes each nonce unique."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._counter = 0

    def _next_nonce(self) -> bytes:
        nonce = _NONCE.pack(self._counter)
        self._counter += 1
        return nonce


class Sealer(_Sequence):
    """Seals our records in order; the counter is the nonce."""

    def seal(self, header: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(self._next_nonce(), plaintext, header)

    def seal_into(self, header: bytes, plaintext: memoryview, out: memoryview) -> None:
        """Seal into out, which must be exactly len(plaintext) + TAG_SIZE bytes."""
        self._aead.encrypt_into(self._next_nonce(), plaintext, header, out)


class Opener(_Sequence):
    """Opens the peer's records in order; any failure is an IntegrityError."""

    def open(self, header: bytes, sealed: bytes | memoryview) -> bytes:
        try:
            return self._aead.decrypt(self._next_nonce(), sealed, header)
        except InvalidTag:
            raise IntegrityError() from None

    def open_into(self, header: bytes, sealed: bytes | memoryview, out: memoryview) -> int:
        """Open into out (at least len(sealed) - TAG_SIZE bytes); returns the plaintext size."""
        size = len(sealed) - TAG_SIZE
        try:
            self._aead.decrypt_into(self._next_nonce(), sealed, header, out[:size])
        except InvalidTag:
            raise IntegrityError() from None
        return size
