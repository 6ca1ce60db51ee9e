"""Shared test vectors that pin the browser core (web/src/core) to the Python protocol.

Theory of operation. build() runs ferry's own Python modules (crypto,
protocol.records, protocol.rendezvous, protocol.messages, protocol.manifest,
codes) on fixed inputs: fixed SPAKE2 entropy, fixed payloads, fixed codes.
Everything is deterministic (SPAKE2 takes its randomness from `entropy`,
AES-GCM nonces are counters), so the output is the same on every run and
web/test/vectors.json, committed, is exactly render(build()). The JS tests
(`node --test web/test/`) reproduce every value; tests/unit/test_web_vectors.py
checks that the committed file is current, so a change to the Python side that
alters a byte on the wire shows up as a stale vector file, and a change to the
JS side as a failing JS test.

wordlist_module() is web/src/core/wordlist.js, generated from
src/ferry/wordlist.txt the same way. scripts/web_vectors.py writes both files.

Integers that may exceed 2^53 (sizes, mtimes) are written as decimal strings,
so a JavaScript JSON.parse of the vector file reads them exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final

from spake2 import SPAKE2_A, SPAKE2_B
from spake2.parameters.ed25519 import ParamsEd25519

from ferry import codes
from ferry.crypto import Opener, Pake, Role, Sealer, confirmation, derive_keys, peer_confirmed
from ferry.errors import FerryError, RemoteProtocolError
from ferry.protocol import manifest, messages, rendezvous
from ferry.protocol.records import (
    FLAG_FINAL,
    TAG_SIZE,
    Header,
    RecordDecoder,
    RecordType,
    encode_record,
    parse_header,
)

ROOT: Final = Path(__file__).resolve().parent.parent
VECTORS_PATH: Final = ROOT / "web" / "test" / "vectors.json"
WORDLIST_JS_PATH: Final = ROOT / "web" / "src" / "core" / "wordlist.js"
WORDLIST_PATH: Final = ROOT / "src" / "ferry" / "wordlist.txt"

ID_SENDER: Final = b"ferry/1 sender"
ID_RECEIVER: Final = b"ferry/1 receiver"
TICKET: Final = "5f0c" + "0123456789abcdef" + "0123456789ab"


def entropy_bytes(label: str) -> bytes:
    """64 fixed 'random' bytes (what SPAKE2 draws for its scalar), named by a label."""
    return hashlib.sha512(f"ferry web vector {label}".encode()).digest()


def _fixed(data: bytes) -> Any:
    """An entropy function that hands out exactly `data`, once."""

    def entropy(n: int) -> bytes:
        if n != len(data):
            raise AssertionError(f"SPAKE2 asked for {n} bytes, the vector has {len(data)}")
        return data

    return entropy


def _spake2_section() -> dict[str, Any]:
    group = ParamsEd25519.group
    passwords = [b"", b"7-guitar-orbit-velvet", b"123456-almond-amber-anchor-almond-amber-anchor"]
    return {
        "M": ParamsEd25519.M.to_bytes().hex(),
        "N": ParamsEd25519.N.to_bytes().hex(),
        "password_scalars": [
            {
                "password": pw.hex(),
                "scalar": group.scalar_to_bytes(group.password_to_scalar(pw)).hex(),
            }
            for pw in passwords
        ],
    }


def _exchange(name: str, sender_code: str, receiver_code: str) -> dict[str, Any]:
    entropy_s, entropy_r = entropy_bytes(f"{name} sender"), entropy_bytes(f"{name} receiver")
    spake_a = SPAKE2_A(
        sender_code.encode(), idA=ID_SENDER, idB=ID_RECEIVER, entropy_f=_fixed(entropy_s)
    )
    spake_b = SPAKE2_B(
        receiver_code.encode(), idA=ID_SENDER, idB=ID_RECEIVER, entropy_f=_fixed(entropy_r)
    )
    msg_a, msg_b = spake_a.start(), spake_b.start()
    shared_a, shared_b = spake_a.finish(msg_b), spake_b.finish(msg_a)
    # ferry's own Pake, with the same entropy, must say the same.
    sender = Pake(Role.SENDER, sender_code.encode(), _fixed(entropy_s))
    receiver = Pake(Role.RECEIVER, receiver_code.encode(), _fixed(entropy_r))
    if (sender.start(), receiver.start()) != (msg_a, msg_b):
        raise AssertionError("ferry.crypto.Pake and spake2 disagree on the messages")
    keys_s, keys_r = sender.finish(msg_b), receiver.finish(msg_a)
    if keys_s != derive_keys(Role.SENDER, shared_a, msg_a + msg_b):
        raise AssertionError("ferry.crypto.Pake does not derive its keys from the spake2 key")

    def keys(k: Any) -> dict[str, str]:
        return {
            "confirm_mine": k.confirm_mine.hex(),
            "confirm_peer": k.confirm_peer.hex(),
            "seal": k.seal_key.hex(),
            "open": k.open_key.hex(),
        }

    return {
        "name": name,
        "sender_code": sender_code,
        "receiver_code": receiver_code,
        "entropy_sender": entropy_s.hex(),
        "entropy_receiver": entropy_r.hex(),
        "msg_sender": msg_a.hex(),
        "msg_receiver": msg_b.hex(),
        "shared_sender": shared_a.hex(),
        "shared_receiver": shared_b.hex(),
        "salt": hashlib.sha256(msg_a + msg_b).hexdigest(),
        "sender_keys": keys(keys_s),
        "receiver_keys": keys(keys_r),
        "confirm_sender": confirmation(keys_s).hex(),
        "confirm_receiver": confirmation(keys_r).hex(),
        "sender_accepts": peer_confirmed(keys_s, confirmation(keys_r)),
        "receiver_accepts": peer_confirmed(keys_r, confirmation(keys_s)),
    }


def _offer_cases() -> list[dict[str, Any]]:
    offers = [
        messages.Offer(messages.KIND_FILE, "a.mp4", 1234),
        messages.Offer(messages.KIND_FILE, 'résumé "final"\n\u2028 ünï 🚢.pdf', (1 << 63) - 1),
        messages.Offer(messages.KIND_FILE, "big.iso", 5 * (1 << 40) + 7, resume=True),
        messages.Offer(messages.KIND_TEXT, "", 11),
        messages.Offer(messages.KIND_STREAM, "stdin", messages.UNKNOWN_SIZE),
        messages.Offer(
            messages.KIND_TREE, "", 9_000_000_123, manifest=1, entries=3, files=2, records=1
        ),
        messages.Offer(messages.KIND_FILE, "n" * 300, 0),
    ]
    cases = []
    for offer in offers:
        body = messages.encode_offer(offer)
        decoded = messages.decode_offer(messages.padded(body))
        if decoded != offer:
            raise AssertionError(f"offer does not round-trip: {offer}")
        cases.append(
            {
                "offer": {
                    "kind": offer.kind,
                    "name": offer.name,
                    "size": str(offer.size),
                    "manifest": str(offer.manifest),
                    "entries": str(offer.entries),
                    "files": str(offer.files),
                    "records": str(offer.records),
                    "resume": offer.resume,
                },
                "json": body.hex(),
                "padded": messages.padded(body).hex(),
            }
        )
    return cases


def _bad_offers() -> list[dict[str, str]]:
    bodies = [
        b"not json",
        b"[1, 2]",
        b'{"name": "a", "size": 1}',
        b'{"kind": "file", "size": 1}',
        b'{"kind": "file", "name": "a", "size": -1}',
        b'{"kind": "file", "name": "a", "size": 1.0}',
        b'{"kind": "file", "name": "a", "size": 1e3}',
        b'{"kind": "file", "name": "a", "size": true}',
        b'{"kind": "file", "name": "a", "size": 9223372036854775808}',
        b'{"kind": "file", "name": "a"}',
        b'{"kind": "tree", "manifest": 1, "entries": 2, "files": 3, "records": 1, "size": 0}',
        b'{"kind": "file", "name": "\xff", "size": 1}',
    ]
    out = []
    for body in bodies:
        try:
            messages.decode_offer(body)
        except RemoteProtocolError as exc:
            out.append({"body": body.hex(), "error": exc.message})
        else:
            raise AssertionError(f"python accepts {body!r}")
    return out


def _messages_section() -> dict[str, Any]:
    answers = [
        messages.Answer(True),
        messages.Answer(False, messages.REASON_EXISTS, 'a.mp4 exists in "Downloads"'),
        messages.Answer(False, messages.REASON_DECLINED, "non merci, ça suffit 🙂"),
    ]
    return {
        "reasons": sorted(
            value for name, value in vars(messages).items() if name.startswith("REASON_")
        ),
        "offers": _offer_cases(),
        "bad_offers": _bad_offers(),
        "unknown_kind": {
            "body": b'{"kind":"hologram","size":1}'.hex(),
            "kind": messages.decode_offer(b'{"kind":"hologram","size":1}').kind,
        },
        "answers": [
            {
                "accept": a.accept,
                "reason": a.reason,
                "message": a.message,
                "body": messages.encode_answer(a).hex(),
            }
            for a in answers
        ],
        "acks": [
            {"size": str(size), "body": messages.encode_ack(messages.Ack(size)).hex()}
            for size in (0, 1234, (1 << 63) - 1)
        ],
        "aborts": [
            {"reason": r, "message": m, "body": messages.encode_abort(messages.Abort(r, m)).hex()}
            for r, m in (("cancelled", "the sender cancelled"), ("local-error", "é" * 600))
        ],
    }


def _manifest_entries() -> list[manifest.Entry]:
    return [
        manifest.Entry("photos", True, 0, 1_700_000_000_123_456_789),
        manifest.Entry("photos/a.jpg", False, 1234, 1_700_000_001_000_000_001, False),
        manifest.Entry(
            "photos/run.sh", False, 9_000_000_000_000_000, 1_700_000_002_999_999_999, True
        ),
        manifest.Entry("photos/ünï 🚢", True, 0, 0),
        manifest.Entry('photos/ünï 🚢/"q\\".txt', False, 0, (1 << 63) - 1),
    ]


def _entry_json(e: manifest.Entry) -> dict[str, Any]:
    return {
        "path": e.path,
        "dir": e.is_dir,
        "size": str(e.size),
        "mtime": str(e.mtime_ns),
        "exec": e.executable,
    }


def _manifest_section() -> dict[str, Any]:
    small = _manifest_entries()
    bodies = manifest.encode_records(small)
    # Enough entries to need several records: only their hashes go in the file.
    many = [
        manifest.Entry(
            f"tree/file-{i:05d}-" + "x" * 40, False, i * 1000, 1_700_000_000_000_000_000 + i
        )
        for i in range(3000)
    ]
    many_bodies = manifest.encode_records([manifest.Entry("tree", True, 0, 0), *many])
    for body in [*bodies, *many_bodies]:
        manifest.decode_record(body)
    return {
        "entries": [_entry_json(e) for e in small],
        "bodies": [b.hex() for b in bodies],
        "split": {
            "rule": "tree (dir, mtime 0), then tree/file-{i:05d}-xxxx(40 x) size i*1000 "
            "mtime 1700000000000000000+i for i in 0..2999",
            "count": len(many),
            "lengths": [len(b) for b in many_bodies],
            "sha256": [hashlib.sha256(b).hexdigest() for b in many_bodies],
        },
    }


def _records_section(exchange: dict[str, Any]) -> dict[str, Any]:
    """Sealed records in both directions under exchange's keys, and a framed stream."""
    seal_s = Sealer(bytes.fromhex(exchange["sender_keys"]["seal"]))
    seal_r = Sealer(bytes.fromhex(exchange["receiver_keys"]["seal"]))
    offer = messages.padded(
        messages.encode_offer(messages.Offer(messages.KIND_FILE, "a.bin", 70000))
    )
    data = bytes(range(256)) * 256 + b"tail" * 1116
    if len(data) != 70000:
        raise AssertionError("the data rule below says 70000 bytes")
    plan: list[tuple[str, RecordType, int, bytes]] = [
        ("sender", RecordType.OFFER, 0, offer),
        ("receiver", RecordType.ANSWER, 0, messages.encode_answer(messages.Answer(True))),
        ("sender", RecordType.DATA, 0, data[:65536]),
        ("sender", RecordType.DATA, 0, data[65536:65537]),
        ("sender", RecordType.DATA, FLAG_FINAL, data[65537:]),
        ("sender", RecordType.DATA, FLAG_FINAL, b""),
        ("receiver", RecordType.ACK, 0, messages.encode_ack(messages.Ack(70000))),
        (
            "receiver",
            RecordType.ABORT,
            0,
            messages.encode_abort(messages.Abort("cancelled", "bye")),
        ),
    ]
    counters = {"sender": 0, "receiver": 0}
    sealed = []
    bodies = []
    for direction, rtype, flags, plaintext in plan:
        sealer = seal_s if direction == "sender" else seal_r
        header = Header(len(plaintext) + TAG_SIZE, rtype, flags).encode()
        body = sealer.seal(header, plaintext)
        bodies.append((direction, header, body, plaintext))
        sealed.append(
            {
                "direction": direction,
                "counter": counters[direction],
                "type": int(rtype),
                "flags": flags,
                "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(),
                "plaintext_length": len(plaintext),
                "plaintext": plaintext.hex() if len(plaintext) <= 512 else None,
                "header": header.hex(),
                "sealed": body.hex() if len(body) <= 1024 else None,
                "sealed_sha256": hashlib.sha256(body).hexdigest(),
            }
        )
        counters[direction] += 1
    # Check what we wrote opens with the peer's keys, in order.
    open_r = Opener(bytes.fromhex(exchange["receiver_keys"]["open"]))
    open_s = Opener(bytes.fromhex(exchange["sender_keys"]["open"]))
    for direction, header, body, plaintext in bodies:
        opener = open_r if direction == "sender" else open_s
        if opener.open(header, body) != plaintext:
            raise AssertionError("a sealed vector does not open")
    # A framed stream as the receiver reads it: PAKE, CONFIRM, then sealed records.
    stream = (
        encode_record(RecordType.PAKE, bytes.fromhex(exchange["msg_sender"]))
        + encode_record(RecordType.CONFIRM, bytes.fromhex(exchange["confirm_sender"]))
        + bodies[0][1]
        + bodies[0][2]
        + encode_record(RecordType.PAKE, b"")
    )
    decoder = RecordDecoder()
    decoder.receive_data(stream)
    parsed = []
    while (record := decoder.next_record()) is not None:
        parsed.append(
            {
                "type": int(record.header.type),
                "flags": record.header.flags,
                "body": bytes(record.body).hex(),
            }
        )
    return {
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "data_rule": "bytes 0..255 repeated 256 times, then b'tail' 1116 times (70000 bytes)",
        "sealed": sealed,
        "stream": stream.hex(),
        "stream_records": parsed,
        "bad_headers": _bad_headers(),
    }


def _bad_headers() -> list[dict[str, str]]:
    headers = [
        Header(10, RecordType.PAKE, 0).encode()[:4] + bytes([3, 0]),
        bytes.fromhex("00000020") + bytes([RecordType.DATA, 0x04]),
        bytes.fromhex("00000020") + bytes([RecordType.OFFER, FLAG_FINAL]),
        (1025).to_bytes(4, "big") + bytes([RecordType.PAKE, 0]),
        (1025).to_bytes(4, "big") + bytes([RecordType.CONFIRM, 0]),
        (64 * 1024 + 17).to_bytes(4, "big") + bytes([RecordType.OFFER, 0]),
        ((1 << 20) + 17).to_bytes(4, "big") + bytes([RecordType.DATA, 0]),
        (0xFFFFFFFF).to_bytes(4, "big") + bytes([RecordType.DATA, 1]),
        (15).to_bytes(4, "big") + bytes([RecordType.ACK, 0]),
        (0).to_bytes(4, "big") + bytes([RecordType.DATA, 1]),
    ]
    out = []
    for header in headers:
        try:
            parse_header(header)
        except RemoteProtocolError as exc:
            out.append({"header": header.hex(), "error": exc.message})
        else:
            raise AssertionError(f"python accepts header {header.hex()}")
    return out


def _rendezvous_section() -> dict[str, Any]:
    client: dict[str, rendezvous.ClientMessage] = {
        "send": rendezvous.SendRequest(),
        "send_standby": rendezvous.SendRequest(standby=True),
        "recv": rendezvous.ReceiveRequest(7),
        "recv_large": rendezvous.ReceiveRequest(999_999_999),
        "join": rendezvous.JoinRequest(7, TICKET),
        "pong": rendezvous.Pong(),
    }
    lines = [
        b"NAMEPLATE 7\n",
        b"NAMEPLATE 123456789\n",
        b"INCOMING " + TICKET.encode() + b"\n",
        b"TICKET " + TICKET.encode() + b"\r\n",
        b"PAIRED\n",
        b"PING\n",
        b"ERROR unknown-nameplate no sender is waiting on nameplate 7\n",
        b"ERROR busy\n",
        rendezvous.encode(rendezvous.Refused("rate-limited", "try again in 30 s")),
        b"NAMEPLATE 07\n",
        b"NAMEPLATE 7",
        b"INCOMING " + TICKET.upper().encode() + b"\n",
        b"PAIRED \n",
        b"ERROR Busy text\n",
        b"ERROR busy t\xe9xt\n",
        b"ERROR busy t\x01xt\n",
        b"HTTP/1.1 400 Bad Request\r\n",
    ]
    relay: list[dict[str, Any]] = []
    for line in lines:
        try:
            message = rendezvous.parse_relay_line(line)
        except RemoteProtocolError as exc:
            relay.append({"line": line.hex(), "error": exc.message})
            continue
        relay.append({"line": line.hex(), "parsed": _relay_json(message)})
    return {
        "max_line": rendezvous.MAX_LINE,
        "client": {name: rendezvous.encode(msg).decode("ascii") for name, msg in client.items()},
        "ticket": TICKET,
        "relay": relay,
    }


def _relay_json(message: rendezvous.RelayMessage) -> dict[str, Any]:
    match message:
        case rendezvous.NameplateAssigned(nameplate):
            return {"kind": "nameplate", "nameplate": nameplate}
        case rendezvous.Incoming(ticket):
            return {"kind": "incoming", "ticket": ticket}
        case rendezvous.StandbyTicket(ticket):
            return {"kind": "ticket", "ticket": ticket}
        case rendezvous.Paired():
            return {"kind": "paired"}
        case rendezvous.Ping():
            return {"kind": "ping"}
        case rendezvous.Refused(reason, text):
            return {"kind": "error", "reason": reason, "text": text}
    raise AssertionError(message)


def _codes_section() -> dict[str, Any]:
    inputs = [
        "7-guitar-orbit-velvet",
        "  7 Guitar  ORBIT--velvet-\n",
        "0007-guitar-orbit-velvet",
        "999999-almond-amber-anchor-almond-amber-anchor-almond-amber",
        "",
        "   ",
        "7-guitar-orbit-velvét",
        "7-guitar-orbit\x01velvet",
        "seven-guitar-orbit-velvet",
        "-7-guitar-orbit-velvet",
        "0-guitar-orbit-velvet",
        "1000000-guitar-orbit-velvet",
        "99999999999999999999-guitar-orbit-velvet",
        "7-guitar-orbit",
        "7-almond-amber-anchor-almond-amber-anchor-almond-amber-anchor",
        "7-guitar-orbit-velvetx",
        "7-guitar-orbit-abcdefghijklmnopq",
        "\x1f7-guitar-orbit-velvet\x0b",
    ]
    out: list[dict[str, Any]] = []
    for text in inputs:
        try:
            code = codes.parse_code(text)
        except FerryError as exc:
            out.append({"input": text, "error": exc.message})
        else:
            out.append({"input": text, "text": code.text, "nameplate": code.nameplate})
    words = WORDLIST_PATH.read_bytes()
    return {
        "parse": out,
        "wordlist_sha256": hashlib.sha256(words).hexdigest(),
        "word_count": len(codes.words()),
    }


def build() -> dict[str, Any]:
    exchanges = [
        _exchange("same code", "7-guitar-orbit-velvet", "7-guitar-orbit-velvet"),
        _exchange(
            "long code",
            "123456-almond-amber-anchor-almond-amber",
            "123456-almond-amber-anchor-almond-amber",
        ),
        _exchange("wrong code", "7-guitar-orbit-velvet", "7-guitar-orbit-amber"),
    ]
    return {
        "about": "Generated by scripts/web_vectors.py from ferry's Python modules; do not edit. "
        "Pins web/src/core to the Python protocol (docs/PROTOCOL.md).",
        "spake2": _spake2_section(),
        "exchanges": exchanges,
        "records": _records_section(exchanges[0]),
        "rendezvous": _rendezvous_section(),
        "messages": _messages_section(),
        "manifest": _manifest_section(),
        "codes": _codes_section(),
    }


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=1, ensure_ascii=True) + "\n"


def wordlist_module() -> str:
    words = codes.words()
    lines = [
        "// Generated by scripts/web_vectors.py from src/ferry/wordlist.txt; do not edit.",
        "// tests/unit/test_web_vectors.py checks it is current, web/test/codes.test.js that it",
        "// agrees with the text file.",
        "export const WORDS = Object.freeze([",
    ]
    row: list[str] = []
    for word in words:
        row.append(f"'{word}',")
        if len(row) == 8:
            lines.append("  " + " ".join(row))
            row = []
    if row:
        lines.append("  " + " ".join(row))
    lines.append("]);")
    return "\n".join(lines) + "\n"
