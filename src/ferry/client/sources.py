"""What a sender sends: one file, a tree, stdin or a text, each as an offer and its DATA.

Every source turns into one OFFER (plus a tree's MANIFEST records) and a
stream of DATA records sealed by the session. The data path is the same
for all: bytes are read straight into one reused chunk (readinto), sealed
into one reused buffer (SenderSession.send_data) and written; nothing is
read into memory whole, and a tree's small files share records (a chunk is
filled across file boundaries).

A source that cannot be read twice (stdin) is `replayable = False`: once
its data started moving, a failed attempt ends the sender.

A file that changes while it is sent is never delivered as a mix of old
and new: each file's size and mtime are taken when it is offered (a single
file: at every offer; a tree's files: when the tree was walked, checked
again when each is opened) and compared with fstat once its last byte is
read, before the record that would end the transfer goes out. A change
raises SourceChanged; the sender aborts that attempt (the receiver stores
nothing) and the next offer describes the source as it is then (a tree is
walked again).

Resume: every source but a text offers it. The receiver says only how
many bytes it kept of which file; the sender proves it has them: it reads
its own first bytes of each kept file into a MAC keyed by this session
(SenderSession.proof; a tree's kept files all before any DATA) and sends
the MACs; the receiver's verdict says which matched. A file that matched
resumes (the DATA starts after the kept bytes, a DIGEST of the whole
follows), one that did not starts over; a stream that does not begin with
the bytes the receiver kept cannot start over (they were read), so the
sender gives up and the receiver drops them (the next try starts from
zero).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
from collections.abc import Callable
from stat import S_ISDIR, S_ISREG
from typing import BinaryIO, Protocol

from ferry import platform, units
from ferry.client.fileio import hash_prefix
from ferry.client.peer import lost
from ferry.client.progress import Progress, tree_label
from ferry.client.stdin import StdinReader, open_reader
from ferry.client.tree import Tree
from ferry.client.wire import Wire
from ferry.config import ClientConfig
from ferry.errors import LocalFileError, SourceChanged, StdinMismatch
from ferry.names import display_name
from ferry.protocol import manifest, messages
from ferry.protocol.events import State, VerdictReceived
from ferry.protocol.records import MAX_DATA_PAYLOAD
from ferry.protocol.sender_session import SenderSession

log = logging.getLogger("ferry.send")


class Source(Protocol):
    label: str
    replayable: bool

    def offer(self) -> messages.Offer:
        """What is offered, as the source is now (called for every attempt)."""
        ...

    def manifest_records(self) -> list[bytes]: ...
    def file_sizes(self) -> dict[int, int]: ...
    async def send(self, wire: Wire, session: SenderSession, progress: Progress) -> None: ...
    def close(self) -> None: ...


def offered_name(path: str) -> str:
    name = os.path.basename(os.path.normpath(os.path.abspath(path)))
    # Undecodable bytes in a POSIX name arrive as lone surrogates; offer
    # a readable UTF-8 name instead ("caf\udce9.txt" -> "caf\ufffd.txt").
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Single:
    """A source that is not a tree: no MANIFEST records, no files by index."""

    def manifest_records(self) -> list[bytes]:
        return []

    def file_sizes(self) -> dict[int, int]:
        return {}


class Outgoing(_Single):
    """One regular file, opened before the relay is contacted."""

    replayable = True

    def __init__(self, file: BinaryIO, name: str, size: int, record_size: int) -> None:
        self.file = file
        self.name = self.label = name
        self.size = size
        self.record_size = record_size
        self._offered = os.fstat(file.fileno())
        """The file when it was last offered; it must still be that after its last byte."""

    @classmethod
    def open(cls, path: str, record_size: int = ClientConfig.record_size) -> Outgoing:
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; we refuse it below.
            fd = platform.open_fd(path, os.O_RDONLY | platform.NONBLOCK)
        except FileNotFoundError:
            raise LocalFileError(f"no such file: {path}") from None
        except OSError as exc:
            raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            os.close(fd)
            what = "a directory" if S_ISDIR(stat.st_mode) else "not a regular file"
            raise LocalFileError(f"{path} is {what}")
        platform.set_blocking(fd, True)
        return cls(os.fdopen(fd, "rb", buffering=0), offered_name(path), stat.st_size, record_size)

    def offer(self) -> messages.Offer:
        self._offered = os.fstat(self.file.fileno())
        self.size = self._offered.st_size
        return messages.Offer(messages.KIND_FILE, self.name, self.size, resume=True)

    async def send(self, wire: Wire, session: SenderSession, progress: Progress) -> None:
        loop = asyncio.get_running_loop()
        chunk = memoryview(bytearray(self.record_size))
        self.file.seek(0)
        digest = None
        if session.resume_from:
            # The receiver kept a partial: resume only if our first bytes are
            # the ones it has (we prove it); the DIGEST then proves the whole file.
            digest, proof = prove_prefix(self.file, session.resume_from, session)
            await prove(wire, session, [proof])
            start = session.resume_from if session.resume_matched else 0
            say_resuming(self.name, start, self.size)
            if not start:
                digest = None
                self.file.seek(0)
            session.start_file(None, start, loop.time())
            await wire.flush()  # the START, before any DATA
        progress.start(self.size, self.name)
        progress.skip(session.sent)
        try:
            while session.state is State.SENDING:
                sent = session.sent
                want = min(len(chunk), self.size - sent)
                n = read_fully(self.file, chunk[:want])
                if n < want or sent + n == self.size:  # the last byte: the record ends it
                    check_unchanged(self.file, self._offered, self.name, self.name)
                    if n < want:
                        shrank = f"{self.name} shrank while it was being sent"
                        raise SourceChanged(shrank, self.name)
                if digest is not None:
                    digest.update(chunk[:n])
                wire.lost_message = lost("receiver", sent, self.size)
                await wire.write(session.send_data(chunk[:n], loop.time()))
                progress.update(n)
            if digest is not None:
                session.send_file_digest(None, digest.hexdigest(), loop.time())
                await wire.flush()
        finally:
            progress.close()

    def close(self) -> None:
        self.file.close()


def say_resuming(name: str, start: int, size: int) -> None:
    """The line that says a transfer resumes (or why it cannot), shown without -v."""
    if start:
        log.warning(
            "the receiver kept %s of %s from an earlier try: resuming after it (of %s)",
            units.size(start), display_name(name), units.offered_size(size),
        )  # fmt: skip
    else:
        log.warning(
            "%s differs from what the receiver kept of it: starting over", display_name(name)
        )


def prove_prefix(
    file: BinaryIO, length: int, session: SenderSession, index: int = -1
) -> tuple[hashlib._Hash, str]:
    """SHA-256 of a file's next `length` bytes (fewer if it ends first), and our resume
    proof of them (session.proof, hex): fileio.hash_prefix on the file's descriptor."""
    proof = session.proof(index, length)
    try:
        digest, _ = hash_prefix(file.fileno(), length, proof)
    except OSError as exc:
        raise LocalFileError(f"cannot read the file: {exc.strerror}") from None
    return digest, proof.hexdigest()


async def prove(wire: Wire, session: SenderSession, macs: list[str]) -> None:
    """Send our proofs of the kept bytes and wait for the receiver's verdict."""
    session.send_proofs(macs, asyncio.get_running_loop().time())
    await wire.flush()
    await wire.expect(VerdictReceived)


class TreeSource:
    """Files and directories (client/tree.py walked them); contents read as they are sent."""

    replayable = True

    def __init__(
        self,
        tree: Tree,
        record_size: int,
        walk_again: Callable[[], Tree] | None = None,
        max_manifest_bytes: int = ClientConfig.max_manifest_bytes,
    ) -> None:
        self._max_manifest_bytes = max_manifest_bytes
        self.record_size = record_size
        self._walk_again = walk_again
        self._changed = False
        """A file changed while it was sent: the next offer walks the tree again."""
        self._use(tree)

    def _use(self, tree: Tree) -> None:
        self.tree = tree
        self.size = tree.size
        self.label = tree_label(tree.files, len(tree.entries) - tree.files)
        self._records = manifest.encode_records(tree.entries)
        size = sum(len(record) for record in self._records)
        if size > self._max_manifest_bytes:
            most = self._max_manifest_bytes / (1 << 20)
            raise LocalFileError(
                f"the list of {len(tree.entries)} files and directories takes "
                f"{size / (1 << 20):.1f} MiB, more than a receiver takes ({most:g} MiB): "
                "send fewer at once"
            )

    def offer(self) -> messages.Offer:
        if self._changed and self._walk_again is not None:
            self._use(self._walk_again())
            self._changed = False
        return messages.Offer(
            messages.KIND_TREE, "", self.size, manifest=messages.MANIFEST_VERSION,
            entries=len(self.tree.entries), files=self.tree.files, records=len(self._records),
            resume=True,
        )  # fmt: skip

    def manifest_records(self) -> list[bytes]:
        return self._records

    def file_sizes(self) -> dict[int, int]:
        return {i: e.size for i, e in enumerate(self.tree.entries) if not e.is_dir}

    async def send(self, wire: Wire, session: SenderSession, progress: Progress) -> None:
        loop = asyncio.get_running_loop()
        chunk = memoryview(bytearray(self.record_size))
        fill = 0
        files_done = sum(not e.is_dir and not e.size for e in self.tree.entries)
        if session.kept:
            log.warning(
                "the receiver kept %s of %s from an earlier try: resuming after them",
                units.size(sum(k.size for k in session.kept.values())),
                units.counted(len(session.kept), "file"),
            )  # fmt: skip
        digests = await self._prove_kept(wire, session) if session.kept else {}
        progress.start(self.size, self.label)
        progress.files(files_done, self.tree.files)
        tree = self.tree
        try:
            for index, (entry, path, listed) in enumerate(
                zip(tree.entries, tree.sources, tree.stats, strict=True)
            ):
                if entry.is_dir or not entry.size:
                    continue
                with _open_listed(path, listed, entry.path) as file:
                    digest, offset = None, 0
                    kept = session.kept.get(index)
                    if kept is not None:  # the START follows every earlier byte
                        if fill:
                            await self._write(wire, session, progress, chunk[:fill])
                            fill = 0
                        digest, offset = _start(session, file, kept, digests, loop.time())
                        if not offset and kept.size:
                            shown = display_name(entry.path)
                            log.warning("%s differs from what was kept: it starts over", shown)
                        await wire.flush()
                        progress.skip(offset)
                    left = entry.size - offset
                    if not left:  # kept whole: none of it is read, it still must not change
                        check_unchanged(file, listed, path, entry.path)
                    while left:
                        want = min(left, len(chunk) - fill)
                        n = read_fully(file, chunk[fill : fill + want])
                        if n < want or n == left:  # its last byte, before any record ends it
                            check_unchanged(file, listed, path, entry.path)
                            if n < want:
                                raise SourceChanged(f"{path} shrank while it was being sent",
                                                    entry.path)  # fmt: skip
                        if digest is not None:
                            digest.update(chunk[fill : fill + n])
                        fill += n
                        left -= n
                        if fill == len(chunk):
                            await self._write(wire, session, progress, chunk)
                            fill = 0
                    files_done += 1
                    progress.files(files_done, self.tree.files)
                    if digest is not None:  # the DIGEST right after the file's last byte
                        if fill:
                            await self._write(wire, session, progress, chunk[:fill])
                            fill = 0
                        session.send_file_digest(index, digest.hexdigest(), loop.time())
                        await wire.flush()
            if session.state is State.SENDING:  # the rest, or one empty final record
                await self._write(wire, session, progress, chunk[:fill])
        except SourceChanged:
            self._changed = True
            raise
        finally:
            progress.close()

    async def _prove_kept(self, wire: Wire, session: SenderSession) -> dict[int, hashlib._Hash]:
        """Prove we have what the receiver kept of each file (all before any DATA, one
        round trip); the running SHA-256 of each, by index."""
        digests, macs = {}, []
        for index, kept in session.kept.items():
            entry, path = self.tree.entries[index], self.tree.sources[index]
            with _open_listed(path, self.tree.stats[index], entry.path) as file:
                digests[index], mac = prove_prefix(file, kept.size, session, index)
            macs.append(mac)
        await prove(wire, session, macs)
        return digests

    async def _write(
        self, wire: Wire, session: SenderSession, progress: Progress, chunk: memoryview
    ) -> None:
        """One DATA record of the bytes in chunk, sealed and written; progress counts them."""
        wire.lost_message = lost("receiver", session.sent, self.size)
        await wire.write(session.send_data(chunk, asyncio.get_running_loop().time()))
        progress.update(len(chunk))

    def close(self) -> None:
        pass


def _start(
    session: SenderSession,
    file: BinaryIO,
    kept: messages.Kept,
    digests: dict[int, hashlib._Hash],
    now: float,
) -> tuple[hashlib._Hash | None, int]:
    """START a file of a tree the receiver kept some of: after that if our proof of it
    matched (session.matched), else from 0.

    The running SHA-256 of the file (None when it starts over) and where it starts.
    """
    if kept.index not in session.matched:
        session.start_file(kept.index, 0, now)
        return None, 0
    file.seek(kept.size)
    session.start_file(kept.index, kept.size, now)
    return digests[kept.index], kept.size


def _open_listed(path: str, listed: os.stat_result, offered: str) -> BinaryIO:
    """A file of the tree, still the one listed in the manifest (same file, size, mtime).

    A path given on the command line (a top-level entry) was listed through
    a symlink, so it is opened through it; a link found inside a directory
    was not listed, so one there now is a change.
    """
    follow = 0 if "/" not in offered else platform.NOFOLLOW
    try:
        fd = platform.open_fd(path, os.O_RDONLY | follow | platform.NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            raise SourceChanged(f"{path} changed after it was listed", offered) from None
        raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (listed.st_dev, listed.st_ino):
        os.close(fd)
        raise SourceChanged(f"{path} changed after it was listed", offered)
    file = os.fdopen(fd, "rb", buffering=0)
    try:
        check_unchanged(file, listed, path, offered)
    except BaseException:
        file.close()
        raise
    platform.set_blocking(fd, True)
    return file


def check_unchanged(file: BinaryIO, offered: os.stat_result, path: str, name: str) -> None:
    """SourceChanged unless the file has the size and mtime it had when it was offered."""
    now = os.fstat(file.fileno())
    if (now.st_size, now.st_mtime_ns) != (offered.st_size, offered.st_mtime_ns):
        raise SourceChanged(f"{path} changed while it was being sent", name)


class StreamSource(_Single):
    """Standard input until EOF: the size is known only at the end."""

    replayable = False
    size = messages.UNKNOWN_SIZE

    def __init__(self, fd: int, name: str, record_size: int) -> None:
        self.fd = fd
        self.name = self.label = name
        self.record_size = record_size

    def offer(self) -> messages.Offer:
        return messages.Offer(messages.KIND_STREAM, self.name, messages.UNKNOWN_SIZE, resume=True)

    async def send(self, wire: Wire, session: SenderSession, progress: Progress) -> None:
        loop = asyncio.get_running_loop()
        chunk = memoryview(bytearray(self.record_size))
        reader = open_reader(self.fd, loop)
        progress.start(0, self.name)
        try:
            digest = None
            if session.resume_from:
                digest = await self._skip_kept(wire, reader, chunk, session)
                say_resuming(self.name, session.resume_from, messages.UNKNOWN_SIZE)
                session.start_file(None, session.resume_from, loop.time())
                await wire.flush()
                progress.skip(session.sent)
            while True:
                n = await reader.read_fully(chunk, STREAM_LINGER, session.may_send_short)
                end = reader.at_eof
                if digest is not None:
                    digest.update(chunk[:n])
                wire.lost_message = lost("receiver", session.sent, self.size)
                await wire.write(session.send_data(chunk[:n], loop.time(), end=end))
                progress.update(n)
                if end:
                    break
            if digest is not None:
                session.send_file_digest(None, digest.hexdigest(), loop.time())
                await wire.flush()
        finally:
            reader.close()
            progress.close()

    async def _skip_kept(
        self, wire: Wire, reader: StdinReader, chunk: memoryview, session: SenderSession
    ) -> hashlib._Hash:
        """Read past the bytes the receiver kept, proving they are ours (the hash so far)."""
        digest = hashlib.sha256()
        proof = session.proof(-1, session.resume_from)
        left = session.resume_from
        while left:
            n = await reader.read_fully(chunk[: min(left, len(chunk))])
            digest.update(chunk[:n])
            proof.update(chunk[:n])
            left -= n
            if not n:
                break
        if not left:
            await prove(wire, session, [proof.hexdigest()])
        if left or not session.resume_matched:
            raise StdinMismatch(
                f"standard input does not begin with the {session.resume_from} bytes the "
                "receiver kept from an earlier try, and they cannot be read again; "
                "it drops them: send again"
            )
        return digest

    def close(self) -> None:
        pass


STREAM_LINGER = 1.0
"""Seconds stdin may pause with bytes read before they go out in a short record (a slow
producer's bytes keep moving: the receiver counts no progress while none arrive)."""


class TextSource(_Single):
    """A short message, held in memory (at most ClientConfig.max_text bytes)."""

    replayable = True

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.label = "text"
        self.size = len(text)

    def offer(self) -> messages.Offer:
        return messages.Offer(messages.KIND_TEXT, "", len(self.text))

    async def send(self, wire: Wire, session: SenderSession, progress: Progress) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(self.text)
        while True:
            chunk = view[session.sent : session.sent + MAX_DATA_PAYLOAD // 2]
            await wire.write(session.send_data(chunk, loop.time()))
            if session.sent == len(self.text):
                return

    def close(self) -> None:
        pass


def read_fully(file: BinaryIO, view: memoryview) -> int:
    got = 0
    while got < len(view):
        try:
            n = file.readinto(view[got:])  # type: ignore[attr-defined]
        except OSError as exc:
            raise LocalFileError(f"cannot read the file: {exc.strerror}") from None
        if not n:
            break
        got += n
    return got
