"""Relay settings (flag, env var, docstring with a unit), logs, metrics, refusal texts."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import logging
from pathlib import Path

import pytest

from ferry.cli import relay_serve as relay_cli
from ferry.client.relay_link import refusal_error
from ferry.config import (
    MAX_HELLO_BYTES,
    OPENING_BYTES,
    SENDER_GRACE,
    RelayConfig,
    field_docs,
)
from ferry.errors import EXIT_USAGE
from ferry.protocol import rendezvous as rv
from ferry.relay import logs, refusals
from ferry.relay.metrics import Metrics, MetricsServer, render
from ferry_testing.waiting import until
from tests.relay.clock import ClockLoop, run_on_clock, turns
from tests.relay.conditions import logged, outcome_lines
from tests.relay.harness import RawClient, pair, register_sender, running_relay
from tests.relay.test_limits_enforced import nothing_to_read

pytestmark = pytest.mark.timeout(30)

UNITS = ("seconds", "bytes", "connections", "senders", "pipes", "receivers", "look-ups",
         "attempts", "entries", "descriptors", "platform", "kernel")  # fmt: skip


def _field_docs() -> dict[str, str]:
    return field_docs(RelayConfig)


def test_every_relay_setting_has_a_docstring_with_its_unit() -> None:
    docs = _field_docs()
    for field in dataclasses.fields(RelayConfig):
        assert field.name in docs, field.name
        assert any(unit in docs[field.name].lower() for unit in UNITS), field.name


def test_max_hello_bytes_matches_the_protocol_line_limit() -> None:
    assert MAX_HELLO_BYTES == rv.MAX_LINE
    assert RelayConfig().max_hello_bytes == rv.MAX_LINE


def test_defaults_are_usable_and_nonsense_is_reported() -> None:
    assert RelayConfig().problems() == []
    bad = RelayConfig(handshake_timeout=0.0, max_waiting_senders=0, max_hello_bytes=4096)
    assert len(bad.problems()) == 3


def test_every_setting_is_a_flag() -> None:
    args = relay_cli.build_parser().parse_args(
        [":9021", "--handshake-timeout", "2.5", "--lookups-per-minute", "7", "--no-use-splice"]
    )
    config = relay_cli.config_from(args)
    assert config.handshake_timeout == 2.5
    assert config.lookups_per_minute == 7
    assert config.use_splice is False
    help_text = relay_cli.build_parser().format_help()
    for field in dataclasses.fields(RelayConfig):
        assert "--" + field.name.replace("_", "-") in help_text


def test_every_setting_is_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_RELAY_MAX_CONNECTIONS_PER_ADDRESS", "9")
    monkeypatch.setenv("FERRY_RELAY_IDLE_TIMEOUT", "12.5")
    monkeypatch.setenv("FERRY_RELAY_LOG_FORMAT", "json")
    args = relay_cli.build_parser().parse_args([":9021"])
    config = relay_cli.config_from(args)
    assert config.max_connections_per_address == 9
    assert config.idle_timeout == 12.5
    assert args.log_format == "json"
    assert args.metrics is None


@pytest.mark.parametrize(
    "argv",
    [
        [":9021", "--handshake-timeout", "0"],
        [":9021", "--max-hello-bytes", "100000"],
        [":9021", "--metrics", "nonsense"],
        [":9021", "--log-format", "xml"],
    ],
)
def test_bad_settings_exit_with_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        raise SystemExit(relay_cli.main(argv))
    assert raised.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


# -- refusal messages the client prints ------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (rv.REASON_BUSY, "relay busy"),
        (rv.REASON_TOO_MANY_CONNECTIONS, "relay busy"),
        (rv.REASON_TOO_MANY_ATTEMPTS, "too many attempts"),
        (rv.REASON_RATE_LIMITED, "too many attempts"),
        (rv.REASON_TIMEOUT, "timed out"),
        (rv.REASON_SHUTTING_DOWN, "shutting down"),
        (rv.REASON_BAD_REQUEST, "malformed"),
    ],
)
def test_each_refusal_reason_becomes_a_one_line_message(reason: str, expected: str) -> None:
    error = refusal_error(rv.Refused(reason, "some detail"), 7)
    assert expected in error.message
    assert "\n" not in error.message
    assert error.reason == reason


# -- logs ------------------------------------------------------------------


def _record(**fields: logs.Field) -> logging.LogRecord:
    record = logging.LogRecord("ferry.relay", logging.INFO, __file__, 1, "connection", (), None)
    record.fields = fields
    return record


def test_human_log_line_is_key_value() -> None:
    line = logs.HumanFormatter().format(
        _record(outcome="happy", role="receiver", nameplate=7, duration=1.23456, detail="a b")
    )
    assert line.endswith(
        'relay outcome=happy role=receiver nameplate=7 duration=1.235 detail="a b"'
    )


def test_json_log_line_is_one_object() -> None:
    line = logs.JsonFormatter().format(_record(outcome="lonely", nameplate=3, duration=0.5))
    data = json.loads(line)
    assert data["event"] == "connection"
    assert (data["outcome"], data["nameplate"], data["duration"]) == ("lonely", 3, 0.5)
    plain = logging.LogRecord("ferry.relay", logging.WARNING, __file__, 1, "hi %d", (3,), None)
    assert json.loads(logs.JsonFormatter().format(plain))["msg"] == "hi 3"


async def test_transfer_logs_one_line_per_connection_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")
    async with running_relay() as r:
        control, data, receiver, nameplate = await pair(r.port)
        # Past the opening (where a side leaving ends the pipe at once), as a file is.
        await data.send(b"secret-file-name.txt and key material" + b"." * OPENING_BYTES)
        data.half_close()
        got = await receiver.read_until_closed()
        await receiver.send(b"stored: the receiver answers last, as a real ACK does")
        receiver.close()
        assert (await data.read_until_closed()).startswith(b"stored")
        data.close()
        await logged(caplog, 1)
        control.close()
        await logged(caplog, 2)
    assert got == b"secret-file-name.txt and key material" + b"." * OPENING_BYTES
    lines = [logs.HumanFormatter().format(rec) for rec in caplog.records]
    outcomes = outcome_lines(caplog)
    assert [(f["role"], f["outcome"]) for f in outcomes] == [
        ("receiver", "happy"),
        ("sender", "happy"),
    ]
    assert outcomes[0]["bytes_to_receiver"] == len(got)
    assert outcomes[0]["nameplate"] == nameplate
    assert not any("secret" in line or "key" in line for line in lines)


# -- metrics ---------------------------------------------------------------


def test_render_is_prometheus_text() -> None:
    metrics = Metrics(connections=5, bytes_relayed=100)
    metrics.refused("busy")
    metrics.ended("receiver", "happy")
    text = render(metrics, {"active_transfers": ("Pipes.", 2)})
    assert "# TYPE ferry_relay_active_transfers gauge\nferry_relay_active_transfers 2\n" in text
    assert 'ferry_relay_refusals_total{reason="busy"} 1' in text
    assert 'ferry_relay_outcomes_total{role="receiver",outcome="happy"} 1' in text
    assert "ferry_relay_bytes_relayed_total 100" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2


async def _http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_metrics_endpoint_serves_metrics_healthz_and_nothing_else() -> None:
    async with running_relay() as r:
        from ferry.address import Address
        from ferry.relay.listen import open_listeners

        listeners = open_listeners(Address("127.0.0.1", 0))
        port = listeners[0].getsockname()[1]
        healthy = [True]
        endpoint = MetricsServer(
            lambda: render(r.relay.metrics, r.relay.gauges()), lambda: healthy[0]
        )
        await endpoint.start(listeners)
        try:
            control, _ = await register_sender(r.port)
            late = await RawClient.connect(r.port)
            await late.send("GARBAGE\n")
            await late.line()
            page = await _http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert page.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"ferry_relay_waiting_senders 1\n" in page
            assert b'ferry_relay_refusals_total{reason="bad-request"} 1\n' in page
            health = await _http(port, b"GET /healthz HTTP/1.0\r\n\r\n")
            assert health.startswith(b"HTTP/1.1 200 OK") and health.endswith(b"ok\n")
            healthy[0] = False
            health = await _http(port, b"GET /healthz HTTP/1.0\r\n\r\n")
            assert health.startswith(b"HTTP/1.1 503")
            assert (await _http(port, b"GET / HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 404")
            assert (await _http(port, b"POST /metrics HTTP/1.0\r\n\r\n")).startswith(
                b"HTTP/1.1 405"
            )
            assert await _http(port, b"GET /" + b"a" * 20000 + b"\r\n\r\n") == b""
            control.close()
            late.close()
        finally:
            await endpoint.close()


# -- shutdown ---------------------------------------------------------------


def test_close_refuses_waiting_and_handshaking_but_drains_pipes() -> None:
    async def scenario(loop: ClockLoop) -> None:
        async with running_relay() as r:
            control, data, receiver, _ = await pair(r.port)
            waiting, _ = await register_sender(r.port)
            fresh = await RawClient.connect(r.port)
            await until(lambda: r.relay.handshaking == 1, "the fresh connection's handshake")
            closing = asyncio.create_task(r.relay.close(drain_timeout=10))
            assert (await waiting.line()).startswith("ERROR shutting-down")
            await turns()
            loop.advance(refusals.SNIFF_WAIT)  # a silent client's language is awaited this long
            assert (await fresh.line()).startswith("ERROR shutting-down")
            assert r.relay.active == 1 and not closing.done()  # the pipe still runs
            await data.send(b"last bytes")
            data.half_close()
            assert await receiver.read_until_closed() == b"last bytes"
            for client in (receiver, control, waiting, fresh):  # as real clients do, at once
                client.close()
            await asyncio.wait_for(closing, 5)
            data.close()

    run_on_clock(scenario)


def test_close_cuts_pipes_at_the_drain_deadline() -> None:
    async def scenario(loop: ClockLoop) -> None:
        async with running_relay() as r:
            control, data, receiver, _ = await pair(r.port)
            closing = asyncio.create_task(r.relay.close(drain_timeout=30))
            await turns()
            loop.advance(29)
            await turns()
            assert not closing.done() and nothing_to_read(receiver)  # the pipe still runs
            loop.advance(2)  # past the drain deadline
            await turns()
            loop.advance(SENDER_GRACE)  # the sender's control connection is still open: cut
            assert await receiver.read_until_closed() == b""
            await asyncio.wait_for(closing, 5)
            for client in (control, data, receiver):
                client.close()

    run_on_clock(scenario)


def test_relay_never_imports_client_or_crypto() -> None:
    root = Path(relay_cli.__file__).parents[1]
    cli = [root / "cli" / "relay.py", root / "cli" / "relay_serve.py"]
    for path in [*sorted((root / "relay").glob("*.py")), *cli]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("ferry.client", "ferry.crypto")), (path, name)
                top = name.split(".")[0]
                # The one exception: the cluster directory, imported only with --cluster
                # (tests/cluster/test_cluster_cli.py checks the single relay never does).
                if path.name == "cluster.py" and top == "redis":
                    continue
                assert top == "ferry" or top in __import__("sys").stdlib_module_names, name
