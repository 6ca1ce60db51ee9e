"""Make this Linux process look like Windows or macOS to ferry, so their code paths run here.

Theory of operation. We cannot run Windows or macOS in the test suite, so a
client (or relay) process started with FERRY_TESTING_SHIM=windows or =macos
and SHIM_SITE on its PYTHONPATH loads this module first (sitecustomize),
before any of ferry is imported. It then takes away what that system lacks,
so that code which still assumed Linux fails loudly (ImportError,
AttributeError, NotImplementedError, TypeError, as the real system would),
makes the stdlib's platform.system() report "Windows" or "Darwin" (how
ferry.platform detects the system; sys.platform stays "linux", or asyncio
and subprocess would try to load Windows modules), and stands in for the
few calls only that system has:

windows  no fcntl, resource, termios, tty, pty, pwd, grp (ImportError); os
         without O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK, O_CLOEXEC, readv,
         get_blocking, set_blocking, fchmod, geteuid, statvfs, posix_fadvise,
         splice, pipe2, sync; os.supports_dir_fd empty, os.utime on a
         descriptor a TypeError; os.open of a directory a PermissionError, and
         every os.open made by ferry's code must carry O_BINARY (0x8000, as on
         Windows; the shim strips it before the real call) or it raises;
         os.rename over an existing name fails (FileExistsError), and a file
         os.open'ed and not closed can be neither renamed nor removed
         (PermissionError), as on Windows; loop.add_signal_handler,
         add_reader and remove_reader raise NotImplementedError (the proactor
         loop); ctypes.CDLL(None) raises TypeError; signal.SIGBREAK exists; a
         `msvcrt` module offers locking() (over POSIX record locks).
macos    no os.splice, pipe2, posix_fadvise; no F_SETPIPE_SZ/F_GETPIPE_SZ;
         libc without syncfs and renameat2 but with renameatx_np (RENAME_EXCL,
         over renameat2); no socket.TCP_KEEPIDLE but TCP_KEEPALIVE (mapped to
         the real option); fcntl.F_FULLFSYNC (an fsync); /proc unreadable.

With FERRY_TESTING_SHIM_LOG=PATH, the stand-ins append one line per call
(F_FULLFSYNC, msvcrt.locking, renameatx_np, TCP_KEEPALIVE, signal.signal), so a
test can check the system's own mechanism ran.

Not modelled: text-mode reads (O_BINARY is only checked), Windows path
rules (names.py tests cover them), case-insensitive or NFD file systems.
"""

from __future__ import annotations

import asyncio
import builtins
import ctypes
import errno
import importlib.abc
import importlib.machinery
import os
import platform
import signal
import socket
import sys
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ENV = "FERRY_TESTING_SHIM"
LOG_ENV = "FERRY_TESTING_SHIM_LOG"
SHIM_SITE = Path(__file__).resolve().parent / "shim_site"
"""The directory to put on PYTHONPATH: its sitecustomize applies the shim named in ENV."""
SYSTEMS = ("windows", "macos")

O_BINARY = 0x8000
_WINDOWS_MISSING_MODULES = ("fcntl", "resource", "termios", "tty", "pty", "pwd", "grp")
_WINDOWS_MISSING_OS = (
    "O_NOFOLLOW", "O_DIRECTORY", "O_NONBLOCK", "O_CLOEXEC", "O_NOCTTY", "readv", "writev",
    "get_blocking", "set_blocking", "fchmod", "fchown", "geteuid", "getuid", "getegid",
    "getgid", "statvfs", "fstatvfs", "posix_fadvise", "POSIX_FADV_DONTNEED", "splice",
    "pipe2", "sync", "mkfifo",
)  # fmt: skip
_MACOS_MISSING_OS = ("splice", "pipe2", "posix_fadvise", "POSIX_FADV_DONTNEED", "SPLICE_F_MOVE",
                     "SPLICE_F_NONBLOCK", "SPLICE_F_MORE")  # fmt: skip
_F_FULLFSYNC = 51
_TCP_KEEPALIVE = 0x10  # macOS's name and number for the idle time


def env(system: str, log: Path | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment that starts Python processes under the shim for `system`."""
    assert system in SYSTEMS, system
    result = dict(os.environ if base is None else base)
    path = result.get("PYTHONPATH")
    result["PYTHONPATH"] = f"{SHIM_SITE}{os.pathsep}{path}" if path else str(SHIM_SITE)
    result[ENV] = system
    if log is not None:
        result[LOG_ENV] = str(log)
    return result


def _set(owner: object, **attributes: object) -> None:
    """Replace attributes of a module or class (what the shim is for)."""
    for name, value in attributes.items():
        setattr(owner, name, value)


def _note(what: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{os.getpid()} {what}\n")


def apply(system: str) -> None:
    if system == "windows":
        _windows()
    elif system == "macos":
        _macos()
    else:
        raise SystemExit(f"{ENV}={system!r}: expected one of {', '.join(SYSTEMS)}")


# -- Windows ---------------------------------------------------------------------------


class _Missing(importlib.abc.MetaPathFinder):
    def __init__(self, names: Sequence[str]) -> None:
        self.names = set(names)

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _from_ferry(depth: int = 2) -> bool:
    frame = sys._getframe(depth)
    return str(frame.f_globals.get("__name__", "")).startswith("ferry")


def _windows() -> None:
    import fcntl as real_fcntl  # before it goes: msvcrt.locking stands on it

    for name in _WINDOWS_MISSING_MODULES:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, _Missing(_WINDOWS_MISSING_MODULES))
    platform.system = lambda: "Windows"

    real_open, real_close, real_rename, real_unlink = os.open, os.close, os.rename, os.unlink
    real_replace, real_utime, real_statvfs = os.replace, os.utime, os.statvfs
    open_paths: dict[int, str] = {}
    lock = threading.Lock()

    def shim_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None:
            raise NotImplementedError("dir_fd unavailable on this platform")
        if _from_ferry() and not flags & O_BINARY:
            raise ValueError(f"os.open({path!r}) without O_BINARY: a text-mode descriptor")
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        fd = real_open(path, flags & ~O_BINARY, mode)
        with lock:
            open_paths[fd] = os.path.realpath(path)
        return fd

    def shim_close(fd: int) -> None:
        with lock:
            open_paths.pop(fd, None)
        real_close(fd)

    def busy(*paths: Any) -> None:
        with lock:
            held = set(open_paths.values())
        for path in paths:
            if os.path.realpath(path) in held:
                raise PermissionError(
                    errno.EACCES, "The process cannot access the file because it is being "
                    "used by another process", str(path),
                )  # fmt: skip

    def shim_rename(src: Any, dst: Any, **kwargs: Any) -> None:
        busy(src)
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "Cannot create a file when that file already "
                                  "exists", str(dst))  # fmt: skip
        real_rename(src, dst, **kwargs)

    def shim_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        busy(src, dst)
        real_replace(src, dst, **kwargs)

    def shim_unlink(path: Any, **kwargs: Any) -> None:
        busy(path)
        real_unlink(path, **kwargs)

    def shim_utime(path: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(path, int):
            raise TypeError("utime: path should be string, bytes or os.PathLike, not int")
        real_utime(path, *args, **kwargs)

    _set(os, open=shim_open, close=shim_close, rename=shim_rename, replace=shim_replace,
         unlink=shim_unlink, remove=shim_unlink, utime=shim_utime, O_BINARY=O_BINARY)  # fmt: skip
    for name in _WINDOWS_MISSING_OS:
        if hasattr(os, name):
            delattr(os, name)
    _set(os, supports_dir_fd=set(), supports_fd={os.stat}, supports_follow_symlinks={os.stat})
    _set(signal, SIGBREAK=21)
    _log_signal_handlers()

    from asyncio import selector_events, unix_events

    def unsupported(real: Any) -> Any:
        """The proactor loop has no such method; asyncio's own selector code still
        calls it on the loop underneath (sock_recv's clean-up), so that caller keeps it."""

        def method(self: object, *args: object, **kwargs: object) -> Any:
            if sys._getframe(1).f_globals.get("__name__", "").startswith("asyncio."):
                return real(self, *args, **kwargs)
            raise NotImplementedError

        return method

    selector = selector_events.BaseSelectorEventLoop
    unix = unix_events._UnixSelectorEventLoop
    _set(selector, add_reader=unsupported(selector.add_reader),
         remove_reader=unsupported(selector.remove_reader))  # fmt: skip
    _set(unix, add_signal_handler=unsupported(unix.add_signal_handler),
         remove_signal_handler=unsupported(unix.remove_signal_handler))  # fmt: skip
    import shutil

    def disk_usage(path: Any) -> Any:  # Windows has its own (nt._getdiskusage)
        info = real_statvfs(path)
        free = info.f_bavail * info.f_frsize
        total = info.f_blocks * info.f_frsize
        return shutil._ntuple_diskusage(total, total - info.f_bfree * info.f_frsize, free)

    # Windows' rmtree works by path: no descriptor-relative calls (dir_fd) there.
    _set(shutil, disk_usage=disk_usage, _use_fd_functions=False)

    real_cdll_init = ctypes.CDLL.__init__

    def cdll_init(self: ctypes.CDLL, name: Any, *args: Any, **kwargs: Any) -> None:
        if name is None:
            raise TypeError("LoadLibrary() argument 1 must be str, not None")
        real_cdll_init(self, name, *args, **kwargs)

    _set(ctypes.CDLL, __init__=cdll_init)

    msvcrt = types.ModuleType("msvcrt")
    msvcrt.LK_UNLCK, msvcrt.LK_LOCK, msvcrt.LK_NBLCK = 0, 1, 2  # type: ignore[attr-defined]
    msvcrt.LK_RLCK, msvcrt.LK_NBRLCK = 3, 4  # type: ignore[attr-defined]

    def locking(fd: int, mode: int, nbytes: int) -> None:
        """Lock nbytes from the current position (POSIX record locks stand in)."""
        here = os.lseek(fd, 0, os.SEEK_CUR)
        _note(f"msvcrt.locking mode={mode} offset={here} nbytes={nbytes}")
        op = real_fcntl.LOCK_UN if mode == 0 else real_fcntl.LOCK_EX | real_fcntl.LOCK_NB
        try:
            real_fcntl.lockf(fd, op, nbytes, here, os.SEEK_SET)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise PermissionError(errno.EACCES, "Permission denied") from None
            raise

    _set(msvcrt, locking=locking)
    sys.modules["msvcrt"] = msvcrt


def _log_signal_handlers() -> None:
    real_signal = signal.signal

    def shim_signal(signum: int, handler: Any) -> Any:
        if _from_ferry():
            _note(f"signal.signal {int(signum)}")
        return real_signal(signum, handler)

    _set(signal, signal=shim_signal)


# -- macOS -----------------------------------------------------------------------------


def _macos() -> None:
    import fcntl

    platform.system = lambda: "Darwin"
    for name in _MACOS_MISSING_OS:
        if hasattr(os, name):
            delattr(os, name)
    for name in ("F_SETPIPE_SZ", "F_GETPIPE_SZ"):
        if hasattr(fcntl, name):
            delattr(fcntl, name)
    real_fcntl = fcntl.fcntl

    def shim_fcntl(fd: Any, cmd: int, arg: Any = 0) -> Any:
        if cmd in (1031, 1032):  # F_SETPIPE_SZ, F_GETPIPE_SZ by number: Linux only
            raise OSError(errno.EINVAL, "Invalid argument")
        if cmd == _F_FULLFSYNC:
            _note("F_FULLFSYNC")
            os.fsync(fd)
            return 0
        return real_fcntl(fd, cmd, arg)

    _set(fcntl, fcntl=shim_fcntl)
    _set(fcntl, F_FULLFSYNC=_F_FULLFSYNC)

    real_cdll_init = ctypes.CDLL.__init__
    real_getattr = ctypes.CDLL.__getattr__

    def cdll_init(self: ctypes.CDLL, name: Any, *args: Any, **kwargs: Any) -> None:
        real_cdll_init(self, name, *args, **kwargs)

    def cdll_getattr(self: ctypes.CDLL, name: str) -> Any:
        if name in ("syncfs", "renameat2"):
            raise AttributeError(f"dlsym(RTLD_DEFAULT, {name}): symbol not found")
        if name == "renameatx_np":
            return _renameatx_np(real_getattr(self, "renameat2"))
        return real_getattr(self, name)

    _set(ctypes.CDLL, __init__=cdll_init)
    _set(ctypes.CDLL, __getattr__=cdll_getattr)

    if hasattr(socket, "TCP_KEEPIDLE"):
        real_idle = socket.TCP_KEEPIDLE
        del socket.TCP_KEEPIDLE
        _set(socket, TCP_KEEPALIVE=_TCP_KEEPALIVE)
        real_setsockopt = socket.socket.setsockopt

        def setsockopt(self: socket.socket, level: int, option: int, *value: Any) -> None:
            if level == socket.IPPROTO_TCP and option == _TCP_KEEPALIVE:
                _note(f"TCP_KEEPALIVE {value[0]}")
                option = real_idle
            real_setsockopt(self, level, option, *value)

        _set(socket.socket, setsockopt=setsockopt)

    real_listdir, real_builtin_open = os.listdir, builtins.open

    def no_proc(path: Any) -> None:
        if str(os.fspath(path) if not isinstance(path, int) else "").startswith("/proc"):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    def listdir(path: Any = ".") -> Any:
        no_proc(path)
        return real_listdir(path)

    def shim_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        no_proc(file)
        return real_builtin_open(file, *args, **kwargs)

    _set(os, listdir=listdir)
    builtins.open = shim_open


def _renameatx_np(renameat2: Any) -> Any:
    def renameatx_np(from_fd: int, source: bytes, to_fd: int, target: bytes, flags: int) -> int:
        _note(f"renameatx_np flags={flags}")
        assert flags == 4, "ferry asks for RENAME_EXCL only"
        # RENAME_NOREPLACE; ctypes' errno is kept for ferry's get_errno()
        return int(renameat2(from_fd, source, to_fd, target, 1))

    return renameatx_np


# Keep asyncio imported before the shim changes its classes (sitecustomize imports us).
_ = asyncio
