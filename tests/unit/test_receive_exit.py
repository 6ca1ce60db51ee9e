"""./receive's early exits wait for the crypto import it started on a thread.

A daemon thread still importing native code at interpreter exit can abort
the whole process (SIGABRT, "FATAL: exception not rethrown") instead of the
one-line error and exit code 3.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, threading
from ferry.cli import receive
rc = receive.main(["127.0.0.1:9", "7-guitar-orbit-velvet", sys.argv[1]])
alive = [t.name for t in threading.enumerate() if t.name == "load-crypto"]
print(rc, alive)
"""


def test_output_dir_that_is_a_file_returns_3_with_no_import_thread_left(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(not_a_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3 []", (done.stdout, done.stderr)
    assert "exists and is not a directory" in done.stderr


FAST_EXIT = """
import atexit, sys
from ferry.cli.main import exit_now
atexit.register(lambda: sys.stdout.write("teardown"))
sys.stdout.write("code")
sys.stderr.write("said")
exit_now(7)
"""


def test_the_shims_exit_skips_teardown_but_flushes_the_standard_streams() -> None:
    # Both clients exit as soon as main() returned: the interpreter's teardown
    # (tens of ms) is skipped, and nothing written to stdout or stderr is lost.
    done = subprocess.run(
        [sys.executable, "-c", FAST_EXIT], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (7, "code", "said")


NO_CONNECT = """
import socket, sys
from ferry.cli import receive
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
rc = receive.main([f"127.0.0.1:{port}", "7-guitar-orbit-velvet", sys.argv[1]])
listener.setblocking(False)
try:
    listener.accept()
    connected = True
except BlockingIOError:
    connected = False
print(rc, connected)
"""


def test_an_unusable_output_dir_is_refused_before_any_connection_to_the_relay(
    tmp_path: Path,
) -> None:
    # The connect starts early (client/dial.py), but only once everything local
    # checked out: a relay sees nothing of a receive that could not have run.
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    done = subprocess.run(
        [sys.executable, "-c", NO_CONNECT, str(not_a_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "3 False", (done.stdout, done.stderr)
