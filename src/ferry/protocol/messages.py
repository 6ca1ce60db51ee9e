"""The JSON bodies of the sealed control records: OFFER, ANSWER, ACK, ABORT.

Theory of operation. Control records are small JSON objects so that later
versions can add fields without breaking this one: decoders ignore keys
they do not know and reject only what they cannot safely use. The
conversation after key confirmation is:

    sender                                   receiver
    OFFER  {"kind": "file", "name", "size"}  --->
           <---  ANSWER {"accept": true, "compress": ["zstd"]}
                 or {"accept": false, "reason", "message"}
    DATA ... DATA(final)                     --->
           <---  ACK {"ok": true, "size"}
    either side, any time: ABORT {"reason", "message"}, then close

Kinds of OFFER (docs/PROTOCOL.md, part 4):

    {"kind": "file", "name", "size"}          one regular file (every version)
    {"kind": "tree", "manifest": 1, "entries", "files", "records", "size"}
        files and directories; `records` MANIFEST records follow the OFFER
        (protocol/manifest.py), the DATA is every file's bytes in manifest order
    {"kind": "stream", "name"}                bytes of unknown size (stdin)
    {"kind": "text", "size"}                  a message to print, not to store

Resume (an OFFER with "resume": 2; version 1 sent the kept bytes' SHA-256
to the sender, and is no longer answered):
- a file or a stream: ANSWER {"accept": true, "resume_from": K}; a tree:
  ANSWER {"accept": true, "resume_records": N}, then N RESUME records
  {"have": [[index, kept], ...]} (how much the receiver kept of which file);
- the sender proves it has those bytes: one PROOF record {"macs": [hex,
  ...]} per RESUME record (one for a file), each MAC keyed by this session
  (crypto.resume_proof); the receiver answers with as many VERDICT records
  {"match": "1001..."} (one character per file: "1" resumes);
- before a file's DATA the sender says START {"from": kept if it matched,
  else 0} (a tree's: {"index", "from"}), and after a file it resumed (from
  > 0), DIGEST {"sha256"} ({"index", "sha256"}).

Versioning: a receiver answers a kind it does not know, or a manifest
version it does not speak, with accept=false, reason="unsupported", before
any data moves; the sender reports that one line. A receiver offers to
resume only to a sender that said it can.

The OFFER is padded with trailing spaces (JSON white space, so any JSON
decoder, ours from before padding included, reads it unchanged) to a
multiple of OFFER_PADDING bytes: its sealed length would otherwise tell the
relay the exact length of the file name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from ferry.errors import RemoteProtocolError

MAX_SIZE: Final = (1 << 63) - 1
MAX_OFFERED_NAME: Final = 4096
"""Longest name an OFFER may carry, in characters (before sanitising)."""
MAX_TEXT: Final = 512
"""Longest reason/message text we keep from the peer, in characters."""

OFFER_PADDING: Final = 256
"""An OFFER body's length is a multiple of this, in bytes (trailing spaces)."""

KIND_FILE: Final = "file"
KIND_TREE: Final = "tree"
KIND_STREAM: Final = "stream"
KIND_TEXT: Final = "text"
MANIFEST_VERSION: Final = 1
"""The manifest format this version writes and reads (protocol/manifest.py)."""
RESUME_VERSION: Final = 2
"""The OFFER's "resume" value this version sends and answers (1: a receiver revealed its
kept bytes' SHA-256, which is never answered now)."""
UNKNOWN_SIZE: Final = -1
"""Offer.size of a stream: the sender does not know it until the end."""

# ANSWER/ABORT reasons.
REASON_EXISTS: Final = "exists"
REASON_UNSUPPORTED: Final = "unsupported"
REASON_BAD_NAME: Final = "bad-name"
REASON_LOCAL_ERROR: Final = "local-error"
REASON_NO_SPACE: Final = "no-space"
"""ABORT: the receiver's disk filled up while it stored the data."""
REASON_TOO_LARGE: Final = "too-large"
REASON_DECLINED: Final = "declined"
REASON_CHANGED: Final = "changed"
"""ABORT from the sender: a file changed while it was read; nothing may be stored."""


@dataclass(frozen=True)
class Offer:
    kind: str
    name: str
    size: int
    """Bytes of DATA to come (UNKNOWN_SIZE for a stream)."""
    manifest: int = 0
    """tree: the manifest version."""
    entries: int = 0
    """tree: files and directories in the manifest."""
    files: int = 0
    """tree: how many of the entries are files."""
    records: int = 0
    """tree: MANIFEST records that follow the OFFER."""
    resume: bool = False
    """file, stream, tree: the sender can resume (it understands the ANSWER's resume
    fields and sends START)."""


@dataclass(frozen=True)
class Answer:
    accept: bool
    reason: str = ""
    message: str = ""
    resume_from: int = 0
    """file, stream: bytes kept, which the sender must prove it has (PROOF)."""
    resume_records: int = 0
    """tree: RESUME records that follow the ANSWER (what the receiver kept)."""
    compress: tuple[str, ...] = ()
    """An acceptance: the codecs the receiver can inflate DATA records with
    (protocol/compression.py); empty, every record comes raw."""


@dataclass(frozen=True)
class Ack:
    size: int


@dataclass(frozen=True)
class Abort:
    reason: str
    message: str


def _dump(obj: dict[str, Any]) -> bytes:
    # A lone surrogate (an undecodable byte in a POSIX file name) cannot be
    # UTF-8: it becomes "?" rather than an exception.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "replace")


def _load(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting: RecursionError
        raise RemoteProtocolError(f"{what} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"{what} is not a JSON object")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = obj.get(key)
    # bool is an int subclass; never accept it where a number is expected.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RemoteProtocolError(f"{what} has a missing or malformed {key!r}")
    return value


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key, "")
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def encode_offer(offer: Offer) -> bytes:
    obj: dict[str, Any] = {"kind": offer.kind}
    if offer.kind in (KIND_FILE, KIND_STREAM):
        obj["name"] = offer.name
    if offer.resume:
        obj["resume"] = RESUME_VERSION
    if offer.kind == KIND_TREE:
        obj.update(
            manifest=offer.manifest, entries=offer.entries, files=offer.files,
            records=offer.records,
        )  # fmt: skip
    if offer.kind != KIND_STREAM:
        obj["size"] = offer.size
    return _dump(obj)


def padded(body: bytes, multiple: int = OFFER_PADDING) -> bytes:
    """body with trailing spaces up to the next multiple of `multiple` bytes (at least 1)."""
    return body + b" " * (-len(body) % multiple)


def decode_offer(body: bytes) -> Offer:
    obj = _load(body, "offer")
    kind = _field(obj, "kind", str, "offer")
    if kind not in (KIND_FILE, KIND_TREE, KIND_STREAM, KIND_TEXT):
        return Offer(kind=kind[:64], name="", size=0)
    name = ""
    if kind in (KIND_FILE, KIND_STREAM):
        name = _field(obj, "name", str, "offer")
        if len(name) > MAX_OFFERED_NAME:
            raise RemoteProtocolError("offer has an over-long name")
    if kind == KIND_TREE:
        return _decode_tree(obj)
    size = UNKNOWN_SIZE if kind == KIND_STREAM else _count(obj, "size", MAX_SIZE)
    return Offer(kind, name, size, resume=kind != KIND_TEXT and _resumes(obj))


def _decode_tree(obj: dict[str, Any]) -> Offer:
    kind = KIND_TREE
    manifest = _count(obj, "manifest", MAX_SIZE)
    if manifest != MANIFEST_VERSION:
        # Nothing of an unknown manifest version is used but its record
        # count (to pass over them): the receiver refuses it as unsupported.
        records = obj.get("records")
        if not isinstance(records, int) or isinstance(records, bool):
            records = 0
        return Offer(kind, "", 0, manifest=manifest, records=min(max(records, 0), MAX_SIZE))
    entries = _count(obj, "entries", MAX_SIZE)
    files = _count(obj, "files", entries)
    records = _count(obj, "records", max(entries, 1))
    size = _count(obj, "size", MAX_SIZE)
    return Offer(kind, "", size, manifest, entries, files, records, _resumes(obj))


def _resumes(obj: dict[str, Any]) -> bool:
    value = obj.get("resume")
    return isinstance(value, int) and not isinstance(value, bool) and value == RESUME_VERSION


def _count(obj: dict[str, Any], key: str, most: int) -> int:
    value = _field(obj, key, int, "offer")
    if not 0 <= value <= most:
        raise RemoteProtocolError(f"offer has an impossible {key!r}")
    return int(value)


def encode_answer(answer: Answer) -> bytes:
    obj: dict[str, Any] = {"accept": answer.accept}
    if not answer.accept:
        obj.update(reason=answer.reason, message=answer.message)
    if answer.resume_from:
        obj["resume_from"] = answer.resume_from
    if answer.resume_records:
        obj["resume_records"] = answer.resume_records
    if answer.compress:
        obj["compress"] = list(answer.compress)
    return _dump(obj)


def decode_answer(body: bytes) -> Answer:
    obj = _load(body, "answer")
    accept = _field(obj, "accept", bool, "answer")
    resume_from = obj.get("resume_from", 0)
    bad_type = not isinstance(resume_from, int) or isinstance(resume_from, bool)
    if bad_type or not 0 <= resume_from <= MAX_SIZE:
        raise RemoteProtocolError("answer has a malformed 'resume_from'")
    records = _optional_count(obj, "resume_records", "answer")
    if records and (resume_from or not accept):
        raise RemoteProtocolError("answer has both kinds of resume, or resumes a refusal")
    compress = _codecs(obj) if accept else ()
    return Answer(
        accept, _text(obj, "reason"), _text(obj, "message"), resume_from, records, compress
    )


MAX_CODECS: Final = 8
"""Codec names an ANSWER may list; each at most MAX_CODEC_NAME characters."""
MAX_CODEC_NAME: Final = 16


def _codecs(obj: dict[str, Any]) -> tuple[str, ...]:
    """The ANSWER's "compress" list (absent: none); names this version does not know
    stay in it, and the sender passes over them."""
    value = obj.get("compress", [])
    if not (
        isinstance(value, list)
        and len(value) <= MAX_CODECS
        and all(isinstance(name, str) and 0 < len(name) <= MAX_CODEC_NAME for name in value)
    ):
        raise RemoteProtocolError("answer has a malformed 'compress'")
    return tuple(value)


def _optional_count(obj: dict[str, Any], key: str, what: str) -> int:
    value = obj.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE:
        raise RemoteProtocolError(f"{what} has a malformed {key!r}")
    return value


def _is_sha256(text: object) -> bool:
    return (
        isinstance(text, str)
        and len(text) == 64
        and all(char in "0123456789abcdef" for char in text)
    )


@dataclass(frozen=True)
class Start:
    offset: int
    """The first byte the DATA carries: resume_from if the prefix matched, else 0."""
    index: int | None = None
    """tree: which entry of the manifest (None for a file or a stream)."""


@dataclass(frozen=True)
class Digest:
    sha256: str
    """The whole file's SHA-256, hex."""
    index: int | None = None
    """tree: which entry of the manifest (None for a file or a stream)."""


@dataclass(frozen=True)
class Kept:
    """What a receiver kept of one file of a tree: its first `size` bytes."""

    index: int
    size: int


def _with_index(obj: dict[str, Any], index: int | None) -> dict[str, Any]:
    if index is not None:
        obj["index"] = index
    return obj


def _index(obj: dict[str, Any], what: str) -> int | None:
    if "index" not in obj:
        return None
    value = _field(obj, "index", int, what)
    if not 0 <= value <= MAX_SIZE:
        raise RemoteProtocolError(f"{what} has an impossible index")
    return int(value)


def encode_start(start: Start) -> bytes:
    return _dump(_with_index({"from": start.offset}, start.index))


def decode_start(body: bytes) -> Start:
    obj = _load(body, "start")
    offset = _field(obj, "from", int, "start")
    if not 0 <= offset <= MAX_SIZE:
        raise RemoteProtocolError("start has an impossible offset")
    return Start(offset, _index(obj, "start"))


def encode_digest(digest: Digest) -> bytes:
    return _dump(_with_index({"sha256": digest.sha256}, digest.index))


def decode_digest(body: bytes) -> Digest:
    obj = _load(body, "digest")
    value = _field(obj, "sha256", str, "digest")
    if not _is_sha256(value):
        raise RemoteProtocolError("digest is not a SHA-256")
    return Digest(value, _index(obj, "digest"))


KEPT_PER_RECORD: Final = 512
"""Kept files listed in one RESUME record (about 44 KiB of JSON at most), and so proved
in one PROOF record and judged in one VERDICT record."""


def _batches(count: int) -> range:
    return range(0, count, KEPT_PER_RECORD)


def encode_resume(kept: list[Kept]) -> list[bytes]:
    """RESUME record bodies for a tree's kept files, KEPT_PER_RECORD at most in each."""
    return [
        _dump({"have": [[k.index, k.size] for k in kept[at : at + KEPT_PER_RECORD]]})
        for at in _batches(len(kept))
    ]


def decode_resume(body: bytes) -> list[Kept]:
    items = _load(body, "resume").get("have")
    if not isinstance(items, list) or not 0 < len(items) <= KEPT_PER_RECORD:
        raise RemoteProtocolError("a resume record lists nothing, or too much")
    kept = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and all(_is_count(n) for n in item)):
            raise RemoteProtocolError("a resume record has a malformed entry")
        kept.append(Kept(item[0], item[1]))
    return kept


def encode_proofs(macs: list[str]) -> list[bytes]:
    """PROOF record bodies: the sender's MAC (hex) of each kept file, in RESUME's batches."""
    return [_dump({"macs": macs[at : at + KEPT_PER_RECORD]}) for at in _batches(len(macs))]


def decode_proof(body: bytes) -> list[str]:
    macs = _load(body, "proof").get("macs")
    if not isinstance(macs, list) or not 0 < len(macs) <= KEPT_PER_RECORD:
        raise RemoteProtocolError("a proof record proves nothing, or too much")
    if not all(_is_sha256(mac) for mac in macs):
        raise RemoteProtocolError("a proof record has a malformed MAC")
    return list(macs)


def encode_verdicts(matched: list[bool]) -> list[bytes]:
    """VERDICT record bodies: "1" for each kept file that resumes, "0" for one that
    starts over, in RESUME's batches."""
    flags = "".join("1" if ok else "0" for ok in matched)
    return [_dump({"match": flags[at : at + KEPT_PER_RECORD]}) for at in _batches(len(flags))]


def decode_verdict(body: bytes) -> list[bool]:
    flags = _load(body, "verdict").get("match")
    if not isinstance(flags, str) or not 0 < len(flags) <= KEPT_PER_RECORD:
        raise RemoteProtocolError("a verdict record judges nothing, or too much")
    if flags.strip("01"):
        raise RemoteProtocolError("a verdict record is malformed")
    return [flag == "1" for flag in flags]


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SIZE


def encode_ack(ack: Ack) -> bytes:
    return _dump({"ok": True, "size": ack.size})


def decode_ack(body: bytes) -> Ack:
    obj = _load(body, "acknowledgement")
    if obj.get("ok") is not True:
        raise RemoteProtocolError("acknowledgement is not ok")
    size = _field(obj, "size", int, "acknowledgement")
    if not 0 <= size <= MAX_SIZE:
        raise RemoteProtocolError("acknowledgement has an impossible size")
    return Ack(size)


def encode_abort(abort: Abort) -> bytes:
    return _dump({"reason": abort.reason, "message": abort.message[:MAX_TEXT]})


def decode_abort(body: bytes) -> Abort:
    obj = _load(body, "abort")
    return Abort(_text(obj, "reason"), _text(obj, "message"))
