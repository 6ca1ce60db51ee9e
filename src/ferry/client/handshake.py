"""Key agreement over the paired channel: SPAKE2, then confirmation both ways.

    sender                               receiver
    PAKE(msg_A)          --->   <---     PAKE(msg_B)
    CONFIRM(mac_sender)  --->   <---     CONFIRM(mac_receiver)
    (each verifies the other's MAC; only then does any sealed record move)

Both sides send before they read, so the exchange costs two round trips
through the relay, not four.
"""

from __future__ import annotations

from enum import Enum

from ferry.client.channel import Channel
from ferry.codes import Code
from ferry.crypto import Pake, Role, confirmation, peer_confirmed
from ferry.errors import WrongCode
from ferry.protocol.records import RecordType


class Stage(Enum):
    """How far a handshake got; after KEYED the peer has had its one guess."""

    STARTED = "started"
    KEYED = "keyed"
    CONFIRMED = "confirmed"


class Handshake:
    def __init__(self, channel: Channel, role: Role, code: Code) -> None:
        self.channel = channel
        self.role = role
        self.code = code
        self.stage = Stage.STARTED

    async def run(self) -> None:
        """Authenticate the peer; raises WrongCode if it used another code."""
        pake = Pake(self.role, self.code.password)
        await self.channel.send_plain(RecordType.PAKE, pake.start())
        keys = pake.finish(await self.channel.read_plain(RecordType.PAKE))
        self.stage = Stage.KEYED
        await self.channel.send_plain(RecordType.CONFIRM, confirmation(keys))
        if not peer_confirmed(keys, await self.channel.read_plain(RecordType.CONFIRM)):
            raise WrongCode("wrong code")
        self.channel.start_sealing(keys)
        self.stage = Stage.CONFIRMED
