"""Happy paths: the README's session, sizes, names, address forms, invocation forms, code input."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from ferry.config import ClientConfig
from ferry.errors import EXIT_USAGE
from ferry_testing.files import leftovers

from .harness import CODE_RE, REPO, ipv6_loopback_available, run_cases

MIB = 1024 * 1024
RECORD = ClientConfig.record_size


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- 1. the README's example session ------------------------------------------------------


def check_example_session(where: str, start_send, run_receive, root: Path, outarg: str) -> None:
    sending = root / "sending"
    receiving = root / "receiving"
    sending.mkdir(parents=True)
    receiving.mkdir()
    data = os.urandom(3 * MIB)
    (sending / "corgis.mp4").write_bytes(data)

    sender = start_send(where, "corgis.mp4", cwd=sending)
    assert CODE_RE.match(sender.code), f"not a code line: {sender.first_line!r}"
    assert sender.first_line.decode() == sender.code

    result = run_receive(where, sender.code, outarg, cwd=receiving)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()

    # stdout of send is exactly one line, the code, and nothing else even after exit.
    assert sender.stdout_rest == b"", f"send printed more on stdout: {sender.stdout_rest!r}"
    outdir = receiving / outarg
    assert outdir.is_dir()
    assert listing(outdir) == ["corgis.mp4"]
    assert (outdir / "corgis.mp4").read_bytes() == data
    assert "Traceback" not in result.stderr + sender.stderr()


@pytest.mark.timeout(90)
def test_example_session_on_any_address_delivers_identical_file(
    relay_factory, start_send, run_receive, tmp_path
):
    """One relay on every interface; each output form its own transfer, at once."""
    relay = relay_factory(listen=":0", host="localhost")
    where = relay.at("localhost")
    outargs = ["out/", "out", "nested/not/yet/out"]
    run_cases(
        {
            outarg: functools.partial(
                check_example_session, where, start_send, run_receive, tmp_path / f"case{i}", outarg
            )
            for i, outarg in enumerate(outargs)
        }
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize("invoke", ["rel", "relpath", "abs"])
def test_invocation_forms_from_repo_root_and_other_cwd_deliver_file(
    relay_factory, start_send, run_receive, tmp_path, invoke
):
    """./send from the repo root (as the README shows), a relative path from elsewhere, absolute."""
    relay = relay_factory(
        listen=":0", host="127.0.0.1", invoke=invoke if invoke == "rel" else "abs"
    )
    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    src = elsewhere / "payload.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    outdir = tmp_path / "out"
    file_arg = str(src) if invoke == "rel" else "payload.bin"
    out_arg = str(outdir) if invoke == "rel" else os.path.relpath(outdir, elsewhere)

    sender = start_send(relay, file_arg, cwd=elsewhere, invoke=invoke)
    assert CODE_RE.match(sender.code)
    result = run_receive(relay, sender.code, out_arg, cwd=elsewhere, invoke=invoke)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (outdir / "payload.bin").read_bytes() == data
    # Nothing was dropped into the repository by a relative invocation.
    assert not (REPO / "payload.bin").exists()


# -- 2. sizes -------------------------------------------------------------------------------


SIZES = [0, 1, RECORD - 1, RECORD, RECORD + 1, 2 * RECORD, 5 * MIB + 17]


def check_file_of_size(relay, start_send, run_receive, root: Path, size: int) -> None:
    src = root / "src" / "file.bin"
    src.parent.mkdir(parents=True)
    data = os.urandom(size)
    src.write_bytes(data)
    sender = start_send(relay, src)
    outdir = root / "out"
    result = run_receive(relay, sender.code, outdir)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    received = outdir / "file.bin"
    assert received.stat().st_size == size
    assert received.read_bytes() == data
    assert listing(outdir) == ["file.bin"]


@pytest.mark.timeout(90)
def test_files_of_every_size_arrive_identical(relay, start_send, run_receive, tmp_path):
    """Each size its own transfer; the transfers run at once."""
    run_cases(
        {
            f"{size}B": functools.partial(
                check_file_of_size, relay, start_send, run_receive, tmp_path / f"{size}B", size
            )
            for size in SIZES
        }
    )


# -- 3. names -------------------------------------------------------------------------------


NAMES = ["my file.txt", "résumé 日本.pdf", ".hidden", "x" * 200 + ".txt"]


def check_name_arrives(relay, start_send, run_receive, root: Path, name: str) -> None:
    src_dir = root / "src"
    src_dir.mkdir(parents=True)
    data = os.urandom(1000)
    (src_dir / name).write_bytes(data)
    sender = start_send(relay, name, cwd=src_dir)
    outdir = root / "out"
    result = run_receive(relay, sender.code, outdir)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert listing(outdir) == [name]
    assert (outdir / name).read_bytes() == data


@pytest.mark.timeout(60)
def test_file_names_with_spaces_or_non_ascii_arrive_under_same_name(
    relay, start_send, run_receive, tmp_path
):
    """Each name its own transfer; the transfers run at once."""
    run_cases(
        {
            name: functools.partial(
                check_name_arrives, relay, start_send, run_receive, tmp_path / f"case{i}", name
            )
            for i, name in enumerate(NAMES)
        }
    )


# -- 14. address forms ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_ipv6_relay_with_ipv6_clients_delivers_file(
    relay_factory, start_send, run_receive, tmp_path
):
    if not ipv6_loopback_available():
        pytest.skip("IPv6 loopback is not available")
    relay = relay_factory(listen="[::1]:0", host="::1")
    assert relay.address.startswith("[::1]:")
    src = tmp_path / "v6.bin"
    data = os.urandom(70_000)
    src.write_bytes(data)
    sender = start_send(relay.address, src)
    result = run_receive(relay.address, sender.code, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (tmp_path / "out" / "v6.bin").read_bytes() == data


def check_hosts(relay, start_send, run_receive, root: Path, send_host: str, receive_host: str):
    root.mkdir()
    src = root / "any.bin"
    data = os.urandom(50_000)
    src.write_bytes(data)
    sender = start_send(relay.at(send_host), src)
    result = run_receive(relay.at(receive_host), sender.code, root / "out")
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (root / "out" / "any.bin").read_bytes() == data


@pytest.mark.timeout(60)
def test_relay_on_all_interfaces_serves_localhost_and_ipv4_clients(
    relay_factory, start_send, run_receive, tmp_path
):
    """One relay on every interface; each pair of host names its own transfer, at once."""
    relay = relay_factory(listen=":0", host="127.0.0.1")
    pairs = [("localhost", "localhost"), ("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1")]
    run_cases(
        {
            f"{send}-{receive}": functools.partial(
                check_hosts, relay, start_send, run_receive, tmp_path / f"case{i}", send, receive
            )
            for i, (send, receive) in enumerate(pairs)
        }
    )


# -- 15. code from stdin or the environment -----------------------------------------------------


@pytest.mark.timeout(60)
def test_receive_with_dash_reads_code_from_stdin(relay, start_send, run_receive, tmp_path):
    src = tmp_path / "stdin.bin"
    data = os.urandom(10_000)
    src.write_bytes(data)
    sender = start_send(relay, src)
    result = run_receive(relay, "-", tmp_path / "out", input=(sender.code + "\n").encode())
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (tmp_path / "out" / "stdin.bin").read_bytes() == data


@pytest.mark.timeout(60)
def test_receive_without_code_argument_takes_FERRY_CODE(relay, start_send, run_receive, tmp_path):
    from ferry_testing.procs import clean_env

    src = tmp_path / "env.bin"
    data = os.urandom(10_000)
    src.write_bytes(data)
    sender = start_send(relay, src)
    env = clean_env({"FERRY_CODE": sender.code})
    result = run_receive(relay, None, tmp_path / "out", env=env)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (tmp_path / "out" / "env.bin").read_bytes() == data


@pytest.mark.timeout(60)
def test_receive_without_code_or_FERRY_CODE_is_usage_error(run_receive, relay, tmp_path):
    result = run_receive(relay, None, tmp_path / "out", timeout=30)
    assert result.returncode == EXIT_USAGE
    assert "Traceback" not in result.stderr
    assert leftovers(tmp_path / "out") == []
