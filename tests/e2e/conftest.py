"""Fixtures for the end-to-end suite: real processes, free ports, guaranteed clean-up.

    relay                 ./relay 127.0.0.1:PORT, started and ready (Relay object)
    relay_factory(...)    start more relays, any listen form (":0", "[::1]:0")
    start_send(relay, path, cwd=..., extra_args=..., invoke=...)   -> Sender (.code, .wait())
    run_receive(relay, code, outdir, cwd=..., extra_args=..., timeout=...) -> Result
    start_receive(relay, code, outdir)                             -> Background

Every process is started in a new session and its process group is SIGKILLed at teardown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry_testing.procs import Relay

from .harness import (
    REPO,
    Background,
    Registry,
    Result,
    Sender,
    start_relay,
)
from .harness import (
    run_receive as _run_receive,
)
from .harness import (
    start_receive as _start_receive,
)
from .harness import (
    start_send as _start_send,
)


def pytest_configure(config: pytest.Config) -> None:
    # The launchers must be there and executable, or nothing below makes sense.
    for name in ("relay", "send", "receive"):
        path = REPO / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise pytest.UsageError(f"{path} is missing or not executable")


@pytest.fixture
def procs() -> Iterator[Registry]:
    registry = Registry()
    try:
        yield registry
    finally:
        registry.kill_all()


@pytest.fixture
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where process logs go: outside tmp_path, so tests can check tmp_path stays clean."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture
def relay_factory(procs: Registry, logdir: Path) -> Callable[..., Relay]:
    def factory(listen: str = "127.0.0.1:0", host: str = "127.0.0.1", **kwargs: Any) -> Relay:
        return start_relay(procs, logdir, listen=listen, host=host, **kwargs)

    return factory


@pytest.fixture(scope="session")
def shared_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """One ./relay for every test (of this xdist worker) that only needs a working relay."""
    registry = Registry()
    try:
        yield start_relay(registry, tmp_path_factory.mktemp("shared-relay"))
    finally:
        registry.kill_all()


@pytest.fixture
def relay(request: pytest.FixtureRequest, relay_factory: Callable[..., Relay]) -> Relay:
    """A ready ./relay 127.0.0.1:PORT: the shared one, or one of the test's own when it is
    marked own_relay (it reads the relay's log or metrics, signals or stops it).

    Sharing is safe because a relay serves transfers independently (that is its job, and
    tests/faults checks it); a shared relay that died fails the next test that wants it."""
    if request.node.get_closest_marker("own_relay"):
        return relay_factory()
    shared: Relay = request.getfixturevalue("shared_relay")
    assert shared.alive(), f"the shared relay exited:\n{shared.log()}"
    return shared


@pytest.fixture
def start_send(procs: Registry, logdir: Path) -> Callable[..., Sender]:
    def start(relay: Relay | str, path: Path | str, **kwargs: Any) -> Sender:
        return _start_send(procs, logdir, relay, path, **kwargs)

    return start


@pytest.fixture
def run_receive(procs: Registry) -> Callable[..., Result]:
    def run(relay: Relay | str, code: str | None, outdir: Path | str, **kwargs: Any) -> Result:
        return _run_receive(procs, relay, code, outdir, **kwargs)

    return run


@pytest.fixture
def start_receive(procs: Registry, logdir: Path) -> Callable[..., Background]:
    def start(relay: Relay | str, code: str, outdir: Path | str, **kwargs: Any) -> Background:
        return _start_receive(procs, logdir, relay, code, outdir, **kwargs)

    return start


@pytest.fixture(autouse=True)
def _drop_big_files(tmp_path: Path) -> Iterator[None]:
    """After each test (passed or not), delete files that occupy over 16 MiB of disk in its
    tmp_path: pytest keeps the last runs' directories and big transfers would pile up.
    Autouse, so it is set up before `procs` and torn down after every process is killed."""
    yield
    for dirpath, _, filenames in os.walk(tmp_path):
        for name in filenames:
            path = Path(dirpath) / name
            try:
                if not path.is_symlink() and path.stat().st_blocks * 512 > 16 * 1024 * 1024:
                    path.unlink()
            except OSError:
                pass
