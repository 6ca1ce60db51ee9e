"""Suite-wide fixtures."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_socket_cycles(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect garbage after each test that talks to processes or sockets.

    A socket caught in a reference cycle (a traceback holding a frame, say) is
    freed only by a later collection, and its ResourceWarning then fails
    whichever test happens to be running, under -W error. Collecting here
    frees such sockets at the end of the test that made them. Sockets freed
    this way are not reported: a leak freed by reference counting still fails
    its own test. Unit tests open no sockets and skip the collection.
    """
    yield
    if "unit" in request.node.path.parts:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unclosed <socket", ResourceWarning)
        gc.collect()
