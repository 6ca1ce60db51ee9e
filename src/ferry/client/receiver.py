"""The receiving side: claim the nameplate, authenticate, store the file safely.

Storage rules (never lose or corrupt anything):
- the offered name is reduced to a safe base name inside the output directory;
- an existing file (or link) under that name is refused before any data moves,
  unless overwrite was asked for;
- bytes go to a fresh temporary file in the output directory (O_EXCL, never
  following links); only after the last record authenticated and the size
  matched is it fsynced and renamed into place, the directory fsynced, and
  only then is the ACK sent. Any failure removes the temporary file, so
  nothing ever appears under the final name half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from ferry import platform, units
from ferry.address import Address
from ferry.client import outdir
from ferry.client.exchange import Exchange
from ferry.client.fileio import fsync, fsync_directory, write_all
from ferry.client.outdir import prepare_directory as prepare_directory
from ferry.client.output import Output
from ferry.client.partials import CUT, Partial, remove_stale
from ferry.client.peer import lost, stored_notice
from ferry.client.progress import Progress
from ferry.client.receive_tree import receive_tree
from ferry.client.relay_link import RelayLink
from ferry.client.to_stdout import receive_text, receive_to_stdout
from ferry.codes import Code
from ferry.config import ClientConfig
from ferry.errors import (
    ConnectionLost,
    FerryError,
    FileExists,
    IntegrityError,
    LocalFileError,
    RefusedOffer,
    RelayRefused,
    RemoteProtocolError,
    TimedOut,
    UnsafeName,
)
from ferry.names import display_name, safe_name
from ferry.protocol import manifest, messages
from ferry.protocol import rendezvous as rv

if TYPE_CHECKING:
    from ferry.client.dial import Dialing
    from ferry.client.wire import Wire
    from ferry.protocol.receiver_session import ReceiverSession

TEMP_PREFIX = ".ferry-"
TEMP_SUFFIX = ".part"


log = logging.getLogger("ferry.receive")


class Receiver:
    def __init__(
        self,
        address: Address,
        code: Code,
        directory: Path,
        config: ClientConfig,
        progress: Progress,
        overwrite: bool = False,
        output: Output | None = None,
        resume: bool = True,
        merge: bool = False,
        dialing: Dialing | None = None,
    ) -> None:
        self.address = address
        self.code = code
        self.directory = directory
        self.config = config
        self.progress = progress
        self.overwrite = overwrite
        self.output = output or Output()
        self.resume = resume
        self.merge = merge
        """A tree's directories may go into existing ones (client/placement.py)."""
        self.saved_as: Path | None = None
        self.dialing = dialing
        """A connect to the relay started at start-up (client/dial.py), for the first claim."""

    async def _pair(self) -> tuple[RelayLink, ReceiverSession]:
        """Claim the nameplate, send our first flight, and wait for PAIRED.

        "claimed" can mean the previous receiver's pipe (say, one with a
        mistyped code) is still being torn down at the relay: retry briefly
        before calling the code in use. "retry" means another receiver's claim
        is still in its key exchange (seconds at most): retry until the
        pairing timeout (run()).
        """
        claimed = 0
        while True:
            # Loaded on a thread since start-up (cli/receive.py), the crypto
            # libraries are needed from here on. The session (our SPAKE2
            # message) is ready before we connect: the relay's handshake
            # deadline runs from the connect, and nothing should wait on us.
            from ferry.client.wire import timeouts
            from ferry.protocol.receiver_session import ReceiverSession

            session = ReceiverSession(
                self.code.password, timeouts(self.config),
                self.config.max_entries, self.config.max_manifest_bytes,
            )  # fmt: skip
            dialing, self.dialing = self.dialing, None
            link = await RelayLink.connect(self.address, self.config.connect_timeout, dialing)
            try:
                # Our PAKE record rides in the same write as the claim: the
                # relay pairs a claim only once that record is whole (so a
                # silent claim holds nothing), holds it, and hands it over
                # with PAIRED (one round trip less). A relay that refused us
                # may have closed already: its ERROR line, read next, says
                # why better than this write's error.
                with contextlib.suppress(ConnectionLost):
                    await link.send(rv.ReceiveRequest(self.code.nameplate), session.first_flight())
                await link.expect(rv.Paired, self.code.nameplate, self.config.pairing_timeout)
                return link, session
            except RelayRefused as refused:
                link.close()
                if refused.reason == rv.REASON_RETRY:
                    await asyncio.sleep(self.config.pairing_retry_delay)
                    continue
                if refused.reason != rv.REASON_CLAIMED or claimed == self.config.claimed_retries:
                    raise
                claimed += 1
            except BaseException:
                link.close()
                raise
            await asyncio.sleep(self.config.claimed_retry_delay)

    async def run(self) -> Path | None:
        try:
            async with asyncio.timeout(self.config.pairing_timeout):
                link, session = await self._pair()
        except TimeoutError:
            raise TimedOut("timed out pairing with the sender") from None
        from ferry.client.wire import Wire  # loaded by _pair
        from ferry.protocol.events import Confirmed, Keyed

        session.paired(asyncio.get_running_loop().time())
        wire = Wire(link.sock, session, link.take_rest())
        wire.lost_message = (
            "connection lost during the key exchange "
            "(the relay or the sender went away, or the code is wrong)"
        )
        try:
            await wire.expect(Keyed)
            await wire.flush()  # our CONFIRM
            await wire.expect(Confirmed)
            ex = Exchange(
                wire, session, self.config, self.progress, self.output, self.directory,
                self.overwrite, self.resume, self.merge,
            )  # fmt: skip
            return await self._receive(ex)
        finally:
            wire.close()

    async def _receive(self, ex: Exchange) -> Path | None:
        from ferry.protocol.events import OfferReceived

        ex.wire.lost_message = lost("sender")
        offered = await ex.wire.expect(OfferReceived)
        assert isinstance(offered, OfferReceived)
        offer = offered.offer
        if offer.kind == messages.KIND_TEXT:
            await receive_text(ex, offer)
            return None
        if self.output.to_stdout and offer.kind in (messages.KIND_FILE, messages.KIND_STREAM):
            await receive_to_stdout(ex, offer)
            return None
        if self.output.to_stdout:
            text = "the receiver writes to standard output: one file or a text, not a tree"
            error = LocalFileError(
                "a directory or several files cannot go to standard output (give a DIR)"
            )
            raise await ex.refuse(messages.REASON_UNSUPPORTED, text, error)
        try:
            created = outdir.make(self.directory)
        except LocalFileError as exc:
            text = "cannot create its directory"
            raise await ex.refuse(messages.REASON_LOCAL_ERROR, text, exc) from None
        try:
            return await self._store(ex, offered.offer, offered.entries)
        except BaseException:
            outdir.remove_if_empty(created)
            raise

    async def _store(
        self, ex: Exchange, offer: messages.Offer, entries: tuple[manifest.Entry, ...]
    ) -> Path | None:
        """Files into the directory (made by _receive)."""
        wire, session = ex.wire, ex.session
        if offer.kind == messages.KIND_TREE:
            self.saved_as = await receive_tree(ex, offer, entries)
            await ex.acknowledge()
            return self.saved_as
        target = await self._accept_or_refuse(ex, offer)
        if offer.resume:
            remove_stale(self.directory)
            partial = Partial.open(self.directory, target.name, offer.size, self.resume)
            if partial is not None:  # else: someone else's file has its name (partials.py)
                await self._receive_resumable(wire, session, offer, target, partial)
                self.saved_as = target
                _notice(offer.name, target.name)
                await ex.acknowledge()
                return target
        session.accept(ex.now())
        await wire.flush()
        temp, fd = self._create_temp()
        try:
            try:
                size = max(offer.size, 0)  # a stream's size is known at its end
                await self._receive_data(wire, fd, size, display_name(target.name))
                fsync(fd, display_name(target.name))
            finally:
                os.close(fd)
            self._install(temp, target)
        except BaseException as exc:
            _unlink_quietly(temp)
            await wire.abort_on(exc)
            raise
        self.saved_as = target
        _notice(offer.name, target.name)
        await ex.acknowledge()
        return target

    async def _receive_resumable(
        self,
        wire: Wire,
        session: ReceiverSession,
        offer: messages.Offer,
        target: Path,
        partial: Partial,
    ) -> None:
        """A file into its partial (client/partials.py): resumed if possible, kept if cut."""
        from ferry.protocol.events import DigestReceived, ProofReceived, Started

        label = display_name(target.name)
        keep = False
        try:
            mine = partial.hash_kept(session.proof(-1, partial.kept)) if partial.kept else ""
            session.accept(asyncio.get_running_loop().time(), partial.kept)
            await wire.flush()
            keep = True  # from here on, a cut transfer keeps what arrived
            if partial.kept:
                # The sender proves it has the kept bytes; we never show it ours.
                proved = await wire.expect(ProofReceived)
                assert isinstance(proved, ProofReceived)
                matched = hmac.compare_digest(proved.macs[0], mine)
                session.verdict([matched], asyncio.get_running_loop().time())
                await wire.flush()
                started = await wire.expect(Started)
                assert isinstance(started, Started)
                partial.start_at(started.offset)
                if started.offset:
                    log.warning(
                        "resuming %s after the %s kept from an earlier try (of %s)",
                        label, units.size(started.offset), units.offered_size(offer.size),
                    )  # fmt: skip
                else:
                    log.warning(
                        "what was kept of %s does not match the sender's; starting over", label
                    )
            size = max(offer.size, 0)  # a stream's size is known at its end
            await self._receive_data(
                wire, partial.fd, size, label, session.received, partial.digest
            )
            if session.resumed:
                got = await wire.expect(DigestReceived)
                assert isinstance(got, DigestReceived) and partial.digest is not None
                if got.sha256 != partial.digest.hexdigest():
                    keep = False
                    raise IntegrityError(
                        "the resumed file does not match the sender's (a changed source "
                        "or partial); it starts over next time"
                    )
            fsync(partial.fd, label)  # a full disk named here, not as a lost peer
            partial.finish()  # flushed and closed
            self._install(partial.path, target)
            keep = False
        except BaseException as exc:
            keep = keep and isinstance(exc, CUT)
            if keep:
                _say_kept(partial, label)
            await wire.abort_on(exc)
            raise
        finally:
            partial.close(keep)

    async def _accept_or_refuse(self, ex: Exchange, offer: messages.Offer) -> Path:
        refuse = ex.refuse
        if offer.kind not in (messages.KIND_FILE, messages.KIND_STREAM):
            text = f"this receiver cannot accept a {display_name(offer.kind)!r} transfer"
            raise await refuse(messages.REASON_UNSUPPORTED, text, RemoteProtocolError(text))
        try:
            name = safe_name(offer.name)
        except UnsafeName as exc:
            raise await refuse(messages.REASON_BAD_NAME, "unusable file name", exc) from None
        target = self.directory / name
        if os.path.lexists(target) and not (self.overwrite and target.is_file()):
            shown = display_name(str(target))
            if self.overwrite:
                error: FerryError = LocalFileError(f"{shown} exists and is not a regular file")
            else:
                error = FileExists(f"{shown} already exists (use --overwrite to replace it)")
            raise await refuse(
                messages.REASON_EXISTS, f"{display_name(name)} already exists there", error
            )
        await ex.check_space(offer.size)
        if not await ex.confirm(f"{display_name(name)} ({units.offered_size(offer.size)})"):
            raise await refuse(
                messages.REASON_DECLINED, "the receiver declined", RefusedOffer("declined")
            )
        return target

    def _create_temp(self) -> tuple[Path, int]:
        """A new, empty temporary file in the output directory, open for writing."""
        for _ in range(10):
            temp = self.directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
            try:
                fd = platform.open_fd(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            except OSError as exc:
                raise LocalFileError(
                    f"cannot write into {self.directory}: {exc.strerror}"
                ) from None
            return temp, fd
        raise LocalFileError(f"cannot create a temporary file in {self.directory}")

    async def _receive_data(
        self,
        wire: Wire,
        fd: int,
        size: int,
        label: str,
        received: int = 0,
        digest: hashlib._Hash | None = None,
    ) -> None:
        from ferry.protocol.events import DataReceived

        written_back = received
        self.progress.start(size, label)
        self.progress.skip(received)
        try:
            while True:
                wire.lost_message = lost("sender", received, size)
                event = await wire.expect(DataReceived)
                assert isinstance(event, DataReceived)
                received += len(event.data)
                write_all(fd, event.data, label)
                if digest is not None:
                    digest.update(event.data)
                if received - written_back >= self.config.writeback_window:
                    platform.start_writeback(fd, written_back, received - written_back)
                    written_back = received
                self.progress.update(len(event.data))
                if event.final:
                    return
        finally:
            self.progress.close()

    def _install(self, temp: Path, target: Path) -> None:
        """Move the finished temporary file to its final name, atomically."""
        try:
            if self.overwrite:
                os.replace(temp, target)
            else:
                # link() fails if the name appeared meanwhile: never clobber.
                try:
                    platform.hard_link(temp, target)
                except FileExistsError:
                    raise FileExists(
                        f"{display_name(str(target))} appeared meanwhile; not replaced"
                    ) from None
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EXDEV, *platform.NOT_SUPPORTED):
                        raise
                    if os.path.lexists(target):  # no hard links here (e.g. FAT): best effort
                        raise FileExists(
                            f"{display_name(str(target))} appeared meanwhile"
                        ) from None
                    os.rename(temp, target)
                else:
                    os.unlink(temp)
            fsync_directory(self.directory)
        except OSError as exc:
            raise LocalFileError(f"cannot store the file: {exc.strerror}") from None


def _notice(offered: str, stored: str) -> None:
    """Name a stored file on stderr when it needs the user's eye (client/peer.py)."""
    notice = stored_notice(offered, stored)
    if notice:
        log.warning("%s", notice)


def _say_kept(partial: Partial, label: str) -> None:
    """After a cut: say that what arrived stays for the next try (if anything did)."""
    with contextlib.suppress(OSError):
        kept = os.fstat(partial.fd).st_size
        if kept:
            log.warning(
                "kept the %s of %s that arrived; run the same receive again to resume",
                units.size(kept), label,
            )  # fmt: skip


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
