"""Key agreement over the paired channel: SPAKE2, then confirmation both ways.

    sender                                        receiver
    JOIN line + PAKE(msg_A)  --->        <---     RECV line + PAKE(msg_B)
          (the relay holds each PAKE record until it pairs the two, then
           delivers it right behind PAIRED)
    CONFIRM(mac_sender) + sealed OFFER   --->
                                         <---     CONFIRM(mac_receiver)
    (each verifies the other's MAC before it trusts anything sealed)

Each side's PAKE message leaves with its rendezvous line (the first
flight), so it is already waiting when the pipe opens, and the sender's
first sealed record travels with its confirmation: key agreement and the
offer cost one crossing of the relay each way instead of three. Sending
the OFFER before the receiver's MAC has been checked is safe: it is sealed
under a key only a holder of the code can derive, and the receiver opens
it only after checking the sender's MAC.
"""

from __future__ import annotations

from enum import Enum

from ferry.client.channel import Channel
from ferry.codes import Code
from ferry.crypto import Pake, Role, confirmation, peer_confirmed
from ferry.errors import WrongCode
from ferry.protocol.records import RecordType, encode_record


class Stage(Enum):
    """How far a handshake got; after KEYED the peer has had its one guess."""

    STARTED = "started"
    KEYED = "keyed"
    CONFIRMED = "confirmed"


class Handshake:
    def __init__(self, role: Role, code: Code) -> None:
        self.role = role
        self._pake = Pake(role, code.password)
        self._first_flight = encode_record(RecordType.PAKE, self._pake.start())
        self.stage = Stage.STARTED

    def first_flight(self) -> bytes:
        """Our PAKE record: sent behind the rendezvous line, before PAIRED."""
        return self._first_flight

    async def run(
        self, channel: Channel, pipelined: tuple[RecordType, bytes] | None = None
    ) -> None:
        """Authenticate the peer; raises WrongCode if it used another code.

        `pipelined` is a first sealed record (type, body) to send in the same
        write as our confirmation, rather than a round trip later.
        """
        keys = self._pake.finish(await channel.read_plain(RecordType.PAKE))
        self.stage = Stage.KEYED
        channel.start_sealing(keys)
        flight = encode_record(RecordType.CONFIRM, confirmation(keys))
        if pipelined is not None:
            flight += channel.sealed(*pipelined)
        await channel.send_raw(flight)
        if not peer_confirmed(keys, await channel.read_plain(RecordType.CONFIRM)):
            raise WrongCode("wrong code")
        self.stage = Stage.CONFIRMED
