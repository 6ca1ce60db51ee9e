"""ferry.platform and client/stdin.py: each system's mechanism, chosen and used right."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from ferry import netopts, platform
from ferry.client.stdin import ThreadedReader


class RecordingSocket:
    def __init__(self, failing: set[int] | None = None) -> None:
        self.options: list[tuple[int, int, int]] = []
        self.failing = failing or set()

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if option in self.failing:
            raise OSError("not here")
        self.options.append((level, option, value))


def test_keepalive_without_tcp_keepidle_uses_macos_tcp_keepalive_and_sets_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(socket, "TCP_KEEPIDLE", raising=False)
    monkeypatch.setattr(socket, "TCP_KEEPALIVE", 0x10, raising=False)
    sock = RecordingSocket()
    netopts.keep_alive(sock)  # type: ignore[arg-type]
    assert sock.options == [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, 0x10, netopts.KEEPALIVE_IDLE),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, netopts.KEEPALIVE_INTERVAL),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, netopts.KEEPALIVE_COUNT),
    ]


def test_keepalive_option_refused_by_the_system_does_not_skip_the_others() -> None:
    sock = RecordingSocket(failing={socket.TCP_KEEPIDLE})
    netopts.keep_alive(sock)  # type: ignore[arg-type]
    assert [option for _, option, _ in sock.options] == [
        socket.SO_KEEPALIVE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT,
    ]  # fmt: skip


class NoSignalsLoop(asyncio.SelectorEventLoop):
    """Like Windows' proactor loop: no add_signal_handler."""

    def add_signal_handler(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError


def test_termination_without_loop_signal_handlers_goes_through_signal_signal() -> None:
    loop = NoSignalsLoop()
    before = signal.getsignal(signal.SIGTERM)

    async def main() -> int:
        got: asyncio.Future[int] = loop.create_future()
        undo = platform.on_termination(loop, got.set_result)
        try:
            assert signal.getsignal(signal.SIGTERM) is not before
            os.kill(os.getpid(), signal.SIGTERM)
            return await asyncio.wait_for(got, 5)
        finally:
            undo()

    try:
        assert loop.run_until_complete(main()) == signal.SIGTERM
    finally:
        loop.close()
    assert signal.getsignal(signal.SIGTERM) is before


def test_termination_with_loop_signal_handlers_uses_them() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[int] = loop.create_future()
        undo = platform.on_termination(loop, got.set_result)
        try:
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            os.kill(os.getpid(), signal.SIGINT)
            return await asyncio.wait_for(got, 5)
        finally:
            undo()

    assert asyncio.run(main()) == signal.SIGINT


def test_threaded_reader_reads_everything_in_order_then_the_end() -> None:
    data = os.urandom(700_001)
    r, w = os.pipe()

    def write() -> None:
        with os.fdopen(w, "wb") as pipe:
            for start in range(0, len(data), 50_000):
                pipe.write(data[start : start + 50_000])

    async def main() -> bytes:
        reader = ThreadedReader(r, asyncio.get_running_loop())
        got = bytearray()
        chunk = memoryview(bytearray(128 * 1024))
        try:
            while not reader.at_eof:
                n = await reader.read_fully(chunk)
                got += chunk[:n]
        finally:
            reader.close()
        return bytes(got)

    threading.Thread(target=write, daemon=True).start()
    try:
        assert asyncio.run(main()) == data
    finally:
        os.close(r)


def test_threaded_reader_hands_over_what_it_has_after_the_linger() -> None:
    r, w = os.pipe()
    os.write(w, b"early bytes")

    async def main() -> tuple[int, float, bool]:
        reader = ThreadedReader(r, asyncio.get_running_loop())
        chunk = memoryview(bytearray(1024))
        started = time.monotonic()
        n = await reader.read_fully(chunk, linger=0.2)
        reader.close()
        return n, time.monotonic() - started, reader.at_eof

    try:
        n, waited, at_eof = asyncio.run(main())
        assert (n, at_eof) == (len(b"early bytes"), False)
        assert 0.15 < waited < 5
    finally:
        os.close(w)
        os.close(r)


def test_try_lock_keeps_a_second_holder_off(tmp_path: Path) -> None:
    path = tmp_path / "partial"
    first = platform.open_fd(path, os.O_RDWR | os.O_CREAT, 0o600)
    second = platform.open_fd(path, os.O_RDWR)
    try:
        platform.try_lock(first)
        with pytest.raises(BlockingIOError):
            platform.try_lock(second)
    finally:
        os.close(first)
        os.close(second)


def test_rename_no_replace_refuses_an_existing_name(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    with pytest.raises(FileExistsError):
        platform.rename_no_replace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"b"
    platform.rename_no_replace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_bytes() == b"a"


def test_not_supported_holds_both_numbers() -> None:
    import errno

    assert {errno.ENOTSUP, errno.EOPNOTSUPP} <= platform.NOT_SUPPORTED


def test_a_windows_file_counts_as_private_although_its_mode_says_0666(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.client.ownership import owned_privately

    path = tmp_path / "kept.part"
    path.write_bytes(b"x")
    path.chmod(0o666)  # what os.stat reports on Windows for any writable file
    info = path.stat()
    assert not owned_privately(info)  # on POSIX: open to others, never resumed
    monkeypatch.setattr(platform, "WINDOWS", True)
    monkeypatch.delattr(os, "geteuid")
    assert owned_privately(info)  # on Windows: ACLs decide; the mode bits mean nothing


def test_terminal_colors_on_windows_ask_colorama_to_fix_the_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ferry.cli import qr

    fixed: list[bool] = []
    fake = types.ModuleType("colorama")
    fake.just_fix_windows_console = lambda: fixed.append(True)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "colorama", fake)
    monkeypatch.setattr(platform, "WINDOWS", False)
    qr.enable_terminal_colors()
    assert fixed == []  # other systems' terminals need nothing
    monkeypatch.setattr(platform, "WINDOWS", True)
    qr.enable_terminal_colors()
    assert fixed == [True]
    monkeypatch.setitem(sys.modules, "colorama", None)  # not installed: nothing to do
    qr.enable_terminal_colors()
