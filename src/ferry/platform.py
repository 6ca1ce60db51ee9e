"""Every difference between Linux, macOS and Windows that ferry's programs meet, in one place.

Theory of operation. The rest of ferry calls these functions and constants
and never asks which system it runs on, never imports a POSIX-only module
(fcntl, resource, termios, ...) or a Windows-only one (msvcrt): those are
imported here, and only on the system that has them. Each function does
the same job everywhere with that system's own mechanism:
docs/ARCHITECTURE.md, "Platforms", has the table (durability, renames,
locks, open flags, modes and owners, signals, readiness, keepalive, the
relay's splice and descriptor limits). What is built on top of these and
is the same everywhere lives with its users: best-effort fsyncs in
client/fileio.py, whose files a receive may use in client/ownership.py,
keepalive timings in netopts.py, terminal colours in cli/qr.py.

Detection uses the standard library's platform.system() ("Linux", "Darwin",
"Windows") and, for each call, whether the system has it; the test shims
(ferry_testing/platform_shim.py) take things away and report another system
through the same two channels, so these code paths run in the test suite.
Standard library only: the relay imports it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import platform as _stdlib_platform
import select
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

SYSTEM: Final = _stdlib_platform.system()
"""'Linux', 'Darwin' (macOS), 'Windows', or another system's name."""
WINDOWS: Final = SYSTEM == "Windows"
MACOS: Final = SYSTEM == "Darwin"
LINUX: Final = SYSTEM == "Linux"
POSIX: Final = not WINDOWS

RELAY_SUPPORTED: Final = not WINDOWS
"""The relay runs on Linux (splice) and macOS (copy pump); Windows is refused in one line."""
RELAY_UNSUPPORTED_MESSAGE: Final = "the relay runs on Linux or macOS"


def _optional_module(name: str) -> ModuleType | None:
    """A module only some systems have (fcntl, resource, msvcrt), or None."""
    try:
        return __import__(name)
    except ImportError:
        return None


_fcntl = _optional_module("fcntl") if POSIX else None
_msvcrt = _optional_module("msvcrt") if WINDOWS else None

# -- opening files -----------------------------------------------------------------

BINARY: Final[int] = getattr(os, "O_BINARY", 0)
"""Windows: without it os.open gives a text-mode descriptor (CRLF turned into LF, ^Z ends)."""
CLOEXEC: Final[int] = getattr(os, "O_CLOEXEC", 0) or getattr(os, "O_NOINHERIT", 0)
NOFOLLOW: Final[int] = getattr(os, "O_NOFOLLOW", 0)
"""0 on Windows: there, a link is never followed by a rename or an O_EXCL create anyway."""
NONBLOCK: Final[int] = getattr(os, "O_NONBLOCK", 0)
"""0 on Windows, which has no FIFOs in the file system to wait on."""
DIRECTORY: Final[int] = getattr(os, "O_DIRECTORY", 0)
OPEN_AT: Final = os.open in os.supports_dir_fd
"""os.open takes dir_fd (POSIX); Windows: no, open by path."""
CAN_OPEN_DIRECTORIES: Final = POSIX
"""Windows' os.open refuses a directory."""
REMOVES_OPEN_FILES: Final = POSIX
"""A file may be removed or renamed while open (Windows: not one that os.open opened)."""


def open_fd(path: str | os.PathLike[str], flags: int, mode: int = 0o777,
            dir_fd: int | None = None) -> int:  # fmt: skip
    """os.open, always binary and not inherited by children."""
    flags |= BINARY | CLOEXEC
    if dir_fd is None:
        return os.open(path, flags, mode)
    return os.open(path, flags, mode, dir_fd=dir_fd)


def set_blocking(fd: int, blocking: bool) -> None:
    """Where the system has non-blocking descriptors (POSIX; Windows pipes from 3.12)."""
    if hasattr(os, "set_blocking"):
        with contextlib.suppress(OSError):
            os.set_blocking(fd, blocking)


# -- durability ----------------------------------------------------------------------

F_FULLFSYNC: Final[int | None] = getattr(_fcntl, "F_FULLFSYNC", None) if MACOS else None


def full_fsync(fd: int) -> None:
    """Flush a file to stable storage (raises OSError).

    macOS: fsync(2) only hands the data to the drive, whose cache may lose it
    on power loss; F_FULLFSYNC asks the drive to flush (a file system that
    does not support it falls back to fsync). Windows: os.fsync is _commit,
    i.e. FlushFileBuffers. Linux: fsync(2) flushes the drive cache too.
    """
    if F_FULLFSYNC is not None and _fcntl is not None:
        try:
            _fcntl.fcntl(fd, F_FULLFSYNC)
            return
        except OSError:
            pass
    os.fsync(fd)


def _libc() -> Any | None:
    """The C library through ctypes (Linux, macOS), or None (Windows: CDLL(None) is a
    TypeError there, not an OSError)."""
    if WINDOWS:
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError, ImportError):
        return None


def syncfs(path: str | os.PathLike[str]) -> bool:
    """One syncfs(2) for the file system holding path (Linux); False if not done."""
    libc = _libc() if LINUX else None
    if libc is None or not hasattr(libc, "syncfs"):
        return False
    try:
        fd = open_fd(path, os.O_RDONLY | DIRECTORY)
    except OSError:
        return False
    try:
        return bool(libc.syncfs(fd) == 0)
    finally:
        os.close(fd)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a finished range now (Linux's posix_fadvise
    DONTNEED); elsewhere nothing: the final full_fsync does the work."""
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


NOT_SUPPORTED: Final = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
""""Operation not supported": one number on Linux, two different ones on macOS."""

_RENAME_NOREPLACE: Final = 1  # renameat2(2), Linux
_RENAME_EXCL: Final = 4  # renameatx_np(2), macOS
_AT_FDCWD: Final = -100


def rename_no_replace(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    source_dir: int | None = None,
    target_dir: int | None = None,
) -> None:
    """rename(2) that fails with FileExistsError instead of replacing target (each path
    relative to its directory's descriptor, if given: POSIX only, see OPEN_AT).

    Linux: renameat2(RENAME_NOREPLACE); macOS: renameatx_np(RENAME_EXCL); Windows:
    os.rename, which never replaces. Elsewhere (or on a file system without
    them): check, then rename; the window between the two is the only place a
    name appearing meanwhile could be replaced (an empty directory, or a file by
    a file).
    """
    if WINDOWS:
        assert source_dir is None and target_dir is None, "no directory descriptors here"
        os.rename(source, target)
        return
    libc = _libc()
    src, dst = os.fsencode(source), os.fsencode(target)
    at_src = _AT_FDCWD if source_dir is None else source_dir
    at_dst = _AT_FDCWD if target_dir is None else target_dir
    call: Callable[[], int] | None = None
    if libc is not None and LINUX and hasattr(libc, "renameat2"):
        call = lambda: libc.renameat2(at_src, src, at_dst, dst, _RENAME_NOREPLACE)  # noqa: E731
    elif libc is not None and MACOS and hasattr(libc, "renameatx_np"):
        call = lambda: libc.renameatx_np(at_src, src, at_dst, dst, _RENAME_EXCL)  # noqa: E731
    if call is not None:
        import ctypes

        if call() == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS) and err not in NOT_SUPPORTED:
            raise OSError(err, os.strerror(err), os.fsdecode(dst))
    with contextlib.suppress(FileNotFoundError):
        os.stat(target, follow_symlinks=False, dir_fd=target_dir)
        raise FileExistsError(errno.EEXIST, "exists", os.fsdecode(dst))
    os.rename(source, target, src_dir_fd=source_dir, dst_dir_fd=target_dir)


def hard_link(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """link(2) of source itself (a link is not followed where the system can say so)."""
    if os.link in os.supports_follow_symlinks:
        os.link(source, target, follow_symlinks=False)
    else:
        os.link(source, target)  # Windows: CreateHardLink, which does not follow


# -- modes, owners, times ----------------------------------------------------------


def set_mode(fd: int, mode: int) -> None:
    """fchmod where the system has it (Windows only from 3.13, where only the read-only
    bit means anything: a file ferry writes is writable, so there is nothing to do)."""
    if hasattr(os, "fchmod") and POSIX:
        os.fchmod(fd, mode)


def set_mtime(fd: int, path: str | os.PathLike[str], mtime_ns: int) -> None:
    """A file's modification time, through its descriptor where the system allows."""
    if os.utime in os.supports_fd:
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    else:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def effective_user() -> int | None:
    """This process's effective user id; None where files have no POSIX owner and mode
    bits (Windows: ACLs decide, and st_mode says 0o666 for any writable file)."""
    if WINDOWS or not hasattr(os, "geteuid"):
        return None
    return os.geteuid()


# -- locking -------------------------------------------------------------------------

LOCK_NAME: Final = ".ferry-lock"
"""Windows: the file inside a directory that stands for the directory's lock."""
_WINDOWS_LOCK_OFFSET: Final = 1 << 40
"""Windows locks are mandatory (other processes cannot read a locked byte): lock one byte
1 TiB in, past the data of any but the largest files. A seek there is valid on NTFS (and
on ext4, where the test shim runs)."""


def try_lock(fd: int) -> None:
    """Lock fd exclusively for this process, or raise BlockingIOError if another holds it.

    POSIX: flock(2), released when the descriptor is closed. Windows:
    msvcrt.locking of one byte at _WINDOWS_LOCK_OFFSET, released on close too.
    """
    if _fcntl is not None:
        _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        return
    if _msvcrt is not None:
        here = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            _msvcrt.locking(fd, _msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):
                raise BlockingIOError(errno.EAGAIN, "locked by another process") from None
            raise
        finally:
            os.lseek(fd, here, os.SEEK_SET)


def open_directory_lock(path: str | os.PathLike[str]) -> int:
    """A descriptor whose lock (try_lock) stands for the directory's: the directory
    itself on POSIX (never through a link), LOCK_NAME inside it on Windows."""
    if CAN_OPEN_DIRECTORIES:
        return open_fd(path, os.O_RDONLY | DIRECTORY | NOFOLLOW)
    return open_fd(Path(path) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)


# -- the event loop: signals and readiness -----------------------------------------

TERMINATION_SIGNALS: Final[tuple[signal.Signals, ...]] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)
)
"""SIGINT (Ctrl-C), SIGTERM, and on Windows SIGBREAK (Ctrl-Break, a closed console)."""


def on_termination(
    loop: asyncio.AbstractEventLoop, handler: Callable[[int], None]
) -> Callable[[], None]:
    """Call handler(signum) on the loop for each termination signal; returns the undo.

    The loop's add_signal_handler where it has one: a Python-level handler
    can run in the middle of one of asyncio's own I/O callbacks. Windows'
    proactor loop has none: signal.signal there, whose handler only
    schedules handler on the loop (call_soon_threadsafe), so it too runs
    between callbacks.
    """
    installed: list[signal.Signals] = []
    try:
        for signum in TERMINATION_SIGNALS:
            if signum == getattr(signal, "SIGBREAK", None):
                continue  # POSIX has none; Windows' loop has no add_signal_handler
            loop.add_signal_handler(signum, handler, int(signum))
            installed.append(signum)
    except NotImplementedError:
        for signum in installed:
            loop.remove_signal_handler(signum)
        return _python_handlers(loop, handler)

    def undo() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return undo


def _python_handlers(
    loop: asyncio.AbstractEventLoop, handler: Callable[[int], None]
) -> Callable[[], None]:
    previous: dict[signal.Signals, Any] = {}

    def schedule(signum: int, frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
            loop.call_soon_threadsafe(handler, signum)

    for signum in TERMINATION_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            previous[signum] = signal.signal(signum, schedule)

    def undo() -> None:
        for signum, old in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(signum, old)

    return undo


def add_reader(loop: asyncio.AbstractEventLoop, fd: int, callback: Callable[[], None]) -> bool:
    """Watch fd for reading; False if this loop cannot (Windows' proactor loop)."""
    try:
        loop.add_reader(fd, callback)
    except NotImplementedError:
        return False
    return True


READINESS_POLL: Final = 0.05
"""Seconds between checks of a socket where the loop cannot watch it (Windows)."""


async def wait_readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Until sock has bytes (or an end) to read: the loop watches it where it can, else
    select() is asked every READINESS_POLL (Windows' select takes sockets)."""
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = sock.fileno()
    if add_reader(loop, fd, readable):
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        return
    while not select.select([sock], [], [], 0)[0]:
        await asyncio.sleep(READINESS_POLL)


POLL_STDIN: Final = POSIX and hasattr(os, "readv") and hasattr(os, "get_blocking")
"""stdin can be made non-blocking and watched by the loop (POSIX). Windows: a thread
reads it (client/stdin.py)."""


# -- sockets -------------------------------------------------------------------------


def keepalive_idle_option() -> int | None:
    """The TCP option for keepalive's idle time: TCP_KEEPIDLE on Linux and Windows,
    TCP_KEEPALIVE on macOS; None where the system has neither."""
    option = getattr(socket, "TCP_KEEPIDLE", None)
    return option if option is not None else getattr(socket, "TCP_KEEPALIVE", None)


# -- the relay -----------------------------------------------------------------------

SPLICE: Final = hasattr(os, "splice") and hasattr(os, "pipe2") and _fcntl is not None
"""The relay's zero-copy pump (Linux); elsewhere it copies through a bounded buffer."""
F_SETPIPE_SZ: Final[int | None] = getattr(_fcntl, "F_SETPIPE_SZ", 1031 if LINUX else None)
F_GETPIPE_SZ: Final[int | None] = getattr(_fcntl, "F_GETPIPE_SZ", 1032 if LINUX else None)


def pipe_size(fd: int, size: int | None = None) -> int | None:
    """Set a pipe's buffer size (Linux) and return what it is, or None where unknown."""
    if _fcntl is None or F_SETPIPE_SZ is None or F_GETPIPE_SZ is None:
        return None
    if size is not None:
        with contextlib.suppress(OSError):
            _fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    try:
        return int(_fcntl.fcntl(fd, F_GETPIPE_SZ))
    except OSError:
        return None


def fd_limits() -> tuple[int, int] | None:
    """(soft, hard) RLIMIT_NOFILE, hard being -1 for unlimited; None without resource."""
    resource = _optional_module("resource") if POSIX else None
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, (-1 if hard == resource.RLIM_INFINITY else hard)


def set_fd_limit(soft: int, hard: int) -> None:
    """Raise RLIMIT_NOFILE's soft limit (hard -1: unlimited). Raises OSError/ValueError."""
    resource = _optional_module("resource") if POSIX else None
    if resource is None:
        raise OSError(errno.ENOSYS, "no resource limits here")
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (soft, resource.RLIM_INFINITY if hard == -1 else hard)
    )


def open_fds() -> int | None:
    """Descriptors this process has open (Linux's /proc/self/fd, macOS's /dev/fd), or None."""
    for where in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(where)) - 1  # minus listdir's own
        except OSError:
            continue
    return None
