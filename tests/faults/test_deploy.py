"""The deployment recipes stay true: the container's file set runs the relay on a
bare Python (no site-packages), and the systemd unit is hardened and parses."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
from pathlib import Path

import pytest

from ferry.cli.relay_serve import build_parser
from ferry_testing import procs
from ferry_testing.procs import ROOT

pytestmark = pytest.mark.timeout(60)

DEPLOY = ROOT / "deploy"


def test_container_file_set_runs_the_relay_without_any_package(tmp_path: Path) -> None:
    image = tmp_path / "opt-ferry"
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, target = line.split()[1:]
        destination = image / target.removeprefix("/opt/ferry/")
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, destination, dirs_exist_ok=True)
            else:
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, destination)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(image)}
    # -S: no site module, so no site-packages: only the standard library exists.
    command = [sys.executable, "-S", "-m", "ferry.cli.relay"]
    relay = procs.start_relay(tmp_path, command=command, env=env, cwd=tmp_path, timeout=10)
    try:
        relay.signal(signal.SIGTERM)
        assert relay.wait(10) == 0, relay.log()
    finally:
        relay.kill()
    assert "Traceback" not in relay.log()


def test_systemd_unit_is_hardened_and_its_command_line_parses() -> None:
    unit = (DEPLOY / "ferry-relay.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0].isalpha()
    )
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "CapabilityBoundingSet": "",
        "KillSignal": "SIGTERM",
    }.items():
        assert settings.get(key) == value, key
    assert int(settings["LimitNOFILE"]) >= 4096
    argv = shlex.split(settings["ExecStart"])
    assert argv[argv.index("-m") + 1] == "ferry.cli.relay"
    args = build_parser().parse_args(argv[argv.index("-m") + 2 :])
    assert args.metrics.startswith("127.0.0.1:")
    environment = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in unit.splitlines()
        if line.startswith("Environment=")
    )
    drain = float(environment["FERRY_RELAY_DRAIN_TIMEOUT"])
    assert int(settings["TimeoutStopSec"]) > drain  # systemd must not SIGKILL mid-drain


def test_the_cluster_node_example_sets_the_metrics_port_the_balancers_check_uses() -> None:
    unit = (DEPLOY / "ferry-relay-node.service").read_text()
    example = unit[unit.index("# /etc/ferry/node.env") : unit.index("[Unit]")]
    settings = dict(re.findall(r"^#\s+(FERRY_\w+)=(\S+)", example, re.M))
    checked = set(
        re.findall(r"^\s*server \S+ \S+ port (\d+)", (DEPLOY / "haproxy.cfg").read_text(), re.M)
    )
    assert checked, "haproxy.cfg checks no port"
    metrics = settings.get("FERRY_RELAY_METRICS")
    assert metrics is not None, "the node.env example lacks FERRY_RELAY_METRICS"
    assert {metrics.rsplit(":", 1)[1]} == checked
    assert metrics.rsplit(":", 1)[0] == settings["FERRY_RELAY_NODE_ADDRESS"].rsplit(":", 1)[0]
